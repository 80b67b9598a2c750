//! Sending delivery messages with `SendMessageBatch`: chunks of at most ten
//! entries (and the batch size limit), sent concurrently, failed entries
//! retried with backoff. Every entry carries `MessageGroupId` = its company,
//! which makes the standard DeliveryQueue a fair queue across companies.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::StreamExt;

/// Most entries SQS accepts in one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// A message to send, tagged with the index of the record it came from.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Index of the stream record in the batch.
    pub record: usize,
    /// The message's `MessageGroupId`: [`shared::domain::message::group_id`] of the
    /// event's company.
    pub group: Arc<str>,
    /// Message body.
    pub body: String,
}

/// What a send achieved.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Messages SQS accepted.
    pub sent: usize,
    /// `SendMessageBatch` calls made, retries included.
    pub calls: usize,
    /// Records with at least one message SQS never accepted.
    pub failed_records: BTreeSet<usize>,
}

/// Sends delivery messages to one queue.
#[derive(Debug, Clone)]
pub struct Enqueuer {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    concurrency: usize,
    attempts: u32,
    max_batch_bytes: usize,
    backoff: Duration,
}

impl Enqueuer {
    /// An enqueuer for `queue_url`.
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: String,
        concurrency: usize,
        attempts: u32,
        max_batch_bytes: usize,
    ) -> Self {
        Self {
            client,
            queue_url,
            concurrency,
            attempts,
            max_batch_bytes,
            backoff: Duration::from_millis(50),
        }
    }

    /// Splits `messages` into batches of at most ten entries and at most
    /// `max_batch_bytes` of bodies, keeping their order.
    pub fn chunks(&self, messages: Vec<Outgoing>) -> Vec<Vec<Outgoing>> {
        let mut chunks: Vec<Vec<Outgoing>> = Vec::new();
        let mut bytes = 0;
        for m in messages {
            let fits = chunks.last().is_some_and(|c| {
                c.len() < MAX_BATCH_ENTRIES && bytes + m.body.len() <= self.max_batch_bytes
            });
            if !fits {
                chunks.push(Vec::with_capacity(MAX_BATCH_ENTRIES));
                bytes = 0;
            }
            bytes += m.body.len();
            chunks.last_mut().expect("a chunk exists").push(m);
        }
        chunks
    }

    /// Sends every message; records whose messages were not all accepted
    /// after the retries are in the report's `failed_records`.
    pub async fn send(&self, messages: Vec<Outgoing>) -> SendReport {
        let chunks = self.chunks(messages);
        let results: Vec<(usize, usize, Vec<usize>)> = futures::stream::iter(chunks)
            .map(|chunk| self.send_chunk(chunk))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut report = SendReport::default();
        for (sent, calls, failed) in results {
            report.sent += sent;
            report.calls += calls;
            report.failed_records.extend(failed);
        }
        report
    }

    /// Sends one batch, retrying the entries SQS did not accept. Returns
    /// (accepted, calls, records of entries never accepted).
    async fn send_chunk(&self, chunk: Vec<Outgoing>) -> (usize, usize, Vec<usize>) {
        let mut pending: Vec<(String, Outgoing)> = chunk
            .into_iter()
            .enumerate()
            .map(|(i, m)| (i.to_string(), m))
            .collect();
        let total = pending.len();
        let mut calls = 0;
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
            }
            let entries = pending
                .iter()
                .map(|(id, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_group_id(&*m.group)
                        .message_body(m.body.clone())
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            calls += 1;
            match self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for f in &out.failed {
                        tracing::warn!(
                            entry = %f.id,
                            code = %f.code,
                            sender_fault = f.sender_fault,
                            message = f.message.as_deref().unwrap_or_default(),
                            attempt = attempt + 1,
                            "SQS did not accept a delivery message"
                        );
                    }
                    pending.retain(|(id, _)| out.failed.iter().any(|f| &f.id == id));
                }
                Err(e) => tracing::warn!(
                    error = %DisplayErrorContext(&e),
                    attempt = attempt + 1,
                    "SendMessageBatch failed"
                ),
            }
            if pending.is_empty() {
                break;
            }
        }
        let failed: Vec<usize> = pending.iter().map(|(_, m)| m.record).collect();
        (total - failed.len(), calls, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enqueuer(max_batch_bytes: usize) -> Enqueuer {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .build();
        Enqueuer::new(
            aws_sdk_sqs::Client::from_conf(config),
            "q".into(),
            1,
            1,
            max_batch_bytes,
        )
    }

    fn messages(sizes: &[usize]) -> Vec<Outgoing> {
        sizes
            .iter()
            .enumerate()
            .map(|(record, n)| Outgoing {
                record,
                group: Arc::from("acme"),
                body: "x".repeat(*n),
            })
            .collect()
    }

    #[test]
    fn chunks_hold_at_most_ten_entries_in_order() {
        let chunks = enqueuer(1 << 20).chunks(messages(&[1; 23]));
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let order: Vec<usize> = chunks.iter().flatten().map(|m| m.record).collect();
        assert_eq!(order, (0..23).collect::<Vec<_>>());
    }

    #[test]
    fn chunks_respect_the_batch_byte_limit() {
        let chunks = enqueuer(1000).chunks(messages(&[400, 400, 400, 1000, 10]));
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1, 1, 1]);
    }
}
