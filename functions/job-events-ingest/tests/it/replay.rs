//! The replay of ingest failures against the local AWS emulator: entries
//! on the stack's IngestFailureQueue, written as Lambda writes them, point
//! at records of the real jobs stream; the replay re-reads them, ingests
//! them and deletes only the entries it completed.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Fixture, job};
use job_events_ingest::Ingest;
use job_events_ingest::replay::{ReplayConfig, ReplayReport, ReplayRequest, Replayer};
use serde_json::{Value, json};
use test_kit::aws_proxy::AwsProxy;
use test_kit::emulator;
use test_kit::stack::{self, ids};

/// The replay function's settings in the fixture's stack.
fn config(f: &Fixture) -> ReplayConfig {
    let vars = stack::function_vars(&f.stack, ids::INGEST_REPLAY_FUNCTION, &[]);
    let config = ReplayConfig::from_vars(&vars).unwrap();
    assert_eq!(
        config.failure_queue_url,
        f.stack.queue_url(ids::INGEST_FAILURE_QUEUE).unwrap()
    );
    config
}

fn replayer(f: &Fixture, ingest: Ingest) -> Replayer {
    Replayer::new(
        &config(f),
        ingest,
        aws_sdk_dynamodbstreams::Client::new(&f.sdk),
        f.sqs.clone(),
    )
}

async fn run(replayer: &Replayer, request: Value) -> ReplayReport {
    let request = ReplayRequest::from_event(request).unwrap();
    replayer
        .run(&request, Instant::now() + Duration::from_secs(600))
        .await
}

/// Writes `jobs` transitions of acme and returns the entry Lambda would
/// write for them as one failed batch.
async fn failed_batch(f: &mut Fixture, jobs: usize) -> Value {
    for i in 0..jobs {
        f.put(job("acme", &format!("job-{i}"), "forecast", "failed"))
            .await;
    }
    let records = f.next_records().await;
    assert_eq!(records.len(), jobs);
    let shard = &records[0].shard_id;
    assert!(records.iter().all(|r| &r.shard_id == shard), "one shard");
    let sequence = |i: usize| records[i].sequence_number().to_owned();
    json!({
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11},
        "version": "1.0",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": sequence(0),
            "endSequenceNumber": sequence(jobs - 1),
            "batchSize": jobs,
            "streamArn": f.stream_arn,
        }
    })
}

async fn report_failure(f: &Fixture, entry: &Value) {
    f.sqs
        .send_message()
        .queue_url(config(f).failure_queue_url)
        .message_body(entry.to_string())
        .send()
        .await
        .unwrap();
}

/// Entries waiting on the failure queue (received and released).
async fn waiting(f: &Fixture) -> usize {
    let url = config(f).failure_queue_url;
    let messages = emulator::drain(&f.sqs, &url).await;
    for m in &messages {
        f.sqs
            .send_message()
            .queue_url(&url)
            .message_body(m.body().unwrap())
            .send()
            .await
            .unwrap();
    }
    messages.len()
}

/// The stream ARN of a table that no longer exists.
async fn deleted_stream(f: &Fixture) -> String {
    let (name, arn) = emulator::streamed_table("gone").await;
    f.dynamo
        .delete_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    arn
}

#[tokio::test]
async fn replay_reingests_the_records_an_entry_points_to_and_deletes_it() {
    let mut f = Fixture::new().await;
    f.subscribe("acme", json!({})).await;
    f.subscribe("acme", json!({"states": ["failed"]})).await;
    f.subscribe("acme", json!({"states": ["completed"]})).await;
    let entry = failed_batch(&mut f, 3).await;
    report_failure(&f, &entry).await;
    let replayer = replayer(&f, f.ingest());

    // A dry run reads the records and changes nothing.
    let dry = run(&replayer, json!({"dry_run": true})).await;
    assert_eq!(
        (dry.entries, dry.records, dry.enqueued, dry.replayed),
        (1, 3, 0, 0)
    );
    assert!(f.drain().await.is_empty());
    assert_eq!(waiting(&f).await, 1, "a dry run leaves the entry");

    let report = run(&replayer, Value::Null).await;
    assert_eq!(
        (
            report.entries,
            report.records,
            report.enqueued,
            report.replayed
        ),
        (1, 3, 6, 1),
        "{report:?}"
    );
    assert!(report.expired.is_empty() && report.incomplete == 0);
    let messages = f.drain().await;
    let keys: BTreeSet<&str> = messages.iter().map(|m| m.webhook_id.as_str()).collect();
    assert_eq!((messages.len(), keys.len()), (6, 6));
    assert_eq!(waiting(&f).await, 0, "the completed entry is deleted");
    assert_eq!(run(&replayer, Value::Null).await.entries, 0);
}

#[tokio::test]
async fn entries_it_cannot_complete_stay_and_expired_records_are_reported() {
    let mut f = Fixture::new().await;
    f.subscribe("acme", json!({})).await;
    let entry = failed_batch(&mut f, 2).await;

    // Sends that keep failing: the entry stays for the next run.
    report_failure(&f, &entry).await;
    let proxy = AwsProxy::start(emulator::endpoint());
    proxy.fail_requests("AmazonSQS.SendMessageBatch", 1000);
    let failing = replayer(&f, f.ingest_via(&proxy).await);
    let report = run(&failing, Value::Null).await;
    assert_eq!(
        (report.entries, report.incomplete, report.replayed),
        (1, 1, 0)
    );
    assert_eq!(waiting(&f).await, 1);

    // Records that are gone (here: the stream of a deleted table) are
    // reported with the batch, and the entry stays unless discarded.
    let replayer = replayer(&f, f.ingest());
    assert_eq!(run(&replayer, Value::Null).await.replayed, 1);
    f.drain().await;
    let mut gone = entry.clone();
    gone["DDBStreamBatchInfo"]["streamArn"] = json!(deleted_stream(&f).await);
    report_failure(&f, &gone).await;
    report_failure(&f, &json!({"not": "an entry"})).await;
    let report = run(&replayer, Value::Null).await;
    assert_eq!(
        (report.entries, report.unreadable, report.replayed),
        (2, 1, 0)
    );
    assert_eq!(report.expired.len(), 1, "{report:?}");
    assert!(
        report.expired[0]
            .reason
            .contains("ResourceNotFoundException"),
        "{report:?}"
    );
    assert!(!report.expired[0].discarded);
    assert_eq!(waiting(&f).await, 2);

    let report = run(&replayer, json!({"discard_expired": true})).await;
    assert!(report.expired[0].discarded);
    assert_eq!(waiting(&f).await, 1, "only the unreadable entry is left");
    assert!(f.drain().await.is_empty());
}

#[tokio::test]
async fn replay_sets_poison_records_aside_and_completes_their_entry() {
    let mut f = Fixture::new().await;
    f.subscribe("acme", json!({})).await;
    f.subscribe("globex", json!({})).await;
    f.put(job("globex", "g-0", "forecast", "running")).await;
    let mut big = job("acme", "big", "forecast", "failed");
    big.insert(
        "error".to_owned(),
        aws_sdk_dynamodb::types::AttributeValue::M(std::collections::HashMap::from([(
            "message".to_owned(),
            common::s(&"m".repeat(250_000)),
        )])),
    );
    f.put(big).await;
    f.put(job("acme", "odd", "forecast", "exploded")).await;
    f.put(job("globex", "g-1", "forecast", "running")).await;
    let records = f.next_records().await;
    assert_eq!(records.len(), 4);
    let entry = json!({
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11},
        "version": "1.0",
        "DDBStreamBatchInfo": {
            "shardId": records[0].shard_id,
            "startSequenceNumber": records[0].sequence_number(),
            "endSequenceNumber": records[3].sequence_number(),
            "batchSize": 4,
            "streamArn": f.stream_arn,
        }
    });
    report_failure(&f, &entry).await;
    let replayer = replayer(&f, f.ingest());

    let report = run(&replayer, Value::Null).await;
    assert_eq!(
        (
            report.entries,
            report.replayed,
            report.incomplete,
            report.enqueued,
            report.poison
        ),
        (1, 1, 0, 3, 1),
        "{report:?}"
    );
    let delivered: BTreeSet<String> = f
        .drain()
        .await
        .iter()
        .map(|m| {
            let p: Value = serde_json::from_str(m.payload.get()).unwrap();
            p["data"]["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        delivered,
        BTreeSet::from(["g-0", "big", "g-1"].map(String::from))
    );
    let poison = f.drain_poison().await;
    assert_eq!(poison.len(), 1);
    assert_eq!(poison[0].job_id.as_deref(), Some("odd"));
    assert_eq!(
        poison[0].shard_id.as_deref(),
        Some(records[2].shard_id.as_str())
    );
    assert_eq!(
        poison[0].sequence_number.as_deref(),
        Some(records[2].sequence_number())
    );
    assert_eq!(waiting(&f).await, 0, "the entry is done");

    // Sent back to the failure queue (after a fix), a poison entry is read
    // as the one-record batch it carries: replayed, and set aside again
    // while the record still cannot become a message; the run goes on.
    let body = serde_json::to_value(&poison[0]).unwrap();
    report_failure(&f, &body).await;
    let report = run(&replayer, Value::Null).await;
    assert_eq!(
        (
            report.entries,
            report.replayed,
            report.records,
            report.poison
        ),
        (1, 1, 1, 1),
        "{report:?}"
    );
    assert_eq!(f.drain_poison().await.len(), 1);
    assert_eq!(waiting(&f).await, 0);
}
