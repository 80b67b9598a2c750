//! Ingestion against the local AWS emulator: job items are written to a
//! jobs table with a stream, the real stream records are read and turned
//! into the Lambda event, the handler runs, and the exact messages on the
//! delivery queue are checked.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use common::{Fixture, job, s};
use serde_json::{Value, json};
use shared::deadline::Deadline;
use shared::domain::message::DeliveryMessage;
use test_kit::aws_proxy::{AwsProxy, FaultRule};
use test_kit::emulator;

fn payload(m: &DeliveryMessage) -> Value {
    serde_json::from_str(m.payload.get()).unwrap()
}

/// (subscription, job, state) of each message, sorted.
fn deliveries(messages: &[DeliveryMessage]) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = messages
        .iter()
        .map(|m| {
            let p = payload(m);
            (
                m.subscription_id.clone(),
                p["data"]["job_id"].as_str().unwrap().to_owned(),
                p["data"]["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn no_failures(response: &aws_lambda_events::event::streams::DynamoDbEventResponse) {
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
}

#[tokio::test]
async fn each_matching_subscription_gets_exactly_one_message_per_transition() {
    let mut f = Fixture::new().await;
    let any = f.subscribe("acme", json!({})).await;
    let by_id = f.subscribe("acme", json!({"job_ids": ["j1"]})).await;
    let by_type = f
        .subscribe("acme", json!({"job_types": ["forecast"]}))
        .await;
    let by_state = f
        .subscribe("acme", json!({"states": ["failed", "completed"]}))
        .await;
    let combo = f
        .subscribe("acme", json!({"job_types": ["forecast", "costs"], "states": ["completed"], "job_ids": ["j2", "j3"]}))
        .await;
    let archived = f.subscribe("acme", json!({})).await;
    let mut sub = f.store.get("acme", &archived).await.unwrap().unwrap();
    sub.archive("test", chrono::Utc::now());
    sub.version += 1;
    f.store.replace(&sub, 1).await.unwrap();
    let foreign = f.subscribe("globex", json!({"job_ids": ["j1"]})).await;

    f.put(job("acme", "j1", "materialize-view", "pending"))
        .await;
    f.put(job("acme", "j1", "materialize-view", "running"))
        .await;
    f.put(job("acme", "j1", "materialize-view", "completed"))
        .await;
    f.put(job("acme", "j2", "forecast", "pending")).await;
    f.put(job("acme", "j2", "forecast", "failed")).await;
    f.put(job("acme", "j3", "forecast", "completed")).await;

    let event = f.next_event().await;
    let (response, stats) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    assert_eq!(stats.transitions, 6);

    let t = |sub: &str, job: &str, state: &str| (sub.to_owned(), job.to_owned(), state.to_owned());
    let mut expected = vec![
        t(&any, "j1", "pending"),
        t(&any, "j1", "running"),
        t(&any, "j1", "completed"),
        t(&any, "j2", "pending"),
        t(&any, "j2", "failed"),
        t(&any, "j3", "completed"),
        t(&by_id, "j1", "pending"),
        t(&by_id, "j1", "running"),
        t(&by_id, "j1", "completed"),
        t(&by_type, "j2", "pending"),
        t(&by_type, "j2", "failed"),
        t(&by_type, "j3", "completed"),
        t(&by_state, "j1", "completed"),
        t(&by_state, "j2", "failed"),
        t(&by_state, "j3", "completed"),
        t(&combo, "j3", "completed"),
    ];
    expected.sort();
    let messages = f.drain().await;
    assert_eq!(deliveries(&messages), expected);
    assert_eq!(stats.enqueued, expected.len());
    assert!(
        messages
            .iter()
            .all(|m| m.subscription_id != archived && m.subscription_id != foreign)
    );
    assert!(
        messages
            .iter()
            .all(|m| m.company_id == "acme" && m.attempt == 1)
    );
}

#[tokio::test]
async fn the_payload_describes_the_transition() {
    let mut f = Fixture::new().await;
    let sub = f.subscribe("4711", json!({})).await;
    let mut item = job("ignored", "j9", "datasets_deliver_data", "running");
    item.insert(
        "company_id".to_owned(),
        AttributeValue::N("4711".to_owned()),
    );
    f.put(item.clone()).await;
    item.insert("state".to_owned(), s("failed"));
    item.insert("updated_at".to_owned(), s("2026-11-22T10:05:00.250Z"));
    item.insert(
        "input".to_owned(),
        AttributeValue::M(HashMap::from([
            ("dataset_id".to_owned(), AttributeValue::N("42".to_owned())),
            ("first_run".to_owned(), AttributeValue::Bool(true)),
        ])),
    );
    item.insert(
        "resource".to_owned(),
        AttributeValue::M(HashMap::from([("dataset_name".to_owned(), s("orders"))])),
    );
    item.insert(
        "error".to_owned(),
        AttributeValue::M(HashMap::from([
            ("reason".to_owned(), s("PLANNING_FAILED")),
            (
                "message".to_owned(),
                s("Something went wrong while planning the job."),
            ),
        ])),
    );
    item.insert(
        "state_history".to_owned(),
        AttributeValue::L(vec![
            AttributeValue::M(HashMap::from([
                ("state".to_owned(), s("pending")),
                ("at".to_owned(), s("2026-11-22T09:59:00Z")),
            ])),
            AttributeValue::M(HashMap::from([
                ("state".to_owned(), s("running")),
                ("at".to_owned(), s("2026-11-22T10:00:00Z")),
            ])),
        ]),
    );
    item.insert("internal_notes".to_owned(), s("never leaves the platform"));
    f.put(item).await;

    let event = f.next_event().await;
    let (response, _) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    let messages = f.drain().await;
    assert_eq!(messages.len(), 2);
    let failed = messages
        .iter()
        .find(|m| m.event_type == "job.failed")
        .unwrap();
    let p = payload(failed);
    assert_eq!(p["type"], "job.failed");
    assert_eq!(p["company_id"], "4711");
    assert_eq!(p["subscription_id"], sub);
    assert_eq!(p["idempotency_key"], failed.webhook_id);
    assert!(
        p["timestamp"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .is_ok()
    );
    assert_eq!(
        p["data"],
        json!({
            "job_id": "j9",
            "job_type": "datasets_deliver_data",
            "state": "failed",
            "previous_state": "running",
            "state_changed_at": "2026-11-22T10:05:00.250Z",
            "input": {"dataset_id": 42, "first_run": true},
            "resource": {"dataset_name": "orders"},
            "error": {"reason": "PLANNING_FAILED", "message": "Something went wrong while planning the job."},
            "state_history": [
                {"state": "pending", "at": "2026-11-22T09:59:00Z"},
                {"state": "running", "at": "2026-11-22T10:00:00Z"}
            ]
        })
    );
    let insert = payload(
        messages
            .iter()
            .find(|m| m.event_type == "job.running")
            .unwrap(),
    );
    assert_eq!(insert["data"]["previous_state"], Value::Null);
    assert_eq!(insert["data"]["error"], Value::Null);
    assert_eq!(insert["data"]["input"], json!({}));
}

#[tokio::test]
async fn same_state_changes_and_removals_are_ignored() {
    let mut f = Fixture::new().await;
    f.subscribe("acme", json!({})).await;
    f.put(job("acme", "j1", "forecast", "running")).await;
    let event = f.next_event().await;
    f.ingest().process(event, Deadline::none()).await;
    assert_eq!(f.drain().await.len(), 1);

    let mut same = job("acme", "j1", "forecast", "running");
    same.insert("progress".to_owned(), AttributeValue::N("50".to_owned()));
    f.put(same).await;
    f.delete("j1").await;
    let event = f.next_event().await;
    assert_eq!(
        event["Records"].as_array().unwrap().len(),
        2,
        "MODIFY and REMOVE were read"
    );
    let (response, stats) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    assert_eq!(
        (stats.transitions, stats.ignored, stats.enqueued),
        (0, 2, 0)
    );
    assert!(f.drain().await.is_empty());
}

#[tokio::test]
async fn reprocessing_the_same_records_yields_the_same_idempotency_keys() {
    let mut f = Fixture::new().await;
    f.subscribe("acme", json!({})).await;
    f.subscribe("acme", json!({"states": ["completed"]})).await;
    f.put(job("acme", "j1", "costs", "pending")).await;
    f.put(job("acme", "j1", "costs", "completed")).await;
    let event = f.next_event().await;
    f.ingest().process(event.clone(), Deadline::none()).await;
    let first: BTreeSet<String> = f.drain().await.into_iter().map(|m| m.webhook_id).collect();
    // A fresh instance (cold start) re-reading the same records.
    f.ingest().process(event, Deadline::none()).await;
    let second: BTreeSet<String> = f.drain().await.into_iter().map(|m| m.webhook_id).collect();
    assert_eq!(first.len(), 3);
    assert_eq!(first, second);
}

#[tokio::test]
async fn malformed_records_are_set_aside_and_never_fail_the_batch() {
    let mut f = Fixture::new().await;
    f.subscribe("acme", json!({})).await;
    let mut no_type = job("acme", "bad-1", "forecast", "pending");
    no_type.remove("type");
    f.put(no_type).await;
    f.put(job("acme", "bad-2", "forecast", "exploded")).await;
    let mut bad_time = job("acme", "bad-4", "forecast", "pending");
    bad_time.insert("updated_at".to_owned(), s("last tuesday"));
    f.put(bad_time).await;
    let mut bad_input = job("acme", "bad-5", "forecast", "pending");
    bad_input.insert("input".to_owned(), s("not a map"));
    f.put(bad_input).await;
    f.put(job("acme", "good", "forecast", "pending")).await;

    let mut event = f.next_event().await;
    let records = event["Records"].as_array_mut().unwrap();
    // A record whose company id is a boolean, and records that aren't stream records at all.
    let mut odd_company = records[0].clone();
    odd_company["eventID"] = json!("odd-company");
    odd_company["dynamodb"]["NewImage"] = json!({
        "company_id": {"BOOL": true}, "job_id": {"S": "bad-3"}, "type": {"S": "forecast"},
        "state": {"S": "pending"}, "updated_at": {"S": "2026-11-22T10:00:00Z"}
    });
    records.insert(0, odd_company);
    records.insert(0, json!(42));
    records.insert(0, json!({"eventID": "garbage", "dynamodb": "???"}));
    let (response, stats) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    assert_eq!((stats.malformed, stats.poison), (7, 7));
    assert_eq!(stats.transitions, 1);
    let poison = f.drain_poison().await;
    let mut reasons: Vec<String> = poison.iter().map(|p| p.reason.clone()).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 7, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("attribute type is missing"))
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not a DynamoDB stream record"))
    );
    let odd = poison
        .iter()
        .find(|p| p.event_id.as_deref() == Some("odd-company"));
    assert_eq!(odd.unwrap().job_id.as_deref(), Some("bad-3"));
    let messages = f.drain().await;
    assert_eq!(
        deliveries(&messages)
            .iter()
            .map(|d| d.1.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );

    // Not even an object, or no records: nothing to do, nothing fails.
    for garbage in [json!("nonsense"), json!({"Records": "x"}), json!({})] {
        let (response, stats) = f.ingest().process(garbage, Deadline::none()).await;
        no_failures(&response);
        assert_eq!(stats.records, 0);
    }
}

#[tokio::test]
async fn unknown_job_types_reach_only_subscriptions_without_a_type_filter() {
    let mut f = Fixture::new().await;
    let any = f.subscribe("acme", json!({"states": ["pending"]})).await;
    f.subscribe("acme", json!({"job_types": ["forecast"]}))
        .await;
    f.put(job("acme", "j1", "brand-new-job-type", "pending"))
        .await;
    let event = f.next_event().await;
    let (response, _) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    let messages = f.drain().await;
    assert_eq!(
        deliveries(&messages),
        [(any, "j1".to_owned(), "pending".to_owned())]
    );
}

#[tokio::test]
async fn one_query_per_company_per_cache_period() {
    let mut f = Fixture::new().await;
    f.subscribe("acme", json!({})).await;
    f.subscribe("globex", json!({})).await;
    for i in 0..30 {
        let company = if i % 2 == 0 { "acme" } else { "globex" };
        f.put(job(company, &format!("j{i}"), "forecast", "pending"))
            .await;
    }
    let proxy = AwsProxy::start(emulator::endpoint());
    let ingest = f.ingest_via(&proxy).await;
    let event = f.next_event().await;
    let (response, stats) = ingest.process(event.clone(), Deadline::none()).await;
    no_failures(&response);
    assert_eq!(stats.transitions, 30);
    assert_eq!(proxy.calls("DynamoDB_20120810.Query"), 2);
    assert_eq!(
        proxy.calls("AmazonSQS.SendMessageBatch"),
        3,
        "30 messages in batches of ten"
    );
    // Within the cache period the same instance asks nothing more.
    ingest.process(event, Deadline::none()).await;
    assert_eq!(proxy.calls("DynamoDB_20120810.Query"), 2);
    assert_eq!(f.drain().await.len(), 60);
}

#[tokio::test]
async fn rejected_entries_are_retried_then_reported_from_the_earliest_record() {
    let mut f = Fixture::new().await;
    let subs = [
        f.subscribe("acme", json!({})).await,
        f.subscribe("acme", json!({})).await,
    ];
    for i in 0..8 {
        f.put(job("acme", &format!("job-{i}"), "forecast", "pending"))
            .await;
    }
    let event = f.next_event().await;
    let sequence = |i: usize| {
        event["Records"][i]["dynamodb"]["SequenceNumber"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let proxy = AwsProxy::start(emulator::endpoint());
    let ingest = f.ingest_via(&proxy).await;

    // Entries rejected twice are retried and get through: nothing fails.
    proxy.fail_entries(FaultRule::times("\"job_id\":\"job-2\"", 2));
    let (response, stats) = ingest.process(event.clone(), Deadline::none()).await;
    no_failures(&response);
    assert_eq!(stats.enqueued, 16);
    assert_eq!(f.drain().await.len(), 16);

    // Entries that keep failing: the earliest affected record is reported,
    // and every record before it had all its messages accepted.
    proxy.clear_faults();
    proxy.fail_entries(FaultRule::always("\"job_id\":\"job-5\""));
    proxy.fail_entries(FaultRule::always("\"job_id\":\"job-6\""));
    let (response, stats) = ingest.process(event.clone(), Deadline::none()).await;
    let failures: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failures, [sequence(5)]);
    assert_eq!(stats.failed_records, 2);
    let messages = f.drain().await;
    let mut per_job: BTreeMap<String, usize> = BTreeMap::new();
    for (_, job, _) in deliveries(&messages) {
        *per_job.entry(job).or_default() += 1;
    }
    for i in 0..5 {
        assert_eq!(
            per_job.get(&format!("job-{i}")),
            Some(&subs.len()),
            "record {i} fully enqueued"
        );
    }
    assert!(!per_job.contains_key("job-5") && !per_job.contains_key("job-6"));

    // Whole SendMessageBatch calls failing past the SDK's own retries are
    // retried too, and reported when they never succeed.
    proxy.clear_faults();
    proxy.fail_requests("AmazonSQS.SendMessageBatch", 1000);
    let first = sequence(0);
    let (response, _) = ingest.process(event, Deadline::none()).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some(first.as_str())
    );
}

#[tokio::test]
async fn store_failures_fail_the_affected_records() {
    let mut f = Fixture::new().await;
    f.subscribe("acme", json!({})).await;
    f.put(job("acme", "j1", "forecast", "pending")).await;
    let event = f.next_event().await;
    let proxy = AwsProxy::start(emulator::endpoint());
    proxy.fail_requests("DynamoDB_20120810.Query", 1000);
    let ingest = f.ingest_via(&proxy).await;
    let (response, stats) = ingest.process(event, Deadline::none()).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(stats.failed_records, 1);
    assert!(f.drain().await.is_empty());
}

#[tokio::test]
async fn oversized_events_are_trimmed_history_first() {
    let mut f = Fixture::new().await;
    // Smaller than the 50 entries of history the payload keeps at most.
    f.config.max_message_bytes = 2048;
    f.subscribe("acme", json!({})).await;
    let mut item = job("acme", "big", "model_training_run", "running");
    let history: Vec<AttributeValue> = (0..150)
        .map(|i| {
            AttributeValue::M(HashMap::from([
                ("state".to_owned(), s("running")),
                (
                    "at".to_owned(),
                    s(&format!("2026-11-22T10:{:02}:{:02}Z", i / 60, i % 60)),
                ),
            ]))
        })
        .collect();
    item.insert("state_history".to_owned(), AttributeValue::L(history));
    item.insert(
        "input".to_owned(),
        AttributeValue::M(HashMap::from([(
            "epochs".to_owned(),
            AttributeValue::N("3".to_owned()),
        )])),
    );
    f.put(item).await;
    let event = f.next_event().await;
    let (response, stats) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    assert_eq!(stats.trimmed, 1);
    let messages = f.drain().await;
    assert_eq!(messages.len(), 1);
    let p = payload(&messages[0]);
    assert_eq!(p["data"]["truncated"], json!(["state_history"]));
    assert_eq!(p["data"]["state_history"], json!([]));
    assert_eq!(p["data"]["input"], json!({"epochs": 3}));
}

#[tokio::test]
async fn the_sample_stream_event_is_processed() {
    let f = Fixture::new().await;
    let sub = f
        .subscribe("acme-corp", json!({"states": ["completed"]}))
        .await;
    let text = std::fs::read_to_string(test_kit::event_path("dynamodb-stream-jobs.json")).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    let (response, stats) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    assert_eq!((stats.records, stats.transitions, stats.ignored), (3, 2, 1));
    let messages = f.drain().await;
    assert_eq!(
        deliveries(&messages),
        [(sub, "job-7f3a".to_owned(), "completed".to_owned())]
    );
}

/// The event id of every message, checked to be distinct.
fn distinct_keys(messages: &[DeliveryMessage]) -> BTreeSet<String> {
    let keys: BTreeSet<String> = messages.iter().map(|m| m.webhook_id.clone()).collect();
    assert_eq!(keys.len(), messages.len(), "a message was sent twice");
    keys
}

#[tokio::test]
async fn a_fan_out_larger_than_the_outbox_is_sent_in_bounded_flushes() {
    let mut f = Fixture::new().await;
    for _ in 0..25 {
        f.subscribe("heavy", json!({})).await;
    }
    f.subscribe("quiet", json!({})).await;
    for i in 0..4 {
        f.put(job("heavy", &format!("h-{i}"), "forecast", "running"))
            .await;
    }
    f.put(job("quiet", "q-0", "forecast", "running")).await;
    let event = f.next_event().await;

    // Bounded by count: 101 messages through an outbox of 10.
    let (response, stats) = f
        .ingest()
        .with_outbox(10, 1 << 20)
        .process(event.clone(), Deadline::none())
        .await;
    no_failures(&response);
    assert_eq!(
        (stats.enqueued, stats.flushes, stats.peak_outbox),
        (101, 11, 10)
    );
    let messages = f.drain().await;
    assert_eq!(distinct_keys(&messages).len(), 101);

    // Bounded by bytes: an outbox of a little over two bodies holds at
    // most three.
    let body = messages.iter().map(|m| m.to_body().len()).min().unwrap();
    let (response, stats) = f
        .ingest()
        .with_outbox(1000, 2 * body + 1)
        .process(event, Deadline::none())
        .await;
    no_failures(&response);
    assert_eq!(stats.enqueued, 101);
    assert!(stats.peak_outbox <= 3, "peak {}", stats.peak_outbox);
    assert!(
        stats.flushes >= 101usize.div_ceil(3),
        "{} flushes",
        stats.flushes
    );
    assert_eq!(f.drain().await.len(), 101);
}

#[tokio::test]
async fn a_near_deadline_leaves_the_rest_of_the_batch_for_the_next_invocation() {
    let mut f = Fixture::new().await;
    for _ in 0..3 {
        f.subscribe("acme", json!({})).await;
    }
    for i in 0..5 {
        f.put(job("acme", &format!("job-{i}"), "forecast", "pending"))
            .await;
    }
    let event = f.next_event().await;
    let records = event["Records"].as_array().unwrap().clone();
    let ingest = f.ingest();

    // Already inside the margin: one record is taken (every invocation
    // makes progress), the next is named, nothing fails.
    let near = ingest.deadline(Some(std::time::Instant::now()));
    assert!(near.is_near());
    let (response, stats) = ingest.process(event, near).await;
    let resume = response.batch_item_failures[0]
        .item_identifier
        .clone()
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        resume,
        records[1]["dynamodb"]["SequenceNumber"].as_str().unwrap()
    );
    assert_eq!(
        (stats.enqueued, stats.deferred, stats.failed_records),
        (3, 4, 0)
    );
    let first = f.drain().await;
    assert_eq!(
        deliveries(&first).iter().filter(|d| d.1 == "job-0").count(),
        3
    );

    // Lambda resumes at the named record: the rest, once, no duplicates.
    let rest = json!({"Records": records[1..]});
    let far = ingest.deadline(Some(
        std::time::Instant::now() + std::time::Duration::from_secs(600),
    ));
    let (response, stats) = ingest.process(rest, far).await;
    no_failures(&response);
    assert_eq!((stats.enqueued, stats.deferred), (12, 0));
    let mut all = first;
    all.extend(f.drain().await);
    assert_eq!(distinct_keys(&all).len(), 15);
    let jobs: BTreeSet<String> = deliveries(&all).into_iter().map(|d| d.1).collect();
    assert_eq!(jobs.len(), 5);
}

/// The load test of BENCHMARKS.md, reduced: a heavy company's burst
/// interleaved with 19 quiet companies, through the handler as Lambda
/// feeds it (batches, resuming where a response points, the first
/// invocation at its deadline), with a small outbox.
#[tokio::test]
async fn a_heavy_burst_beside_quiet_companies_loses_and_duplicates_nothing() {
    let mut f = Fixture::new().await;
    for _ in 0..20 {
        f.subscribe("heavy", json!({})).await;
    }
    for q in 0..19 {
        for _ in 0..2 {
            f.subscribe(&format!("quiet-{q}"), json!({})).await;
        }
    }
    let mut quiet_jobs = BTreeSet::new();
    for i in 0..30 {
        f.put(job("heavy", &format!("h-{i}"), "forecast", "running"))
            .await;
        if i < 19 {
            let job_id = format!("q-{i}");
            f.put(job(&format!("quiet-{i}"), &job_id, "forecast", "running"))
                .await;
            quiet_jobs.insert(job_id);
        }
    }
    let records = f.next_event().await["Records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 49);
    let ingest = f.ingest().with_outbox(25, 1 << 20);
    let (mut next, mut invocations, mut sent) = (0, 0, Vec::new());
    while next < records.len() {
        let batch = &records[next..(next + 20).min(records.len())];
        let deadline = if invocations == 0 {
            ingest.deadline(Some(std::time::Instant::now()))
        } else {
            Deadline::none()
        };
        let (response, stats) = ingest.process(json!({"Records": batch}), deadline).await;
        assert!(stats.peak_outbox <= 25);
        assert_eq!(stats.failed_records, 0);
        invocations += 1;
        next += match response.batch_item_failures.first() {
            None => batch.len(),
            Some(failure) => batch
                .iter()
                .position(|r| {
                    r["dynamodb"]["SequenceNumber"].as_str() == failure.item_identifier.as_deref()
                })
                .unwrap(),
        };
        sent.extend(f.drain().await);
    }
    assert!(invocations >= 4, "the first stopped at its deadline");
    assert_eq!(distinct_keys(&sent).len(), 30 * 20 + 19 * 2);
    let delivered: BTreeSet<String> = deliveries(&sent).into_iter().map(|d| d.1).collect();
    assert!(quiet_jobs.is_subset(&delivered));
}

/// A job of `company` that failed with an error message of `bytes` bytes.
fn failed_with_message(
    company: &str,
    job_id: &str,
    bytes: usize,
) -> HashMap<String, AttributeValue> {
    let mut item = job(company, job_id, "forecast", "failed");
    item.insert(
        "error".to_owned(),
        AttributeValue::M(HashMap::from([
            ("reason".to_owned(), s("OUT_OF_MEMORY")),
            ("message".to_owned(), s(&"m".repeat(bytes))),
        ])),
    );
    item
}

/// The job ids of `messages`, sorted.
fn jobs_of(messages: &[DeliveryMessage]) -> Vec<String> {
    deliveries(messages).into_iter().map(|d| d.1).collect()
}

#[tokio::test]
async fn a_poison_record_is_set_aside_and_every_record_around_it_is_delivered() {
    let mut f = Fixture::new().await;
    f.subscribe("acme", json!({})).await;
    f.subscribe("globex", json!({})).await;
    f.put(job("globex", "g-0", "forecast", "running")).await;
    f.put(failed_with_message("acme", "big", 250_000)).await;
    f.put(job("globex", "g-1", "forecast", "running")).await;
    f.put(job("acme", "odd", "forecast", "exploded")).await;
    f.put(job("globex", "g-2", "forecast", "running")).await;
    let records = f.next_records().await;
    assert_eq!(records.len(), 5);
    let event = lambda_event_of(&f, &records);

    let (response, stats) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    assert_eq!(
        (stats.enqueued, stats.poison, stats.failed_records),
        (4, 1, 0)
    );

    // Every normal record is delivered; the 250 KB error is cut, and says so.
    let messages = f.drain().await;
    assert_eq!(jobs_of(&messages), ["big", "g-0", "g-1", "g-2"]);
    let big = messages.iter().find(|m| m.company_id == "acme").unwrap();
    assert!(big.to_body().len() < 256 * 1024);
    let data = &payload(big)["data"];
    assert_eq!(
        data["error"]["message"].as_str().unwrap().len(),
        shared::domain::job_event::MAX_ERROR_MESSAGE_LEN
    );
    assert_eq!(data["error"]["reason"], "OUT_OF_MEMORY");
    assert_eq!(data["truncated"], json!(["error.message"]));

    // The record that cannot become a message is set aside, fully named.
    let odd = &records[3];
    let poison = f.drain_poison().await;
    assert_eq!(poison.len(), 1, "{poison:?}");
    let entry = &poison[0];
    assert!(
        entry.reason.contains("unknown job state"),
        "{}",
        entry.reason
    );
    assert_eq!(entry.stream_arn.as_deref(), Some(f.stream_arn.as_str()));
    assert_eq!(entry.shard_id.as_deref(), Some(odd.shard_id.as_str()));
    assert_eq!(
        entry.sequence_number.as_deref(),
        Some(odd.sequence_number())
    );
    assert_eq!(entry.event_id, odd.record.event_id);
    assert_eq!(entry.event_name.as_deref(), Some("INSERT"));
    assert_eq!(
        (entry.company_id.as_deref(), entry.job_id.as_deref()),
        (Some("acme"), Some("odd"))
    );
    let batch = entry
        .batch
        .as_ref()
        .expect("a one-record batch for the replay");
    assert_eq!(
        (&batch.start_sequence_number, &batch.end_sequence_number),
        (
            &odd.sequence_number().to_owned(),
            &odd.sequence_number().to_owned()
        )
    );
    let metrics = stats
        .metrics()
        .document("job-events-ingest")
        .expect("a poison record is reported");
    assert_eq!(metrics["PoisonRecords"], 1);
}

#[tokio::test]
async fn an_event_too_large_even_when_trimmed_is_set_aside_instead_of_retried() {
    let mut f = Fixture::new().await;
    f.config.max_message_bytes = 4096;
    f.subscribe("acme", json!({})).await;
    f.subscribe("globex", json!({})).await;
    f.put(job("globex", "g-0", "forecast", "running")).await;
    f.put(failed_with_message("acme", "big", 6000)).await;
    f.put(job("globex", "g-1", "forecast", "running")).await;
    let event = f.next_event().await;
    let (response, stats) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    assert_eq!((stats.enqueued, stats.poison), (2, 1));
    assert_eq!(jobs_of(&f.drain().await), ["g-0", "g-1"]);
    let poison = f.drain_poison().await;
    assert_eq!(poison.len(), 1);
    assert!(
        poison[0]
            .reason
            .contains("exceeds the message size limit (4096 bytes)"),
        "{}",
        poison[0].reason
    );
    assert_eq!(poison[0].job_id.as_deref(), Some("big"));
}

#[tokio::test]
async fn a_poison_entry_the_queue_refuses_is_retried_from_its_record() {
    let mut f = Fixture::new().await;
    f.subscribe("globex", json!({})).await;
    f.put(job("globex", "g-0", "forecast", "running")).await;
    f.put(job("acme", "odd", "forecast", "exploded")).await;
    f.put(job("globex", "g-1", "forecast", "running")).await;
    let records = f.next_records().await;
    let event = lambda_event_of(&f, &records);
    let proxy = AwsProxy::start(emulator::endpoint());
    proxy.fail_entries(FaultRule::always("\"setAsideAt\""));
    let ingest = f.ingest_via(&proxy).await;
    let (response, stats) = ingest.process(event, Deadline::none()).await;
    let failures: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failures, [records[1].sequence_number().to_owned()]);
    assert_eq!((stats.poison, stats.failed_records), (0, 1));
    assert!(f.drain_poison().await.is_empty());
    // Records before it were delivered (the one after it may be too: it
    // is sent again with the same key when Lambda resumes).
    assert!(jobs_of(&f.drain().await).contains(&"g-0".to_owned()));
}

/// The Lambda event of `records`.
fn lambda_event_of(f: &Fixture, records: &[local_infra::stream::StreamRecord]) -> Value {
    local_infra::stream::lambda_event(
        records.iter().map(|r| &r.record),
        &f.stream_arn,
        "us-east-1",
    )
}
