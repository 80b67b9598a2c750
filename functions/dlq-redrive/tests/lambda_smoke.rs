//! The built `dlq-redrive` binary under a Lambda Runtime API: it boots,
//! answers the sample event by moving the matching delivery, answers an
//! invalid request with an `InvalidRequest` error, and refuses to start
//! without its configuration.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use shared::message::{DeliveryMessage, EventEnvelope, idempotency_key};
use test_support::emulator;
use test_support::runtime_api::{Outcome, RuntimeApi};
use tokio::process::Command;

/// The binary with the Lambda environment and `vars`, nothing inherited.
fn lambda(runtime: &RuntimeApi, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dlq-redrive"));
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "dlq-redrive")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_ENDPOINT_URL", emulator::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .envs(vars.iter().copied())
        .kill_on_drop(true);
    command
}

async fn receive_bodies(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    sqs.receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.body.unwrap())
        .collect()
}

#[tokio::test]
async fn binary_boots_and_redrives_the_sample_event() {
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(test_support::event_path("dlq-redrive.json")).unwrap(),
    )
    .unwrap();
    let company = event["company_id"].as_str().unwrap();
    let subscription = event["subscription_id"].as_str().unwrap();

    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let dlq = emulator::fresh_queue(&sqs, "smoke-dlq").await;
    let delivery = emulator::fresh_queue(&sqs, "smoke-delivery").await;
    let data = serde_json::value::to_raw_value(&json!({"job_id": "job-7f3a"})).unwrap();
    let envelope = EventEnvelope {
        company_id: company,
        event_type: "job.completed",
        timestamp: "2026-11-22T10:00:00.000Z",
        data: &data,
    };
    let key = idempotency_key(subscription, "smoke");
    let first = DeliveryMessage::parse(&envelope.message_body(subscription, &key)).unwrap();
    let exhausted = first
        .next_attempt(chrono::Utc::now())
        .next_attempt(chrono::Utc::now());
    let other = envelope.message_body(&shared::subscription::new_subscription_id(), "evt_other");
    for body in [exhausted.to_body(), other.clone()] {
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let runtime = RuntimeApi::start().await;
    let _child = lambda(
        &runtime,
        &[
            ("DEAD_LETTER_QUEUE_URL", &dlq),
            ("DELIVERY_QUEUE_URL", &delivery),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    assert!(runtime.first_poll(Duration::from_secs(20)).await.is_some());

    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({
            "examined": 2, "matched": 1, "moved": 1, "skipped": 1, "malformed": 0,
            "failed": 0, "not_deleted": 0, "dry_run": false, "stopped": "queue_empty"
        })))
    );
    let moved = receive_bodies(&sqs, &delivery).await;
    assert_eq!(moved.len(), 1);
    let moved = DeliveryMessage::parse(&moved[0]).unwrap();
    assert_eq!(
        (moved.idempotency_key.as_str(), moved.attempt),
        (key.as_str(), 1)
    );
    assert_eq!(receive_bodies(&sqs, &dlq).await, [other]);

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
    let runtime = RuntimeApi::start().await;
    let child = lambda(&runtime, &[("DELIVERY_QUEUE_URL", "http://127.0.0.1:1/q")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the binary exits")
        .unwrap();
    assert!(!output.status.success());
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        logs.contains("configuration variable DEAD_LETTER_QUEUE_URL: must be set"),
        "{logs}"
    );
    assert!(
        runtime.first_poll(Duration::ZERO).await.is_none(),
        "it never asked for work"
    );
}
