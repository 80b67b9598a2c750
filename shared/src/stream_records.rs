//! Records of the jobs table's stream as the ingest handler receives them:
//! [`lambda_event`] turns records read with the DynamoDB Streams API into
//! the JSON of a Lambda DynamoDB stream event (`{"Records": [...]}`, images
//! in DynamoDB JSON), the shape `aws_lambda_events::event::dynamodb::Event`
//! deserialises. The local stack's stream runner and the replay of ingest
//! failures both build their events with it.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Why a record cannot be handed on, if it cannot.
pub fn unusable(record: &Record) -> Option<String> {
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
/// (`AttributeValue::Unknown`); [`unusable`] tells such records.
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
/// and images in DynamoDB JSON. Pass `&[Record]` or an
/// iterator of references.
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

/// A batch of one shard's records, from `start` to `end`, as Lambda's
/// on-failure destination names it (`DDBStreamBatchInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    /// The shard.
    pub shard_id: String,
    /// First record of the batch.
    pub start_sequence_number: String,
    /// Last record of the batch.
    pub end_sequence_number: String,
    /// Records in the batch (logged; the read goes by sequence numbers).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// The stream.
    pub stream_arn: String,
}

/// Stream sequence numbers are decimal strings of up to 40 digits: compared
/// by length, then digits.
pub fn sequence_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    (a.len(), a).cmp(&(b.len(), b))
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
