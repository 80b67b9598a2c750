//! Redrive against the local AWS emulator: dead-lettered deliveries are put
//! on a real DLQ, the handler runs, and both queues are read back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageAttributeValue, QueueAttributeName};
use dlq_redrive::{RedriveConfig, RedriveReport, Redriver, Stopped};
use serde_json::{Value, json};
use shared::domain::message::{
    AttemptRecord, DEAD_LETTER_REASON_ATTRIBUTE, DeliveryMessage, EventEnvelope, webhook_id,
};
use shared::domain::subscription::new_subscription_id;
use test_kit::aws_proxy::{AwsProxy, FaultRule};
use test_kit::emulator;
use test_kit::stack::{self, ids};

/// A subscription id for tests that select by company or not at all.
const SUB: &str = "sub_0193a5b2c4d67e8f9a0b1c2d3e4f5a6b";

struct Fixture {
    sqs: aws_sdk_sqs::Client,
    config: RedriveConfig,
}

/// A delivery as it sits in the DLQ.
#[derive(Debug, Clone)]
struct Dead {
    key: String,
    body: String,
}

/// A dead-lettered delivery body for `attempt` (with the history and
/// `not_before` the retries left on it).
fn dead_body(company: &str, subscription: &str, attempt: u32) -> Dead {
    let key = webhook_id(subscription, &uuid::Uuid::new_v4().to_string());
    let data =
        serde_json::value::to_raw_value(&json!({"job_id": "job-1", "state": "failed"})).unwrap();
    let first = EventEnvelope {
        sequence: None,
        company_id: company,
        event_type: "job.failed",
        timestamp: "2026-11-22T10:00:00.000Z",
        data: &data,
    }
    .message_body(subscription, &key);
    let mut message = DeliveryMessage::parse(&first).unwrap();
    let at = chrono::DateTime::from_timestamp(1_795_341_600, 0).unwrap();
    while message.attempt < attempt {
        message.record(AttemptRecord {
            attempt: message.attempt,
            at,
            status: Some(503),
            error: None,
        });
        message = message.next_attempt(at + chrono::Duration::minutes(5));
    }
    Dead {
        key,
        body: message.to_body(),
    }
}

impl Fixture {
    /// A stack of its own and the redrive function's deployed
    /// configuration.
    async fn new() -> Self {
        let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
        let stack = stack::deploy().await;
        let config =
            RedriveConfig::from_vars(&stack::function_vars(&stack, ids::REDRIVE_FUNCTION, &[]))
                .unwrap();
        assert_eq!(
            config.dead_letter_queue_url,
            stack.queue_url(ids::DEAD_LETTER_QUEUE).unwrap()
        );
        Self { sqs, config }
    }

    fn redriver(&self) -> Redriver {
        Redriver::new(&self.config, self.sqs.clone())
    }

    /// A redriver whose SQS calls go through `proxy`.
    async fn redriver_via(&self, proxy: &AwsProxy) -> Redriver {
        let sdk = emulator::sdk_config().await;
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .endpoint_url(proxy.endpoint())
                .build(),
        );
        Redriver::new(&self.config, sqs)
    }

    /// Puts `body` on the DLQ, with a `dead_letter_reason` if given.
    async fn put(&self, body: &str, reason: Option<&str>) {
        let mut send = self
            .sqs
            .send_message()
            .queue_url(&self.config.dead_letter_queue_url)
            .message_body(body);
        if let Some(reason) = reason {
            send = send.message_attributes(
                DEAD_LETTER_REASON_ATTRIBUTE,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(reason)
                    .build()
                    .unwrap(),
            );
        }
        send.send().await.unwrap();
    }

    /// Dead-letters a delivery and returns it.
    async fn dead(&self, company: &str, subscription: &str, attempt: u32) -> Dead {
        let dead = dead_body(company, subscription, attempt);
        // Exhausted deliveries are tagged by the delivery function; those
        // moved by the queue's redrive policy carry no attribute.
        let reason = (attempt == 8).then_some("exhausted");
        self.put(&dead.body, reason).await;
        dead
    }

    async fn handle(&self, redriver: &Redriver, event: Value) -> RedriveReport {
        redriver
            .handle(event, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap()
    }

    async fn run(&self, event: Value) -> RedriveReport {
        self.handle(&self.redriver(), event).await
    }

    /// Every message visible on `queue_url` now, hidden for a minute
    /// afterwards (each queue belongs to one test).
    async fn visible(&self, queue_url: &str) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let messages = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            out.extend(messages);
        }
    }

    /// Bodies visible on the DLQ, sorted.
    async fn dlq_bodies(&self) -> Vec<String> {
        let mut bodies: Vec<String> = self
            .visible(&self.config.dead_letter_queue_url)
            .await
            .into_iter()
            .map(|m| m.body.unwrap())
            .collect();
        bodies.sort();
        bodies
    }

    /// Deliveries on the DeliveryQueue, by event id.
    async fn delivered(&self) -> BTreeMap<String, DeliveryMessage> {
        let mut out = BTreeMap::new();
        for m in self.visible(&self.config.delivery_queue_url).await {
            test_kit::emulator::assert_grouped_by_company(&m);
            let d = DeliveryMessage::parse(m.body().unwrap()).expect("a delivery message");
            assert!(
                out.insert(d.webhook_id.clone(), d).is_none(),
                "one copy per delivery"
            );
        }
        out
    }
}

fn sorted_bodies(dead: &[&Dead]) -> Vec<String> {
    let mut bodies: Vec<String> = dead.iter().map(|d| d.body.clone()).collect();
    bodies.sort();
    bodies
}

fn report(
    examined: usize,
    matched: usize,
    moved: usize,
    skipped: usize,
    malformed: usize,
) -> RedriveReport {
    RedriveReport {
        examined,
        matched,
        moved,
        skipped,
        malformed,
        ..RedriveReport::default()
    }
}

/// The DeliveryQueue holds exactly `moved`, each as a first attempt of the
/// same event.
async fn assert_redriven(f: &Fixture, moved: &[&Dead]) {
    let delivered = f.delivered().await;
    let keys: BTreeSet<&String> = moved.iter().map(|d| &d.key).collect();
    assert_eq!(delivered.keys().collect::<BTreeSet<_>>(), keys);
    for dead in moved {
        let before = DeliveryMessage::parse(&dead.body).unwrap();
        let after = &delivered[&dead.key];
        assert_eq!(after.attempt, 1);
        assert_eq!(after.not_before, None);
        assert_eq!(after.payload.get(), before.payload.get());
        assert_eq!(after.history, before.history, "the failure history is kept");
        assert_eq!(
            (&after.company_id, &after.subscription_id, &after.event_type),
            (
                &before.company_id,
                &before.subscription_id,
                &before.event_type
            )
        );
    }
}

/// A DLQ with deliveries of two companies, exhausted ones (attempt 8,
/// tagged) and ones moved by the redrive policy (attempt 3, untagged).
struct Mixed {
    sub_a: String,
    sub_b: String,
    acme_a: [Dead; 2],
    acme_b: [Dead; 2],
    globex_c: Dead,
    /// Another company's delivery with the same subscription id as
    /// `acme_b`: only the two filters together tell them apart.
    globex_b: Dead,
}

impl Mixed {
    async fn put(f: &Fixture) -> Self {
        let (a, b, c) = (
            new_subscription_id(),
            new_subscription_id(),
            new_subscription_id(),
        );
        Self {
            acme_a: [f.dead("acme", &a, 8).await, f.dead("acme", &a, 3).await],
            acme_b: [f.dead("acme", &b, 3).await, f.dead("acme", &b, 8).await],
            globex_c: f.dead("globex", &c, 8).await,
            globex_b: f.dead("globex", &b, 3).await,
            sub_a: a,
            sub_b: b,
        }
    }

    fn all(&self) -> Vec<&Dead> {
        let [a0, a1] = &self.acme_a;
        let [b0, b1] = &self.acme_b;
        vec![a0, a1, b0, b1, &self.globex_c, &self.globex_b]
    }
}

#[tokio::test]
async fn a_subscription_filter_moves_only_that_subscriptions_deliveries() {
    let f = Fixture::new().await;
    let m = Mixed::put(&f).await;
    let r = f.run(json!({"subscription_id": m.sub_a})).await;
    assert_eq!(r, report(6, 2, 2, 4, 0));
    assert_redriven(&f, &[&m.acme_a[0], &m.acme_a[1]]).await;
    // The others were held during the pass and are receivable at once,
    // exactly as they were.
    assert_eq!(
        f.dlq_bodies().await,
        sorted_bodies(&[&m.acme_b[0], &m.acme_b[1], &m.globex_c, &m.globex_b])
    );
}

#[tokio::test]
async fn a_company_filter_moves_every_subscription_of_the_company() {
    let f = Fixture::new().await;
    let m = Mixed::put(&f).await;
    let r = f.run(json!({"company_id": "acme"})).await;
    assert_eq!(r, report(6, 4, 4, 2, 0));
    assert_redriven(
        &f,
        &[&m.acme_a[0], &m.acme_a[1], &m.acme_b[0], &m.acme_b[1]],
    )
    .await;
    assert_eq!(
        f.dlq_bodies().await,
        sorted_bodies(&[&m.globex_c, &m.globex_b])
    );
}

#[tokio::test]
async fn both_filters_must_match() {
    let f = Fixture::new().await;
    let m = Mixed::put(&f).await;
    let r = f
        .run(json!({"company_id": "acme", "subscription_id": m.sub_b}))
        .await;
    assert_eq!(r, report(6, 2, 2, 4, 0));
    assert_redriven(&f, &[&m.acme_b[0], &m.acme_b[1]]).await;
    assert_eq!(
        f.dlq_bodies().await,
        sorted_bodies(&[&m.acme_a[0], &m.acme_a[1], &m.globex_c, &m.globex_b])
    );
}

#[tokio::test]
async fn without_filters_everything_is_moved_and_the_dlq_is_empty() {
    let f = Fixture::new().await;
    let m = Mixed::put(&f).await;
    let r = f.run(json!({})).await;
    assert_eq!(r, report(6, 6, 6, 0, 0));
    assert_redriven(&f, &m.all()).await;
    assert!(f.dlq_bodies().await.is_empty());
}

#[tokio::test]
async fn malformed_messages_stay_in_the_dlq_untouched() {
    let f = Fixture::new().await;
    let good = f.dead("acme", SUB, 8).await;
    let unknown_version = dead_body("acme", SUB, 8).body.replace("\"v\":1", "\"v\":9");
    let garbage = ["not json at all", "{\"v\":1}", unknown_version.as_str()];
    f.put(garbage[0], Some("malformed")).await;
    f.put(garbage[1], None).await;
    f.put(garbage[2], Some("malformed")).await;

    let r = f.run(json!({"company_id": "acme"})).await;
    assert_eq!(r, report(4, 1, 1, 0, 3));
    assert_redriven(&f, &[&good]).await;
    let left = f.visible(&f.config.dead_letter_queue_url).await;
    let mut bodies: Vec<&str> = left.iter().map(|m| m.body().unwrap()).collect();
    bodies.sort();
    let mut expected = garbage.to_vec();
    expected.sort();
    assert_eq!(bodies, expected);
    let tagged = left
        .iter()
        .filter(|m| {
            m.message_attributes()
                .and_then(|a| a.get(DEAD_LETTER_REASON_ATTRIBUTE))
                .and_then(|v| v.string_value())
                == Some("malformed")
        })
        .count();
    assert_eq!(tagged, 2, "message attributes are kept");
}

#[tokio::test]
async fn a_dry_run_counts_but_moves_nothing() {
    let f = Fixture::new().await;
    let m = Mixed::put(&f).await;
    f.put("garbage", Some("malformed")).await;
    let mut before = sorted_bodies(&m.all());
    before.push("garbage".to_owned());
    before.sort();
    let r = f.run(json!({"company_id": "acme", "dry_run": true})).await;
    assert_eq!(
        r,
        RedriveReport {
            dry_run: true,
            ..report(7, 4, 0, 2, 1)
        }
    );
    assert!(f.delivered().await.is_empty());
    assert_eq!(
        f.dlq_bodies().await,
        before,
        "every message is back, unchanged"
    );
}

#[tokio::test]
async fn max_messages_bounds_the_move_and_a_second_run_takes_the_rest() {
    let f = Fixture::new().await;
    let (a, b) = (new_subscription_id(), new_subscription_id());
    let mut wanted = Vec::new();
    let mut others = Vec::new();
    for i in 0..25 {
        wanted.push(f.dead("acme", &a, 8).await);
        if i % 5 == 0 {
            others.push(f.dead("acme", &b, 8).await);
        }
    }
    let r = f
        .run(json!({"subscription_id": a, "max_messages": 12}))
        .await;
    assert_eq!((r.matched, r.moved, r.failed), (12, 12, 0));
    assert_eq!(r.stopped, Stopped::MaxMessages);
    assert_eq!(r.examined, r.matched + r.skipped);
    let first = f.delivered().await;
    assert_eq!(first.len(), 12);

    // The rest, and the other subscription's, are immediately available.
    let r = f.run(json!({"subscription_id": a})).await;
    assert_eq!(
        (r.moved, r.skipped, r.stopped),
        (13, 5, Stopped::QueueEmpty)
    );
    // The first 12 are still hidden from the read above; together the two
    // runs moved every delivery once.
    let second = f.delivered().await;
    assert_eq!(second.len(), 13);
    let keys: BTreeSet<&String> = first.keys().chain(second.keys()).collect();
    assert_eq!(keys, wanted.iter().map(|d| &d.key).collect());
    assert_eq!(
        f.dlq_bodies().await,
        sorted_bodies(&others.iter().collect::<Vec<_>>())
    );
}

#[tokio::test]
async fn one_pass_reads_each_message_once() {
    let f = Fixture::new().await;
    let (a, b) = (new_subscription_id(), new_subscription_id());
    let mut wanted = Vec::new();
    for i in 0..52 {
        if i % 4 == 0 {
            wanted.push(f.dead("acme", &a, 8).await);
        } else {
            f.dead("acme", &b, 8).await;
        }
    }
    let proxy = AwsProxy::start(emulator::endpoint());
    let redriver = f.redriver_via(&proxy).await;
    let r = f.handle(&redriver, json!({"subscription_id": a})).await;
    assert_eq!(r, report(52, 13, 13, 39, 0));
    // Ten per receive and one empty receive to end the pass: the 39 held
    // messages were never received again.
    let receives = proxy.calls("AmazonSQS.ReceiveMessage");
    assert!(
        (7..=8).contains(&receives),
        "{receives} receives for 52 messages"
    );
    assert_eq!(proxy.calls("AmazonSQS.ChangeMessageVisibilityBatch"), 4);
    assert_redriven(&f, &wanted.iter().collect::<Vec<_>>()).await;
    assert_eq!(f.dlq_bodies().await.len(), 39);
}

#[tokio::test]
async fn a_rejected_send_leaves_the_delivery_in_the_dlq() {
    let f = Fixture::new().await;
    let rejected = f.dead("acme", SUB, 8).await;
    let flaky = f.dead("acme", SUB, 3).await;
    let fine = f.dead("acme", SUB, 8).await;
    let proxy = AwsProxy::start(emulator::endpoint());
    proxy.fail_entries(FaultRule::always(&rejected.key));
    proxy.fail_entries(FaultRule::times(&flaky.key, 1));
    let redriver = f.redriver_via(&proxy).await;

    let r = f.handle(&redriver, json!({})).await;
    assert_eq!(
        r,
        RedriveReport {
            failed: 1,
            ..report(3, 3, 2, 0, 0)
        }
    );
    assert_redriven(&f, &[&flaky, &fine]).await;
    // Unchanged and visible again, ready for the next run.
    assert_eq!(f.dlq_bodies().await, [rejected.body]);
}

#[tokio::test]
async fn a_failed_send_request_deletes_nothing() {
    let f = Fixture::new().await;
    let dead = [f.dead("acme", SUB, 8).await, f.dead("acme", SUB, 8).await];
    let proxy = AwsProxy::start(emulator::endpoint());
    // More failures than the SDK's and the function's retries together.
    proxy.fail_requests("AmazonSQS.SendMessageBatch", 100);
    let redriver = f.redriver_via(&proxy).await;
    let r = f.handle(&redriver, json!({})).await;
    assert_eq!(
        r,
        RedriveReport {
            failed: 2,
            ..report(2, 2, 0, 0, 0)
        }
    );
    assert_eq!(proxy.calls("AmazonSQS.DeleteMessageBatch"), 0);
    assert!(f.delivered().await.is_empty());
    assert_eq!(f.dlq_bodies().await, sorted_bodies(&[&dead[0], &dead[1]]));
}

#[tokio::test]
async fn a_near_deadline_stops_the_pass_before_it_receives() {
    let f = Fixture::new().await;
    let dead = f.dead("acme", SUB, 8).await;
    let r = f
        .redriver()
        .handle(json!({}), Instant::now() + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        r,
        RedriveReport {
            stopped: Stopped::TimeLimit,
            ..RedriveReport::default()
        }
    );
    assert_eq!(f.dlq_bodies().await, [dead.body]);
}

#[tokio::test]
async fn an_invalid_request_touches_no_queue() {
    let f = Fixture::new().await;
    let dead = f.dead("acme", SUB, 8).await;
    let proxy = AwsProxy::start(emulator::endpoint());
    let redriver = f.redriver_via(&proxy).await;
    for event in [
        json!({"subscriptionId": SUB}),
        json!({"max_messages": 0}),
        json!({"company_id": ""}),
        json!(SUB),
    ] {
        let err = redriver
            .handle(event.clone(), Instant::now() + Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid redrive request"),
            "{event}: {err}"
        );
    }
    assert_eq!(proxy.calls("AmazonSQS.ReceiveMessage"), 0);
    assert_eq!(f.dlq_bodies().await, [dead.body]);
}

#[tokio::test]
async fn a_failed_delete_is_reported_and_the_copy_stays_hidden() {
    let f = Fixture::new().await;
    let dead = f.dead("acme", SUB, 8).await;
    let proxy = AwsProxy::start(emulator::endpoint());
    // More failures than the SDK's and the function's retries together.
    proxy.fail_requests("AmazonSQS.DeleteMessageBatch", 100);
    let redriver = f.redriver_via(&proxy).await;
    let r = f.handle(&redriver, json!({})).await;
    assert_eq!(
        r,
        RedriveReport {
            not_deleted: 1,
            ..report(1, 1, 0, 0, 0)
        }
    );
    assert_redriven(&f, &[&dead]).await;
    // The DLQ copy is not released: it stays hidden for the run's
    // visibility timeout instead of inviting an immediate second redrive.
    assert!(f.dlq_bodies().await.is_empty());
    let hidden = f
        .sqs
        .get_queue_attributes()
        .queue_url(&f.config.dead_letter_queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    assert_eq!(
        hidden
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
            .map(String::as_str),
        Some("1")
    );
}

#[tokio::test]
async fn a_failing_receive_ends_the_pass_with_the_error() {
    let f = Fixture::new().await;
    let dead = f.dead("acme", SUB, 8).await;
    let proxy = AwsProxy::start(emulator::endpoint());
    proxy.fail_requests("AmazonSQS.ReceiveMessage", 100);
    let redriver = f.redriver_via(&proxy).await;
    let r = f.handle(&redriver, json!({})).await;
    assert_eq!(r.stopped, Stopped::ReceiveFailed);
    assert_eq!((r.examined, r.moved), (0, 0));
    let error = r.error.expect("the receive error is reported");
    assert!(error.contains("injected"), "{error}");
    assert_eq!(f.dlq_bodies().await, [dead.body]);
}
