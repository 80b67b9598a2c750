//! What a million webhooks cost on AWS: the end-to-end workload through the
//! local runner, every AWS request counted, multiplied by list prices.
//!
//! The pipeline's SDK clients (the functions' and the event source
//! mappings' stand-ins, the runners) talk to the emulator through the
//! counting proxy (`test_kit::aws_proxy`), which meters each request in
//! billing units (`test_kit::metering`): SQS requests in 64 KiB chunks,
//! DynamoDB read and write request units from the item sizes on the wire.
//! The runners record every handler invocation and its duration
//! (`local_stack::invocations`), billed per started millisecond at the
//! template's memory size. Log bytes are the functions' JSON log lines
//! (`tracing`, production format) plus each invocation's EMF metric line.
//! Prices come from `infra/aws-prices.yaml` (us-east-1, arm64, on demand).
//!
//! Scenarios, each on fresh resources with the workload of the latency
//! benchmark (20 companies, ~1,300 job transitions, 30 subscriptions with
//! varied filters, four receivers that verify every signature):
//!
//! - **healthy**: receivers answer 204 after `COST_RECEIVER_MS` (default
//!   100 ms, a typical endpoint), with the template's stream batching
//!   window (0), and again with a 1 s window;
//! - **30 % failing**: each attempt is answered 500 with probability 0.3
//!   (each receiver draws from a seeded generator in the order requests
//!   arrive, so which attempts fail differs between runs), else 204;
//! - **down**: every attempt is answered 503: the breaker opens after five
//!   failed attempts (`BreakerMinFailingSeconds` compressed to 0 like the
//!   schedule) and the endpoint's events are parked, once each, with no
//!   queue hops; the run ends when every event is parked or failed;
//! - **down, then back**: the same, then the receivers recover: the probe
//!   succeeds and the prober (every second here) drains the parked events at
//!   the template's `DrainRatePerSecond`. Only the recovery is metered; it
//!   reports the drain's throughput and each subscription's highest arrival
//!   rate in any one-second window.
//!
//! Retries run on a compressed schedule (seven 1 s delays: the template's
//! eight attempts). In production the longer delays are chains of re-sends
//! through the RetryQueue (SQS delays stop at 15 minutes): those extra hops
//! are added from the retries counted, at the per-message queue and
//! invocation cost the run measured (line "chained re-sends").
//!
//! Not per event, so left out of the per-million figures and printed
//! apart: empty receives while queues are idle (the local runner's polling
//! is not Lambda's), EMF custom metrics (billed per metric-month), the API.
//! Also left out: storage (the attempt log's items for their 30 days, about
//! $0.10 per million attempts at $0.25 per GB-month; logs kept in
//! CloudWatch).
//!
//! Run: `make bench-cost` (or `infra/with-emulator.sh cargo bench -p
//! local-stack --bench cost`). Prints Markdown tables for BENCHMARKS.md.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::workload::{self, COMPANIES, JOBS_PER_COMPANY, Ledger, POLLERS};
use local_infra::cloudformation::ids::{self, DELIVERY_FUNCTION, INGEST_FUNCTION, PROBER_FUNCTION};
use local_infra::simulate::{Simulator, Transition};
use local_stack::invocations::InvocationStats;
use local_stack::pipeline::Pipeline;
use serde::Deserialize;
use serde_json::Value;
use shared::delivery::retry::RetrySchedule;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::aws_proxy::AwsProxy;
use test_kit::emulator;
use test_kit::metering::{Dimension, Meter, Usage};
use test_kit::receiver::Reply;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, filter};

const RECEIVERS: usize = 4;
/// The template's eight attempts, a second apart.
const COMPRESSED_SCHEDULE: &str = "1s,1s,1s,1s,1s,1s,1s";
/// SQS's longest delay: a longer wait between attempts is a chain of sends.
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------- prices --

#[derive(Deserialize)]
pub(crate) struct PriceFile {
    region: String,
    checked: String,
    prices: BTreeMap<String, Price>,
}

#[derive(Deserialize)]
struct Price {
    usd: f64,
    per: f64,
    #[allow(dead_code)]
    unit: String,
    source: String,
}

impl PriceFile {
    pub(crate) fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../aws-prices.yaml");
        let text = std::fs::read_to_string(path).expect("infra/aws-prices.yaml reads");
        serde_yaml::from_str(&text).expect("infra/aws-prices.yaml parses")
    }

    /// Dollars for `quantity` of `key`.
    pub(crate) fn cost(&self, key: &str, quantity: f64) -> f64 {
        let p = self
            .prices
            .get(key)
            .unwrap_or_else(|| panic!("price {key} in infra/aws-prices.yaml"));
        quantity * p.usd / p.per
    }
}

// ------------------------------------------------------------------ logs --

/// Bytes of JSON log lines the functions wrote.
static LOG_BYTES: AtomicU64 = AtomicU64::new(0);

struct CountingSink;

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG_BYTES.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The functions' log lines (INFO and up, production JSON format) to the
/// counting sink; the runners' and the benchmark's own lines are not the
/// functions' and are left out. Warnings also go to stderr.
pub(crate) fn install_tracing() {
    let functions =
        shared::telemetry::json_layer(|| CountingSink).with_filter(filter::filter_fn(|m| {
            *m.level() <= tracing::Level::INFO
                && !m.target().starts_with("local_stack")
                && !m.target().starts_with("cost")
        }));
    let warnings = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter::filter_fn(|m| {
            *m.level() <= tracing::Level::WARN && m.target().starts_with("local_stack")
        }));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(functions)
            .with(warnings),
    )
    .expect("no other tracing subscriber");
}

// ------------------------------------------------------------- scenarios --

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receivers {
    Healthy,
    Flaky,
    Down,
    DownThenBack,
}

/// How fast the platform writes job transitions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Load {
    /// One writer, 10 ms between writes: about 35 transitions a second
    /// against the emulator.
    Steady,
    /// [`BURST_WRITERS`] writers at once (companies split between them),
    /// each pacing as `Steady`: about ten times the rate.
    Burst,
}

/// Writers of a [`Load::Burst`].
pub(crate) const BURST_WRITERS: usize = 10;

pub(crate) struct Scenario {
    pub(crate) label: String,
    pub(crate) receivers: Receivers,
    /// The stream mapping's batching window; `None`: the template's.
    pub(crate) window: Option<Duration>,
    pub(crate) load: Load,
    /// Stack parameters on top of the benchmark's.
    pub(crate) parameters: Vec<(String, String)>,
}

impl Scenario {
    pub(crate) fn new(label: &str, receivers: Receivers, window: Option<Duration>) -> Self {
        Self {
            label: label.to_owned(),
            receivers,
            window,
            load: Load::Steady,
            parameters: Vec::new(),
        }
    }
}

/// What one run counted.
pub(crate) struct RunResult {
    pub(crate) label: String,
    pub(crate) events: usize,
    pub(crate) delivered: usize,
    /// Events in the ParkedEventsTable (parked or failed) at the end.
    pub(crate) kept: usize,
    /// Messages left in the DeadLetterQueue.
    pub(crate) dead_lettered: usize,
    pub(crate) attempts: usize,
    /// The recovery, for "down, then back".
    drain: Option<Drain>,
    pub(crate) usage: BTreeMap<String, (Dimension, Usage)>,
    pub(crate) invocations: BTreeMap<String, InvocationStats>,
    /// Retries sent, by the attempt they carry.
    pub(crate) retries_by_attempt: BTreeMap<u32, u64>,
    pub(crate) log_bytes: u64,
    pub(crate) seconds: f64,
    /// From each transition's write to the first verified receipt of each
    /// of its events, in milliseconds.
    pub(crate) latencies_ms: Vec<f64>,
    /// Transitions written, and the seconds the writing took.
    pub(crate) transitions: usize,
    pub(crate) write_seconds: f64,
    /// Each function's deployed memory size (MB), by logical id.
    pub(crate) memory_mb: BTreeMap<String, u32>,
}

/// The recovery of "down, then back".
struct Drain {
    /// Parked events drained and delivered.
    events: usize,
    /// From the receivers' recovery to the last event's arrival.
    seconds: f64,
    /// The highest number of one subscription's events arriving within any
    /// one second, and within any five seconds.
    max_per_subscription_second: usize,
    max_per_subscription_5s: usize,
    /// `DrainRatePerSecond` of the stack.
    rate: usize,
}

/// Items in a table (a `Select=COUNT` scan, straight to the emulator).
async fn table_count(dynamo: &aws_sdk_dynamodb::Client, table: &str) -> usize {
    let mut count = 0;
    let mut start = None;
    loop {
        let out = dynamo
            .scan()
            .table_name(table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan on the emulator");
        count += usize::try_from(out.count).unwrap_or(0);
        start = out.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            return count;
        }
    }
}

/// The most arrivals of one subscription within any `window`.
fn max_per_window(
    first: &std::collections::HashMap<workload::EventId, Instant>,
    window: Duration,
) -> usize {
    let mut by_sub: BTreeMap<&str, Vec<Instant>> = BTreeMap::new();
    for ((sub, _, _), at) in first {
        by_sub.entry(sub.as_str()).or_default().push(*at);
    }
    let mut max = 0;
    for times in by_sub.values_mut() {
        times.sort();
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= window {
                lo += 1;
            }
            max = max.max(hi - lo + 1);
        }
    }
    max
}

/// Labels SQS receives that came back empty apart: idle polling.
fn metering_label(target: &str, response: &[u8]) -> String {
    if target == "AmazonSQS.ReceiveMessage" {
        let answer: Value = serde_json::from_slice(response).unwrap_or(Value::Null);
        let empty = answer["Messages"].as_array().is_none_or(Vec::is_empty);
        if empty {
            return format!("{target} (empty)");
        }
    }
    target.to_owned()
}

pub(crate) async fn run(scenario: &Scenario, receiver_delay: Duration) -> RunResult {
    let upstream = emulator::sdk_config().await;
    let proxy = AwsProxy::start(emulator::endpoint());
    let meter = Meter::default();
    let retries: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();
    {
        let (meter, retries) = (meter.clone(), Arc::clone(&retries));
        proxy.observe(move |call| {
            // The stream runner's checkpoints stand for the event source
            // mapping's own state, which AWS does not bill.
            let request: Value = serde_json::from_slice(call.request).unwrap_or(Value::Null);
            if request["TableName"] == local_stack::checkpoint::TABLE {
                return;
            }
            let label = metering_label(call.target, call.response);
            meter.record_as(&label, call);
            if call.target == "AmazonSQS.SendMessage" {
                let request: Value = serde_json::from_slice(call.request).unwrap_or(Value::Null);
                let is_retry = request["QueueUrl"]
                    .as_str()
                    .is_some_and(|u| u.contains("RetryQueue"));
                let body: Value = request["MessageBody"]
                    .as_str()
                    .and_then(|b| serde_json::from_str(b).ok())
                    .unwrap_or(Value::Null);
                if let (true, Some(attempt)) = (is_retry, body["attempt"].as_u64()) {
                    *retries.lock().unwrap().entry(attempt as u32).or_default() += 1;
                }
            }
        });
    }
    let sdk = upstream.to_builder().endpoint_url(proxy.endpoint()).build();
    let unique = emulator::unique_name("cost");
    let mut config = workload::pipeline_config(Some(COMPRESSED_SCHEDULE), scenario.window);
    let parks = matches!(
        scenario.receivers,
        Receivers::Down | Receivers::DownThenBack
    );
    if parks {
        config
            .deployment
            .parameters
            .push(("BreakerMinFailingSeconds".to_owned(), "0".to_owned()));
    }
    config
        .deployment
        .parameters
        .extend(scenario.parameters.iter().cloned());
    if scenario.receivers == Receivers::DownThenBack {
        config.schedule_interval = Some(Duration::from_secs(1));
    }
    let pipeline = Pipeline::build(&sdk, config)
        .await
        .expect("pipeline builds");
    let drain_rate: usize = pipeline
        .stack
        .function(PROBER_FUNCTION)
        .expect("the prober")
        .environment
        .get("DRAIN_RATE_PER_SECOND")
        .and_then(|r| r.parse().ok())
        .expect("DRAIN_RATE_PER_SECOND");
    let res = pipeline.stack.clone();
    let memory_mb: BTreeMap<String, u32> = [INGEST_FUNCTION, DELIVERY_FUNCTION, PROBER_FUNCTION]
        .into_iter()
        .map(|f| {
            (
                f.to_owned(),
                res.function(f).expect("the function").memory_mb,
            )
        })
        .collect();
    // Set-up and the platform's own job writes go straight to the emulator.
    let dynamo = aws_sdk_dynamodb::Client::new(&upstream);
    let sqs = aws_sdk_sqs::Client::new(&upstream);
    let store =
        SubscriptionStore::new(dynamo.clone(), res.table(ids::SUBSCRIPTIONS_TABLE).unwrap());

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let back = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    for r in 0..RECEIVERS {
        let rng = Mutex::new(fastrand::Rng::with_seed(100 + r as u64));
        let kind = scenario.receivers;
        let status = match kind {
            Receivers::Down | Receivers::DownThenBack => 503,
            _ => 500,
        };
        let back = Arc::clone(&back);
        let receiver = workload::receiver(&ledger, move |_| {
            let failed = match kind {
                Receivers::Healthy => false,
                Receivers::Down => true,
                Receivers::DownThenBack => !back.load(Ordering::Relaxed),
                Receivers::Flaky => rng.lock().unwrap().f64() < 0.3,
            };
            Reply::status(if failed { status } else { 204 }).after(receiver_delay)
        })
        .await;
        receivers.push(receiver);
    }

    let mut rng = fastrand::Rng::with_seed(42);
    let (plans, subs) = workload::subscribe(
        &store,
        &pipeline.secrets.current(),
        &ledger,
        &receivers,
        &unique,
        &mut rng,
    )
    .await;

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut runners = pipeline.start(shutdown).await.expect("runners start");
    // Count from here: deploying the stack and start-up are not per event.
    meter.reset();
    pipeline.invocations().reset();
    LOG_BYTES.store(0, Ordering::Relaxed);

    let started = Instant::now();
    let written: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
    let simulator = {
        let written = Arc::clone(&written);
        Simulator::new(dynamo.clone(), res.table(ids::JOBS_TABLE).unwrap())
            .with_pause(Duration::from_millis(10))
            .with_observer(move |t| {
                written.lock().unwrap().insert(
                    (t.job_id.clone(), t.state.as_str().to_owned()),
                    Instant::now(),
                );
            })
    };
    let writers = match scenario.load {
        Load::Steady => 1,
        Load::Burst => BURST_WRITERS,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let plans: Vec<_> = plans.iter().skip(w).step_by(writers).cloned().collect();
        let simulator = simulator.clone();
        let mut rng = fastrand::Rng::with_seed(rng.u64(..));
        tasks.spawn(async move {
            let mut transitions = Vec::new();
            for jobs in &plans {
                transitions.extend(
                    simulator
                        .run_plan(jobs, &mut rng)
                        .await
                        .expect("jobs written"),
                );
            }
            transitions
        });
    }
    let mut transitions: Vec<Transition> = Vec::new();
    while let Some(written) = tasks.join_next().await {
        transitions.extend(written.expect("writer runs"));
    }
    let write_seconds = started.elapsed().as_secs_f64();
    let expected = workload::expected_events(&transitions, &subs);

    // Done when every event is delivered (or, with the receivers down,
    // parked or failed) and both delivery queues are empty.
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let parked_table = res.table(ids::PARKED_EVENTS_TABLE).unwrap().to_owned();
    let dlq = res.queue_url(ids::DEAD_LETTER_QUEUE).unwrap().to_owned();
    let queues = [
        res.queue_url(ids::DELIVERY_QUEUE).unwrap().to_owned(),
        res.queue_url(ids::RETRY_QUEUE).unwrap().to_owned(),
    ];
    let delivered_now = || {
        let ledger = ledger.lock().unwrap();
        expected
            .iter()
            .filter(|e| ledger.first.contains_key(*e))
            .count()
    };
    let kept = loop {
        let delivered = delivered_now();
        // Parked events, and events that failed every attempt (kept in the
        // same table for recovery; with flaky receivers a few may).
        let kept = table_count(&dynamo, &parked_table).await;
        let dead = queue_depth(&sqs, &dlq).await;
        let in_flight = {
            let mut n = 0;
            for q in &queues {
                n += queue_depth(&sqs, q).await;
            }
            n
        };
        if delivered + kept + dead >= expected.len() && in_flight == 0 {
            break kept;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {delivered} delivered, {kept} parked or failed and {dead} dead-lettered of {} events, {in_flight} in the queues",
            scenario.label,
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut seconds = started.elapsed().as_secs_f64();
    let mut drain = None;
    let mut kept = kept;
    if scenario.receivers == Receivers::DownThenBack {
        // The receivers come back: meter only the recovery from here.
        ledger.lock().unwrap().first.clear();
        meter.reset();
        pipeline.invocations().reset();
        LOG_BYTES.store(0, Ordering::Relaxed);
        let parked_events = kept;
        let recovered = Instant::now();
        back.store(true, Ordering::Relaxed);
        while delivered_now() < parked_events {
            assert!(
                Instant::now() < deadline,
                "{}: {} of {parked_events} parked events delivered",
                scenario.label,
                delivered_now()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ledger = ledger.lock().unwrap();
        let last = ledger.first.values().max().copied().unwrap_or(recovered);
        seconds = (last - recovered).as_secs_f64();
        drain = Some(Drain {
            events: parked_events,
            seconds,
            max_per_subscription_second: max_per_window(&ledger.first, Duration::from_secs(1)),
            max_per_subscription_5s: max_per_window(&ledger.first, Duration::from_secs(5)),
            rate: drain_rate,
        });
        kept = 0;
    }
    let dead_lettered = queue_depth(&sqs, &dlq).await;
    stop.send(true).unwrap();
    while runners.join_next().await.is_some() {}

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert_eq!(ledger.bad_signatures, 0, "every request verifies");
    let delivered = expected
        .iter()
        .filter(|e| ledger.first.contains_key(*e))
        .count();
    let latencies_ms = {
        let written = written.lock().unwrap();
        expected
            .iter()
            .filter_map(|e @ (_, job, state)| {
                let at = ledger.first.get(e)?;
                let write = written.get(&(job.clone(), state.clone()))?;
                Some(at.saturating_duration_since(*write).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    drop(receivers);
    let retries_by_attempt = std::mem::take(&mut *retries.lock().unwrap());
    RunResult {
        label: scenario.label.clone(),
        events: drain.as_ref().map_or(expected.len(), |d| d.events),
        delivered,
        kept,
        dead_lettered,
        drain,
        attempts: ledger.requests,
        usage: meter.usage(),
        invocations: pipeline.invocations().snapshot(),
        retries_by_attempt,
        log_bytes: LOG_BYTES.load(Ordering::Relaxed),
        seconds,
        latencies_ms,
        transitions: transitions.len(),
        write_seconds,
        memory_mb,
    }
}

/// Visible, in-flight and delayed messages on a queue.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("GetQueueAttributes on the emulator");
    out.attributes()
        .into_iter()
        .flatten()
        .map(|(_, v)| v.parse::<usize>().unwrap_or(0))
        .sum()
}

// ------------------------------------------------------------------ cost --

/// One line of the bill.
pub(crate) struct Line {
    pub(crate) item: String,
    pub(crate) quantity: f64,
    pub(crate) unit: &'static str,
    pub(crate) usd: f64,
}

/// The production schedule's hops for the retries counted: a retry carrying
/// attempt `a` waits the schedule's delay before it, in ceil(delay / 15 min)
/// sends. Returns the hops beyond the one each retry made in the run.
fn extra_hops(retries: &BTreeMap<u32, u64>, schedule: &RetrySchedule) -> f64 {
    retries
        .iter()
        .map(|(&attempt, &n)| {
            let delay = schedule
                .base_delay(attempt.saturating_sub(1))
                .unwrap_or_default();
            let hops = delay.as_secs().div_ceil(MAX_QUEUE_DELAY.as_secs()).max(1);
            (hops - 1) as f64 * n as f64
        })
        .sum()
}

pub(crate) fn bill(r: &RunResult, prices: &PriceFile, template: &serde_yaml::Value) -> Vec<Line> {
    let mut lines = Vec::new();
    for (function, label) in [
        (INGEST_FUNCTION, "job-events-ingest"),
        (DELIVERY_FUNCTION, "webhook-delivery"),
        (PROBER_FUNCTION, "endpoint-prober"),
    ] {
        let stats = r.invocations.get(function).copied().unwrap_or_default();
        if stats.count == 0 {
            continue;
        }
        lines.push(Line {
            item: format!("Lambda requests: {label}"),
            quantity: stats.count as f64,
            unit: "invocations",
            usd: prices.cost("lambda_requests", stats.count as f64),
        });
        let memory = f64::from(r.memory_mb.get(function).copied().unwrap_or(128));
        let gb_s = stats.billed_ms as f64 / 1000.0 * memory / 1024.0;
        lines.push(Line {
            item: format!(
                "Lambda duration: {label} ({:.1} ms per invocation, {} MB)",
                stats.billed_ms as f64 / stats.count.max(1) as f64,
                memory
            ),
            quantity: gb_s,
            unit: "GB-s",
            usd: prices.cost("lambda_arm64_gb_second", gb_s),
        });
    }
    for (target, (dimension, usage)) in &r.usage {
        let (key, unit) = match dimension {
            Dimension::SqsRequests => ("sqs_standard_requests", "requests"),
            Dimension::DynamoWrites => ("dynamodb_on_demand_writes", "WRU"),
            Dimension::DynamoReads => ("dynamodb_on_demand_reads", "RRU"),
            Dimension::Free => continue,
        };
        if target.ends_with("(empty)") {
            continue;
        }
        lines.push(Line {
            item: format!("{target} ({} calls)", usage.calls),
            quantity: usage.units,
            unit,
            usd: prices.cost(key, usage.units),
        });
    }
    let metric_bytes: u64 = r.invocations.values().map(|s| s.metric_log_bytes).sum();
    let log_gb = (r.log_bytes + metric_bytes) as f64 / 1e9;
    lines.push(Line {
        item: format!(
            "CloudWatch Logs: {} B of function logs + {} B of EMF lines",
            r.log_bytes, metric_bytes
        ),
        quantity: log_gb,
        unit: "GB",
        usd: prices.cost("cloudwatch_logs_ingestion", log_gb),
    });

    // Chained re-sends at the template's schedule: each extra hop is one
    // SendMessage plus one message's share of the receives, deletes,
    // invocations and EMF lines the run measured. The hop's invocation time
    // is left out: a hop only re-sends, it POSTs nothing.
    let schedule = RetrySchedule::parse(
        template["Parameters"]["RetrySchedule"]["Default"]
            .as_str()
            .expect("the template's RetrySchedule default"),
    )
    .expect("the template's RetrySchedule parses");
    let hops = extra_hops(&r.retries_by_attempt, &schedule);
    if hops > 0.0 {
        // Messages handed to the delivery function: first attempts and retries.
        let received = (r.events as u64 + r.retries_by_attempt.values().sum::<u64>()) as f64;
        let per_message = |item: &str| -> f64 {
            lines
                .iter()
                .filter(|l| l.item.starts_with(item))
                .map(|l| l.usd)
                .sum::<f64>()
                / received.max(1.0)
        };
        let emf_per_message = r
            .invocations
            .get(DELIVERY_FUNCTION)
            .map_or(0.0, |s| s.metric_log_bytes as f64)
            / received.max(1.0);
        let hop_cost = prices.cost("sqs_standard_requests", 1.0)
            + per_message("AmazonSQS.ReceiveMessage")
            + per_message("AmazonSQS.DeleteMessageBatch")
            + per_message("Lambda requests: webhook-delivery")
            + prices.cost("cloudwatch_logs_ingestion", emf_per_message / 1e9);
        lines.push(Line {
            item: "chained re-sends at the template's schedule (computed)".to_owned(),
            quantity: hops,
            unit: "hops",
            usd: hops * hop_cost,
        });
    }
    lines
}

fn report(runs: &[RunResult], prices: &PriceFile, template: &serde_yaml::Value) {
    println!();
    println!(
        "Prices: {} list prices checked {} (infra/aws-prices.yaml). Per million = \
         per million delivered events; for the down receiver, per million events.",
        prices.region, prices.checked
    );
    let eventbridge = prices.cost("eventbridge_custom_events", 1e6)
        + prices.cost("eventbridge_api_destinations", 1e6);
    let svix = prices.cost("svix_overage", 1e6);
    println!();
    println!(
        "| scenario | events | delivered | attempts | parked or failed | dead-lettered | \
         AWS requests per event | $ per million | largest line item | \
         EventBridge API destinations | Svix overage |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |");
    let mut bills = Vec::new();
    for r in runs {
        let lines = bill(r, prices, template);
        let per = if r.delivered > 0 {
            r.delivered
        } else {
            r.events
        };
        let total: f64 = lines.iter().map(|l| l.usd).sum();
        let largest = lines
            .iter()
            .max_by(|a, b| a.usd.total_cmp(&b.usd))
            .map(|l| format!("{} ({:.0} %)", l.item, 100.0 * l.usd / total))
            .unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.3} | {} | {:.2} | {:.0} |",
            r.label,
            r.events,
            r.delivered,
            r.attempts,
            r.kept,
            r.dead_lettered,
            requests_per_event(r),
            total / per as f64 * 1e6,
            largest,
            eventbridge,
            svix
        );
        bills.push((r, lines, per));
    }
    for r in runs {
        if let Some(d) = &r.drain {
            println!();
            println!(
                "Drain after recovery ({}): {} parked events delivered in {:.1} s ({:.1} events/s over all \
                 subscriptions); the most of one subscription's events arriving within any one second: {}, \
                 within any five seconds: {} (DrainRatePerSecond {}: at most {} become visible on the queue \
                 per second, {} per five seconds).",
                r.label,
                d.events,
                d.seconds,
                d.events as f64 / d.seconds.max(0.001),
                d.max_per_subscription_second,
                d.max_per_subscription_5s,
                d.rate,
                d.rate,
                5 * d.rate
            );
        }
    }
    for (r, lines, per) in bills {
        println!();
        println!(
            "{}: {} events, {} delivered, {} attempts, {:.1} s; per million {}:",
            r.label,
            r.events,
            r.delivered,
            r.attempts,
            r.seconds,
            if r.delivered > 0 {
                "delivered"
            } else {
                "events"
            }
        );
        println!();
        println!("| line item | quantity per million | unit | $ per million |");
        println!("| --- | ---: | --- | ---: |");
        let scale = 1e6 / per as f64;
        let total: f64 = lines.iter().map(|l| l.usd).sum();
        for l in &lines {
            println!(
                "| {} | {:.1} | {} | {:.4} |",
                l.item,
                l.quantity * scale,
                l.unit,
                l.usd * scale
            );
        }
        println!("| **total** | | | **{:.3}** |", total * scale);
        let idle: Vec<String> = r
            .usage
            .iter()
            .filter(|(t, _)| t.ends_with("(empty)"))
            .map(|(t, (_, u))| format!("{t}: {} calls", u.calls))
            .collect();
        if !idle.is_empty() {
            println!();
            println!(
                "Left out (idle polling of the local runner): {}",
                idle.join(", ")
            );
        }
    }
    println!();
    println!("Sources:");
    for (key, p) in &prices.prices {
        println!("- {key}: ${} per {} ({})", p.usd, p.per, p.source);
    }
}

pub(crate) fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn bench() {
    install_tracing();
    let receiver_delay = Duration::from_millis(setting("COST_RECEIVER_MS", 100));
    let only = std::env::var("COST_SCENARIOS").unwrap_or_default();
    let scenarios = [
        Scenario::new("healthy", Receivers::Healthy, None),
        Scenario::new(
            "healthy, stream batching window 1 s",
            Receivers::Healthy,
            Some(Duration::from_secs(1)),
        ),
        Scenario::new("30 % of attempts failing", Receivers::Flaky, None),
        Scenario::new(
            "receiver down (breaker open, events parked)",
            Receivers::Down,
            None,
        ),
        Scenario::new(
            "down, then back (recovery and drain only)",
            Receivers::DownThenBack,
            None,
        ),
    ];
    let prices = PriceFile::load();
    let template_text = std::fs::read_to_string(local_infra::cloudformation::template_path())
        .expect("template.yaml reads");
    let template: serde_yaml::Value =
        serde_yaml::from_str(&template_text).expect("template parses");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let runs: Vec<RunResult> = scenarios
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_empty() || only.split(',').any(|o| o == i.to_string()))
        .map(|(_, s)| {
            eprintln!("cost: {} ...", s.label);
            runtime.block_on(run(s, receiver_delay))
        })
        .collect();
    println!(
        "Receivers answer after {} ms; {POLLERS} pollers per delivery queue; {} companies × {} jobs.",
        receiver_delay.as_millis(),
        COMPANIES,
        JOBS_PER_COMPANY
    );
    report(&runs, &prices, &template);
}

/// The run's AWS requests per event, empty receives of idle queues left
/// out.
pub fn requests_per_event(r: &RunResult) -> f64 {
    let calls: u64 = r
        .usage
        .iter()
        .filter(|(t, _)| !t.ends_with("(empty)"))
        .map(|(_, (_, u))| u.calls)
        .sum();
    calls as f64 / r.events.max(1) as f64
}
