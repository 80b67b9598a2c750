//! The built `webhook-delivery` binary under a Lambda Runtime API: it boots,
//! delivers the sample SQS event to a real receiver with a verifiable
//! signature, and fails its cold start naming a missing variable.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use shared::filters::Filters;
use shared::signing;
use shared::store::SubscriptionStore;
use shared::subscription::{NewSubscription, Subscription};
use test_support::emulator;
use test_support::receiver::Receiver;
use test_support::runtime_api::{Outcome, RuntimeApi};
use tokio::process::Command;

fn function(runtime: &RuntimeApi) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-delivery"));
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "webhook-delivery")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_ENDPOINT_URL", emulator::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn binary_delivers_the_sample_sqs_event() {
    let text = std::fs::read_to_string(test_support::event_path("sqs-delivery.json")).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    let message: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    let receiver = Receiver::http().await;

    let sdk = emulator::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let subscriptions = emulator::fresh_table(&dynamo, "SubscriptionsTable").await;
    let deliveries = emulator::fresh_table(&dynamo, "DeliveriesTable").await;
    let mut sub = Subscription::create(
        message["company_id"].as_str().unwrap(),
        NewSubscription {
            url: receiver.url("/hook"),
            description: None,
            filters: Filters::default(),
        },
        chrono::Utc::now(),
    );
    sub.subscription_id = message["subscription_id"].as_str().unwrap().to_owned();
    SubscriptionStore::new(dynamo, subscriptions.clone())
        .create(&sub, None)
        .await
        .unwrap();

    let runtime = RuntimeApi::start().await;
    let _child = function(&runtime)
        .env("SUBSCRIPTIONS_TABLE", &subscriptions)
        .env("DELIVERIES_TABLE", &deliveries)
        .env(
            "RETRY_QUEUE_URL",
            emulator::fresh_queue(&sqs, "retry").await,
        )
        .env(
            "DEAD_LETTER_QUEUE_URL",
            emulator::fresh_queue(&sqs, "dlq").await,
        )
        .env("TARGET_ALLOW_LIST", "127.0.0.0/8")
        .spawn()
        .unwrap();
    assert!(runtime.first_poll(Duration::from_secs(20)).await.is_some());

    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let req = &got[0];
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body, message["payload"]);
    let key = signing::key_bytes(sub.secret.expose());
    signing::verify(
        &[&key],
        req.header("webhook-id").unwrap(),
        req.header("webhook-timestamp").unwrap(),
        req.header("webhook-signature").unwrap(),
        &req.body,
        chrono::Utc::now().timestamp(),
    )
    .expect("the receiver verifies the signature");
}

#[tokio::test]
async fn cold_start_fails_naming_a_missing_or_bad_variable() {
    let complete = [
        ("SUBSCRIPTIONS_TABLE", "SubscriptionsTable"),
        ("DELIVERIES_TABLE", "DeliveriesTable"),
        (
            "RETRY_QUEUE_URL",
            "http://127.0.0.1:9/000000000000/RetryQueue",
        ),
        (
            "DEAD_LETTER_QUEUE_URL",
            "http://127.0.0.1:9/000000000000/DeadLetterQueue",
        ),
    ];
    let mut cases: Vec<(&str, Vec<(&str, &str)>)> = complete
        .iter()
        .map(|(missing, _)| {
            let rest = complete.iter().filter(|(v, _)| v != missing).copied();
            (*missing, rest.collect())
        })
        .collect();
    for bad in [
        ("RETRY_SCHEDULE", "5s,soon"),
        ("TARGET_ALLOW_LIST", "localhost"),
        ("TARGET_EXTRA_CA_FILE", "/nonexistent/ca.pem"),
        ("DELIVERY_CONCURRENCY", "0"),
    ] {
        let mut config = complete.to_vec();
        config.push(bad);
        cases.push((bad.0, config));
    }
    for (var, config) in cases {
        let runtime = RuntimeApi::start().await;
        let mut cmd = function(&runtime);
        cmd.envs(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = tokio::time::timeout(
            Duration::from_secs(20),
            cmd.spawn().unwrap().wait_with_output(),
        )
        .await
        .expect("the function exits")
        .expect("exit status");
        assert!(!output.status.success(), "{var}");
        let logs = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(logs.contains(var), "{var}: {logs}");
    }
}
