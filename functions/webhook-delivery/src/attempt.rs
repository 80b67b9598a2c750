//! One delivery attempt: a signed POST and what came of it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use shared::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use shared::storage::deliveries::excerpt;

use crate::client::Blocked;

/// At most this much of a response body is read.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Why an attempt got no acceptable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A response arrived with a non-2xx status (redirects included).
    Status,
    /// Connect or total timeout.
    Timeout,
    /// The connection could not be made or broke (refused, reset, TLS).
    Connect,
    /// The SSRF guard refused the target.
    Blocked,
    /// The subscription's signing secret (or a custom header value) does
    /// not decrypt (tampered, moved from another item, or of a key version
    /// the keyring lacks): nothing was sent, rather than a signature with a
    /// wrong key or a request without its headers.
    Secret,
    /// The subscription's body format did not render the event (a
    /// template's error, fuel or size limit; a routing key that does not
    /// decrypt): nothing was sent. The class says which.
    Render(&'static str),
    /// Anything else about building or sending the request.
    Request,
}

impl FailureKind {
    /// The error class recorded in the attempt log and the message history.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Blocked => "blocked_address",
            Self::Secret => "secret_unreadable",
            Self::Render(class) => class,
            Self::Request => "request",
        }
    }
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// When it started.
    pub at: DateTime<Utc>,
    /// The response status, if one arrived.
    pub status: Option<u16>,
    /// Set unless the status was 2xx.
    pub failure: Option<FailureKind>,
    /// A `Retry-After` from a 429 or 503, in the future.
    pub retry_after: Option<Duration>,
    /// Time to the response or the error.
    pub duration: Duration,
    /// The start of the response body (or the error text).
    pub excerpt: Option<String>,
}

impl AttemptResult {
    /// Whether the receiver accepted the event.
    pub fn delivered(&self) -> bool {
        self.failure.is_none()
    }

    /// Whether the receiver answered `410 Gone`.
    pub fn gone(&self) -> bool {
        self.status == Some(StatusCode::GONE.as_u16())
    }

    /// The attempt refused before sending.
    pub fn blocked(at: DateTime<Utc>, reason: &Blocked) -> Self {
        Self {
            at,
            status: None,
            failure: Some(FailureKind::Blocked),
            retry_after: None,
            duration: Duration::ZERO,
            excerpt: Some(reason.to_string()),
        }
    }
}

impl AttemptResult {
    /// The attempt refused before sending: the secret does not open.
    pub fn unsigned(at: DateTime<Utc>, reason: &shared::signing::sealed::OpenError) -> Self {
        Self {
            at,
            status: None,
            failure: Some(FailureKind::Secret),
            retry_after: None,
            duration: Duration::ZERO,
            excerpt: Some(reason.to_string()),
        }
    }
}

impl AttemptResult {
    /// The attempt refused before sending: the body did not render.
    pub fn unrendered(at: DateTime<Utc>, class: &'static str, reason: String) -> Self {
        Self {
            at,
            status: None,
            failure: Some(FailureKind::Render(class)),
            retry_after: None,
            duration: Duration::ZERO,
            excerpt: Some(reason),
        }
    }
}

/// The signed request of one attempt (its `Debug` shows the body's
/// length only: a PagerDuty body holds the routing key).
pub struct SignedRequest<'a> {
    /// Target URL.
    pub url: &'a url::Url,
    /// `webhook-id`: the event's id.
    pub id: &'a str,
    /// `webhook-timestamp` (unix seconds).
    pub timestamp: i64,
    /// `webhook-signature`.
    pub signature: String,
    /// The subscription's custom headers.
    pub headers: &'a http::HeaderMap,
    /// The exact payload bytes that were signed.
    pub body: Bytes,
}

impl std::fmt::Debug for SignedRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest")
            .field("url", &self.url.as_str())
            .field("id", &self.id)
            .field("timestamp", &self.timestamp)
            .field("headers", &self.headers)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// POSTs `request` and classifies the outcome. Never fails: every problem
/// is an [`AttemptResult`] with a [`FailureKind`].
pub async fn send(client: &reqwest::Client, request: SignedRequest<'_>) -> AttemptResult {
    let at = Utc::now();
    let started = Instant::now();
    let mut timestamp = itoa::Buffer::new();
    let sent = client
        .post(request.url.clone())
        // First: the service's own headers below can't be overridden.
        .headers(request.headers.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(HEADER_ID, request.id)
        .header(HEADER_TIMESTAMP, timestamp.format(request.timestamp))
        .header(HEADER_SIGNATURE, request.signature)
        .body(request.body)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(err) => {
            return AttemptResult {
                at,
                status: None,
                failure: Some(classify(&err)),
                retry_after: None,
                duration: started.elapsed(),
                excerpt: Some(error_text(&err)),
            };
        }
    };
    let status = response.status();
    let retry_after = matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    )
    .then(|| response.headers().get(RETRY_AFTER))
    .flatten()
    .and_then(|v| v.to_str().ok())
    .and_then(|v| parse_retry_after(v, at));
    let mut body = Vec::new();
    // The status decides the outcome; a body that breaks off or times out
    // only shortens the excerpt.
    while body.len() < MAX_RESPONSE_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    AttemptResult {
        at,
        status: Some(status.as_u16()),
        failure: (!status.is_success()).then_some(FailureKind::Status),
        retry_after,
        duration: started.elapsed(),
        excerpt: excerpt(&body),
    }
}

fn classify(err: &reqwest::Error) -> FailureKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<Blocked>() {
            return FailureKind::Blocked;
        }
        source = e.source();
    }
    if err.is_timeout() {
        FailureKind::Timeout
    } else if err.is_connect() || err.is_request() || err.is_body() {
        FailureKind::Connect
    } else {
        FailureKind::Request
    }
}

/// The error and its causes on one line, for the attempt log.
fn error_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    // On a character boundary: an error text can hold any UTF-8 (a host
    // name, a TLS peer's message).
    shared::text::truncate(&mut text, shared::storage::deliveries::MAX_EXCERPT);
    text
}

/// `Retry-After` as seconds or an HTTP date, if it lies in the future.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (when - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Named(String);

    #[test]
    fn error_texts_are_cut_on_a_character_boundary() {
        use shared::storage::deliveries::MAX_EXCERPT;
        // One ASCII byte first, so that the limit falls inside a
        // two-byte character.
        let err = Named(format!("x{}", "é".repeat(MAX_EXCERPT)));
        let text = error_text(&err);
        assert_eq!(text.len(), MAX_EXCERPT - 1);
        assert!(text.starts_with("xé"));
        let short = Named("connection refused by hôte.example".to_owned());
        assert_eq!(error_text(&short), "connection refused by hôte.example");
    }

    #[test]
    fn retry_after_takes_seconds_or_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
