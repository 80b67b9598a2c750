//! Recovery after an outage, through the whole local stack with the
//! template's defaults (retry schedule 5 s, 5 min, ...; probes capped at
//! `ProbeIntervalMaxSeconds`, 60 s; the prober on the template's one-minute
//! schedule; drain 10 events a second): one subscription's endpoint answers
//! 503 while 20 jobs make their transitions, stays down for a while, then
//! answers 204 again.
//!
//! Reported: requests that reached the endpoint while it was down, the time
//! from "the endpoint answers again" to the first parked event delivered
//! and to the last, and the jobs whose states arrived out of order (first
//! arrival of each `webhook-id`). Only `BreakerMinFailingSeconds` is set (to
//! 0), so the breaker opens within seconds instead of after two minutes.
//!
//! Run: `make bench-recovery` (or `infra/with-emulator.sh cargo bench -p
//! local-stack --bench recovery`). Takes about four minutes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use local_infra::cloudformation::ids;
use local_infra::simulate::{self, Simulator};
use local_stack::pipeline::{Pipeline, PipelineConfig};
use test_kit::receiver::Receiver;
use test_kit::{emulator, stack};

const JOBS: usize = 20;
/// How long the endpoint stays down after every event is parked.
const DOWN_AFTER_PARKED: Duration = Duration::from_secs(90);
const GIVE_UP: Duration = Duration::from_secs(600);

#[tokio::main]
pub async fn bench() {
    let sdk = emulator::sdk_config().await;
    let up = Arc::new(AtomicBool::new(false));
    let (receiver, accepted) = Receiver::down_until(Arc::clone(&up)).await;
    let config = PipelineConfig::isolated(&[("BreakerMinFailingSeconds", "0")], &[]);
    let pipeline = Pipeline::build(&sdk, config).await.unwrap();
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let company = emulator::unique_name("recovery");
    let store = pipeline.subscription_store().unwrap();
    let (sub, _) =
        stack::subscribe(&store, &pipeline.secrets, &company, &receiver.url("/hook")).await;
    let parked = pipeline.parked_events().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut runners = pipeline.start(shutdown).await.unwrap();

    let down_at = Instant::now();
    let mut rng = fastrand::Rng::with_seed(22);
    let plan = simulate::plan(&company, JOBS, &mut rng);
    let transitions = Simulator::new(dynamo, pipeline.stack.table(ids::JOBS_TABLE).unwrap())
        .run_plan(&plan, &mut rng)
        .await
        .unwrap()
        .len();
    loop {
        let count = parked
            .count_parked(&company, &sub.subscription_id, u64::MAX)
            .await
            .unwrap();
        if count as usize == transitions {
            break;
        }
        assert!(
            down_at.elapsed() < GIVE_UP,
            "{count} of {transitions} parked"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let parked_after = down_at.elapsed();
    tokio::time::sleep(DOWN_AFTER_PARKED).await;
    let while_down = receiver.received().len();
    let outage = down_at.elapsed();

    up.store(true, Ordering::SeqCst);
    let back = Instant::now();
    let distinct = || {
        accepted
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.webhook_id.clone())
            .collect::<BTreeSet<_>>()
            .len()
    };
    while distinct() < transitions {
        assert!(
            back.elapsed() < GIVE_UP,
            "{} of {transitions} delivered",
            distinct()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = accepted.lock().unwrap().clone();
    let mut seen = BTreeSet::new();
    let first: Vec<_> = got.iter().filter(|e| seen.insert(&e.webhook_id)).collect();
    let mut by_job: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in &first {
        by_job.entry(&e.job_id).or_default().push(&e.state);
    }
    let out_of_order = plan
        .iter()
        .filter(|job| {
            let expected: Vec<&str> = job.path.states().iter().map(|s| s.as_str()).collect();
            by_job.get(job.job_id.as_str()) != Some(&expected)
        })
        .count();
    let since_back = |at: Instant| at.duration_since(back).as_secs_f64();

    println!("recovery through the local stack, template defaults (BreakerMinFailingSeconds=0)");
    println!(
        "  {JOBS} jobs, {transitions} transitions, all parked {:.1} s after the outage began",
        parked_after.as_secs_f64()
    );
    println!(
        "  outage {:.0} s: {while_down} requests reached the endpoint while it was down",
        outage.as_secs_f64()
    );
    println!(
        "  endpoint back -> first parked event delivered: {:.1} s",
        since_back(first[0].at)
    );
    println!(
        "  endpoint back -> last parked event delivered:  {:.1} s",
        since_back(first[first.len() - 1].at)
    );
    println!(
        "  duplicates: {}; jobs out of order: {out_of_order} of {JOBS}",
        got.len() - first.len()
    );
    stop.send(true).unwrap();
    while runners.join_next().await.is_some() {}
}
