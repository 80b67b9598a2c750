//! Operational events: what happened to an endpoint, published to an
//! EventBridge bus for the platform to route (email, chat, its own
//! systems). Publishing is best effort: the state change it reports is
//! already stored, so a failed `PutEvents` is logged and counted, never
//! retried by re-running the delivery.

use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::health::LastFailure;
use crate::domain::subscription::Subscription;

/// `source` of every operational event.
pub const SOURCE: &str = "webhooks.operational";

/// The kinds of operational event (their `detail-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationalEventType {
    /// The breaker opened: the endpoint keeps failing, events are parked.
    #[serde(rename = "endpoint.failing")]
    EndpointFailing,
    /// A probe succeeded: the breaker closed, parked events drain.
    #[serde(rename = "endpoint.recovered")]
    EndpointRecovered,
    /// The endpoint failed for `DisableAfter`: the subscription is disabled.
    #[serde(rename = "endpoint.disabled")]
    EndpointDisabled,
    /// A disabled subscription was enabled through the API.
    #[serde(rename = "endpoint.enabled")]
    EndpointEnabled,
    /// An event used up its retry schedule and is kept as `failed`.
    #[serde(rename = "message.attempt.exhausted")]
    MessageAttemptExhausted,
}

impl OperationalEventType {
    /// The `detail-type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EndpointFailing => "endpoint.failing",
            Self::EndpointRecovered => "endpoint.recovered",
            Self::EndpointDisabled => "endpoint.disabled",
            Self::EndpointEnabled => "endpoint.enabled",
            Self::MessageAttemptExhausted => "message.attempt.exhausted",
        }
    }
}

/// The `detail` of an operational event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationalEvent {
    /// What happened (also the `detail-type`).
    #[serde(rename = "type")]
    pub event_type: OperationalEventType,
    /// Owning company.
    pub company_id: String,
    /// The subscription.
    pub subscription_id: String,
    /// Its endpoint.
    pub url: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Start of the failure streak, if one is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// Failed attempts in the streak.
    pub consecutive_failures: u64,
    /// The latest failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
    /// Events parked for the subscription (counted up to 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_events: Option<u64>,
    /// The event concerned (`message.attempt.exhausted`).
    #[serde(
        rename = "idempotency_key",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub webhook_id: Option<String>,
    /// Its type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_event_type: Option<String>,
}

impl OperationalEvent {
    /// An event about `sub` as it stands.
    pub fn about(event_type: OperationalEventType, sub: &Subscription, at: DateTime<Utc>) -> Self {
        Self {
            event_type,
            company_id: sub.company_id.clone(),
            subscription_id: sub.subscription_id.clone(),
            url: sub.url.clone(),
            at,
            failing_since: sub.health.failing_since,
            consecutive_failures: sub.health.consecutive_failures,
            last_failure: sub.health.last_failure.clone(),
            parked_events: None,
            webhook_id: None,
            message_event_type: None,
        }
    }

    /// With the parked count.
    pub fn with_parked(mut self, parked: Option<u64>) -> Self {
        self.parked_events = parked;
        self
    }
}

/// Publishes operational events to one bus.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

/// `PutEvents` failed or refused the entry.
#[derive(Debug, thiserror::Error)]
#[error("EventBridge PutEvents of {event_type} to bus {bus} failed: {message}")]
pub struct PublishError {
    /// The event's type.
    pub event_type: &'static str,
    /// The bus.
    pub bus: String,
    /// The SDK's error, or the entry's error code and message.
    pub message: String,
}

impl Publisher {
    /// A publisher to the bus `bus` (its name or ARN).
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// Publishes `event`.
    pub async fn publish(&self, event: &OperationalEvent) -> Result<(), PublishError> {
        let event_type = event.event_type.as_str();
        let fail = |message: String| PublishError {
            event_type,
            bus: self.bus.clone(),
            message,
        };
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event_type)
            .detail(serde_json::to_string(event).expect("operational events serialise"))
            .resources(&event.subscription_id)
            .time(aws_smithy_types::DateTime::from_millis(
                event.at.timestamp_millis(),
            ))
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e).to_string()))?;
        if out.failed_entry_count > 0 {
            let why = out
                .entries
                .unwrap_or_default()
                .into_iter()
                .find_map(|e| {
                    e.error_code
                        .map(|c| (c, e.error_message.unwrap_or_default()))
                })
                .map(|(c, m)| format!("{c}: {m}"))
                .unwrap_or_else(|| "entry refused".to_owned());
            return Err(fail(why));
        }
        tracing::info!(
            event_type,
            subscription_id = %event.subscription_id,
            "operational event published"
        );
        Ok(())
    }

    /// Publishes `event`, logging a failure (the state change it reports
    /// is already stored). Returns whether it was published.
    pub async fn publish_logged(&self, event: &OperationalEvent) -> bool {
        match self.publish(event).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, subscription_id = %event.subscription_id, "operational event not published");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_serialise_as_their_detail_type() {
        for t in [
            OperationalEventType::EndpointFailing,
            OperationalEventType::EndpointRecovered,
            OperationalEventType::EndpointDisabled,
            OperationalEventType::EndpointEnabled,
            OperationalEventType::MessageAttemptExhausted,
        ] {
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.as_str().to_owned())
            );
        }
    }
}
