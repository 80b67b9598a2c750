//! The built `webhook-delivery` binary under a Lambda Runtime API: it boots,
//! delivers the sample SQS event to a real receiver with a verifiable
//! signature, and fails its cold start naming a missing variable.

use std::time::Duration;

use serde_json::{Value, json};
use shared::domain::filters::Filters;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing;
use shared::signing::sealed::StoredSecret;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::emulator;
use test_kit::receiver::Receiver;
use test_kit::runtime_api::{self, Outcome};
use test_kit::stack::{self, ids};

const BINARY: &str = env!("CARGO_BIN_EXE_webhook-delivery");
const NAME: &str = "webhook-delivery";

/// A subscription to `url` with the id of the sample event `message`, and
/// its secret (sealed for that id).
fn sample_subscription(
    message: &Value,
    url: String,
    keyring: &shared::signing::sealed::Keyring,
) -> (Subscription, shared::signing::secret::WebhookSecret) {
    let (mut sub, secret) = Subscription::create(
        message["company_id"].as_str().unwrap(),
        NewSubscription {
            url,
            description: None,
            filters: Filters::default(),
        },
        chrono::Utc::now(),
        keyring,
    )
    .unwrap();
    // The sample event's subscription id, and the secret sealed for it.
    sub.subscription_id = message["subscription_id"].as_str().unwrap().to_owned();
    sub.secret = StoredSecret::Sealed(keyring.seal(&secret, sub.secret_owner()).unwrap());
    (sub, secret)
}

#[tokio::test]
async fn binary_delivers_the_sample_sqs_event() {
    let text = std::fs::read_to_string(test_kit::event_path("sqs-delivery.json")).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    let message: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    let receiver = Receiver::http().await;

    let sdk = emulator::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let stack = stack::deploy().await;
    let env = stack::function_environment(
        &stack,
        ids::DELIVERY_FUNCTION,
        &[("TARGET_ALLOW_LIST", "127.0.0.0/8")],
    );
    let subscriptions = stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap().to_owned();
    // The keyring as the API starts it; the binary unwraps it at cold start.
    let keyring = stack::secret_vault(&stack).await.current();
    let (sub, secret) = sample_subscription(&message, receiver.url("/hook"), &keyring);
    SubscriptionStore::new(dynamo, subscriptions.clone())
        .create(&sub, None, u64::MAX)
        .await
        .unwrap();

    let (runtime, _child) = runtime_api::boot(BINARY, NAME, &stack::borrowed(&env)).await;

    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let req = &got[0];
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body, message["payload"]);
    let key = signing::key_bytes(secret.expose());
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
async fn cold_start_fails_naming_a_kms_key_that_does_not_unwrap_the_keyring() {
    let stack = stack::deploy().await;
    // Version 1, wrapped by the stack's key.
    stack::secret_vault(&stack).await;
    let kms = aws_sdk_kms::Client::new(&emulator::sdk_config().await);
    let other = kms
        .create_key()
        .description("not the stack's signing-secrets key")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let missing = format!(
        "{}/00000000-0000-4000-8000-000000000000",
        other.rsplit_once('/').unwrap().0
    );
    for wrong in [other.as_str(), missing.as_str()] {
        let env = stack::function_environment(
            &stack,
            ids::DELIVERY_FUNCTION,
            &[("SECRETS_KMS_KEY_ID", wrong)],
        );
        let logs = runtime_api::failed_cold_start(BINARY, NAME, &stack::borrowed(&env)).await;
        assert!(
            logs.contains(wrong) && logs.contains("SECRETS_KMS_KEY_ID"),
            "{wrong}: {logs}"
        );
        assert!(logs.contains("data key version 1"), "{logs}");
    }
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
        ("PARKED_EVENTS_TABLE", "ParkedEventsTable"),
        ("EVENT_BUS_NAME", "webhooks-operational"),
        ("KEYRING_TABLE", "KeyringTable"),
        ("SECRETS_KMS_KEY_ID", "alias/signing-secrets"),
    ];
    let bad = [
        ("KEYRING_REFRESH_SECONDS", "soon"),
        ("RETRY_SCHEDULE", "5s,soon"),
        ("TARGET_ALLOW_LIST", "localhost"),
        ("TARGET_EXTRA_CA_FILE", "/nonexistent/ca.pem"),
        ("DELIVERY_CONCURRENCY", "0"),
        ("BREAKER_FAILURES", "0"),
        ("DISABLE_AFTER_SECONDS", "soon"),
    ];
    runtime_api::assert_cold_start_names(BINARY, NAME, &complete, &bad).await;
}

#[tokio::test]
async fn custom_header_values_are_sent_and_absent_from_the_logs() {
    use shared::domain::headers::HeadersInput;
    use test_kit::receiver::Reply;
    const KEY: &str = "key-never-logged-7c1e";
    const BASIC: &str = "Basic bmV2ZXItbG9nZ2VkOnBhc3N3b3Jk";
    let text = std::fs::read_to_string(test_kit::event_path("sqs-delivery.json")).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    let message: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    let receiver = Receiver::http().await;
    // A failure first: the retry path logs too.
    receiver.script([Reply::status(500).body("no"), Reply::status(204)]);

    let sdk = emulator::sdk_config().await;
    // Retries due at once.
    let stack = stack::deploy_with(&[("RetrySchedule", "0s,0s")]).await;
    let env = stack::function_environment(
        &stack,
        ids::DELIVERY_FUNCTION,
        // Everything the function and its libraries log.
        &[("TARGET_ALLOW_LIST", "127.0.0.0/8"), ("RUST_LOG", "trace")],
    );
    let keyring = stack::secret_vault(&stack).await.current();
    let (mut sub, _) = sample_subscription(&message, receiver.url("/hook"), &keyring);
    let values = HeadersInput(
        [("x-api-key", KEY), ("authorization", BASIC)]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .into(),
    )
    .validate()
    .unwrap();
    sub.set_headers(&values, &keyring).unwrap();
    let store = SubscriptionStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap(),
    );
    store.create(&sub, None, u64::MAX).await.unwrap();

    let (runtime, child) = runtime_api::boot_logged(BINARY, NAME, &stack::borrowed(&env)).await;
    let mut retry_event = event.clone();
    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
    // The retry, as the retry queue hands it back.
    let retry_url = stack.queue_url(ids::RETRY_QUEUE).unwrap();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let retried = loop {
        assert!(std::time::Instant::now() < deadline, "no retry was queued");
        let taken = emulator::take(&sqs, retry_url, 1).await;
        if let Some(m) = taken.into_iter().next() {
            break m.body.unwrap();
        }
    };
    retry_event["Records"][0]["body"] = retried.into();
    let outcome = runtime.invoke(retry_event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    for req in &got {
        assert_eq!(req.header("x-api-key"), Some(KEY));
        assert_eq!(req.header("authorization"), Some(BASIC));
    }

    let logs = child.stop().await;
    assert!(
        logs.contains(&sub.subscription_id) && logs.contains("retry"),
        "the function's logs were captured: {logs}"
    );
    for secret in [KEY, BASIC, "bmV2ZXItbG9nZ2VkOnBhc3N3b3Jk"] {
        assert!(!logs.contains(secret), "{secret} is in the logs");
    }
}
