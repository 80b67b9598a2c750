//! Failing endpoints through the whole local pipeline (deployed stack,
//! queue runners, the prober on its schedule, the API handler), against
//! the emulator and real loopback receivers: the breaker opens and parks
//! events, probes find the endpoint back and the parked events drain in
//! arrival order; an endpoint back after an outage of several probe
//! intervals gets every parked job event within a bounded time, each job's
//! states in order, and so does a customer's recover; an endpoint failing
//! too long is disabled, announced on the operational bus and drained when
//! enabled; exhausted events are listed and recovered through the API, by
//! their owner only.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use local_infra::simulate::{self, PlannedJob, Simulator};
use local_stack::pipeline::{Pipeline, PipelineConfig};
use serde_json::{Value, json};
use shared::domain::health::BreakerState;
use shared::domain::message::{group_id, test_event_message};
use shared::domain::subscription::{Subscription, SubscriptionStatus};
use shared::storage::parked::{Order, ParkedEvents, ParkedQuery, ParkedStatus};
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::api::ApiRequest;
use test_kit::emulator;
use test_kit::receiver::{AcceptedEvents, Receiver, Reply};
use test_kit::stack::{self, ids};
use tokio::sync::watch;
use tokio::task::JoinSet;

const DEADLINE: Duration = Duration::from_secs(90);

/// A running pipeline on a fresh stack with `parameters`, the prober every
/// second, and one subscription of a fresh company to `url`.
struct Running {
    pipeline: Pipeline,
    store: SubscriptionStore,
    parked: ParkedEvents,
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    company: String,
    sub: Subscription,
    stop: watch::Sender<bool>,
    runners: JoinSet<()>,
    audit: test_kit::iam::Audit,
}

impl Running {
    async fn start(parameters: &[(&str, &str)], url: &str) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,aws=warn,hyper=warn")
            .with_test_writer()
            .try_init();
        let audit = test_kit::iam::Audit::start();
        let sdk = audit.sdk().await;
        let mut config = PipelineConfig::isolated(
            parameters,
            &[
                ("REQUEST_TIMEOUT_MS", "1500"),
                ("CONNECT_TIMEOUT_MS", "1500"),
                ("SUBSCRIPTION_CACHE_TTL_SECONDS", "0"),
                ("DRAIN_WINDOW_SECONDS", "5"),
                // What is due before the next run, a second away.
                ("PROBE_LOOKAHEAD_SECONDS", "1"),
            ],
        );
        config.schedule_interval = Some(Duration::from_secs(1));
        let pipeline = Pipeline::build(&sdk, config).await.unwrap();
        let store = pipeline.subscription_store().unwrap();
        let parked = pipeline.parked_events().unwrap();
        let company = emulator::unique_name("acme");
        let (sub, _) = stack::subscribe(&store, &pipeline.secrets, &company, url).await;
        let (stop, shutdown) = watch::channel(false);
        let runners = pipeline.start(shutdown).await.unwrap();
        Self {
            pipeline,
            store,
            parked,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            events: aws_sdk_eventbridge::Client::new(&sdk),
            company,
            sub,
            stop,
            runners,
            audit,
        }
    }

    /// Queues `n` test events whose times are `spacing` apart, ending now;
    /// returns their `webhook-id`s oldest first.
    async fn send_events(&self, n: usize, spacing: chrono::Duration) -> Vec<String> {
        let now = Utc::now();
        let mut keys = Vec::new();
        for i in 0..n {
            let at = now - spacing * i32::try_from(n - 1 - i).unwrap();
            let (key, body) = test_event_message(&self.company, &self.sub.subscription_id, at);
            self.sqs
                .send_message()
                .queue_url(self.pipeline.stack.queue_url(ids::DELIVERY_QUEUE).unwrap())
                .message_group_id(group_id(&self.company))
                .message_body(body)
                .send()
                .await
                .unwrap();
            keys.push(key);
        }
        keys
    }

    async fn current(&self) -> Subscription {
        self.store
            .get(&self.company, &self.sub.subscription_id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn parked_count(&self) -> u64 {
        self.parked
            .count_parked(&self.company, &self.sub.subscription_id, 10_000)
            .await
            .unwrap()
    }

    /// Awaits `condition` on the stored subscription.
    async fn await_sub(
        &self,
        what: &str,
        condition: impl Fn(&Subscription) -> bool,
    ) -> Subscription {
        let started = Instant::now();
        loop {
            let sub = self.current().await;
            if condition(&sub) {
                return sub;
            }
            assert!(started.elapsed() < DEADLINE, "{what}: {sub:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn await_parked(&self, n: u64) {
        let started = Instant::now();
        while self.parked_count().await != n {
            assert!(
                started.elapsed() < DEADLINE,
                "{} parked, not {n}",
                self.parked_count().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn api(
        &self,
        method: &str,
        path: &str,
        company: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = ApiRequest::new(method, path, company);
        if let Some(body) = body {
            request = request.json(&body);
        }
        test_kit::api::status_and_json(&self.pipeline.app.handle(request.build()).await)
    }

    /// A queue of the emulator subscribed, through a rule on the stack's
    /// operational bus, to every operational event.
    async fn operational_events_queue(&self) -> String {
        let bus = self
            .pipeline
            .stack
            .function(ids::PROBER_FUNCTION)
            .unwrap()
            .environment["EVENT_BUS_NAME"]
            .clone();
        let queue_url = emulator::fresh_queue(&self.sqs, "operational").await;
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        let rule = emulator::unique_name("operational");
        self.events
            .put_rule()
            .name(&rule)
            .event_bus_name(&bus)
            .event_pattern(json!({"source": [shared::operational::SOURCE]}).to_string())
            .send()
            .await
            .unwrap();
        self.events
            .put_targets()
            .rule(&rule)
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        queue_url
    }

    async fn stop(mut self) {
        self.stop.send(true).unwrap();
        while self.runners.join_next().await.is_some() {}
        self.audit.assert_granted(&self.pipeline.stack);
    }
}

/// Awaits operational events on `queue_url` until one of `event_type`
/// arrives; returns every `detail` seen so far.
async fn await_operational(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    seen: &mut Vec<Value>,
    event_type: &str,
) -> Value {
    let started = Instant::now();
    loop {
        if let Some(found) = seen.iter().find(|d| d["type"] == event_type) {
            return found.clone();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no {event_type} among {seen:?}"
        );
        for m in emulator::take(sqs, queue_url, 1).await {
            let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            assert_eq!(envelope["source"], shared::operational::SOURCE);
            assert_eq!(envelope["detail-type"], envelope["detail"]["type"]);
            seen.push(envelope["detail"].clone());
        }
    }
}

fn webhook_ids(received: &[test_kit::receiver::Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.header("webhook-id").unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_gets_only_probes_then_every_parked_event_once_in_arrival_order() {
    let receiver = Receiver::http().await;
    receiver.set_policy(|_| Reply::status(503));
    let running = Running::start(
        &[
            ("RetrySchedule", "1s,1s,1s"),
            ("BreakerFailures", "3"),
            ("BreakerMinFailingSeconds", "0"),
            ("DrainRatePerSecond", "1"),
        ],
        &receiver.url("/hook"),
    )
    .await;
    let ops = running.operational_events_queue().await;
    let keys = running.send_events(6, chrono::Duration::seconds(1)).await;

    // The breaker opens; every event ends up parked, none retried forever.
    let open = running
        .await_sub("breaker open", |s| s.health.breaker.is_open())
        .await;
    assert!(open.health.consecutive_failures >= 3, "{:?}", open.health);
    running.await_parked(6).await;
    let before_open = receiver.received().len();
    assert!(before_open <= 6 * 4, "{before_open} attempts");
    let mut seen = Vec::new();
    let failing = await_operational(&running.sqs, &ops, &mut seen, "endpoint.failing").await;
    assert_eq!(
        failing["subscription_id"],
        running.sub.subscription_id.as_str()
    );
    assert_eq!(failing["company_id"], running.company.as_str());

    // While it is open only probes reach it: the oldest parked event, on
    // the backoff.
    let probes_seen = receiver.received().len() + 2;
    receiver.wait_for(probes_seen, DEADLINE).await;
    // The first may have left before the oldest event was parked (it was
    // still on its retry schedule); every later one probes with it.
    let probes: Vec<String> = webhook_ids(&receiver.received()[before_open..]);
    assert!(
        probes[1..].iter().all(|id| *id == keys[0]),
        "only the oldest event probes: {probes:?}"
    );
    assert_eq!(
        running.parked_count().await,
        6,
        "a failed probe stays parked"
    );

    // It comes back: the next probe succeeds and the parked events drain,
    // oldest first, each once.
    let back_at = receiver.received().len();
    receiver.set_policy(|_| Reply::status(204));
    let got = receiver.wait_for(back_at + 6, DEADLINE).await;
    let delivered = webhook_ids(&got[back_at..]);
    assert_eq!(delivered, keys, "every parked event once, in arrival order");
    let recovered = await_operational(&running.sqs, &ops, &mut seen, "endpoint.recovered").await;
    assert_eq!(
        recovered["subscription_id"],
        running.sub.subscription_id.as_str()
    );
    let healthy = running
        .await_sub("drain finished", |s| s.health.probe_lane.is_none())
        .await;
    assert_eq!(healthy.health.breaker, BreakerState::Closed);
    assert_eq!(healthy.health.consecutive_failures, 0);
    assert!(healthy.health.last_success_at.is_some());
    assert_eq!(running.parked_count().await, 0);
    // No duplicates arrived meanwhile.
    assert_eq!(receiver.received().len(), back_at + 6);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_too_long_is_disabled_announced_and_enable_drains_it() {
    let receiver = Receiver::http().await;
    receiver.set_policy(|_| Reply::status(500));
    let running = Running::start(
        &[
            ("RetrySchedule", "1s"),
            ("BreakerFailures", "1"),
            ("BreakerMinFailingSeconds", "0"),
            ("DisableAfterSeconds", "3"),
            ("DrainRatePerSecond", "100"),
        ],
        &receiver.url("/hook"),
    )
    .await;
    let ops = running.operational_events_queue().await;
    let mut keys = running
        .send_events(3, chrono::Duration::milliseconds(10))
        .await;

    let disabled = running
        .await_sub("disabled", |s| s.status == SubscriptionStatus::Disabled)
        .await;
    assert!(disabled.disabled_at.is_some() && disabled.health.probe_lane.is_none());
    let mut seen = Vec::new();
    let event = await_operational(&running.sqs, &ops, &mut seen, "endpoint.disabled").await;
    assert_eq!(
        event["subscription_id"],
        running.sub.subscription_id.as_str()
    );
    assert_eq!(event["parked_events"], 3);
    assert!(event["failing_since"].is_string() && event["last_failure"]["status"] == 500);

    // Events for a disabled subscription are kept too.
    keys.extend(running.send_events(1, chrono::Duration::zero()).await);
    running.await_parked(4).await;
    let (status, listed) = running
        .api("GET", "/webhooks?status=disabled", &running.company, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["data"][0]["id"],
        running.sub.subscription_id.as_str()
    );

    receiver.set_policy(|_| Reply::status(200));
    let hits = receiver.received().len();
    let path = format!("/webhooks/{}/enable", running.sub.subscription_id);
    let (status, body) = running.api("POST", &path, &running.company, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(body["health"]["state"], "closed");
    await_operational(&running.sqs, &ops, &mut seen, "endpoint.enabled").await;
    let got = receiver.wait_for(hits + 4, DEADLINE).await;
    let delivered: BTreeSet<String> = webhook_ids(&got[hits..]).into_iter().collect();
    assert_eq!(
        delivered,
        keys.into_iter().collect(),
        "enable delivers every parked event"
    );
    running.await_parked(0).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_events_are_listed_and_recovered_by_window_and_only_by_their_owner() {
    let receiver = Receiver::http().await;
    receiver.set_policy(|_| Reply::status(500));
    let running = Running::start(
        &[("RetrySchedule", "1s"), ("BreakerFailures", "1000")],
        &receiver.url("/hook"),
    )
    .await;
    let ops = running.operational_events_queue().await;
    // Four events a minute apart, oldest first.
    let keys = running.send_events(4, chrono::Duration::minutes(1)).await;
    let id = running.sub.subscription_id.clone();
    let list = format!("/webhooks/{id}/failed-events");

    let started = Instant::now();
    let listed = loop {
        let (status, body) = running.api("GET", &list, &running.company, None).await;
        assert_eq!(status, 200, "{body}");
        if body["data"].as_array().unwrap().len() == 4 {
            break body;
        }
        assert!(started.elapsed() < DEADLINE, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let newest_first: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["idempotency_key"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = keys.iter().map(String::as_str).collect();
    expected.reverse();
    assert_eq!(newest_first, expected);
    let first = &listed["data"][0];
    assert_eq!(first["status"], "failed");
    assert_eq!(first["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(first["attempts"][1]["status_code"], 500);
    assert_eq!(first["payload"]["idempotency_key"], keys[3].as_str());
    let mut seen = Vec::new();
    let exhausted =
        await_operational(&running.sqs, &ops, &mut seen, "message.attempt.exhausted").await;
    assert!(keys.contains(&exhausted["idempotency_key"].as_str().unwrap().to_owned()));
    assert_eq!(running.current().await.health.breaker, BreakerState::Closed);

    // Filters: by status and by time window (since inclusive, until not).
    let (_, parked) = running
        .api(
            "GET",
            &format!("{list}?status=parked"),
            &running.company,
            None,
        )
        .await;
    assert_eq!(parked["data"], json!([]));
    let arrived = |i: usize| -> DateTime<Utc> {
        listed["data"][3 - i]["arrived_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (since, until) = (arrived(1).to_rfc3339(), arrived(3).to_rfc3339());
    let window = format!(
        "{list}?since={}&until={}",
        urlencode(&since),
        urlencode(&until)
    );
    let (_, windowed) = running.api("GET", &window, &running.company, None).await;
    let in_window: Vec<&str> = windowed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(in_window, vec![keys[2].as_str(), keys[1].as_str()]);

    // Another company sees nothing and recovers nothing.
    let other = emulator::unique_name("globex");
    let recover = format!("/webhooks/{id}/recover");
    let window_body = json!({"since": since, "until": until});
    assert_eq!(running.api("GET", &list, &other, None).await.0, 404);
    assert_eq!(
        running
            .api("POST", &recover, &other, Some(window_body.clone()))
            .await
            .0,
        404
    );

    // Bad windows name their field.
    for (body, field) in [
        (json!({"since": "yesterday"}), "since"),
        (json!({"since": until, "until": since}), "until"),
        (
            json!({"since": (Utc::now() - chrono::Duration::days(31)).to_rfc3339()}),
            "since",
        ),
        (json!({"until": since}), "since"),
    ] {
        let (status, error) = running
            .api("POST", &recover, &running.company, Some(body))
            .await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }

    // Recover the window: exactly its two events arrive, once.
    receiver.set_policy(|_| Reply::status(200));
    let hits = receiver.received().len();
    let (status, result) = running
        .api(
            "POST",
            &recover,
            &running.company,
            Some(window_body.clone()),
        )
        .await;
    assert_eq!(status, 202, "{result}");
    assert_eq!(
        result,
        json!({"status": "queued", "recovered": 2, "not_recovered": 0, "continuation": null})
    );
    let got = receiver.wait_for(hits + 2, DEADLINE).await;
    let delivered: BTreeSet<String> = webhook_ids(&got[hits..]).into_iter().collect();
    assert_eq!(
        delivered,
        BTreeSet::from([keys[1].clone(), keys[2].clone()])
    );
    let (_, again) = running
        .api("POST", &recover, &running.company, Some(window_body))
        .await;
    assert_eq!(again["recovered"], 0, "recovering twice re-sends nothing");
    let (_, left) = running.api("GET", &list, &running.company, None).await;
    assert_eq!(left["data"].as_array().unwrap().len(), 2);
    running.stop().await;
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

/// Writes `jobs` jobs of the running company to the jobs table as fast as
/// the table takes them (many transitions share a second, the grain of a
/// stream record's time); returns the plan.
async fn write_jobs(running: &Running, jobs: usize) -> (Vec<PlannedJob>, usize) {
    let mut rng = fastrand::Rng::with_seed(7);
    let plan = simulate::plan(&running.company, jobs, &mut rng);
    let sdk = emulator::sdk_config().await;
    let simulator = Simulator::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        running.pipeline.stack.table(ids::JOBS_TABLE).unwrap(),
    );
    let transitions = simulator.run_plan(&plan, &mut rng).await.unwrap();
    (plan, transitions.len())
}

/// Awaits `n` accepted events, at most `within`; asserts none arrived
/// twice and each job's states arrived in the order the job went through
/// them.
async fn await_in_order(
    accepted: &AcceptedEvents,
    plan: &[PlannedJob],
    n: usize,
    within: Duration,
) {
    let started = Instant::now();
    loop {
        let distinct = accepted
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.webhook_id.clone())
            .collect::<BTreeSet<_>>()
            .len();
        if distinct >= n {
            break;
        }
        assert!(
            started.elapsed() < within,
            "{distinct} of {n} events arrived within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Delivery is at least once: an attempt whose answer was lost (a
    // timeout on a loaded machine) is sent again, later. The order is that
    // of each event's first arrival.
    let all = accepted.lock().unwrap().clone();
    let mut seen = BTreeSet::new();
    let got: Vec<_> = all.iter().filter(|e| seen.insert(&e.webhook_id)).collect();
    assert!(
        all.len() - got.len() <= 3,
        "{} events arrived twice",
        all.len() - got.len()
    );
    assert_eq!(got.len(), n, "{all:?}");
    let mut by_job: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in got {
        by_job.entry(&e.job_id).or_default().push(&e.state);
    }
    for job in plan {
        let expected: Vec<&str> = job.path.states().iter().map(|s| s.as_str()).collect();
        assert_eq!(
            by_job.get(job.job_id.as_str()),
            Some(&expected),
            "{} received its states out of order",
            job.job_id
        );
    }
}

/// The longest the test waits for a recovered endpoint's parked events:
/// the next probe (the interval's cap with its jitter), the drain's start
/// delay, the prober's one-second schedule, the events at the drain rate
/// and each job's later states a second apart; plus room for a slow
/// machine.
fn recovery_bound(probe_cap_secs: u64, events: usize, rate: usize, states: usize) -> Duration {
    let drain_start = shared::domain::health::DRAIN_START_DELAY.to_std().unwrap();
    Duration::from_secs_f64(probe_cap_secs as f64 * 1.2)
        + drain_start
        + Duration::from_secs(1)
        + Duration::from_secs((events / rate) as u64 + states as u64)
        + Duration::from_secs(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_after_an_outage_of_several_probe_intervals_every_job_gets_its_states_in_order_in_bounded_time()
 {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (receiver, accepted) = Receiver::down_until(Arc::clone(&up)).await;
    // The template's retry schedule (5 s, then 5 minutes and more): probes
    // no longer wait on it.
    let running = Running::start(
        &[
            ("BreakerFailures", "3"),
            ("BreakerMinFailingSeconds", "0"),
            ("ProbeIntervalMaxSeconds", "2"),
            ("DrainRatePerSecond", "10"),
        ],
        &receiver.url("/hook"),
    )
    .await;
    let (plan, events) = write_jobs(&running, 12).await;
    running.await_parked(events as u64).await;

    // Down for several probe intervals: each probe is one request.
    let down_since = receiver.received().len();
    receiver.wait_for(down_since + 3, DEADLINE).await;
    let probes = receiver.received()[down_since..].len();
    assert!(probes <= 4, "{probes} requests while parked: only probes");

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let bound = recovery_bound(2, events, 10, 4);
    await_in_order(&accepted, &plan, events, bound).await;
    running
        .await_sub("drain finished", |s| s.health.probe_lane.is_none())
        .await;
    assert_eq!(running.parked_count().await, 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_recover_delivers_every_job_s_states_in_order() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (receiver, accepted) = Receiver::down_until(Arc::clone(&up)).await;
    // The breaker never opens: every event uses up its two attempts and is
    // kept as failed.
    let running = Running::start(
        &[("RetrySchedule", "1s"), ("BreakerFailures", "10000")],
        &receiver.url("/hook"),
    )
    .await;
    // More events than one recover call takes (100): the second call's
    // must not overtake the first's.
    let (plan, events) = write_jobs(&running, 36).await;
    assert!(events > 100, "{events} events");
    let failed = ParkedQuery {
        status: Some(ParkedStatus::Failed),
        ..ParkedQuery::default()
    };
    let started = Instant::now();
    loop {
        let kept = running
            .parked
            .list(
                &running.company,
                &running.sub.subscription_id,
                &failed,
                Order::OldestFirst,
                1000,
                None,
            )
            .await
            .unwrap()
            .items
            .len();
        if kept == events {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "{kept} of {events} failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let since = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let recover = format!("/webhooks/{}/recover", running.sub.subscription_id);
    let mut body = json!({"since": since});
    let mut calls = 0;
    loop {
        calls += 1;
        let (status, out) = running
            .api("POST", &recover, &running.company, Some(body.clone()))
            .await;
        assert_eq!(status, 202, "{out}");
        match out["continuation"].as_str() {
            Some(c) => body = json!({"since": since, "continuation": c}),
            None => break,
        }
    }
    assert!(calls >= 2, "one call recovered {events} events");
    await_in_order(&accepted, &plan, events, DEADLINE).await;
    running.stop().await;
}
