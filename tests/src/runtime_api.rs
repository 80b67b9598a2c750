//! A Lambda Runtime API on loopback.
//!
//! Runs a function binary the way Lambda does: the binary polls
//! `GET /2018-06-01/runtime/invocation/next` for events and posts each
//! outcome back. Tests start the binary with [`boot`] (or
//! [`function_command`]) and push events with [`RuntimeApi::invoke`];
//! [`failed_cold_start`] and [`assert_cold_start_names`] check
//! configurations that must not start.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

const PREFIX: &str = "/2018-06-01/runtime";

/// The AWS endpoint when the emulator is not running: a loopback port
/// nothing listens on, for functions that fail before calling AWS.
const NO_EMULATOR: &str = "http://127.0.0.1:9";

/// How long a function may take to finish (or give up) its cold start.
const COLD_START_TIMEOUT: Duration = Duration::from_secs(20);

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
        let server = tokio::spawn(local_infra::http_server::serve(
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

/// The function binary at `binary` as Lambda starts it under `runtime`:
/// nothing inherited, the Lambda variables of a function called `name`, the
/// emulator's endpoint (a dead loopback port when `AWS_ENDPOINT_URL` is
/// unset) with test credentials, output discarded, killed when dropped.
/// Callers add the function's own variables.
pub fn function_command(binary: &str, runtime: &RuntimeApi, name: &str) -> tokio::process::Command {
    let endpoint = match std::env::var_os("AWS_ENDPOINT_URL") {
        Some(_) => crate::emulator::endpoint(),
        None => NO_EMULATOR.to_owned(),
    };
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Starts the function `name` at `binary` with `config` (its own
/// variables) under a fresh Runtime API and waits until it asks for work.
/// The function runs until the returned process is dropped.
pub async fn boot(
    binary: &str,
    name: &str,
    config: &[(&str, &str)],
) -> (RuntimeApi, tokio::process::Child) {
    let runtime = RuntimeApi::start().await;
    let child = function_command(binary, &runtime, name)
        .envs(config.iter().copied())
        .spawn()
        .expect("the function binary starts");
    assert!(
        runtime.first_poll(COLD_START_TIMEOUT).await.is_some(),
        "the function never asked the Runtime API for work"
    );
    (runtime, child)
}

/// A function started by [`boot_logged`], its output kept.
pub struct LoggedChild {
    child: tokio::process::Child,
    readers: Vec<tokio::task::JoinHandle<Vec<u8>>>,
}

impl LoggedChild {
    /// Stops the function and returns everything it wrote (stdout, then
    /// stderr).
    pub async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        let mut logs = String::new();
        for reader in self.readers {
            let bytes = reader.await.expect("the output reader");
            logs.push_str(&String::from_utf8_lossy(&bytes));
        }
        logs
    }
}

/// As [`boot`], keeping what the function writes, for tests of what it
/// logs (and what it never logs).
pub async fn boot_logged(
    binary: &str,
    name: &str,
    config: &[(&str, &str)],
) -> (RuntimeApi, LoggedChild) {
    use tokio::io::AsyncReadExt;
    let runtime = RuntimeApi::start().await;
    let mut child = function_command(binary, &runtime, name)
        .envs(config.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the function binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let read = |mut pipe: Box<dyn tokio::io::AsyncRead + Send + Unpin>| {
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes).await;
            bytes
        })
    };
    let readers = vec![read(Box::new(stdout)), read(Box::new(stderr))];
    assert!(
        runtime.first_poll(COLD_START_TIMEOUT).await.is_some(),
        "the function never asked the Runtime API for work"
    );
    (runtime, LoggedChild { child, readers })
}

/// Starts the function `name` at `binary` with `config` (its own
/// variables) under a fresh Runtime API, checks that it exits unsuccessfully
/// without ever asking for work, and returns what it wrote (stdout, then
/// stderr).
pub async fn failed_cold_start(binary: &str, name: &str, config: &[(&str, &str)]) -> String {
    let runtime = RuntimeApi::start().await;
    let child = function_command(binary, &runtime, name)
        .envs(config.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the function binary starts");
    let output = tokio::time::timeout(COLD_START_TIMEOUT, child.wait_with_output())
        .await
        .expect("the function exits")
        .expect("exit status");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the cold start succeeded: {logs}");
    assert!(
        runtime.first_poll(Duration::ZERO).await.is_none(),
        "the function asked for work: {logs}"
    );
    logs
}

/// Checks that the function's cold start fails naming the variable at
/// fault: once without each variable of `complete` (a configuration that
/// would start), and once with each of `bad` added to `complete`.
pub async fn assert_cold_start_names(
    binary: &str,
    name: &str,
    complete: &[(&str, &str)],
    bad: &[(&str, &str)],
) {
    for (missing, _) in complete {
        let config: Vec<(&str, &str)> = complete
            .iter()
            .filter(|(var, _)| var != missing)
            .copied()
            .collect();
        let logs = failed_cold_start(binary, name, &config).await;
        assert!(logs.contains(missing), "without {missing}: {logs}");
    }
    for &(var, value) in bad {
        let mut config = complete.to_vec();
        config.push((var, value));
        let logs = failed_cold_start(binary, name, &config).await;
        assert!(logs.contains(var), "{var}={value}: {logs}");
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
