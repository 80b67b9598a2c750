//! The delivery queue message: one event for one subscription.
//!
//! Ingestion writes one per (transition, matching subscription) to the
//! DeliveryQueue; delivery posts `payload` as it is (its bytes are what gets
//! signed), and re-sends the message to the RetryQueue with the next attempt
//! number until it is delivered or dead-lettered.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::job_event::JobEventData;

/// Version of the message format.
pub const MESSAGE_VERSION: u8 = 1;

/// One recorded delivery attempt, carried along for the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// HTTP status, if a response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Error class when no acceptable response arrived (`timeout`, `connect`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A queued delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryMessage {
    /// Format version ([`MESSAGE_VERSION`]).
    pub v: u8,
    /// Owning company.
    pub company_id: String,
    /// Target subscription; re-read before each attempt.
    pub subscription_id: String,
    /// The event's idempotency key: also the `webhook-id` header.
    pub idempotency_key: String,
    /// The event type, e.g. `job.completed`.
    pub event_type: String,
    /// The attempt this message is for, from 1.
    pub attempt: u32,
    /// Not to be attempted before this time (retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// Earlier attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AttemptRecord>,
    /// The exact JSON body to POST.
    pub payload: Box<RawValue>,
}

/// The deterministic idempotency key of the event that a stream record
/// (`event_id`) produces for a subscription: a re-processed record yields
/// the same key.
pub fn idempotency_key(subscription_id: &str, event_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(subscription_id.as_bytes())
        .chain_update(b"\n")
        .chain_update(event_id.as_bytes())
        .finalize();
    let mut key = String::with_capacity(4 + 32);
    key.push_str("evt_");
    for b in &digest[..16] {
        key.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        key.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    key
}

#[derive(Serialize)]
struct Payload<'a, D> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: &'a str,
    idempotency_key: &'a str,
    subscription_id: &'a str,
    company_id: &'a str,
    data: D,
}

#[derive(Serialize)]
struct FirstAttempt<'a> {
    v: u8,
    company_id: &'a str,
    subscription_id: &'a str,
    idempotency_key: &'a str,
    event_type: &'a str,
    attempt: u32,
    payload: Payload<'a, &'a RawValue>,
}

/// What is common to every message one event produces.
#[derive(Debug, Clone, Copy)]
pub struct EventEnvelope<'a> {
    /// Owning company.
    pub company_id: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Event time (RFC 3339, milliseconds).
    pub timestamp: &'a str,
    /// The serialised `data` object, shared by every subscription.
    pub data: &'a RawValue,
}

impl EventEnvelope<'_> {
    /// The first-attempt message body for `subscription_id`, with the
    /// event's idempotency key.
    pub fn message_body(&self, subscription_id: &str, idempotency_key: &str) -> String {
        let msg = FirstAttempt {
            v: MESSAGE_VERSION,
            company_id: self.company_id,
            subscription_id,
            idempotency_key,
            event_type: self.event_type,
            attempt: 1,
            payload: Payload {
                event_type: self.event_type,
                timestamp: self.timestamp,
                idempotency_key,
                subscription_id,
                company_id: self.company_id,
                data: self.data,
            },
        };
        serde_json::to_string(&msg).expect("messages serialise")
    }
}

/// The serialised `data` of a job event.
pub fn job_data(data: &JobEventData<'_>) -> Box<RawValue> {
    serde_json::value::to_raw_value(data).expect("event data serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_deterministic_and_distinct() {
        let a = idempotency_key("sub_1", "evt-1");
        assert_eq!(a, idempotency_key("sub_1", "evt-1"));
        assert_ne!(a, idempotency_key("sub_2", "evt-1"));
        assert_ne!(a, idempotency_key("sub_1", "evt-2"));
        assert!(a.starts_with("evt_") && a.len() == 36, "{a}");
    }

    #[test]
    fn message_bodies_round_trip_and_carry_the_payload() {
        let data = RawValue::from_string(r#"{"job_id":"j-1"}"#.to_owned()).unwrap();
        let envelope = EventEnvelope {
            company_id: "acme",
            event_type: "job.completed",
            timestamp: "2026-11-22T10:00:00.000Z",
            data: &data,
        };
        let body = envelope.message_body("sub_1", "evt_x");
        let msg: DeliveryMessage = serde_json::from_str(&body).unwrap();
        assert_eq!(msg.attempt, 1);
        assert_eq!(msg.subscription_id, "sub_1");
        let payload: serde_json::Value = serde_json::from_str(msg.payload.get()).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "type": "job.completed",
                "timestamp": "2026-11-22T10:00:00.000Z",
                "idempotency_key": "evt_x",
                "subscription_id": "sub_1",
                "company_id": "acme",
                "data": {"job_id": "j-1"}
            })
        );
    }
}
