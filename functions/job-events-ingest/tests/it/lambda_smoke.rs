//! The built `job-events-ingest` binary under a Lambda Runtime API: it boots,
//! answers the sample stream event with the messages on the queue, and
//! answers garbage with an empty checkpoint instead of an error.

use std::time::Duration;

use serde_json::{Value, json};
use shared::domain::filters::Filters;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::sealed::Keyring;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::emulator;
use test_kit::runtime_api::{self, Outcome};
use test_kit::stack::{self, ids};

#[tokio::test]
async fn binary_boots_and_enqueues_the_sample_stream_event() {
    let sdk = emulator::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let stack = stack::deploy().await;
    let env = stack::function_environment(&stack, ids::INGEST_FUNCTION, &[]);
    let table = stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap().to_owned();
    let sub = Subscription::create(
        "acme-corp",
        NewSubscription {
            url: "https://hooks.example.com/".to_owned(),
            description: None,
            filters: Filters::default(),
        },
        chrono::Utc::now(),
        // Ingest and the prober never open a secret: any keyring seals it.
        &Keyring::generate(),
    )
    .unwrap()
    .0;
    SubscriptionStore::new(dynamo, table.clone())
        .create(&sub, None, u64::MAX)
        .await
        .unwrap();
    let queue_url = stack.queue_url(ids::DELIVERY_QUEUE).unwrap().to_owned();

    let (runtime, _child) = runtime_api::boot(
        env!("CARGO_BIN_EXE_job-events-ingest"),
        "job-events-ingest",
        &stack::borrowed(&env),
    )
    .await;

    let text = std::fs::read_to_string(test_kit::event_path("dynamodb-stream-jobs.json")).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
    let received = emulator::take(&sqs, &queue_url, 0).await;
    let mut types: Vec<String> = received
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            body["event_type"].as_str().unwrap().to_owned()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["job.completed", "job.pending"]);

    let outcome = runtime
        .invoke(json!({"not": "a stream event"}), Duration::from_secs(30))
        .await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
}

#[tokio::test]
async fn replay_binary_boots_reports_an_empty_queue_and_refuses_bad_requests() {
    let stack = stack::deploy().await;
    let env = stack::function_environment(&stack, ids::INGEST_REPLAY_FUNCTION, &[]);
    let (runtime, _child) = runtime_api::boot(
        env!("CARGO_BIN_EXE_ingest-replay"),
        "ingest-replay",
        &stack::borrowed(&env),
    )
    .await;
    let Some(Outcome::Response(report)) = runtime
        .invoke(json!({"max_entries": 5}), Duration::from_secs(30))
        .await
    else {
        panic!("the replay answers");
    };
    assert_eq!(
        (report["entries"].clone(), report["replayed"].clone()),
        (json!(0), json!(0))
    );
    let Some(Outcome::Error(error)) = runtime
        .invoke(json!({"max_entries": 0}), Duration::from_secs(30))
        .await
    else {
        panic!("a bad request is an invocation error");
    };
    assert_eq!(error["errorType"], "InvalidRequest", "{error}");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("max_entries")
    );
}
