//! The handler against the local AWS emulator: CloudEvents are published
//! to the stack's PlatformEventsQueue, received as Lambda's SQS event, and
//! the exact messages on the DeliveryQueue and the dead-letter queue are
//! checked.

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::sqs::SqsBatchResponse;
use serde_json::{Value, json};
use shared::deadline::Deadline;
use shared::domain::cloud_event::{MAX_EVENT_BYTES, RefusalCode};
use shared::domain::message::DeliveryMessage;
use test_kit::aws_proxy::{AwsProxy, FaultRule};
use test_kit::emulator;

use crate::common::{Fixture, app_event, attribute, engine_event, example, payload, subject_event};

fn no_failures(response: &SqsBatchResponse) {
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
}

/// The failed records' message ids.
fn failures(response: &SqsBatchResponse) -> BTreeSet<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// (subscription, CloudEvent subject or type) of each message, sorted: what
/// each subscription received.
fn received(messages: &[DeliveryMessage]) -> BTreeSet<(String, String)> {
    messages
        .iter()
        .map(|m| {
            let p = payload(m);
            let what = p["subject_id"]
                .as_str()
                .or(p["app_id"].as_str())
                .unwrap_or(&m.event_type)
                .to_owned();
            (m.subscription_id.clone(), what)
        })
        .collect()
}

#[tokio::test]
async fn each_filter_and_their_combinations_select_the_events_they_name() {
    let f = Fixture::new().await;
    let engine_all = f
        .subscribe("acme", json!({"event_types": ["engine.*"]}))
        .await;
    let exact = f
        .subscribe(
            "acme",
            json!({"event_types": ["engine.aggregate_batch_started"]}),
        )
        .await;
    let everything = f.subscribe("acme", json!({"event_types": ["*"]})).await;
    let works = f
        .subscribe(
            "acme",
            json!({"event_types": ["subject.*"], "subject_types": ["work"]}),
        )
        .await;
    let by_id = f
        .subscribe(
            "acme",
            json!({"event_types": ["subject.*"], "subject_ids": ["w-1"]}),
        )
        .await;
    let failed = f
        .subscribe(
            "acme",
            json!({"event_types": ["subject.*"], "verbs": ["failed"]}),
        )
        .await;
    let combo = f
        .subscribe(
            "acme",
            json!({
                "event_types": ["subject.failed", "subject.completed"],
                "subject_types": ["work", "workflow"],
                "subject_ids": ["w-2", "wf-3", "w-9"],
                "verbs": ["completed"]
            }),
        )
        .await;
    let app_one = f
        .subscribe(
            "acme",
            json!({"event_types": ["app.*"], "app_ids": ["app-1"]}),
        )
        .await;
    let app_two = f
        .subscribe("acme", json!({"event_types": ["*"], "app_ids": ["app-2"]}))
        .await;
    let jobs = f.subscribe("acme", json!({})).await;
    let jobs_filtered = f.subscribe("acme", json!({"states": ["failed"]})).await;
    let globex = f.subscribe("globex", json!({"event_types": ["*"]})).await;

    let mut slow = engine_event("acme", "e-2");
    slow["type"] = json!("engine.slow_query_event");
    slow["data"] = example("engine.slow_query_event");
    f.publish(&[
        engine_event("acme", "e-1"),
        slow,
        subject_event("acme", "s-1", "work", "w-1", "failed"),
        subject_event("acme", "s-2", "work", "w-2", "completed"),
        subject_event("acme", "s-3", "workflow", "wf-3", "completed"),
        subject_event("acme", "s-4", "segment", "w-1", "created"),
        subject_event("acme", "s-5", "work", "w-9", "failed"),
        app_event("acme", "a-1", "app-1", "installed"),
        app_event("acme", "a-2", "app-2", "run_failed"),
        app_event("globex", "g-1", "app-1", "installed"),
    ])
    .await;
    let event = f.next_event().await;
    assert_eq!(event.records.len(), 10);
    let (response, stats) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    assert_eq!((stats.events, stats.refused_total()), (10, 0));

    let pairs = |sub: &str, whats: &[&str]| {
        whats
            .iter()
            .map(|w| (sub.to_owned(), (*w).to_owned()))
            .collect::<Vec<_>>()
    };
    let expected: BTreeSet<(String, String)> = [
        pairs(
            &engine_all,
            &["engine.aggregate_batch_started", "engine.slow_query_event"],
        ),
        pairs(&exact, &["engine.aggregate_batch_started"]),
        pairs(
            &everything,
            &[
                "engine.aggregate_batch_started",
                "engine.slow_query_event",
                "w-1",
                "w-2",
                "wf-3",
                "w-9",
                "app-1",
                "app-2",
            ],
        ),
        pairs(&works, &["w-1", "w-2", "w-9"]),
        pairs(&by_id, &["w-1"]),
        pairs(&failed, &["w-1", "w-9"]),
        pairs(&combo, &["w-2", "wf-3"]),
        pairs(&app_one, &["app-1"]),
        pairs(&app_two, &["app-2"]),
        pairs(&globex, &["app-1"]),
    ]
    .concat()
    .into_iter()
    .collect();
    let messages = f.drain().await;
    // `everything` receives both subject events about w-1 (s-1, s-4): the
    // set of (subscription, subject) pairs counts it once.
    assert_eq!(
        messages.len(),
        expected.len() + 2,
        "by_id also receives s-4"
    );
    assert_eq!(received(&messages), expected);
    assert_eq!(stats.enqueued, messages.len());
    for m in &messages {
        assert_ne!(
            m.subscription_id, jobs,
            "a jobs subscription gets no platform event"
        );
        assert_ne!(m.subscription_id, jobs_filtered);
        assert_eq!(m.attempt, 1);
        let p = payload(m);
        assert_eq!(p["company_id"], m.company_id.as_str());
        if m.subscription_id == globex {
            assert_eq!(m.company_id, "globex");
        } else {
            assert_eq!(m.company_id, "acme", "{p}");
        }
    }
    // An app's subscription sees its app's events only, whatever their type.
    assert!(
        messages
            .iter()
            .filter(|m| m.subscription_id == app_two)
            .all(|m| payload(m)["app_id"] == "app-2")
    );

    // The payload carries the CloudEvent's context, flat after company_id.
    let s1 = messages
        .iter()
        .find(|m| m.subscription_id == failed && payload(m)["subject_id"] == "w-1")
        .unwrap();
    let p = payload(s1);
    assert_eq!(p["type"], "subject.failed");
    assert_eq!(p["source"], "//platform/works");
    assert_eq!(p["subject_type"], "work");
    assert_eq!(p["verb"], "failed");
    assert_eq!(p["data"]["subject_id"], "w-1");
    assert_eq!(p["idempotency_key"], s1.webhook_id.as_str());
    let raw = s1.payload.get();
    let at = |k: &str| raw.find(&format!("\"{k}\":")).unwrap();
    assert!(
        at("company_id") < at("source") && at("verb") < at("data"),
        "{raw}"
    );
    let e1 = messages
        .iter()
        .find(|m| m.subscription_id == exact)
        .unwrap();
    assert_eq!(payload(e1)["timestamp"], "2026-11-22T10:00:00.123Z");
    assert!(payload(e1).get("subject_id").is_none());
}

#[tokio::test]
async fn a_company_s_events_never_reach_another_company_s_subscriptions() {
    let f = Fixture::new().await;
    let acme = f.subscribe("acme", json!({"event_types": ["*"]})).await;
    let globex = f.subscribe("globex", json!({"event_types": ["*"]})).await;
    // Globex names acme's subject: the company alone decides.
    f.publish(&[
        subject_event("acme", "x-1", "work", "w-1", "failed"),
        subject_event("globex", "x-2", "work", "w-1", "failed"),
        engine_event("initech", "x-3"),
    ])
    .await;
    let (response, stats) = f
        .ingest()
        .process(f.next_event().await, Deadline::none())
        .await;
    no_failures(&response);
    assert_eq!(stats.unmatched, 1, "initech has no subscription");
    let messages = f.drain().await;
    let owners: BTreeMap<String, String> = messages
        .iter()
        .map(|m| (m.subscription_id.clone(), m.company_id.clone()))
        .collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(owners[&acme], "acme");
    assert_eq!(owners[&globex], "globex");
}

#[tokio::test]
async fn refused_events_reach_the_dead_letter_queue_with_their_reason_and_the_rest_is_enqueued() {
    let f = Fixture::new().await;
    let sub = f.subscribe("acme", json!({"event_types": ["*"]})).await;
    let mut unknown = engine_event("acme", "bad-2");
    unknown["type"] = json!("engine.no_such_event");
    let mut company_less = engine_event("acme", "bad-3");
    company_less.as_object_mut().unwrap().remove("companyid");
    let mut oversize = engine_event("acme", "bad-4");
    oversize["data"]["blob"] = json!("x".repeat(MAX_EVENT_BYTES));
    let mut job = engine_event("acme", "bad-5");
    job["type"] = json!("job.completed");
    let mut app_less = app_event("acme", "bad-6", "app-1", "installed");
    app_less.as_object_mut().unwrap().remove("appid");
    let bodies: Vec<String> = [
        engine_event("acme", "ok-1").to_string(),
        "{\"specversion\": \"1.0\", \"id\": ".to_owned(),
        unknown.to_string(),
        company_less.to_string(),
        oversize.to_string(),
        job.to_string(),
        app_less.to_string(),
        subject_event("acme", "ok-2", "work", "w-1", "failed").to_string(),
    ]
    .to_vec();
    f.publish_raw(&bodies).await;
    let event = f.next_event().await;
    let ids: BTreeMap<String, String> = event
        .records
        .iter()
        .map(|r| (r.body.clone().unwrap(), r.message_id.clone().unwrap()))
        .collect();
    let (response, stats) = f.ingest().process(event, Deadline::none()).await;
    no_failures(&response);
    assert_eq!(stats.events, 2);
    assert_eq!(stats.dead_lettered, 6);
    assert_eq!(
        stats.refused,
        BTreeMap::from([
            (RefusalCode::Malformed, 1),
            (RefusalCode::UnknownType, 2),
            (RefusalCode::MissingCompany, 1),
            (RefusalCode::MissingAttribute, 1),
            (RefusalCode::TooLarge, 1),
        ])
    );

    let delivered = f.drain().await;
    assert_eq!(delivered.len(), 2, "the valid events around the bad ones");
    assert!(delivered.iter().all(|m| m.subscription_id == sub));

    let dead = f.drain_dead().await;
    let reasons: BTreeMap<&str, &str> = dead
        .iter()
        .map(|m| (m.body().unwrap(), attribute(m, "reason").unwrap()))
        .collect();
    let expected = [
        (&bodies[1], "malformed"),
        (&bodies[2], "unknown_type"),
        (&bodies[3], "missing_company"),
        (&bodies[4], "too_large"),
        (&bodies[5], "unknown_type"),
        (&bodies[6], "missing_attribute"),
    ];
    assert_eq!(reasons.len(), expected.len());
    for (body, reason) in expected {
        assert_eq!(
            reasons.get(body.as_str()),
            Some(&reason),
            "{}",
            &body[..body.len().min(80)]
        );
    }
    for m in &dead {
        let detail = attribute(m, "reason_detail").unwrap();
        assert!(!detail.is_empty());
        assert_eq!(
            attribute(m, "source_message_id"),
            Some(ids[m.body().unwrap()].as_str())
        );
    }
    let missing = dead
        .iter()
        .find(|m| attribute(m, "reason") == Some("missing_attribute"))
        .unwrap();
    assert_eq!(
        attribute(missing, "reason_detail"),
        Some("type app.installed requires the attribute appid")
    );
}

#[tokio::test]
async fn the_same_event_read_twice_or_published_twice_has_the_same_webhook_id() {
    let f = Fixture::new().await;
    let one = f
        .subscribe("acme", json!({"event_types": ["engine.*"]}))
        .await;
    let two = f.subscribe("acme", json!({"event_types": ["*"]})).await;
    // Published twice (a publisher's retry), with another time even.
    let mut again = engine_event("acme", "dup-1");
    again["time"] = json!("2026-11-22T10:00:09Z");
    f.publish(&[engine_event("acme", "dup-1"), again]).await;
    let event = f.next_event().await;
    let ingest = f.ingest();
    // And read twice (SQS redelivers it).
    for _ in 0..2 {
        let (response, _) = ingest.process(event.clone(), Deadline::none()).await;
        no_failures(&response);
    }
    let messages = f.drain().await;
    assert_eq!(messages.len(), 8);
    let ids: BTreeMap<&str, BTreeSet<&str>> =
        messages.iter().fold(BTreeMap::new(), |mut ids, m| {
            ids.entry(m.subscription_id.as_str())
                .or_default()
                .insert(m.webhook_id.as_str());
            ids
        });
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[one.as_str()].len(), 1, "one id per subscription");
    assert_eq!(ids[two.as_str()].len(), 1);
    assert_ne!(ids[one.as_str()], ids[two.as_str()]);
    // Another source with the same id is another event.
    let mut other = engine_event("acme", "dup-1");
    other["source"] = json!("//engine/other");
    f.publish(&[other]).await;
    let (response, _) = ingest.process(f.next_event().await, Deadline::none()).await;
    no_failures(&response);
    for m in f.drain().await {
        assert!(!ids[m.subscription_id.as_str()].contains(m.webhook_id.as_str()));
    }
}

#[tokio::test]
async fn records_whose_messages_sqs_did_not_take_are_reported_for_redelivery() {
    let f = Fixture::new().await;
    for _ in 0..3 {
        f.subscribe("acme", json!({"event_types": ["subject.*"]}))
            .await;
    }
    let events: Vec<Value> = (0..6)
        .map(|i| {
            subject_event(
                "acme",
                &format!("t-{i}"),
                "work",
                &format!("w-{i}"),
                "failed",
            )
        })
        .collect();
    f.publish(&events).await;
    f.publish_raw(&["not json".to_owned()]).await;
    let event = f.next_event().await;
    let id_of = |subject: &str| {
        event
            .records
            .iter()
            .find(|r| {
                r.body
                    .as_deref()
                    .unwrap()
                    .contains(&format!("\"subject\":\"{subject}\""))
            })
            .and_then(|r| r.message_id.clone())
            .unwrap()
    };
    let proxy = AwsProxy::start(emulator::endpoint());
    let ingest = f.ingest_via(&proxy).await;

    // Entries refused now and then are sent again: nothing to report.
    proxy.fail_entries(FaultRule::times("\"subject_id\":\"w-1\"", 2));
    let (response, stats) = ingest.process(event.clone(), Deadline::none()).await;
    no_failures(&response);
    assert_eq!(stats.enqueued, 18);
    assert_eq!(f.drain().await.len(), 18);
    assert_eq!(f.drain_dead().await.len(), 1);

    // Entries that keep failing: their records, and only theirs, are
    // reported; the other records' messages are all on the queue.
    proxy.clear_faults();
    proxy.fail_entries(FaultRule::always("\"subject_id\":\"w-2\""));
    proxy.fail_entries(FaultRule::always("\"subject_id\":\"w-4\""));
    let (response, stats) = ingest.process(event.clone(), Deadline::none()).await;
    assert_eq!(
        failures(&response),
        BTreeSet::from([id_of("w-2"), id_of("w-4")])
    );
    assert_eq!(stats.failed_records, 2);
    let per_subject: BTreeMap<String, usize> =
        f.drain().await.iter().fold(BTreeMap::new(), |mut n, m| {
            *n.entry(payload(m)["subject_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
            n
        });
    assert_eq!(
        per_subject,
        BTreeMap::from([
            ("w-0".to_owned(), 3),
            ("w-1".to_owned(), 3),
            ("w-3".to_owned(), 3),
            ("w-5".to_owned(), 3),
        ])
    );
    assert_eq!(
        f.drain_dead().await.len(),
        1,
        "the refused record is acknowledged"
    );

    // SQS down: every record is reported, the refused one too (its dead
    // letter was not taken either).
    proxy.clear_faults();
    proxy.fail_requests("AmazonSQS.SendMessageBatch", 1000);
    let (response, _) = ingest.process(event.clone(), Deadline::none()).await;
    assert_eq!(failures(&response).len(), 7);
    assert!(f.drain().await.is_empty());
}

#[tokio::test]
async fn a_failed_subscription_lookup_fails_only_that_company_s_records() {
    let f = Fixture::new().await;
    f.subscribe("acme", json!({"event_types": ["*"]})).await;
    f.publish(&[engine_event("acme", "q-1"), engine_event("acme", "q-2")])
        .await;
    f.publish_raw(&["[]".to_owned()]).await;
    let event = f.next_event().await;
    let proxy = AwsProxy::start(emulator::endpoint());
    proxy.fail_requests("DynamoDB_20120810.Query", 1000);
    let ingest = f.ingest_via(&proxy).await;
    let (response, stats) = ingest.process(event, Deadline::none()).await;
    assert_eq!(failures(&response).len(), 2, "the two events of acme");
    assert_eq!((stats.failed_records, stats.dead_lettered), (2, 1));
    assert!(f.drain().await.is_empty());
}

#[tokio::test]
async fn a_large_fan_out_is_sent_in_bounded_flushes() {
    let f = Fixture::new().await;
    for _ in 0..7 {
        f.subscribe("acme", json!({"event_types": ["engine.*"]}))
            .await;
    }
    f.publish(&[engine_event("acme", "f-1"), engine_event("acme", "f-2")])
        .await;
    let ingest = f.ingest().with_outbox(5, 1 << 20);
    let (response, stats) = ingest.process(f.next_event().await, Deadline::none()).await;
    no_failures(&response);
    assert_eq!(stats.enqueued, 14);
    assert!(stats.peak_outbox <= 5, "{stats:?}");
    assert!(stats.flushes >= 3, "{stats:?}");
    assert_eq!(f.drain().await.len(), 14);
}
