//! PagerDuty: an Events API v2 event per event.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::EventView;

/// A PagerDuty severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// `critical`.
    Critical,
    /// `error`.
    Error,
    /// `warning`.
    Warning,
    /// `info`.
    Info,
}

impl Severity {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }

    /// The severity named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Critical, Self::Error, Self::Warning, Self::Info]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A subscription's PagerDuty settings, opened.
#[derive(Clone, PartialEq, Eq)]
pub struct Options {
    /// The integration's routing key (a secret).
    pub routing_key: String,
    /// The severity of every trigger, instead of the default.
    pub severity: Option<Severity>,
}

/// The severity a trigger of `event_type` gets by default.
pub fn default_severity(event_type: &str) -> Severity {
    let _ = event_type;
    Severity::Error
}

/// The Events API v2 event for `event`.
pub fn event(event: &EventView, options: &Options) -> Value {
    json!({
        "routing_key": options.routing_key,
        "event_action": "trigger",
        "dedup_key": event.str("idempotency_key"),
        "payload": { "summary": event.event_type(), "source": "webhooks", "severity": "error" },
    })
}
