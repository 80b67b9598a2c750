//! A Lambda Runtime API on loopback.
//!
//! Runs a function binary the way Lambda does: the binary polls
//! `GET /2018-06-01/runtime/invocation/next` for events and posts each
//! outcome back. Tests push events with [`RuntimeApi::invoke`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

const PREFIX: &str = "/2018-06-01/runtime";

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The function posted a response.
    Response(serde_json::Value),
    /// The function posted an invocation error.
    Error(serde_json::Value),
}

#[derive(Default)]
struct State {
    queue: Mutex<VecDeque<(String, serde_json::Value)>>,
    queued: Notify,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_poll: Mutex<Option<Instant>>,
    polled: Notify,
    init_error: Mutex<Option<serde_json::Value>>,
}

/// A running Runtime API server.
pub struct RuntimeApi {
    address: String,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Starts a server on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("local address").to_string();
        let state = Arc::new(State::default());
        let server = tokio::spawn(crate::http_server::serve(
            listener,
            Arc::clone(&state),
            |state, req| async move { route(&state, req).await },
        ));
        Self {
            address,
            state,
            server,
        }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// When the function first asked for work, waiting up to `timeout`.
    pub async fn first_poll(&self, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.state.polled.notified();
            if let Some(at) = *self.state.first_poll.lock().expect("lock") {
                return Some(at);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if tokio::time::timeout(left, notified).await.is_err() {
                return None;
            }
        }
    }

    /// The error the function reported during initialisation, if any.
    pub fn init_error(&self) -> Option<serde_json::Value> {
        self.state.init_error.lock().expect("lock").clone()
    }

    /// Hands `event` to the function and waits up to `timeout` for its
    /// outcome; `None` on timeout.
    pub async fn invoke(&self, event: serde_json::Value, timeout: Duration) -> Option<Outcome> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.state
            .pending
            .lock()
            .expect("lock")
            .insert(id.clone(), tx);
        self.state
            .queue
            .lock()
            .expect("lock")
            .push_back((id, event));
        self.state.queued.notify_one();
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = || serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return reply(StatusCode::NOT_FOUND, Bytes::new());
    };
    match (&method, rest.split('/').collect::<Vec<_>>().as_slice()) {
        (&Method::GET, ["", "invocation", "next"]) => next_invocation(state).await,
        (&Method::POST, ["", "invocation", id, "response"]) => {
            finish(state, id, Outcome::Response(json()))
        }
        (&Method::POST, ["", "invocation", id, "error"]) => {
            finish(state, id, Outcome::Error(json()))
        }
        (&Method::POST, ["", "init", "error"]) => {
            *state.init_error.lock().expect("lock") = Some(json());
            reply(StatusCode::ACCEPTED, Bytes::new())
        }
        _ => reply(StatusCode::NOT_FOUND, Bytes::new()),
    }
}

async fn next_invocation(state: &State) -> Response<Full<Bytes>> {
    {
        let mut first = state.first_poll.lock().expect("lock");
        if first.is_none() {
            *first = Some(Instant::now());
            state.polled.notify_waiters();
        }
    }
    let (id, event) = loop {
        if let Some(item) = state.queue.lock().expect("lock").pop_front() {
            break item;
        }
        state.queued.notified().await;
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(30);
    let mut r = reply(StatusCode::OK, Bytes::from(event.to_string()));
    let headers = r.headers_mut();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, value.parse().expect("valid header value"));
    };
    set("lambda-runtime-aws-request-id", id);
    set(
        "lambda-runtime-deadline-ms",
        deadline.as_millis().to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:local".to_owned(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
    );
    set("content-type", "application/json".to_owned());
    r
}

fn finish(state: &State, id: &str, outcome: Outcome) -> Response<Full<Bytes>> {
    if let Some(tx) = state.pending.lock().expect("lock").remove(id) {
        let _ = tx.send(outcome);
    }
    reply(StatusCode::ACCEPTED, Bytes::new())
}
