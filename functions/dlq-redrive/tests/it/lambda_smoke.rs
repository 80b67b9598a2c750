//! The built `dlq-redrive` binary under a Lambda Runtime API: it boots,
//! answers the sample event by moving the matching delivery, answers an
//! invalid request with an `InvalidRequest` error, and refuses to start
//! without its configuration.

use std::time::Duration;

use serde_json::{Value, json};
use shared::domain::message::{DeliveryMessage, EventEnvelope, webhook_id};
use test_kit::emulator;
use test_kit::runtime_api::{self, Outcome};
use test_kit::stack::{self, ids};

const BINARY: &str = env!("CARGO_BIN_EXE_dlq-redrive");
const NAME: &str = "dlq-redrive";

/// Bodies of the messages on the queue (up to ten), taken off it.
async fn take_bodies(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    emulator::take(sqs, queue_url, 1)
        .await
        .into_iter()
        .map(|m| m.body.unwrap())
        .collect()
}

#[tokio::test]
async fn binary_boots_and_redrives_the_sample_event() {
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(test_kit::event_path("dlq-redrive.json")).unwrap(),
    )
    .unwrap();
    let company = event["company_id"].as_str().unwrap();
    let subscription = event["subscription_id"].as_str().unwrap();

    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let stack = stack::deploy().await;
    let env = stack::function_environment(&stack, ids::REDRIVE_FUNCTION, &[]);
    let dlq = stack.queue_url(ids::DEAD_LETTER_QUEUE).unwrap().to_owned();
    let delivery = stack.queue_url(ids::DELIVERY_QUEUE).unwrap().to_owned();
    let data = serde_json::value::to_raw_value(&json!({"job_id": "job-7f3a"})).unwrap();
    let envelope = EventEnvelope {
        sequence: None,
        company_id: company,
        event_type: "job.completed",
        timestamp: "2026-11-22T10:00:00.000Z",
        data: &data,
    };
    let key = webhook_id(subscription, "smoke");
    let first = DeliveryMessage::parse(&envelope.message_body(subscription, &key)).unwrap();
    let exhausted = first
        .next_attempt(chrono::Utc::now())
        .next_attempt(chrono::Utc::now());
    let other = envelope.message_body(
        &shared::domain::subscription::new_subscription_id(),
        "evt_other",
    );
    for body in [exhausted.to_body(), other.clone()] {
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let (runtime, _child) = runtime_api::boot(BINARY, NAME, &stack::borrowed(&env)).await;

    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({
            "examined": 2, "matched": 1, "moved": 1, "skipped": 1, "malformed": 0,
            "failed": 0, "not_deleted": 0, "dry_run": false, "stopped": "queue_empty"
        })))
    );
    let moved = take_bodies(&sqs, &delivery).await;
    assert_eq!(moved.len(), 1);
    let moved = DeliveryMessage::parse(&moved[0]).unwrap();
    assert_eq!(
        (moved.webhook_id.as_str(), moved.attempt),
        (key.as_str(), 1)
    );
    assert_eq!(take_bodies(&sqs, &dlq).await, [other]);

    let outcome = runtime
        .invoke(json!({"dryRun": true}), Duration::from_secs(30))
        .await;
    let Some(Outcome::Error(error)) = outcome else {
        panic!("expected an invocation error, got {outcome:?}");
    };
    assert_eq!(error["errorType"], "InvalidRequest");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(message.contains("unknown field `dryRun`"), "{message}");
}

#[tokio::test]
async fn binary_without_its_queue_url_fails_to_start_and_names_the_variable() {
    let logs = runtime_api::failed_cold_start(
        BINARY,
        NAME,
        &[("DELIVERY_QUEUE_URL", "http://127.0.0.1:1/q")],
    )
    .await;
    assert!(
        logs.contains("configuration variable DEAD_LETTER_QUEUE_URL: must be set"),
        "{logs}"
    );
}
