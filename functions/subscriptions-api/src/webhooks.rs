//! The `/webhooks` operations.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use http::StatusCode;
use http::header::{ETAG, IF_MATCH, LOCATION};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use shared::domain::filters::{Filters, FiltersInput, SubscriptionKind};
use shared::domain::headers::{self, HeadersInput, HeadersPatchInput};
use shared::domain::subscription::{
    self, DEFAULT_ROTATION_GRACE, MAX_DESCRIPTION_LEN, MAX_ROTATION_GRACE, NewSubscription,
    Subscription, SubscriptionStatus, check_signature_schemes,
};
use shared::format::{FormatInput, FormatSetting};
use shared::operational::{OperationalEvent, OperationalEventType};
use shared::signing::SignatureScheme;
use shared::signing::sealed::Keyring;
use shared::storage::StoreError;
use shared::storage::subscriptions::{CreateOutcome, IdempotencyClaim};
use shared::target_guard::allow_list::AllowList;
use shared::target_guard::url::{self as url_guard, UrlRejection};
use shared::validation::ValidationError;

use crate::app::App;
use crate::body;
use crate::error::ApiError;
use crate::query;
use crate::views::{ListView, SubscriptionView, json_response};

/// Default page size of `GET /webhooks`.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page size of `GET /webhooks`.
pub const MAX_PAGE_SIZE: usize = query::MAX_PAGE_SIZE;
/// How long an `Idempotency-Key` of `POST /webhooks` is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::hours(24);
/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Parked events are counted up to this many in `health.parked_events`.
pub const PARKED_COUNT_CAP: u64 = 10_000;
/// Read-modify-write attempts before a concurrent-write conflict is returned.
const WRITE_ATTEMPTS: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    url: String,
    #[serde(default)]
    description: Option<String>,
    /// `jobs` (the default) or `events`; when absent, `events` if the
    /// filters name event types.
    #[serde(default)]
    kind: Option<SubscriptionKind>,
    #[serde(default)]
    filters: Option<FiltersInput>,
    /// `["v1"]` (the default), `["v1a"]` or `["v1", "v1a"]`.
    #[serde(default)]
    signature_schemes: Option<Vec<String>>,
    #[serde(default)]
    headers: Option<HeadersInput>,
    /// The body format; absent: `standard`.
    #[serde(default)]
    format: Option<FormatInput>,
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    #[serde(default, deserialize_with = "nullable")]
    url: Option<Option<String>>,
    /// Accepted when it is the subscription's kind: the kind is fixed.
    #[serde(default)]
    kind: Option<SubscriptionKind>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    filters: Option<Option<FiltersInput>>,
    #[serde(default, deserialize_with = "nullable")]
    signature_schemes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    headers: Option<Option<HeadersPatchInput>>,
    /// A new body format; `null`: back to `standard`.
    #[serde(default, deserialize_with = "nullable")]
    format: Option<Option<FormatInput>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    #[serde(default, deserialize_with = "body::integer")]
    grace_period_seconds: Option<i64>,
}

/// Checks a target URL; `allow` (empty in production) admits listed
/// non-public networks for local development.
async fn check_url(raw: &str, allow: &AllowList) -> Result<String, ValidationError> {
    let code = |rejection: &UrlRejection| match rejection {
        UrlRejection::TooLong { .. } => "url_too_long",
        UrlRejection::Malformed(_) => "invalid_url",
        UrlRejection::NotHttps { .. } | UrlRejection::PlainHttp { .. } => "url_not_https",
        UrlRejection::UserInfo => "url_has_credentials",
        UrlRejection::MissingHost
        | UrlRejection::NonPublicIp { .. }
        | UrlRejection::LocalName { .. } => "url_not_allowed",
    };
    url_guard::check_target_url_with(raw, allow)
        .await
        .map(String::from)
        .map_err(|r| ValidationError::field(code(&r), "url", r.to_string()))
}

fn check_description(d: Option<String>) -> Result<Option<String>, ValidationError> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_LEN => Err(ValidationError::field(
            "description_too_long",
            "description",
            format!("description is limited to {MAX_DESCRIPTION_LEN} characters"),
        )),
        other => Ok(other),
    }
}

/// Checks the filters of a subscription of `kind` (when given; else the
/// kind the filters imply).
fn check_filters(
    f: Option<FiltersInput>,
    kind: Option<SubscriptionKind>,
    max_ids: usize,
) -> Result<Filters, ValidationError> {
    let f = f.unwrap_or_default();
    let kind = kind.unwrap_or_else(|| f.kind());
    f.validate_for(kind, max_ids)
}

/// The 422 of a PATCH that would change a subscription's kind.
/// A PagerDuty format given no routing key, and none stored to keep.
fn routing_key_required() -> ApiError {
    ApiError::bad_request(
        "invalid_format",
        "the pagerduty format needs a routing_key (the integration key of a PagerDuty \
         Events API v2 integration)",
    )
    .with_field("format.routing_key")
}

fn kind_is_fixed(kind: SubscriptionKind) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "kind_is_fixed",
        format!(
            "this subscription is of kind {}, which can't change; create a new subscription \
             for the other kind",
            kind.as_str()
        ),
    )
    .with_field("kind")
}

fn with_etag(mut response: Response<Body>, version: u64) -> Response<Body> {
    if let Ok(v) = format!("\"{version}\"").parse() {
        response.headers_mut().insert(ETAG, v);
    }
    response
}

fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw.to_str().unwrap_or_default();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        )
        .with_field("Idempotency-Key"));
    }
    Ok(Some(key.to_owned()))
}

/// The expected version from `If-Match`: `None` when absent or `*`.
fn if_match(req: &Request) -> Result<Option<u64>, ApiError> {
    let Some(raw) = req.headers().get(IF_MATCH) else {
        return Ok(None);
    };
    let text = raw.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    parse_version_tag(text).map(Some).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_if_match",
            "If-Match must be the ETag of the subscription, e.g. \"3\"",
        )
        .with_field("If-Match")
    })
}

/// The version in an entity tag as the OpenAPI document describes it:
/// `"3"`, `W/"3"` or a bare `3`, with 1 to 19 digits.
fn parse_version_tag(text: &str) -> Option<u64> {
    let quoted = text
        .strip_prefix("W/")
        .unwrap_or(text)
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'));
    let digits = quoted.unwrap_or(text);
    if !(1..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn precondition_failed(current: u64) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!("the subscription has changed (current version {current}); fetch it and retry"),
    )
}

impl App {
    /// The caller's subscription `id`: `404` when it is missing, malformed
    /// or another company's.
    pub(crate) async fn load(&self, company: &str, id: &str) -> Result<Subscription, ApiError> {
        if !subscription::is_subscription_id(id) {
            return Err(ApiError::subscription_not_found());
        }
        self.store
            .get(company, id)
            .await?
            .ok_or_else(ApiError::subscription_not_found)
    }

    /// The keyring to rewrite `sub`'s secrets with: fresh enough to seal,
    /// holding every version its secrets are sealed with.
    async fn keyring_for(&self, sub: &Subscription) -> Result<Arc<Keyring>, ApiError> {
        self.vault.for_sealing().await?;
        let versions = sub.secret_key_versions();
        Ok(self.vault.for_opening(versions).await?)
    }

    /// Read-modify-write under optimistic locking. `change` edits a copy and
    /// says whether anything changed; a lost race re-reads and re-applies,
    /// unless the caller pinned a version with `If-Match`.
    async fn modify<F>(
        &self,
        company: &str,
        id: &str,
        expected: Option<u64>,
        mut change: F,
    ) -> Result<Subscription, ApiError>
    where
        F: FnMut(&mut Subscription, DateTime<Utc>) -> Result<bool, ApiError>,
    {
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.load(company, id).await?;
            if expected.is_some_and(|v| v != current.version) {
                return Err(precondition_failed(current.version));
            }
            let now = Utc::now();
            let mut next = current.clone();
            if !change(&mut next, now)? {
                return Ok(current);
            }
            // Every write seals the secrets with the newest key version
            // (plaintext ones of items from before encryption at rest too).
            next.reseal_secrets(&*self.keyring_for(&current).await?)?;
            next.version = current.version + 1;
            next.updated_at = now;
            match self.store.replace(&next, current.version).await {
                Ok(()) => return Ok(next),
                Err(StoreError::VersionConflict(_)) if expected.is_some() => {
                    let latest = self.load(company, id).await?;
                    return Err(precondition_failed(latest.version));
                }
                Err(StoreError::VersionConflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::VersionConflict(id.to_owned()).into())
    }

    pub(crate) async fn create(
        &self,
        company: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let key = idempotency_key(req)?;
        let raw = body::raw(req)?;
        let input: CreateRequest = body::decode(raw)?;
        let new = NewSubscription {
            url: check_url(&input.url, &self.config.allow_list).await?,
            description: check_description(input.description)?,
            filters: check_filters(input.filters, input.kind, self.config.max_job_ids)?,
        };
        let schemes = input.signature_schemes.as_deref();
        let schemes = schemes.map(check_signature_schemes).transpose()?;
        let headers = input.headers.map(HeadersInput::validate).transpose()?;
        let format = input.format.map(FormatInput::validate).transpose()?;
        if let Some(format) = &format {
            format.check_examples(&new.filters)?;
        }
        let now = Utc::now();
        let keyring = self.vault.for_sealing().await?;
        let (mut sub, secret) = Subscription::create(company, new, now, &keyring)?;
        if let Some(format) = &format
            && sub.set_format(format, &keyring)?.is_none()
        {
            return Err(routing_key_required());
        }
        if let Some(schemes) = &schemes {
            sub.set_signature_schemes(schemes, &keyring)?;
        }
        if let Some(values) = &headers {
            sub.set_headers(values, &keyring)?;
        }
        let claim = key.map(|key| IdempotencyClaim {
            key,
            request_hash: request_fingerprint(raw),
            expires_at: now + IDEMPOTENCY_WINDOW,
        });
        let (stored, secret, replayed) = match self
            .store
            .create(&sub, claim.as_ref(), self.config.max_subscriptions)
            .await?
        {
            CreateOutcome::Created => (sub, secret, false),
            CreateOutcome::Replayed(original) => {
                // The same response as the first time: the subscription's
                // (current) secret, opened.
                let keyring = self.keyring_for(&original).await?;
                let secret = keyring.open_stored(&original.secret, original.secret_owner())?;
                (*original, secret, true)
            }
            CreateOutcome::KeyReused => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request body",
                )
                .with_field("Idempotency-Key"));
            }
        };
        if !replayed {
            tracing::info!(subscription_id = %stored.subscription_id, "subscription created");
        }
        let mut response = json_response(
            StatusCode::CREATED,
            &SubscriptionView::with_secret(&stored, &secret, now),
        );
        let headers = response.headers_mut();
        if let Ok(location) = format!("/webhooks/{}", stored.subscription_id).parse() {
            headers.insert(LOCATION, location);
        }
        if replayed {
            headers.insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
        }
        Ok(with_etag(response, stored.version))
    }

    pub(crate) async fn list(
        &self,
        company: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let params = req.query_string_parameters();
        query::only(&params, &["limit", "cursor", "status"])?;
        let limit = query::limit(&params, DEFAULT_PAGE_SIZE)?;
        let status = match params.first("status") {
            None => None,
            Some(raw) => Some(SubscriptionStatus::parse(raw).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("unknown status {raw:?}; allowed: active, disabled, archived"),
                )
                .with_field("status")
            })?),
        };
        let filter = status.map(SubscriptionStatus::as_str);
        let after = match query::cursor(&params) {
            None => None,
            Some(cursor) => Some(
                self.config
                    .cursors
                    .decode(company, cursor, filter)
                    .map_err(|e| query::invalid_cursor(e.to_string()))?
                    .after,
            ),
        };
        let page = self
            .store
            .list(company, status, limit, after.as_deref())
            .await?;
        let next_cursor = match page.items.last() {
            Some(last) if page.has_more => Some(self.config.cursors.encode(
                company,
                &shared::cursor::CursorPosition {
                    after: last.subscription_id.clone(),
                    filter: filter.map(str::to_owned),
                },
            )),
            _ => None,
        };
        let now = Utc::now();
        let view = ListView {
            data: page
                .items
                .iter()
                .map(|s| SubscriptionView::public(s, now))
                .collect(),
            next_cursor,
        };
        Ok(json_response(StatusCode::OK, &view))
    }

    pub(crate) async fn get(&self, company: &str, id: &str) -> Result<Response<Body>, ApiError> {
        let sub = self.load(company, id).await?;
        let parked = self
            .parked
            .count_parked(company, &sub.subscription_id, PARKED_COUNT_CAP)
            .await
            .map_err(|e| ApiError::store(e, "parked events"))?;
        let mut view = SubscriptionView::public(&sub, Utc::now());
        view.health.parked_events = Some(parked);
        Ok(with_etag(json_response(StatusCode::OK, &view), sub.version))
    }

    /// `POST /webhooks/{id}/enable`: a disabled subscription becomes active
    /// again, its health is reset and its parked events drain. On an
    /// active subscription whose breaker is open it resets the breaker
    /// the same way ("retry now"); otherwise it changes nothing.
    pub(crate) async fn enable(&self, company: &str, id: &str) -> Result<Response<Body>, ApiError> {
        let mut was_disabled = false;
        let enabled = self
            .modify(company, id, None, |sub, now| {
                if sub.is_archived() {
                    return Err(ApiError::archived());
                }
                if !sub.is_disabled() && !sub.health.breaker.is_open() {
                    return Ok(false);
                }
                was_disabled = sub.enable(now);
                Ok(true)
            })
            .await?;
        if was_disabled {
            tracing::info!(subscription_id = %enabled.subscription_id, "subscription enabled: parked events drain");
            let event = OperationalEvent::about(
                OperationalEventType::EndpointEnabled,
                &enabled,
                Utc::now(),
            );
            self.publisher.publish_logged(&event).await;
        }
        let response = json_response(
            StatusCode::OK,
            &SubscriptionView::public(&enabled, Utc::now()),
        );
        Ok(with_etag(response, enabled.version))
    }

    pub(crate) async fn update(
        &self,
        company: &str,
        id: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let expected = if_match(req)?;
        let input: UpdateRequest = body::decode(body::raw(req)?)?;
        let url = match input.url {
            None => None,
            Some(None) => {
                return Err(
                    ApiError::bad_request("invalid_type", "url can't be null").with_field("url")
                );
            }
            Some(Some(raw)) => Some(check_url(&raw, &self.config.allow_list).await?),
        };
        let description = input.description.map(check_description).transpose()?;
        // Their values are checked now; which filters the subscription's
        // kind takes, once it is read. `null` clears them.
        let filters = input.filters.map(Option::unwrap_or_default);
        if let Some(f) = &filters {
            f.check_values(self.config.max_job_ids)?;
            if let Some(kind) = input.kind {
                f.clone().validate_for(kind, self.config.max_job_ids)?;
            }
        }
        let schemes = match input.signature_schemes {
            None => None,
            Some(None) => {
                return Err(ApiError::bad_request(
                    "invalid_type",
                    "signature_schemes can't be null",
                )
                .with_field("signature_schemes"));
            }
            Some(Some(names)) => Some(check_signature_schemes(&names)?),
        };
        let headers = match input.headers {
            None => None,
            Some(patch) => Some(patch.map(HeadersPatchInput::validate).transpose()?),
        };
        let format = match input.format {
            None => None,
            Some(None) => Some(FormatSetting::Standard),
            Some(Some(f)) => Some(f.validate()?),
        };
        if !subscription::is_subscription_id(id) {
            return Err(ApiError::subscription_not_found());
        }
        // Choosing v1a for the first time seals a new key pair; new header
        // values are sealed too.
        let keyring = if schemes.is_some() || headers.is_some() || format.is_some() {
            Some(self.vault.for_sealing().await?)
        } else {
            None
        };
        let mut new_secret = None;
        let updated = self
            .modify(company, id, expected, |sub, now| {
                if sub.is_archived() {
                    return Err(ApiError::archived());
                }
                let kind = sub.filters.kind();
                // Another kind, or filters that only another kind takes (event
                // types on a jobs subscription; none on an events one, which
                // always names its event types), would change the kind.
                if input.kind.is_some_and(|k| k != kind)
                    || filters.as_ref().is_some_and(|f| {
                        f.event_types.is_some() != (kind == SubscriptionKind::Events)
                            && (kind == SubscriptionKind::Jobs || f.is_empty())
                    })
                {
                    return Err(kind_is_fixed(kind));
                }
                // Filters of the other kind are well-formed: refused on what
                // the stored subscription is, 422 like `kind_is_fixed`.
                let filters = filters
                    .as_ref()
                    .map(|f| f.clone().validate_for(kind, self.config.max_job_ids))
                    .transpose()
                    .map_err(|e| {
                        let status = match e.code {
                            "filter_not_for_kind" => StatusCode::UNPROCESSABLE_ENTITY,
                            _ => StatusCode::BAD_REQUEST,
                        };
                        ApiError::from(e).with_status(status)
                    })?;
                let mut changed = false;
                if let (Some(patch), Some(keyring)) = (&headers, &keyring) {
                    changed = sub.patch_headers(patch.as_ref(), keyring)?;
                }
                let before = (
                    sub.url.clone(),
                    sub.description.clone(),
                    sub.filters.clone(),
                );
                if let Some(url) = &url
                    && *url != sub.url
                {
                    sub.url.clone_from(url);
                    // A new URL is a new endpoint: its health starts over,
                    // and what was parked for the old one drains to it
                    // (a disabled subscription drains once enabled).
                    if sub.health.is_failing() || sub.parks_events() {
                        sub.health.reset_for_drain(now);
                        if sub.is_disabled() {
                            // Drained once enabled.
                            sub.health.probe_lane = None;
                            sub.health.next_probe_at = None;
                        }
                    }
                }
                if let Some(d) = &description {
                    sub.description.clone_from(d);
                }
                if let Some(f) = &filters {
                    sub.filters = f.clone();
                }
                // A template must render what the subscription receives,
                // with the filters it has after this change.
                let mut format_changed = false;
                match (&format, &keyring) {
                    (Some(setting), Some(keyring)) => {
                        setting.check_examples(&sub.filters)?;
                        format_changed = sub
                            .set_format(setting, keyring)?
                            .ok_or_else(routing_key_required)?;
                    }
                    _ if filters.is_some() => sub.format.check_examples(&sub.filters)?,
                    _ => {}
                }
                let mut schemes_changed = false;
                if let (Some(schemes), Some(keyring)) = (&schemes, &keyring) {
                    let had_v1 = sub.signs_with(SignatureScheme::V1);
                    schemes_changed = sub.set_signature_schemes(schemes, keyring)?;
                    // A secret that starts signing again is a new one, shown
                    // once as on creation: a secret shown before is never
                    // shown again.
                    new_secret = if !had_v1 && sub.signs_with(SignatureScheme::V1) {
                        Some(sub.rotate_secret(Duration::zero(), now, keyring)?)
                    } else {
                        None
                    };
                }
                Ok(changed
                    || schemes_changed
                    || format_changed
                    || before
                        != (
                            sub.url.clone(),
                            sub.description.clone(),
                            sub.filters.clone(),
                        ))
            })
            .await?;
        let now = Utc::now();
        let view = match &new_secret {
            Some(secret) => SubscriptionView::with_secret(&updated, secret, now),
            None => SubscriptionView::public(&updated, now),
        };
        Ok(with_etag(
            json_response(StatusCode::OK, &view),
            updated.version,
        ))
    }

    pub(crate) async fn archive(
        &self,
        company: &str,
        id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let archived = self
            .modify(company, id, None, |sub, now| {
                if sub.is_archived() {
                    return Ok(false);
                }
                sub.archive("archived through the API", now);
                Ok(true)
            })
            .await?;
        tracing::info!(subscription_id = %archived.subscription_id, "subscription archived");
        let response = json_response(
            StatusCode::OK,
            &SubscriptionView::public(&archived, Utc::now()),
        );
        Ok(with_etag(response, archived.version))
    }

    pub(crate) async fn rotate(
        &self,
        company: &str,
        id: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let input: RotateRequest = body::decode_optional(body::raw(req)?)?;
        let grace = match input.grace_period_seconds {
            None => DEFAULT_ROTATION_GRACE,
            Some(secs) if (0..=MAX_ROTATION_GRACE.num_seconds()).contains(&secs) => {
                Duration::seconds(secs)
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_grace_period",
                    format!(
                        "grace_period_seconds must be from 0 to {} (7 days)",
                        MAX_ROTATION_GRACE.num_seconds()
                    ),
                )
                .with_field("grace_period_seconds"));
            }
        };
        let keyring = self.vault.for_sealing().await?;
        let mut secret = None;
        let rotated = self
            .modify(company, id, if_match(req)?, |sub, now| {
                if sub.is_archived() {
                    return Err(ApiError::archived());
                }
                secret = Some(sub.rotate_secret(grace, now, &keyring)?);
                Ok(true)
            })
            .await?;
        let secret = secret.ok_or_else(|| ApiError::from(shared::signing::sealed::EmptyKeyring))?;
        tracing::info!(subscription_id = %rotated.subscription_id, grace_seconds = grace.num_seconds(), "secret rotated");
        let response = json_response(
            StatusCode::OK,
            &SubscriptionView::with_secret(&rotated, &secret, Utc::now()),
        );
        Ok(with_etag(response, rotated.version))
    }
}

/// Fingerprint of a create request: SHA-256 of its JSON in canonical form
/// (sorted keys, no whitespace), so formatting differences don't count as
/// a different request. Custom header values and a PagerDuty routing key
/// are masked first: the
/// fingerprint is stored, and a hash of a short value (a password) could be
/// guessed back.
fn request_fingerprint(raw: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(raw)
        .and_then(|mut v| {
            if let Some(map) = v.get_mut("headers").and_then(|h| h.as_object_mut()) {
                map.values_mut()
                    .for_each(|value| *value = headers::MASK.into());
            }
            if let Some(key) = v.pointer_mut("/format/routing_key") {
                *key = headers::MASK.into();
            }
            serde_json::to_vec(&v)
        })
        .unwrap_or_else(|_| raw.to_vec());
    let digest = Sha256::digest(&canonical);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::parse_version_tag;

    #[test]
    fn version_tags_are_exactly_the_documented_shapes() {
        for (tag, version) in [("\"3\"", 3), ("W/\"3\"", 3), ("3", 3), ("\"0\"", 0)] {
            assert_eq!(parse_version_tag(tag), Some(version), "{tag}");
        }
        for bad in [
            "",
            "+5",
            "\"5",
            "W/5",
            " 5",
            "\"\"",
            "\"-1\"",
            "x",
            "12345678901234567890",
        ] {
            assert_eq!(parse_version_tag(bad), None, "{bad:?}");
        }
    }
}
