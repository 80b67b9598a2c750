//! The delivery queue message: one event for one subscription.
//!
//! Ingestion writes one per (transition, matching subscription) to the
//! DeliveryQueue; delivery posts `payload` as it is (its bytes are what gets
//! signed), and re-sends the message to the RetryQueue with the next attempt
//! number until it is delivered or dead-lettered.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::domain::job_event::{JobEventData, timestamp};

/// Version of the message format.
pub const MESSAGE_VERSION: u8 = 1;

/// Event type of test events sent through `POST /webhooks/{id}/test`.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// Most attempt records a message carries; older ones are dropped first so a
/// message redriven many times stays small.
pub const MAX_HISTORY: usize = 20;

/// SQS message attribute on dead-lettered messages saying why they are
/// there (see [`DeadLetterReason`]).
pub const DEAD_LETTER_REASON_ATTRIBUTE: &str = "dead_letter_reason";

/// Why a message was moved to the DeadLetterQueue by the delivery function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Every attempt of the retry schedule failed.
    Exhausted,
    /// The body is not a delivery message this version understands.
    Malformed,
}

impl DeadLetterReason {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exhausted => "exhausted",
            Self::Malformed => "malformed",
        }
    }
}

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
    /// The event's id, sent as the `webhook-id` header: the same on every
    /// attempt, so receivers deduplicate on it. Serialised as
    /// `idempotency_key`, the name payloads and stored items carry.
    #[serde(rename = "idempotency_key")]
    pub webhook_id: String,
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
    /// Set on the prober's probe of an open breaker: the parked event's key.
    /// A probe is attempted even though the breaker is open, and its
    /// outcome closes the breaker or schedules the next probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Where the event stands among its source's events: for a job event,
    /// the stream record's sequence number, which grows with every change
    /// of one job. Parked events of one job drain in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// The exact JSON body to POST.
    pub payload: Box<RawValue>,
}

impl DeliveryMessage {
    /// Parses a queue message body; `None` when it is not a delivery
    /// message of a known version.
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str::<Self>(body)
            .ok()
            .filter(|m| m.v == MESSAGE_VERSION && m.attempt >= 1)
    }

    /// The message body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("messages serialise")
    }

    /// Records a failed attempt in the history (keeping the last
    /// [`MAX_HISTORY`]).
    pub fn record(&mut self, record: AttemptRecord) {
        self.history.push(record);
        if self.history.len() > MAX_HISTORY {
            let excess = self.history.len() - MAX_HISTORY;
            self.history.drain(..excess);
        }
    }

    /// The message for the attempt after this one, not before `not_before`.
    pub fn next_attempt(&self, not_before: DateTime<Utc>) -> Self {
        Self {
            attempt: self.attempt + 1,
            not_before: Some(not_before),
            ..self.clone()
        }
    }

    /// The message moved back to the DeliveryQueue by a redrive, a drain
    /// or a recover: attempt count reset, due now, history kept for the
    /// record.
    pub fn redriven(mut self) -> Self {
        self.attempt = 1;
        self.not_before = None;
        self.probe = None;
        self
    }

    /// The events that must reach the endpoint in order share this key:
    /// the job of a job event (its payload's `data.job_id`). `None` for
    /// events that need no order among others (test events).
    pub fn order_group(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Data {
            job_id: String,
        }
        #[derive(Deserialize)]
        struct Payload {
            data: Data,
        }
        serde_json::from_str::<Payload>(self.payload.get())
            .ok()
            .map(|p| p.data.job_id)
    }

    /// When the event arrived: the `timestamp` of its payload (the time of
    /// the transition that made it). Parked events are ordered by it.
    pub fn event_time(&self) -> Option<DateTime<Utc>> {
        #[derive(Deserialize)]
        struct Timestamp {
            timestamp: DateTime<Utc>,
        }
        serde_json::from_str::<Timestamp>(self.payload.get())
            .ok()
            .map(|t| t.timestamp)
    }
}

/// A `webhook.test` event for a subscription, as a first-attempt message
/// body, with a fresh event id.
pub fn test_event_message(
    company_id: &str,
    subscription_id: &str,
    now: DateTime<Utc>,
) -> (String, String) {
    let key = webhook_id(subscription_id, &format!("test:{}", uuid::Uuid::new_v4()));
    let at = timestamp(now);
    let data = serde_json::value::to_raw_value(&TestEventData {
        message: TEST_EVENT_MESSAGE,
        requested_at: &at,
    })
    .expect("test data serialises");
    let envelope = EventEnvelope {
        company_id,
        event_type: TEST_EVENT_TYPE,
        timestamp: &at,
        data: &data,
        sequence: None,
    };
    let body = envelope.message_body(subscription_id, &key);
    (key, body)
}

/// Longest `MessageGroupId` SQS accepts.
pub const MAX_GROUP_ID_LEN: usize = 128;

/// The `MessageGroupId` of a company's messages on the DeliveryQueue and the
/// RetryQueue (SQS fair queues): the company id itself when SQS accepts it
/// as a group id (1 to 128 ASCII letters, digits and punctuation), else a
/// stable `h-` + hex SHA-256 of it, so company ids with spaces, non-ASCII
/// characters or more than 128 bytes group just as well.
pub fn group_id(company_id: &str) -> std::borrow::Cow<'_, str> {
    let valid = (1..=MAX_GROUP_ID_LEN).contains(&company_id.len())
        && company_id.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        return std::borrow::Cow::Borrowed(company_id);
    }
    let digest = Sha256::digest(company_id.as_bytes());
    let mut id = String::with_capacity(2 + 64);
    id.push_str("h-");
    for b in digest {
        id.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        id.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    std::borrow::Cow::Owned(id)
}

/// The deterministic id (`webhook-id`) of the event that a stream record
/// (`event_id`) produces for a subscription: a re-processed record yields
/// the same key.
pub fn webhook_id(subscription_id: &str, event_id: &str) -> String {
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

// The catalogue (crate::catalogue) derives the events' JSON Schemas from
// this type, so its doc comments are what customers read there.
/// The body POSTed to the endpoint: the envelope every event shares, with
/// the event's `data`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Payload<'a, D> {
    /// The event type, e.g. `job.completed`.
    #[serde(rename = "type")]
    pub(crate) event_type: &'a str,
    /// When the event happened (RFC 3339, UTC, milliseconds).
    #[schemars(extend("format" = "date-time"))]
    pub(crate) timestamp: &'a str,
    /// The event's id for this subscription, also the `webhook-id` header:
    /// the same on every retry and redelivery, so receivers deduplicate on
    /// it.
    #[serde(rename = "idempotency_key")]
    pub(crate) webhook_id: &'a str,
    /// The subscription the event was delivered to.
    pub(crate) subscription_id: &'a str,
    /// The company that owns the subscription.
    pub(crate) company_id: &'a str,
    /// Where a platform event comes from, and what it is about (absent on
    /// job events).
    #[serde(flatten)]
    pub(crate) context: EventContext<'a>,
    /// What happened; its shape depends on `type`.
    pub(crate) data: D,
}

/// What a platform event (one that came in as a CloudEvent) says about
/// itself beyond its type: its source and, when it has them, the app and
/// the subject it is about. Every field is omitted when absent, so job
/// events carry none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct EventContext<'a> {
    /// The platform service that published the event (the CloudEvent's
    /// `source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
    /// The application the event belongs to (the CloudEvent's `appid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<&'a str>,
    /// The kind of thing the event is about, e.g. `work` or `segment` (the
    /// CloudEvent's `subjecttype`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_type: Option<&'a str>,
    /// The id of the thing the event is about (the CloudEvent's `subject`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<&'a str>,
    /// What happened to the subject, e.g. `created` or `failed` (the
    /// CloudEvent's `verb`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verb: Option<&'a str>,
}

/// The `data` of a `webhook.test` event.
#[derive(Serialize, JsonSchema)]
pub(crate) struct TestEventData<'a> {
    /// A fixed explanation.
    pub(crate) message: &'a str,
    /// When the test was requested (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub(crate) requested_at: &'a str,
}

/// The `message` of every test event.
pub const TEST_EVENT_MESSAGE: &str = "This is a test event sent from the webhooks API.";

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
    /// The event's place among its source's events (the stream record's
    /// sequence number of a job event), if it has one.
    pub sequence: Option<&'a str>,
}

impl EventEnvelope<'_> {
    /// The first-attempt message body for `subscription_id`, with the
    /// event's id (`webhook-id`).
    pub fn message_body(&self, subscription_id: &str, webhook_id: &str) -> String {
        self.message_body_with(subscription_id, webhook_id, EventContext::default())
    }

    /// [`Self::message_body`] of a platform event, whose payload also
    /// carries its `context`.
    pub fn message_body_with(
        &self,
        subscription_id: &str,
        webhook_id: &str,
        context: EventContext<'_>,
    ) -> String {
        self.bodies(context).body(subscription_id, webhook_id)
    }

    /// The first-attempt message bodies of this event (a platform event's
    /// `context` in its payload), for one subscription after another.
    pub fn bodies(&self, context: EventContext<'_>) -> MessageBodies {
        MessageBodies::new(self, context)
    }
}

/// One event's first-attempt message bodies, rendered once: all but the
/// subscription id and the event id (`webhook-id`) is the same in every
/// subscription's body (the shared `data` above all), so it is serialised
/// once, and each body is those pieces with the two ids between them.
///
/// A body is the JSON object (in this order) `v` ([`MESSAGE_VERSION`]),
/// `company_id`, `subscription_id`, `idempotency_key` (the event id),
/// `event_type`, `attempt` (1), `sequence` (if any) and `payload`: the
/// webhook's body, `type`, `timestamp`, `idempotency_key`,
/// `subscription_id`, `company_id`, the context's fields, `data`.
/// [`DeliveryMessage`] reads it.
#[derive(Debug, Clone)]
pub struct MessageBodies {
    /// `{"v":1,"company_id":…,"subscription_id":`
    head: String,
    /// `,"event_type":…,"payload":{…,"idempotency_key":`
    middle: String,
    /// `,"company_id":…,"data":…}}`
    tail: String,
}

impl MessageBodies {
    fn new(envelope: &EventEnvelope<'_>, context: EventContext<'_>) -> Self {
        let mut head = String::with_capacity(64 + envelope.company_id.len());
        head.push_str("{\"v\":");
        head.push_str(itoa::Buffer::new().format(MESSAGE_VERSION));
        head.push_str(",\"company_id\":");
        push_json_str(&mut head, envelope.company_id);
        head.push_str(",\"subscription_id\":");

        let mut middle = String::with_capacity(160);
        middle.push_str(",\"event_type\":");
        push_json_str(&mut middle, envelope.event_type);
        middle.push_str(",\"attempt\":1");
        if let Some(sequence) = envelope.sequence {
            middle.push_str(",\"sequence\":");
            push_json_str(&mut middle, sequence);
        }
        middle.push_str(",\"payload\":{\"type\":");
        push_json_str(&mut middle, envelope.event_type);
        middle.push_str(",\"timestamp\":");
        push_json_str(&mut middle, envelope.timestamp);
        middle.push_str(",\"idempotency_key\":");

        let data = envelope.data.get();
        let mut tail = String::with_capacity(128 + envelope.company_id.len() + data.len());
        tail.push_str(",\"company_id\":");
        push_json_str(&mut tail, envelope.company_id);
        let EventContext {
            source,
            app_id,
            subject_type,
            subject_id,
            verb,
        } = context;
        for (name, value) in [
            ("source", source),
            ("app_id", app_id),
            ("subject_type", subject_type),
            ("subject_id", subject_id),
            ("verb", verb),
        ] {
            if let Some(value) = value {
                tail.push_str(",\"");
                tail.push_str(name);
                tail.push_str("\":");
                push_json_str(&mut tail, value);
            }
        }
        tail.push_str(",\"data\":");
        tail.push_str(data);
        tail.push_str("}}");
        Self { head, middle, tail }
    }

    /// The body for `subscription_id`, with the event's id (`webhook-id`)
    /// for it.
    pub fn body(&self, subscription_id: &str, webhook_id: &str) -> String {
        let mut body = String::with_capacity(
            self.head.len()
                + self.middle.len()
                + self.tail.len()
                + 2 * (subscription_id.len() + webhook_id.len())
                + 64,
        );
        body.push_str(&self.head);
        push_json_str(&mut body, subscription_id);
        body.push_str(",\"idempotency_key\":");
        push_json_str(&mut body, webhook_id);
        body.push_str(&self.middle);
        push_json_str(&mut body, webhook_id);
        body.push_str(",\"subscription_id\":");
        push_json_str(&mut body, subscription_id);
        body.push_str(&self.tail);
        body
    }
}

/// Appends `value` as a JSON string, escaped as `serde_json` escapes it.
fn push_json_str(out: &mut String, value: &str) {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(value).expect("strings serialise"));
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
    fn group_ids_are_the_company_when_sqs_accepts_it_else_a_stable_hash() {
        assert_eq!(group_id("acme"), "acme");
        assert_eq!(group_id("company-00_x.y:z"), "company-00_x.y:z");
        let long = "a".repeat(MAX_GROUP_ID_LEN);
        assert_eq!(group_id(&long), long.as_str());
        for odd in [
            "Acme Corp",
            "ünïcode",
            &"a".repeat(MAX_GROUP_ID_LEN + 1),
            "",
        ] {
            let g = group_id(odd);
            assert!(g.starts_with("h-") && g.len() == 66, "{odd:?}: {g}");
            assert!(g.bytes().all(|b| b.is_ascii_graphic()));
            assert_eq!(g, group_id(odd), "stable");
        }
        assert_ne!(group_id("Acme Corp"), group_id("Acme  Corp"));
    }

    #[test]
    fn idempotency_keys_are_deterministic_and_distinct() {
        let a = webhook_id("sub_1", "evt-1");
        assert_eq!(a, webhook_id("sub_1", "evt-1"));
        assert_ne!(a, webhook_id("sub_2", "evt-1"));
        assert_ne!(a, webhook_id("sub_1", "evt-2"));
        assert!(a.starts_with("evt_") && a.len() == 36, "{a}");
    }

    #[test]
    fn retries_and_redrives_carry_the_event_and_bounded_history() {
        let now = DateTime::from_timestamp(1_795_341_600, 0).unwrap();
        let (key, body) = test_event_message("acme", "sub_1", now);
        let mut msg = DeliveryMessage::parse(&body).unwrap();
        assert_eq!(msg.event_type, TEST_EVENT_TYPE);
        assert_eq!(msg.webhook_id, key);
        for attempt in 1..=30 {
            msg.record(AttemptRecord {
                attempt,
                at: now,
                status: Some(500),
                error: None,
            });
        }
        assert_eq!(msg.history.len(), MAX_HISTORY);
        assert_eq!(msg.history[0].attempt, 11, "oldest records dropped first");
        let next = msg.next_attempt(now);
        assert_eq!((next.attempt, next.not_before), (2, Some(now)));
        let parsed = DeliveryMessage::parse(&next.to_body()).unwrap();
        assert_eq!(parsed.payload.get(), msg.payload.get());
        assert_eq!(parsed.event_time(), Some(now));
        let back = parsed.redriven();
        assert_eq!((back.attempt, back.not_before), (1, None));
        assert_eq!(back.history.len(), MAX_HISTORY);
        assert!(DeliveryMessage::parse("{}").is_none());
        assert!(DeliveryMessage::parse(&body.replace("\"v\":1", "\"v\":9")).is_none());
    }

    /// The message as serde would write it: what [`MessageBodies`] must
    /// produce byte for byte.
    #[derive(Serialize)]
    struct FirstAttempt<'a> {
        v: u8,
        company_id: &'a str,
        subscription_id: &'a str,
        #[serde(rename = "idempotency_key")]
        webhook_id: &'a str,
        event_type: &'a str,
        attempt: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        sequence: Option<&'a str>,
        payload: Payload<'a, &'a RawValue>,
    }

    #[test]
    fn rendered_bodies_are_the_serialised_message_byte_for_byte() {
        let data = RawValue::from_string(
            r#"{"job_id":"j-\"1\"","note":"a\\b\nc","n":[1,2.5,null],"u":"é✓"}"#.to_owned(),
        )
        .unwrap();
        let odd = [
            "acme",
            "Acme \"Corp\"",
            "back\\slash",
            "tab\tnew\nline\u{1}",
            "ünï✓",
            "",
        ];
        let contexts = [
            EventContext::default(),
            EventContext {
                source: Some("//engine/aggregates"),
                app_id: Some("app \"1\""),
                subject_type: Some("work"),
                subject_id: Some("w\\1"),
                verb: Some("completed"),
            },
            EventContext {
                source: Some("/platform"),
                verb: Some("failed"),
                ..EventContext::default()
            },
        ];
        for text in odd {
            for sequence in [None, Some("4100000000001234567890"), Some(text)] {
                for context in contexts {
                    let envelope = EventEnvelope {
                        company_id: text,
                        event_type: "job.completed",
                        timestamp: "2026-11-22T10:00:00.000Z",
                        data: &data,
                        sequence,
                    };
                    let bodies = envelope.bodies(context);
                    for (sub, key) in [("sub_1", "evt_x"), (text, text)] {
                        let expected = serde_json::to_string(&FirstAttempt {
                            v: MESSAGE_VERSION,
                            company_id: text,
                            subscription_id: sub,
                            webhook_id: key,
                            event_type: "job.completed",
                            attempt: 1,
                            sequence,
                            payload: Payload {
                                event_type: "job.completed",
                                timestamp: "2026-11-22T10:00:00.000Z",
                                webhook_id: key,
                                subscription_id: sub,
                                company_id: text,
                                context,
                                data: &data,
                            },
                        })
                        .unwrap();
                        assert_eq!(bodies.body(sub, key), expected);
                        assert_eq!(envelope.message_body_with(sub, key, context), expected);
                        let msg = DeliveryMessage::parse(&expected).unwrap();
                        assert_eq!(
                            (msg.subscription_id.as_str(), msg.company_id.as_str()),
                            (sub, text)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn message_bodies_round_trip_and_carry_the_payload() {
        let data = RawValue::from_string(r#"{"job_id":"j-1"}"#.to_owned()).unwrap();
        let envelope = EventEnvelope {
            company_id: "acme",
            event_type: "job.completed",
            timestamp: "2026-11-22T10:00:00.000Z",
            data: &data,
            sequence: Some("4100000000001234567890"),
        };
        let body = envelope.message_body("sub_1", "evt_x");
        let msg: DeliveryMessage = serde_json::from_str(&body).unwrap();
        assert_eq!(msg.attempt, 1);
        assert_eq!(msg.subscription_id, "sub_1");
        assert_eq!(msg.sequence.as_deref(), Some("4100000000001234567890"));
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
