//! A demo webhook receiver on loopback that verifies every delivery the way
//! a customer's endpoint should, and says so in one line per request.
//!
//! Each POST is checked as a Standard Webhooks receiver does: the
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` headers must be
//! there, the timestamp within five minutes, and one `v1` signature must
//! match a secret of the subscription the payload names. The subscription
//! is read with [`SubscriptionStore::get`] by the payload's `company_id` and
//! `subscription_id` (fine locally: a forged claim still fails
//! verification), and its current secret, plus the previous one during a
//! rotation grace period, are opened with the stack's keyring and tried
//! ([`Subscription::signing_secrets`]). A real receiver holds its secret
//! instead; the demo one stands in for every subscription.
//!
//! A verified event is answered `204 No Content`, recorded, and printed:
//!
//! ```text
//! ✔ verified job.completed  job-3f2a9c01d4e5 (materialize-view) running → completed  sub_…  evt_…
//! ```
//!
//! Anything else is answered with a 4xx, recorded as a [`Rejection`] and
//! printed (`✘ rejected: no signature matches (evt_…)`): `401` for a
//! missing header, an unknown subscription or a signature that does not
//! verify, `400` for a body that is not an event. If the subscription
//! cannot be read the answer is `503`, so the sender retries.
//!
//! [`ReceiverLog`] lets tests read what arrived and await it
//! ([`ReceiverLog::wait_for`]) without polling.
//!
//! [`Subscription::signing_secrets`]: shared::domain::subscription::Subscription::signing_secrets

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use shared::config::{self, ConfigError};
use shared::domain::jobs::JobState;
use shared::domain::subscription::is_subscription_id;
use shared::signing::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerifyError};
use shared::storage::keyring::SecretVault;
use shared::storage::subscriptions::SubscriptionStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The networks of receivers on this machine, as a delivery allow-list
/// (`TARGET_ALLOW_LIST`): loopback only.
pub const LOOPBACK_ALLOW_LIST: &str = "127.0.0.0/8,::1";

/// Where the receiver listens unless configured otherwise.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3001);

/// Environment variable with the receiver's address.
pub const ADDR_VAR: &str = "LOCAL_RECEIVER_ADDR";

/// Largest request body read; larger ones are answered `413`.
const MAX_BODY: usize = 1024 * 1024;

/// How long in-flight requests may take to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The receiver's address from [`ADDR_VAR`] ([`DEFAULT_ADDR`] when unset);
/// only loopback addresses are accepted.
pub fn addr_from_env() -> Result<SocketAddr, ConfigError> {
    let addr = config::parse_or(ADDR_VAR, DEFAULT_ADDR)?;
    if !addr.ip().is_loopback() {
        return Err(ConfigError::new(
            ADDR_VAR,
            "the demo receiver only listens on loopback addresses",
        ));
    }
    Ok(addr)
}

/// The receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The address is not a loopback address.
    #[error("the demo receiver only listens on loopback addresses, not {0}")]
    NotLoopback(SocketAddr),
    /// Binding the address failed.
    #[error("the demo receiver cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
}

/// Fewer verified events than awaited arrived in time.
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

/// A delivery whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEvent {
    /// The `webhook-id` header, which is the payload's `idempotency_key`.
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
    /// The verified payload's `idempotency_key` is not the `webhook-id`.
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

#[derive(Debug, Default)]
struct Log {
    verified: Vec<VerifiedEvent>,
    rejected: Vec<Rejection>,
    seen: HashSet<String>,
}

/// What the receiver has verified and rejected; cheap to clone and usable
/// while the receiver serves.
#[derive(Debug, Clone)]
pub struct ReceiverLog {
    log: Arc<watch::Sender<Log>>,
    outage: Arc<std::sync::atomic::AtomicBool>,
}

/// Requests to a path ending in this answer `503` while the receiver's
/// outage is on ([`ReceiverLog::set_outage`]): the demo's failing endpoint.
pub const OUTAGE_PATH: &str = "/outage";

impl ReceiverLog {
    fn new() -> Self {
        Self {
            log: Arc::new(watch::Sender::new(Log::default())),
            outage: Arc::default(),
        }
    }

    /// Turns the outage of the [`OUTAGE_PATH`] endpoint on or off.
    pub fn set_outage(&self, down: bool) {
        self.outage
            .store(down, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_down(&self, path: &str) -> bool {
        path.ends_with(OUTAGE_PATH) && self.outage.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every verified delivery so far, in arrival order (duplicates
    /// included, marked).
    pub fn verified(&self) -> Vec<VerifiedEvent> {
        self.log.borrow().verified.clone()
    }

    /// Every refused request so far, in arrival order.
    pub fn rejected(&self) -> Vec<Rejection> {
        self.log.borrow().rejected.clone()
    }

    /// Waits until at least `n` deliveries verified, at most `timeout`;
    /// returns all verified so far.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<VerifiedEvent>, WaitTimeout> {
        self.wait(n, timeout, |log| &log.verified).await
    }

    /// Waits until at least `n` requests were refused, at most `timeout`;
    /// returns all refused so far.
    pub async fn wait_for_rejections(
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
        let mut changes = self.log.subscribe();
        let reached = tokio::time::timeout(timeout, changes.wait_for(|log| list(log).len() >= n))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|log| list(&log).clone());
        reached.ok_or_else(|| WaitTimeout {
            expected: n,
            received: list(&self.log.borrow()).len(),
            timeout,
        })
    }

    /// Records a verified event; marks it when its id was seen before.
    fn verified_event(&self, mut event: VerifiedEvent) -> VerifiedEvent {
        self.log.send_modify(|log| {
            event.duplicate = !log.seen.insert(event.webhook_id.clone());
            log.verified.push(event.clone());
        });
        event
    }

    fn rejection(&self, rejection: Rejection) {
        self.log.send_modify(|log| log.rejected.push(rejection));
    }
}

type Printer = Arc<dyn Fn(&str) + Send + Sync>;

struct Inner {
    store: SubscriptionStore,
    secrets: Arc<SecretVault>,
    log: ReceiverLog,
    printer: Printer,
}

/// The demo receiver, bound and ready to [`serve`](Self::serve).
pub struct DemoReceiver {
    listener: TcpListener,
    addr: SocketAddr,
    store: SubscriptionStore,
    secrets: Arc<SecretVault>,
    log: ReceiverLog,
    printer: Printer,
}

impl std::fmt::Debug for DemoReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoReceiver")
            .field("addr", &self.addr)
            .field("table", &self.store.table())
            .finish_non_exhaustive()
    }
}

impl DemoReceiver {
    /// Listens on `addr` (a loopback address; port 0 picks a free port),
    /// looking subscriptions up in `store` and opening their secrets with
    /// `secrets`. Prints to stdout until [`with_printer`](Self::with_printer)
    /// says otherwise.
    pub async fn bind(
        addr: SocketAddr,
        store: SubscriptionStore,
        secrets: Arc<SecretVault>,
    ) -> Result<Self, ReceiverError> {
        if !addr.ip().is_loopback() {
            return Err(ReceiverError::NotLoopback(addr));
        }
        let bind_error = |source| ReceiverError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            addr,
            store,
            secrets,
            log: ReceiverLog::new(),
            printer: Arc::new(|line| println!("{line}")),
        })
    }

    /// Hands every printed line to `printer` instead of stdout.
    pub fn with_printer(mut self, printer: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.printer = Arc::new(printer);
        self
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A URL for subscriptions to deliver to (any path is accepted).
    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    /// What the receiver verifies and rejects, also while it serves.
    pub fn log(&self) -> ReceiverLog {
        self.log.clone()
    }

    /// Answers requests until `shutdown` completes, then lets in-flight
    /// requests finish (at most five seconds) and closes every connection.
    /// Fails only if accepting connections fails.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Self {
            listener,
            store,
            secrets,
            log,
            printer,
            ..
        } = self;
        let inner = Arc::new(Inner {
            store,
            secrets,
            log,
            printer,
        });
        let (stop, stopped) = watch::channel(());
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        let result = loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => break Err(e),
                },
                () = &mut shutdown => break Ok(()),
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let inner = Arc::clone(&inner);
            let mut stopped = stopped.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let inner = Arc::clone(&inner);
                    async move { Ok::<_, Infallible>(inner.handle(req).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    _ = stopped.changed() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "demo receiver connection closed with an error");
                }
            });
        };
        // Idle connections close now, busy ones after their response.
        stop.send_replace(());
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            connections.abort_all();
        }
        result
    }
}

/// The value of header `name`, when present and text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
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

impl Inner {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "webhooks are POSTed\n".into(),
            );
            response
                .headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            return response;
        }
        let (parts, body) = req.into_parts();
        let webhook_id = header(&parts.headers, HEADER_ID).map(str::to_owned);
        if self.log.is_down(parts.uri.path()) {
            let id = webhook_id.as_deref().unwrap_or("no webhook-id");
            (self.printer)(&format!(
                "✘ 503 from {} (down for the demo): {id}",
                parts.uri.path()
            ));
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "down for the demo\n".into(),
            );
        }
        match self.verify(&parts.headers, body).await {
            Ok(event) => {
                let event = self.log.verified_event(event);
                (self.printer)(&verified_line(&event));
                Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_default()
            }
            Err(reason) => {
                let status = reason.status();
                let id = webhook_id.as_deref().unwrap_or("no webhook-id");
                (self.printer)(&format!("✘ rejected: {reason} ({id})"));
                let response = text(status, format!("{reason}\n"));
                self.log.rejection(Rejection { webhook_id, reason });
                response
            }
        }
    }

    async fn verify(
        &self,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Result<VerifiedEvent, RejectReason> {
        let required = |name| header(headers, name).ok_or(RejectReason::MissingHeader(name));
        let id = required(HEADER_ID)?;
        let timestamp = required(HEADER_TIMESTAMP)?;
        let signature = required(HEADER_SIGNATURE)?;
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return Err(RejectReason::TooLarge),
            Err(e) => return Err(RejectReason::NotAnEvent(format!("body unreadable: {e}"))),
        };
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
        let versions = subscription.secret_key_versions();
        let unreadable = |e: &dyn std::fmt::Display| RejectReason::StoreUnavailable(e.to_string());
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

/// `✔ verified job.completed  job-… (type) running → completed  sub_…  evt_…`.
fn verified_line(event: &VerifiedEvent) -> String {
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
        let log = ReceiverLog::new();
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move { log.wait_for(2, Duration::from_secs(10)).await })
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
