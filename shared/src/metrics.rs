//! CloudWatch metrics as Embedded Metric Format (EMF) log lines: one JSON
//! object on stdout per flush, which Lambda's log pipeline turns into
//! metrics without any API call. Counts of zero and empty distributions
//! are left out, and a set with nothing left writes no line at all: a
//! metric with no datapoint is what the alarms treat as not breaching.

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

    /// Adds a count; a count of zero is left out.
    pub fn count(&mut self, name: &'static str, value: u64) -> &mut Self {
        if value > 0 {
            self.values.push((name, json!(value), "Count"));
        }
        self
    }

    /// Adds a list of millisecond values (a distribution); an empty list
    /// is left out.
    pub fn milliseconds(&mut self, name: &'static str, values: &[f64]) -> &mut Self {
        if !values.is_empty() {
            self.values.push((name, json!(values), "Milliseconds"));
        }
        self
    }

    /// Whether nothing is left to report.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The EMF document for `function`, or `None` when nothing is left to
    /// report.
    pub fn document(&self, function: &str) -> Option<Value> {
        if self.is_empty() {
            return None;
        }
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
        Some(Value::Object(doc))
    }

    /// Writes the EMF line to stdout, dimensioned by the Lambda function
    /// name (or `fallback` outside Lambda); nothing when there is nothing
    /// to report. In AWS the name is the function's physical name, which
    /// is what the template's alarms name (`!Ref` of the function).
    pub fn emit(&self, fallback: &str) {
        let function =
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| fallback.to_owned());
        if let Some(doc) = self.document(&function) {
            println!("{doc}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_declare_every_metric() {
        let mut m = Metrics::new();
        m.count("Delivered", 3).milliseconds("Latency", &[1.5, 2.0]);
        let doc = m.document("f").unwrap();
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

    #[test]
    fn zero_counts_and_empty_distributions_are_left_out() {
        let mut m = Metrics::new();
        m.count("Delivered", 2)
            .count("FailedAttempts", 0)
            .milliseconds("Latency", &[])
            .count("Parked", 1);
        let doc = m.document("f").unwrap();
        let names: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Delivered", "Parked"]);
        assert!(doc.get("FailedAttempts").is_none(), "{doc}");
        assert!(doc.get("Latency").is_none(), "{doc}");
    }

    #[test]
    fn nothing_to_report_is_no_document() {
        let mut m = Metrics::new();
        m.count("Delivered", 0).milliseconds("Latency", &[]);
        assert!(m.is_empty());
        assert_eq!(m.document("f"), None);
        assert!(Metrics::new().document("f").is_none());
    }
}
