//! The AWS proxy in front of the emulator: call counts and injected faults,
//! exercised with the real SDK clients.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use test_kit::aws_proxy::{AwsProxy, FaultRule};
use test_kit::emulator;

const SEND_BATCH: &str = "AmazonSQS.SendMessageBatch";
const QUERY: &str = "DynamoDB_20120810.Query";

async fn sqs(proxy: &AwsProxy, retry: RetryConfig) -> aws_sdk_sqs::Client {
    let sdk = emulator::sdk_config().await;
    let config = aws_sdk_sqs::config::Builder::from(&sdk)
        .endpoint_url(proxy.endpoint())
        .retry_config(retry)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

async fn dynamodb(proxy: &AwsProxy) -> aws_sdk_dynamodb::Client {
    let sdk = emulator::sdk_config().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(proxy.endpoint())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn fresh_queue(client: &aws_sdk_sqs::Client) -> String {
    client
        .create_queue()
        .queue_name(emulator::unique_name("proxy"))
        .send()
        .await
        .expect("queue is created")
        .queue_url
        .expect("queue URL")
}

fn entries(bodies: &[String]) -> Vec<SendMessageBatchRequestEntry> {
    bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            SendMessageBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .message_body(body)
                .build()
                .expect("valid entry")
        })
        .collect()
}

/// Bodies of every message on the queue, read and deleted.
async fn drain(client: &aws_sdk_sqs::Client, queue: &str) -> BTreeSet<String> {
    emulator::drain(client, queue)
        .await
        .into_iter()
        .map(|m| m.body.expect("body"))
        .collect()
}

fn ids(list: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    list.into_iter().collect()
}

#[tokio::test]
async fn entries_matching_an_always_rule_fail_and_the_rest_are_delivered() {
    let proxy = AwsProxy::start(emulator::endpoint());
    let client = sqs(&proxy, RetryConfig::disabled()).await;
    let queue = fresh_queue(&client).await;
    proxy.fail_entries(FaultRule::always("poison"));

    let bodies: Vec<String> = (0..10)
        .map(|i| {
            if i % 3 == 1 {
                format!("poison-{i}")
            } else {
                format!("ok-{i}")
            }
        })
        .collect();
    let out = client
        .send_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries(&bodies)))
        .send()
        .await
        .expect("batch is answered");

    assert_eq!(out.successful.len(), 7, "{out:?}");
    assert_eq!(out.failed.len(), 3, "{out:?}");
    assert_eq!(
        ids(out.failed.iter().map(|f| f.id.clone())),
        ids(["e1", "e4", "e7"].map(String::from))
    );
    for f in &out.failed {
        assert!(!f.sender_fault);
        assert_eq!(f.code, "InternalError");
        assert_eq!(f.message.as_deref(), Some("injected fault"));
    }
    assert_eq!(
        ids(out.successful.iter().map(|s| s.id.clone())),
        ids(["e0", "e2", "e3", "e5", "e6", "e8", "e9"].map(String::from))
    );

    let direct = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let delivered = drain(&direct, &queue).await;
    let expected: BTreeSet<String> = bodies
        .iter()
        .filter(|b| b.starts_with("ok-"))
        .cloned()
        .collect();
    assert_eq!(delivered, expected);

    // The rule keeps failing the same bodies.
    let again = client
        .send_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries(&bodies[..2])))
        .send()
        .await
        .expect("batch is answered");
    assert_eq!(
        ids(again.failed.into_iter().map(|f| f.id)),
        ids(["e1".to_owned()])
    );
    assert_eq!(
        ids(again.successful.into_iter().map(|s| s.id)),
        ids(["e0".to_owned()])
    );
}

#[tokio::test]
async fn a_batch_whose_entries_all_fail_never_reaches_the_emulator() {
    let proxy = AwsProxy::start(emulator::endpoint());
    let client = sqs(&proxy, RetryConfig::disabled()).await;
    let queue = fresh_queue(&client).await;
    proxy.fail_entries(FaultRule::always("poison"));

    let bodies: Vec<String> = (0..3).map(|i| format!("poison-{i}")).collect();
    let out = client
        .send_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries(&bodies)))
        .send()
        .await
        .expect("batch is answered");
    assert!(out.successful.is_empty(), "{out:?}");
    assert_eq!(out.failed.len(), 3);
    assert!(out.failed.iter().all(|f| f.code == "InternalError"));

    let direct = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    assert!(drain(&direct, &queue).await.is_empty());
}

#[tokio::test]
async fn entries_matching_a_counted_rule_succeed_once_it_is_used_up() {
    let proxy = AwsProxy::start(emulator::endpoint());
    let client = sqs(&proxy, RetryConfig::disabled()).await;
    let queue = fresh_queue(&client).await;
    proxy.fail_entries(FaultRule::times("flaky", 1));

    let bodies: Vec<String> = ["flaky-a", "steady-b", "flaky-c"]
        .map(String::from)
        .to_vec();
    let first = client
        .send_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries(&bodies)))
        .send()
        .await
        .expect("batch is answered");
    assert_eq!(
        ids(first.failed.into_iter().map(|f| f.id)),
        ids(["e0", "e2"].map(String::from))
    );
    assert_eq!(
        ids(first.successful.into_iter().map(|s| s.id)),
        ids(["e1".to_owned()])
    );

    let retried = vec![bodies[0].clone(), bodies[2].clone()];
    let second = client
        .send_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries(&retried)))
        .send()
        .await
        .expect("batch is answered");
    assert!(second.failed.is_empty(), "{second:?}");
    assert_eq!(second.successful.len(), 2);

    let delivered = drain(&client, &queue).await;
    assert_eq!(delivered, bodies.into_iter().collect());
}

#[tokio::test]
async fn cleared_faults_no_longer_apply() {
    let proxy = AwsProxy::start(emulator::endpoint());
    let client = sqs(&proxy, RetryConfig::disabled()).await;
    let queue = fresh_queue(&client).await;
    proxy.fail_entries(FaultRule::always("poison"));
    proxy.fail_requests(SEND_BATCH, 5);
    proxy.clear_faults();

    let out = client
        .send_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries(&["poison-0".to_owned()])))
        .send()
        .await
        .expect("batch is answered");
    assert!(out.failed.is_empty(), "{out:?}");
    assert_eq!(out.successful.len(), 1);
}

#[tokio::test]
async fn failed_requests_answer_500_and_are_counted() {
    let proxy = AwsProxy::start(emulator::endpoint());
    let client = sqs(&proxy, RetryConfig::disabled()).await;
    let queue = fresh_queue(&client).await;
    proxy.reset_counts();
    proxy.fail_requests(SEND_BATCH, 1);

    let batch = || {
        client
            .send_message_batch()
            .queue_url(&queue)
            .set_entries(Some(entries(&["hello".to_owned()])))
            .send()
    };
    let err = batch().await.expect_err("the injected failure surfaces");
    assert_eq!(err.code(), Some("InternalError"), "{err:?}");
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(500),
        "{err:?}"
    );
    assert_eq!(proxy.calls(SEND_BATCH), 1);

    let out = batch().await.expect("the next request goes through");
    assert_eq!(out.successful.len(), 1);
    assert_eq!(proxy.calls(SEND_BATCH), 2);
}

#[tokio::test]
async fn the_sdk_retries_failed_requests_through_the_proxy() {
    let proxy = AwsProxy::start(emulator::endpoint());
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(10));
    let client = sqs(&proxy, retry).await;
    let queue = fresh_queue(&client).await;
    proxy.reset_counts();
    proxy.fail_requests(SEND_BATCH, 2);

    let out = client
        .send_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries(&["retried".to_owned()])))
        .send()
        .await
        .expect("the third attempt succeeds");
    assert_eq!(out.successful.len(), 1);
    assert_eq!(proxy.calls(SEND_BATCH), 3);
}

#[tokio::test]
async fn calls_are_counted_by_target() {
    let proxy = AwsProxy::start(emulator::endpoint());
    let sqs = sqs(&proxy, RetryConfig::disabled()).await;
    let dynamo = dynamodb(&proxy).await;
    let queue = fresh_queue(&sqs).await;
    let table = test_kit::stack::deploy()
        .await
        .table(test_kit::stack::ids::SUBSCRIPTIONS_TABLE)
        .unwrap()
        .to_owned();
    dynamo
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("the table is described");
    assert_eq!(proxy.calls("AmazonSQS.CreateQueue"), 1);
    assert_eq!(proxy.calls("DynamoDB_20120810.DescribeTable"), 1);
    proxy.reset_counts();
    assert_eq!(proxy.calls("AmazonSQS.CreateQueue"), 0);

    for i in 0..2 {
        sqs.send_message_batch()
            .queue_url(&queue)
            .set_entries(Some(entries(&[format!("count-{i}")])))
            .send()
            .await
            .expect("batch is sent");
    }
    let out = dynamo
        .query()
        .table_name(&table)
        .key_condition_expression("company_id = :c")
        .expression_attribute_values(":c", AttributeValue::S("acme".to_owned()))
        .send()
        .await
        .expect("query through the proxy");
    assert_eq!(out.count, 0);

    assert_eq!(proxy.calls(SEND_BATCH), 2);
    assert_eq!(proxy.calls(QUERY), 1);
    assert_eq!(proxy.calls("AmazonSQS.ReceiveMessage"), 0);
}

#[tokio::test]
async fn emulator_errors_pass_through_unchanged() {
    let proxy = AwsProxy::start(emulator::endpoint());
    let proxied = sqs(&proxy, RetryConfig::disabled()).await;
    let direct = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let missing = emulator::unique_name("missing");

    let via_proxy = proxied
        .get_queue_url()
        .queue_name(&missing)
        .send()
        .await
        .expect_err("the queue does not exist");
    let without = direct
        .get_queue_url()
        .queue_name(&missing)
        .send()
        .await
        .expect_err("the queue does not exist");
    assert!(via_proxy.code().is_some(), "{via_proxy:?}");
    assert_eq!(via_proxy.code(), without.code());
    assert_eq!(via_proxy.message(), without.message());
    assert_eq!(
        via_proxy.raw_response().map(|r| r.status().as_u16()),
        without.raw_response().map(|r| r.status().as_u16())
    );
    assert_eq!(proxy.calls("AmazonSQS.GetQueueUrl"), 1);
}
