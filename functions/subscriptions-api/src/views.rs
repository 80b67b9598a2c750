//! Response bodies.

use chrono::{DateTime, SecondsFormat, Utc};
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use lambda_http::{Body, Response};
use serde::Serialize;
use shared::domain::filters::Filters;
use shared::domain::jobs::{JOB_TYPES, JobState, JobType};
use shared::domain::subscription::{Subscription, SubscriptionStatus};
use shared::storage::deliveries::{AttemptLog, Outcome};

/// RFC 3339 with milliseconds, UTC.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A subscription as the API shows it. The secret appears only in the
/// create and rotate responses.
#[derive(Debug, Serialize)]
pub struct SubscriptionView<'a> {
    /// Subscription id.
    pub id: &'a str,
    /// HTTPS target.
    pub url: &'a str,
    /// Free text.
    pub description: Option<&'a str>,
    /// Filters; absent kinds match everything.
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
    /// Optimistic-locking version, also the `ETag`.
    pub version: u64,
    /// End of the current rotation grace period, while one lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
    /// The signing secret (create and rotate only).
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
            filters: &sub.filters,
            status: sub.status,
            created_at: timestamp(sub.created_at),
            updated_at: timestamp(sub.updated_at),
            archived_at: sub.archived_at.map(timestamp),
            archived_reason: sub.archived_reason.as_deref(),
            version: sub.version,
            previous_secret_expires_at: sub
                .previous_secret_expires_at
                .filter(|t| *t > now)
                .map(timestamp),
            secret: None,
            standard_webhooks_secret: None,
        }
    }

    /// The view including the secret in both forms.
    pub fn with_secret(sub: &'a Subscription, now: DateTime<Utc>) -> Self {
        Self {
            secret: Some(sub.secret.expose()),
            standard_webhooks_secret: Some(sub.secret.standard_webhooks_form()),
            ..Self::public(sub, now)
        }
    }
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
    /// the log's sort key, which (unlike `{idempotency_key}#{attempt}`)
    /// stays unique when a redriven event starts again at attempt 1.
    pub id: &'a str,
    /// The event's idempotency key (`webhook-id` header).
    pub idempotency_key: &'a str,
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
            idempotency_key: &log.idempotency_key,
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
    /// The test event's idempotency key (its `webhook-id`), to find it in
    /// the delivery log.
    pub idempotency_key: &'a str,
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
