//! A minimal SQS endpoint on loopback that accepts every `SendMessageBatch`
//! at once, for benchmarks that measure our side rather than the queue.
//! It runs on its own runtime thread so its work is not counted as the
//! caller's CPU time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

/// Counts of what the fake endpoint received.
#[derive(Debug, Default)]
pub struct Counts {
    /// `SendMessageBatch` calls.
    pub batches: AtomicUsize,
    /// Entries across those calls.
    pub entries: AtomicUsize,
}

/// A running fake SQS endpoint.
pub struct FakeSqs {
    endpoint: String,
    counts: Arc<Counts>,
}

impl FakeSqs {
    /// Starts the endpoint on a free loopback port, served by its own
    /// two-thread runtime.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let counts = Arc::new(Counts::default());
        let server_counts = Arc::clone(&counts);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                crate::http_server::serve(listener, server_counts, |counts, req| async move {
                    answer(&counts, req).await
                })
                .await;
            });
        });
        Self { endpoint, counts }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What it received so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

async fn answer(counts: &Counts, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let entries = request["Entries"].as_array().cloned().unwrap_or_default();
    counts.batches.fetch_add(1, Ordering::Relaxed);
    counts.entries.fetch_add(entries.len(), Ordering::Relaxed);
    let successful: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "Id": e["Id"],
                "MessageId": uuid::Uuid::new_v4().to_string(),
                "MD5OfMessageBody": "00000000000000000000000000000000",
            })
        })
        .collect();
    let reply = serde_json::json!({ "Successful": successful, "Failed": [] });
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}
