//! CloudWatch metrics as Embedded Metric Format (EMF) log lines: one JSON
//! object on stdout per flush, which Lambda's log pipeline turns into
//! metrics without any API call.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Namespace of every metric of the service.
pub const NAMESPACE: &str = "JobWebhooks";

/// A set of counts and values for one EMF line, dimensioned by function.
#[derive(Debug, Default)]
pub struct Metrics {
    values: Vec<(&'static str, Value, &'static str)>,
}

impl Metrics {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a count.
    pub fn count(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.values.push((name, json!(value), "Count"));
        self
    }

    /// Adds a list of millisecond values (a distribution).
    pub fn milliseconds(&mut self, name: &'static str, values: &[f64]) -> &mut Self {
        if !values.is_empty() {
            self.values.push((name, json!(values), "Milliseconds"));
        }
        self
    }

    /// The EMF document for `function`.
    pub fn document(&self, function: &str) -> Value {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": definitions,
                }]
            }),
        );
        doc.insert("Function".to_owned(), json!(function));
        for (name, value, _) in &self.values {
            doc.insert((*name).to_owned(), value.clone());
        }
        Value::Object(doc)
    }

    /// Writes the EMF line to stdout, dimensioned by the Lambda function
    /// name (or `fallback` outside Lambda).
    pub fn emit(&self, fallback: &str) {
        let function =
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| fallback.to_owned());
        println!("{}", self.document(&function));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_declare_every_metric() {
        let mut m = Metrics::new();
        m.count("Delivered", 3).milliseconds("Latency", &[1.5, 2.0]);
        let doc = m.document("f");
        assert_eq!(doc["Delivered"], 3);
        assert_eq!(doc["Latency"], json!([1.5, 2.0]));
        assert_eq!(doc["Function"], "f");
        let defs = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(defs["Namespace"], NAMESPACE);
        assert_eq!(
            defs["Metrics"][1],
            json!({"Name": "Latency", "Unit": "Milliseconds"})
        );
    }
}
