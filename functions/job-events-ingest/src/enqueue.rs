//! Sending ingest's messages through the shared queue writer
//! ([`shared::queue::QueueWriter`]): batches of at most ten entries (and
//! the configured batch bytes), sent concurrently, every entry SQS did not
//! take retried with backoff, and the records whose messages it never took
//! reported. Every entry carries `MessageGroupId` = its company, which
//! makes the standard DeliveryQueue a fair queue across companies.

use std::collections::BTreeSet;
use std::sync::Arc;

use shared::queue::batch::Retries;
use shared::queue::{self, QueueWriter};

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
    writer: QueueWriter,
    concurrency: usize,
    retries: Retries,
}

impl Enqueuer {
    /// An enqueuer for `queue_url`: `concurrency` batches in flight, each
    /// tried up to `attempts` times, of at most `max_batch_bytes`.
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: String,
        concurrency: usize,
        attempts: u32,
        max_batch_bytes: usize,
    ) -> Self {
        Self {
            writer: QueueWriter::new(client, queue_url).with_max_batch_bytes(max_batch_bytes),
            concurrency,
            // Whatever SQS did not take is tried again: the record is
            // resumed from otherwise.
            retries: Retries::new(attempts).with_sender_faults(),
        }
    }

    /// Sends every message; records whose messages were not all accepted
    /// after the retries are in the report's `failed_records`.
    pub async fn send(&self, messages: Vec<Outgoing>) -> SendReport {
        let (records, messages): (Vec<usize>, Vec<queue::Outgoing>) = messages
            .into_iter()
            .map(|m| (m.record, queue::Outgoing::new(m.body).grouped(m.group)))
            .unzip();
        let outcome = self
            .writer
            .send_all(&messages, self.concurrency, self.retries)
            .await;
        SendReport {
            sent: outcome.accepted.len(),
            calls: outcome.calls,
            failed_records: outcome.failed.iter().map(|f| records[f.index]).collect(),
        }
    }
}
