//! The standard payload, parsed once, as the built-in formats and
//! templates read it.

use serde_json::Value;
use serde_json::value::RawValue;

use super::RenderError;

/// A parsed standard payload (§4.3): `type`, `timestamp`,
/// `idempotency_key`, `subscription_id`, `company_id`, the platform
/// event's context (`source`, `app_id`, `subject_type`, `subject_id`,
/// `verb`) when it has one, and `data`.
#[derive(Debug, Clone)]
pub struct EventView {
    value: Value,
}

impl EventView {
    /// Parses `payload`; it must be a JSON object.
    pub fn parse(payload: &RawValue) -> Result<Self, RenderError> {
        let value: Value =
            serde_json::from_str(payload.get()).map_err(|e| RenderError::Payload(e.to_string()))?;
        if !value.is_object() {
            return Err(RenderError::Payload("not an object".into()));
        }
        Ok(Self { value })
    }

    /// The whole payload.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// A top-level string field.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.value.get(name)?.as_str()
    }

    /// The event type, e.g. `job.failed`.
    pub fn event_type(&self) -> &str {
        self.str("type").unwrap_or("")
    }

    /// The `data` object (`Null` when absent).
    pub fn data(&self) -> &Value {
        self.value.get("data").unwrap_or(&Value::Null)
    }
}
