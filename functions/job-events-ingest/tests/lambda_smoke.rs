//! The built `job-events-ingest` binary under a Lambda Runtime API: it boots,
//! answers the sample stream event with the messages on the queue, and
//! answers garbage with an empty checkpoint instead of an error.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use shared::filters::Filters;
use shared::store::SubscriptionStore;
use shared::subscription::{NewSubscription, Subscription};
use test_support::emulator;
use test_support::runtime_api::{Outcome, RuntimeApi};
use tokio::process::Command;

#[tokio::test]
async fn binary_boots_and_enqueues_the_sample_stream_event() {
    let sdk = emulator::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let table = emulator::fresh_table(&dynamo, "SubscriptionsTable").await;
    let sub = Subscription::create(
        "acme-corp",
        NewSubscription {
            url: "https://hooks.example.com/".to_owned(),
            description: None,
            filters: Filters::default(),
        },
        chrono::Utc::now(),
    );
    SubscriptionStore::new(dynamo, table.clone())
        .create(&sub, None)
        .await
        .unwrap();
    let queue_url = emulator::fresh_queue(&sqs, "smoke").await;

    let runtime = RuntimeApi::start().await;
    let _child = Command::new(env!("CARGO_BIN_EXE_job-events-ingest"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "job-events-ingest")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_ENDPOINT_URL", emulator::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("SUBSCRIPTIONS_TABLE", &table)
        .env("DELIVERY_QUEUE_URL", &queue_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(runtime.first_poll(Duration::from_secs(20)).await.is_some());

    let text =
        std::fs::read_to_string(test_support::event_path("dynamodb-stream-jobs.json")).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
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
