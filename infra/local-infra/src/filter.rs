//! Event filtering of an event source mapping (`FilterCriteria`), which
//! Lambda applies before it batches records, so the local runners apply it
//! too. Supported: the exact-match subset of the pattern syntax (objects of
//! keys whose leaves are lists of literal values), which is what the
//! template uses. A pattern with content filters (`prefix`, `numeric`,
//! `exists`, `anything-but`, ...) is refused; the runner then passes every
//! record, and the start-up line of emulator gaps says so.

use serde_json::Value;

/// A filter pattern outside the supported subset.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Not JSON.
    #[error("filter pattern {pattern:?} is not JSON: {source}")]
    Json {
        /// The pattern.
        pattern: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Uses syntax the local runner does not evaluate.
    #[error("filter pattern {0:?} uses content filters the local runner does not evaluate")]
    Unsupported(String),
}

/// The filters of one mapping: a record passes when any pattern matches;
/// no patterns pass everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    patterns: Vec<Value>,
}

impl Filter {
    /// Parses the mapping's patterns.
    pub fn parse(patterns: &[String]) -> Result<Self, FilterError> {
        let patterns = patterns
            .iter()
            .map(|p| {
                let value: Value = serde_json::from_str(p).map_err(|source| FilterError::Json {
                    pattern: p.clone(),
                    source,
                })?;
                if supported(&value) {
                    Ok(value)
                } else {
                    Err(FilterError::Unsupported(p.clone()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether `record` (the record as the function receives it, as JSON)
    /// passes.
    pub fn passes(&self, record: &Value) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| matches(p, record))
    }
}

fn supported(pattern: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields.values().all(|v| match v {
            Value::Array(values) => values.iter().all(|v| !v.is_object() && !v.is_array()),
            Value::Object(_) => supported(v),
            _ => false,
        }),
        _ => false,
    }
}

fn matches(pattern: &Value, value: &Value) -> bool {
    let Value::Object(fields) = pattern else {
        return false;
    };
    fields.iter().all(|(key, expected)| {
        let Some(actual) = value.get(key) else {
            return false;
        };
        match expected {
            Value::Array(allowed) => match actual {
                Value::Array(items) => items.iter().any(|i| allowed.contains(i)),
                scalar => allowed.contains(scalar),
            },
            nested => matches(nested, actual),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_templates_pattern_keeps_inserts_and_modifies() {
        let f = Filter::parse(&[r#"{"eventName": ["INSERT", "MODIFY"]}"#.to_owned()]).unwrap();
        assert!(f.passes(&json!({"eventName": "INSERT"})));
        assert!(f.passes(&json!({"eventName": "MODIFY"})));
        assert!(!f.passes(&json!({"eventName": "REMOVE"})));
        assert!(!f.passes(&json!({})));
    }

    #[test]
    fn nested_keys_and_alternative_patterns() {
        let f = Filter::parse(&[
            r#"{"dynamodb": {"NewImage": {"state": {"S": ["FAILED"]}}}}"#.to_owned(),
            r#"{"eventName": ["REMOVE"]}"#.to_owned(),
        ])
        .unwrap();
        assert!(f.passes(
            &json!({"eventName": "MODIFY", "dynamodb": {"NewImage": {"state": {"S": "FAILED"}}}})
        ));
        assert!(!f.passes(
            &json!({"eventName": "MODIFY", "dynamodb": {"NewImage": {"state": {"S": "RUNNING"}}}})
        ));
        assert!(f.passes(&json!({"eventName": "REMOVE"})));
        assert!(Filter::default().passes(&json!({"anything": 1})));
    }

    #[test]
    fn content_filters_are_refused_not_guessed() {
        let err = Filter::parse(&[r#"{"eventName": [{"prefix": "IN"}]}"#.to_owned()]).unwrap_err();
        assert!(matches!(err, FilterError::Unsupported(_)), "{err}");
        assert!(Filter::parse(&["not json".to_owned()]).is_err());
    }
}
