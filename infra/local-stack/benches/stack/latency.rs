//! End-to-end latency through the local runner: from the moment a job
//! transition is written to the jobs table to the moment a healthy receiver
//! has the webhook and has verified its Standard Webhooks signature.
//!
//! The workload has the shape of the end-to-end test: 20 companies, 20
//! simulated jobs each (about 1,300 transitions), one or two subscriptions
//! per company with varied filters, four loopback receivers that verify
//! every request with the subscription's secret and answer 204. Jobs are
//! written one transition at a time with a pause between writes
//! (`LATENCY_PACE_MS`, default 10 ms), so the pipeline is not fed a backlog.
//!
//! The write instant comes from the simulator's observer (called right after
//! each write returns), the receipt instant from the receiver after
//! verification. A tracing layer splits each event's latency at the stream
//! batch that carried it (ingest invoked: the end of the runner's last
//! `GetRecords` before the batch; ingest returned: the runner's
//! `stream batch -> ingest` log line), splits the wait before the
//! invocation into the stream runner's sleeps (idle polls, pauses within
//! the batching window), its `GetRecords` calls and the previous batch's
//! ingest, and times every AWS SDK call (the emulator's per-call cost).
//!
//! Two configurations run on fresh resources: the template's stream
//! mapping as it is (`StreamBatchingWindowSeconds` 0: each poll's records
//! at once), and the same template with a 1 s window, to show what a
//! window adds.
//!
//! Run: `make bench-latency` (or `infra/with-emulator.sh cargo bench -p
//! local-stack --bench latency`). Prints Markdown tables for BENCHMARKS.md.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_infra::cloudformation::ids;
use local_infra::simulate::{Simulator, Transition};
use local_stack::pipeline::Pipeline;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::emulator;
use test_kit::receiver::Reply;
use tracing::Instrument;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, filter};

use crate::workload::{self, Ledger, POLLERS};

/// (job, state): one transition.
type TransitionId = (String, String);

const RECEIVERS: usize = 4;
/// How long the last events may take to arrive after the last write.
const DRAIN_DEADLINE: Duration = Duration::from_secs(180);
/// Name of the span the simulator's writes run in, to tell its SDK calls
/// from the pipeline's.
const SIMULATOR_SPAN: &str = "simulator";

// ---------------------------------------------------------------- probe --

/// One stream batch as the runner handed it to the ingest handler.
struct Batch {
    /// End of the runner's last `GetRecords` before the batch: the ingest
    /// handler is invoked right after it.
    invoked: Option<Instant>,
    /// When the runner logged the handler's return.
    returned: Instant,
    records: usize,
    failed: bool,
}

#[derive(Default)]
struct ProbeData {
    /// SDK call durations (ms) by operation.
    calls: BTreeMap<String, Vec<f64>>,
    /// Start and end of every `GetRecords` (only the stream runner reads
    /// the stream).
    get_records: Vec<(Instant, Instant)>,
    batches: Vec<Batch>,
}

/// What the tracing layer saw; reset before each run.
static PROBE: Mutex<Option<ProbeData>> = Mutex::new(None);

fn probe<R>(f: impl FnOnce(&mut ProbeData) -> R) -> R {
    f(PROBE.lock().unwrap().get_or_insert_with(ProbeData::default))
}

/// Start of an SDK operation span.
struct CallStart {
    at: Instant,
    operation: String,
}

struct ProbeLayer;

impl<S> Layer<S> for ProbeLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // The SDK's outer span of each operation, e.g. `SQS.ReceiveMessage`.
        if attrs.metadata().fields().field("rpc.system").is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut operation = attrs.metadata().name().to_owned();
        if span.scope().skip(1).any(|s| s.name() == SIMULATOR_SPAN) {
            operation.push_str(" (simulator)");
        }
        span.extensions_mut().insert(CallStart {
            at: Instant::now(),
            operation,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let end = Instant::now();
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        let Some(start) = extensions.get::<CallStart>() else {
            return;
        };
        probe(|p| {
            if start.operation == "DynamoDB Streams.GetRecords" {
                p.get_records.push((start.at, end));
            }
            p.calls
                .entry(start.operation.clone())
                .or_default()
                .push((end - start.at).as_secs_f64() * 1000.0);
        });
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            message: String,
            records: u64,
            failed: bool,
        }
        impl Visit for Fields {
            fn record_u64(&mut self, field: &Field, value: u64) {
                if field.name() == "records" {
                    self.records = value;
                }
            }
            fn record_bool(&mut self, field: &Field, value: bool) {
                if field.name() == "failed" {
                    self.failed = value;
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                }
            }
        }
        let returned = Instant::now();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message != "stream batch -> ingest" {
            return;
        }
        probe(|p| {
            let batch = Batch {
                invoked: p.get_records.last().map(|&(_, end)| end),
                returned,
                records: fields.records as usize,
                failed: fields.failed,
            };
            p.batches.push(batch);
        });
    }
}

fn install_tracing() {
    let probe = ProbeLayer.with_filter(filter::filter_fn(|m| {
        (m.is_span() && m.target().starts_with("aws_sdk_"))
            || m.target() == "local_infra::stream_runner"
            || m.name() == SIMULATOR_SPAN
    }));
    let warnings = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter::LevelFilter::WARN);
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(probe).with(warnings),
    )
    .expect("no other tracing subscriber");
}

// -------------------------------------------------------------- one run --

struct RunResult {
    label: String,
    transitions: usize,
    write_seconds: f64,
    events: usize,
    duplicates: usize,
    /// Per event, ms: end to end; between the write and the ingest
    /// invocation, the time the stream runner slept (idle polls, pauses
    /// within the batching window), spent in `GetRecords`, and spent in the
    /// previous batch's ingest; the ingest invocation; ingest returned →
    /// receipt.
    total: Vec<f64>,
    runner_asleep: Vec<f64>,
    in_get_records: Vec<f64>,
    in_previous_ingest: Vec<f64>,
    in_ingest: Vec<f64>,
    after_ingest: Vec<f64>,
    batches: usize,
    batch_records: Vec<f64>,
    batch_ms: Vec<f64>,
    calls: BTreeMap<String, Vec<f64>>,
}

async fn run(label: &str, pipeline: Pipeline, pace: Duration) -> RunResult {
    let sdk = emulator::sdk_config().await;
    let res = pipeline.stack.clone();
    let unique = emulator::unique_name("lat");
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let store =
        SubscriptionStore::new(dynamo.clone(), res.table(ids::SUBSCRIPTIONS_TABLE).unwrap());

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut receivers = Vec::new();
    for _ in 0..RECEIVERS {
        receivers.push(workload::receiver(&ledger, |_| Reply::status(204)).await);
    }

    // The same plans in every run (one seed); fresh company names keep the
    // job ids apart.
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

    *PROBE.lock().unwrap() = Some(ProbeData::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut runners = pipeline.start(shutdown).await.expect("runners start");

    // Write the transitions at the chosen pace, noting when each write
    // returned, in write order (the order of the stream).
    let writes: Arc<Mutex<Vec<(TransitionId, Instant)>>> = Arc::default();
    let simulator = {
        let writes = Arc::clone(&writes);
        Simulator::new(dynamo.clone(), res.table(ids::JOBS_TABLE).unwrap())
            .with_pause(pace)
            .with_observer(move |t: &Transition| {
                let at = Instant::now();
                let key = (t.job_id.clone(), t.state.as_str().to_owned());
                writes.lock().unwrap().push((key, at));
            })
    };
    let started = Instant::now();
    let mut transitions: Vec<Transition> = Vec::new();
    for jobs in &plans {
        let written = simulator
            .run_plan(jobs, &mut rng)
            .instrument(tracing::info_span!(SIMULATOR_SPAN))
            .await
            .expect("jobs written");
        transitions.extend(written);
    }
    let write_seconds = started.elapsed().as_secs_f64();
    assert!(transitions.len() >= 1000, "{}", transitions.len());

    let expected = workload::expected_events(&transitions, &subs);

    workload::await_receipts(&ledger, &expected, DRAIN_DEADLINE, label).await;
    stop.send(true).unwrap();
    while runners.join_next().await.is_some() {}

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert_eq!(ledger.bad_signatures, 0, "every request verifies");
    let data = PROBE.lock().unwrap().take().unwrap_or_default();
    let writes = std::mem::take(&mut *writes.lock().unwrap());
    assert_eq!(writes.len(), transitions.len());

    // Which batch carried each write: the stream has one shard here and
    // the writes were sequential, so batches take the writes in order.
    let stream_records: usize = data.batches.iter().map(|b| b.records).sum();
    assert!(
        data.batches
            .iter()
            .all(|b| !b.failed && b.invoked.is_some()),
        "no stream batch failed"
    );
    assert_eq!(
        stream_records,
        writes.len(),
        "one stream record per write, each in exactly one batch"
    );
    let mut batch_of = HashMap::new();
    let mut index = 0;
    for (b, batch) in data.batches.iter().enumerate() {
        for (key, _) in &writes[index..index + batch.records] {
            batch_of.insert(key.clone(), b);
        }
        index += batch.records;
    }
    let written: HashMap<TransitionId, Instant> = writes.into_iter().collect();

    let ms = |later: Instant, earlier: Instant| -> f64 {
        if later >= earlier {
            (later - earlier).as_secs_f64() * 1000.0
        } else {
            -(earlier - later).as_secs_f64() * 1000.0
        }
    };
    let mut result = RunResult {
        label: label.to_owned(),
        transitions: transitions.len(),
        write_seconds,
        events: expected.len(),
        duplicates: ledger.requests - ledger.first.len(),
        total: Vec::new(),
        runner_asleep: Vec::new(),
        in_get_records: Vec::new(),
        in_previous_ingest: Vec::new(),
        in_ingest: Vec::new(),
        after_ingest: Vec::new(),
        batches: data.batches.len(),
        batch_records: data.batches.iter().map(|b| b.records as f64).collect(),
        batch_ms: data
            .batches
            .iter()
            .map(|b| ms(b.returned, b.invoked.unwrap()))
            .collect(),
        calls: data.calls,
    };
    // The stream runner works in sequence: GetRecords calls and ingest
    // invocations; in between it waits for its next poll (POLL_INTERVAL
    // after the previous one started, as Lambda polls a shard 4 times a second).
    let ingests: Vec<(Instant, Instant)> = data
        .batches
        .iter()
        .map(|b| (b.invoked.unwrap(), b.returned))
        .collect();
    let overlap = |intervals: &[(Instant, Instant)], from: Instant, to: Instant| -> f64 {
        intervals
            .iter()
            .filter(|&&(start, end)| start < to && end > from)
            .map(|&(start, end)| ms(end.min(to), start.max(from)))
            // An empty float sum is -0.0; print it as 0.
            .sum::<f64>()
            + 0.0
    };
    for event in &expected {
        let key = (event.1.clone(), event.2.clone());
        let (write, receipt) = (written[&key], ledger.first[event]);
        let batch = &data.batches[batch_of[&key]];
        let invoked = batch.invoked.unwrap();
        result.total.push(ms(receipt, write));
        let get_records = overlap(&data.get_records, write, invoked);
        let previous_ingest = overlap(&ingests, write, invoked);
        result.in_get_records.push(get_records);
        result.in_previous_ingest.push(previous_ingest);
        result
            .runner_asleep
            .push(ms(invoked, write) - get_records - previous_ingest);
        result.in_ingest.push(ms(batch.returned, invoked));
        result.after_ingest.push(ms(receipt, batch.returned));
    }
    drop(receivers);
    result
}

// --------------------------------------------------------------- report --

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn report(runs: &[RunResult], pace: Duration) {
    println!();
    println!(
        "Pace: {} ms pause between writes; {POLLERS} pollers per delivery queue.",
        pace.as_millis()
    );
    println!();
    println!(
        "| stream batching window | transitions | writes/s | events | p50 ms | p90 ms | p99 ms | max ms | mean ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in runs {
        let t = sorted(&r.total);
        println!(
            "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r.label,
            r.transitions,
            r.transitions as f64 / r.write_seconds,
            r.events,
            percentile(&t, 50.0),
            percentile(&t, 90.0),
            percentile(&t, 99.0),
            t.last().copied().unwrap_or(f64::NAN),
            mean(&t),
        );
    }
    println!();
    println!(
        "Per event, where the time goes (ms; the means add up to the end-to-end mean; \
         the first three rows are the time from the write to the ingest invocation):"
    );
    println!();
    println!("| stream batching window | segment | p50 | p90 | p99 | mean |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for r in runs {
        for (segment, values) in [
            (
                "stream runner asleep (idle polls, pauses within the window)",
                &r.runner_asleep,
            ),
            (
                "stream runner in GetRecords (incl. the window's polls)",
                &r.in_get_records,
            ),
            (
                "stream runner in the previous batch's ingest",
                &r.in_previous_ingest,
            ),
            (
                "ingest invoked → returned (Query, SendMessageBatch)",
                &r.in_ingest,
            ),
            (
                "ingest returned → verified receipt (ReceiveMessage, delivery, POST)",
                &r.after_ingest,
            ),
        ] {
            let s = sorted(values);
            println!(
                "| {} | {segment} | {:.0} | {:.0} | {:.0} | {:.0} |",
                r.label,
                percentile(&s, 50.0),
                percentile(&s, 90.0),
                percentile(&s, 99.0),
                mean(&s),
            );
        }
    }
    println!();
    println!(
        "| stream batching window | stream batches | records per batch (mean / max) | ingest ms per batch (p50 / p99) | duplicate deliveries |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for r in runs {
        let records = sorted(&r.batch_records);
        let ms = sorted(&r.batch_ms);
        println!(
            "| {} | {} | {:.1} / {:.0} | {:.0} / {:.0} | {} |",
            r.label,
            r.batches,
            mean(&records),
            records.last().copied().unwrap_or(f64::NAN),
            percentile(&ms, 50.0),
            percentile(&ms, 99.0),
            r.duplicates,
        );
    }
    println!();
    println!("AWS SDK calls to the emulator (ms per call, request to parsed response):");
    println!();
    println!("| stream batching window | operation | calls | p50 | p90 | p99 | mean |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for r in runs {
        for (operation, values) in &r.calls {
            let s = sorted(values);
            println!(
                "| {} | {operation} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                r.label,
                s.len(),
                percentile(&s, 50.0),
                percentile(&s, 90.0),
                percentile(&s, 99.0),
                mean(&s),
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
pub async fn bench() {
    install_tracing();
    let pace = Duration::from_millis(
        std::env::var("LATENCY_PACE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    );
    let mut runs = Vec::new();
    for window in [None, Some(Duration::from_secs(1))] {
        let sdk = emulator::sdk_config().await;
        let pipeline = Pipeline::build(&sdk, workload::pipeline_config(None, window))
            .await
            .expect("pipeline builds");
        let source = pipeline
            .stack
            .mappings_of(ids::INGEST_FUNCTION)
            .find(|m| m.is_stream())
            .expect("the stream mapping")
            .clone();
        let label = match window {
            None => format!("{} s (template)", source.batching_window.as_secs()),
            Some(_) => format!("{} s", source.batching_window.as_secs()),
        };
        eprintln!(
            "latency: window {label}, batch size {}, pace {} ms ...",
            source.batch_size,
            pace.as_millis()
        );
        let result = run(&label, pipeline, pace).await;
        eprintln!(
            "latency: window {label}: {} events from {} transitions written in {:.1} s",
            result.events, result.transitions, result.write_seconds
        );
        runs.push(result);
    }
    report(&runs, pace);
}
