//! Platform events: what the platform's services (other than the jobs
//! table) publish to the service's ingress, as CloudEvents 1.0 in the
//! structured JSON format, and the rules that turn one into a
//! [`PlatformEvent`] or refuse it with a [`Refusal`].
//!
//! A CloudEvent is accepted when it is a JSON object of at most
//! [`MAX_EVENT_BYTES`] with `specversion` `"1.0"`, an `id` and a `source`
//! (each at most [`MAX_ATTRIBUTE_BYTES`]), a `type` the catalogue lists as
//! a platform event (never `job.*` or `webhook.test`: those have their own
//! sources), the extension attribute `companyid` (the company whose
//! subscriptions receive it), the attributes its type requires (`appid`,
//! `subject`, `subjecttype`, `verb`), an optional `time` (RFC 3339), an
//! optional JSON `datacontenttype` and an optional `data` object that the
//! catalogue's schema of the type accepts.
//!
//! The event's id for a subscription (`webhook-id`) derives from its
//! `source` and `id` ([`PlatformEvent::webhook_id`]), as CloudEvents
//! defines an event's identity: a re-published or re-read event keeps its
//! id, and receivers deduplicate on it.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::filters::is_platform_type;
use crate::domain::job_event::timestamp;
use crate::domain::message::{self, EventContext, EventEnvelope, MessageBodies};

/// The one CloudEvents version accepted.
pub const SPEC_VERSION: &str = "1.0";
/// Largest accepted event, serialised, in bytes (128 KiB): its delivery
/// message, with the envelope, stays well inside SQS's 256 KiB.
pub const MAX_EVENT_BYTES: usize = 128 * 1024;
/// Longest `id`, `source`, `subject`, `companyid`, `appid`, `subjecttype`
/// or `verb`, in bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 256;
/// Longest `type` or `datacontenttype`, in bytes.
pub const MAX_TYPE_BYTES: usize = 128;
/// Longest refusal message, in bytes (values quoted in it are cut).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// How much of a refused value a refusal message quotes, in bytes.
const QUOTED_BYTES: usize = 64;

/// Why an event was refused: a stable code for machines (the dead-letter
/// message's `reason` attribute, metrics, alarms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalCode {
    /// Not a JSON object, or an attribute of the wrong JSON type.
    Malformed,
    /// `specversion` is not `1.0`.
    UnsupportedSpecversion,
    /// `type` is not a platform event type of the catalogue.
    UnknownType,
    /// No `companyid`: nobody to deliver it to.
    MissingCompany,
    /// A required attribute (`id`, `source`, `type`, `specversion`, or one
    /// the type requires) is absent.
    MissingAttribute,
    /// An attribute's value is not acceptable (too long, control
    /// characters, not RFC 3339, outside the vocabulary, ...).
    InvalidAttribute,
    /// `data` is not a JSON object the type's schema accepts.
    InvalidData,
    /// The event is larger than [`MAX_EVENT_BYTES`].
    TooLarge,
}

impl RefusalCode {
    /// Every code, in declaration order.
    pub const ALL: [Self; 8] = [
        Self::Malformed,
        Self::UnsupportedSpecversion,
        Self::UnknownType,
        Self::MissingCompany,
        Self::MissingAttribute,
        Self::InvalidAttribute,
        Self::InvalidData,
        Self::TooLarge,
    ];

    /// The stable wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedSpecversion => "unsupported_specversion",
            Self::UnknownType => "unknown_type",
            Self::MissingCompany => "missing_company",
            Self::MissingAttribute => "missing_attribute",
            Self::InvalidAttribute => "invalid_attribute",
            Self::InvalidData => "invalid_data",
            Self::TooLarge => "too_large",
        }
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event refused, with its code and a message for people (at most
/// [`MAX_MESSAGE_BYTES`], values quoted and cut).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// Why, for machines.
    pub code: RefusalCode,
    /// Why, for people.
    pub message: String,
}

impl Refusal {
    fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        crate::text::truncate(&mut message, MAX_MESSAGE_BYTES);
        Self { code, message }
    }
}

/// `value` quoted for a message, cut to a few dozen bytes.
fn quoted(value: &str) -> String {
    let cut = crate::text::prefix(value, QUOTED_BYTES);
    if cut.len() < value.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// A CloudEvent attribute a catalogue type may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// `appid`: the application the event belongs to.
    AppId,
    /// `subject`: the id of what the event is about.
    Subject,
    /// `subjecttype`: the kind of thing it is about.
    SubjectType,
    /// `verb`: what happened to it.
    Verb,
}

impl Attribute {
    /// The CloudEvent attribute name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AppId => "appid",
            Self::Subject => "subject",
            Self::SubjectType => "subjecttype",
            Self::Verb => "verb",
        }
    }

    /// The attribute named `name`, if a type can require it.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::AppId, Self::Subject, Self::SubjectType, Self::Verb]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// A validated platform event.
#[derive(Debug, Clone)]
pub struct PlatformEvent {
    /// The CloudEvent's `id`, unique within its source.
    pub id: String,
    /// The publishing service (`source`).
    pub source: String,
    /// The catalogue type (`type`).
    pub event_type: String,
    /// The company whose subscriptions receive it (`companyid`).
    pub company_id: String,
    /// The application it belongs to (`appid`).
    pub app_id: Option<String>,
    /// The kind of thing it is about (`subjecttype`).
    pub subject_type: Option<String>,
    /// The thing it is about (`subject`).
    pub subject_id: Option<String>,
    /// What happened to it (`verb`).
    pub verb: Option<String>,
    /// When it happened: `time` in UTC with milliseconds, or the time it
    /// was received when it has none.
    pub timestamp: String,
    /// `data`, serialised (`{}` when it has none).
    pub data: Box<RawValue>,
    event_key: String,
}

/// The structured CloudEvent as it comes in: every attribute the service
/// reads, as any JSON value so a wrong type is named, not a parse error.
/// Other attributes are ignored.
#[derive(Deserialize)]
struct Wire {
    specversion: Option<Value>,
    id: Option<Value>,
    source: Option<Value>,
    #[serde(rename = "type")]
    event_type: Option<Value>,
    time: Option<Value>,
    subject: Option<Value>,
    datacontenttype: Option<Value>,
    data: Option<Value>,
    data_base64: Option<Value>,
    companyid: Option<Value>,
    appid: Option<Value>,
    subjecttype: Option<Value>,
    verb: Option<Value>,
}

/// A string attribute: `None` when absent (or `null`), refused when not a
/// string, empty, longer than `max`, or holding control characters.
fn attribute<'a>(
    value: &'a Option<Value>,
    name: &str,
    max: usize,
) -> Result<Option<&'a str>, Refusal> {
    let Some(value) = value else {
        return Ok(None);
    };
    let Value::String(text) = value else {
        return Err(Refusal::new(
            RefusalCode::Malformed,
            format!("attribute {name} must be a string"),
        ));
    };
    if text.is_empty() {
        return Err(Refusal::new(
            RefusalCode::InvalidAttribute,
            format!("attribute {name} must not be empty"),
        ));
    }
    if text.len() > max {
        return Err(Refusal::new(
            RefusalCode::InvalidAttribute,
            format!(
                "attribute {name} is {} bytes, more than {max}: {}",
                text.len(),
                quoted(text)
            ),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(Refusal::new(
            RefusalCode::InvalidAttribute,
            format!(
                "attribute {name} holds control characters: {}",
                quoted(text)
            ),
        ));
    }
    Ok(Some(text))
}

fn required<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, Refusal> {
    value.ok_or_else(|| {
        Refusal::new(
            RefusalCode::MissingAttribute,
            format!("the required attribute {name} is missing"),
        )
    })
}

/// Whether `content_type` is JSON: `application/json`, or any `+json`
/// type, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json") || essence == "text/json"
}

impl PlatformEvent {
    /// Parses and validates the structured CloudEvent `body`, received at
    /// `received_at` (its time when it carries none).
    pub fn parse(body: &str, received_at: DateTime<Utc>) -> Result<Self, Refusal> {
        if body.len() > MAX_EVENT_BYTES {
            return Err(Refusal::new(
                RefusalCode::TooLarge,
                format!(
                    "the event is {} bytes, more than {MAX_EVENT_BYTES}",
                    body.len()
                ),
            ));
        }
        let wire: Wire = match serde_json::from_str(body) {
            Ok(wire) => wire,
            Err(e) => {
                return Err(Refusal::new(
                    RefusalCode::Malformed,
                    format!("not a CloudEvent in the structured JSON format: {e}"),
                ));
            }
        };
        let spec = required(
            attribute(&wire.specversion, "specversion", MAX_TYPE_BYTES)?,
            "specversion",
        )?;
        if spec != SPEC_VERSION {
            return Err(Refusal::new(
                RefusalCode::UnsupportedSpecversion,
                format!(
                    "specversion {} is not supported; only {SPEC_VERSION:?}",
                    quoted(spec)
                ),
            ));
        }
        let id = required(attribute(&wire.id, "id", MAX_ATTRIBUTE_BYTES)?, "id")?;
        let source = required(
            attribute(&wire.source, "source", MAX_ATTRIBUTE_BYTES)?,
            "source",
        )?;
        let event_type = required(attribute(&wire.event_type, "type", MAX_TYPE_BYTES)?, "type")?;
        let rules = platform_type(event_type)?;
        let company_id = attribute(&wire.companyid, "companyid", MAX_ATTRIBUTE_BYTES)?
            .ok_or_else(|| {
                Refusal::new(
                    RefusalCode::MissingCompany,
                    "the extension attribute companyid is missing: no company would receive the event",
                )
            })?;
        let app_id = attribute(&wire.appid, "appid", MAX_ATTRIBUTE_BYTES)?;
        let subject_id = attribute(&wire.subject, "subject", MAX_ATTRIBUTE_BYTES)?;
        let subject_type = attribute(&wire.subjecttype, "subjecttype", MAX_ATTRIBUTE_BYTES)?;
        let verb = attribute(&wire.verb, "verb", MAX_ATTRIBUTE_BYTES)?;
        for needed in &rules.requires {
            let present = match needed {
                Attribute::AppId => app_id.is_some(),
                Attribute::Subject => subject_id.is_some(),
                Attribute::SubjectType => subject_type.is_some(),
                Attribute::Verb => verb.is_some(),
            };
            if !present {
                return Err(Refusal::new(
                    RefusalCode::MissingAttribute,
                    format!("type {event_type} requires the attribute {}", needed.name()),
                ));
            }
        }
        check_vocabulary(event_type, subject_type, verb)?;
        let timestamp = match attribute(&wire.time, "time", MAX_TYPE_BYTES)? {
            None => timestamp(received_at),
            Some(time) => match DateTime::parse_from_rfc3339(time) {
                Ok(at) => self::timestamp(at.with_timezone(&Utc)),
                Err(e) => {
                    return Err(Refusal::new(
                        RefusalCode::InvalidAttribute,
                        format!("time {} is not an RFC 3339 time: {e}", quoted(time)),
                    ));
                }
            },
        };
        if let Some(content_type) =
            attribute(&wire.datacontenttype, "datacontenttype", MAX_TYPE_BYTES)?
            && !is_json(content_type)
        {
            return Err(Refusal::new(
                RefusalCode::InvalidAttribute,
                format!(
                    "datacontenttype {} is not JSON; only JSON data is accepted",
                    quoted(content_type)
                ),
            ));
        }
        if wire.data_base64.is_some() {
            return Err(Refusal::new(
                RefusalCode::InvalidData,
                "data_base64 is not accepted: data must be a JSON object",
            ));
        }
        let data = wire
            .data
            .unwrap_or_else(|| Value::Object(Default::default()));
        if !data.is_object() {
            return Err(Refusal::new(
                RefusalCode::InvalidData,
                "data must be a JSON object",
            ));
        }
        // What filters match (the attributes) and what receivers read (the
        // data) must agree, so an app webhook never gets another app's data.
        // In the order of `CONTEXT_FIELDS`: appid, subject, subjecttype, verb.
        for ((attribute, field), value) in crate::catalogue::CONTEXT_FIELDS.into_iter().zip([
            app_id,
            subject_id,
            subject_type,
            verb,
        ]) {
            if let Some(in_data) = data.get(field)
                && (in_data.as_str() != value || value.is_none())
            {
                return Err(Refusal::new(
                    RefusalCode::InvalidAttribute,
                    format!(
                        "data.{field} differs from the attribute {attribute} ({}): filters match \
                         the attribute, receivers read the data",
                        value.map_or_else(|| "absent".to_owned(), quoted)
                    ),
                ));
            }
        }
        if let Err(problems) = validate_data(event_type, &data) {
            return Err(Refusal::new(
                RefusalCode::InvalidData,
                format!(
                    "data does not match the schema of {event_type}: {}",
                    problems.join("; ")
                ),
            ));
        }
        let data = serde_json::value::to_raw_value(&data)
            .map_err(|e| Refusal::new(RefusalCode::InvalidData, format!("data: {e}")))?;
        // Written again compactly, numbers can take more room than they
        // came in (`1e9`): the bound holds for what is sent.
        if data.get().len() > MAX_EVENT_BYTES {
            return Err(Refusal::new(
                RefusalCode::TooLarge,
                format!(
                    "data is {} bytes as delivered, more than {MAX_EVENT_BYTES}",
                    data.get().len()
                ),
            ));
        }
        Ok(Self {
            event_key: event_key(source, id),
            id: id.to_owned(),
            source: source.to_owned(),
            event_type: event_type.to_owned(),
            company_id: company_id.to_owned(),
            app_id: app_id.map(str::to_owned),
            subject_type: subject_type.map(str::to_owned),
            subject_id: subject_id.map(str::to_owned),
            verb: verb.map(str::to_owned),
            timestamp,
            data,
        })
    }

    /// What the event says about itself beyond its type, as filters and
    /// payloads read it.
    pub fn context(&self) -> EventContext<'_> {
        EventContext {
            source: Some(&self.source),
            app_id: self.app_id.as_deref(),
            subject_type: self.subject_type.as_deref(),
            subject_id: self.subject_id.as_deref(),
            verb: self.verb.as_deref(),
        }
    }

    /// The event's identity among every event the service receives, built
    /// unambiguously from its `source` and `id` (see [`event_key`]).
    pub fn event_key(&self) -> &str {
        &self.event_key
    }

    /// The event's id (`webhook-id`) for `subscription_id`: the same for
    /// every reading of the same (`source`, `id`).
    pub fn webhook_id(&self, subscription_id: &str) -> String {
        message::webhook_id(subscription_id, &self.event_key)
    }

    /// What every message of this event shares.
    pub fn envelope(&self) -> EventEnvelope<'_> {
        EventEnvelope {
            company_id: &self.company_id,
            event_type: &self.event_type,
            timestamp: &self.timestamp,
            data: &self.data,
            sequence: None,
        }
    }

    /// The first-attempt delivery message of this event for
    /// `subscription_id`.
    pub fn message_body(&self, subscription_id: &str) -> String {
        self.bodies().body(subscription_id)
    }

    /// This event's first-attempt delivery messages, rendered once for
    /// every subscription it goes to.
    pub fn bodies(&self) -> PlatformBodies<'_> {
        PlatformBodies {
            event: self,
            bodies: self.envelope().bodies(self.context()),
        }
    }
}

/// A platform event's first-attempt delivery messages (see
/// [`PlatformEvent::bodies`]).
#[derive(Debug)]
pub struct PlatformBodies<'a> {
    event: &'a PlatformEvent,
    bodies: MessageBodies,
}

impl PlatformBodies<'_> {
    /// The message for `subscription_id`.
    pub fn body(&self, subscription_id: &str) -> String {
        let webhook_id = self.event.webhook_id(subscription_id);
        self.bodies.body(subscription_id, &webhook_id)
    }
}

/// The key a CloudEvent's identity (`source`, `id`) gives its webhook ids:
/// `ce:` and the length of `source` before `source` and `id`, so no two
/// pairs share a key (a separator could appear in either), and no job
/// stream record's event id or test event is one.
pub fn event_key(source: &str, id: &str) -> String {
    let mut key = String::with_capacity(16 + source.len() + id.len());
    key.push_str("ce:");
    key.push_str(itoa::Buffer::new().format(source.len()));
    key.push(':');
    key.push_str(source);
    key.push_str(id);
    key
}

/// What the catalogue says about a platform event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRules {
    /// Its group (`engine`, `subject`, `app`).
    pub group: String,
    /// The attributes its events must carry.
    pub requires: Vec<Attribute>,
}

/// The catalogue's rules of `event_type`, or the refusal of a type that is
/// not a platform event type: `job.*` and `webhook.test` come only from
/// their own sources (the jobs table, the API).
fn platform_type(event_type: &str) -> Result<TypeRules, Refusal> {
    if !is_platform_type(event_type) {
        return Err(Refusal::new(
            RefusalCode::UnknownType,
            format!(
                "type {} is not a platform event type: job events come from the jobs table \
                 and test events from the API",
                quoted(event_type)
            ),
        ));
    }
    catalogue::rules(event_type).ok_or_else(|| {
        Refusal::new(
            RefusalCode::UnknownType,
            format!("type {} is not in the event catalogue", quoted(event_type)),
        )
    })
}

/// `subjecttype` and `verb`, when present, come from the catalogue's
/// vocabulary; a `subject.<verb>` event's `verb` is its type's.
fn check_vocabulary(
    event_type: &str,
    subject_type: Option<&str>,
    verb: Option<&str>,
) -> Result<(), Refusal> {
    let vocabulary = crate::catalogue::vocabulary();
    let (subject_types, verbs) = (&vocabulary.subject_types, &vocabulary.verbs);
    if let Some(t) = subject_type
        && !subject_types.iter().any(|known| known == t)
    {
        return Err(Refusal::new(
            RefusalCode::InvalidAttribute,
            format!(
                "subjecttype {} is not in the vocabulary; allowed: {}",
                quoted(t),
                subject_types.join(", ")
            ),
        ));
    }
    if let Some(v) = verb
        && !verbs.iter().any(|known| known == v)
    {
        return Err(Refusal::new(
            RefusalCode::InvalidAttribute,
            format!(
                "verb {} is not in the vocabulary; allowed: {}",
                quoted(v),
                verbs.join(", ")
            ),
        ));
    }
    if let (Some(typed), Some(v)) = (event_type.strip_prefix("subject."), verb)
        && typed != v
    {
        return Err(Refusal::new(
            RefusalCode::InvalidAttribute,
            format!("verb {} differs from the type's verb {typed:?}", quoted(v)),
        ));
    }
    Ok(())
}

/// The problems of `data` against the catalogue's schema of `event_type`.
fn validate_data(event_type: &str, data: &Value) -> Result<(), Vec<String>> {
    catalogue::validate_data(event_type, data)
}

/// The platform event types of the catalogue (`catalogue/<group>/*.json`).
mod catalogue {
    use serde_json::Value;

    use super::{Attribute, TypeRules};

    /// The rules of the platform event type `name`, if the catalogue has
    /// it: its group and the context attributes its events must carry.
    pub(super) fn rules(name: &str) -> Option<TypeRules> {
        let entry = crate::catalogue::find(name)?;
        Some(TypeRules {
            group: entry.group.clone(),
            requires: entry
                .requires
                .iter()
                .filter_map(|a| Attribute::parse(a))
                .collect(),
        })
    }

    /// The problems of `data` against the catalogue's schema of `name`.
    pub(super) fn validate_data(name: &str, data: &Value) -> Result<(), Vec<String>> {
        crate::catalogue::validate_data(name, data)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn engine() -> Value {
        json!({
            "specversion": "1.0",
            "id": "378f70a0-9d1f-4591-b64f-89008b079075",
            "source": "//engine/aggregates",
            "type": "engine.aggregate_batch_started",
            "companyid": "acme",
            "time": "2026-11-22T11:00:00.123456+01:00",
            "datacontenttype": "application/json",
            "data": {
                "event_type": "aggregate_batch_started",
                "id": "378f70a0-9d1f-4591-b64f-89008b079075",
                "context": {"org_id": "default", "project_id": "91db9aa1-8947-4e7a-b613-af2ea485990d"},
                "is_full_build": false,
                "cube_id": null
            }
        })
    }

    fn parse(event: &Value) -> Result<PlatformEvent, Refusal> {
        PlatformEvent::parse(&event.to_string(), now())
    }

    fn refused(event: &Value) -> Refusal {
        parse(event).expect_err("refused")
    }

    fn with(mut event: Value, key: &str, value: Value) -> Value {
        if value.is_null() {
            event.as_object_mut().unwrap().remove(key);
        } else {
            event[key] = value;
        }
        event
    }

    #[test]
    fn a_valid_event_is_read_with_its_time_in_utc_milliseconds() {
        let e = parse(&engine()).unwrap();
        assert_eq!(e.event_type, "engine.aggregate_batch_started");
        assert_eq!(e.company_id, "acme");
        assert_eq!(e.timestamp, "2026-11-22T10:00:00.123Z");
        assert_eq!(
            serde_json::from_str::<Value>(e.data.get()).unwrap(),
            engine()["data"]
        );
        assert_eq!(e.context().source, Some("//engine/aggregates"));
        let untimed = parse(&with(engine(), "time", Value::Null)).unwrap();
        assert_eq!(
            untimed.timestamp, "2026-11-22T10:00:00.500Z",
            "the receive time"
        );
        // Without data, the type's schema judges an empty object.
        let no_data = refused(&with(engine(), "data", Value::Null));
        assert_eq!(no_data.code, RefusalCode::InvalidData);
        assert!(no_data.message.contains("context"), "{}", no_data.message);
    }

    #[test]
    fn subject_events_carry_their_context_into_the_payload() {
        let event = json!({
            "specversion": "1.0", "id": "e-1", "source": "works", "type": "subject.failed",
            "companyid": "acme", "appid": "app-1", "subject": "work-42",
            "subjecttype": "work", "verb": "failed",
            "data": {"subject_type": "work", "subject_id": "work-42", "verb": "failed", "details": {"reason": "timeout"}}
        });
        let e = parse(&event).unwrap();
        let body = e.message_body("sub_1");
        let msg = message::DeliveryMessage::parse(&body).unwrap();
        assert_eq!(msg.webhook_id, e.webhook_id("sub_1"));
        assert_eq!(msg.event_type, "subject.failed");
        let payload: Value = serde_json::from_str(msg.payload.get()).unwrap();
        assert_eq!(
            payload,
            json!({
                "type": "subject.failed",
                "timestamp": "2026-11-22T10:00:00.500Z",
                "idempotency_key": e.webhook_id("sub_1"),
                "subscription_id": "sub_1",
                "company_id": "acme",
                "source": "works",
                "app_id": "app-1",
                "subject_type": "work",
                "subject_id": "work-42",
                "verb": "failed",
                "data": {"subject_type": "work", "subject_id": "work-42", "verb": "failed", "details": {"reason": "timeout"}}
            })
        );
    }

    #[test]
    fn data_that_contradicts_the_attributes_filters_match_is_refused() {
        let app = |appid: Option<&str>, data_app: &str| {
            let mut event = json!({
                "specversion": "1.0", "id": "a-1", "source": "/platform/app",
                "type": "app.installed", "companyid": "acme",
                "data": crate::catalogue::find("app.installed").unwrap().examples[0].clone()
            });
            if let Some(a) = appid {
                event["appid"] = a.into();
            }
            event["data"]["app_id"] = data_app.into();
            event
        };
        assert!(parse(&app(Some("app_a"), "app_a")).is_ok());
        let r = refused(&app(Some("app_a"), "app_b"));
        assert_eq!(r.code, RefusalCode::InvalidAttribute);
        assert!(r.message.contains("data.app_id"), "{}", r.message);
        let r = refused(&app(None, "app_b"));
        assert_eq!(r.code, RefusalCode::MissingAttribute, "{}", r.message);
        let mut subject = json!({
            "specversion": "1.0", "id": "s-1", "source": "/platform/subject",
            "type": "subject.failed", "companyid": "acme", "subject": "w-1",
            "subjecttype": "work", "verb": "failed",
            "data": {"subject_type": "work", "subject_id": "w-2", "verb": "failed"}
        });
        assert_eq!(refused(&subject).code, RefusalCode::InvalidAttribute);
        subject["data"]["subject_id"] = "w-1".into();
        assert!(parse(&subject).is_ok());
    }

    #[test]
    fn webhook_ids_derive_from_source_and_id_unambiguously() {
        let a = parse(&engine()).unwrap();
        let again = parse(&with(engine(), "time", json!("2027-01-01T00:00:00Z"))).unwrap();
        assert_eq!(a.webhook_id("sub_1"), again.webhook_id("sub_1"));
        assert_ne!(a.webhook_id("sub_1"), a.webhook_id("sub_2"));
        let other_source = parse(&with(engine(), "source", json!("//engine/other"))).unwrap();
        assert_ne!(a.webhook_id("sub_1"), other_source.webhook_id("sub_1"));
        assert_ne!(event_key("ab", "c"), event_key("a", "bc"));
        assert_ne!(event_key("a:1", "x"), event_key("a", "1:x"));
    }

    #[test]
    fn refusals_carry_stable_codes() {
        let cases: Vec<(Value, RefusalCode)> = vec![
            (json!([1, 2]), RefusalCode::Malformed),
            (with(engine(), "id", json!(7)), RefusalCode::Malformed),
            (
                with(engine(), "specversion", json!("0.3")),
                RefusalCode::UnsupportedSpecversion,
            ),
            (
                with(engine(), "specversion", Value::Null),
                RefusalCode::MissingAttribute,
            ),
            (
                with(engine(), "id", Value::Null),
                RefusalCode::MissingAttribute,
            ),
            (
                with(engine(), "source", Value::Null),
                RefusalCode::MissingAttribute,
            ),
            (
                with(engine(), "type", Value::Null),
                RefusalCode::MissingAttribute,
            ),
            (
                with(engine(), "type", json!("engine.nope")),
                RefusalCode::UnknownType,
            ),
            (
                with(engine(), "type", json!("job.completed")),
                RefusalCode::UnknownType,
            ),
            (
                with(engine(), "type", json!("webhook.test")),
                RefusalCode::UnknownType,
            ),
            (
                with(engine(), "companyid", Value::Null),
                RefusalCode::MissingCompany,
            ),
            (
                with(engine(), "companyid", json!("")),
                RefusalCode::InvalidAttribute,
            ),
            (
                with(engine(), "type", json!("app.installed")),
                RefusalCode::MissingAttribute,
            ),
            (
                with(engine(), "id", json!("x".repeat(257))),
                RefusalCode::InvalidAttribute,
            ),
            (
                with(engine(), "subject", json!("a\nb")),
                RefusalCode::InvalidAttribute,
            ),
            (
                with(engine(), "time", json!("yesterday")),
                RefusalCode::InvalidAttribute,
            ),
            (
                with(engine(), "datacontenttype", json!("text/xml")),
                RefusalCode::InvalidAttribute,
            ),
            (
                with(engine(), "subjecttype", json!("spaceship")),
                RefusalCode::InvalidAttribute,
            ),
            (
                with(engine(), "verb", json!("exploded")),
                RefusalCode::InvalidAttribute,
            ),
            (
                with(engine(), "data", json!("text")),
                RefusalCode::InvalidData,
            ),
            (
                with(engine(), "data_base64", json!("AAAA")),
                RefusalCode::InvalidData,
            ),
            (
                with(
                    engine(),
                    "data",
                    json!({"blob": "x".repeat(MAX_EVENT_BYTES)}),
                ),
                RefusalCode::TooLarge,
            ),
        ];
        for (event, code) in cases {
            let refusal = refused(&event);
            assert_eq!(refusal.code, code, "{event}: {refusal}");
            assert!(refusal.message.len() <= MAX_MESSAGE_BYTES);
        }
        assert_eq!(
            PlatformEvent::parse("{not json", now()).unwrap_err().code,
            RefusalCode::Malformed
        );
        let subject = json!({
            "specversion": "1.0", "id": "e", "source": "s", "type": "subject.created",
            "companyid": "acme", "subject": "w", "subjecttype": "work", "verb": "failed"
        });
        assert_eq!(
            refused(&subject).code,
            RefusalCode::InvalidAttribute,
            "verb against type"
        );
        assert_eq!(
            refused(&with(subject, "subject", Value::Null)).message,
            "type subject.created requires the attribute subject"
        );
    }

    #[test]
    fn codes_are_distinct_and_messages_quote_values_cut() {
        let names: std::collections::BTreeSet<_> =
            RefusalCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), RefusalCode::ALL.len());
        let long = "y".repeat(10_000);
        let refusal = refused(&with(engine(), "type", json!(long)));
        assert_eq!(refusal.code, RefusalCode::InvalidAttribute);
        assert!(refusal.message.len() < 300, "{}", refusal.message);
        assert!(is_json("application/cloudevents+json; charset=utf-8"));
        assert!(!is_json("application/xml"));
    }
}
