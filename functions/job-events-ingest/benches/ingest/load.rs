//! Load and abuse bounds of ingest: one heavy company (fan-out of 10, 100
//! or 1,000 subscriptions) with a burst of transitions interleaved with 19
//! quiet companies (3 subscriptions, 10 transitions each), fed to the
//! handler the way Lambda's stream mapping does it: batches of up to 500
//! records, each invocation with the function's 60 s timeout, resuming at
//! the record a response names.
//!
//! Subscriptions are read from a stack deployed in the local AWS emulator;
//! SQS is a fast fake endpoint on loopback that records every message.
//! Each configuration runs in a child process of this bench, so its peak
//! resident memory (`VmHWM`) is its own: the bounded outbox the handler
//! uses, beside an unbounded one (everything a batch fans out to, built
//! before anything is sent, as ingest did before), and a run with a 3 s
//! timeout (1 s margin) that makes invocations stop at their deadline.
//!
//! Reported per run: records and messages, invocations and deadline stops,
//! the longest invocation, `SendMessageBatch` calls per message, the
//! largest outbox, peak RSS, the quiet companies' latency at the ingest
//! stage (from the start of the invocation that took their record to
//! SQS accepting the message), and lost and duplicated messages by
//! event id (`webhook-id`).
//!
//! Run: `make bench-load` (or `infra/with-emulator.sh cargo bench -p
//! job-events-ingest --bench load`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use job_events_ingest::{Ingest, IngestConfig};
use serde_json::{Value, json};
use shared::domain::filters::Filters;
use shared::domain::message::DeliveryMessage;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::sealed::Keyring;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::emulator;
use test_kit::fake_sqs::FakeSqs;
use test_kit::stack::{self, ids};

const FANOUTS: [usize; 3] = [10, 100, 1000];
const HEAVY: &str = "heavy-co";
const HEAVY_TRANSITIONS: usize = 500;
const QUIET_COMPANIES: usize = 19;
const QUIET_SUBSCRIPTIONS: usize = 3;
const QUIET_TRANSITIONS: usize = 10;
/// The template's `BatchSize` and the ingest function's `Timeout`.
const BATCH_SIZE: usize = 500;
const TIMEOUT: Duration = Duration::from_secs(60);
/// The short-deadline run.
const SHORT_TIMEOUT: Duration = Duration::from_secs(3);
const SHORT_MARGIN: &str = "1";

fn quiet(q: usize) -> String {
    format!("quiet-{q:02}")
}

/// The burst: heavy transitions with the quiet companies' spread evenly
/// among them. Returns (company, job id) in stream order.
fn transitions() -> Vec<(String, String)> {
    let quiet_total = QUIET_COMPANIES * QUIET_TRANSITIONS;
    let total = HEAVY_TRANSITIONS + quiet_total;
    let mut out = Vec::with_capacity(total);
    let (mut h, mut q) = (0, 0);
    for i in 0..total {
        // Quiet records at even intervals through the burst.
        if q < quiet_total && i * quiet_total >= q * total {
            out.push((quiet(q % QUIET_COMPANIES), format!("q-{q:04}")));
            q += 1;
        } else {
            out.push((HEAVY.to_owned(), format!("h-{h:04}")));
            h += 1;
        }
    }
    out
}

fn record(i: usize, company: &str, job_id: &str) -> Value {
    json!({
        "eventID": format!("load-{i:05}"),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/jobs/stream/load",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795341600,
            "Keys": {"job_id": {"S": job_id}},
            "NewImage": {
                "company_id": {"S": company},
                "job_id": {"S": job_id},
                "type": {"S": "forecast"},
                "state": {"S": "completed"},
                "updated_at": {"S": "2026-12-02T10:00:00.000Z"},
                "input": {"M": {
                    "dataset_id": {"N": format!("{}", 1000 + i)},
                    "dataset_name": {"S": "orders_enriched"},
                    "nql": {"S": "SELECT user_id, event_time FROM company_data.orders WHERE event_time > '2026-01-01'"}
                }},
                "state_history": {"L": [
                    {"M": {"state": {"S": "pending"}, "at": {"S": "2026-12-02T09:58:00.000Z"}}},
                    {"M": {"state": {"S": "running"}, "at": {"S": "2026-12-02T09:59:00.000Z"}}}
                ]}
            },
            "SequenceNumber": format!("{:021}", 100_000_000 + i),
            "SizeBytes": 600,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

async fn subscribe(store: &SubscriptionStore, company: &str, count: usize) {
    let keyring = Keyring::generate();
    for s in 0..count {
        let sub = Subscription::create(
            company,
            NewSubscription {
                url: format!("https://hooks.example.com/{company}/{s}"),
                description: None,
                filters: Filters::default(),
            },
            chrono::Utc::now(),
            &keyring,
        )
        .expect("keyring")
        .0;
        store
            .create(&sub, None, u64::MAX)
            .await
            .expect("subscription stored");
    }
}

/// What a child reports.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ChildReport {
    records: usize,
    invocations: usize,
    deadline_stops: usize,
    max_invocation_ms: f64,
    send_calls: usize,
    enqueued: usize,
    peak_outbox: usize,
    max_rss_kb: u64,
    /// Start of the invocation that last took each record (wall clock, ms
    /// since the Unix epoch), by job id.
    taken_at_ms: HashMap<String, f64>,
}

/// Wall-clock milliseconds since the Unix epoch.
fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

fn max_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One configuration, in this (child) process.
async fn child(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let (table, sqs_endpoint, mode) = (parts[0], parts[1], parts[2]);
    let short = mode == "short";
    let sdk = emulator::sdk_config().await;
    let mut vars = vec![
        ("SUBSCRIPTIONS_TABLE", table.to_owned()),
        (
            "DELIVERY_QUEUE_URL",
            format!("{sqs_endpoint}/000000000000/DeliveryQueue"),
        ),
        (
            "INGEST_POISON_QUEUE_URL",
            format!("{sqs_endpoint}/000000000000/IngestPoisonQueue"),
        ),
        ("SUBSCRIPTION_CACHE_TTL_SECONDS", "600".to_owned()),
    ];
    if short {
        vars.push(("DEADLINE_MARGIN_SECONDS", SHORT_MARGIN.to_owned()));
    }
    let config = IngestConfig::from_vars(&shared::config::Vars::Map(
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    ))
    .expect("configuration");
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .endpoint_url(sqs_endpoint)
            .build(),
    );
    let mut ingest = Ingest::new(&config, aws_sdk_dynamodb::Client::new(&sdk), sqs);
    if mode == "unbounded" {
        ingest = ingest.with_outbox(usize::MAX, usize::MAX);
    }
    let timeout = if short { SHORT_TIMEOUT } else { TIMEOUT };
    let burst = transitions();
    let records: Vec<Value> = burst
        .iter()
        .enumerate()
        .map(|(i, (company, job))| record(i, company, job))
        .collect();
    let mut report = ChildReport {
        records: records.len(),
        invocations: 0,
        deadline_stops: 0,
        max_invocation_ms: 0.0,
        send_calls: 0,
        enqueued: 0,
        peak_outbox: 0,
        max_rss_kb: 0,
        taken_at_ms: HashMap::new(),
    };
    let mut next = 0;
    while next < records.len() {
        let batch = &records[next..(next + BATCH_SIZE).min(records.len())];
        let started = Instant::now();
        let wall = unix_ms(SystemTime::now());
        for (_, job) in &burst[next..next + batch.len()] {
            report.taken_at_ms.insert(job.clone(), wall);
        }
        let event = json!({ "Records": batch });
        let (response, stats) = ingest
            .process(event, ingest.deadline(Some(started + timeout)))
            .await;
        let took = started.elapsed();
        report.invocations += 1;
        report.max_invocation_ms = report.max_invocation_ms.max(took.as_secs_f64() * 1000.0);
        report.send_calls += stats.send_calls;
        report.enqueued += stats.enqueued;
        report.peak_outbox = report.peak_outbox.max(stats.peak_outbox);
        assert_eq!(
            stats.failed_records, 0,
            "the fake endpoint accepts everything"
        );
        if stats.deferred > 0 {
            report.deadline_stops += 1;
        }
        next += match response.batch_item_failures.first() {
            None => batch.len(),
            Some(failure) => {
                let sequence = failure.item_identifier.as_deref().unwrap_or_default();
                batch
                    .iter()
                    .position(|r| r["dynamodb"]["SequenceNumber"] == sequence)
                    .expect("the named record is in the batch")
            }
        };
    }
    report.max_rss_kb = max_rss_kb();
    println!("{}", serde_json::to_string(&report).expect("report"));
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub fn bench() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(spec) = std::env::var("LOAD_CHILD") {
        runtime.block_on(child(&spec));
        return;
    }
    let fake = FakeSqs::start();
    fake.record_messages();
    println!(
        "heavy company: {HEAVY_TRANSITIONS} transitions; {QUIET_COMPANIES} quiet companies: \
         {QUIET_SUBSCRIPTIONS} subscriptions and {QUIET_TRANSITIONS} transitions each; \
         batches of {BATCH_SIZE}\n"
    );
    println!(
        "| heavy fan-out | outbox | timeout | records | messages | invocations | deadline stops | longest invocation ms | calls/message | largest outbox | peak RSS MB | quiet latency p50 / p99 / max ms | lost | duplicates |"
    );
    println!(
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for fanout in FANOUTS {
        let table = runtime.block_on(async {
            let stack = stack::deploy().await;
            let table = stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap().to_owned();
            let store = SubscriptionStore::new(emulator::dynamodb().await, table.clone());
            subscribe(&store, HEAVY, fanout).await;
            for q in 0..QUIET_COMPANIES {
                subscribe(&store, &quiet(q), QUIET_SUBSCRIPTIONS).await;
            }
            table
        });
        let mut modes = vec!["bounded", "unbounded"];
        if fanout == *FANOUTS.last().unwrap() {
            modes.push("short");
        }
        for mode in modes {
            let spec = format!("{table},{},{mode}", fake.endpoint());
            let out = std::process::Command::new(std::env::current_exe().expect("bench path"))
                .env("LOAD_CHILD", spec)
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("child runs");
            assert!(
                out.status.success(),
                "child {mode} at fan-out {fanout} failed"
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let report: ChildReport = serde_json::from_str(text.lines().last().unwrap_or_default())
                .expect("child report");
            let accepted = fake.take_recorded();
            let expected = HEAVY_TRANSITIONS * fanout
                + QUIET_COMPANIES * QUIET_TRANSITIONS * QUIET_SUBSCRIPTIONS;
            let mut keys = HashSet::new();
            let mut quiet_latency = Vec::new();
            for m in &accepted {
                let message = DeliveryMessage::parse(&m.body).expect("a delivery message");
                if !keys.insert(message.webhook_id.clone()) {
                    continue;
                }
                if message.company_id != HEAVY {
                    let payload: Value = serde_json::from_str(message.payload.get()).unwrap();
                    let job = payload["data"]["job_id"].as_str().unwrap_or_default();
                    quiet_latency.push(unix_ms(m.at) - report.taken_at_ms[job]);
                }
            }
            quiet_latency.sort_by(f64::total_cmp);
            let timeout = if mode == "short" {
                SHORT_TIMEOUT
            } else {
                TIMEOUT
            };
            println!(
                "| {fanout} | {} | {} s | {} | {} | {} | {} | {:.0} | {:.3} | {} | {:.0} | {:.1} / {:.1} / {:.1} | {} | {} |",
                if mode == "unbounded" {
                    "unbounded (whole batch)"
                } else {
                    "bounded"
                },
                timeout.as_secs(),
                report.records,
                report.enqueued,
                report.invocations,
                report.deadline_stops,
                report.max_invocation_ms,
                report.send_calls as f64 / report.enqueued.max(1) as f64,
                report.peak_outbox,
                report.max_rss_kb as f64 / 1024.0,
                percentile(&quiet_latency, 0.5),
                percentile(&quiet_latency, 0.99),
                quiet_latency.last().copied().unwrap_or_default(),
                expected.saturating_sub(keys.len()),
                accepted.len() - keys.len(),
            );
        }
    }
}
