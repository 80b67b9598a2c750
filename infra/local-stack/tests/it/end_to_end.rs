//! The whole pipeline through the local runner, against the local AWS
//! emulator and real loopback receivers: job items written to the jobs
//! table travel the stream, the ingest handler, the delivery queues and the
//! delivery handler, and platform events published as CloudEvents by two
//! sources (the engine and the apps service) travel the ingress queue and
//! the platform ingest handler the same way, to receivers that fail about
//! 30 % of attempts (errors,
//! timeouts, dropped connections), plus one receiver that is always down.
//! One more receiver is down for the first 20 seconds and then comes back:
//! its breaker opens, its events are parked, a probe finds it back and they
//! drain to it. Nothing may be lost: every expected (subscription,
//! transition) pair is received and verified at least once, or, for the
//! receiver that is always down, is kept as parked or failed and listed by
//! the API; the dead-letter queue stays empty. Every payload received, and
//! every one kept, is valid against the event catalogue's JSON Schema of
//! its type. Every AWS call each function made is granted by its IAM
//! policy in the template.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::Utc;
use local_infra::simulate::{self, Simulator, Transition};
use local_stack::pipeline::{Pipeline, PipelineConfig};
use serde_json::Value;
use shared::domain::cloud_event::PlatformEvent;
use shared::domain::filters::{Filters, FiltersInput};
use shared::domain::message::DeliveryMessage;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::emulator;
use test_kit::receiver::{Received, Receiver, Reply};
use test_kit::stack::ids;

const COMPANIES: usize = 20;
const JOBS_PER_COMPANY: usize = 20;
const FLAKY_RECEIVERS: usize = 4;
const FAILURE_RATE: f64 = 0.3;
/// Twelve attempts a second apart: an event of a receiver that fails 30 %
/// of attempts at random is dead-lettered with probability 0.3^12 ≈ 5e-7.
const SCHEDULE: &str = "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s";
const DEADLINE: Duration = Duration::from_secs(600);
/// How long the receiver that comes back is down.
const OUTAGE: Duration = Duration::from_secs(20);

/// One event: which subscription, which job, which state; or, for a
/// platform event, which subscription, which `webhook-id`, which type.
type EventId = (String, String, String);

/// Platform events each company's sources publish: engine events and app
/// events of two apps, alternating.
const PLATFORM_EVENTS_PER_COMPANY: usize = 10;

#[derive(Default)]
struct Accepted {
    /// Verified events answered 2xx, with their `webhook-id`.
    events: Vec<(EventId, String)>,
    /// Requests whose signature did not verify.
    bad_signatures: usize,
    /// Verified payloads checked against the catalogue's schemas.
    schema_checked: usize,
    /// How payloads broke their type's schema.
    schema_violations: Vec<String>,
}

/// A validator per catalogued event type.
fn catalogue_validators() -> HashMap<String, jsonschema::Validator> {
    shared::catalogue::event_types()
        .iter()
        .map(|t| {
            let v = jsonschema::options()
                .should_validate_formats(true)
                .build(&t.schema)
                .expect("catalogue schemas compile");
            (t.name.clone(), v)
        })
        .collect()
}

/// How `payload` breaks the schema of its `type` (empty when it is valid).
fn schema_violations(
    validators: &HashMap<String, jsonschema::Validator>,
    payload: &Value,
) -> Vec<String> {
    let ty = payload["type"].as_str().unwrap_or_default();
    match validators.get(ty) {
        None => vec![format!("type {ty:?} is not in the catalogue")],
        Some(v) => v
            .iter_errors(payload)
            .map(|e| format!("{ty} at {}: {e}", e.instance_path()))
            .collect(),
    }
}

struct Ledger {
    secrets: Mutex<HashMap<String, String>>,
    schemas: HashMap<String, jsonschema::Validator>,
    accepted: Mutex<Accepted>,
    changed: tokio::sync::Notify,
}

impl Ledger {
    /// Records a verified request as accepted (204), or a bad signature (401).
    fn accept(&self, req: &Received) -> Reply {
        let Some(event) = self.verify(req) else {
            self.accepted.lock().unwrap().bad_signatures += 1;
            return Reply::status(401);
        };
        let id = req.header("webhook-id").unwrap_or_default().to_owned();
        let payload: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let violations = schema_violations(&self.schemas, &payload);
        let mut accepted = self.accepted.lock().unwrap();
        accepted.schema_checked += 1;
        accepted.schema_violations.extend(violations);
        accepted.events.push((event, id));
        drop(accepted);
        self.changed.notify_waiters();
        Reply::status(204)
    }

    /// Verifies a request; returns the event it carries.
    fn verify(&self, req: &Received) -> Option<EventId> {
        req.verified_event(|sub| {
            let secret = self.secrets.lock().unwrap().get(sub)?.clone();
            Some(signing::key_bytes(&secret))
        })
    }
}

/// A receiver that fails about 30 % of attempts: a 500, a hang past the
/// delivery timeout, or a dropped connection, a third each.
async fn flaky(ledger: &Arc<Ledger>, seed: u64) -> Receiver {
    let receiver = Receiver::http().await;
    let rng = Mutex::new(fastrand::Rng::with_seed(seed));
    let ledger = Arc::clone(ledger);
    receiver.set_handler(move |_, req| {
        let roll = rng.lock().unwrap().f64();
        if roll < FAILURE_RATE / 3.0 {
            return Reply::status(500);
        }
        if roll < 2.0 * FAILURE_RATE / 3.0 {
            return Reply::Hang;
        }
        if roll < FAILURE_RATE {
            return Reply::Drop;
        }
        ledger.accept(req)
    });
    receiver
}

/// A receiver that answers 503 for [`OUTAGE`], then accepts verified events.
async fn back_after_outage(ledger: &Arc<Ledger>) -> Receiver {
    let receiver = Receiver::http().await;
    let ledger = Arc::clone(ledger);
    let started = Instant::now();
    receiver.set_handler(move |_, req| {
        if started.elapsed() < OUTAGE {
            return Reply::status(503);
        }
        ledger.accept(req)
    });
    receiver
}

/// The events the API lists as parked or failed for `sub`, every page.
async fn kept_events(pipeline: &Pipeline, sub: &Subscription) -> Vec<(EventId, String)> {
    let mut kept = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!(
            "/webhooks/{}/failed-events?limit=100&cursor={cursor}",
            sub.subscription_id
        );
        let request = test_kit::api::ApiRequest::new("GET", &path, &sub.company_id).build();
        let response = pipeline.app.handle(request).await;
        assert_eq!(response.status(), 200);
        let lambda_http::Body::Text(text) = response.body() else {
            panic!("a JSON body");
        };
        let page: Value = serde_json::from_str(text).unwrap();
        let validators = catalogue_validators();
        for e in page["data"].as_array().unwrap() {
            assert!(e["status"] == "parked" || e["status"] == "failed", "{e}");
            let payload = &e["payload"];
            let violations = schema_violations(&validators, payload);
            assert!(violations.is_empty(), "a kept payload: {violations:?}");
            let key = e["idempotency_key"].as_str().unwrap().to_owned();
            let data = &payload["data"];
            let (first, second) = match (data["job_id"].as_str(), data["state"].as_str()) {
                (Some(job), Some(state)) => (job.to_owned(), state.to_owned()),
                _ => (
                    key.clone(),
                    payload["type"].as_str().unwrap_or_default().to_owned(),
                ),
            };
            kept.push(((sub.subscription_id.clone(), first, second), key));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return kept,
        }
    }
}

/// Subscriptions with varied filters for one company.
fn filters_for(i: usize, jobs: &[simulate::PlannedJob]) -> Vec<FiltersInput> {
    let some_ids: Vec<String> = jobs.iter().step_by(3).map(|j| j.job_id.clone()).collect();
    let input = |job_ids: Option<Vec<String>>, types: Option<&[&str]>, states: Option<&[&str]>| {
        FiltersInput {
            job_ids,
            job_types: types.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            states: states.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            ..FiltersInput::default()
        }
    };
    let types: Vec<&str> = jobs
        .iter()
        .map(|j| j.job_type)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(3)
        .collect();
    match i % 4 {
        0 => vec![input(None, None, None)],
        1 => vec![
            input(None, None, Some(&["completed", "failed", "cancelled"])),
            input(None, Some(&types), None),
        ],
        2 => vec![input(Some(some_ids), None, Some(&["running", "completed"]))],
        _ => vec![
            input(None, Some(&types[..1]), Some(&["failed", "running"])),
            input(None, None, None),
        ],
    }
}

/// Events subscriptions with varied filters for one company.
fn platform_filters_for(i: usize) -> Vec<FiltersInput> {
    let input = |types: &[&str], apps: Option<&[&str]>| FiltersInput {
        event_types: Some(types.iter().map(|t| (*t).to_owned()).collect()),
        app_ids: apps.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
        ..FiltersInput::default()
    };
    match i % 3 {
        0 => vec![input(&["*"], None)],
        1 => vec![
            input(&["engine.*"], None),
            input(&["app.*"], Some(&["app-a"])),
        ],
        // An app filter passes only that app's events: never the engine's.
        _ => vec![input(
            &[
                "app.installed",
                "app.run_failed",
                "engine.aggregate_batch_result",
            ],
            Some(&["app-b"]),
        )],
    }
}

/// The CloudEvents a company's platform services publish: engine events
/// through the engine's types, and app events of `app-a` and `app-b`
/// through the app types, from two sources.
fn platform_events_of(company: &str) -> Vec<Value> {
    let engine: Vec<&str> = shared::catalogue::expand("engine.*")
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let apps: Vec<&str> = shared::catalogue::expand("app.*")
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    (0..PLATFORM_EVENTS_PER_COMPANY)
        .map(|i| {
            if i % 2 == 0 {
                local_infra::publish::sample(company, engine[(i / 2) % engine.len()]).unwrap()
            } else {
                let app = if i % 4 == 1 { "app-a" } else { "app-b" };
                let mut event =
                    local_infra::publish::sample(company, apps[(i / 2) % apps.len()]).unwrap();
                event["appid"] = app.into();
                event["data"]["app_id"] = app.into();
                event
            }
        })
        .collect()
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    attrs
        .attributes()
        .into_iter()
        .flatten()
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_transitions_arrive_verified_or_dead_lettered_and_nothing_is_lost() {
    let audit = test_kit::iam::Audit::start();
    let sdk = audit.sdk().await;
    // Breakers open after five failures at once; the prober runs every
    // second and drains in five-second windows; the always-down endpoint is
    // disabled after 40 s.
    let mut config = PipelineConfig::isolated(
        &[
            ("RetrySchedule", SCHEDULE),
            ("BreakerMinFailingSeconds", "0"),
            ("DisableAfterSeconds", "40"),
            ("DrainRatePerSecond", "50"),
        ],
        &[
            ("REQUEST_TIMEOUT_MS", "1500"),
            ("CONNECT_TIMEOUT_MS", "1500"),
            ("DRAIN_WINDOW_SECONDS", "5"),
        ],
    );
    config.schedule_interval = Some(Duration::from_secs(1));
    let pipeline = Pipeline::build(&sdk, config).await.unwrap();
    let res = pipeline.stack.clone();
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let store =
        SubscriptionStore::new(dynamo.clone(), res.table(ids::SUBSCRIPTIONS_TABLE).unwrap());

    let ledger = Arc::new(Ledger {
        secrets: Mutex::new(HashMap::new()),
        schemas: catalogue_validators(),
        accepted: Mutex::new(Accepted::default()),
        changed: tokio::sync::Notify::new(),
    });
    let mut receivers = Vec::new();
    for i in 0..FLAKY_RECEIVERS {
        receivers.push(flaky(&ledger, 1000 + i as u64).await);
    }
    let back = back_after_outage(&ledger).await;
    let down_url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/down", listener.local_addr().unwrap())
    };

    // 20 companies, their planned jobs, and subscriptions with varied
    // filters; the last company's subscriptions point at the down receiver.
    let mut rng = fastrand::Rng::with_seed(42);
    let mut plans = Vec::new();
    let mut subs: Vec<(Subscription, bool)> = Vec::new();
    let mut companies = Vec::new();
    for c in 0..COMPANIES {
        let company = format!("company-{c:02}-{}", emulator::unique_name("e2e"));
        let jobs = simulate::plan(&company, JOBS_PER_COMPANY, &mut rng);
        let down = c == COMPANIES - 1;
        // Job subscriptions (the one that comes back takes the job events
        // of the second to last company), then events subscriptions.
        let job_subs = filters_for(c, &jobs).into_iter().map(|f| (f, "hooks"));
        let event_subs = platform_filters_for(c).into_iter().map(|f| (f, "events"));
        for (filters, path) in job_subs.chain(event_subs) {
            let url = if down {
                down_url.clone()
            } else if c == COMPANIES - 2 && path == "hooks" {
                back.url(&format!("/{path}/{c}"))
            } else {
                receivers[subs.len() % FLAKY_RECEIVERS].url(&format!("/{path}/{c}"))
            };
            let (sub, secret) = Subscription::create(
                &company,
                NewSubscription {
                    url,
                    description: None,
                    filters: filters.validate().unwrap(),
                },
                Utc::now(),
                &pipeline.secrets.current(),
            )
            .unwrap();
            store.create(&sub, None, u64::MAX).await.unwrap();
            ledger
                .secrets
                .lock()
                .unwrap()
                .insert(sub.subscription_id.clone(), secret.expose().to_owned());
            subs.push((sub, down));
        }
        plans.push(jobs);
        companies.push(company);
    }

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut runners = pipeline.start(shutdown).await.unwrap();

    // The engine and the apps service publish their CloudEvents.
    let publisher = local_infra::publish::Publisher::new(
        sqs.clone(),
        res.queue_url(ids::PLATFORM_EVENTS_QUEUE).unwrap(),
    );
    let mut published = Vec::new();
    for company in &companies {
        let events = platform_events_of(company);
        publisher.publish(&events).await.unwrap();
        published.extend(events);
    }
    let sources: BTreeSet<&str> = published
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 2, "two sources: {sources:?}");

    // Write every job's transitions to the jobs table, as the platform would.
    let simulator = Simulator::new(dynamo.clone(), res.table(ids::JOBS_TABLE).unwrap());
    let mut transitions: Vec<Transition> = Vec::new();
    for jobs in &plans {
        transitions.extend(simulator.run_plan(jobs, &mut rng).await.unwrap());
    }
    assert!(
        transitions.len() >= 1000,
        "{} transitions",
        transitions.len()
    );

    // What must arrive where.
    let matches = |f: &Filters, t: &Transition| f.matches(&t.job_id, &t.job_type, t.state);
    // A platform event never reaches a jobs subscription, nor a job event
    // an events subscription: `matches` and `matches_event` are kind-bound.
    let mut expected_delivered = BTreeSet::new();
    let mut expected_dead = BTreeSet::new();
    for t in &transitions {
        for (sub, down) in subs.iter().filter(|(s, _)| s.company_id == t.company_id) {
            if matches(&sub.filters, t) {
                let id = (
                    sub.subscription_id.clone(),
                    t.job_id.clone(),
                    t.state.as_str().to_owned(),
                );
                if *down {
                    expected_dead.insert(id);
                } else {
                    expected_delivered.insert(id);
                }
            }
        }
    }
    let mut expected_platform = 0;
    for body in &published {
        let event = PlatformEvent::parse(&body.to_string(), Utc::now()).unwrap();
        for (sub, down) in subs
            .iter()
            .filter(|(s, _)| s.company_id == event.company_id)
        {
            if sub
                .filters
                .matches_event(&event.event_type, &event.context())
            {
                let id = (
                    sub.subscription_id.clone(),
                    event.webhook_id(&sub.subscription_id),
                    event.event_type.clone(),
                );
                expected_platform += 1;
                if *down {
                    expected_dead.insert(id);
                } else {
                    expected_delivered.insert(id);
                }
            }
        }
    }
    assert!(
        expected_platform > published.len() / 2,
        "{expected_platform} deliveries of {} platform events",
        published.len()
    );
    assert!(!expected_dead.is_empty());

    // Await: every expected event accepted, every down event kept as
    // parked or failed and listed by the API.
    let started = Instant::now();
    let mut dead: Vec<(EventId, String)> = Vec::new();
    let mut dead_lettered: Vec<DeliveryMessage> = Vec::new();
    loop {
        let delivered: BTreeSet<EventId> = ledger
            .accepted
            .lock()
            .unwrap()
            .events
            .iter()
            .map(|(e, _)| e.clone())
            .collect();
        dead.clear();
        for (sub, _) in subs.iter().filter(|(_, down)| *down) {
            dead.extend(kept_events(&pipeline, sub).await);
        }
        let dead_ids: BTreeSet<EventId> = dead.iter().map(|(e, _)| e.clone()).collect();
        if delivered.is_superset(&expected_delivered) && dead_ids.is_superset(&expected_dead) {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "after {DEADLINE:?}: {} of {} delivered, {} of {} parked or failed",
            delivered.intersection(&expected_delivered).count(),
            expected_delivered.len(),
            dead_ids.intersection(&expected_dead).count(),
            expected_dead.len(),
        );
        // Long-poll the dead-letter queue (it must stay empty); that is
        // also the pace of this loop.
        for m in emulator::take(&sqs, res.queue_url(ids::DEAD_LETTER_QUEUE).unwrap(), 1).await {
            dead_lettered.push(
                DeliveryMessage::parse(m.body().unwrap_or_default()).expect("a delivery message"),
            );
        }
    }

    // Delivery is at least once: a re-read stream record or a message the
    // emulator hands to two pollers makes extra copies. Let the runners
    // drain them: nothing may stay stuck in the delivery queues. The always
    // down endpoint is disabled after DisableAfterSeconds; until then its
    // probes come and go.
    loop {
        let mut all_disabled = true;
        for (sub, _) in subs.iter().filter(|(_, down)| *down) {
            let current = store
                .get(&sub.company_id, &sub.subscription_id)
                .await
                .unwrap()
                .unwrap();
            all_disabled &= current.is_disabled();
        }
        let depth = queue_depth(&sqs, res.queue_url(ids::DELIVERY_QUEUE).unwrap()).await
            + queue_depth(&sqs, res.queue_url(ids::RETRY_QUEUE).unwrap()).await;
        if all_disabled && depth == 0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the delivery queues did not drain ({depth} left) or the down endpoint was not disabled"
        );
        for m in emulator::take(&sqs, res.queue_url(ids::DEAD_LETTER_QUEUE).unwrap(), 1).await {
            dead_lettered.push(
                DeliveryMessage::parse(m.body().unwrap_or_default()).expect("a delivery message"),
            );
        }
    }
    dead.clear();
    for (sub, _) in subs.iter().filter(|(_, down)| *down) {
        dead.extend(kept_events(&pipeline, sub).await);
    }

    // Nothing unexpected, nothing stuck, nothing lost.
    let accepted = std::mem::take(&mut *ledger.accepted.lock().unwrap());
    let unique: BTreeSet<&String> = accepted.events.iter().map(|(_, id)| id).collect();
    let delivered: BTreeSet<EventId> = accepted.events.iter().map(|(e, _)| e.clone()).collect();
    let dead_ids: BTreeSet<EventId> = dead.iter().map(|(e, _)| e.clone()).collect();
    println!(
        "end-to-end: {} transitions and {} platform events ({expected_platform} deliveries of \
         them) over {COMPANIES} companies, {} subscriptions; expected {} deliveries + {} kept; delivered {} ({} unique webhook-ids, {} duplicates); \
         kept as parked or failed {}; dead-lettered {}; bad signatures {}; {:.1} s",
        transitions.len(),
        published.len(),
        subs.len(),
        expected_delivered.len(),
        expected_dead.len(),
        accepted.events.len(),
        unique.len(),
        accepted.events.len() - unique.len(),
        dead.len(),
        dead_lettered.len(),
        accepted.bad_signatures,
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(
        delivered, expected_delivered,
        "no event missing, none unexpected"
    );
    assert_eq!(
        unique.len(),
        expected_delivered.len(),
        "one webhook-id per event"
    );
    assert_eq!(
        dead_ids, expected_dead,
        "the down receiver's events, all parked or failed and listed by the API"
    );
    // A parked event is stored once per event (its key is the event's
    // time and event id), whatever the redeliveries.
    let dead_keys: BTreeSet<&str> = dead.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        (dead.len(), dead_keys.len()),
        (expected_dead.len(), expected_dead.len()),
        "one stored event and one event id per event"
    );
    assert!(
        dead_lettered.is_empty(),
        "none only in the DLQ: {dead_lettered:?}"
    );
    assert!(
        !back.received().is_empty(),
        "the receiver that came back was tried"
    );
    assert_eq!(accepted.bad_signatures, 0);
    assert_eq!(accepted.schema_checked, accepted.events.len());
    assert!(
        accepted.schema_violations.is_empty(),
        "received payloads break the catalogue's schemas: {:?}",
        &accepted.schema_violations[..accepted.schema_violations.len().min(10)]
    );

    stop.send(true).unwrap();
    while runners.join_next().await.is_some() {}
    audit.assert_granted(&pipeline.stack);
    for queue in [
        ids::DELIVERY_QUEUE,
        ids::RETRY_QUEUE,
        ids::DEAD_LETTER_QUEUE,
        ids::INGEST_FAILURE_QUEUE,
        ids::PLATFORM_EVENTS_QUEUE,
        ids::PLATFORM_EVENTS_DEAD_LETTER_QUEUE,
    ] {
        assert_eq!(
            queue_depth(&sqs, res.queue_url(queue).unwrap()).await,
            0,
            "{queue} is empty"
        );
    }
}
