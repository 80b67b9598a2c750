//! Drives the jobs table's stream into the ingest handler the way Lambda's
//! DynamoDB event source mapping does: batches of up to `BatchSize`
//! records gathered for at most the batching window, one shard at a time,
//! in order. When the handler reports `batchItemFailures`, the shard is
//! re-read from the first failed record (later records wait); after
//! `MaximumRetryAttempts` the batch's metadata goes to the on-failure queue
//! and the shard moves on. Every setting is the deployed mapping's
//! (`ListEventSourceMappings`); records its `FilterCriteria` rejects are
//! skipped before the handler sees them; the position of each shard is
//! checkpointed in the emulator ([`crate::checkpoint`]) after every batch,
//! so a restarted runner resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use job_events_ingest::Ingest;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::checkpoint::Checkpoints;
use crate::invocations::Invocations;
use local_infra::cloudformation::EventSourceMapping;
use local_infra::filter::Filter;
use local_infra::stream::{StreamReader, StreamRecord, lambda_event};

/// How often an idle stream is polled.
const IDLE_POLL: Duration = Duration::from_millis(100);

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
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        _ = shutdown.changed() => false,
    }
}

impl StreamRunner {
    /// Runs until `shutdown` turns true; the batch in progress is finished.
    pub async fn run(
        self,
        mut reader: StreamReader,
        ingest: Arc<Ingest>,
        sqs: aws_sdk_sqs::Client,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut attempts: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let batch = match self.gather(&mut reader, &mut shutdown).await {
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
                if !pause(IDLE_POLL, &mut shutdown).await {
                    return;
                }
                continue;
            }
            let mut event = lambda_event(
                batch.iter().map(|r| &r.record),
                reader.stream_arn(),
                &self.region,
            );
            if let Some(records) = event["Records"].as_array_mut() {
                records.retain(|r| self.filter.passes(r));
                if records.is_empty() {
                    // Lambda drops filtered records without invoking.
                    self.checkpoint(batch.last()).await;
                    attempts = 0;
                    continue;
                }
            }
            let invoked = std::time::Instant::now();
            // The deployed function's timeout, as Lambda would set it.
            let deadline = ingest.deadline(Some(invoked + self.timeout));
            let (response, stats) = ingest.process(event, deadline).await;
            self.invocations
                .record(&self.mapping.function, invoked.elapsed(), &stats.metrics());
            let failed = response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.clone());
            tracing::info!(
                records = stats.records,
                transitions = stats.transitions,
                enqueued = stats.enqueued,
                failed = failed.is_some(),
                "stream batch -> ingest"
            );
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
            let deferred = stats.deferred > 0 && stats.failed_records == 0;
            if deferred {
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
            if !deferred && !pause(backoff, &mut shutdown).await {
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

    /// One batch: polls until `batch_size` records of one shard arrived or
    /// the batching window since the first record has passed.
    async fn gather(
        &self,
        reader: &mut StreamReader,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Vec<StreamRecord>, local_infra::stream::StreamError> {
        let size = self.mapping.batch_size.max(1);
        let mut batch = reader.poll(size).await?;
        if batch.is_empty() {
            return Ok(batch);
        }
        let deadline = Instant::now() + self.mapping.batching_window;
        while batch.len() < size && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if !pause(left.min(IDLE_POLL), shutdown).await {
                break;
            }
            let more = match reader.poll(size - batch.len()).await {
                Ok(more) => more,
                Err(e) => {
                    // The records in hand are read: invoke with them.
                    tracing::warn!(error = %e, "reading the jobs stream failed; invoking with the records in hand");
                    break;
                }
            };
            if more
                .first()
                .is_some_and(|r| r.shard_id != batch[0].shard_id)
            {
                // Another shard's records: Lambda never mixes shards in one
                // batch. Re-read them next time.
                let first = &more[0];
                rewind(
                    reader,
                    &first.shard_id.clone(),
                    first.sequence_number(),
                    shutdown,
                )
                .await;
                break;
            }
            batch.extend(more);
        }
        Ok(batch)
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
