//! The functions' IAM grants, held to what they call through the whole
//! local pipeline: the emulator enforces no IAM, so each function's
//! requests are recorded (each signs as itself) and checked against its
//! policy in the template ([`test_kit::iam`]). The rarely taken paths
//! are driven here on purpose: an unreadable parked event, which the
//! prober (probing with it) and the API (recovering it) set aside as
//! `failed` with a `PutItem` on the ParkedEventsTable; the health and
//! status updates of delivery and the prober, whose grants limit the
//! attributes they write and read back (`ReturnValues`); and platform
//! events through their ingest, one of them dead-lettered.

use std::time::{Duration, Instant};

use chrono::Utc;
use local_infra::cloudformation::Deployment;
use local_stack::pipeline::{CUSTOM_RESOURCES, Pipeline, PipelineConfig};
use serde_json::{Value, json};
use shared::domain::filters::Filters;
use shared::domain::health::{BreakerState, LastFailure};
use shared::domain::message::{DeliveryMessage, test_event_message};
use shared::domain::subscription::{NewSubscription, Subscription, SubscriptionStatus};
use shared::signing::sealed::Keyring;
use shared::storage::parked::{ParkedEvent, ParkedStatus};
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::api::{ApiRequest, status_and_json};
use test_kit::emulator;
use test_kit::iam::Audit;
use test_kit::receiver::Receiver;
use test_kit::stack::{self, ids};

const DEADLINE: Duration = Duration::from_secs(60);

/// An event of `sub` that arrived `minutes_ago`, stored with `status` and
/// a message that no longer parses.
fn unreadable(sub: &Subscription, status: ParkedStatus, minutes_ago: i64) -> ParkedEvent {
    let at = Utc::now() - chrono::Duration::minutes(minutes_ago);
    let (_, body) = test_event_message(&sub.company_id, &sub.subscription_id, at);
    let msg = DeliveryMessage::parse(&body).expect("a delivery message");
    let mut event = ParkedEvent::of(&msg, status, Utc::now(), chrono::Duration::days(30));
    event.message = "{\"not\": \"a delivery message\"".to_owned();
    event
}

async fn failed_events(pipeline: &Pipeline, sub: &Subscription) -> Vec<Value> {
    let path = format!(
        "/webhooks/{}/failed-events?status=failed",
        sub.subscription_id
    );
    let request = ApiRequest::new("GET", &path, &sub.company_id).build();
    let (status, body) = status_and_json(&pipeline.app.handle(request).await);
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_parked_events_are_set_aside_within_the_prober_s_and_the_api_s_grants() {
    let audit = Audit::start();
    let sdk = audit.sdk().await;
    let mut config = PipelineConfig::isolated(&[], &[]);
    config.schedule_interval = Some(Duration::from_secs(1));
    let pipeline = Pipeline::build(&sdk, config).await.unwrap();
    let store = pipeline.subscription_store().unwrap();
    let parked = pipeline.parked_events().unwrap();
    let receiver = Receiver::http().await;
    let company = emulator::unique_name("acme");
    let (sub, _) =
        stack::subscribe(&store, &pipeline.secrets, &company, &receiver.url("/hook")).await;

    // An open breaker whose oldest parked event no longer parses, and a
    // failed event that no longer parses either.
    let probe = unreadable(&sub, ParkedStatus::Parked, 10);
    parked.put(&probe).await.unwrap();
    let failed = unreadable(&sub, ParkedStatus::Failed, 20);
    parked.put(&failed).await.unwrap();
    let now = Utc::now();
    store
        .open_breaker(&sub, now, now)
        .await
        .unwrap()
        .expect("the breaker opens");

    // The prober finds it due, cannot probe with that event and sets it
    // aside as failed.
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut runners = pipeline.start(shutdown).await.unwrap();
    let started = Instant::now();
    loop {
        let listed = failed_events(&pipeline, &sub).await;
        if listed
            .iter()
            .any(|e| e["idempotency_key"] == probe.webhook_id.as_str())
        {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "not set aside: {listed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Recovering the window sends nothing that does not parse: the API
    // keeps both as failed.
    let recover = format!("/webhooks/{}/recover", sub.subscription_id);
    let window = json!({"since": (Utc::now() - chrono::Duration::hours(1)).to_rfc3339()});
    let request = ApiRequest::new("POST", &recover, &sub.company_id)
        .json(&window)
        .build();
    let (status, body) = status_and_json(&pipeline.app.handle(request).await);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["recovered"], 0, "{body}");
    let keys: Vec<Value> = failed_events(&pipeline, &sub)
        .await
        .into_iter()
        .map(|e| e["idempotency_key"].clone())
        .collect();
    for event in [&probe, &failed] {
        assert!(
            keys.contains(&json!(event.webhook_id)),
            "{} kept as failed: {keys:?}",
            event.webhook_id
        );
    }
    assert!(receiver.received().is_empty(), "nothing unreadable is sent");

    stop.send(true).unwrap();
    while runners.join_next().await.is_some() {}
    assert!(audit.recorded() > 0, "the functions' calls were recorded");
    audit.assert_granted(&pipeline.stack);
}

#[tokio::test]
async fn health_updates_read_back_only_what_they_wrote_and_keep_the_rest_as_held() {
    let audit = Audit::start();
    let sdk = audit.sdk().await;
    let deployed = local_infra::cloudformation::deploy_stack(
        &sdk,
        &Deployment::isolated(&[]),
        CUSTOM_RESOURCES,
    )
    .await
    .unwrap();
    let table = deployed.table(ids::SUBSCRIPTIONS_TABLE).unwrap();
    let as_function = |function: &str| {
        let sdk = local_infra::identity::function_sdk(&sdk, function);
        SubscriptionStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
    };
    let delivery = as_function(ids::DELIVERY_FUNCTION);
    let prober = as_function(ids::PROBER_FUNCTION);
    let tests = SubscriptionStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let (sub, _) = Subscription::create(
        &emulator::unique_name("acme"),
        NewSubscription {
            url: "https://hooks.example.com/".to_owned(),
            description: None,
            filters: Filters::default(),
        },
        Utc::now(),
        &Keyring::generate(),
    )
    .unwrap();
    tests.create(&sub, None, u64::MAX).await.unwrap();
    let stored = || async {
        tests
            .get(&sub.company_id, &sub.subscription_id)
            .await
            .unwrap()
            .unwrap()
    };
    let now = Utc::now();
    let failure = LastFailure {
        at: now,
        status: Some(503),
        error: None,
    };

    // Held as stored: each update gives back the whole item as stored.
    let failed = delivery
        .record_failure(&sub, &failure)
        .await
        .unwrap()
        .unwrap();
    assert!(failed.whole);
    assert_eq!(failed.sub, stored().await);
    assert_eq!(failed.sub.health.consecutive_failures, 1);
    let opened = delivery
        .open_breaker(&failed.sub, now, now)
        .await
        .unwrap()
        .unwrap();
    assert!(opened.whole);
    assert_eq!(opened.sub, stored().await);
    assert!(opened.sub.health.breaker.is_open());

    // A copy that is no longer current: what the update wrote is current,
    // the rest is as held, and it says so.
    let stale = failed.sub.clone();
    let probed = delivery
        .record_probe_failure(&stale, &failure, now)
        .await
        .unwrap()
        .unwrap();
    assert!(!probed.whole);
    let current = stored().await;
    assert_eq!(probed.sub.version, current.version);
    assert_eq!(probed.sub.health.consecutive_failures, 2);
    assert_eq!(
        probed.sub.health.probe_attempts,
        current.health.probe_attempts
    );
    assert_eq!(current.health.breaker, BreakerState::Open);

    // Removed attributes are gone from the copy too.
    let disabled = prober
        .disable(&current, "failing too long", now)
        .await
        .unwrap()
        .unwrap();
    assert!(disabled.whole);
    assert_eq!(disabled.sub, stored().await);
    assert_eq!(disabled.sub.status, SubscriptionStatus::Disabled);
    assert_eq!(disabled.sub.health.probe_lane, None);
    let archived = delivery
        .archive(&disabled.sub, "gone", now)
        .await
        .unwrap()
        .unwrap();
    assert!(archived.whole && archived.sub.is_archived());
    assert_eq!(archived.sub, stored().await);

    // Within the attributes and return values delivery and the prober are
    // granted.
    audit.assert_granted(&deployed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_events_travel_the_pipeline_within_the_ingest_function_s_grants() {
    let audit = Audit::start();
    let sdk = audit.sdk().await;
    let pipeline = Pipeline::build(&sdk, PipelineConfig::isolated(&[], &[]))
        .await
        .unwrap();
    let store = pipeline.subscription_store().unwrap();
    let receiver = Receiver::http().await;
    let company = emulator::unique_name("acme");
    let filters: Filters = serde_json::from_value(json!({"event_types": ["engine.*"]})).unwrap();
    let (sub, _) = stack::subscribe_with(
        &store,
        &pipeline.secrets,
        &company,
        &receiver.url("/events"),
        filters,
    )
    .await;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut runners = pipeline.start(shutdown).await.unwrap();

    // A platform service publishes one event it may and one it may not.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ingress = pipeline
        .stack
        .queue_url(ids::PLATFORM_EVENTS_QUEUE)
        .unwrap();
    let event = json!({
        "specversion": "1.0", "id": "perm-1", "source": "//engine/aggregates",
        "type": "engine.aggregate_prune_result", "companyid": company,
        "data": shared::catalogue::find("engine.aggregate_prune_result")
            .and_then(|e| e.examples.first())
            .expect("a catalogue example")
    });
    for body in [event.to_string(), "{\"specversion\": \"1.0\"}".to_owned()] {
        sqs.send_message()
            .queue_url(ingress)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let received = receiver.wait_for(1, DEADLINE).await;
    let payload: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(payload["type"], "engine.aggregate_prune_result");
    assert_eq!(payload["subscription_id"], sub.subscription_id.as_str());
    let dead_letters = pipeline
        .stack
        .queue_url(ids::PLATFORM_EVENTS_DEAD_LETTER_QUEUE)
        .unwrap();
    let started = Instant::now();
    let dead = loop {
        let dead = emulator::take(&sqs, dead_letters, 1).await;
        if !dead.is_empty() {
            break dead;
        }
        assert!(started.elapsed() < DEADLINE, "nothing dead-lettered");
    };
    assert_eq!(
        dead[0]
            .message_attributes()
            .and_then(|a| a.get("reason"))
            .and_then(|v| v.string_value()),
        Some("missing_attribute")
    );

    stop.send(true).unwrap();
    while runners.join_next().await.is_some() {}
    assert!(audit.recorded() > 0, "the functions' calls were recorded");
    audit.assert_granted(&pipeline.stack);
}
