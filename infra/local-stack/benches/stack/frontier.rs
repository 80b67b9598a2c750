//! The cost/latency frontier: the cost benchmark's workload at several
//! stream batching windows and two load levels, one table.
//!
//! For each load (the steady ~35 transitions a second of the latency and
//! cost benchmarks, and a burst of [`cost::BURST_WRITERS`] writers at once,
//! about ten times the rate) and each window (`FRONTIER_WINDOWS`, seconds,
//! default `0,0.25,0.5,1`), two runs on fresh stacks: healthy receivers,
//! then receivers failing 30 % of attempts. Each row gives, from the
//! healthy run, the p50 and p99 from a transition's write to the first
//! verified receipt of each of its events, the $ per million delivered and
//! the AWS requests per event; and from the failing run, its $ per million.
//! AWS's DynamoDB event source mapping takes whole seconds only: fractional
//! windows are set on the local stream runner alone, to show what lies
//! between.
//!
//! `FRONTIER_PARAMS=Name=Value,...` adds stack parameters to every run
//! (e.g. the delivery mapping's batching), `FRONTIER_LOADS=steady|burst`
//! runs one load only, `FRONTIER_FLAKY=0` skips the failing runs.
//!
//! Run: `make bench-frontier` (about 25 minutes after the build).

use std::time::Duration;

use crate::cost::{self, Load, PriceFile, Receivers, RunResult, Scenario};
use local_infra::cloudformation::ids::{DELIVERY_FUNCTION, INGEST_FUNCTION};

/// One point of the frontier.
struct Point {
    load: Load,
    window: Duration,
    healthy: RunResult,
    flaky: Option<RunResult>,
}

/// The `q` quantile of `values` (nearest rank).
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// $ per million delivered (or, with nothing delivered, per million events).
fn per_million(r: &RunResult, prices: &PriceFile, template: &serde_yaml::Value) -> f64 {
    let total: f64 = cost::bill(r, prices, template).iter().map(|l| l.usd).sum();
    let per = if r.delivered > 0 {
        r.delivered
    } else {
        r.events
    };
    total / per.max(1) as f64 * 1e6
}

/// Mean records (messages) per invocation of `function`.
fn per_invocation(r: &RunResult, function: &str, items: u64) -> f64 {
    let count = r.invocations.get(function).map_or(0, |s| s.count);
    items as f64 / count.max(1) as f64
}

fn parse_list<T>(name: &str, default: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).unwrap_or_else(|| panic!("{name}: cannot read {s:?}")))
        .collect()
}

fn load_name(load: Load) -> &'static str {
    match load {
        Load::Steady => "steady",
        Load::Burst => "burst",
    }
}

pub fn bench() {
    cost::install_tracing();
    let receiver_delay = Duration::from_millis(cost::setting("COST_RECEIVER_MS", 100));
    let windows = parse_list("FRONTIER_WINDOWS", "0,0.25,0.5,1", |s| {
        s.parse::<f64>().ok().map(Duration::from_secs_f64)
    });
    let loads = parse_list("FRONTIER_LOADS", "steady,burst", |s| match s {
        "steady" => Some(Load::Steady),
        "burst" => Some(Load::Burst),
        _ => None,
    });
    let parameters = parse_list("FRONTIER_PARAMS", "", |s| {
        s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
    });
    let flaky = std::env::var("FRONTIER_FLAKY").map_or(true, |v| v != "0");
    let prices = PriceFile::load();
    let template_text = std::fs::read_to_string(local_infra::cloudformation::template_path())
        .expect("template.yaml reads");
    let template: serde_yaml::Value =
        serde_yaml::from_str(&template_text).expect("template parses");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let eventbridge = prices.cost("eventbridge_custom_events", 1e6)
        + prices.cost("eventbridge_api_destinations", 1e6);
    let mut points = Vec::new();
    for &load in &loads {
        for &window in &windows {
            let scenario = |label: &str, receivers| Scenario {
                label: format!(
                    "{label}, {} load, window {:.2} s",
                    load_name(load),
                    window.as_secs_f64()
                ),
                receivers,
                window: Some(window),
                load,
                parameters: parameters.clone(),
            };
            let healthy = scenario("healthy", Receivers::Healthy);
            eprintln!("frontier: {} ...", healthy.label);
            let healthy = runtime.block_on(cost::run(&healthy, receiver_delay));
            let flaky = flaky.then(|| {
                let s = scenario("30 % failing", Receivers::Flaky);
                eprintln!("frontier: {} ...", s.label);
                runtime.block_on(cost::run(&s, receiver_delay))
            });
            let point = Point {
                load,
                window,
                healthy,
                flaky,
            };
            // Each row as soon as it is measured, so a long run shows progress.
            eprintln!("{}", row(&point, &prices, &template, eventbridge));
            points.push(point);
        }
    }
    println!();
    println!(
        "Receivers answer after {} ms. Stack parameters on top of the template's: {}.",
        receiver_delay.as_millis(),
        if parameters.is_empty() {
            "none".to_owned()
        } else {
            parameters
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!();
    println!("{HEADER}");
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for p in &points {
        println!("{}", row(p, &prices, &template, eventbridge));
    }
}

const HEADER: &str = "| load | stream window | transitions/s | events delivered | p50 ms | p99 ms | \
    $ per million healthy | $ per million, 30 % failing | AWS requests per event | \
    stream records per ingest | messages per delivery invocation | EventBridge API destinations |";

/// One line of the table.
fn row(p: &Point, prices: &PriceFile, template: &serde_yaml::Value, eventbridge: f64) -> String {
    let h = &p.healthy;
    format!(
        "| {} | {}{} s | {:.0} | {} of {} | {:.0} | {:.0} | {:.3} | {} | {:.2} | {:.1} | {:.1} | {:.2} |",
        load_name(p.load),
        p.window.as_secs_f64(),
        if p.window.subsec_nanos() == 0 {
            ""
        } else {
            " (local only)"
        },
        h.transitions as f64 / h.write_seconds.max(0.001),
        h.delivered,
        h.events,
        quantile(&h.latencies_ms, 0.5),
        quantile(&h.latencies_ms, 0.99),
        per_million(h, prices, template),
        p.flaky.as_ref().map_or("-".to_owned(), |f| format!(
            "{:.3} ({} kept for recovery)",
            per_million(f, prices, template),
            f.kept
        )),
        cost::requests_per_event(h),
        per_invocation(h, INGEST_FUNCTION, h.transitions as u64),
        per_invocation(h, DELIVERY_FUNCTION, h.attempts as u64),
        eventbridge,
    )
}
