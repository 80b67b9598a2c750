//! The built `subscriptions-api` binary under a Lambda Runtime API: it boots,
//! asks for work, and answers the sample API Gateway events in
//! `tests/events/` against the local AWS emulator.

use std::time::Duration;

use serde_json::Value;
use test_kit::runtime_api::{self, Outcome};
use test_kit::stack::{self, ids};

const BINARY: &str = env!("CARGO_BIN_EXE_subscriptions-api");
const NAME: &str = "subscriptions-api";
const CURSOR_KEY: &str = "smoke-test-cursor-signing-key-0123456789";

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(test_kit::event_path(name)).expect("sample event");
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
    let stack = stack::deploy().await;
    let env = stack::function_environment(
        &stack,
        ids::API_FUNCTION,
        &[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("CURSOR_SIGNING_KEY", CURSOR_KEY),
        ],
    );
    let (runtime, _child) = runtime_api::boot(BINARY, NAME, &stack::borrowed(&env)).await;

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
        ("PARKED_EVENTS_TABLE", "ParkedEventsTable"),
        ("EVENT_BUS_NAME", "webhooks-operational"),
        ("KEYRING_TABLE", "KeyringTable"),
        ("SECRETS_KMS_KEY_ID", "alias/signing-secrets"),
    ];
    let bad = [
        ("TARGET_ALLOW_LIST", "localhost"),
        ("KEYRING_REFRESH_SECONDS", "0"),
    ];
    runtime_api::assert_cold_start_names(BINARY, NAME, &complete, &bad).await;
}
