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

/// Custom header values reach no log line of the API function, at the most
/// verbose level, on create, on a PATCH, or in the errors of refused ones.
#[tokio::test]
async fn custom_header_values_never_reach_the_api_s_logs() {
    const KEY: &str = "api-key-3b9d0c7e41f2";
    const REFUSED: &str = "refused-value-8e2a61";
    let stack = stack::deploy().await;
    let env = stack::function_environment(
        &stack,
        ids::API_FUNCTION,
        &[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("RUST_LOG", "trace"),
            ("CURSOR_SIGNING_KEY", CURSOR_KEY),
        ],
    );
    let (runtime, child) = runtime_api::boot_logged(BINARY, NAME, &stack::borrowed(&env)).await;
    let request = |method: &str, path: &str, body: Value| {
        let mut event = sample("apigw-create-webhook.json");
        event["routeKey"] = format!("{method} {path}").into();
        event["rawPath"] = path.into();
        event["requestContext"]["http"]["method"] = method.into();
        event["requestContext"]["http"]["path"] = path.into();
        event["headers"]
            .as_object_mut()
            .unwrap()
            .remove("idempotency-key");
        event["body"] = body.to_string().into();
        event
    };
    let invoke = |event: Value| {
        let runtime = &runtime;
        async move { response(runtime.invoke(event, Duration::from_secs(20)).await) }
    };

    let (status, created) = invoke(request(
        "POST",
        "/webhooks",
        serde_json::json!({"url": "https://hooks.example.com/h", "headers": {"x-api-key": KEY}}),
    ))
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["headers"]["x-api-key"], "********");
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/webhooks/{id}");
    let (status, body) = invoke(request(
        "PATCH",
        &path,
        serde_json::json!({"headers": {"x-other": KEY}}),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    for refused in [
        serde_json::json!({"headers": {"content-type": REFUSED}}),
        serde_json::json!({"headers": {"x-bad": format!("{REFUSED}\r\nx-injected: 1")}}),
    ] {
        let (status, body) = invoke(request("PATCH", &path, refused)).await;
        assert_eq!(status, 400, "{body}");
        assert!(!body.to_string().contains(REFUSED), "{body}");
    }

    let logs = child.stop().await;
    assert!(
        logs.contains(&id),
        "the function's logs were captured: {logs}"
    );
    for secret in [KEY, REFUSED] {
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret} is in the logs: {lines:#?}");
    }
}
