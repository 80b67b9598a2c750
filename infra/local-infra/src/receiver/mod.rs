//! The webhook receiver on loopback that `make run`'s demo, the tests and
//! the benchmarks all use.
//!
//! A real HTTP/1 server, plain or HTTPS with a self-signed certificate
//! made in-process ([`ReceiverBuilder::https`]). It records every request
//! ([`Receiver::received`], [`Receiver::wait_for`]) and answers with the
//! next scripted [`Reply`] ([`Receiver::script`]), else with its policy
//! ([`Receiver::set_policy`], [`Receiver::set_handler`]), else by default:
//! `200`, or, when verifying ([`ReceiverBuilder::verifying`]), after
//! Standard Webhooks checks with the subscription's secrets (see
//! [`verify`](self::verify)): `204` for a verified event, a 4xx for a
//! refused request, `503` when the subscription cannot be read. Verified
//! events and refusals are recorded too ([`Receiver::verified`],
//! [`Receiver::rejected`]) and, with a printer
//! ([`ReceiverBuilder::printing`]), printed one line each:
//!
//! ```text
//! ✔ verified job.completed  job-3f2a9c01d4e5 (materialize-view) running → completed  sub_…  evt_…
//! ✘ rejected: no signature matches (evt_…)
//! ```
//!
//! While the outage is on ([`Receiver::set_outage`]), requests to a path
//! ending in [`OUTAGE_PATH`] are answered `503` by default: the demo's
//! failing endpoint.

mod record;
mod reply;
mod tls;
mod verify;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use shared::config::{self, ConfigError};
use shared::signing::HEADER_ID;
use shared::storage::keyring::SecretVault;
use shared::storage::subscriptions::SubscriptionStore;
use std::collections::VecDeque;

pub use record::{AcceptedEvent, AcceptedEvents, Received, WaitTimeout};
pub use reply::Reply;
pub use verify::{RejectReason, Rejection, VerifiedEvent};

use crate::http_server::{self, Background};
use record::Record;
use reply::{BoxError, Policy};
use verify::Verifier;

/// The networks of receivers on this machine, as a delivery allow-list
/// (`TARGET_ALLOW_LIST`): loopback only.
pub const LOOPBACK_ALLOW_LIST: &str = "127.0.0.0/8,::1";

/// Where the demo receiver listens unless configured otherwise.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3001);

/// Environment variable with the demo receiver's address.
pub const ADDR_VAR: &str = "LOCAL_RECEIVER_ADDR";

/// Requests to a path ending in this answer `503` while the receiver's
/// outage is on ([`Receiver::set_outage`]): the demo's failing endpoint.
pub const OUTAGE_PATH: &str = "/outage";

/// The demo receiver's address from [`ADDR_VAR`] ([`DEFAULT_ADDR`] when
/// unset); only loopback addresses are accepted.
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
    /// The self-signed certificate could not be made.
    #[error("the receiver's self-signed certificate could not be made: {0}")]
    Certificate(String),
    /// The receiver's own runtime could not be built.
    #[error("the receiver's runtime could not be built: {0}")]
    Runtime(io::Error),
}

type Printer = Arc<dyn Fn(&str) + Send + Sync>;

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a [`Receiver`] is set up before it starts.
pub struct ReceiverBuilder {
    addr: SocketAddr,
    https: bool,
    verifier: Option<Verifier>,
    printer: Option<Printer>,
    threads: Option<usize>,
    shutdown: Option<Shutdown>,
}

impl std::fmt::Debug for ReceiverBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverBuilder")
            .field("addr", &self.addr)
            .field("https", &self.https)
            .field("verifying", &self.verifier.is_some())
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl ReceiverBuilder {
    /// Serves HTTPS with a fresh self-signed certificate for `127.0.0.1`
    /// and `localhost` (see [`Receiver::ca_pem`]); HTTP/1.1 only.
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// Answers by default after Standard Webhooks checks, looking
    /// subscriptions up in `store` and opening their secrets with
    /// `secrets` (see the [module](self) documentation).
    pub fn verifying(mut self, store: SubscriptionStore, secrets: Arc<SecretVault>) -> Self {
        self.verifier = Some(Verifier { store, secrets });
        self
    }

    /// Hands one line per verified, refused or outage-answered request to
    /// `printer`.
    pub fn printing(mut self, printer: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.printer = Some(Arc::new(printer));
        self
    }

    /// Serves on a runtime of `threads` worker threads of its own, so its
    /// work is not counted as the caller's CPU time (benchmarks).
    pub fn on_own_runtime(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Stops serving when `shutdown` completes, letting busy connections
    /// finish first (see [`Receiver::stopped`]).
    pub fn until(mut self, shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(shutdown));
        self
    }

    /// Binds the address and starts serving.
    ///
    /// # Panics
    /// Outside a Tokio runtime, unless on a runtime of its own.
    pub fn start(self) -> Result<Receiver, ReceiverError> {
        let Self {
            addr,
            https,
            verifier,
            printer,
            threads,
            shutdown,
        } = self;
        if !addr.ip().is_loopback() {
            return Err(ReceiverError::NotLoopback(addr));
        }
        let bind_error = |source| ReceiverError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let state = Arc::new(State {
            record: Record::new(),
            scripting: Mutex::new(Scripting {
                script: VecDeque::new(),
                policy: None,
            }),
            verifier,
            printer,
            outage: AtomicBool::new(false),
        });
        let shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        let tls = https
            .then(tls::self_signed)
            .transpose()
            .map_err(ReceiverError::Certificate)?;
        let ca_pem = tls.as_ref().map(|(_, pem)| pem.clone());
        let served = Arc::clone(&state);
        let server = async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            match tls {
                Some((acceptor, _)) => {
                    let accept = move |stream| acceptor.accept(stream);
                    http_server::serve_until(listener, accept, served, handle, shutdown).await
                }
                None => {
                    http_server::serve_until(listener, http_server::plain, served, handle, shutdown)
                        .await
                }
            }
        };
        let server = match threads {
            Some(threads) => {
                Background::on_own_runtime(threads, server).map_err(ReceiverError::Runtime)?
            }
            None => Background::spawn(server),
        };
        Ok(Receiver {
            scheme: if https { "https" } else { "http" },
            addr,
            ca_pem,
            state,
            server,
        })
    }
}

struct Scripting {
    script: VecDeque<Reply>,
    /// `None`: the default answer.
    policy: Option<Policy>,
}

struct State {
    record: Record,
    scripting: Mutex<Scripting>,
    verifier: Option<Verifier>,
    printer: Option<Printer>,
    outage: AtomicBool,
}

impl State {
    fn scripting(&self) -> MutexGuard<'_, Scripting> {
        // A panicking policy must not wedge the receiver for later requests.
        self.scripting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn print(&self, line: &str) {
        if let Some(printer) = &self.printer {
            printer(line);
        }
    }
}

/// A running webhook receiver. Stops serving, and closes every open
/// connection, when dropped.
pub struct Receiver {
    scheme: &'static str,
    addr: SocketAddr,
    ca_pem: Option<String>,
    state: Arc<State>,
    server: Background,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("url", &self.url("/"))
            .field("verifying", &self.state.verifier.is_some())
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver to set up, on a free loopback port.
    pub fn builder() -> ReceiverBuilder {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// A receiver to set up, on `addr` (a loopback address; port 0 picks a
    /// free port).
    pub fn bind(addr: SocketAddr) -> ReceiverBuilder {
        ReceiverBuilder {
            addr,
            https: false,
            verifier: None,
            printer: None,
            threads: None,
            shutdown: None,
        }
    }

    /// Starts a plain HTTP receiver on a free loopback port.
    ///
    /// # Panics
    /// Outside a Tokio runtime, or when no loopback port can be bound.
    pub async fn http() -> Self {
        Self::builder().start().expect("a loopback receiver starts")
    }

    /// Starts an HTTPS receiver on a free loopback port (see
    /// [`ReceiverBuilder::https`]).
    ///
    /// # Panics
    /// Outside a Tokio runtime, or when no loopback port can be bound.
    pub async fn https() -> Self {
        Self::builder()
            .https()
            .start()
            .expect("a loopback receiver starts")
    }

    /// A plain-HTTP receiver standing for an endpoint that is down (503)
    /// while `up` is false and then accepts (204), recording each job event
    /// it accepted.
    ///
    /// # Panics
    /// As [`Receiver::http`].
    pub async fn down_until(up: Arc<AtomicBool>) -> (Self, AcceptedEvents) {
        let receiver = Self::http().await;
        let accepted = AcceptedEvents::default();
        let record = Arc::clone(&accepted);
        receiver.set_handler(move |_, req| {
            if !up.load(Ordering::SeqCst) {
                return Reply::status(503);
            }
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let field = |name: &str| body["data"][name].as_str().unwrap_or_default().to_owned();
            record
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(AcceptedEvent {
                    webhook_id: req.header("webhook-id").unwrap_or_default().to_owned(),
                    job_id: field("job_id"),
                    state: field("state"),
                    at: Instant::now(),
                });
            Reply::status(204)
        });
        (receiver, accepted)
    }

    /// `http://ADDR/path` (or `https://`); a missing leading `/` on `path`
    /// is added.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("{}://{}{slash}{path}", self.scheme, self.addr)
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// For HTTPS, the certificate (PEM) a client must trust; `None` for
    /// plain HTTP.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Queues `replies` after any still queued; each request takes the
    /// next one, in order of arrival, before the policy is consulted.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.scripting().script.extend(replies);
    }

    /// Sets how requests are answered once the script is empty. The
    /// argument is the 0-based index of the request among all requests this
    /// receiver got (scripted ones included). Without one, requests get
    /// the default answer: `Reply::status(200)`, or the verification's.
    pub fn set_policy(&self, policy: impl Fn(usize) -> Reply + Send + Sync + 'static) {
        self.state.scripting().policy = Some(Arc::new(move |index, _| policy(index)));
    }

    /// Like [`set_policy`](Self::set_policy), with the request itself, so a
    /// receiver can answer by content (verify a signature, record what it
    /// accepted).
    pub fn set_handler(&self, handler: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) {
        self.state.scripting().policy = Some(Arc::new(handler));
    }

    /// Turns the outage of the [`OUTAGE_PATH`] endpoint on or off.
    pub fn set_outage(&self, down: bool) {
        self.state.outage.store(down, Ordering::Relaxed);
    }

    /// Every request received so far, in order of arrival, including those
    /// answered with [`Reply::Drop`] or [`Reply::Hang`]. A request counts
    /// once its body has been read in full.
    pub fn received(&self) -> Vec<Received> {
        self.state.record.received()
    }

    /// How many requests were received so far.
    pub fn requests(&self) -> usize {
        self.state.record.requests()
    }

    /// Waits until at least `n` requests arrived, then returns all of them
    /// (as [`received`](Self::received)).
    ///
    /// # Panics
    /// After `timeout`, listing what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        match self.state.record.wait_for_requests(n, timeout).await {
            Ok(received) => received,
            Err(_) => {
                let received = self.received();
                panic!(
                    "{}",
                    record::describe(
                        &format!(
                            "receiver {}: waited {timeout:?} for {n} requests, {} arrived",
                            self.url("/"),
                            received.len(),
                        ),
                        &received,
                    )
                )
            }
        }
    }

    /// Every verified delivery so far, in arrival order (duplicates
    /// included, marked).
    pub fn verified(&self) -> Vec<VerifiedEvent> {
        self.state.record.verified()
    }

    /// Every refused request so far, in arrival order.
    pub fn rejected(&self) -> Vec<Rejection> {
        self.state.record.rejected()
    }

    /// Waits until at least `n` deliveries verified, at most `timeout`;
    /// returns all verified so far.
    pub async fn wait_for_verified(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<VerifiedEvent>, WaitTimeout> {
        self.state.record.wait_for_verified(n, timeout).await
    }

    /// Waits until at least `n` requests were refused, at most `timeout`;
    /// returns all refused so far.
    pub async fn wait_for_rejections(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Rejection>, WaitTimeout> {
        self.state.record.wait_for_rejections(n, timeout).await
    }

    /// Waits until the receiver stopped serving after its shutdown
    /// ([`ReceiverBuilder::until`]). Fails only if accepting connections
    /// failed.
    pub async fn stopped(&mut self) -> io::Result<()> {
        self.server.stopped().await
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    // A body that cannot be read in full (the client went away) is not a
    // received request: a verifying receiver refuses it, any other closes
    // the connection.
    let body = match &state.verifier {
        Some(_) => verify::read_body(body).await,
        None => Ok(body.collect().await?.to_bytes()),
    };
    let turn = body.as_ref().ok().map(|body| {
        let received = Received {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
            at,
        };
        let (index, scripted, policy) = state.record.request(received.clone(), |index| {
            let mut scripting = state.scripting();
            (
                index,
                scripting.script.pop_front(),
                scripting.policy.clone(),
            )
        });
        // The policy runs outside the lock: it may panic or take its time.
        scripted.or_else(|| policy.map(|policy| policy(index, &received)))
    });
    match turn.flatten() {
        Some(reply) => reply.respond().await,
        None => Ok(default_answer(&state, &parts, body).await),
    }
}

/// The answer without a script or policy: `405` to anything but a POST
/// when verifying, `503` from the endpoint in an outage, else the
/// verification's answer when verifying, else `200`.
async fn default_answer(
    state: &State,
    parts: &http::request::Parts,
    body: Result<Bytes, RejectReason>,
) -> Response<Full<Bytes>> {
    if state.verifier.is_some() && parts.method != Method::POST {
        let mut response = verify::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "webhooks are POSTed\n".into(),
        );
        response
            .headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        return response;
    }
    let webhook_id = verify::header(&parts.headers, HEADER_ID).map(str::to_owned);
    let path = parts.uri.path();
    if path.ends_with(OUTAGE_PATH) && state.outage.load(Ordering::Relaxed) {
        let id = webhook_id.as_deref().unwrap_or("no webhook-id");
        state.print(&format!("✘ 503 from {path} (down for the demo): {id}"));
        return verify::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "down for the demo\n".into(),
        );
    }
    let Some(verifier) = &state.verifier else {
        return Response::new(Full::new(Bytes::new()));
    };
    match verifier.verify(&parts.headers, body).await {
        Ok(event) => {
            let event = state.record.verified_event(event);
            state.print(&verify::verified_line(&event));
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::new(Bytes::new()))
                .unwrap_or_default()
        }
        Err(reason) => {
            let status = reason.status();
            let id = webhook_id.as_deref().unwrap_or("no webhook-id");
            state.print(&format!("✘ rejected: {reason} ({id})"));
            let response = verify::text(status, format!("{reason}\n"));
            state.record.rejection(Rejection { webhook_id, reason });
            response
        }
    }
}
