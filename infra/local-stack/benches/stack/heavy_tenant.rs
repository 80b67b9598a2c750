//! The load test of ingest, scaled down, through the whole local stack: one
//! heavy company at its quota of subscriptions (100) with a burst of new
//! jobs, interleaved with 19 quiet companies (one subscription and a few
//! jobs each), written to the jobs table of a stack deployed in the
//! emulator; the stream runner feeds ingest, the queue runners feed
//! delivery, and loopback receivers verify every signature.
//!
//! Scaled down because the emulator's queues slow down with their depth
//! (a few deliveries per second past a few thousand queued messages): the
//! figures of the fast-endpoint load test (ingest's `load` benchmark)
//! are the handler's; this run shows the same bounds end
//! to end.
//!
//! Reported: transitions and deliveries, ingest invocations and the
//! longest (against the function's timeout), the process's peak RSS (the
//! whole local stack with its receivers), end-to-end latency (write to
//! verified receipt) of the quiet companies beside the heavy one's, and
//! lost and duplicated deliveries.
//!
//! Run: `make bench-heavy-tenant` (or `infra/with-emulator.sh cargo bench
//! -p local-stack --bench heavy_tenant`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use local_infra::cloudformation::ids;
use local_stack::pipeline::Pipeline;
use shared::domain::filters::Filters;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::emulator;
use test_kit::receiver::Reply;

// The heavy-tenant run uses the receivers and pipeline settings of the
// shared workload, not its companies.
#[allow(dead_code)]
use crate::workload::{self, EventId, Ledger};

const HEAVY: &str = "heavy-co";
/// The template's default `MaxSubscriptionsPerCompany`.
const HEAVY_SUBSCRIPTIONS: usize = 100;
const HEAVY_JOBS: usize = 10;
const QUIET_COMPANIES: usize = 19;
const QUIET_JOBS: usize = 2;
const RECEIVERS: usize = 4;
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);

fn quiet(q: usize) -> String {
    format!("quiet-{q:02}")
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn max_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn percentiles(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    if v.is_empty() {
        return "-".to_owned();
    }
    format!("{:.0} / {:.0} / {:.0}", at(0.5), at(0.99), v[v.len() - 1])
}

#[tokio::main]
pub async fn bench() {
    let sdk = emulator::sdk_config().await;
    let pipeline = Pipeline::build(&sdk, workload::pipeline_config(None, None))
        .await
        .expect("pipeline builds");
    let stack = pipeline.stack.clone();
    let timeout = stack.function(ids::INGEST_FUNCTION).unwrap().timeout;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let store = SubscriptionStore::new(
        dynamo.clone(),
        stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap(),
    );
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut receivers = Vec::new();
    for _ in 0..RECEIVERS {
        receivers.push(workload::receiver(&ledger, |_| Reply::status(204)).await);
    }
    let keyring = pipeline.secrets.current();
    let mut subs: Vec<Subscription> = Vec::new();
    let companies: Vec<(String, usize)> = std::iter::once((HEAVY.to_owned(), HEAVY_SUBSCRIPTIONS))
        .chain((0..QUIET_COMPANIES).map(|q| (quiet(q), 1)))
        .collect();
    for (company, count) in &companies {
        for i in 0..*count {
            let url = receivers[subs.len() % RECEIVERS].url(&format!("/{company}/{i}"));
            let new = NewSubscription {
                url,
                description: None,
                filters: Filters::default(),
            };
            let (sub, secret) = Subscription::create(company, new, Utc::now(), &keyring).unwrap();
            store.create(&sub, None, u64::MAX).await.unwrap();
            ledger.lock().unwrap().add(&sub, &secret);
            subs.push(sub);
        }
    }

    // The burst: the heavy company's jobs with the quiet ones' spread
    // evenly among them, one new (pending) job per write.
    let quiet_total = QUIET_COMPANIES * QUIET_JOBS;
    let total = HEAVY_JOBS + quiet_total;
    let mut order = Vec::with_capacity(total);
    let (mut h, mut q) = (0, 0);
    for i in 0..total {
        if q < quiet_total && i * quiet_total >= q * total {
            order.push((quiet(q % QUIET_COMPANIES), format!("q-{q:03}")));
            q += 1;
        } else {
            order.push((HEAVY.to_owned(), format!("h-{h:03}")));
            h += 1;
        }
    }
    let mut expected: BTreeSet<EventId> = BTreeSet::new();
    for (company, job) in &order {
        for sub in subs.iter().filter(|s| &s.company_id == company) {
            expected.insert((
                sub.subscription_id.clone(),
                job.clone(),
                "pending".to_owned(),
            ));
        }
    }

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut runners = pipeline.start(shutdown).await.expect("runners start");
    let jobs_table = stack.table(ids::JOBS_TABLE).unwrap().to_owned();
    let mut written: HashMap<String, Instant> = HashMap::new();
    let started = Instant::now();
    for (company, job) in &order {
        dynamo
            .put_item()
            .table_name(&jobs_table)
            .item("company_id", s(company))
            .item("job_id", s(job))
            .item("type", s("forecast"))
            .item("state", s("pending"))
            .item("updated_at", s("2026-12-02T10:00:00.000Z"))
            .send()
            .await
            .expect("job written");
        written.insert(job.clone(), Instant::now());
    }
    let write_seconds = started.elapsed().as_secs_f64();
    workload::await_receipts(&ledger, &expected, DRAIN_DEADLINE, "heavy tenant").await;
    let all_arrived = started.elapsed().as_secs_f64();
    stop.send(true).unwrap();
    while runners.join_next().await.is_some() {}

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert_eq!(ledger.bad_signatures, 0, "every request verifies");
    let company_of: HashMap<&str, &str> = subs
        .iter()
        .map(|s| (s.subscription_id.as_str(), s.company_id.as_str()))
        .collect();
    let (mut quiet_ms, mut heavy_ms) = (Vec::new(), Vec::new());
    for ((sub, job, _), at) in &ledger.first {
        let ms = at.duration_since(written[job]).as_secs_f64() * 1000.0;
        if company_of[sub.as_str()] == HEAVY {
            heavy_ms.push(ms);
        } else {
            quiet_ms.push(ms);
        }
    }
    let ingest = pipeline.invocations().snapshot()[ids::INGEST_FUNCTION];
    let lost = expected
        .iter()
        .filter(|e| !ledger.first.contains_key(*e))
        .count();
    println!(
        "local stack: heavy company {HEAVY_SUBSCRIPTIONS} subscriptions x {HEAVY_JOBS} jobs, \
         {QUIET_COMPANIES} quiet companies x 1 subscription x {QUIET_JOBS} jobs; \
         written in {write_seconds:.1} s, all delivered {all_arrived:.1} s after the first write\n"
    );
    println!(
        "| transitions | deliveries | ingest invocations | longest ingest ms (timeout {} s) | peak RSS MB | quiet end-to-end p50 / p99 / max ms | heavy end-to-end p50 / p99 / max ms | lost | duplicate requests |",
        timeout.as_secs()
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {total} | {} | {} | {:.0} | {:.0} | {} | {} | {lost} | {} |",
        expected.len(),
        ingest.count,
        ingest.longest_ms,
        max_rss_mb(),
        percentiles(quiet_ms),
        percentiles(heavy_ms),
        ledger.requests - ledger.first.len(),
    );
}
