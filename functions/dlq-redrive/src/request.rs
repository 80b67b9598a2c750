//! The invocation input: which dead-lettered deliveries to move, how many,
//! and whether to only count them.

use serde::Deserialize;
use serde_json::Value;
use shared::domain::message::DeliveryMessage;
use shared::domain::subscription::{ID_PREFIX, is_subscription_id};
use shared::operator_request::RequestError;

/// `max_messages` when the request leaves it out.
pub const DEFAULT_MAX_MESSAGES: usize = 1000;

/// Largest `max_messages` a request may ask for. One run holds every
/// message it examines in flight, and it must finish inside one Lambda
/// invocation; larger redrives are several runs.
pub const MAX_MAX_MESSAGES: usize = 10_000;

/// An invalid redrive request, for `reason`.
fn invalid(reason: impl Into<String>) -> RequestError {
    RequestError::new("redrive", reason)
}

/// The input exactly as it may be written; anything else is rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    subscription_id: Option<String>,
    #[serde(default)]
    company_id: Option<String>,
    #[serde(default)]
    max_messages: Option<u64>,
    #[serde(default)]
    dry_run: Option<bool>,
}

/// Which deliveries a run takes: the filters are ANDed, and a filter left
/// out matches any value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only deliveries of this company.
    pub company_id: Option<String>,
    /// Only deliveries to this subscription.
    pub subscription_id: Option<String>,
}

impl Selection {
    /// Whether `message` is selected.
    pub fn matches(&self, message: &DeliveryMessage) -> bool {
        self.company_id
            .as_deref()
            .is_none_or(|c| c == message.company_id)
            && self
                .subscription_id
                .as_deref()
                .is_none_or(|s| s == message.subscription_id)
    }
}

/// A validated redrive request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveRequest {
    /// Which deliveries to move.
    pub selection: Selection,
    /// At most this many matching deliveries are taken in one run.
    pub max_messages: usize,
    /// Count what would be moved, move nothing.
    pub dry_run: bool,
}

impl Default for RedriveRequest {
    fn default() -> Self {
        Self {
            selection: Selection::default(),
            max_messages: DEFAULT_MAX_MESSAGES,
            dry_run: false,
        }
    }
}

fn filter(field: &str, value: Option<String>) -> Result<Option<String>, RequestError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(invalid(format!(
            "{field} must not be empty; leave it out to match any {field}"
        ))),
        Some(v) if v.trim() != v => Err(invalid(format!(
            "{field} must not have leading or trailing spaces"
        ))),
        other => Ok(other),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl RedriveRequest {
    /// Parses and validates the invocation payload. `null` (an invocation
    /// without payload) is the default request: every message, up to
    /// [`DEFAULT_MAX_MESSAGES`].
    pub fn from_event(event: Value) -> Result<Self, RequestError> {
        let raw: RawRequest = match event {
            Value::Null => RawRequest::default(),
            // Serde would also read a struct from an array, by position.
            Value::Object(_) => {
                serde_json::from_value(event).map_err(|e| invalid(e.to_string()))?
            }
            other => {
                return Err(invalid(format!(
                    "expected a JSON object, got {}",
                    kind(&other)
                )));
            }
        };
        let max_messages = match raw.max_messages {
            None => DEFAULT_MAX_MESSAGES,
            Some(n) if (1..=MAX_MAX_MESSAGES as u64).contains(&n) => n as usize,
            Some(n) => {
                return Err(invalid(format!(
                    "max_messages must be from 1 to {MAX_MAX_MESSAGES}, got {n}"
                )));
            }
        };
        let subscription_id = filter("subscription_id", raw.subscription_id)?;
        if let Some(id) = &subscription_id
            && !is_subscription_id(id)
        {
            return Err(invalid(format!(
                "subscription_id {id:?} is not a subscription id ({ID_PREFIX} and 32 hex digits)"
            )));
        }
        Ok(Self {
            selection: Selection {
                company_id: filter("company_id", raw.company_id)?,
                subscription_id,
            },
            max_messages,
            dry_run: raw.dry_run.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(event: Value) -> String {
        RedriveRequest::from_event(event).unwrap_err().to_string()
    }

    const SUB: &str = "sub_0193a5b2c4d67e8f9a0b1c2d3e4f5a6b";

    #[test]
    fn a_full_request_is_read() {
        let r = RedriveRequest::from_event(json!({
            "subscription_id": SUB,
            "company_id": "acme",
            "max_messages": 25,
            "dry_run": true
        }))
        .unwrap();
        assert_eq!(
            r,
            RedriveRequest {
                selection: Selection {
                    company_id: Some("acme".into()),
                    subscription_id: Some(SUB.into()),
                },
                max_messages: 25,
                dry_run: true,
            }
        );
    }

    #[test]
    fn absent_fields_take_their_defaults() {
        for event in [json!({}), Value::Null, json!({"max_messages": null})] {
            assert_eq!(
                RedriveRequest::from_event(event).unwrap(),
                RedriveRequest::default()
            );
        }
        assert_eq!(RedriveRequest::default().max_messages, DEFAULT_MAX_MESSAGES);
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_errors() {
        let e = error(json!({"subscription": "sub_1"}));
        assert!(e.contains("unknown field `subscription`"), "{e}");
        let e = error(json!({"max_messages": "10"}));
        assert!(e.contains("invalid type"), "{e}");
        let e = error(json!({"max_messages": -1}));
        assert!(e.contains("invalid value"), "{e}");
        let e = error(json!({"dry_run": "yes"}));
        assert!(e.contains("invalid type"), "{e}");
        let e = error(json!([SUB]));
        assert!(e.contains("expected a JSON object, got an array"), "{e}");
        let e = error(json!("sub_1"));
        assert!(e.contains("got a string"), "{e}");
    }

    #[test]
    fn max_messages_is_bounded() {
        assert!(error(json!({"max_messages": 0})).contains("from 1 to 10000"));
        assert!(error(json!({"max_messages": 10_001})).contains("got 10001"));
        let r = RedriveRequest::from_event(json!({"max_messages": 10_000})).unwrap();
        assert_eq!(r.max_messages, MAX_MAX_MESSAGES);
    }

    #[test]
    fn filters_must_be_usable_values() {
        let e = error(json!({"company_id": ""}));
        assert!(e.contains("company_id must not be empty"), "{e}");
        let e = error(json!({"subscription_id": " sub_1"}));
        assert!(e.contains("subscription_id must not have"), "{e}");
        let e = error(json!({"subscription_id": "sub_1"}));
        assert!(e.contains("\"sub_1\" is not a subscription id"), "{e}");
    }

    #[test]
    fn errors_become_invalid_request_diagnostics() {
        let d: lambda_runtime::Diagnostic = RedriveRequest::from_event(json!({"x": 1}))
            .unwrap_err()
            .into();
        assert_eq!(d.error_type, "InvalidRequest");
        assert!(
            d.error_message
                .starts_with("invalid redrive request: unknown field `x`")
        );
    }

    #[test]
    fn filters_are_anded_and_absent_ones_match_anything() {
        let body = shared::domain::message::EventEnvelope {
            sequence: None,
            company_id: "acme",
            event_type: "job.completed",
            timestamp: "2026-11-22T10:00:00.000Z",
            data: &serde_json::value::to_raw_value(&json!({})).unwrap(),
        }
        .message_body("sub_1", "evt_1");
        let m = DeliveryMessage::parse(&body).unwrap();
        let sel = |c: Option<&str>, s: Option<&str>| Selection {
            company_id: c.map(Into::into),
            subscription_id: s.map(Into::into),
        };
        assert!(sel(None, None).matches(&m));
        assert!(sel(Some("acme"), None).matches(&m));
        assert!(sel(None, Some("sub_1")).matches(&m));
        assert!(sel(Some("acme"), Some("sub_1")).matches(&m));
        assert!(!sel(Some("globex"), Some("sub_1")).matches(&m));
        assert!(!sel(Some("acme"), Some("sub_2")).matches(&m));
        assert!(!sel(None, Some("sub_2")).matches(&m));
    }
}
