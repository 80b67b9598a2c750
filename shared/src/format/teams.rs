//! Microsoft Teams: an Adaptive Card in the envelope Teams workflows
//! accept.

use serde_json::{Value, json};

use super::EventView;

/// The Teams message for `event`.
pub fn message(event: &EventView) -> Value {
    json!({ "type": "message", "attachments": [], "text": event.event_type() })
}
