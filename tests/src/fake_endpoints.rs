//! Minimal, fast endpoints on loopback for benchmarks that measure our side
//! rather than the emulator or the receiver:
//!
//! - [`FakeAws`]: one AWS JSON 1.0 endpoint answering DynamoDB (`GetItem`
//!   from items it was given, `PutItem` and `BatchWriteItem` accepted and
//!   counted) and SQS
//!   (`SendMessage`, `SendMessageBatch` accepted at once), told apart by
//!   `x-amz-target`.
//!
//! It runs on its own runtime threads so its work is not counted as the
//! caller's CPU time; the webhook receiver does the same with
//! [`ReceiverBuilder::on_own_runtime`](crate::receiver::ReceiverBuilder::on_own_runtime).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use local_infra::http_server::{self, Background};
use serde_json::{Value, json};

/// Binds a free loopback port and serves it with `handler` on a runtime of
/// `threads` worker threads of its own; returns the server and
/// `http://127.0.0.1:PORT`.
fn spawn_server<S, F, Fut>(threads: usize, state: Arc<S>, handler: F) -> (Background, String)
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let server = Background::on_own_runtime(threads, async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        http_server::serve(listener, state, handler).await;
        Ok(())
    })
    .expect("runtime");
    (server, endpoint)
}

/// Counts of what a [`FakeAws`] endpoint received.
#[derive(Debug, Default)]
pub struct Counts {
    /// SQS `SendMessageBatch` calls.
    pub batches: AtomicUsize,
    /// Entries across those calls.
    pub entries: AtomicUsize,
    /// Request body bytes across those calls.
    pub batch_bytes: AtomicUsize,
    /// SQS `SendMessage` calls.
    pub messages: AtomicUsize,
    /// DynamoDB `GetItem` calls.
    pub get_items: AtomicUsize,
    /// DynamoDB `PutItem` calls.
    pub put_items: AtomicUsize,
    /// DynamoDB `BatchWriteItem` calls.
    pub batch_writes: AtomicUsize,
    /// Items written across those calls.
    pub batch_written: AtomicUsize,
    /// Calls of any other operation (answered with a 400 error).
    pub unknown: AtomicUsize,
}

/// One message a [`FakeAws`] endpoint accepted in a `SendMessageBatch`,
/// when it records them ([`FakeAws::record_messages`]).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its `MessageGroupId`.
    pub group: String,
    /// Its body.
    pub body: String,
    /// When the call carrying it arrived (wall clock, comparable across
    /// processes).
    pub at: std::time::SystemTime,
}

#[derive(Default)]
struct AwsState {
    counts: Counts,
    /// Accepted messages, when recording.
    recorded: std::sync::Mutex<Option<Vec<Accepted>>>,
    /// DynamoDB items (attribute values in DynamoDB JSON) by table.
    tables: RwLock<HashMap<String, Vec<serde_json::Map<String, Value>>>>,
}

/// A running fake AWS endpoint (DynamoDB and SQS, AWS JSON 1.0).
pub struct FakeAws {
    _server: Background,
    endpoint: String,
    state: Arc<AwsState>,
}

impl FakeAws {
    /// Starts the endpoint on a free loopback port, served by its own
    /// two-thread runtime.
    pub fn start() -> Self {
        let state = Arc::new(AwsState::default());
        let (server, endpoint) = spawn_server(2, Arc::clone(&state), |state, req| async move {
            answer(&state, req).await
        });
        Self {
            _server: server,
            endpoint,
            state,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What it received so far.
    pub fn counts(&self) -> &Counts {
        &self.state.counts
    }

    /// From now on keeps every message `SendMessageBatch` carries.
    pub fn record_messages(&self) {
        let mut recorded = self.state.recorded.lock().expect("recorded lock");
        recorded.get_or_insert_with(Vec::new);
    }

    /// The messages kept since the last call (recording goes on).
    pub fn take_recorded(&self) -> Vec<Accepted> {
        let mut recorded = self.state.recorded.lock().expect("recorded lock");
        recorded.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Stores `value` in `table`, serialised as DynamoDB does it
    /// (`serde_dynamo`, as the service's stores write items); `GetItem`
    /// returns it for a key whose attributes all match.
    ///
    /// # Panics
    /// When `value` does not serialise to an item.
    pub fn insert_item<T: serde::Serialize>(&self, table: &str, value: &T) {
        let item: serde_dynamo::Item = serde_dynamo::to_item(value).expect("value is an item");
        let Value::Object(item) = serde_json::to_value(item).expect("item serialises") else {
            unreachable!("an item is a map");
        };
        self.state
            .tables
            .write()
            .expect("tables lock")
            .entry(table.to_owned())
            .or_default()
            .push(item);
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

fn get_item(state: &AwsState, request: &Value) -> Value {
    let (Some(table), Some(key)) = (request["TableName"].as_str(), request["Key"].as_object())
    else {
        return json!({});
    };
    let tables = state.tables.read().expect("tables lock");
    let found = tables.get(table).and_then(|items| {
        items.iter().find(|item| {
            key.iter()
                .all(|(name, value)| item.get(name) == Some(value))
        })
    });
    match found {
        Some(item) => json!({ "Item": item }),
        None => json!({}),
    }
}

async fn answer(state: &AwsState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let counts = &state.counts;
    let reply = match target.as_str() {
        "DynamoDB_20120810.GetItem" => {
            counts.get_items.fetch_add(1, Ordering::Relaxed);
            get_item(state, &request)
        }
        "DynamoDB_20120810.PutItem" => {
            counts.put_items.fetch_add(1, Ordering::Relaxed);
            json!({})
        }
        "DynamoDB_20120810.BatchWriteItem" => {
            let items: usize = request["RequestItems"].as_object().map_or(0, |tables| {
                tables
                    .values()
                    .filter_map(Value::as_array)
                    .map(Vec::len)
                    .sum()
            });
            counts.batch_writes.fetch_add(1, Ordering::Relaxed);
            counts.batch_written.fetch_add(items, Ordering::Relaxed);
            json!({"UnprocessedItems": {}})
        }
        "AmazonSQS.SendMessage" => {
            counts.messages.fetch_add(1, Ordering::Relaxed);
            json!({
                "MessageId": uuid::Uuid::new_v4().to_string(),
                "MD5OfMessageBody": "00000000000000000000000000000000",
            })
        }
        "AmazonSQS.SendMessageBatch" => {
            let entries = request["Entries"].as_array().cloned().unwrap_or_default();
            counts.batches.fetch_add(1, Ordering::Relaxed);
            counts.entries.fetch_add(entries.len(), Ordering::Relaxed);
            counts.batch_bytes.fetch_add(body.len(), Ordering::Relaxed);
            if let Some(recorded) = state.recorded.lock().expect("recorded lock").as_mut() {
                let at = std::time::SystemTime::now();
                recorded.extend(entries.iter().map(|e| Accepted {
                    group: e["MessageGroupId"].as_str().unwrap_or_default().to_owned(),
                    body: e["MessageBody"].as_str().unwrap_or_default().to_owned(),
                    at,
                }));
            }
            let successful: Vec<Value> = entries
                .iter()
                .map(|e| {
                    json!({
                        "Id": e["Id"],
                        "MessageId": uuid::Uuid::new_v4().to_string(),
                        "MD5OfMessageBody": "00000000000000000000000000000000",
                    })
                })
                .collect();
            json!({ "Successful": successful, "Failed": [] })
        }
        other => {
            counts.unknown.fetch_add(1, Ordering::Relaxed);
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({
                    "__type": "UnknownOperationException",
                    "message": format!("the fake endpoint does not answer {other:?}"),
                }),
            );
        }
    };
    json_response(StatusCode::OK, &reply)
}
