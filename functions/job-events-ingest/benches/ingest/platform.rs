//! Platform events beside job events: the same shape as the job-ingest
//! throughput run (1,000 records over 100 companies with 10 matching
//! subscriptions each, so 10,000 messages, on the fast loopback SQS
//! endpoint, the handler on one thread), with CloudEvents
//! (`subject.completed`, every context attribute, a few hundred bytes of
//! data) through the platform events ingest and `events` subscriptions
//! with every kind of filter.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use platform_events_ingest::{PlatformIngest, PlatformIngestConfig};
use serde_json::json;
use shared::config::FanoutSettings;
use shared::domain::filters::Filters;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::cpu::thread_cpu_time;

use crate::run::{COMPANIES, RECORDS, Run, SUBSCRIPTIONS_PER_COMPANY, WARM_RUNS, median};

fn company(c: usize) -> String {
    format!("platform-company-{c:03}")
}

/// One published CloudEvent as the queue mapping hands it over.
fn record(i: usize) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(format!("msg-{i:05}"));
    m.attributes
        .insert("SentTimestamp".to_owned(), "1795341600123".to_owned());
    m.body = Some(
        json!({
            "specversion": "1.0",
            "id": format!("7f1c2a9e-0b4d-4a8e-9c61-{i:012}"),
            "source": "/platform/activity",
            "type": "subject.completed",
            "time": "2026-11-22T10:00:00.000Z",
            "datacontenttype": "application/json",
            "companyid": company(i % COMPANIES),
            "appid": "app-1",
            "subjecttype": "work",
            "subject": format!("work-{i:05}"),
            "verb": "completed",
            "data": {
                "subject_type": "work",
                "subject_id": format!("work-{i:05}"),
                "verb": "completed",
                "name": "orders_enriched nightly sync",
                "started_at": "2026-11-22T09:58:00.000Z",
                "finished_at": "2026-11-22T10:00:00.000Z",
                "rows": 1_284_512 + i,
                "destination": {"kind": "warehouse", "table": "analytics.orders_enriched"}
            }
        })
        .to_string(),
    );
    m
}

async fn subscribe_all(store: &SubscriptionStore) {
    for c in 0..COMPANIES {
        for s in 0..SUBSCRIPTIONS_PER_COMPANY {
            // Every kind of filter, all matching the benchmark's events.
            let filters = match s % 5 {
                0 => json!({"event_types": ["*"]}),
                1 => json!({"event_types": ["subject.*"], "subject_types": ["work", "segment"]}),
                2 => {
                    json!({"event_types": ["subject.completed", "subject.failed"], "verbs": ["completed"]})
                }
                3 => json!({"event_types": ["subject.*"], "app_ids": ["app-1"]}),
                _ => json!({"event_types": ["subject.*", "engine.*"]}),
            };
            let filters: Filters = serde_json::from_value(filters).expect("filters");
            test_kit::stack::store_subscription(store, &company(c), filters).await;
        }
    }
}

async fn measure(
    ingest: &PlatformIngest,
    event: &SqsEvent,
    queries: impl Fn() -> usize,
    batches: impl Fn() -> usize,
) -> Run {
    let (q0, b0) = (queries(), batches());
    let event = event.clone();
    let records = event.records.len();
    let cpu0 = thread_cpu_time();
    let started = Instant::now();
    let (response, stats) = ingest
        .process(event, shared::deadline::Deadline::none())
        .await;
    let wall = started.elapsed();
    let cpu = thread_cpu_time() - cpu0;
    assert!(
        response.batch_item_failures.is_empty() && stats.refused_total() == 0,
        "benchmark batch failed: {stats:?}"
    );
    Run {
        records,
        wall,
        cpu,
        queries: queries() - q0,
        batches: batches() - b0,
        enqueued: stats.enqueued,
    }
}

/// The platform rows (cold, then the median of the warm runs) against the
/// fast SQS endpoint `sqs`; subscriptions in `table`, read through
/// `dynamo`, Query calls counted by `queries`, batches by `batches`.
pub async fn rows(
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    direct: aws_sdk_dynamodb::Client,
    table: String,
    queue_url: String,
    queries: impl Fn() -> usize + Copy,
    batches: &std::sync::atomic::AtomicUsize,
) -> Run {
    subscribe_all(&SubscriptionStore::new(direct, table.clone())).await;
    let config = PlatformIngestConfig {
        table,
        queue_url: queue_url.clone(),
        dead_letter_queue_url: queue_url,
        fanout: FanoutSettings {
            cache_ttl: Duration::from_secs(600),
            send_concurrency: 8,
            send_attempts: 4,
            outbox_messages: 160,
            outbox_bytes: 4 << 20,
        },
        deadline_margin: Duration::from_secs(5),
    };
    let ingest = PlatformIngest::new(&config, dynamo, sqs);
    let mut event = SqsEvent::default();
    event.records = (0..RECORDS).map(record).collect();
    let batches = || batches.load(Ordering::Relaxed);
    let cold = measure(&ingest, &event, queries, batches).await;
    println!("{}", cold.row("platform events, fast SQS, cold cache"));
    let mut warm = Vec::new();
    for _ in 0..WARM_RUNS {
        warm.push(measure(&ingest, &event, queries, batches).await);
    }
    let warm = median(warm);
    println!(
        "{}",
        warm.row(&format!(
            "platform events, fast SQS, warm (median of {WARM_RUNS})"
        ))
    );
    warm
}
