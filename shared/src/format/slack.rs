//! Slack: a Block Kit message per event.

use serde_json::{Value, json};

use super::EventView;

/// The Block Kit message for `event`.
pub fn message(event: &EventView) -> Value {
    json!({ "text": event.event_type() })
}
