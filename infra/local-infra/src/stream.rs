//! Reads a DynamoDB table's stream like Lambda's event source mapping does,
//! and builds the event such a mapping hands to a function.
//!
//! [`StreamReader`] walks every shard of a stream: a child shard is read
//! only after its parent has ended, so the changes of one item always arrive
//! in order. Each [`StreamReader::poll`] returns one batch from one shard,
//! as Lambda invokes a function with one shard's records at a time, and
//! [`StreamReader::rewind_to`] re-reads a shard from a given record on, which
//! is what Lambda does with the first of a batch's `batchItemFailures`.
//!
//! [`lambda_event`] turns records into the JSON of a DynamoDB stream event
//! (`{"Records": [...]}`, images in DynamoDB JSON), the shape
//! `aws_lambda_events::event::dynamodb::Event` deserialises.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
pub use shared::stream_records::{lambda_event, lambda_record, unusable};

/// Most records one `GetRecords` call may return.
const MAX_LIMIT: usize = 1000;

/// Reading a stream failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on DynamoDB stream {stream_arn}: {message}")]
pub struct StreamError {
    /// The DynamoDB Streams operation, e.g. `GetRecords`.
    pub operation: &'static str,
    /// ARN of the stream.
    pub stream_arn: String,
    /// What went wrong, including the shard when one is concerned.
    pub message: String,
}

/// Where a newly opened [`StreamReader`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest record still in the stream (`TRIM_HORIZON`).
    TrimHorizon,
    /// Only records written after the reader was opened (`LATEST`).
    Latest,
}

/// A stream record and the shard it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// Id of the shard, for [`StreamReader::rewind_to`].
    pub shard_id: String,
    /// The record as DynamoDB Streams returned it. Always has a sequence
    /// number (`record.dynamodb.sequence_number`).
    pub record: Record,
}

impl StreamRecord {
    /// The record's sequence number.
    pub fn sequence_number(&self) -> &str {
        sequence_number(&self.record).unwrap_or_default()
    }
}

/// Where reading a shard goes on when it needs a new iterator.
#[derive(Debug, Clone)]
enum Position {
    TrimHorizon,
    Latest,
    At(String),
    After(String),
}

#[derive(Debug)]
struct Shard {
    id: String,
    parent_id: Option<String>,
    /// Where the next iterator starts; follows the records read.
    resume: Position,
    /// The iterator for the next `GetRecords`, once requested.
    iterator: Option<String>,
    /// Every record of the shard has been read and it takes no more.
    ended: bool,
}

/// Reads the records of one DynamoDB stream, shard by shard.
#[derive(Debug)]
pub struct StreamReader {
    client: Client,
    stream_arn: String,
    shards: Vec<Shard>,
    /// Index of the shard the next poll asks first.
    next: usize,
}

impl StreamReader {
    /// Opens the stream `stream_arn` at `start`. Shards the stream has later
    /// (after a shard ends) are read from their beginning.
    pub async fn open(
        client: Client,
        stream_arn: impl Into<String>,
        start: StartPosition,
    ) -> Result<Self, StreamError> {
        Self::resume(client, stream_arn, start, &HashMap::new()).await
    }

    /// Opens the stream `stream_arn` where a previous reader left it:
    /// `checkpoints` holds, by shard, the sequence number of the last record
    /// handled, and those shards go on after it. With no checkpoints the
    /// reader starts at `start`; with some, the shards without one appeared
    /// since and are read from their beginning.
    pub async fn resume(
        client: Client,
        stream_arn: impl Into<String>,
        start: StartPosition,
        checkpoints: &HashMap<String, String>,
    ) -> Result<Self, StreamError> {
        let mut reader = Self {
            client,
            stream_arn: stream_arn.into(),
            shards: Vec::new(),
            next: 0,
        };
        let initial = match start {
            _ if !checkpoints.is_empty() => Position::TrimHorizon,
            StartPosition::TrimHorizon => Position::TrimHorizon,
            StartPosition::Latest => Position::Latest,
        };
        reader.discover_shards(initial).await?;
        for shard in &mut reader.shards {
            if let Some(sequence) = checkpoints.get(&shard.id) {
                shard.resume = Position::After(sequence.clone());
                shard.ended = false;
            }
        }
        // Take iterators now: LATEST means "after opening", not "after the
        // first poll", and an unreadable stream fails here.
        for i in 0..reader.shards.len() {
            if reader.readable(i) {
                reader.shards[i].iterator = Some(reader.iterator(i).await?);
            }
        }
        Ok(reader)
    }

    /// Reads past every record the stream holds now, without returning
    /// them, and gives the last sequence number read in each shard: a
    /// `LATEST` position that can be saved.
    pub async fn skip_to_end(&mut self) -> Result<HashMap<String, String>, StreamError> {
        let mut last = HashMap::new();
        loop {
            let batch = self.poll(MAX_LIMIT).await?;
            let Some(end) = batch.last() else {
                return Ok(last);
            };
            last.insert(end.shard_id.clone(), end.sequence_number().to_owned());
        }
    }

    /// ARN of the stream.
    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// The next batch of at most `max_records` records (at most 1000), in
    /// stream order, all from one shard; empty when no shard has new
    /// records. Shards take turns between polls.
    pub async fn poll(&mut self, max_records: usize) -> Result<Vec<StreamRecord>, StreamError> {
        if max_records == 0 {
            return Ok(Vec::new());
        }
        if self.awaiting_children() {
            self.discover_shards(Position::TrimHorizon).await?;
        }
        let count = self.shards.len();
        for step in 0..count {
            let i = (self.next + step) % count;
            if !self.readable(i) {
                continue;
            }
            let records = self.read_shard(i, max_records.min(MAX_LIMIT)).await?;
            if !records.is_empty() {
                self.next = (i + 1) % count;
                return Ok(records);
            }
        }
        Ok(Vec::new())
    }

    /// Makes shard `shard_id` continue at the record with `sequence_number`
    /// (`AT_SEQUENCE_NUMBER`), so that record and those after it are read
    /// again; the next poll reads this shard first. Rewinding a shard whose
    /// child shards have already been read breaks the order of changes.
    pub async fn rewind_to(
        &mut self,
        shard_id: &str,
        sequence_number: &str,
    ) -> Result<(), StreamError> {
        let i = self
            .shards
            .iter()
            .position(|s| s.id == shard_id)
            .ok_or_else(|| self.error("GetShardIterator", format!("unknown shard {shard_id}")))?;
        let shard = &mut self.shards[i];
        shard.resume = Position::At(sequence_number.to_owned());
        shard.iterator = None;
        shard.ended = false;
        self.shards[i].iterator = Some(self.iterator(i).await?);
        self.next = i;
        Ok(())
    }

    fn error(&self, operation: &'static str, message: String) -> StreamError {
        StreamError {
            operation,
            stream_arn: self.stream_arn.clone(),
            message,
        }
    }

    /// Whether shard `i` may be read now: it has not ended and its parent,
    /// if the stream still has it, has.
    fn readable(&self, i: usize) -> bool {
        let shard = &self.shards[i];
        !shard.ended
            && shard.parent_id.as_ref().is_none_or(|parent| {
                self.shards
                    .iter()
                    .find(|s| &s.id == parent)
                    .is_none_or(|s| s.ended)
            })
    }

    /// Whether a shard has ended without a known child, which DynamoDB
    /// creates when it closes a shard.
    fn awaiting_children(&self) -> bool {
        self.shards.iter().any(|s| {
            s.ended
                && !self
                    .shards
                    .iter()
                    .any(|c| c.parent_id.as_deref() == Some(&s.id))
        })
    }

    /// Adds the stream's shards that are not known yet, to be read from
    /// `initial`. Shards that are already closed when opened at `LATEST`
    /// hold nothing to read.
    async fn discover_shards(&mut self, initial: Position) -> Result<(), StreamError> {
        let mut exclusive_start = None;
        loop {
            let description = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(exclusive_start)
                .send()
                .await
                .map_err(|e| self.error("DescribeStream", sdk_message(e)))?
                .stream_description
                .ok_or_else(|| self.error("DescribeStream", "no stream description".to_owned()))?;
            for shard in description.shards.unwrap_or_default() {
                let Some(id) = shard.shard_id else { continue };
                if self.shards.iter().any(|s| s.id == id) {
                    continue;
                }
                let closed = shard
                    .sequence_number_range
                    .is_some_and(|r| r.ending_sequence_number.is_some());
                self.shards.push(Shard {
                    id,
                    parent_id: shard.parent_shard_id,
                    resume: initial.clone(),
                    iterator: None,
                    ended: closed && matches!(initial, Position::Latest),
                });
            }
            exclusive_start = description.last_evaluated_shard_id;
            if exclusive_start.is_none() {
                return Ok(());
            }
        }
    }

    /// A new iterator for shard `i` at its resume position.
    async fn iterator(&self, i: usize) -> Result<String, StreamError> {
        let shard = &self.shards[i];
        let (kind, sequence_number) = match &shard.resume {
            Position::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
            Position::Latest => (ShardIteratorType::Latest, None),
            Position::At(s) => (ShardIteratorType::AtSequenceNumber, Some(s.clone())),
            Position::After(s) => (ShardIteratorType::AfterSequenceNumber, Some(s.clone())),
        };
        let fail = |message: String| {
            self.error(
                "GetShardIterator",
                format!("shard {} ({kind}): {message}", shard.id),
            )
        };
        self.client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&shard.id)
            .shard_iterator_type(kind.clone())
            .set_sequence_number(sequence_number)
            .send()
            .await
            .map_err(|e| fail(sdk_message(e)))?
            .shard_iterator
            .ok_or_else(|| fail("no shard iterator".to_owned()))
    }

    /// One `GetRecords` on shard `i`, renewing an expired iterator once.
    async fn read_shard(
        &mut self,
        i: usize,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, StreamError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let mut renewed = false;
        loop {
            let iterator = match self.shards[i].iterator.take() {
                Some(iterator) => iterator,
                None => self.iterator(i).await?,
            };
            let output = match self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(limit)
                .send()
                .await
            {
                Ok(output) => output,
                Err(e)
                    if !renewed
                        && e.as_service_error()
                            .is_some_and(|e| e.is_expired_iterator_exception()) =>
                {
                    renewed = true;
                    continue;
                }
                Err(e) => {
                    let message = format!("shard {}: {}", self.shards[i].id, sdk_message(e));
                    return Err(self.error("GetRecords", message));
                }
            };
            let records = output.records.unwrap_or_default();
            if let Some(problem) = records.iter().find_map(unusable) {
                let message = format!("shard {}: {problem}", self.shards[i].id);
                return Err(self.error("GetRecords", message));
            }
            let shard = &mut self.shards[i];
            if let Some(last) = records.last().and_then(sequence_number) {
                shard.resume = Position::After(last.to_owned());
            }
            shard.ended = output.next_shard_iterator.is_none();
            shard.iterator = output.next_shard_iterator;
            return Ok(records
                .into_iter()
                .map(|record| StreamRecord {
                    shard_id: shard.id.clone(),
                    record,
                })
                .collect());
        }
    }
}

/// The code and message of a service error, or the whole chain of any
/// other failure (connection, timeout, ...).
fn sdk_message<E, R>(e: SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("service error"),
            service.message().unwrap_or("no message")
        ),
        None => DisplayErrorContext(e).to_string(),
    }
}

fn sequence_number(record: &Record) -> Option<&str> {
    record.dynamodb.as_ref()?.sequence_number.as_deref()
}
