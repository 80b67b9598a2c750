//! An HTTP proxy on loopback in front of the AWS emulator.
//!
//! Point an SDK client at [`AwsProxy::endpoint`] instead of the emulator to
//! count the AWS API calls it makes ([`AwsProxy::calls`]) and to inject
//! faults: failed entries in SQS `SendMessageBatch` answers
//! ([`AwsProxy::fail_entries`]) and whole requests answered with HTTP 500
//! ([`AwsProxy::fail_requests`]). An observer ([`AwsProxy::observe`]) sees
//! every call with both bodies, e.g. to meter billing units
//! ([`crate::metering`]).
//!
//! The SDK talks to both SQS and DynamoDB with the AWS JSON 1.0 protocol: a
//! `POST /` whose `x-amz-target` header names the operation (for example
//! `AmazonSQS.SendMessageBatch` or `DynamoDB_20120810.Query`) and whose body
//! is JSON. Everything the proxy does not fault is forwarded as it is, and
//! the emulator's answer is returned as it is. Request signatures are not
//! recomputed: the emulator does not check them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

/// The `x-amz-target` of SQS `SendMessageBatch`.
const SEND_MESSAGE_BATCH: &str = "AmazonSQS.SendMessageBatch";
const AMZ_JSON: &str = "application/x-amz-json-1.0";

/// Headers that describe one hop's connection or framing; the proxy sets its
/// own instead of copying them.
const HOP_HEADERS: [HeaderName; 4] = [HOST, CONTENT_LENGTH, CONNECTION, TRANSFER_ENCODING];

/// Which `SendMessageBatch` entries fail, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Entries whose `MessageBody` contains this substring match the rule.
    pub body_contains: String,
    /// How many requests a matching body fails in before it is let through;
    /// `None` fails it every time.
    pub failures: Option<usize>,
}

impl FaultRule {
    /// Matching entries fail every time they are sent.
    pub fn always(body_contains: impl Into<String>) -> Self {
        Self {
            body_contains: body_contains.into(),
            failures: None,
        }
    }

    /// Each matching body fails in the first `n` requests that carry it and
    /// goes through after that.
    pub fn times(body_contains: impl Into<String>, n: usize) -> Self {
        Self {
            body_contains: body_contains.into(),
            failures: Some(n),
        }
    }
}

struct ActiveRule {
    rule: FaultRule,
    /// Failures injected so far, by message body.
    failed: HashMap<String, usize>,
}

impl ActiveRule {
    /// Whether `body` fails now, counting the failure if so.
    fn fail(&mut self, body: &str) -> bool {
        let failed = self.failed.entry(body.to_owned()).or_default();
        if self.rule.failures.is_some_and(|n| *failed >= n) {
            return false;
        }
        *failed += 1;
        true
    }
}

/// Sees every call that crossed the proxy.
type Observer = Arc<dyn Fn(crate::metering::Call<'_>) + Send + Sync>;

struct State {
    upstream: String,
    observer: Mutex<Option<Observer>>,
    http: reqwest::Client,
    counts: Mutex<HashMap<String, usize>>,
    rules: Mutex<Vec<ActiveRule>>,
    request_faults: Mutex<HashMap<String, usize>>,
    /// Held while forwarding when requests go one at a time.
    serial: tokio::sync::Mutex<()>,
    one_at_a_time: std::sync::atomic::AtomicBool,
}

/// A running proxy; its server stops when it is dropped.
pub struct AwsProxy {
    endpoint: String,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl AwsProxy {
    /// Starts a proxy to `upstream` (for example [`crate::emulator::endpoint`])
    /// on a free loopback port.
    ///
    /// # Panics
    /// Outside a Tokio runtime, or when no loopback port can be bound.
    pub fn start(upstream: String) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("non-blocking socket");
        let endpoint = format!("http://{}", listener.local_addr().expect("local address"));
        let listener = tokio::net::TcpListener::from_std(listener).expect("inside a Tokio runtime");
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            observer: Mutex::default(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("HTTP client"),
            counts: Mutex::default(),
            rules: Mutex::default(),
            request_faults: Mutex::default(),
            serial: tokio::sync::Mutex::new(()),
            one_at_a_time: std::sync::atomic::AtomicBool::new(false),
        });
        let server = tokio::spawn(local_infra::http_server::serve(
            listener,
            Arc::clone(&state),
            |state, req| async move { handle(&state, req).await },
        ));
        Self {
            endpoint,
            state,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL to give the SDK.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// SDK settings for the emulator through this proxy: clients built
    /// from them make every call through it.
    pub async fn sdk(&self) -> aws_config::SdkConfig {
        crate::emulator::sdk_config()
            .await
            .to_builder()
            .endpoint_url(self.endpoint())
            .build()
    }

    /// How many requests with this `x-amz-target` reached the proxy since it
    /// started or since [`reset_counts`](Self::reset_counts), including those
    /// answered with an injected fault.
    pub fn calls(&self, target: &str) -> usize {
        lock(&self.state.counts).get(target).copied().unwrap_or(0)
    }

    /// Sets every call count back to zero.
    pub fn reset_counts(&self) {
        lock(&self.state.counts).clear();
    }

    /// Adds a rule failing `SendMessageBatch` entries. Failed entries are
    /// left out of the request forwarded to the emulator and reported in the
    /// answer's `Failed` list with `SenderFault: false`, `Code:
    /// "InternalError"` and `Message: "injected fault"`. A request whose
    /// entries all fail is answered without reaching the emulator. When
    /// several rules match an entry, the first one added decides; entries of
    /// one request with the same body share its fate and count as one
    /// failure.
    pub fn fail_entries(&self, rule: FaultRule) {
        lock(&self.state.rules).push(ActiveRule {
            rule,
            failed: HashMap::new(),
        });
    }

    /// Answers the next `times` requests with this `x-amz-target` with HTTP
    /// 500 and `{"__type":"InternalError","message":"injected"}`, without
    /// reaching the emulator. Adds to any failures still pending.
    pub fn fail_requests(&self, target: &str, times: usize) {
        *lock(&self.state.request_faults)
            .entry(target.to_owned())
            .or_default() += times;
    }

    /// Forwards one request at a time from now on. The emulator runs
    /// requests on parallel threads without isolating them, so concurrent
    /// conditional writes (and transactions) to one item can all succeed
    /// there, which DynamoDB never allows; serialising them restores the
    /// guarantee tests of concurrent callers rely on, while the callers
    /// themselves still run concurrently.
    pub fn one_at_a_time(&self) {
        self.state
            .one_at_a_time
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Calls `observer` with every call that has an `x-amz-target`, after
    /// its answer (injected faults included), with the request as the
    /// client sent it.
    pub fn observe(&self, observer: impl Fn(crate::metering::Call<'_>) + Send + Sync + 'static) {
        *lock(&self.state.observer) = Some(Arc::new(observer));
    }

    /// Removes every fault rule and pending request failure.
    pub fn clear_faults(&self) {
        lock(&self.state.rules).clear();
        lock(&self.state.request_faults).clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A request as it arrived.
struct Received {
    method: http::Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

/// An answer to send back.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(status: StatusCode, body: &Value) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, AMZ_JSON.parse().expect("valid header value"));
        Self {
            status,
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(self.body));
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers;
        for name in &HOP_HEADERS {
            r.headers_mut().remove(name);
        }
        r
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Answer::json(
                StatusCode::BAD_REQUEST,
                &json!({"__type": "ProxyError", "message": e.to_string()}),
            )
            .into_response();
        }
    };
    let request = Received {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        headers: parts.headers,
        body,
    };
    let target = request
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sent = request.body.clone();
    let authorization = request
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answer = match &target {
        Some(target) => {
            *lock(&state.counts).entry(target.clone()).or_default() += 1;
            if take_request_fault(state, target) {
                Answer::json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"__type": "InternalError", "message": "injected"}),
                )
            } else if target == SEND_MESSAGE_BATCH {
                send_message_batch(state, request).await
            } else {
                forward(state, &request).await
            }
        }
        None => forward(state, &request).await,
    };
    let observer = lock(&state.observer).clone();
    if let (Some(observer), Some(target)) = (observer, &target) {
        observer(crate::metering::Call {
            target,
            request: &sent,
            response: &answer.body,
            ok: answer.status.is_success(),
            authorization: authorization.as_deref(),
        });
    }
    answer.into_response()
}

fn take_request_fault(state: &State, target: &str) -> bool {
    let mut faults = lock(&state.request_faults);
    match faults.get_mut(target) {
        Some(left) if *left > 0 => {
            *left -= 1;
            true
        }
        _ => false,
    }
}

/// Applies the entry fault rules to a `SendMessageBatch` request.
async fn send_message_batch(state: &State, mut request: Received) -> Answer {
    let Ok(Value::Object(mut input)) = serde_json::from_slice::<Value>(&request.body) else {
        return forward(state, &request).await;
    };
    let Some(Value::Array(entries)) = input.remove("Entries") else {
        return forward(state, &request).await;
    };
    let (kept, failed) = split_entries(state, entries);
    if failed.is_empty() {
        return forward(state, &request).await;
    }
    let failed: Vec<Value> = failed
        .iter()
        .map(|entry| {
            json!({
                "Id": entry.get("Id").cloned().unwrap_or(Value::Null),
                "SenderFault": false,
                "Code": "InternalError",
                "Message": "injected fault",
            })
        })
        .collect();
    if kept.is_empty() {
        return Answer::json(StatusCode::OK, &json!({"Successful": [], "Failed": failed}));
    }
    input.insert("Entries".to_owned(), Value::Array(kept));
    request.body = Bytes::from(Value::Object(input).to_string());
    let mut answer = forward(state, &request).await;
    if !answer.status.is_success() {
        return answer;
    }
    let Ok(Value::Object(mut output)) = serde_json::from_slice::<Value>(&answer.body) else {
        return answer;
    };
    match output.get_mut("Failed") {
        Some(Value::Array(list)) => list.extend(failed),
        _ => {
            output.insert("Failed".to_owned(), Value::Array(failed));
        }
    }
    output
        .entry("Successful")
        .or_insert_with(|| Value::Array(Vec::new()));
    answer.body = Bytes::from(Value::Object(output).to_string());
    answer
}

/// Splits batch entries into those to forward and those to fail.
fn split_entries(state: &State, entries: Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    let mut rules = lock(&state.rules);
    // One decision per distinct body in this request.
    let mut decided: HashMap<String, bool> = HashMap::new();
    let mut kept = Vec::new();
    let mut failed = Vec::new();
    for entry in entries {
        let body = entry
            .get("MessageBody")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let fails = *decided.entry(body.clone()).or_insert_with(|| {
            rules
                .iter_mut()
                .find(|r| body.contains(&r.rule.body_contains))
                .is_some_and(|r| r.fail(&body))
        });
        if fails {
            failed.push(entry);
        } else {
            kept.push(entry);
        }
    }
    (kept, failed)
}

/// Sends the request to the upstream and returns its answer as it is.
async fn forward(state: &State, request: &Received) -> Answer {
    let _turn = if state
        .one_at_a_time
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        Some(state.serial.lock().await)
    } else {
        None
    };
    let url = format!("{}{}", state.upstream, request.path_and_query);
    let mut headers = request.headers.clone();
    for name in &HOP_HEADERS {
        headers.remove(name);
    }
    let sent = state
        .http
        .request(request.method.clone(), url)
        .headers(headers)
        .body(request.body.clone())
        .send()
        .await;
    let result = match sent {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            r.bytes().await.map(|body| Answer {
                status,
                headers,
                body,
            })
        }
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| {
        Answer::json(
            StatusCode::BAD_GATEWAY,
            &json!({"__type": "ProxyError", "message": e.to_string()}),
        )
    })
}
