//! Replay of ingest failures. When a stream batch still fails after the
//! event source mapping's retries, Lambda sends only its metadata
//! (`DDBStreamBatchInfo`: shard, first and last sequence numbers, stream) to
//! `IngestFailureQueue` and moves on. A replay run takes those entries,
//! re-reads the records they point to while the stream still holds them
//! (24 hours), runs them through the ingest handler, and deletes an entry
//! only when every one of its records was read and enqueued.
//!
//! What can no longer be read (the records expired, or the shard is gone)
//! is reported loudly and the entry stays, unless the request says
//! `discard_expired`. Entries that could not be completed (a send failed, the
//! deadline came) stay too, and come back for the next run. Records that
//! cannot be turned into messages are set aside on the poison queue, as
//! ingest does, and do not hold their entry back. Replayed
//! messages carry the same event ids (`webhook-id`) as any first attempt would, so
//! messages of the batch that were sent before it failed arrive again as
//! copies a receiver recognises.

use std::time::{Duration, Instant};

use aws_sdk_dynamodbstreams::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use aws_sdk_sqs::types::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::config::{ConfigError, Vars};
use shared::deadline::Deadline;
use shared::operator_request::RequestError;

use crate::handler::Ingest;
use crate::poison::PoisonRecord;
use shared::stream_records::{BatchInfo, lambda_event, sequence_cmp, unusable};

/// `max_entries` when the request leaves it out.
pub const DEFAULT_MAX_ENTRIES: usize = 100;
/// Largest `max_entries` a request may ask for.
pub const MAX_MAX_ENTRIES: usize = 10_000;
/// A run stops taking entries when less than this is left.
pub const STOP_MARGIN: Duration = Duration::from_secs(30);
/// Received entries stay invisible this long after the deadline.
const HOLD_MARGIN: Duration = Duration::from_secs(60);
/// Longest visibility timeout SQS accepts (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);
/// Empty `GetRecords` pages in a row after which a read gives up for this
/// run (the entry stays): the range's last record was not reached.
const EMPTY_PAGES: usize = 20;
/// Most records one `GetRecords` call returns.
const PAGE: i32 = 1000;

/// An invalid replay request, for `reason`.
fn invalid(reason: impl Into<String>) -> RequestError {
    RequestError::new("replay", reason)
}

/// What a run does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// At most this many entries are taken.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// Read the entries and their records, enqueue and delete nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Delete entries whose records can no longer be read, after
    /// replaying those that still can (they are reported either way).
    #[serde(default)]
    pub discard_expired: bool,
}

fn default_max_entries() -> usize {
    DEFAULT_MAX_ENTRIES
}

impl Default for ReplayRequest {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            dry_run: false,
            discard_expired: false,
        }
    }
}

impl ReplayRequest {
    /// The request in an invocation payload (`null` or `{}`: the defaults).
    pub fn from_event(event: Value) -> Result<Self, RequestError> {
        if event.is_null() {
            return Ok(Self::default());
        }
        let request: Self = serde_json::from_value(event).map_err(|e| invalid(e.to_string()))?;
        if !(1..=MAX_MAX_ENTRIES).contains(&request.max_entries) {
            return Err(invalid(format!(
                "max_entries must be 1 to {MAX_MAX_ENTRIES}, got {}",
                request.max_entries
            )));
        }
        Ok(request)
    }
}

/// An `IngestFailureQueue` entry as Lambda writes it (other fields are
/// ignored).
#[derive(Debug, Clone, Deserialize)]
struct FailureEntry {
    #[serde(rename = "DDBStreamBatchInfo")]
    batch: BatchInfo,
}

/// An entry whose records cannot all be read any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expired {
    /// The batch it points to.
    pub batch: BatchInfo,
    /// Records of the batch that were read (and replayed).
    pub read: usize,
    /// What the stream said.
    pub reason: String,
    /// Whether the entry was deleted (`discard_expired`).
    pub discarded: bool,
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Entries received.
    pub entries: usize,
    /// Entries whose records were all enqueued, and deleted.
    pub replayed: usize,
    /// Stream records read.
    pub records: usize,
    /// Delivery messages enqueued.
    pub enqueued: usize,
    /// Records set aside on the poison queue (they cannot be turned into
    /// messages); their entries complete all the same.
    pub poison: usize,
    /// Entries left for another run: a send failed, the stream could not
    /// be reached, or the deadline came.
    pub incomplete: usize,
    /// Entries that are not `DDBStreamBatchInfo` (left in the queue).
    pub unreadable: usize,
    /// Entries pointing at records that can no longer be read.
    pub expired: Vec<Expired>,
    /// A dry run: nothing was enqueued or deleted.
    pub dry_run: bool,
    /// The run stopped because the invocation deadline was near.
    pub time_limit: bool,
}

/// Settings of the replay function: the ingest function's, plus the queue.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// `INGEST_FAILURE_QUEUE_URL`: the on-failure destination of the
    /// stream mapping.
    pub failure_queue_url: String,
}

impl ReplayConfig {
    /// Reads the configuration from `vars`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            failure_queue_url: vars.required("INGEST_FAILURE_QUEUE_URL")?,
        })
    }
}

/// Reading a batch's records failed.
enum ReadError {
    /// The records can no longer be read (trimmed, shard or stream gone).
    Gone(String),
    /// The stream could not be reached; try again later.
    Unavailable(String),
}

fn read_error<E, R>(operation: &str, e: SdkError<E, R>) -> ReadError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let gone = e.as_service_error().and_then(|s| {
        let code = s.code()?;
        matches!(
            code,
            "TrimmedDataAccessException" | "ResourceNotFoundException"
        )
        .then(|| format!("{operation}: {code}: {}", s.message().unwrap_or_default()))
    });
    match gone {
        Some(reason) => ReadError::Gone(reason),
        None => ReadError::Unavailable(format!("{operation}: {}", DisplayErrorContext(e))),
    }
}

fn sequence(record: &Record) -> &str {
    record
        .dynamodb
        .as_ref()
        .and_then(|d| d.sequence_number.as_deref())
        .unwrap_or_default()
}

/// Replays `IngestFailureQueue` entries through an [`Ingest`].
#[derive(Debug)]
pub struct Replayer {
    ingest: Ingest,
    streams: aws_sdk_dynamodbstreams::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Replayer {
    /// A replayer reading `config`'s queue, re-reading records with
    /// `streams` and ingesting with `ingest`.
    pub fn new(
        config: &ReplayConfig,
        ingest: Ingest,
        streams: aws_sdk_dynamodbstreams::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> Self {
        Self {
            ingest,
            streams,
            sqs,
            queue_url: config.failure_queue_url.clone(),
        }
    }

    /// Handles one invocation: validates the payload, runs until
    /// `deadline`, logs the report and returns it.
    pub async fn handle(
        &self,
        event: Value,
        deadline: Instant,
    ) -> Result<ReplayReport, RequestError> {
        let request = ReplayRequest::from_event(event)?;
        let report = self.run(&request, deadline).await;
        tracing::info!(
            entries = report.entries,
            replayed = report.replayed,
            records = report.records,
            enqueued = report.enqueued,
            poison = report.poison,
            incomplete = report.incomplete,
            unreadable = report.unreadable,
            expired = report.expired.len(),
            dry_run = report.dry_run,
            time_limit = report.time_limit,
            "ingest failures replayed"
        );
        Ok(report)
    }

    /// One run.
    pub async fn run(&self, request: &ReplayRequest, deadline: Instant) -> ReplayReport {
        let stop = Deadline::new(Some(deadline), STOP_MARGIN);
        let mut report = ReplayReport {
            dry_run: request.dry_run,
            ..ReplayReport::default()
        };
        let mut held = Vec::new();
        while report.entries < request.max_entries {
            if stop.is_near() {
                report.time_limit = true;
                break;
            }
            let entries = match self
                .receive(request.max_entries - report.entries, deadline)
                .await
            {
                Ok(entries) if entries.is_empty() => break,
                Ok(entries) => entries,
                Err(e) => {
                    tracing::error!(error = %e, queue = %self.queue_url, "cannot read the ingest failure queue");
                    break;
                }
            };
            for entry in entries {
                report.entries += 1;
                if !self
                    .replay_entry(&entry, request, deadline, &mut report)
                    .await
                {
                    held.extend(entry.receipt_handle().map(str::to_owned));
                }
            }
        }
        self.release(held).await;
        report
    }

    /// Makes the entries left in the queue visible again at the end of the
    /// run (they were held so the run reads each once).
    async fn release(&self, held: Vec<String>) {
        for chunk in held.chunks(10) {
            let entries = chunk.iter().enumerate().map(|(i, handle)| {
                aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .build()
                    .expect("id and receipt handle are set")
            });
            if let Err(e) = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries.collect()))
                .send()
                .await
            {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "cannot release held entries; they come back when their visibility timeout ends");
            }
        }
    }

    async fn receive(&self, wanted: usize, deadline: Instant) -> Result<Vec<Message>, String> {
        let hold =
            (deadline.saturating_duration_since(Instant::now()) + HOLD_MARGIN).min(MAX_VISIBILITY);
        self.sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(wanted.clamp(1, 10) as i32)
            .visibility_timeout(hold.as_secs() as i32)
            .wait_time_seconds(1)
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
    }

    /// Replays one entry; true when it was deleted.
    async fn replay_entry(
        &self,
        entry: &Message,
        request: &ReplayRequest,
        deadline: Instant,
        report: &mut ReplayReport,
    ) -> bool {
        let parsed = entry
            .body()
            .and_then(|b| serde_json::from_str::<FailureEntry>(b).ok());
        let Some(FailureEntry { batch }) = parsed else {
            report.unreadable += 1;
            tracing::error!(
                message_id = entry.message_id().unwrap_or_default(),
                "ingest failure entry is not DDBStreamBatchInfo; left in the queue"
            );
            return false;
        };
        let (records, gone) = match self.read(&batch).await {
            Ok(read) => read,
            Err(ReadError::Gone(reason)) => (Vec::new(), Some(reason)),
            Err(ReadError::Unavailable(reason)) => {
                report.incomplete += 1;
                tracing::warn!(shard = %batch.shard_id, %reason, "stream unavailable; the entry stays for the next run");
                return false;
            }
        };
        report.records += records.len();
        if request.dry_run {
            if let Some(reason) = gone {
                report.expired.push(Expired {
                    batch,
                    read: records.len(),
                    reason,
                    discarded: false,
                });
            }
            return false;
        }
        if !records.is_empty() {
            let (usable, unusable): (Vec<&Record>, Vec<PoisonRecord>) =
                records
                    .iter()
                    .fold((Vec::new(), Vec::new()), |(mut ok, mut bad), r| {
                        match unusable(r) {
                            None => ok.push(r),
                            Some(reason) => bad.push(PoisonRecord::from_stream_record(
                                r,
                                &batch.stream_arn,
                                &batch.shard_id,
                                &reason,
                            )),
                        }
                        (ok, bad)
                    });
            let unusable_count = unusable.len();
            if self.ingest.set_aside_records(unusable).await > 0 {
                report.incomplete += 1;
                tracing::warn!(shard = %batch.shard_id, "unusable records not set aside; the entry stays for the next run");
                return false;
            }
            report.poison += unusable_count;
            let event = lambda_event(usable, &batch.stream_arn, region_of(&batch.stream_arn));
            let (response, stats) = self
                .ingest
                .process_in_shard(event, &batch.shard_id, self.ingest.deadline(Some(deadline)))
                .await;
            report.enqueued += stats.enqueued;
            report.poison += stats.poison;
            if !response.batch_item_failures.is_empty() {
                report.incomplete += 1;
                tracing::warn!(
                    shard = %batch.shard_id,
                    start = %batch.start_sequence_number,
                    failed_records = stats.failed_records,
                    deferred = stats.deferred,
                    "replayed batch not fully enqueued; the entry stays for the next run"
                );
                return false;
            }
        }
        if let Some(reason) = gone {
            tracing::error!(
                shard = %batch.shard_id,
                start = %batch.start_sequence_number,
                end = %batch.end_sequence_number,
                read = records.len(),
                %reason,
                "ingest failure entry points at records that can no longer be read: their events are lost"
            );
            let discarded = request.discard_expired && self.delete(entry).await;
            report.expired.push(Expired {
                batch,
                read: records.len(),
                reason,
                discarded,
            });
            return discarded;
        }
        if self.delete(entry).await {
            report.replayed += 1;
            true
        } else {
            report.incomplete += 1;
            false
        }
    }

    /// The batch's records, from its first to its last sequence number,
    /// and why some can no longer be read, if some cannot: when the first
    /// was trimmed, what is left of the range is read from the shard's
    /// trim horizon; a shard or stream that is gone gives nothing. Reads
    /// through empty pages until the last record (or the shard's end); a
    /// shard that keeps answering empty is `Unavailable`, never taken as
    /// read.
    async fn read(&self, batch: &BatchInfo) -> Result<(Vec<Record>, Option<String>), ReadError> {
        let at_start = self
            .iterator(batch, ShardIteratorType::AtSequenceNumber)
            .await;
        let (mut iterator, mut gone) = match at_start {
            Ok(iterator) => (iterator, None),
            Err(ReadError::Gone(reason)) if reason.contains("TrimmedDataAccessException") => {
                let from_horizon = self.iterator(batch, ShardIteratorType::TrimHorizon).await?;
                (
                    from_horizon,
                    Some(format!(
                        "{reason}; records before the trim horizon are lost"
                    )),
                )
            }
            Err(e) => return Err(e),
        };
        let mut records = Vec::new();
        let mut empty = 0;
        while let Some(current) = iterator.take() {
            let out = match self
                .streams
                .get_records()
                .shard_iterator(current)
                .limit(PAGE)
                .send()
                .await
            {
                Ok(out) => out,
                // Records already read are replayed; the rest are lost.
                Err(e) => match read_error("GetRecords", e) {
                    ReadError::Gone(reason) => {
                        gone = Some(reason);
                        break;
                    }
                    unavailable => return Err(unavailable),
                },
            };
            let page = out.records.unwrap_or_default();
            empty = if page.is_empty() { empty + 1 } else { 0 };
            if empty > EMPTY_PAGES {
                return Err(ReadError::Unavailable(format!(
                    "GetRecords: {EMPTY_PAGES} empty pages in a row before sequence number {}",
                    batch.end_sequence_number
                )));
            }
            let mut reached_end = false;
            for record in page {
                let seq = sequence(&record);
                if sequence_cmp(seq, &batch.start_sequence_number).is_lt() {
                    continue;
                }
                if sequence_cmp(seq, &batch.end_sequence_number).is_gt() {
                    reached_end = true;
                    break;
                }
                reached_end = sequence_cmp(seq, &batch.end_sequence_number).is_eq();
                records.push(record);
                if reached_end {
                    break;
                }
            }
            if reached_end {
                break;
            }
            iterator = out.next_shard_iterator;
        }
        Ok((records, gone))
    }

    async fn iterator(
        &self,
        batch: &BatchInfo,
        kind: ShardIteratorType,
    ) -> Result<Option<String>, ReadError> {
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(&batch.stream_arn)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(kind.clone());
        let request = if kind == ShardIteratorType::AtSequenceNumber {
            request.sequence_number(&batch.start_sequence_number)
        } else {
            request
        };
        Ok(request
            .send()
            .await
            .map_err(|e| read_error("GetShardIterator", e))?
            .shard_iterator)
    }

    async fn delete(&self, entry: &Message) -> bool {
        let Some(handle) = entry.receipt_handle() else {
            return false;
        };
        match self
            .sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "cannot delete a replayed entry; it comes back and is replayed again");
                false
            }
        }
    }
}

/// The region of a stream ARN (`arn:aws:dynamodb:REGION:...`), written into
/// the records as Lambda does.
fn region_of(arn: &str) -> &str {
    arn.split(':').nth(3).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(sequence_cmp("900", "1000"), Less);
        assert_eq!(sequence_cmp("1000", "1000"), Equal);
        assert_eq!(sequence_cmp("1001", "1000"), Greater);
    }

    #[test]
    fn requests_are_checked() {
        assert_eq!(
            ReplayRequest::from_event(Value::Null).unwrap(),
            ReplayRequest::default()
        );
        let r = ReplayRequest::from_event(serde_json::json!({"max_entries": 5, "dry_run": true}))
            .unwrap();
        assert_eq!(
            (r.max_entries, r.dry_run, r.discard_expired),
            (5, true, false)
        );
        for bad in [
            serde_json::json!({"max_entries": 0}),
            serde_json::json!({"max_entries": MAX_MAX_ENTRIES + 1}),
            serde_json::json!({"unknown": 1}),
            serde_json::json!("replay"),
        ] {
            assert!(ReplayRequest::from_event(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn lambda_failure_entries_parse() {
        let body = r#"{"requestContext":{"condition":"RetryAttemptsExhausted"},"version":"1.0",
            "DDBStreamBatchInfo":{"shardId":"shardId-1","startSequenceNumber":"100",
            "endSequenceNumber":"200","approximateArrivalOfFirstRecord":"2026-12-02T10:00:00Z",
            "batchSize":3,"streamArn":"arn:aws:dynamodb:eu-west-1:1:table/jobs/stream/x"}}"#;
        let entry: FailureEntry = serde_json::from_str(body).unwrap();
        assert_eq!(entry.batch.batch_size, Some(3));
        assert_eq!(entry.batch.start_sequence_number, "100");
    }
}
