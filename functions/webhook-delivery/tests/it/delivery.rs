//! The delivery function against the local AWS emulator and real loopback
//! receivers (plain HTTP, and HTTPS with a certificate made by the test).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use chrono::Utc;
use shared::delivery::retry::RetrySchedule;
use shared::domain::message::{DEAD_LETTER_REASON_ATTRIBUTE, DeliveryMessage, test_event_message};
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::secret::WebhookSecret;
use shared::signing::{self, SignatureScheme, key_bytes};
use shared::storage::deliveries::{AttemptLog, DeliveryLog, Outcome};
use shared::storage::keyring::SecretVault;
use shared::storage::parked::{Order, ParkedEvent, ParkedEvents, ParkedQuery, ParkedStatus};
use shared::storage::subscriptions::SubscriptionStore;
use shared::target_guard::allow_list::AllowList;
use test_kit::aws_proxy::AwsProxy;
use test_kit::emulator;
use test_kit::receiver::{Received, Receiver, Reply};
use test_kit::stack::{self, ids};
use webhook_delivery::handler::GONE_REASON;
use webhook_delivery::{Delivery, DeliveryConfig, Tally};

const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    config: DeliveryConfig,
    delivery_queue_url: String,
    store: SubscriptionStore,
    log: DeliveryLog,
    sqs: aws_sdk_sqs::Client,
    dynamo: aws_sdk_dynamodb::Client,
    events: aws_sdk_eventbridge::Client,
    company: String,
    vault: Arc<SecretVault>,
}

/// A queued message as Lambda hands it over.
struct Queued {
    body: String,
    reason: Option<String>,
}

impl Fixture {
    /// A stack of its own; the delivery function's deployed configuration
    /// with loopback receivers allowed, shorter timeouts and a compressed
    /// schedule of three attempts with no waits.
    async fn new() -> Self {
        let sdk = emulator::sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let stack = stack::deploy_with(&[("RetrySchedule", "0s,0s")]).await;
        let config = DeliveryConfig::from_vars(&stack::function_vars(
            &stack,
            ids::DELIVERY_FUNCTION,
            &[
                ("DELIVERY_CONCURRENCY", "8"),
                ("CONNECT_TIMEOUT_MS", "2000"),
                ("REQUEST_TIMEOUT_MS", "5000"),
            ],
        ))
        .unwrap();
        assert_eq!(config.schedule, RetrySchedule::parse("0s,0s").unwrap());
        assert_eq!(
            config.retry_queue_url,
            stack.queue_url(ids::RETRY_QUEUE).unwrap()
        );
        Self {
            delivery_queue_url: stack.queue_url(ids::DELIVERY_QUEUE).unwrap().to_owned(),
            store: SubscriptionStore::new(dynamo.clone(), config.subscriptions_table.clone()),
            log: DeliveryLog::new(dynamo.clone(), config.deliveries_table.clone()),
            config,
            sqs,
            dynamo,
            events: aws_sdk_eventbridge::Client::new(&sdk),
            company: emulator::unique_name("acme"),
            vault: stack::secret_vault(&stack).await,
        }
    }

    /// The current secret of `sub`, opened with the stack's keyring.
    fn secret_of(&self, sub: &Subscription) -> WebhookSecret {
        self.vault
            .current()
            .open_stored(&sub.secret, sub.secret_owner())
            .unwrap()
    }

    /// Trusts the certificate of an HTTPS receiver.
    fn trust(&mut self, receiver: &Receiver) {
        let path =
            std::env::temp_dir().join(format!("{}.pem", emulator::unique_name("receiver-ca")));
        std::fs::write(&path, receiver.ca_pem().expect("an https receiver")).unwrap();
        self.config.extra_ca_file = Some(path);
    }

    fn delivery(&self) -> Delivery {
        Delivery::new(
            &self.config,
            self.dynamo.clone(),
            self.sqs.clone(),
            self.events.clone(),
            Arc::clone(&self.vault),
        )
        .unwrap()
    }

    /// A delivery handler whose AWS calls go through a proxy that fails
    /// every request with the `x-amz-target` `target`.
    async fn delivery_failing(&self, target: &str) -> (AwsProxy, Delivery) {
        let proxy = AwsProxy::start(emulator::endpoint());
        proxy.fail_requests(target, 1000);
        let sdk = proxy.sdk().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let delivery = Delivery::new(
            &self.config,
            dynamo,
            sqs,
            self.events.clone(),
            Arc::clone(&self.vault),
        )
        .unwrap();
        (proxy, delivery)
    }

    /// A delivery handler whose DynamoDB calls go through `proxy`, which
    /// forwards one call at a time: DynamoDB isolates each write, the
    /// emulator does not (it runs them on parallel threads), so racing
    /// handlers need their calls serialised, all through one proxy, to see
    /// DynamoDB's semantics.
    async fn delivery_serialised(&self, proxy: &AwsProxy) -> Delivery {
        let sdk = emulator::sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(proxy.endpoint())
                .build(),
        );
        Delivery::new(
            &self.config,
            dynamo,
            self.sqs.clone(),
            self.events.clone(),
            Arc::clone(&self.vault),
        )
        .unwrap()
    }

    async fn subscribe(&self, url: &str) -> Subscription {
        self.subscribe_signing(url, &SignatureScheme::default_set())
            .await
    }

    /// A subscription of `url` signing with `schemes`.
    async fn subscribe_signing(&self, url: &str, schemes: &[SignatureScheme]) -> Subscription {
        let (mut sub, _) = Subscription::create(
            &self.company,
            NewSubscription {
                url: url.to_owned(),
                description: None,
                filters: Default::default(),
            },
            Utc::now(),
            &self.vault.current(),
        )
        .unwrap();
        sub.set_signature_schemes(schemes, &self.vault.current())
            .unwrap();
        self.store.create(&sub, None, u64::MAX).await.unwrap();
        sub
    }

    /// A first-attempt test event for `sub`, as an SQS record.
    fn event_for(&self, sub: &Subscription) -> (String, SqsMessage) {
        let (key, body) = test_event_message(&self.company, &sub.subscription_id, Utc::now());
        (key, record(&body))
    }

    async fn receive(&self, queue: &str) -> Vec<Queued> {
        emulator::take(&self.sqs, queue, 0)
            .await
            .into_iter()
            .map(|m| Queued {
                reason: m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get(DEAD_LETTER_REASON_ATTRIBUTE))
                    .and_then(|v| v.string_value.clone()),
                body: m.body.unwrap(),
            })
            .collect()
    }

    async fn retries(&self) -> Vec<DeliveryMessage> {
        self.receive(&self.config.retry_queue_url)
            .await
            .iter()
            .map(|q| DeliveryMessage::parse(&q.body).expect("retries are delivery messages"))
            .collect()
    }

    /// Awaits `n` retries, long-polling the retry queue (they may be
    /// delayed).
    async fn wait_for_retries(&self, n: usize) -> Vec<DeliveryMessage> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} retries arrived",
                got.len()
            );
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.config.retry_queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            for m in out.messages.unwrap_or_default() {
                emulator::assert_grouped_by_company(&m);
                got.push(DeliveryMessage::parse(m.body().unwrap_or_default()).unwrap());
            }
        }
        got
    }

    /// The subscription's parked and failed events, oldest first.
    async fn parked_events(&self, sub: &Subscription) -> Vec<ParkedEvent> {
        ParkedEvents::new(self.dynamo.clone(), self.config.parked_events_table.clone())
            .list(
                &self.company,
                &sub.subscription_id,
                &ParkedQuery::default(),
                Order::OldestFirst,
                100,
                None,
            )
            .await
            .unwrap()
            .items
    }

    async fn dead_letters(&self) -> Vec<Queued> {
        self.receive(&self.config.dead_letter_queue_url).await
    }

    async fn attempts(&self, sub: &Subscription) -> Vec<AttemptLog> {
        self.log
            .list(&self.company, &sub.subscription_id, 100, None)
            .await
            .unwrap()
            .items
    }
}

fn record(body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(uuid::Uuid::new_v4().to_string());
    m.body = Some(body.to_owned());
    m
}

fn event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

async fn run(delivery: &Delivery, records: Vec<SqsMessage>) -> (Vec<String>, Tally) {
    let (response, tally) = delivery.process(event(records)).await;
    let failed = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    (failed, tally)
}

/// Verifies a received request's signature with `secret`.
fn verifies(req: &Received, secret: &str) -> bool {
    let key = key_bytes(secret);
    signing::verify(
        &[&key],
        req.header("webhook-id").unwrap_or_default(),
        req.header("webhook-timestamp").unwrap_or_default(),
        req.header("webhook-signature").unwrap_or_default(),
        &req.body,
        Utc::now().timestamp(),
    )
    .is_ok()
}

#[tokio::test]
async fn a_signed_event_reaches_an_https_receiver_and_is_logged() {
    let receiver = Receiver::https().await;
    let mut fx = Fixture::new().await;
    fx.trust(&receiver);
    let sub = fx.subscribe(&receiver.url("/hooks")).await;
    let (key, rec) = fx.event_for(&sub);
    let expected_body = DeliveryMessage::parse(rec.body.as_deref().unwrap())
        .unwrap()
        .payload
        .get()
        .to_owned();

    let (failed, tally) = run(&fx.delivery(), vec![rec]).await;

    assert!(failed.is_empty());
    assert_eq!((tally.delivered, tally.failed_attempts), (1, 0));
    let got = receiver.wait_for(1, WAIT).await;
    let req = &got[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hooks"));
    assert_eq!(req.header("webhook-id"), Some(key.as_str()));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(
        req.header("user-agent")
            .unwrap()
            .starts_with("JobWebhooks/")
    );
    assert_eq!(
        req.body_text(),
        expected_body,
        "the payload is posted byte for byte"
    );
    let secret = fx.secret_of(&sub);
    assert!(verifies(req, secret.expose()), "signature verifies");
    assert!(verifies(req, &secret.standard_webhooks_form()));
    assert_eq!(
        req.header("webhook-signature").unwrap().split(' ').count(),
        1,
        "one secret, one signature"
    );
    let log = fx.attempts(&sub).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, Outcome::Delivered);
    assert_eq!((log[0].status_code, log[0].attempt), (Some(200), 1));
    assert_eq!(log[0].webhook_id, key);
    assert_eq!(log[0].event_type, "webhook.test");
    assert!(fx.retries().await.is_empty() && fx.dead_letters().await.is_empty());
}

#[tokio::test]
async fn an_https_receiver_is_refused_unless_its_certificate_is_trusted() {
    let receiver = Receiver::https().await;
    let fx = Fixture::new().await;
    let sub = fx.subscribe(&receiver.url("/")).await;
    let (_, rec) = fx.event_for(&sub);
    let (failed, tally) = run(&fx.delivery(), vec![rec]).await;
    assert!(failed.is_empty());
    assert_eq!((tally.delivered, tally.retried), (0, 1));
    let log = fx.attempts(&sub).await;
    assert_eq!(log[0].error.as_deref(), Some("connect"));
}

#[tokio::test]
async fn a_500_is_retried_through_the_retry_queue_and_then_delivered() {
    let receiver = Receiver::http().await;
    receiver.script([Reply::status(500).body("database down"), Reply::status(204)]);
    let fx = Fixture::new().await;
    let sub = fx.subscribe(&receiver.url("/")).await;
    let (key, rec) = fx.event_for(&sub);
    let delivery = fx.delivery();

    let (failed, tally) = run(&delivery, vec![rec]).await;
    assert!(failed.is_empty(), "acknowledged once the retry is queued");
    assert_eq!((tally.failed_attempts, tally.retried), (1, 1));
    let retries = fx.retries().await;
    assert_eq!(retries.len(), 1);
    let retry = &retries[0];
    assert_eq!(
        (retry.attempt, retry.webhook_id.as_str()),
        (2, key.as_str())
    );
    assert!(retry.not_before.is_some());
    assert_eq!(retry.history.len(), 1);
    assert_eq!(retry.history[0].status, Some(500));

    let (failed, tally) = run(&delivery, vec![record(&retry.to_body())]).await;
    assert!(failed.is_empty());
    assert_eq!(tally.delivered, 1);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[0].body, got[1].body, "retries carry the same event");
    let mut log = fx.attempts(&sub).await;
    log.sort_by_key(|a| a.attempt);
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].outcome, log[0].status_code),
        (Outcome::Failed, Some(500))
    );
    assert_eq!(log[0].response_excerpt.as_deref(), Some("database down"));
    assert_eq!((log[1].outcome, log[1].attempt), (Outcome::Delivered, 2));
}

#[tokio::test]
async fn timeouts_refused_connections_and_redirects_are_failed_attempts() {
    let hanging = Receiver::http().await;
    hanging.set_policy(|_| Reply::Hang);
    let redirecting = Receiver::http().await;
    redirecting.set_policy(|_| Reply::status(302).header("location", "/elsewhere"));
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut fx = Fixture::new().await;
    fx.config.request_timeout = Duration::from_millis(500);
    let timeout_sub = fx.subscribe(&hanging.url("/")).await;
    let redirect_sub = fx.subscribe(&redirecting.url("/")).await;
    let refused_sub = fx.subscribe(&format!("http://127.0.0.1:{closed}/")).await;
    let records = [&timeout_sub, &redirect_sub, &refused_sub]
        .map(|s| fx.event_for(s).1)
        .to_vec();

    let (failed, tally) = run(&fx.delivery(), records).await;

    assert!(failed.is_empty());
    assert_eq!((tally.failed_attempts, tally.retried), (3, 3));
    let error_of = |log: Vec<AttemptLog>| (log[0].error.clone(), log[0].status_code);
    assert_eq!(
        error_of(fx.attempts(&timeout_sub).await),
        (Some("timeout".into()), None)
    );
    assert_eq!(
        error_of(fx.attempts(&refused_sub).await),
        (Some("connect".into()), None)
    );
    assert_eq!(
        error_of(fx.attempts(&redirect_sub).await),
        (None, Some(302))
    );
    let redirects = redirecting.received();
    assert_eq!(redirects.len(), 1, "the redirect is not followed");
    assert_eq!(redirects[0].path, "/");
    assert_eq!(fx.retries().await.len(), 3);
}

#[tokio::test]
async fn gone_archives_the_subscription_and_later_events_are_dropped() {
    let receiver = Receiver::http().await;
    receiver.set_policy(|_| Reply::status(410));
    let fx = Fixture::new().await;
    let sub = fx.subscribe(&receiver.url("/")).await;
    let delivery = fx.delivery();

    let (failed, tally) = run(&delivery, vec![fx.event_for(&sub).1]).await;
    assert!(failed.is_empty());
    assert_eq!((tally.gone, tally.retried, tally.exhausted), (1, 0, 0));
    let stored = fx
        .store
        .get(&fx.company, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.is_archived());
    assert_eq!(stored.archived_reason.as_deref(), Some(GONE_REASON));
    assert_eq!(stored.version, sub.version + 1);
    assert_eq!(fx.attempts(&sub).await[0].outcome, Outcome::Gone);

    let (failed, tally) = run(&delivery, vec![fx.event_for(&sub).1]).await;
    assert!(failed.is_empty());
    assert_eq!(tally.dropped, 1);
    assert_eq!(receiver.received().len(), 1, "nothing more is posted");
    assert!(fx.retries().await.is_empty() && fx.dead_letters().await.is_empty());
}

#[tokio::test]
async fn events_of_deleted_subscriptions_are_dropped() {
    let fx = Fixture::new().await;
    let sub = fx.subscribe("https://hooks.example.com/").await;
    fx.store
        .archive(&sub, "deleted by API", Utc::now())
        .await
        .unwrap();
    let (ghost, _) = Subscription::create(
        &fx.company,
        NewSubscription {
            url: "https://hooks.example.com/".into(),
            description: None,
            filters: Default::default(),
        },
        Utc::now(),
        &fx.vault.current(),
    )
    .unwrap();
    let (failed, tally) = run(
        &fx.delivery(),
        vec![fx.event_for(&sub).1, fx.event_for(&ghost).1],
    )
    .await;
    assert!(failed.is_empty());
    assert_eq!((tally.dropped, tally.failed_attempts), (2, 0));
    assert!(fx.retries().await.is_empty() && fx.dead_letters().await.is_empty());
}

#[tokio::test]
async fn retry_after_on_429_and_503_is_honoured_within_one_to_two_delays() {
    let polite = Receiver::http().await;
    polite.set_policy(|_| Reply::status(429).header("retry-after", "3"));
    let greedy = Receiver::http().await;
    greedy.set_policy(|_| Reply::status(503).header("retry-after", "3600"));
    let mut fx = Fixture::new().await;
    fx.config.schedule = RetrySchedule::parse("2s").unwrap();
    let polite_sub = fx.subscribe(&polite.url("/")).await;
    let greedy_sub = fx.subscribe(&greedy.url("/")).await;
    let records = vec![fx.event_for(&polite_sub).1, fx.event_for(&greedy_sub).1];

    let (failed, tally) = run(&fx.delivery(), records).await;
    assert!(failed.is_empty());
    assert_eq!(tally.retried, 2);
    assert!(
        fx.retries().await.is_empty(),
        "retries are delayed in the queue, not visible at once"
    );
    let retries = fx.wait_for_retries(2).await;
    for (sub, expected) in [(&polite_sub, 3), (&greedy_sub, 4)] {
        let retry = retries
            .iter()
            .find(|r| r.subscription_id == sub.subscription_id)
            .unwrap();
        let at = fx.attempts(sub).await[0].at;
        let wait = retry.not_before.unwrap() - at;
        assert_eq!(wait.num_seconds(), expected, "{}", sub.subscription_id);
    }
}

#[tokio::test]
async fn after_the_last_attempt_the_event_is_kept_as_failed_with_its_history() {
    let receiver = Receiver::http().await;
    receiver.set_policy(|n| {
        if n % 2 == 0 {
            Reply::status(500)
        } else {
            Reply::Drop
        }
    });
    let fx = Fixture::new().await;
    let sub = fx.subscribe(&receiver.url("/")).await;
    let (key, first) = fx.event_for(&sub);
    let delivery = fx.delivery();

    let mut records = vec![first];
    for attempt in 1..=3 {
        let (failed, tally) = run(&delivery, records).await;
        assert!(failed.is_empty());
        assert_eq!(tally.failed_attempts, 1, "attempt {attempt}");
        records = fx
            .retries()
            .await
            .iter()
            .map(|m| record(&m.to_body()))
            .collect();
        if attempt < 3 {
            assert_eq!((tally.retried, records.len()), (1, 1));
        } else {
            assert_eq!((tally.exhausted, records.len()), (1, 0));
        }
    }

    assert!(
        fx.dead_letters().await.is_empty(),
        "the DLQ is only the net for malformed messages and crashes"
    );
    let failed = fx.parked_events(&sub).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].status, failed[0].webhook_id.as_str()),
        (ParkedStatus::Failed, key.as_str())
    );
    let msg = failed[0].requeued().expect("the stored message parses");
    assert_eq!(
        (msg.webhook_id.as_str(), msg.attempt),
        (key.as_str(), 1),
        "stored as a first attempt, ready to recover"
    );
    assert_eq!(failed[0].attempts, msg.history);
    let history: Vec<_> = msg
        .history
        .iter()
        .map(|h| (h.attempt, h.status, h.error.as_deref()))
        .collect();
    assert_eq!(
        history,
        vec![
            (1, Some(500), None),
            (2, None, Some("connect")),
            (3, Some(500), None)
        ]
    );
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(fx.attempts(&sub).await.len(), 3);
}

#[tokio::test]
async fn malformed_messages_go_to_the_dead_letter_queue_untouched() {
    let fx = Fixture::new().await;
    let bodies = [
        "not json",
        r#"{"v":1}"#,
        r#"{"v":7,"company_id":"a","subscription_id":"s","idempotency_key":"k","event_type":"t","attempt":1,"payload":{}}"#,
        "",
    ];
    let records: Vec<SqsMessage> = bodies.iter().map(|b| record(b)).collect();
    let (failed, tally) = run(&fx.delivery(), records).await;
    assert!(failed.is_empty(), "poison never loops");
    assert_eq!(tally.malformed, 4);
    let mut dead: Vec<(String, Option<String>)> = fx
        .dead_letters()
        .await
        .into_iter()
        .map(|q| (q.body, q.reason))
        .collect();
    dead.sort();
    let mut expected: Vec<(String, Option<String>)> = bodies
        .iter()
        .map(|b| {
            let b = if b.is_empty() { "(empty)" } else { b };
            (b.to_string(), Some("malformed".to_owned()))
        })
        .collect();
    expected.sort();
    assert_eq!(dead, expected);
}

#[tokio::test]
async fn without_the_allow_list_a_name_resolving_to_loopback_is_refused() {
    let receiver = Receiver::https().await;
    let mut fx = Fixture::new().await;
    fx.trust(&receiver);
    fx.config.allow_list = AllowList::default();
    let by_name = fx
        .subscribe(&format!("https://localhost:{}/", receiver.port()))
        .await;
    let by_ip = fx.subscribe(&receiver.url("/")).await;
    let plain = fx.subscribe("http://hooks.example.com/").await;
    let records = [&by_name, &by_ip, &plain]
        .map(|s| fx.event_for(s).1)
        .to_vec();

    let (failed, tally) = run(&fx.delivery(), records).await;

    assert!(failed.is_empty());
    assert_eq!((tally.failed_attempts, tally.retried), (3, 3));
    for sub in [&by_name, &by_ip, &plain] {
        let log = fx.attempts(sub).await;
        assert_eq!(
            log[0].error.as_deref(),
            Some("blocked_address"),
            "{}",
            sub.url
        );
    }
    let name_log = fx.attempts(&by_name).await;
    assert!(
        name_log[0]
            .response_excerpt
            .as_deref()
            .unwrap()
            .contains("non-public"),
        "{name_log:?}"
    );
    assert!(receiver.received().is_empty(), "nothing reached loopback");
}

#[tokio::test]
async fn plain_http_reaches_only_hosts_inside_the_allow_list() {
    let receiver = Receiver::http().await;
    let mut fx = Fixture::new().await;
    // 127.0.0.1 only: `localhost` may also resolve to ::1, outside the list.
    fx.config.allow_list = AllowList::parse("127.0.0.1/32").unwrap();
    let listed = fx.subscribe(&receiver.url("/")).await;
    // Stored before the rules changed, or re-pointed since: plain http to a
    // public address, and to a name that does not resolve only into the list.
    let public = fx.subscribe("http://93.184.216.34/hook").await;
    let elsewhere = fx
        .subscribe(&format!("http://localhost:{}/", receiver.port()))
        .await;
    fx.config.allow_list = AllowList::parse("127.0.0.2/32").unwrap();
    let moved = fx.delivery();
    fx.config.allow_list = AllowList::parse("127.0.0.1/32").unwrap();

    let (failed, tally) = run(
        &fx.delivery(),
        vec![fx.event_for(&listed).1, fx.event_for(&public).1],
    )
    .await;
    assert!(failed.is_empty());
    assert_eq!((tally.delivered, tally.failed_attempts), (1, 1));
    let public_log = fx.attempts(&public).await;
    assert_eq!(public_log[0].error.as_deref(), Some("blocked_address"));
    assert!(
        public_log[0]
            .response_excerpt
            .as_deref()
            .unwrap()
            .contains("plain http refused"),
        "{public_log:?}"
    );

    // With 127.0.0.2 listed, a name resolving to 127.0.0.1 is refused at
    // delivery, before any connection.
    let before = receiver.received().len();
    let (failed, tally) = run(&moved, vec![fx.event_for(&elsewhere).1]).await;
    assert!(failed.is_empty());
    assert_eq!((tally.delivered, tally.failed_attempts), (0, 1));
    let log = fx.attempts(&elsewhere).await;
    assert_eq!(log[0].error.as_deref(), Some("blocked_address"), "{log:?}");
    // Refused by the plain-http client's resolver, not the https one's.
    assert!(
        log[0]
            .response_excerpt
            .as_deref()
            .unwrap()
            .contains("does not resolve only into TARGET_ALLOW_LIST"),
        "{log:?}"
    );
    assert_eq!(
        receiver.received().len(),
        before,
        "nothing reached the receiver"
    );
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_afterwards_only_the_new_one() {
    let receiver = Receiver::http().await;
    let mut fx = Fixture::new().await;
    fx.config.cache_ttl = Duration::ZERO;
    let mut sub = fx.subscribe(&receiver.url("/")).await;
    let old = fx.secret_of(&sub).expose().to_owned();
    let version = sub.version;
    let new = sub
        .rotate_secret(chrono::Duration::hours(1), Utc::now(), &fx.vault.current())
        .unwrap()
        .expose()
        .to_owned();
    sub.version += 1;
    fx.store.replace(&sub, version).await.unwrap();
    let delivery = fx.delivery();

    run(&delivery, vec![fx.event_for(&sub).1]).await;
    let during = &receiver.wait_for(1, WAIT).await[0];
    assert_eq!(
        during
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    assert!(verifies(during, &old) && verifies(during, &new));

    let version = sub.version;
    sub.previous_secret_expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
    sub.version += 1;
    fx.store.replace(&sub, version).await.unwrap();
    run(&delivery, vec![fx.event_for(&sub).1]).await;
    let after = &receiver.wait_for(2, WAIT).await[1];
    assert_eq!(
        after
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    assert!(verifies(after, &new));
    assert!(!verifies(after, &old));
}

#[tokio::test]
async fn the_signature_header_carries_an_entry_per_scheme_and_key_and_the_receiver_verifies_them() {
    use SignatureScheme::{V1, V1a};
    let mut fx = Fixture::new().await;
    let receiver = Receiver::builder()
        .verifying(fx.store.clone(), Arc::clone(&fx.vault))
        .start()
        .unwrap();
    fx.config.cache_ttl = Duration::ZERO;
    let cases: [(&[SignatureScheme], &[&str]); 3] = [
        (&[V1], &["v1"]),
        (&[V1a], &["v1a"]),
        (&[V1a, V1], &["v1", "v1a"]),
    ];
    let mut subs = Vec::new();
    for (schemes, _) in &cases {
        subs.push(fx.subscribe_signing(&receiver.url("/"), schemes).await);
    }
    // The last one mid-rotation: both keys of both schemes sign.
    let rotating = subs.last_mut().unwrap();
    let (before, version) = (rotating.clone(), rotating.version);
    rotating
        .rotate_secret(chrono::Duration::hours(1), Utc::now(), &fx.vault.current())
        .unwrap();
    rotating.version += 1;
    fx.store.replace(rotating, version).await.unwrap();

    let records = subs.iter().map(|s| fx.event_for(s).1).collect();
    let (failed, _) = run(&fx.delivery(), records).await;
    assert!(failed.is_empty());
    let verified = receiver.wait_for_verified(3, WAIT).await.unwrap();
    assert_eq!(
        verified.len(),
        3,
        "the local receiver verifies every scheme"
    );
    assert!(receiver.rejected().is_empty());

    let now = Utc::now();
    for (sub, (_, prefixes)) in subs.iter().zip(cases) {
        let req = receiver
            .received()
            .into_iter()
            .find(|r| r.body_text().contains(&sub.subscription_id))
            .unwrap();
        let header = req.header("webhook-signature").unwrap().to_owned();
        let mut got: Vec<&str> = header
            .split(' ')
            .map(|e| e.split(',').next().unwrap())
            .collect();
        got.dedup();
        assert_eq!(got, prefixes, "{header}");
        let (id, ts) = (
            req.header("webhook-id").unwrap(),
            req.header("webhook-timestamp").unwrap(),
        );
        let v1a = |keys: &[shared::signing::ed25519::PublicKey]| {
            signing::verify_v1a(keys, id, ts, &header, &req.body, now.timestamp())
        };
        if sub.signs_with(V1a) {
            assert_eq!(v1a(&sub.verifying_keys(now)), Ok(()));
            for key in sub.verifying_keys(now) {
                assert_eq!(v1a(&[key]), Ok(()), "every key of the grace signs");
            }
            let stranger = shared::signing::ed25519::SigningKey::generate().public_key();
            assert_eq!(v1a(&[stranger]), Err(signing::VerifyError::NoMatch));
        } else {
            assert!(!header.contains("v1a,"));
        }
        assert_eq!(
            verifies(&req, fx.secret_of(sub).expose()),
            sub.signs_with(V1)
        );
    }
    let rotated = &subs[2];
    let header = receiver
        .received()
        .into_iter()
        .find(|r| r.body_text().contains(&rotated.subscription_id))
        .and_then(|r| r.header("webhook-signature").map(str::to_owned))
        .unwrap();
    assert_eq!(
        header.split(' ').count(),
        4,
        "two keys of two schemes: {header}"
    );
    let old_key = before.signing_key.as_ref().unwrap().public_key.clone();
    assert!(
        rotated
            .verifying_keys(now)
            .iter()
            .any(|k| k.standard_webhooks_form() == old_key)
    );
}

#[tokio::test]
async fn messages_not_yet_due_wait_on_the_retry_queue_without_an_attempt() {
    let receiver = Receiver::http().await;
    let fx = Fixture::new().await;
    let sub = fx.subscribe(&receiver.url("/")).await;
    let (_, rec) = fx.event_for(&sub);
    let msg = DeliveryMessage::parse(rec.body.as_deref().unwrap()).unwrap();
    let later = msg.next_attempt(Utc::now() + chrono::Duration::hours(3));

    let (failed, tally) = run(&fx.delivery(), vec![record(&later.to_body())]).await;

    assert!(failed.is_empty());
    assert_eq!((tally.deferred, tally.failed_attempts), (1, 0));
    assert!(receiver.received().is_empty());
    let attrs = fx
        .sqs
        .get_queue_attributes()
        .queue_url(&fx.config.retry_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed = attrs
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        })
        .cloned();
    assert_eq!(
        delayed.as_deref(),
        Some("1"),
        "re-sent with the longest SQS delay"
    );
}

#[tokio::test]
async fn a_message_whose_retry_cannot_be_queued_is_reported_and_not_acknowledged() {
    let receiver = Receiver::http().await;
    receiver.set_policy(|_| Reply::status(500));
    let fx = Fixture::new().await;
    let sub = fx.subscribe(&receiver.url("/")).await;
    let (_proxy, delivery) = fx.delivery_failing("AmazonSQS.SendMessage").await;
    let (_, failing) = fx.event_for(&sub);
    let garbage = record("garbage");
    let ids = vec![
        failing.message_id.clone().unwrap(),
        garbage.message_id.clone().unwrap(),
    ];

    let (mut failed, tally) = run(&delivery, vec![failing, garbage]).await;

    failed.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(failed, ids, "both stay on their queue for SQS to redeliver");
    assert_eq!(tally.failures, 2);
    assert!(fx.retries().await.is_empty() && fx.dead_letters().await.is_empty());
}

#[tokio::test]
async fn subscription_read_failures_leave_the_message_on_the_queue() {
    let fx = Fixture::new().await;
    let sub = fx.subscribe("https://hooks.example.com/").await;
    let (_proxy, delivery) = fx.delivery_failing("DynamoDB_20120810.GetItem").await;
    let (_, rec) = fx.event_for(&sub);
    let id = rec.message_id.clone().unwrap();
    let (failed, tally) = run(&delivery, vec![rec]).await;
    assert_eq!(failed, vec![id]);
    assert_eq!((tally.failed_attempts, tally.dropped), (0, 0));
}

#[tokio::test]
async fn redriven_dead_letters_are_delivered_and_only_the_chosen_ones_move() {
    let receiver = Receiver::http().await;
    let mut fx = Fixture::new().await;
    fx.config.cache_ttl = Duration::ZERO;
    let chosen = fx.subscribe(&receiver.url("/chosen")).await;
    let other = fx.subscribe(&receiver.url("/other")).await;
    let delivery = fx.delivery();
    // Messages a crashing handler left behind reach the DLQ through the
    // queues' redrive policy.
    for sub in [&chosen, &other] {
        fx.sqs
            .send_message()
            .queue_url(&fx.config.dead_letter_queue_url)
            .message_body(fx.event_for(sub).1.body.unwrap())
            .send()
            .await
            .unwrap();
    }

    // The operator redrives one subscription.
    let delivery_queue = fx.delivery_queue_url.clone();
    let redriver = dlq_redrive::Redriver::new(
        &dlq_redrive::RedriveConfig {
            dead_letter_queue_url: fx.config.dead_letter_queue_url.clone(),
            delivery_queue_url: delivery_queue.clone(),
        },
        fx.sqs.clone(),
    );
    let request = dlq_redrive::request::RedriveRequest::from_event(
        serde_json::json!({"subscription_id": chosen.subscription_id}),
    )
    .unwrap();
    let report = redriver
        .run(
            &request,
            std::time::Instant::now() + Duration::from_secs(60),
        )
        .await;
    assert_eq!((report.moved, report.skipped), (1, 1), "{report:?}");

    let moved = fx.receive(&delivery_queue).await;
    assert_eq!(moved.len(), 1);
    let msg = DeliveryMessage::parse(&moved[0].body).unwrap();
    assert_eq!(
        (msg.subscription_id.as_str(), msg.attempt),
        (chosen.subscription_id.as_str(), 1)
    );
    let (failed, tally) = run(&delivery, vec![record(&moved[0].body)]).await;
    assert!(failed.is_empty());
    assert_eq!(tally.delivered, 1);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].path, "/chosen");
    let left = fx.dead_letters().await;
    assert_eq!(
        left.len(),
        1,
        "the other subscription's event stays dead-lettered"
    );
    assert_eq!(
        DeliveryMessage::parse(&left[0].body)
            .unwrap()
            .subscription_id,
        other.subscription_id
    );
}

#[tokio::test]
async fn an_attempt_log_outage_is_counted_and_never_repeats_a_delivery() {
    let receiver = Receiver::http().await;
    let fx = Fixture::new().await;
    let sub = fx.subscribe(&receiver.url("/")).await;
    let (proxy, delivery) = fx
        .delivery_failing("DynamoDB_20120810.BatchWriteItem")
        .await;
    let records = vec![fx.event_for(&sub).1, fx.event_for(&sub).1];

    let (failed, tally) = run(&delivery, records).await;

    assert!(failed.is_empty(), "delivered events are acknowledged");
    assert_eq!((tally.delivered, tally.log_errors), (2, 2));
    assert!(proxy.calls("DynamoDB_20120810.BatchWriteItem") >= 1);
    assert_eq!(receiver.received().len(), 2);
    assert!(fx.attempts(&sub).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_failing_one_endpoint_at_once_open_one_breaker_with_an_exact_count() {
    let receiver = Receiver::http().await;
    receiver.set_policy(|_| Reply::status(500));
    let mut fx = Fixture::new().await;
    fx.config.breaker.failures = 4;
    fx.config.breaker.min_failing = Duration::ZERO;
    fx.config.cache_ttl = Duration::from_secs(60);
    let sub = fx.subscribe(&receiver.url("/")).await;
    let proxy = AwsProxy::start(emulator::endpoint());
    proxy.one_at_a_time();
    let a = fx.delivery_serialised(&proxy).await;
    let b = fx.delivery_serialised(&proxy).await;
    let batch = || (0..8).map(|_| fx.event_for(&sub).1).collect::<Vec<_>>();
    let ((failed_a, tally_a), (failed_b, tally_b)) =
        tokio::join!(run(&a, batch()), run(&b, batch()));
    assert!(failed_a.is_empty() && failed_b.is_empty());

    let stored = fx
        .store
        .get(&fx.company, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    let posts = receiver.received().len() as u64;
    assert_eq!(
        tally_a.breakers_opened + tally_b.breakers_opened,
        1,
        "one breaker opened"
    );
    assert!(stored.health.breaker.is_open());
    assert_eq!(
        stored.health.consecutive_failures, posts,
        "every failed POST counted once, none lost"
    );
    assert_eq!(tally_a.failed_attempts + tally_b.failed_attempts, posts);
    // Every event is retried (failed before the breaker opened) or parked.
    let parked = fx.parked_events(&sub).await.len() as u64;
    assert_eq!(tally_a.parked + tally_b.parked, parked);
    assert_eq!(tally_a.retried + tally_b.retried + parked, 16);
    assert_eq!(
        fx.retries().await.len() as u64,
        tally_a.retried + tally_b.retried
    );
    assert!(parked > 0);
}

#[tokio::test]
async fn a_drain_or_recover_never_deletes_an_event_parked_again_meanwhile() {
    let receiver = Receiver::http().await;
    receiver.set_policy(|_| Reply::status(500));
    let mut fx = Fixture::new().await;
    fx.config.schedule = RetrySchedule::parse("").unwrap();
    let sub = fx.subscribe(&receiver.url("/")).await;
    let (failed, tally) = run(&fx.delivery(), vec![fx.event_for(&sub).1]).await;
    assert!(failed.is_empty() && tally.exhausted == 1);
    let read = fx.parked_events(&sub).await.remove(0);
    let parked = ParkedEvents::new(fx.dynamo.clone(), fx.config.parked_events_table.clone());

    // The re-sent copy was parked again (same key, later parked_at) before
    // the sender deleted the copy it had read: the delete leaves it.
    let mut again = read.clone();
    again.parked_at = read.parked_at + chrono::Duration::milliseconds(5);
    again.status = ParkedStatus::Parked;
    parked.put(&again).await.unwrap();
    assert_eq!(parked.delete_sent(&[&read]).await, 0);
    assert_eq!(fx.parked_events(&sub).await, vec![again.clone()]);
    // The copy as read is deleted.
    assert_eq!(parked.delete_sent(&[&again]).await, 0);
    assert!(fx.parked_events(&sub).await.is_empty());
}

#[tokio::test]
async fn a_secret_that_does_not_open_is_never_cached_and_opens_once_the_keyring_is_read_again() {
    use shared::storage::keyring::KeyringStore;
    use webhook_delivery::cache::SubscriptionCache;

    let sdk = emulator::sdk_config().await;
    let stack = stack::deploy().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let config =
        DeliveryConfig::from_vars(&stack::function_vars(&stack, ids::DELIVERY_FUNCTION, &[]))
            .unwrap();
    let store = SubscriptionStore::new(dynamo.clone(), config.subscriptions_table.clone());
    let keyring = KeyringStore::new(
        dynamo.clone(),
        aws_sdk_kms::Client::new(&sdk),
        config.keyring.clone(),
    );
    // A warm instance's keyring, just read (at its cold start): it reads it
    // again for an unknown version at most every few seconds.
    let vault = stack::secret_vault(&stack).await;
    let (mut sub, _) = Subscription::create(
        &emulator::unique_name("acme"),
        NewSubscription {
            url: "https://hooks.example.com/jobs".to_owned(),
            description: None,
            filters: Default::default(),
        },
        Utc::now(),
        &vault.current(),
    )
    .unwrap();
    store.create(&sub, None, u64::MAX).await.unwrap();
    let cache = SubscriptionCache::new(Duration::from_secs(300), Arc::clone(&vault));

    // A rotation adds a key version and re-seals the secret with it, right
    // after the instance read its keyring.
    keyring.add_version(Utc::now()).await.unwrap();
    let ring = keyring.load_into(&vault.current()).await.unwrap();
    assert!(sub.reseal_secrets(&ring).unwrap());
    assert!(store.store_resealed_secrets(&sub).await.unwrap());
    let (company, id) = (sub.company_id.clone(), sub.subscription_id.clone());
    let first = cache.get(&company, &id, &store).await.unwrap().unwrap();
    assert!(
        first.keys.is_err(),
        "the instance has not read the new version yet"
    );

    // The failure is not served from the cache for its 300 s: once the
    // instance may read its keyring again, the secret opens.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = cache.get(&company, &id, &store).await.unwrap().unwrap();
        if again.keys.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the secret still does not open: the failure was cached"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn custom_headers_arrive_with_every_attempt_retries_and_probes_included() {
    use shared::domain::headers::HeadersInput;
    let receiver = Receiver::http().await;
    receiver.script([Reply::status(500), Reply::status(204), Reply::status(204)]);
    let fx = Fixture::new().await;
    let (mut sub, _) = Subscription::create(
        &fx.company,
        NewSubscription {
            url: receiver.url("/hooks"),
            description: None,
            filters: Default::default(),
        },
        Utc::now(),
        &fx.vault.current(),
    )
    .unwrap();
    let sent = [
        ("X-Api-Key", "key-5f1c0a9e7b3d"),
        ("Authorization", "Basic dXNlcjpjb3JyZWN0LWhvcnNl"),
    ];
    let values = HeadersInput(
        sent.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    )
    .validate()
    .unwrap();
    sub.set_headers(&values, &fx.vault.current()).unwrap();
    fx.store.create(&sub, None, u64::MAX).await.unwrap();
    let delivery = fx.delivery();

    // The first attempt fails; its retry and a probe are delivered.
    let (key, rec) = fx.event_for(&sub);
    let (failed, tally) = run(&delivery, vec![rec]).await;
    assert!(failed.is_empty());
    assert_eq!(tally.retried, 1);
    let retry = fx.wait_for_retries(1).await.remove(0);
    assert_eq!(
        (retry.attempt, retry.webhook_id.as_str()),
        (2, key.as_str())
    );
    let (failed, tally) = run(&delivery, vec![record(&retry.to_body())]).await;
    assert!(failed.is_empty());
    assert_eq!(tally.delivered, 1);
    let (_, probe) = fx.event_for(&sub);
    let mut probe = DeliveryMessage::parse(probe.body.as_deref().unwrap()).unwrap();
    probe.probe = Some("parked#none".into());
    let (failed, tally) = run(&delivery, vec![record(&probe.to_body())]).await;
    assert!(failed.is_empty());
    assert_eq!(tally.probes, 1);

    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    for req in &got {
        for (name, value) in sent {
            assert_eq!(
                req.header(name),
                Some(value),
                "{name} on {:?}",
                req.header("webhook-id")
            );
        }
        // The service's own headers are untouched and the signature holds.
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert!(verifies(req, fx.secret_of(&sub).expose()));
    }

    // Headers changed through the store reach the next read of the
    // subscription (a fresh instance: the cache holds one for seconds).
    let mut changed = fx
        .store
        .get(&fx.company, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    let patch = shared::domain::headers::HeadersPatchInput(
        [
            ("x-api-key".to_owned(), Some("key-rotated".to_owned())),
            ("authorization".to_owned(), None),
        ]
        .into(),
    )
    .validate()
    .unwrap();
    changed
        .patch_headers(Some(&patch), &fx.vault.current())
        .unwrap();
    let version = changed.version;
    changed.version += 1;
    fx.store.replace(&changed, version).await.unwrap();
    receiver.script([Reply::status(204)]);
    let (_, rec) = fx.event_for(&sub);
    let (failed, _) = run(&fx.delivery(), vec![rec]).await;
    assert!(failed.is_empty());
    let got = receiver.wait_for(4, WAIT).await;
    assert_eq!(got[3].header("x-api-key"), Some("key-rotated"));
    assert_eq!(got[3].header("authorization"), None);
}

mod snippets;
