//! The built `webhook-delivery` binary under a Lambda Runtime API: it boots,
//! delivers the sample SQS event to a real receiver with a verifiable
//! signature, and fails its cold start naming a missing variable. At the
//! default log level a healthy invocation writes its EMF line and nothing
//! else; a failed attempt still logs its failure.

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

/// Lambda's logging variables for the template's `LoggingConfig` (JSON,
/// the `LogLevel` parameter's default): what the deployed function sees.
const PRODUCTION_LOGGING: [(&str, &str); 2] = [
    ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
];

/// The sample event with `n` records for its subscription, each its own
/// event (webhook id).
fn sample_batch(n: usize) -> Value {
    let text = std::fs::read_to_string(test_kit::event_path("sqs-delivery.json")).unwrap();
    let mut event: Value = serde_json::from_str(&text).unwrap();
    let record = event["Records"][0].clone();
    let body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    event["Records"] = (0..n)
        .map(|i| {
            let key = format!("evt_{:032x}", i + 1);
            let mut body = body.clone();
            body["idempotency_key"] = key.clone().into();
            body["payload"]["idempotency_key"] = key.into();
            let mut record = record.clone();
            record["messageId"] = uuid::Uuid::new_v4().to_string().into();
            record["body"] = body.to_string().into();
            record
        })
        .collect();
    event
}

/// A delivery function booted with its deployed environment and Lambda's
/// production logging, its output kept, for one stored subscription to
/// `receiver` (the sample event's).
async fn booted_with_logs(
    receiver: &Receiver,
    event: &Value,
) -> (runtime_api::RuntimeApi, runtime_api::LoggedChild, String) {
    let message: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    let stack = stack::deploy().await;
    let mut local = vec![("TARGET_ALLOW_LIST", "127.0.0.0/8")];
    local.extend(PRODUCTION_LOGGING);
    let env = stack::function_environment(&stack, ids::DELIVERY_FUNCTION, &local);
    assert!(
        !env.iter().any(|(k, _)| k == "RUST_LOG"),
        "the deployed function sets no RUST_LOG"
    );
    let keyring = stack::secret_vault(&stack).await.current();
    let (sub, _) = sample_subscription(&message, receiver.url("/hook"), &keyring);
    let dynamo = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
    SubscriptionStore::new(dynamo, stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap())
        .create(&sub, None, u64::MAX)
        .await
        .unwrap();
    let name = stack.function(ids::DELIVERY_FUNCTION).unwrap().name.clone();
    let (runtime, child) = runtime_api::boot_logged(BINARY, &name, &stack::borrowed(&env)).await;
    (runtime, child, name)
}

/// Every line of `logs`, each a JSON object.
fn json_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect()
}

#[tokio::test]
async fn a_healthy_invocation_writes_its_emf_line_and_nothing_else_at_the_default_level() {
    const N: usize = 10;
    let receiver = Receiver::http().await;
    let event = sample_batch(N);
    let (runtime, child, name) = booted_with_logs(&receiver, &event).await;
    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
    assert_eq!(receiver.wait_for(N, Duration::from_secs(10)).await.len(), N);

    let lines = json_lines(&child.stop().await);
    let (emf, others): (Vec<&Value>, Vec<&Value>) =
        lines.iter().partition(|l| l.get("_aws").is_some());
    // The cold start says which signing-secret key versions it loaded,
    // once per instance; the invocation adds only its metrics.
    let messages: Vec<&str> = others
        .iter()
        .map(|l| l["message"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        messages,
        ["signing-secret keyring loaded"],
        "only the cold start's line besides the EMF line: {others:?}"
    );
    assert_eq!(emf.len(), 1, "{emf:?}");
    let doc = emf[0];
    assert_eq!(doc["Delivered"], N as u64, "{doc}");
    assert_eq!(doc["Function"], name.as_str());
    let reported: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert!(
        reported.iter().all(|m| doc[*m] != 0),
        "no zero-valued metric: {doc}"
    );
    assert!(!reported.contains(&"FailedAttempts"), "{doc}");
}

#[tokio::test]
async fn a_failed_attempt_still_logs_its_failure_at_the_default_level() {
    use test_kit::receiver::Reply;
    let receiver = Receiver::http().await;
    receiver.set_policy(|_| Reply::status(503));
    let event = sample_batch(1);
    let message: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    let (runtime, child, _) = booted_with_logs(&receiver, &event).await;
    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []}))),
        "the retry is queued"
    );

    let lines = json_lines(&child.stop().await);
    let failed = lines
        .iter()
        .find(|l| l["message"] == "attempt failed")
        .unwrap_or_else(|| panic!("no failure line: {lines:?}"));
    assert_eq!(failed["level"], "WARN", "{failed}");
    assert_eq!(failed["webhook_id"], message["idempotency_key"], "{failed}");
    assert_eq!(failed["subscription_id"], message["subscription_id"]);
    assert_eq!(
        (failed["status"].clone(), failed["attempt"].clone()),
        (json!(503), json!(1))
    );
    // One line per failed attempt: the retry it schedules is counted in
    // the EMF line, not logged again.
    assert!(
        !lines.iter().any(|l| l["message"] == "retry scheduled"),
        "{lines:?}"
    );
    let emf: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 1);
    assert_eq!(
        (emf[0]["FailedAttempts"].clone(), emf[0]["Retried"].clone()),
        (json!(1), json!(1))
    );
    assert!(emf[0].get("Delivered").is_none(), "{}", emf[0]);
}
