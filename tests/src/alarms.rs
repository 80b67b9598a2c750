//! The template's CloudWatch alarms on the service's own metrics (namespace
//! [`shared::metrics::NAMESPACE`]), read off `template.yaml` with their
//! references resolved against a deployed stack, and evaluated the way
//! CloudWatch would against the EMF lines a function wrote: a metric
//! matches when its namespace, name and dimension set (names and values)
//! are the alarm's; no matching metric is a missing datapoint.
//!
//! The emulator does not create alarms (a listed gap), so the template is
//! the alarms' only source.

use local_infra::cloudformation::DeployedStack;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// One alarm of the template on a metric of the service's namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// Logical id in the template.
    pub logical_id: String,
    /// `Namespace`.
    pub namespace: String,
    /// `MetricName`.
    pub metric: String,
    /// `Dimensions`, names and resolved values.
    pub dimensions: Vec<(String, String)>,
    /// `Statistic` (`Sum`, `Maximum`, ...).
    pub statistic: String,
    /// `Threshold`, resolved.
    pub threshold: f64,
    /// `ComparisonOperator`.
    pub comparison: String,
    /// `TreatMissingData` (CloudWatch's default, `missing`, when unset).
    pub treat_missing_data: String,
}

impl Alarm {
    /// The datapoint this alarm would see from `lines` (EMF documents and
    /// any other log lines, which are skipped): its statistic over every
    /// value of a matching metric, or `None` when no line has one.
    pub fn datapoint(&self, lines: &[Json]) -> Option<f64> {
        let values: Vec<f64> = lines
            .iter()
            .filter(|doc| self.declared_in(doc))
            .flat_map(|doc| numbers(&doc[self.metric.as_str()]))
            .collect();
        if values.is_empty() {
            return None;
        }
        Some(match self.statistic.as_str() {
            "Sum" => values.iter().sum(),
            "Maximum" => values.iter().copied().fold(f64::MIN, f64::max),
            "Minimum" => values.iter().copied().fold(f64::MAX, f64::min),
            "Average" => values.iter().sum::<f64>() / values.len() as f64,
            "SampleCount" => values.len() as f64,
            other => panic!("{}: statistic {other} not evaluated", self.logical_id),
        })
    }

    /// Whether `value` breaches the threshold.
    pub fn breaches(&self, value: f64) -> bool {
        match self.comparison.as_str() {
            "GreaterThanThreshold" => value > self.threshold,
            "GreaterThanOrEqualToThreshold" => value >= self.threshold,
            "LessThanThreshold" => value < self.threshold,
            "LessThanOrEqualToThreshold" => value <= self.threshold,
            other => panic!("{}: comparison {other} not evaluated", self.logical_id),
        }
    }

    /// Whether `doc` is an EMF document that declares this alarm's metric
    /// in its namespace with exactly its dimensions, and carries their
    /// values.
    fn declared_in(&self, doc: &Json) -> bool {
        let Some(directives) = doc["_aws"]["CloudWatchMetrics"].as_array() else {
            return false;
        };
        let mut names: Vec<&str> = self.dimensions.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let values_match = self
            .dimensions
            .iter()
            .all(|(n, v)| doc[n.as_str()].as_str() == Some(v.as_str()));
        values_match
            && directives.iter().any(|d| {
                d["Namespace"] == self.namespace.as_str()
                    && d["Metrics"]
                        .as_array()
                        .is_some_and(|ms| ms.iter().any(|m| m["Name"] == self.metric.as_str()))
                    && d["Dimensions"].as_array().is_some_and(|sets| {
                        sets.iter().any(|set| {
                            let mut set: Vec<&str> = set
                                .as_array()
                                .map(|s| s.iter().filter_map(Json::as_str).collect())
                                .unwrap_or_default();
                            set.sort_unstable();
                            set == names
                        })
                    })
            })
    }
}

/// A metric's value in an EMF document: a number or a list of them.
fn numbers(value: &Json) -> Vec<f64> {
    match value {
        Json::Number(n) => n.as_f64().into_iter().collect(),
        Json::Array(items) => items.iter().filter_map(Json::as_f64).collect(),
        _ => Vec::new(),
    }
}

/// Every EMF document among the JSON lines of `logs` (other lines
/// skipped).
pub fn emf_documents(logs: &str) -> Vec<Json> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Json>(l.trim()).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect()
}

/// The repository's template.
///
/// # Panics
/// When it cannot be read or parsed.
pub fn template() -> Yaml {
    let path = local_infra::cloudformation::template_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The alarms of `template` on metrics of `namespace`, with `!Ref`s of
/// functions resolved to their names in `stack` and of parameters to
/// their values (or defaults).
///
/// # Panics
/// When a value cannot be resolved.
pub fn alarms_in(template: &Yaml, namespace: &str, stack: &DeployedStack) -> Vec<Alarm> {
    let resources = template["Resources"]
        .as_mapping()
        .expect("the template has Resources");
    resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .filter(|(_, r)| r["Properties"]["Namespace"] == namespace)
        .map(|(id, r)| {
            let id = id.as_str().expect("resource ids are strings");
            let p = &r["Properties"];
            let resolve = |v: &Yaml| resolve(template, stack, id, v);
            Alarm {
                logical_id: id.to_owned(),
                namespace: resolve(&p["Namespace"]),
                metric: resolve(&p["MetricName"]),
                dimensions: p["Dimensions"]
                    .as_sequence()
                    .map(|ds| {
                        ds.iter()
                            .map(|d| (resolve(&d["Name"]), resolve(&d["Value"])))
                            .collect()
                    })
                    .unwrap_or_default(),
                statistic: resolve(&p["Statistic"]),
                threshold: resolve(&p["Threshold"])
                    .parse()
                    .unwrap_or_else(|e| panic!("{id}: Threshold: {e}")),
                comparison: resolve(&p["ComparisonOperator"]),
                treat_missing_data: match &p["TreatMissingData"] {
                    Yaml::Null => "missing".to_owned(),
                    v => resolve(v),
                },
            }
        })
        .collect()
}

/// `value` as CloudFormation resolves it in `stack`: a scalar, or a
/// `Ref` (tag or mapping) to a function or a parameter.
fn resolve(template: &Yaml, stack: &DeployedStack, alarm: &str, value: &Yaml) -> String {
    let reference = match value {
        Yaml::String(s) => return s.clone(),
        Yaml::Number(n) => return n.to_string(),
        Yaml::Bool(b) => return b.to_string(),
        Yaml::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
        Yaml::Mapping(m) => m.get("Ref").and_then(Yaml::as_str),
        _ => None,
    }
    .unwrap_or_else(|| panic!("{alarm}: cannot resolve {value:?}"));
    if let Ok(function) = stack.function(reference) {
        return function.name.clone();
    }
    if let Some(v) = stack.parameters.get(reference) {
        return v.clone();
    }
    let default = &template["Parameters"][reference]["Default"];
    if !default.is_null() {
        return resolve(template, stack, alarm, default);
    }
    panic!("{alarm}: Ref {reference} is neither a deployed function nor a parameter")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alarm() -> Alarm {
        Alarm {
            logical_id: "A".to_owned(),
            namespace: "N".to_owned(),
            metric: "Disabled".to_owned(),
            dimensions: vec![("Function".to_owned(), "f-1".to_owned())],
            statistic: "Sum".to_owned(),
            threshold: 0.0,
            comparison: "GreaterThanThreshold".to_owned(),
            treat_missing_data: "notBreaching".to_owned(),
        }
    }

    fn emf(function: &str, dims: Json, metric: &str, value: Json) -> Json {
        let mut doc = json!({
            "_aws": {"Timestamp": 1, "CloudWatchMetrics": [{
                "Namespace": "N", "Dimensions": dims,
                "Metrics": [{"Name": metric, "Unit": "Count"}]}]},
            "Function": function,
        });
        doc[metric] = value;
        doc
    }

    #[test]
    fn a_matching_metric_is_a_datapoint_summed_over_lines() {
        let lines = [
            emf("f-1", json!([["Function"]]), "Disabled", json!(2)),
            json!({"level": "INFO", "message": "not a metric"}),
            emf("f-1", json!([["Function"]]), "Disabled", json!([1, 1])),
        ];
        let a = alarm();
        assert_eq!(a.datapoint(&lines), Some(4.0));
        assert!(a.breaches(4.0) && !a.breaches(0.0));
    }

    #[test]
    fn another_function_name_namespace_metric_or_dimension_set_is_no_datapoint() {
        let a = alarm();
        for doc in [
            emf(
                "endpoint-prober",
                json!([["Function"]]),
                "Disabled",
                json!(1),
            ),
            emf("f-1", json!([["Function"]]), "Probes", json!(1)),
            emf("f-1", json!([["Function", "Lane"]]), "Disabled", json!(1)),
            emf("f-1", json!([[]]), "Disabled", json!(1)),
        ] {
            assert_eq!(a.datapoint(std::slice::from_ref(&doc)), None, "{doc}");
        }
        let mut other_namespace = emf("f-1", json!([["Function"]]), "Disabled", json!(1));
        other_namespace["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("M");
        assert_eq!(a.datapoint(&[other_namespace]), None);
    }

    #[test]
    fn emf_documents_are_picked_out_of_the_log_lines() {
        let logs = "{\"level\":\"WARN\",\"message\":\"x\"}\nnot json\n{\"_aws\":{},\"A\":1}\n";
        assert_eq!(emf_documents(logs), [json!({"_aws": {}, "A": 1})]);
    }
}
