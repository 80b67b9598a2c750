//! Standard Webhooks checks as a customer's endpoint makes them, with the
//! subscription's own secrets.
//!
//! A POST must carry the `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` headers, a timestamp within five minutes, and, for
//! each scheme the subscription the payload names signs with, one
//! signature that verifies: `v1` with a secret of the subscription, `v1a`
//! with one of its Ed25519 public keys. The subscription is read with
//! [`SubscriptionStore::get`] by the payload's `company_id` and
//! `subscription_id` (fine locally: a forged claim still fails
//! verification). For `v1` its current secret, plus the previous one
//! during a rotation grace period, are opened with the stack's keyring and
//! tried ([`Subscription::signing_secrets`]); for `v1a` its public keys
//! are tried the same way ([`Subscription::verifying_keys`]). A real
//! receiver holds its secret or public key instead; this one stands in for
//! every subscription.
//!
//! A verified event is answered `204 No Content`; anything else with a
//! 4xx ([`RejectReason::status`]): `401` for a missing header, an unknown
//! subscription or a signature that does not verify, `400` for a body that
//! is not an event, `413` for one too large. If the subscription cannot be
//! read the answer is `503`, so the sender retries.
//!
//! [`Subscription::signing_secrets`]: shared::domain::subscription::Subscription::signing_secrets
//! [`Subscription::verifying_keys`]: shared::domain::subscription::Subscription::verifying_keys

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use shared::domain::jobs::JobState;
use shared::domain::subscription::is_subscription_id;
use shared::signing::{
    self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SignatureScheme, VerifyError,
};
use shared::storage::keyring::SecretVault;
use shared::storage::subscriptions::SubscriptionStore;

/// Largest request body read; larger ones are answered `413`.
const MAX_BODY: usize = 1024 * 1024;

/// A delivery whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEvent {
    /// The `webhook-id` header, which is the payload's `webhook_id`.
    pub webhook_id: String,
    /// The payload's `type`, e.g. `job.completed` or `webhook.test`.
    pub event_type: String,
    /// The payload's `company_id`.
    pub company_id: String,
    /// The payload's `subscription_id`.
    pub subscription_id: String,
    /// `data.job_id`, for job events.
    pub job_id: Option<String>,
    /// `data.job_type`, for job events.
    pub job_type: Option<String>,
    /// `data.state`, for job events.
    pub state: Option<JobState>,
    /// `data.previous_state`, for job events that have one.
    pub previous_state: Option<JobState>,
    /// Whether an event with this `webhook-id` was verified before (a
    /// retry or redelivery: receivers acknowledge and skip those).
    pub duplicate: bool,
    /// The whole payload.
    pub payload: Value,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// A Standard Webhooks header is missing or not text.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// The body is too large.
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body could not be read or is not a webhook event.
    #[error("not a webhook event: {0}")]
    NotAnEvent(String),
    /// No subscription of the payload's company has the payload's id.
    #[error("unknown subscription")]
    UnknownSubscription,
    /// The signature or timestamp did not verify.
    #[error("{0}")]
    Signature(VerifyError),
    /// The verified payload's `webhook_id` is not the `webhook-id`.
    #[error("idempotency_key differs from the webhook-id header")]
    IdMismatch,
    /// The subscription could not be read.
    #[error("subscription store unavailable: {0}")]
    StoreUnavailable(String),
}

impl RejectReason {
    /// The HTTP status the request is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingHeader(_) | Self::UnknownSubscription | Self::Signature(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotAnEvent(_) | Self::IdMismatch => StatusCode::BAD_REQUEST,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The `webhook-id` header, when present.
    pub webhook_id: Option<String>,
    /// Why it was refused.
    pub reason: RejectReason,
}

/// Verifies deliveries against the subscriptions in a store, opening
/// their secrets with the stack's keyring.
pub(super) struct Verifier {
    pub(super) store: SubscriptionStore,
    pub(super) secrets: Arc<SecretVault>,
}

/// A request body, read as a verifying receiver reads it: at most
/// `MAX_BODY` bytes.
pub(super) async fn read_body(body: Incoming) -> Result<Bytes, RejectReason> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(RejectReason::TooLarge),
        Err(e) => Err(RejectReason::NotAnEvent(format!("body unreadable: {e}"))),
    }
}

impl Verifier {
    /// The event a request carries, when it verifies.
    pub(super) async fn verify(
        &self,
        headers: &HeaderMap,
        body: Result<Bytes, RejectReason>,
    ) -> Result<VerifiedEvent, RejectReason> {
        let required = |name| header(headers, name).ok_or(RejectReason::MissingHeader(name));
        let id = required(HEADER_ID)?;
        let timestamp = required(HEADER_TIMESTAMP)?;
        let signature = required(HEADER_SIGNATURE)?;
        let body = body?;
        let payload: Value = serde_json::from_slice(&body)
            .map_err(|e| RejectReason::NotAnEvent(format!("body is not JSON: {e}")))?;
        let field = |name: &str| {
            string_at(&payload, &format!("/{name}"))
                .ok_or_else(|| RejectReason::NotAnEvent(format!("no string {name}")))
        };
        let company_id = field("company_id")?;
        let subscription_id = field("subscription_id")?;
        let event_type = field("type")?;
        if company_id.is_empty()
            || company_id.len() > shared::domain::job_event::MAX_ID_LEN
            || !is_subscription_id(&subscription_id)
        {
            return Err(RejectReason::UnknownSubscription);
        }
        let subscription = self
            .store
            .get(&company_id, &subscription_id)
            .await
            .map_err(|e| RejectReason::StoreUnavailable(e.to_string()))?
            .ok_or(RejectReason::UnknownSubscription)?;
        let now = chrono::Utc::now();
        if subscription.signs_with(SignatureScheme::V1) {
            let versions = subscription.secret_key_versions();
            let unreadable =
                |e: &dyn std::fmt::Display| RejectReason::StoreUnavailable(e.to_string());
            let keyring = self
                .secrets
                .for_opening(versions)
                .await
                .map_err(|e| unreadable(&e))?;
            let secrets = subscription
                .signing_secrets(&keyring, now)
                .map_err(|e| unreadable(&e))?;
            let keys: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
            signing::verify(&keys, id, timestamp, signature, &body, now.timestamp())
                .map_err(RejectReason::Signature)?;
        }
        if subscription.signs_with(SignatureScheme::V1a) {
            // With the public keys alone, as a customer's receiver does.
            let keys = subscription.verifying_keys(now);
            signing::verify_v1a(&keys, id, timestamp, signature, &body, now.timestamp())
                .map_err(RejectReason::Signature)?;
        }
        if string_at(&payload, "/idempotency_key").as_deref() != Some(id) {
            return Err(RejectReason::IdMismatch);
        }
        Ok(VerifiedEvent {
            webhook_id: id.to_owned(),
            event_type,
            company_id,
            subscription_id,
            job_id: string_at(&payload, "/data/job_id"),
            job_type: string_at(&payload, "/data/job_type"),
            state: state_at(&payload, "/data/state"),
            previous_state: state_at(&payload, "/data/previous_state"),
            duplicate: false,
            payload,
        })
    }
}

/// The value of header `name`, when present and text.
pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn string_at(value: &Value, pointer: &str) -> Option<String> {
    value.pointer(pointer)?.as_str().map(str::to_owned)
}

fn state_at(value: &Value, pointer: &str) -> Option<JobState> {
    JobState::parse(value.pointer(pointer)?.as_str()?)
}

/// `✔ verified job.completed  job-… (type) running → completed  sub_…  evt_…`.
pub(super) fn verified_line(event: &VerifiedEvent) -> String {
    let mut line = format!("✔ verified {}  ", event.event_type);
    if let Some(job_id) = &event.job_id {
        line.push_str(job_id);
        if let Some(job_type) = &event.job_type {
            line.push_str(&format!(" ({job_type})"));
        }
        match (event.previous_state, event.state) {
            (Some(previous), Some(state)) => line.push_str(&format!(" {previous} → {state}")),
            (None, Some(state)) => line.push_str(&format!(" {state}")),
            _ => {}
        }
        if let Some(reason) = event
            .payload
            .pointer("/data/error/reason")
            .and_then(Value::as_str)
        {
            line.push_str(&format!(" ({reason})"));
        }
        line.push_str("  ");
    }
    line.push_str(&format!("{}  {}", event.subscription_id, event.webhook_id));
    if event.duplicate {
        line.push_str("  (duplicate)");
    }
    line
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn event(payload: Value) -> VerifiedEvent {
        VerifiedEvent {
            webhook_id: "evt_1".into(),
            event_type: string_at(&payload, "/type").unwrap(),
            company_id: "acme".into(),
            subscription_id: "sub_1".into(),
            job_id: string_at(&payload, "/data/job_id"),
            job_type: string_at(&payload, "/data/job_type"),
            state: state_at(&payload, "/data/state"),
            previous_state: state_at(&payload, "/data/previous_state"),
            duplicate: false,
            payload,
        }
    }

    #[test]
    fn lines_name_the_event_job_and_transition() {
        let e = event(serde_json::json!({"type": "job.failed", "data": {
            "job_id": "job-1", "job_type": "costs", "state": "failed",
            "previous_state": "running", "error": {"reason": "timeout"}}}));
        assert_eq!(
            verified_line(&e),
            "✔ verified job.failed  job-1 (costs) running → failed (timeout)  sub_1  evt_1"
        );
        let mut test = event(serde_json::json!({"type": "webhook.test", "data": {}}));
        test.duplicate = true;
        assert_eq!(
            verified_line(&test),
            "✔ verified webhook.test  sub_1  evt_1  (duplicate)"
        );
    }

    #[test]
    fn rejections_map_to_client_errors_except_an_unreadable_store() {
        assert_eq!(
            RejectReason::Signature(VerifyError::NoMatch).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            RejectReason::MissingHeader(HEADER_SIGNATURE).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            RejectReason::NotAnEvent(String::new()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            RejectReason::StoreUnavailable(String::new()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn waiting_ends_when_enough_events_arrived_or_times_out() {
        let log = Arc::new(super::super::record::Record::new());
        let waiter = {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.wait_for_verified(2, Duration::from_secs(10)).await })
        };
        let e = event(serde_json::json!({"type": "webhook.test"}));
        assert!(!log.verified_event(e.clone()).duplicate);
        assert!(log.verified_event(e).duplicate);
        let events = waiter.await.unwrap().unwrap();
        assert_eq!(events.len(), 2);
        let err = log
            .wait_for_rejections(1, Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!((err.expected, err.received), (1, 0));
    }
}
