//! The keyring's start as the template's `SigningKeyring` custom resource,
//! against the emulator and a loopback HTTP receiver standing for
//! CloudFormation's response URL: a stack's deploy starts the keyring
//! (version 1); another `Create` or a `Delete` keeps it as it is; each
//! outcome is PUT to the response URL as CloudFormation reads it, a failure
//! as `FAILED` with its reason.

use std::time::{Duration, Instant};

use secret_keys::{KeysConfig, KeysReport, SecretKeys};
use serde_json::{Value, json};
use shared::storage::keyring::KeyringStore;
use test_kit::emulator;
use test_kit::receiver::{Receiver, Reply};
use test_kit::stack::{self, ids};

fn event(request_type: &str, response_url: &str) -> Value {
    json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:keys",
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
        "RequestId": "request-1",
        "LogicalResourceId": "SigningKeyring",
        "ResourceType": "Custom::SigningKeyring",
        "ResourceProperties": {},
    })
}

/// A fresh stack and its secret-keys function's configuration.
async fn deployed() -> KeysConfig {
    let stack = stack::deploy().await;
    KeysConfig::from_vars(&stack::function_vars(
        &stack,
        ids::SECRET_KEYS_FUNCTION,
        &[],
    ))
    .unwrap()
}

async fn keys(config: &KeysConfig) -> (SecretKeys, KeyringStore) {
    let sdk = emulator::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let kms = aws_sdk_kms::Client::new(&sdk);
    (
        SecretKeys::new(config, dynamo.clone(), kms.clone()),
        KeyringStore::new(dynamo, kms, config.keyring.clone()),
    )
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

async fn versions(store: &KeyringStore) -> Vec<u32> {
    store
        .versions()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect()
}

#[tokio::test]
async fn a_stack_s_deploy_starts_the_keyring_and_later_events_keep_it() {
    let config = deployed().await;
    let (keys, store) = keys(&config).await;
    assert_eq!(versions(&store).await, [1], "the deploy started it");

    let cloudformation = Receiver::http().await;
    let url = cloudformation.url("/cfn-response?X-Amz-Signature=abc");
    for request_type in ["Create", "Update", "Delete"] {
        let report = keys.handle(event(request_type, &url), deadline()).await;
        let Ok(KeysReport::CustomResource(report)) = report else {
            panic!("{request_type}: {report:?}");
        };
        assert!(report.succeeded(), "{request_type}: {report:?}");
    }
    assert_eq!(
        versions(&store).await,
        [1],
        "nothing added, nothing removed"
    );

    let answers = cloudformation.received();
    assert_eq!(answers.len(), 3);
    for answer in &answers {
        assert_eq!(answer.method, "PUT");
        assert_eq!(
            answer.header("content-type"),
            None,
            "a presigned URL is signed without one"
        );
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["Status"], "SUCCESS", "{body}");
        assert_eq!(body["PhysicalResourceId"], config.keyring.table.as_str());
        assert_eq!(body["RequestId"], "request-1");
        assert_eq!(body["LogicalResourceId"], "SigningKeyring");
        assert_eq!(
            body["StackId"],
            "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"
        );
    }
    let created: Value = serde_json::from_slice(&answers[0].body).unwrap();
    assert_eq!(created["Data"]["KeyVersion"], "1");
}

#[tokio::test]
async fn a_keyring_that_cannot_be_started_is_answered_failed_with_its_reason() {
    let mut config = deployed().await;
    config.keyring.table = emulator::unique_name("no-such-keyring");
    let (keys, _) = keys(&config).await;
    let cloudformation = Receiver::http().await;
    let report = keys
        .handle(event("Create", &cloudformation.url("/cfn")), deadline())
        .await;
    let Ok(KeysReport::CustomResource(report)) = report else {
        panic!("{report:?}");
    };
    assert!(!report.succeeded());
    let body: Value = serde_json::from_slice(&cloudformation.received()[0].body).unwrap();
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains(&config.keyring.table), "{reason}");

    // A response CloudFormation does not take fails the invocation, so
    // Lambda retries it.
    cloudformation.set_policy(|_| Reply::status(403));
    let refused = keys
        .handle(event("Delete", &cloudformation.url("/cfn")), deadline())
        .await;
    let message = refused.expect_err("an unanswered event fails").to_string();
    assert!(
        message.contains("SigningKeyring") && message.contains("403"),
        "{message}"
    );
}

#[tokio::test]
async fn an_event_that_does_not_parse_is_answered_failed_at_once_without_its_signature_in_errors() {
    let config = deployed().await;
    let (keys, _) = keys(&config).await;
    let cloudformation = Receiver::http().await;
    let url = cloudformation.url("/cfn?X-Amz-Signature=secret-signature");
    let answered = keys.handle(event("Replace", &url), deadline()).await;
    let Ok(KeysReport::CustomResource(report)) = answered else {
        panic!("answered, so not retried by Lambda: {answered:?}");
    };
    assert!(!report.succeeded());
    let answers = cloudformation.received();
    assert_eq!(answers.len(), 1, "CloudFormation is not left waiting");
    let body: Value = serde_json::from_slice(&answers[0].body).unwrap();
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert_eq!(body["RequestId"], "request-1");
    assert!(
        body["Reason"].as_str().unwrap().contains("Replace"),
        "{body}"
    );

    // An answer that does not reach CloudFormation names the URL without
    // its presigned signature.
    let closed = format!(
        "http://127.0.0.1:{}/cfn?X-Amz-Signature=secret-signature",
        free_port()
    );
    let message = keys
        .handle(event("Delete", &closed), deadline())
        .await
        .expect_err("nothing answers there")
        .to_string();
    assert!(!message.contains("secret-signature"), "{message}");
}

/// A loopback port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
