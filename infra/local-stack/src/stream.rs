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
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde_json::{Map, Value, json};

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

/// Why a record cannot be handed on, if it cannot.
fn unusable(record: &Record) -> Option<String> {
    let id = record.event_id.as_deref().unwrap_or("?");
    let Some(change) = &record.dynamodb else {
        return Some(format!("record {id} has no dynamodb section"));
    };
    if change.sequence_number.is_none() {
        return Some(format!("record {id} has no sequence number"));
    }
    let images = [&change.keys, &change.new_image, &change.old_image];
    images
        .into_iter()
        .flatten()
        .flat_map(HashMap::values)
        .any(has_unknown)
        .then(|| format!("record {id} has an attribute of a type this SDK does not know"))
}

fn has_unknown(value: &AttributeValue) -> bool {
    match value {
        AttributeValue::M(m) => m.values().any(has_unknown),
        AttributeValue::L(l) => l.iter().any(has_unknown),
        other => other.is_unknown(),
    }
}

/// An image in DynamoDB JSON (`{"name": {"S": "..."}, ...}`).
fn dynamodb_json(image: &HashMap<String, AttributeValue>) -> Value {
    let item = serde_dynamo::Item::from(image.clone());
    serde_json::to_value(item).expect("DynamoDB JSON has string keys only")
}

/// One record of a Lambda DynamoDB stream event, for the stream
/// `stream_arn` in `region`.
///
/// # Panics
/// If the record holds an attribute of a type the SDK does not know
/// (`AttributeValue::Unknown`); [`StreamReader::poll`] never returns such
/// records.
pub fn lambda_record(record: &Record, stream_arn: &str, region: &str) -> Value {
    let mut change = Map::new();
    let stream = record.dynamodb.as_ref();
    if let Some(time) = stream.and_then(|s| s.approximate_creation_date_time) {
        change.insert("ApproximateCreationDateTime".into(), time.secs().into());
    }
    let images = [
        ("Keys", stream.and_then(|s| s.keys.as_ref())),
        ("NewImage", stream.and_then(|s| s.new_image.as_ref())),
        ("OldImage", stream.and_then(|s| s.old_image.as_ref())),
    ];
    let mut size = 0;
    for (name, image) in images {
        if let Some(image) = image {
            let json = dynamodb_json(image);
            size += json.to_string().len();
            change.insert(name.into(), json);
        }
    }
    if let Some(sequence_number) = stream.and_then(|s| s.sequence_number.as_deref()) {
        change.insert("SequenceNumber".into(), sequence_number.into());
    }
    // Lambda always sends the size; the emulator may not know it. The JSON
    // length of keys and images approximates it.
    let size = stream
        .and_then(|s| s.size_bytes)
        .unwrap_or(i64::try_from(size).unwrap_or(i64::MAX));
    change.insert("SizeBytes".into(), size.into());
    if let Some(view) = stream.and_then(|s| s.stream_view_type.as_ref()) {
        change.insert("StreamViewType".into(), view.as_str().into());
    }
    let mut out = json!({
        "eventID": record.event_id.as_deref().unwrap_or_default(),
        "eventName": record.event_name.as_ref().map(|n| n.as_str()).unwrap_or_default(),
        "eventVersion": record.event_version.as_deref().unwrap_or("1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
        "dynamodb": change,
    });
    // Time to Live deletions name the service that made them.
    if let Some(identity) = &record.user_identity {
        out["userIdentity"] = json!({
            "type": identity.r#type.as_deref().unwrap_or_default(),
            "principalId": identity.principal_id.as_deref().unwrap_or_default(),
        });
    }
    out
}

/// The event Lambda's event source mapping hands a function for `records`
/// of the stream `stream_arn` in `region`: `{"Records": [...]}` with keys
/// and images in DynamoDB JSON. Pass `&[Record]`, or
/// `batch.iter().map(|r| &r.record)` for a [`StreamReader::poll`] batch.
///
/// # Panics
/// As [`lambda_record`].
pub fn lambda_event<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    stream_arn: &str,
    region: &str,
) -> Value {
    let records: Vec<Value> = records
        .into_iter()
        .map(|r| lambda_record(r, stream_arn, region))
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodbstreams::primitives::{Blob, DateTime};
    use aws_sdk_dynamodbstreams::types::{
        Identity, OperationType, StreamRecord as SdkStreamRecord, StreamViewType,
    };

    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn sample(size_bytes: Option<i64>) -> Record {
        let keys = HashMap::from([
            ("company_id".to_owned(), s("c1")),
            ("job_id".to_owned(), s("j1")),
        ]);
        let mut new_image = keys.clone();
        new_image.extend([
            ("n".to_owned(), AttributeValue::N("42.5".to_owned())),
            ("b".to_owned(), AttributeValue::B(Blob::new(b"hi".to_vec()))),
            ("t".to_owned(), AttributeValue::Bool(true)),
            ("z".to_owned(), AttributeValue::Null(true)),
            ("ss".to_owned(), AttributeValue::Ss(vec!["a".to_owned()])),
            ("ns".to_owned(), AttributeValue::Ns(vec!["1".to_owned()])),
            (
                "bs".to_owned(),
                AttributeValue::Bs(vec![Blob::new(b"x".to_vec())]),
            ),
            (
                "m".to_owned(),
                AttributeValue::M(HashMap::from([(
                    "l".to_owned(),
                    AttributeValue::L(vec![s("x"), AttributeValue::N("1".to_owned())]),
                )])),
            ),
        ]);
        Record::builder()
            .event_id("e1")
            .event_name(OperationType::Remove)
            .user_identity(
                Identity::builder()
                    .r#type("Service")
                    .principal_id("dynamodb.amazonaws.com")
                    .build(),
            )
            .dynamodb(
                SdkStreamRecord::builder()
                    .approximate_creation_date_time(DateTime::from_secs(1_700_000_000))
                    .set_keys(Some(keys))
                    .set_old_image(Some(new_image))
                    .sequence_number("100")
                    .set_size_bytes(size_bytes)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build(),
            )
            .build()
    }

    #[test]
    fn lambda_event_has_the_shape_lambda_sends_with_dynamodb_json_images() {
        let event = lambda_event(&[sample(Some(7))], "arn:stream", "eu-west-1");
        let expected = json!({"Records": [{
            "eventID": "e1",
            "eventName": "REMOVE",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "eventSourceARN": "arn:stream",
            "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
            "dynamodb": {
                "ApproximateCreationDateTime": 1_700_000_000,
                "Keys": {"company_id": {"S": "c1"}, "job_id": {"S": "j1"}},
                "OldImage": {
                    "company_id": {"S": "c1"},
                    "job_id": {"S": "j1"},
                    "n": {"N": "42.5"},
                    "b": {"B": "aGk="},
                    "t": {"BOOL": true},
                    "z": {"NULL": true},
                    "ss": {"SS": ["a"]},
                    "ns": {"NS": ["1"]},
                    "bs": {"BS": ["eA=="]},
                    "m": {"M": {"l": {"L": [{"S": "x"}, {"N": "1"}]}}},
                },
                "SequenceNumber": "100",
                "SizeBytes": 7,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        }]});
        assert_eq!(event, expected);
    }

    #[test]
    fn lambda_event_computes_size_bytes_when_the_record_lacks_it() {
        let event = lambda_event(&[sample(None)], "arn:stream", "eu-west-1");
        let change = &event["Records"][0]["dynamodb"];
        let expected = change["Keys"].to_string().len() + change["OldImage"].to_string().len();
        assert_eq!(change["SizeBytes"], json!(expected));
    }

    #[test]
    fn records_without_a_sequence_number_are_refused() {
        let mut record = sample(Some(1));
        assert_eq!(unusable(&record), None);
        record.dynamodb.as_mut().unwrap().sequence_number = None;
        assert!(unusable(&record).unwrap().contains("no sequence number"));
        record.dynamodb = None;
        assert!(unusable(&record).unwrap().contains("no dynamodb section"));
    }
}
