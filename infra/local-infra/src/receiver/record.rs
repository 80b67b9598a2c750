//! What arrived: every request, and with verification the events that
//! verified and the requests refused; waiting on them without polling.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::watch;

use super::verify::{Rejection, VerifiedEvent};

/// Fewer requests or events than awaited arrived in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{received} of {expected} expected events arrived within {timeout:?}")]
pub struct WaitTimeout {
    /// How many were awaited.
    pub expected: usize,
    /// How many had arrived.
    pub received: usize,
    /// How long was waited.
    pub timeout: Duration,
}

/// A job event a [`Receiver::down_until`] accepted.
#[derive(Debug, Clone)]
pub struct AcceptedEvent {
    /// Its `webhook-id`.
    pub webhook_id: String,
    /// `data.job_id`.
    pub job_id: String,
    /// `data.state`.
    pub state: String,
    /// When it arrived.
    pub at: Instant,
}

/// The job events a receiver accepted, in order of arrival.
pub type AcceptedEvents = Arc<Mutex<Vec<AcceptedEvent>>>;

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The URL path, without the query.
    pub path: String,
    /// The URL query (after `?`), if any.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// When the request head arrived.
    pub at: Instant,
}

impl Received {
    /// The value of header `name` (case-insensitive), if present and valid
    /// UTF-8; the first one when repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as UTF-8, lossily.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The event this request carries, when its Standard Webhooks `v1`
    /// signature verifies now with the key `key_of` gives for the payload's
    /// subscription: (subscription, job, state) for a job event, and
    /// (subscription, `webhook-id`, type) for any other event.
    pub fn verified_event(
        &self,
        key_of: impl FnOnce(&str) -> Option<Vec<u8>>,
    ) -> Option<(String, String, String)> {
        let payload: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        let sub = payload["subscription_id"].as_str()?;
        let key = key_of(sub)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as i64;
        let webhook_id = self.header("webhook-id")?;
        shared::signing::verify(
            &[key.as_slice()],
            webhook_id,
            self.header("webhook-timestamp")?,
            self.header("webhook-signature")?,
            &self.body,
            now,
        )
        .ok()?;
        let data = &payload["data"];
        let (first, second) = match (data["job_id"].as_str(), data["state"].as_str()) {
            (Some(job), Some(state)) => (job, state),
            _ => (webhook_id, payload["type"].as_str()?),
        };
        Some((sub.to_owned(), first.to_owned(), second.to_owned()))
    }
}

#[derive(Debug, Default)]
pub(super) struct Log {
    received: Vec<Received>,
    verified: Vec<VerifiedEvent>,
    rejected: Vec<Rejection>,
    seen: HashSet<String>,
}

/// The receiver's log, shared by its connections and its owner.
#[derive(Debug)]
pub(super) struct Record(watch::Sender<Log>);

impl Record {
    pub(super) fn new() -> Self {
        Self(watch::Sender::new(Log::default()))
    }

    /// Records a request that arrived; `with_index` runs while it is
    /// recorded, with its 0-based index, so requests take their turn (a
    /// scripted reply, say) in order of arrival.
    pub(super) fn request<T>(&self, received: Received, with_index: impl FnOnce(usize) -> T) -> T {
        let mut taken = None;
        self.0.send_modify(|log| {
            log.received.push(received);
            taken = Some(with_index(log.received.len() - 1));
        });
        taken.expect("send_modify runs its closure")
    }

    pub(super) fn received(&self) -> Vec<Received> {
        self.0.borrow().received.clone()
    }

    pub(super) fn requests(&self) -> usize {
        self.0.borrow().received.len()
    }

    pub(super) fn verified(&self) -> Vec<VerifiedEvent> {
        self.0.borrow().verified.clone()
    }

    pub(super) fn rejected(&self) -> Vec<Rejection> {
        self.0.borrow().rejected.clone()
    }

    /// Records a verified event; marks it when its id was seen before.
    pub(super) fn verified_event(&self, mut event: VerifiedEvent) -> VerifiedEvent {
        self.0.send_modify(|log| {
            event.duplicate = !log.seen.insert(event.webhook_id.clone());
            log.verified.push(event.clone());
        });
        event
    }

    pub(super) fn rejection(&self, rejection: Rejection) {
        self.0.send_modify(|log| log.rejected.push(rejection));
    }

    pub(super) async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>, WaitTimeout> {
        self.wait(n, timeout, |log| &log.received).await
    }

    pub(super) async fn wait_for_verified(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<VerifiedEvent>, WaitTimeout> {
        self.wait(n, timeout, |log| &log.verified).await
    }

    pub(super) async fn wait_for_rejections(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Rejection>, WaitTimeout> {
        self.wait(n, timeout, |log| &log.rejected).await
    }

    async fn wait<T: Clone>(
        &self,
        n: usize,
        timeout: Duration,
        list: impl Fn(&Log) -> &Vec<T>,
    ) -> Result<Vec<T>, WaitTimeout> {
        let mut changes = self.0.subscribe();
        let reached = tokio::time::timeout(timeout, changes.wait_for(|log| list(log).len() >= n))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|log| list(&log).clone());
        reached.ok_or_else(|| WaitTimeout {
            expected: n,
            received: list(&self.0.borrow()).len(),
            timeout,
        })
    }
}

/// `title`, then one line per request: method, path, headers, body excerpt.
pub(super) fn describe(title: &str, received: &[Received]) -> String {
    const EXCERPT: usize = 300;
    let mut out = format!("{title}:");
    for (i, r) in received.iter().enumerate() {
        let query = r
            .query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let headers: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let body = r.body_text();
        let excerpt: String = body.chars().take(EXCERPT).collect();
        let more = if body.chars().count() > EXCERPT {
            "..."
        } else {
            ""
        };
        let _ = write!(
            out,
            "\n  #{i} {} {}{query} [{}] body ({} bytes): {excerpt}{more}",
            r.method,
            r.path,
            headers.join(", "),
            r.body.len(),
        );
    }
    out
}
