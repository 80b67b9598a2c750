//! A programmable webhook receiver on loopback.
//!
//! A real HTTP/1 server on `127.0.0.1` (ephemeral port), plain or HTTPS
//! with a self-signed certificate made in-process. Tests queue the
//! [`Reply`] for each request ([`Receiver::script`]) or set a fallback
//! ([`Receiver::set_policy`]), then read back what arrived
//! ([`Receiver::received`], [`Receiver::wait_for`]).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer with this status, headers and body, `delay` after the request
    /// body was read.
    Respond {
        /// HTTP status code.
        status: u16,
        /// Response headers, in order.
        headers: Vec<(String, String)>,
        /// Response body.
        body: String,
        /// Wait this long before answering.
        delay: Duration,
    },
    /// Read the request, then close the connection without any response.
    Drop,
    /// Never answer: keep the connection open until the client gives up or
    /// the receiver is dropped.
    Hang,
}

impl Reply {
    /// Answer with `status`, no headers, an empty body and no delay.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code (100..=999).
    pub fn status(status: u16) -> Self {
        http::StatusCode::from_u16(status).expect("valid HTTP status code");
        Self::Respond {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a response header.
    ///
    /// # Panics
    /// On [`Reply::Drop`] or [`Reply::Hang`], or an invalid header name or
    /// value.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        http::HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        http::HeaderValue::from_str(&value).expect("valid header value");
        match &mut self {
            Self::Respond { headers, .. } => headers.push((name, value)),
            other => not_respond("header", other),
        }
        self
    }

    /// Sets the response body.
    ///
    /// # Panics
    /// On [`Reply::Drop`] or [`Reply::Hang`].
    pub fn body(mut self, body: impl Into<String>) -> Self {
        match &mut self {
            Self::Respond { body: b, .. } => *b = body.into(),
            other => not_respond("body", other),
        }
        self
    }

    /// Answers only after `delay`.
    ///
    /// # Panics
    /// On [`Reply::Drop`] or [`Reply::Hang`].
    pub fn after(mut self, delay: Duration) -> Self {
        match &mut self {
            Self::Respond { delay: d, .. } => *d = delay,
            other => not_respond("after", other),
        }
        self
    }
}

fn not_respond(builder: &str, reply: &Reply) -> ! {
    panic!("Reply::{builder} applies to Reply::status(..), not to Reply::{reply:?}")
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

    /// The job event this request carries, as (subscription, job, state),
    /// when its Standard Webhooks signature verifies now with the key
    /// `key_of` gives for the payload's subscription.
    pub fn verified_job_event(
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
        shared::signing::verify(
            &[key.as_slice()],
            self.header("webhook-id")?,
            self.header("webhook-timestamp")?,
            self.header("webhook-signature")?,
            &self.body,
            now,
        )
        .ok()?;
        let data = &payload["data"];
        Some((
            sub.to_owned(),
            data["job_id"].as_str()?.to_owned(),
            data["state"].as_str()?.to_owned(),
        ))
    }
}

type Policy = Arc<dyn Fn(usize, &Received) -> Reply + Send + Sync>;

struct Inner {
    received: Vec<Received>,
    script: VecDeque<Reply>,
    policy: Policy,
}

struct State {
    inner: Mutex<Inner>,
    /// How many requests arrived; only ever grows.
    count: watch::Sender<usize>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking policy must not wedge the receiver for later requests.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running webhook receiver. Stops serving, and closes every open
/// connection, when dropped.
pub struct Receiver {
    scheme: &'static str,
    port: u16,
    ca_pem: Option<String>,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    /// Starts a plain HTTP receiver on a free loopback port.
    ///
    /// # Panics
    /// Outside a Tokio runtime, or when no loopback port can be bound.
    pub async fn http() -> Self {
        let (listener, port) = bind().await;
        let state = new_state();
        let server = tokio::spawn(crate::http_server::serve_with(
            listener,
            |stream| std::future::ready(Ok(stream)),
            Arc::clone(&state),
            handle,
        ));
        Self {
            scheme: "http",
            port,
            ca_pem: None,
            state,
            server,
        }
    }

    /// Starts an HTTPS receiver on a free loopback port, with a fresh
    /// self-signed certificate for `127.0.0.1` and `localhost` (see
    /// [`ca_pem`](Self::ca_pem)). Speaks HTTP/1.1 only.
    ///
    /// # Panics
    /// Outside a Tokio runtime, or when no loopback port can be bound.
    pub async fn https() -> Self {
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("self-signed certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
        // Explicit provider: no process-wide default is installed, and the
        // workspace's TLS is ring throughout.
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("certificate matches its key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let (listener, port) = bind().await;
        let state = new_state();
        let server = tokio::spawn(crate::http_server::serve_with(
            listener,
            move |stream| acceptor.accept(stream),
            Arc::clone(&state),
            handle,
        ));
        Self {
            scheme: "https",
            port,
            ca_pem: Some(cert.pem()),
            state,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/path` (or `https://`); a missing leading `/`
    /// on `path` is added.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("{}://127.0.0.1:{}{slash}{path}", self.scheme, self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// For HTTPS, the certificate (PEM) a client must trust; `None` for
    /// plain HTTP.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Queues `replies` after any still queued; each request takes the
    /// next one, in order of arrival, before the policy is consulted.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().script.extend(replies);
    }

    /// Sets how requests are answered once the script is empty. The
    /// argument is the 0-based index of the request among all requests this
    /// receiver got (scripted ones included). The default answers
    /// `Reply::status(200)`.
    pub fn set_policy(&self, policy: impl Fn(usize) -> Reply + Send + Sync + 'static) {
        self.state.lock().policy = Arc::new(move |index, _| policy(index));
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

    /// Like [`set_policy`](Self::set_policy), with the request itself, so a
    /// receiver can answer by content (verify a signature, record what it
    /// accepted).
    pub fn set_handler(&self, handler: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) {
        self.state.lock().policy = Arc::new(handler);
    }

    /// Every request received so far, in order of arrival, including those
    /// answered with [`Reply::Drop`] or [`Reply::Hang`]. A request counts
    /// once its body has been read in full.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().received.clone()
    }

    /// Waits until at least `n` requests arrived, then returns all of them
    /// (as [`received`](Self::received)).
    ///
    /// # Panics
    /// After `timeout`, listing what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let mut count = self.state.count.subscribe();
        // `is_ok` drops the watch guard before the state lock is taken.
        let arrived = tokio::time::timeout(timeout, count.wait_for(|&c| c >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        let received = self.received();
        if !arrived {
            panic!(
                "{}",
                describe(
                    &format!(
                        "receiver {}: waited {timeout:?} for {n} requests, {} arrived",
                        self.url("/"),
                        received.len(),
                    ),
                    &received,
                )
            );
        }
        received
    }
}

fn new_state() -> Arc<State> {
    Arc::new(State {
        inner: Mutex::new(Inner {
            received: Vec::new(),
            script: VecDeque::new(),
            policy: Arc::new(|_, _| Reply::status(200)),
        }),
        count: watch::Sender::new(0),
    })
}

async fn bind() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("local address").port();
    (listener, port)
}

/// `title`, then one line per request: method, path, headers, body excerpt.
fn describe(title: &str, received: &[Received]) -> String {
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    // A body that cannot be read in full (the client went away) is not a
    // received request; the error closes the connection.
    let body = body.collect().await?.to_bytes();
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        at,
    };
    let (index, scripted, policy) = {
        let mut inner = state.lock();
        inner.received.push(received.clone());
        let index = inner.received.len() - 1;
        (index, inner.script.pop_front(), Arc::clone(&inner.policy))
    };
    state.count.send_if_modified(|count| {
        let grew = index + 1 > *count;
        *count = (*count).max(index + 1);
        grew
    });
    // The policy runs outside the lock: it may panic or take its time.
    match scripted.unwrap_or_else(|| policy(index, &received)) {
        Reply::Respond {
            status,
            headers,
            body,
            delay,
        } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut response = Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            Ok(response.body(Full::new(Bytes::from(body)))?)
        }
        Reply::Drop => Err("Reply::Drop: closing the connection without a response".into()),
        Reply::Hang => std::future::pending().await,
    }
}
