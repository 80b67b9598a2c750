//! Drives the jobs table's stream into the ingest handler the way Lambda's
//! DynamoDB event source mapping does, one shard at a time, in order.
//!
//! # Polling and batching, as AWS documents them
//!
//! - <https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html>
//!   ("Polling and batching streams"): "Lambda polls shards in your
//!   DynamoDB stream for records at a base rate of 4 times per second. When
//!   records are available, Lambda invokes your function and waits for the
//!   result." and "Before invoking the function, Lambda continues to read
//!   records from the event source until it has gathered a full batch, the
//!   batching window expires, or the batch reaches the payload limit of 6
//!   MB."
//! - <https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventsourcemapping.html>
//!   ("Batching behavior"): "For Kinesis, DynamoDB, and Amazon SQS event
//!   sources: The default batching window is 0 seconds. This means that
//!   Lambda sends batches to your function as quickly as possible. If you
//!   configure a MaximumBatchingWindowInSeconds, the next batching window
//!   begins as soon as the previous function invocation completes." and
//!   "The payload size reaches 6 MB. You cannot modify this limit."
//! - `BatchSize` in the `CreateEventSourceMapping` reference (as the SDKs
//!   carry it, e.g. <https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/lambda/aws.sdk.kotlin.services.lambda.model/-create-event-source-mapping-request/batch-size.html>):
//!   "Lambda passes all of the records in the batch to the function in a
//!   single call, up to the payload limit for synchronous invocation (6
//!   MB)."
//!
//! So the runner polls ([`POLL_INTERVAL`]) 250 ms after the previous poll
//! *started*; when an invocation takes longer, the next poll follows as
//! soon as it returns (a shard has one batch in flight). Every record that
//! arrived since the previous poll comes back in one `GetRecords` and goes
//! to one invocation, up to `BatchSize` records and [`MAX_PAYLOAD_BYTES`]
//! of event. With a batching window the runner goes on polling at the same
//! cadence until the batch is full, the next record would not fit in the
//! payload, or the window has passed; records past the payload limit are
//! read again for the next batch.
//!
//! What AWS leaves open, and what the runner does:
//! - when the window opens on an idle stream: the docs say it begins when
//!   the previous invocation completes; an idle shard has no batch to close
//!   then, so the window opens with the poll that returns the first record
//!   (on a busy shard that is the first poll after the invocation, as
//!   documented);
//! - how several shards share the cadence: one poll reads the shards in
//!   turn and returns the first shard's new records; the emulator's
//!   streams have a single shard, where this is Lambda's per-shard rate.
//!   Shards are handled one at a time (Lambda runs one batch per shard at
//!   once, shards in parallel).
//!
//! # Everything else
//!
//! When the handler reports `batchItemFailures`, the shard is re-read from
//! the first failed record (later records wait); after
//! `MaximumRetryAttempts` the batch's metadata goes to the on-failure queue
//! and the shard moves on. Every setting is the deployed mapping's
//! (`ListEventSourceMappings`); records its `FilterCriteria` rejects are
//! skipped before the handler sees them; the position of each shard is
//! checkpointed in the emulator ([`crate::checkpoint`]) after every batch,
//! so a restarted runner resumes where it stopped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::streams::DynamoDbEventResponse;
use job_events_ingest::Ingest;
use serde_json::Value;
use shared::metrics::Metrics;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::checkpoint::Checkpoints;
use crate::invocations::Invocations;
use local_infra::cloudformation::EventSourceMapping;
use local_infra::filter::Filter;
use local_infra::stream::{StreamReader, StreamRecord, lambda_record};

/// Time from the start of one poll of the stream to the start of the next:
/// Lambda's base rate of four polls per second.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Largest event one invocation takes: the 6 MB payload limit of a
/// synchronous invocation (taken as 6 MiB, the request quota Lambda
/// enforces).
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Bytes of `{"Records":[` and `]}` around the records of an event.
const EVENT_FRAME_BYTES: usize = 14;

/// What one invocation of the stream's function reported.
#[derive(Debug, Default)]
pub struct StreamBatchOutcome {
    /// The function's answer: its first `batchItemFailures` entry is where
    /// the shard is read again.
    pub response: DynamoDbEventResponse,
    /// The batch was cut short by the function's deadline with no record
    /// failed: Lambda resumes at the record named, with no retry spent.
    pub deferred: bool,
    /// The counts the invocation is recorded with.
    pub metrics: Metrics,
}

/// A function handler that the stream drives.
pub trait StreamHandler: Send + Sync + 'static {
    /// Handles one batch (a DynamoDB stream event) before `timeout_at`, the
    /// function's timeout, logging what it did as the function does.
    fn handle_batch(
        &self,
        event: Value,
        timeout_at: std::time::Instant,
    ) -> impl Future<Output = StreamBatchOutcome> + Send;
}

impl StreamHandler for Ingest {
    async fn handle_batch(
        &self,
        event: Value,
        timeout_at: std::time::Instant,
    ) -> StreamBatchOutcome {
        let deadline = self.deadline(Some(timeout_at));
        let (response, stats) = self.process(event, deadline).await;
        tracing::info!(
            records = stats.records,
            transitions = stats.transitions,
            enqueued = stats.enqueued,
            failed = !response.batch_item_failures.is_empty(),
            "stream batch -> ingest"
        );
        StreamBatchOutcome {
            deferred: stats.deferred > 0 && stats.failed_records == 0,
            metrics: stats.metrics(),
            response,
        }
    }
}

/// Settings of the stream runner.
#[derive(Debug, Clone)]
pub struct StreamRunner {
    /// The deployed mapping.
    pub mapping: EventSourceMapping,
    /// Its `FilterCriteria`.
    pub filter: Filter,
    /// Where shard positions are kept.
    pub checkpoints: Checkpoints,
    /// Region written into the records.
    pub region: String,
    /// Where given-up batches are reported (the on-failure destination).
    pub on_failure_queue_url: Option<String>,
    /// Where each invocation of the handler is recorded.
    pub invocations: Arc<Invocations>,
    /// The function's timeout: each invocation's deadline.
    pub timeout: Duration,
}

/// Records of one shard read for one invocation.
#[derive(Debug, Default)]
struct Batch {
    /// Every record read, in order (for checkpoints and retries).
    records: Vec<StreamRecord>,
    /// The records the filter lets through, as the event carries them.
    events: Vec<Value>,
    /// Size of the event's JSON.
    bytes: usize,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Makes `shard` continue at `sequence` again, retrying until it works: a
/// reader left past unhandled records would skip them for good. `false`
/// on shutdown.
async fn rewind(
    reader: &mut StreamReader,
    shard: &str,
    sequence: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        match reader.rewind_to(shard, sequence).await {
            Ok(()) => return true,
            Err(e) => tracing::warn!(error = %e, "cannot rewind the jobs stream; retrying"),
        }
        if !pause(Duration::from_secs(1), shutdown).await {
            return false;
        }
    }
}

/// Sleeps for `d` unless shutdown is signalled first; `false` on shutdown.
pub(crate) async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    pause_until(Instant::now() + d, shutdown).await
}

/// Sleeps until `at` unless shutdown is signalled first; `false` on
/// shutdown.
async fn pause_until(at: Instant, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep_until(at) => true,
        _ = shutdown.changed() => false,
    }
}

impl StreamRunner {
    /// Runs until `shutdown` turns true; the batch in progress is finished.
    pub async fn run<H: StreamHandler>(
        self,
        mut reader: StreamReader,
        handler: Arc<H>,
        sqs: aws_sdk_sqs::Client,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut attempts: u32 = 0;
        // When the next poll may start.
        let mut next_poll = Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let batch = match self
                .gather(&mut reader, &mut next_poll, &mut shutdown)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the jobs stream failed; retrying");
                    if !pause(Duration::from_secs(1), &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                // Shut down while the stream was idle.
                return;
            }
            if batch.events.is_empty() {
                // Lambda drops filtered records without invoking.
                self.checkpoint(batch.records.last()).await;
                attempts = 0;
                continue;
            }
            let event = serde_json::json!({ "Records": batch.events });
            let invoked = std::time::Instant::now();
            // The deployed function's timeout, as Lambda would set it.
            let outcome = handler.handle_batch(event, invoked + self.timeout).await;
            self.invocations
                .record(&self.mapping.function, invoked.elapsed(), &outcome.metrics);
            let batch = batch.records;
            let failed = outcome
                .response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.clone());
            let Some(sequence) = failed else {
                self.checkpoint(batch.last()).await;
                attempts = 0;
                continue;
            };
            let Some(position) = batch.iter().position(|r| r.sequence_number() == sequence) else {
                tracing::error!(%sequence, "ingest reported a record that is not in the batch; moving on");
                self.checkpoint(batch.last()).await;
                attempts = 0;
                continue;
            };
            // The records before the first failure are handled.
            if let Some(handled) = position.checked_sub(1) {
                self.checkpoint(batch.get(handled)).await;
            }
            // A batch cut short by the deadline failed nothing: Lambda
            // resumes at the record named, with no retry spent.
            if outcome.deferred {
                attempts = 0;
            } else {
                attempts += 1;
            }
            if attempts > self.mapping.max_retries.unwrap_or(u32::MAX) {
                self.give_up(&sqs, &batch[position..], reader.stream_arn())
                    .await;
                self.checkpoint(batch.last()).await;
                attempts = 0;
                continue;
            }
            let shard = batch[position].shard_id.clone();
            if !rewind(&mut reader, &shard, &sequence, &mut shutdown).await {
                return;
            }
            let backoff = Duration::from_millis(100 * 2u64.pow(attempts.min(6)));
            if !outcome.deferred && !pause(backoff, &mut shutdown).await {
                return;
            }
        }
    }

    /// Records that `record`'s shard was handled up to it. A failed write
    /// only costs re-reading after a restart, so it is logged.
    async fn checkpoint(&self, record: Option<&StreamRecord>) {
        let Some(record) = record else { return };
        if let Err(e) = self
            .checkpoints
            .save(&record.shard_id, record.sequence_number())
            .await
        {
            tracing::warn!(error = %e, "cannot checkpoint the jobs stream");
        }
    }

    /// One batch of one shard, polled at Lambda's cadence from
    /// `next_poll` on: the records of the first poll that returns any, and
    /// while the batching window since that poll lasts, those of the polls
    /// after it, until `BatchSize` records or [`MAX_PAYLOAD_BYTES`]. Empty
    /// only on shutdown; on shutdown with records in hand, those.
    async fn gather(
        &self,
        reader: &mut StreamReader,
        next_poll: &mut Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Batch, local_infra::stream::StreamError> {
        let size = self.mapping.batch_size.max(1);
        let mut batch = Batch {
            bytes: EVENT_FRAME_BYTES,
            ..Batch::default()
        };
        let mut window_end = None;
        loop {
            if !pause_until(*next_poll, shutdown).await {
                return Ok(batch);
            }
            let started = Instant::now();
            *next_poll = started + POLL_INTERVAL;
            let polled = match reader.poll(size - batch.records.len()).await {
                Ok(polled) => polled,
                Err(e) if batch.is_empty() => return Err(e),
                Err(e) => {
                    // The records in hand are read: invoke with them.
                    tracing::warn!(error = %e, "reading the jobs stream failed; invoking with the records in hand");
                    return Ok(batch);
                }
            };
            let other_shard = polled
                .first()
                .zip(batch.records.first())
                .is_some_and(|(new, held)| new.shard_id != held.shard_id);
            // Another shard's records (Lambda never mixes shards in one
            // batch), or records past the payload limit: read again for the
            // next batch.
            let left = if other_shard {
                polled.first()
            } else {
                self.add(&mut batch, &polled, reader.stream_arn())
            };
            if let Some(first) = left {
                let (shard, sequence) =
                    (first.shard_id.clone(), first.sequence_number().to_owned());
                rewind(reader, &shard, &sequence, shutdown).await;
                return Ok(batch);
            }
            if batch.is_empty() {
                continue;
            }
            let end = *window_end.get_or_insert(started + self.mapping.batching_window);
            if batch.records.len() >= size || *next_poll > end {
                return Ok(batch);
            }
        }
    }

    /// Adds `polled` to `batch` up to the payload limit; the first record
    /// that does not fit, if any.
    fn add<'a>(
        &self,
        batch: &mut Batch,
        polled: &'a [StreamRecord],
        stream_arn: &str,
    ) -> Option<&'a StreamRecord> {
        for record in polled {
            let event = lambda_record(&record.record, stream_arn, &self.region);
            let passes = self.filter.passes(&event);
            if passes {
                // The record's JSON and the comma before it.
                let bytes = event.to_string().len() + usize::from(!batch.events.is_empty());
                if !batch.events.is_empty() && batch.bytes + bytes > MAX_PAYLOAD_BYTES {
                    return Some(record);
                }
                batch.bytes += bytes;
                batch.events.push(event);
            }
            batch.records.push(record.clone());
        }
        None
    }

    /// Reports the records Lambda would give up on to the on-failure queue
    /// (their metadata, as Lambda does) and moves past them.
    async fn give_up(&self, sqs: &aws_sdk_sqs::Client, records: &[StreamRecord], stream_arn: &str) {
        let first = records.first().map(StreamRecord::sequence_number);
        let last = records.last().map(StreamRecord::sequence_number);
        tracing::error!(
            records = records.len(),
            first_sequence = first,
            "stream batch failed after its retries; reported to the on-failure queue"
        );
        let Some(url) = &self.on_failure_queue_url else {
            return;
        };
        let body = serde_json::json!({
            "requestContext": {"condition": "RetryAttemptsExhausted"},
            "DDBStreamBatchInfo": {
                "shardId": records.first().map(|r| r.shard_id.as_str()),
                "startSequenceNumber": first,
                "endSequenceNumber": last,
                "batchSize": records.len(),
                "streamArn": stream_arn,
            }
        });
        if let Err(e) = sqs
            .send_message()
            .queue_url(url)
            .message_body(body.to_string())
            .send()
            .await
        {
            tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "cannot report to the on-failure queue");
        }
    }
}
