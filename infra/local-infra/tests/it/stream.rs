//! Reads table streams from the local AWS emulator and turns them into
//! Lambda DynamoDB stream events. Needs the emulator:
//! `infra/with-emulator.sh cargo test -p local-infra`.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, StreamViewType as LambdaViewType};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use local_infra::stream::{StartPosition, StreamReader, StreamRecord, lambda_event};
use serde_json::{Value, json};
use test_kit::emulator;
use test_kit::stack;

const REGION: &str = "us-east-1";

async fn streams() -> aws_sdk_dynamodbstreams::Client {
    aws_sdk_dynamodbstreams::Client::new(&emulator::sdk_config().await)
}

async fn put_json(client: &aws_sdk_dynamodb::Client, table: &str, item: &Value) {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(
            serde_dynamo::aws_sdk_dynamodb_1::to_item(item).expect("item converts"),
        ))
        .send()
        .await
        .expect("item is written");
}

/// The jobs table's key: `job_id` alone.
fn key(job_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("job_id".to_owned(), AttributeValue::S(job_id.to_owned()))])
}

/// Polls until `n` records arrived (the emulator may lag), then checks that
/// no more follow.
async fn poll_exactly(reader: &mut StreamReader, n: usize) -> Vec<StreamRecord> {
    let mut records = Vec::new();
    for _ in 0..50 {
        if records.len() >= n {
            break;
        }
        let batch = reader.poll(100).await.expect("poll succeeds");
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        records.extend(batch);
    }
    assert_eq!(records.len(), n, "records read: {records:#?}");
    assert!(reader.poll(100).await.expect("poll succeeds").is_empty());
    records
}

/// An image of the stream as plain JSON.
fn plain(image: &serde_dynamo::Item) -> Value {
    serde_dynamo::from_item(image.clone()).expect("image converts to JSON")
}

#[tokio::test]
async fn stream_changes_become_a_lambda_event_in_order_with_images() {
    let db = emulator::dynamodb().await;
    let (table, arn) = stack::jobs_table().await;
    let created = json!({
        "company_id": "c1",
        "job_id": "j1",
        "state": "queued",
        "attempts": 0,
        "archived": false,
        "note": null,
        "spec": {"priority": 3, "retry": true, "deadline": null, "tags": ["a", "b"]},
        "payload": [1, "two", {"three": 3.5}, [false]],
    });
    put_json(&db, &table, &created).await;
    db.update_item()
        .table_name(&table)
        .set_key(Some(key("j1")))
        .update_expression(
            "SET #s = :s, attempts = attempts + :one, spec.priority = :p REMOVE note",
        )
        .expression_attribute_names("#s", "state")
        .expression_attribute_values(":s", AttributeValue::S("running".to_owned()))
        .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
        .expression_attribute_values(":p", AttributeValue::N("7".to_owned()))
        .send()
        .await
        .expect("item is updated");
    let mut updated = created.clone();
    updated["state"] = json!("running");
    updated["attempts"] = json!(1);
    updated["spec"]["priority"] = json!(7);
    updated.as_object_mut().unwrap().remove("note");
    db.delete_item()
        .table_name(&table)
        .set_key(Some(key("j1")))
        .send()
        .await
        .expect("item is deleted");

    let mut reader = StreamReader::open(streams().await, &arn, StartPosition::TrimHorizon)
        .await
        .expect("stream opens");
    let records = poll_exactly(&mut reader, 3).await;

    let names: Vec<_> = records
        .iter()
        .map(|r| r.record.event_name.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"]);
    assert!(records.windows(2).all(|w| w[0].shard_id == w[1].shard_id));
    let sequence_numbers: Vec<&str> = records.iter().map(StreamRecord::sequence_number).collect();
    assert!(sequence_numbers.iter().all(|s| !s.is_empty()));

    let event = lambda_event(records.iter().map(|r| &r.record), &arn, REGION);
    let parsed: Event =
        serde_json::from_value(event.clone()).expect("Lambda's type reads the event");
    assert_eq!(parsed.records.len(), 3);
    let expected_images = [
        (None, Some(&created)),
        (Some(&created), Some(&updated)),
        (Some(&updated), None),
    ];
    let now = chrono::Utc::now();
    for (i, (lambda, (old, new))) in parsed.records.iter().zip(expected_images).enumerate() {
        let sdk = &records[i].record;
        assert_eq!(Some(&lambda.event_id), sdk.event_id.as_ref());
        assert_eq!(lambda.event_name, names[i]);
        assert_eq!(lambda.event_source.as_deref(), Some("aws:dynamodb"));
        assert_eq!(lambda.event_source_arn.as_deref(), Some(arn.as_str()));
        assert_eq!(lambda.aws_region, REGION);
        let change = &lambda.change;
        assert_eq!(change.sequence_number.as_deref(), Some(sequence_numbers[i]));
        assert_eq!(
            change.stream_view_type,
            Some(LambdaViewType::NewAndOldImages)
        );
        assert!(change.size_bytes > 0);
        let age = now - change.approximate_creation_date_time;
        assert!(
            age.num_seconds().abs() < 300,
            "creation time {age} from now"
        );
        assert_eq!(plain(&change.keys), json!({"job_id": "j1"}));
        match old {
            Some(old) => assert_eq!(&plain(&change.old_image), old, "old image of record {i}"),
            None => assert!(change.old_image.is_empty()),
        }
        match new {
            Some(new) => assert_eq!(&plain(&change.new_image), new, "new image of record {i}"),
            None => assert!(change.new_image.is_empty()),
        }
    }
    // Images travel as DynamoDB JSON, as Lambda sends them.
    let raw = &event["Records"][0]["dynamodb"]["NewImage"];
    assert_eq!(raw["state"], json!({"S": "queued"}));
    assert_eq!(raw["attempts"], json!({"N": "0"}));
    assert_eq!(raw["archived"], json!({"BOOL": false}));
    assert_eq!(raw["note"], json!({"NULL": true}));
    assert_eq!(
        raw["spec"]["M"]["tags"],
        json!({"L": [{"S": "a"}, {"S": "b"}]})
    );
    assert!(event["Records"][0]["dynamodb"]["ApproximateCreationDateTime"].is_number());
    assert!(event["Records"][0]["dynamodb"].get("OldImage").is_none());
}

#[tokio::test]
async fn binary_and_set_attributes_become_dynamodb_json() {
    let db = emulator::dynamodb().await;
    let (table, arn) = stack::jobs_table().await;
    let mut item = key("j1");
    item.extend([
        (
            "blob".to_owned(),
            AttributeValue::B(Blob::new(b"\x00\x01bin".to_vec())),
        ),
        (
            "blobs".to_owned(),
            AttributeValue::Bs(vec![Blob::new(b"x".to_vec())]),
        ),
        (
            "names".to_owned(),
            AttributeValue::Ss(vec!["a".to_owned(), "b".to_owned()]),
        ),
        (
            "numbers".to_owned(),
            AttributeValue::Ns(vec!["1".to_owned(), "2.5".to_owned()]),
        ),
    ]);
    db.put_item()
        .table_name(&table)
        .set_item(Some(item))
        .send()
        .await
        .expect("item is written");

    let mut reader = StreamReader::open(streams().await, &arn, StartPosition::TrimHorizon)
        .await
        .expect("stream opens");
    let records = poll_exactly(&mut reader, 1).await;
    let event = lambda_event(records.iter().map(|r| &r.record), &arn, REGION);

    let image = &event["Records"][0]["dynamodb"]["NewImage"];
    assert_eq!(image["blob"], json!({"B": "AAFiaW4="}));
    assert_eq!(image["blobs"], json!({"BS": ["eA=="]}));
    let mut names: Vec<String> = serde_json::from_value(image["names"]["SS"].clone()).unwrap();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    let mut numbers: Vec<String> = serde_json::from_value(image["numbers"]["NS"].clone()).unwrap();
    numbers.sort();
    assert_eq!(numbers, ["1", "2.5"]);
    let parsed: Event = serde_json::from_value(event).expect("Lambda's type reads the event");
    assert_eq!(
        parsed.records[0].change.new_image.inner().get("blob"),
        Some(&serde_dynamo::AttributeValue::B(b"\x00\x01bin".to_vec()))
    );
}

#[tokio::test]
async fn rewind_re_reads_from_a_sequence_number_and_batches_respect_the_limit() {
    let db = emulator::dynamodb().await;
    let (table, arn) = stack::jobs_table().await;
    for job in ["j1", "j2", "j3"] {
        put_json(&db, &table, &json!({"company_id": "c1", "job_id": job})).await;
    }
    let mut reader = StreamReader::open(streams().await, &arn, StartPosition::TrimHorizon)
        .await
        .expect("stream opens");

    let mut first = Vec::new();
    for _ in 0..50 {
        first = reader.poll(2).await.expect("poll succeeds");
        if !first.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first.len(), 2, "a batch holds at most max_records");
    let mut all = first;
    all.extend(poll_exactly(&mut reader, 1).await);
    let ids = |records: &[StreamRecord]| -> Vec<String> {
        records
            .iter()
            .map(|r| r.record.event_id.clone().unwrap())
            .collect()
    };

    reader
        .rewind_to(&all[1].shard_id, all[1].sequence_number())
        .await
        .expect("rewind succeeds");
    let again = poll_exactly(&mut reader, 2).await;
    assert_eq!(ids(&again), ids(&all[1..]));
    assert_eq!(
        again
            .iter()
            .map(StreamRecord::sequence_number)
            .collect::<Vec<_>>(),
        all[1..]
            .iter()
            .map(StreamRecord::sequence_number)
            .collect::<Vec<_>>()
    );

    let unknown = reader
        .rewind_to("shardId-unknown", all[0].sequence_number())
        .await
        .expect_err("an unknown shard cannot be rewound");
    assert!(unknown.to_string().contains(&arn), "{unknown}");
}

#[tokio::test]
async fn latest_reads_only_changes_made_after_opening() {
    let db = emulator::dynamodb().await;
    let (table, arn) = stack::jobs_table().await;
    put_json(
        &db,
        &table,
        &json!({"company_id": "c1", "job_id": "before"}),
    )
    .await;
    let mut reader = StreamReader::open(streams().await, &arn, StartPosition::Latest)
        .await
        .expect("stream opens");
    assert!(reader.poll(100).await.expect("poll succeeds").is_empty());

    put_json(&db, &table, &json!({"company_id": "c1", "job_id": "after"})).await;
    let records = poll_exactly(&mut reader, 1).await;
    let keys = records[0]
        .record
        .dynamodb
        .as_ref()
        .unwrap()
        .keys
        .clone()
        .unwrap();
    let keys: Value = serde_dynamo::from_item(keys).unwrap();
    assert_eq!(keys, json!({"job_id": "after"}));
}

#[tokio::test]
async fn opening_a_missing_stream_names_the_operation_and_stream() {
    let arn = format!(
        "arn:aws:dynamodb:{REGION}:123456789012:table/{}/stream/2024-01-01T00:00:00.000",
        emulator::unique_name("Missing")
    );
    let err = StreamReader::open(streams().await, &arn, StartPosition::TrimHorizon)
        .await
        .expect_err("a missing stream cannot be opened");
    assert_eq!(err.operation, "DescribeStream");
    assert_eq!(err.stream_arn, arn);
    assert!(err.to_string().contains(&arn), "{err}");
}
