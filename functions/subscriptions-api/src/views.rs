//! Response bodies.

use chrono::{DateTime, SecondsFormat, Utc};
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use lambda_http::{Body, Response};
use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Serialize;
use shared::catalogue::{self, EventType};
use shared::domain::filters::{Filters, SubscriptionKind};
use shared::domain::health::{BreakerState, Health, LastFailure};
use shared::domain::jobs::{JOB_TYPES, JobState, JobType};
use shared::domain::subscription::{Subscription, SubscriptionStatus};
use shared::format::FormatView;
use shared::signing::SignatureScheme;
use shared::signing::secret::WebhookSecret;
use shared::storage::deliveries::{AttemptLog, Outcome};
use shared::storage::parked::{ParkedEvent, ParkedStatus};

/// RFC 3339 with milliseconds, UTC.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A subscription as the API shows it. The `v1` secret appears only in the
/// create and rotate responses (and the PATCH that adds `v1`), and only
/// while `v1` signs; the `v1a` public key appears in every one.
#[derive(Debug, Serialize)]
pub struct SubscriptionView<'a> {
    /// Subscription id.
    pub id: &'a str,
    /// HTTPS target.
    pub url: &'a str,
    /// Free text.
    pub description: Option<&'a str>,
    /// `jobs` or `events`: which events it receives.
    pub kind: SubscriptionKind,
    /// Filters; absent ones match everything.
    pub filters: &'a Filters,
    /// Active or archived.
    pub status: SubscriptionStatus,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Archive time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
    /// Why it was archived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_reason: Option<&'a str>,
    /// When it was disabled for failing too long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    /// Why it was disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<&'a str>,
    /// The endpoint's health and breaker.
    pub health: HealthView<'a>,
    /// Custom header names, each value masked.
    pub headers: std::collections::BTreeMap<&'a str, &'static str>,
    /// The body format, the PagerDuty routing key masked.
    pub format: FormatView<'a>,
    /// Optimistic-locking version, also the `ETag`.
    pub version: u64,
    /// End of the current rotation grace period, while one lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
    /// The Standard Webhooks schemes deliveries are signed with: `v1`,
    /// `v1a` or both.
    pub signature_schemes: &'a [SignatureScheme],
    /// The Ed25519 public key (`whpk_` form) that verifies `v1a`
    /// signatures, while `v1a` is among the schemes. It is public.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<&'a str>,
    /// The signing secret (create and rotate only, and only with `v1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
    /// The same secret in Standard Webhooks form (create and rotate only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standard_webhooks_secret: Option<String>,
}

impl<'a> SubscriptionView<'a> {
    /// The public view, without the secret.
    pub fn public(sub: &'a Subscription, now: DateTime<Utc>) -> Self {
        Self {
            id: &sub.subscription_id,
            url: &sub.url,
            description: sub.description.as_deref(),
            kind: sub.filters.kind(),
            filters: &sub.filters,
            status: sub.status,
            created_at: timestamp(sub.created_at),
            updated_at: timestamp(sub.updated_at),
            archived_at: sub.archived_at.map(timestamp),
            archived_reason: sub.archived_reason.as_deref(),
            disabled_at: sub.disabled_at.map(timestamp),
            disabled_reason: sub.disabled_reason.as_deref(),
            health: HealthView::of(&sub.health),
            headers: sub.headers.masked(),
            format: sub.format.view(),
            version: sub.version,
            previous_secret_expires_at: sub
                .previous_secret_expires_at
                .filter(|t| *t > now)
                .map(timestamp),
            signature_schemes: &sub.signature_schemes,
            public_key: sub.public_key(),
            secret: None,
            standard_webhooks_secret: None,
        }
    }

    /// The view including `secret` (the subscription's, just created or
    /// rotated, in the clear) in both forms, when it signs with `v1`.
    pub fn with_secret(
        sub: &'a Subscription,
        secret: &'a WebhookSecret,
        now: DateTime<Utc>,
    ) -> Self {
        if !sub.signs_with(SignatureScheme::V1) {
            return Self::public(sub, now);
        }
        Self {
            secret: Some(secret.expose()),
            standard_webhooks_secret: Some(secret.standard_webhooks_form()),
            ..Self::public(sub, now)
        }
    }
}

/// The last failure as the API shows it.
#[derive(Debug, Serialize)]
pub struct FailureView<'a> {
    /// When the attempt was made.
    pub at: String,
    /// Its response status, when one arrived.
    pub status_code: Option<u16>,
    /// The error class when none did.
    pub error: Option<&'a str>,
}

impl<'a> FailureView<'a> {
    fn of(f: &'a LastFailure) -> Self {
        Self {
            at: timestamp(f.at),
            status_code: f.status,
            error: f.error.as_deref(),
        }
    }
}

/// An endpoint's health.
#[derive(Debug, Serialize)]
pub struct HealthView<'a> {
    /// The breaker: `closed` (events are attempted), `open` (the endpoint
    /// keeps failing: events are parked, a probe is due at
    /// `next_probe_at`) or `half_open` (a probe is in flight).
    pub state: BreakerState,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
    /// Start of the current failure streak.
    pub failing_since: Option<String>,
    /// The success that last ended a failure streak.
    pub last_success_at: Option<String>,
    /// The latest failed attempt.
    pub last_failure: Option<FailureView<'a>>,
    /// When the next probe is due, while the breaker is open.
    pub next_probe_at: Option<String>,
    /// Events parked for the endpoint, counted up to 10,000
    /// (`GET /webhooks/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parked_events: Option<u64>,
}

impl<'a> HealthView<'a> {
    /// The view of `health`, without the parked count.
    pub fn of(health: &'a Health) -> Self {
        Self {
            state: health.breaker,
            consecutive_failures: health.consecutive_failures,
            failing_since: health.failing_since.map(timestamp),
            last_success_at: health.last_success_at.map(timestamp),
            last_failure: health.last_failure.as_ref().map(FailureView::of),
            next_probe_at: health
                .breaker
                .is_open()
                .then(|| health.next_probe_time())
                .flatten()
                .map(timestamp),
            parked_events: None,
        }
    }
}

/// A parked or failed event as `GET /webhooks/{id}/failed-events` shows it.
#[derive(Debug, Serialize)]
pub struct FailedEventView<'a> {
    /// Opaque id of the stored event.
    pub id: &'a str,
    /// The event's id (`webhook-id`), `idempotency_key` in the API.
    #[serde(rename = "idempotency_key")]
    pub webhook_id: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// `parked` (held while the endpoint was failing or disabled) or
    /// `failed` (every attempt of the schedule failed).
    pub status: ParkedStatus,
    /// The event's time; `since`/`until` select on it.
    pub arrived_at: String,
    /// When it was stored.
    pub stored_at: String,
    /// Attempts made before it was stored.
    pub attempts: Vec<AttemptRecordView<'a>>,
    /// The payload, exactly as it will be delivered.
    pub payload: Option<Box<serde_json::value::RawValue>>,
}

/// One earlier attempt of a stored event.
#[derive(Debug, Serialize)]
pub struct AttemptRecordView<'a> {
    /// Attempt number.
    pub attempt: u32,
    /// When it was made.
    pub at: String,
    /// Response status, when one arrived.
    pub status_code: Option<u16>,
    /// Error class when none did.
    pub error: Option<&'a str>,
}

impl<'a> FailedEventView<'a> {
    /// The view of a stored event.
    pub fn of(event: &'a ParkedEvent) -> Self {
        Self {
            id: &event.event_key,
            webhook_id: &event.webhook_id,
            event_type: &event.event_type,
            status: event.status,
            arrived_at: timestamp(event.arrived_at),
            stored_at: timestamp(event.parked_at),
            attempts: event
                .attempts
                .iter()
                .map(|a| AttemptRecordView {
                    attempt: a.attempt,
                    at: timestamp(a.at),
                    status_code: a.status,
                    error: a.error.as_deref(),
                })
                .collect(),
            payload: event.requeued().map(|m| m.payload),
        }
    }
}

/// A page of stored events.
#[derive(Debug, Serialize)]
pub struct FailedEventListView<'a> {
    /// Newest first.
    pub data: Vec<FailedEventView<'a>>,
    /// Whether another page follows.
    pub has_more: bool,
    /// Cursor of the next page, `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The answer of `POST /webhooks/{id}/recover`.
#[derive(Debug, Serialize)]
pub struct RecoverView {
    /// Always `queued`.
    pub status: &'static str,
    /// Events put back on the delivery queue by this call.
    pub recovered: usize,
    /// Events of the window this call could not re-queue; call again.
    pub not_recovered: usize,
    /// Pass as `continuation` to recover the rest of the window; `null`
    /// when this call reached its end.
    pub continuation: Option<String>,
}

/// A page of subscriptions.
#[derive(Debug, Serialize)]
pub struct ListView<'a> {
    /// The items, newest first.
    pub data: Vec<SubscriptionView<'a>>,
    /// Cursor of the next page, `null` on the last one.
    pub next_cursor: Option<String>,
}

/// One delivery attempt as `GET /webhooks/{id}/deliveries` shows it.
#[derive(Debug, Serialize)]
pub struct AttemptView<'a> {
    /// Opaque, stable id of the attempt, unique within the company. It is
    /// the log's sort key, which (unlike `{webhook_id}#{attempt}`)
    /// stays unique when a redriven event starts again at attempt 1.
    pub id: &'a str,
    /// The event's id (`webhook-id` header), `idempotency_key` in the API.
    #[serde(rename = "idempotency_key")]
    pub webhook_id: &'a str,
    /// The event type, e.g. `job.completed` or `webhook.test`.
    pub event_type: &'a str,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When the attempt started.
    pub at: String,
    /// `delivered`, `failed` or `gone`.
    pub outcome: Outcome,
    /// HTTP status of the response, when one arrived.
    pub status_code: Option<u16>,
    /// Error class when no acceptable response arrived.
    pub error: Option<&'a str>,
    /// Time to the response or the error, in milliseconds.
    pub duration_ms: u64,
    /// The start of the response body.
    pub response_excerpt: Option<&'a str>,
}

impl<'a> AttemptView<'a> {
    /// The view of a logged attempt.
    pub fn of(log: &'a AttemptLog) -> Self {
        Self {
            id: &log.attempt_id,
            webhook_id: &log.webhook_id,
            event_type: &log.event_type,
            attempt: log.attempt,
            at: timestamp(log.at),
            outcome: log.outcome,
            status_code: log.status_code,
            error: log.error.as_deref(),
            duration_ms: log.duration_ms,
            response_excerpt: log.response_excerpt.as_deref(),
        }
    }
}

/// A page of delivery attempts.
#[derive(Debug, Serialize)]
pub struct AttemptListView<'a> {
    /// The attempts, newest first.
    pub data: Vec<AttemptView<'a>>,
    /// Whether another page follows.
    pub has_more: bool,
    /// Cursor of the next page, `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The answer of `POST /webhooks/{id}/test`.
#[derive(Debug, Serialize)]
pub struct TestEventView<'a> {
    /// The test event's id (its `webhook-id`, `idempotency_key` in the API), to find it in
    /// the delivery log.
    #[serde(rename = "idempotency_key")]
    pub webhook_id: &'a str,
    /// Always `webhook.test`.
    pub event_type: &'static str,
    /// Always `queued`: the event is on the delivery queue.
    pub status: &'static str,
}

#[derive(Serialize)]
struct StateView {
    name: &'static str,
    description: &'static str,
}

/// The catalogue: job types and job states.
#[derive(Serialize)]
pub struct JobTypesView {
    data: &'static [JobType],
    states: Vec<StateView>,
}

/// The body of `GET /job-types`.
pub fn job_types_body() -> JobTypesView {
    JobTypesView {
        data: JOB_TYPES,
        states: JobState::ALL
            .iter()
            .map(|s| StateView {
                name: s.as_str(),
                description: s.description(),
            })
            .collect(),
    }
}

/// The bodies of `GET /event-types`, serialised once (at cold start, by
/// [`crate::App::new`]): the whole catalogue, and each group's part.
pub(crate) struct EventTypeBodies {
    all: String,
    none: String,
    by_group: BTreeMap<&'static str, String>,
}

pub(crate) static EVENT_TYPE_BODIES: LazyLock<EventTypeBodies> = LazyLock::new(|| {
    #[derive(Serialize)]
    struct EventTypesView<'a> {
        data: &'a [&'static EventType],
        vocabulary: &'static catalogue::Vocabulary,
    }
    let body = |types: &[&'static EventType]| {
        serde_json::to_string(&EventTypesView {
            data: types,
            vocabulary: catalogue::vocabulary(),
        })
        .expect("the catalogue serialises")
    };
    let types: Vec<&'static EventType> = catalogue::event_types().iter().collect();
    let mut groups: BTreeMap<&'static str, Vec<&'static EventType>> = BTreeMap::new();
    for event in &types {
        groups.entry(event.group.as_str()).or_default().push(event);
    }
    EventTypeBodies {
        all: body(&types),
        none: body(&[]),
        by_group: groups
            .into_iter()
            .map(|(group, types)| (group, body(&types)))
            .collect(),
    }
});

/// The response of `GET /event-types`: every delivered event type (or
/// those of `group`; none for a group the catalogue doesn't have) with its
/// description, group, JSON Schemas and examples.
pub fn event_types_response(group: Option<&str>) -> Response<Body> {
    let bodies = &*EVENT_TYPE_BODIES;
    let body = match group {
        None => bodies.all.clone(),
        Some(group) => bodies
            .by_group
            .get(group)
            .cloned()
            .unwrap_or_else(|| bodies.none.clone()),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(Body::Text(body))
        .expect("static response parts are valid")
}

/// A JSON response with `status` and `body`.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let text = serde_json::to_string(body).expect("response bodies serialise");
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(Body::Text(text))
        .expect("static response parts are valid")
}
