//! Sending an ingest function's messages, each tagged with the record of
//! the event batch it came from, through the [`QueueWriter`]: batches of
//! at most ten entries (and the configured batch bytes), sent
//! concurrently, every entry SQS did not take retried with backoff, and
//! the records whose messages it never took reported. Messages are built
//! into an [`Outbox`] of bounded size and sent as it fills, so memory does
//! not grow with fan-out.

use std::collections::BTreeSet;

use crate::queue::batch::Retries;
use crate::queue::{Outgoing, QueueWriter};

/// A message to send, tagged with the index of the record it came from.
#[derive(Debug, Clone)]
pub struct Tagged {
    /// Index of the record in the batch.
    pub record: usize,
    /// The message (its group: [`crate::domain::message::group_id`] of the
    /// event's company).
    pub message: Outgoing,
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

/// Sends tagged messages to one queue.
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
            // resumed or redelivered from otherwise.
            retries: Retries::new(attempts).with_sender_faults(),
        }
    }

    /// Sends every message; records whose messages were not all accepted
    /// after the retries are in the report's `failed_records`.
    pub async fn send(&self, messages: Vec<Tagged>) -> SendReport {
        let (records, messages): (Vec<usize>, Vec<Outgoing>) =
            messages.into_iter().map(|m| (m.record, m.message)).unzip();
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

/// Messages built but not sent yet: at most `max_messages` and about
/// `max_bytes` of bodies, so memory does not grow with fan-out.
#[derive(Debug)]
pub struct Outbox {
    messages: Vec<Tagged>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl Outbox {
    /// An empty outbox that is full at `max_messages` or `max_bytes`.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            messages: Vec::new(),
            bytes: 0,
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Adds `m`; true when the outbox should be sent now.
    pub fn push(&mut self, m: Tagged) -> bool {
        self.bytes += m.message.body.len();
        self.messages.push(m);
        self.messages.len() >= self.max_messages || self.bytes >= self.max_bytes
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Everything held, leaving it empty.
    pub fn take(&mut self) -> Vec<Tagged> {
        self.bytes = 0;
        std::mem::take(&mut self.messages)
    }
}
