//! The built `subscriptions-api` binary under a Lambda Runtime API: it boots,
//! asks for work, and answers the sample API Gateway events in
//! `tests/events/` against the local AWS emulator.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use test_support::emulator;
use test_support::runtime_api::{Outcome, RuntimeApi};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_subscriptions-api");
const CURSOR_KEY: &str = "smoke-test-cursor-signing-key-0123456789";

/// Starts the binary with the Lambda and emulator settings plus `config`
/// (the function's own variables).
fn function(runtime: &RuntimeApi, config: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BINARY);
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "subscriptions-api")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_ENDPOINT_URL", emulator::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .envs(config.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("the function binary starts")
}

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(test_support::event_path(name)).expect("sample event");
    serde_json::from_str(&text).expect("sample event is JSON")
}

fn response(outcome: Option<Outcome>) -> (u16, Value) {
    match outcome {
        Some(Outcome::Response(r)) => {
            let status = r["statusCode"].as_u64().expect("statusCode") as u16;
            assert_eq!(r["isBase64Encoded"], false, "{r}");
            let body = serde_json::from_str(r["body"].as_str().expect("body")).expect("JSON body");
            (status, body)
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

#[tokio::test]
async fn binary_boots_and_answers_api_gateway_events() {
    let sdk = emulator::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = emulator::fresh_table(&client, "SubscriptionsTable").await;
    let deliveries = emulator::fresh_table(&client, "DeliveriesTable").await;
    let queue = emulator::fresh_queue(&aws_sdk_sqs::Client::new(&sdk), "DeliveryQueue").await;
    let runtime = RuntimeApi::start().await;
    let _child = function(
        &runtime,
        &[
            ("SUBSCRIPTIONS_TABLE", &table),
            ("DELIVERIES_TABLE", &deliveries),
            ("DELIVERY_QUEUE_URL", &queue),
            ("CURSOR_SIGNING_KEY", CURSOR_KEY),
        ],
    );
    assert!(
        runtime.first_poll(Duration::from_secs(20)).await.is_some(),
        "the function asked the Runtime API for work"
    );

    let (status, body) = response(
        runtime
            .invoke(sample("apigw-create-webhook.json"), Duration::from_secs(20))
            .await,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["url"], "https://hooks.example.com/jobs");
    assert!(body["secret"].is_string());

    let (status, body) = response(
        runtime
            .invoke(sample("apigw-list-webhooks.json"), Duration::from_secs(20))
            .await,
    );
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["filters"]["states"][0], "failed");
    assert!(data[0].get("secret").is_none());

    // The same create again carries the same Idempotency-Key: a replay.
    let (status, replay) = response(
        runtime
            .invoke(sample("apigw-create-webhook.json"), Duration::from_secs(20))
            .await,
    );
    assert_eq!(status, 201);
    assert_eq!(replay["id"], data[0]["id"]);
}

#[tokio::test]
async fn missing_configuration_stops_the_cold_start_with_a_clear_error() {
    let complete = [
        ("SUBSCRIPTIONS_TABLE", "SubscriptionsTable"),
        ("DELIVERIES_TABLE", "DeliveriesTable"),
        (
            "DELIVERY_QUEUE_URL",
            "http://127.0.0.1:9/000000000000/DeliveryQueue",
        ),
        ("CURSOR_SIGNING_KEY", CURSOR_KEY),
    ];
    let mut cases: Vec<(String, Vec<(&str, &str)>)> = complete
        .iter()
        .map(|(missing, _)| {
            let rest = complete.iter().filter(|(v, _)| v != missing).copied();
            ((*missing).to_owned(), rest.collect())
        })
        .collect();
    let mut bad_list = complete.to_vec();
    bad_list.push(("TARGET_ALLOW_LIST", "localhost"));
    cases.push(("TARGET_ALLOW_LIST".to_owned(), bad_list));
    for (var, config) in cases {
        let runtime = RuntimeApi::start().await;
        let child = function(&runtime, &config);
        let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .expect("the function exits")
            .expect("exit status");
        assert!(!output.status.success(), "{var}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&var), "{var}: {stderr}");
    }
}
