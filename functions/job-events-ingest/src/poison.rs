//! Poison records: stream records that cannot be turned into delivery
//! messages (unparseable, an id or type over its limit, an event too large
//! for the configured message size even when trimmed). Ingest sets each one
//! aside on `IngestPoisonQueue` as a [`PoisonRecord`], with where it came
//! from and why, counts it (`PoisonRecords`) and goes on with the rest of
//! the batch: one bad record never holds back the records behind it.
//!
//! An entry names the record fully (stream, shard, sequence number, event
//! id, and the job when the record says), and, when the shard is known,
//! carries the record as a one-record `DDBStreamBatchInfo`: sent to
//! `IngestFailureQueue` once the cause is fixed, the replay re-reads and
//! ingests it like any failed batch.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::types::AttributeValue as StreamValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::job_event::MAX_ID_LEN;
use shared::text::prefix;

use shared::stream_records::{BatchInfo, sequence_cmp};

/// Longest `reason` an entry carries, in bytes.
pub const MAX_REASON_LEN: usize = 2048;
/// Longest stream ARN, shard id, sequence number, event id or event name an
/// entry carries, in bytes (real ones are far shorter).
pub const MAX_COORDINATE_LEN: usize = 512;

/// A stream record set aside, as its `IngestPoisonQueue` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoisonRecord {
    /// Why the record could not be turned into delivery messages.
    pub reason: String,
    /// The stream (`eventSourceARN`).
    pub stream_arn: Option<String>,
    /// The shard: known in a replay, looked up in the stream's shard list
    /// otherwise; `None` when that does not single one out.
    pub shard_id: Option<String>,
    /// The record's sequence number.
    pub sequence_number: Option<String>,
    /// The record's `eventID`.
    #[serde(rename = "eventID")]
    pub event_id: Option<String>,
    /// `INSERT`, `MODIFY`, ...
    pub event_name: Option<String>,
    /// The job's company, when the record names one.
    pub company_id: Option<String>,
    /// The job, when the record names one.
    pub job_id: Option<String>,
    /// When it was set aside (RFC 3339).
    pub set_aside_at: String,
    /// The record as a one-record batch, in the shape of the
    /// `IngestFailureQueue` entries the replay reads; only when the shard
    /// is known.
    #[serde(
        rename = "DDBStreamBatchInfo",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub batch: Option<BatchInfo>,
}

fn bounded(text: &str, max: usize) -> String {
    prefix(text, max).to_owned()
}

fn coordinate(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(|s| bounded(s, MAX_COORDINATE_LEN))
}

/// An id attribute in DynamoDB JSON (`{"S": ..}` or `{"N": ..}`), cut to
/// [`MAX_ID_LEN`].
fn id_of(attribute: Option<&Value>) -> Option<String> {
    let attribute = attribute?;
    attribute
        .get("S")
        .or_else(|| attribute.get("N"))
        .and_then(Value::as_str)
        .map(|s| bounded(s.trim(), MAX_ID_LEN))
}

fn sdk_id_of(attribute: Option<&StreamValue>) -> Option<String> {
    match attribute? {
        StreamValue::S(s) | StreamValue::N(s) => Some(bounded(s.trim(), MAX_ID_LEN)),
        _ => None,
    }
}

impl PoisonRecord {
    /// An entry for `reason` (cut to [`MAX_REASON_LEN`]) with no
    /// coordinates yet, set aside now.
    pub fn new(reason: &str) -> Self {
        Self {
            reason: bounded(reason, MAX_REASON_LEN),
            stream_arn: None,
            shard_id: None,
            sequence_number: None,
            event_id: None,
            event_name: None,
            company_id: None,
            job_id: None,
            set_aside_at: shared::domain::job_event::timestamp(chrono::Utc::now()),
            batch: None,
        }
    }

    /// A record of a Lambda stream event (any JSON: whatever of its
    /// coordinates it has is kept), set aside for `reason`.
    pub fn from_lambda_record(record: &Value, reason: &str) -> Self {
        let change = record.get("dynamodb");
        let attribute = |name: &str| {
            let image = change.and_then(|c| c.get("NewImage"));
            let keys = change.and_then(|c| c.get("Keys"));
            image
                .and_then(|i| i.get(name))
                .or_else(|| keys.and_then(|k| k.get(name)))
        };
        Self {
            stream_arn: coordinate(record.get("eventSourceARN")),
            sequence_number: coordinate(change.and_then(|c| c.get("SequenceNumber"))),
            event_id: coordinate(record.get("eventID")),
            event_name: coordinate(record.get("eventName")),
            company_id: id_of(attribute("company_id")),
            job_id: id_of(attribute("job_id")),
            ..Self::new(reason)
        }
    }

    /// A record read with the DynamoDB Streams API from `stream_arn`'s
    /// shard `shard_id`, set aside for `reason`.
    pub fn from_stream_record(
        record: &aws_sdk_dynamodbstreams::types::Record,
        stream_arn: &str,
        shard_id: &str,
        reason: &str,
    ) -> Self {
        let change = record.dynamodb.as_ref();
        let attribute = |name: &str| {
            change
                .and_then(|c| c.new_image.as_ref())
                .and_then(|i| i.get(name))
                .or_else(|| {
                    change
                        .and_then(|c| c.keys.as_ref())
                        .and_then(|k| k.get(name))
                })
        };
        Self {
            stream_arn: Some(bounded(stream_arn, MAX_COORDINATE_LEN)),
            shard_id: Some(bounded(shard_id, MAX_COORDINATE_LEN)),
            sequence_number: change
                .and_then(|c| c.sequence_number.as_deref())
                .map(|s| bounded(s, MAX_COORDINATE_LEN)),
            event_id: record
                .event_id
                .as_deref()
                .map(|s| bounded(s, MAX_COORDINATE_LEN)),
            event_name: record
                .event_name
                .as_ref()
                .map(|n| bounded(n.as_str(), MAX_COORDINATE_LEN)),
            company_id: sdk_id_of(attribute("company_id")),
            job_id: sdk_id_of(attribute("job_id")),
            ..Self::new(reason)
        }
        .with_batch()
    }

    /// Sets the shard (when the entry has none) and the one-record batch.
    pub fn in_shard(mut self, shard_id: &str) -> Self {
        if self.shard_id.is_none() {
            self.shard_id = Some(bounded(shard_id, MAX_COORDINATE_LEN));
        }
        self.with_batch()
    }

    fn with_batch(mut self) -> Self {
        if let (Some(shard_id), Some(sequence), Some(stream_arn)) =
            (&self.shard_id, &self.sequence_number, &self.stream_arn)
        {
            self.batch = Some(BatchInfo {
                shard_id: shard_id.clone(),
                start_sequence_number: sequence.clone(),
                end_sequence_number: sequence.clone(),
                batch_size: Some(1),
                stream_arn: stream_arn.clone(),
            });
        }
        self
    }

    /// The queue entry.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("poison entries serialise")
    }

    /// Logs that the record is set aside.
    pub fn log(&self) {
        tracing::error!(
            reason = %self.reason,
            event_id = self.event_id.as_deref(),
            sequence_number = self.sequence_number.as_deref(),
            shard_id = self.shard_id.as_deref(),
            company_id = self.company_id.as_deref(),
            job_id = self.job_id.as_deref(),
            "stream record cannot be turned into delivery messages; set aside on the poison queue"
        );
    }
}

/// A shard of a stream and the sequence numbers it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    /// The shard.
    pub shard_id: String,
    /// Its first sequence number.
    pub start: String,
    /// Its last, for a closed shard.
    pub end: Option<String>,
}

/// The one shard of `shards` whose range holds `sequence`; `None` when
/// none or several do.
pub fn shard_holding<'a>(shards: &'a [ShardRange], sequence: &str) -> Option<&'a str> {
    let mut holding = shards.iter().filter(|s| {
        sequence_cmp(&s.start, sequence).is_le()
            && s.end
                .as_deref()
                .is_none_or(|end| sequence_cmp(sequence, end).is_le())
    });
    let first = holding.next()?;
    holding.next().is_none().then_some(first.shard_id.as_str())
}

/// The shards of `stream_arn` (every page of `DescribeStream`); `None`
/// when the stream cannot be described.
pub async fn shards(
    client: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Option<Vec<ShardRange>> {
    let mut shards = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let out = client
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(after.take())
            .send()
            .await
            .inspect_err(|e| {
                tracing::warn!(error = %DisplayErrorContext(e), stream_arn, "cannot list the stream's shards; poison entries go without their shard");
            })
            .ok()?;
        let description = out.stream_description?;
        for shard in description.shards.unwrap_or_default() {
            let (Some(shard_id), Some(range)) = (shard.shard_id, shard.sequence_number_range)
            else {
                continue;
            };
            let Some(start) = range.starting_sequence_number else {
                continue;
            };
            shards.push(ShardRange {
                shard_id,
                start,
                end: range.ending_sequence_number,
            });
        }
        match description.last_evaluated_shard_id {
            Some(last) => after = Some(last),
            None => return Some(shards),
        }
    }
}

/// Looks shards up once per stream.
#[derive(Debug, Default)]
pub struct ShardLookup {
    streams: HashMap<String, Option<Vec<ShardRange>>>,
}

impl ShardLookup {
    /// The shard of `stream_arn` holding `sequence`, if one does.
    pub async fn shard_of(
        &mut self,
        client: &aws_sdk_dynamodbstreams::Client,
        stream_arn: &str,
        sequence: &str,
    ) -> Option<String> {
        if !self.streams.contains_key(stream_arn) {
            let listed = shards(client, stream_arn).await;
            self.streams.insert(stream_arn.to_owned(), listed);
        }
        let listed = self.streams.get(stream_arn)?.as_deref()?;
        shard_holding(listed, sequence).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn entries_keep_what_the_record_says_bounded() {
        let record = json!({
            "eventID": "e-1",
            "eventName": "MODIFY",
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:1:table/jobs/stream/x",
            "dynamodb": {
                "SequenceNumber": "4200",
                "Keys": {"job_id": {"S": "j-1"}},
                "NewImage": {"company_id": {"N": "4711"}, "job_id": {"S": "j-1"}}
            }
        });
        let reason = "r".repeat(10 * MAX_REASON_LEN);
        let entry = PoisonRecord::from_lambda_record(&record, &reason);
        assert_eq!(entry.reason.len(), MAX_REASON_LEN);
        assert_eq!(
            (
                entry.event_id.as_deref(),
                entry.sequence_number.as_deref(),
                entry.company_id.as_deref(),
                entry.job_id.as_deref(),
                entry.shard_id.as_deref(),
            ),
            (Some("e-1"), Some("4200"), Some("4711"), Some("j-1"), None)
        );
        assert_eq!(entry.batch, None, "no shard, no batch");
        let entry = entry.in_shard("shardId-1");
        let batch = entry.batch.clone().unwrap();
        assert_eq!(
            (
                batch.shard_id.as_str(),
                batch.start_sequence_number.as_str(),
                batch.end_sequence_number.as_str()
            ),
            ("shardId-1", "4200", "4200")
        );
        let body: Value = serde_json::from_str(&entry.to_body()).unwrap();
        assert_eq!(body["DDBStreamBatchInfo"]["shardId"], "shardId-1");
        assert_eq!(body["eventID"], "e-1");

        let garbage = PoisonRecord::from_lambda_record(&json!(42), "not a record");
        assert_eq!((garbage.event_id, garbage.company_id), (None, None));
        let long_id = json!({"dynamodb": {"NewImage": {"job_id": {"S": "j".repeat(5000)}}}});
        let entry = PoisonRecord::from_lambda_record(&long_id, "id too long");
        assert_eq!(entry.job_id.unwrap().len(), MAX_ID_LEN);
    }

    #[test]
    fn the_shard_is_the_one_whose_range_holds_the_sequence_number() {
        let shard = |id: &str, start: &str, end: Option<&str>| ShardRange {
            shard_id: id.to_owned(),
            start: start.to_owned(),
            end: end.map(str::to_owned),
        };
        let shards = [
            shard("old", "100", Some("999")),
            shard("open", "1000", None),
        ];
        assert_eq!(shard_holding(&shards, "500"), Some("old"));
        assert_eq!(shard_holding(&shards, "999"), Some("old"));
        assert_eq!(shard_holding(&shards, "1000"), Some("open"));
        assert_eq!(shard_holding(&shards, "123456"), Some("open"));
        assert_eq!(shard_holding(&shards, "99"), None);
        let overlapping = [shard("a", "100", None), shard("b", "200", None)];
        assert_eq!(shard_holding(&overlapping, "300"), None, "ambiguous");
    }
}
