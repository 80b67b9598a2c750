//! The demo receiver over real HTTP, with subscriptions stored in the
//! local AWS emulator: signed deliveries are verified, recorded and
//! printed; anything unsigned, mis-signed, stale or for an unknown
//! subscription is refused. Needs the emulator:
//! `infra/with-emulator.sh cargo test -p local-infra`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use local_infra::receiver::{DemoReceiver, ReceiverError, ReceiverLog, RejectReason};
use serde_json::{Value, json};
use shared::domain::filters::Filters;
use shared::domain::job_event::{JobError, JobTransition, timestamp};
use shared::domain::jobs::JobState;
use shared::domain::message::{DeliveryMessage, EventEnvelope, idempotency_key, job_data};
use shared::domain::subscription::{NewSubscription, Subscription, new_subscription_id};
use shared::signing::secret::WebhookSecret;
use shared::signing::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Signer, VerifyError, signature_header,
};
use shared::storage::keyring::SecretVault;
use shared::storage::subscriptions::SubscriptionStore;
use test_support::emulator;
use test_support::stack::{self, ids};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

/// A running receiver, its printed lines, and what stops it.
struct Running {
    url: String,
    log: ReceiverLog,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    http: reqwest::Client,
}

impl Running {
    async fn start(store: SubscriptionStore, secrets: &Arc<SecretVault>) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let receiver = DemoReceiver::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            store,
            Arc::clone(secrets),
        )
        .await
        .expect("receiver binds")
        .with_printer({
            let lines = Arc::clone(&lines);
            move |line| lines.lock().unwrap().push(line.to_owned())
        });
        let url = receiver.url();
        let log = receiver.log();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(receiver.serve(async {
            let _ = stopped.await;
        }));
        Self {
            url,
            log,
            lines,
            stop: Some(stop),
            server,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs `body` with `headers`; returns the status.
    async fn post(&self, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> u16 {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .body(body)
            .send()
            .await
            .expect("the receiver answers")
            .status()
            .as_u16()
    }

    /// POSTs a delivery signed with `secrets` at `ts`.
    async fn deliver(&self, delivery: &Delivery, secrets: &[&WebhookSecret], ts: i64) -> u16 {
        let signers: Vec<Signer> = secrets.iter().map(|s| Signer::for_secret(s)).collect();
        let signature = signature_header(&signers, &delivery.id, ts, delivery.body.as_bytes());
        let ts = ts.to_string();
        let headers = [
            (HEADER_ID, delivery.id.as_str()),
            (HEADER_TIMESTAMP, ts.as_str()),
            (HEADER_SIGNATURE, signature.as_str()),
        ];
        self.post(&headers, delivery.body.clone()).await
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// A webhook body as the delivery function sends it, and its id.
struct Delivery {
    id: String,
    body: String,
}

/// The `job.<state>` delivery of a transition of `job_id` for `sub`,
/// built by the service's own payload code.
fn job_delivery(sub: &Subscription, job_id: &str, previous: JobState, state: JobState) -> Delivery {
    let at = timestamp(Utc::now());
    let transition = JobTransition {
        company_id: sub.company_id.clone(),
        job_id: job_id.to_owned(),
        job_type: "materialize-view".to_owned(),
        state,
        previous_state: Some(previous),
        state_changed_at: at.clone(),
        input: json!({"dataset_id": 42, "dataset_name": "web_events"}),
        resource: json!({"dataset_id": 42, "dataset_name": "web_events"}),
        error: (state == JobState::Failed).then(|| JobError {
            reason: Some("timeout".to_owned()),
            message: Some("The job exceeded its time limit of 30 minutes.".to_owned()),
        }),
        state_history: Vec::new(),
        truncated: Vec::new(),
    };
    let data = job_data(&transition.data(0));
    let event_type = transition.event_type();
    let envelope = EventEnvelope {
        sequence: None,
        company_id: &sub.company_id,
        event_type: &event_type,
        timestamp: &at,
        data: &data,
    };
    let id = idempotency_key(&sub.subscription_id, &uuid::Uuid::new_v4().to_string());
    let message = DeliveryMessage::parse(&envelope.message_body(&sub.subscription_id, &id))
        .expect("a delivery message");
    Delivery {
        id,
        body: message.payload.get().to_owned(),
    }
}

/// A stored subscription of a fresh company, its secret, the store and the
/// stack's keyring.
async fn stored_subscription() -> (
    SubscriptionStore,
    Subscription,
    WebhookSecret,
    Arc<SecretVault>,
) {
    let db = emulator::dynamodb().await;
    let stack = stack::deploy().await;
    let store = SubscriptionStore::new(db, stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap());
    let vault = stack::secret_vault(&stack).await;
    let (sub, secret) = Subscription::create(
        &emulator::unique_name("acme"),
        NewSubscription {
            url: "https://example.com/hooks".to_owned(),
            description: None,
            filters: Filters::default(),
        },
        Utc::now(),
        &vault.current(),
    )
    .unwrap();
    store
        .create(&sub, None, u64::MAX)
        .await
        .expect("subscription stored");
    (store, sub, secret, vault)
}

#[tokio::test]
async fn a_correctly_signed_event_is_answered_204_recorded_and_printed() {
    let (store, sub, secret, vault) = stored_subscription().await;
    let receiver = Running::start(store, &vault).await;
    let now = Utc::now().timestamp();

    let delivery = job_delivery(&sub, "job-3f2a", JobState::Running, JobState::Completed);
    assert_eq!(receiver.deliver(&delivery, &[&secret], now).await, 204);
    let events = receiver.log.wait_for(1, WAIT).await.expect("one event");
    let event = &events[0];
    assert_eq!(event.webhook_id, delivery.id);
    assert_eq!(event.event_type, "job.completed");
    assert_eq!(event.company_id, sub.company_id);
    assert_eq!(event.subscription_id, sub.subscription_id);
    assert_eq!(event.job_id.as_deref(), Some("job-3f2a"));
    assert_eq!(event.job_type.as_deref(), Some("materialize-view"));
    assert_eq!(event.state, Some(JobState::Completed));
    assert_eq!(event.previous_state, Some(JobState::Running));
    assert!(!event.duplicate);
    assert_eq!(
        event.payload,
        serde_json::from_str::<Value>(&delivery.body).unwrap()
    );
    assert_eq!(
        receiver.lines(),
        [format!(
            "✔ verified job.completed  job-3f2a (materialize-view) running → completed  {}  {}",
            sub.subscription_id, delivery.id
        )]
    );

    // A redelivery is acknowledged again and marked as a duplicate.
    assert_eq!(receiver.deliver(&delivery, &[&secret], now).await, 204);
    let events = receiver.log.wait_for(2, WAIT).await.expect("two events");
    assert!(events[1].duplicate);
    assert!(receiver.lines()[1].ends_with("(duplicate)"));

    // A failure names its reason; a test event has no job.
    let failed = job_delivery(&sub, "job-77", JobState::Running, JobState::Failed);
    assert_eq!(receiver.deliver(&failed, &[&secret], now).await, 204);
    let (id, body) = shared::domain::message::test_event_message(
        &sub.company_id,
        &sub.subscription_id,
        Utc::now(),
    );
    let test = Delivery {
        id,
        body: DeliveryMessage::parse(&body)
            .unwrap()
            .payload
            .get()
            .to_owned(),
    };
    assert_eq!(receiver.deliver(&test, &[&secret], now).await, 204);
    let events = receiver.log.wait_for(4, WAIT).await.expect("four events");
    assert_eq!(events[3].event_type, "webhook.test");
    assert_eq!(events[3].job_id, None);
    let lines = receiver.lines();
    assert!(
        lines[2].contains("running → failed (timeout)"),
        "{}",
        lines[2]
    );
    assert_eq!(
        lines[3],
        format!(
            "✔ verified webhook.test  {}  {}",
            sub.subscription_id, test.id
        )
    );
    assert!(receiver.log.rejected().is_empty());
}

#[tokio::test]
async fn wrong_or_missing_signatures_unknown_subscriptions_and_stale_timestamps_are_401() {
    let (store, sub, secret, vault) = stored_subscription().await;
    let receiver = Running::start(store.clone(), &vault).await;
    let now = Utc::now().timestamp();
    let delivery = job_delivery(&sub, "job-1", JobState::Pending, JobState::Running);

    // Signed with another secret.
    let other = WebhookSecret::generate();
    assert_eq!(receiver.deliver(&delivery, &[&other], now).await, 401);
    // Signed correctly, body changed afterwards.
    let signature = signature_header(
        &[Signer::for_secret(&secret)],
        &delivery.id,
        now,
        delivery.body.as_bytes(),
    );
    let tampered = delivery.body.replace("job-1", "job-2");
    let ts = now.to_string();
    let signed = [
        (HEADER_ID, delivery.id.as_str()),
        (HEADER_TIMESTAMP, ts.as_str()),
        (HEADER_SIGNATURE, signature.as_str()),
    ];
    assert_eq!(receiver.post(&signed, tampered).await, 401);
    // Each header missing in turn.
    for missing in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
        let headers: Vec<_> = signed
            .iter()
            .copied()
            .filter(|(n, _)| *n != missing)
            .collect();
        assert_eq!(receiver.post(&headers, delivery.body.clone()).await, 401);
    }
    // A subscription that is not stored, and a stored one claimed by
    // another company: both unknown.
    let mut unknown = sub.clone();
    unknown.subscription_id = new_subscription_id();
    let unknown_delivery = job_delivery(&unknown, "job-1", JobState::Pending, JobState::Running);
    assert_eq!(
        receiver.deliver(&unknown_delivery, &[&secret], now).await,
        401
    );
    let mut elsewhere = sub.clone();
    elsewhere.company_id = emulator::unique_name("globex");
    let elsewhere_delivery =
        job_delivery(&elsewhere, "job-1", JobState::Pending, JobState::Running);
    assert_eq!(
        receiver.deliver(&elsewhere_delivery, &[&secret], now).await,
        401
    );
    // Correctly signed, but more than five minutes old or ahead.
    assert_eq!(
        receiver.deliver(&delivery, &[&secret], now - 301).await,
        401
    );
    assert_eq!(
        receiver.deliver(&delivery, &[&secret], now + 360).await,
        401
    );

    let rejected = receiver.log.rejected();
    let reasons: Vec<RejectReason> = rejected.iter().map(|r| r.reason.clone()).collect();
    assert_eq!(
        reasons,
        [
            RejectReason::Signature(VerifyError::NoMatch),
            RejectReason::Signature(VerifyError::NoMatch),
            RejectReason::MissingHeader(HEADER_ID),
            RejectReason::MissingHeader(HEADER_TIMESTAMP),
            RejectReason::MissingHeader(HEADER_SIGNATURE),
            RejectReason::UnknownSubscription,
            RejectReason::UnknownSubscription,
            RejectReason::Signature(VerifyError::OutsideTolerance),
            RejectReason::Signature(VerifyError::OutsideTolerance),
        ]
    );
    assert_eq!(
        rejected[0].webhook_id.as_deref(),
        Some(delivery.id.as_str())
    );
    assert_eq!(rejected[2].webhook_id, None);
    assert!(receiver.log.verified().is_empty(), "nothing was verified");
    let lines = receiver.lines();
    assert_eq!(
        lines[0],
        format!("✘ rejected: no signature matches ({})", delivery.id)
    );
    assert_eq!(
        lines[2],
        "✘ rejected: missing webhook-id header (no webhook-id)"
    );
    assert!(lines.iter().all(|l| l.starts_with("✘ rejected: ")));
}

#[tokio::test]
async fn the_previous_secret_verifies_during_the_rotation_grace_only() {
    let (store, mut sub, secret, vault) = stored_subscription().await;
    let receiver = Running::start(store.clone(), &vault).await;
    let old = secret;
    let version = sub.version;
    let secret = sub
        .rotate_secret(chrono::Duration::hours(1), Utc::now(), &vault.current())
        .unwrap();
    sub.version += 1;
    store.replace(&sub, version).await.expect("rotated");
    let now = Utc::now().timestamp();

    let by_old = job_delivery(&sub, "job-1", JobState::Pending, JobState::Running);
    assert_eq!(receiver.deliver(&by_old, &[&old], now).await, 204);
    let by_new = job_delivery(&sub, "job-1", JobState::Running, JobState::Completed);
    assert_eq!(receiver.deliver(&by_new, &[&secret], now).await, 204);
    let both = job_delivery(&sub, "job-2", JobState::Pending, JobState::Running);
    assert_eq!(receiver.deliver(&both, &[&secret, &old], now).await, 204);
    assert_eq!(receiver.log.wait_for(3, WAIT).await.unwrap().len(), 3);

    // Once the grace period is over, the old secret no longer verifies.
    let version = sub.version;
    sub.previous_secret_expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
    sub.version += 1;
    store.replace(&sub, version).await.expect("grace ended");
    let late = job_delivery(&sub, "job-2", JobState::Running, JobState::Failed);
    assert_eq!(receiver.deliver(&late, &[&old], now).await, 401);
    assert_eq!(
        receiver.log.rejected()[0].reason,
        RejectReason::Signature(VerifyError::NoMatch)
    );
    assert_eq!(receiver.log.verified().len(), 3);
}

#[tokio::test]
async fn garbage_is_a_client_error_and_an_unreadable_store_asks_for_a_retry() {
    let (store, sub, secret, vault) = stored_subscription().await;
    let receiver = Running::start(store, &vault).await;
    let now = Utc::now().timestamp();
    let ts = now.to_string();
    let signed_headers = |body: &[u8]| {
        let signature = signature_header(&[Signer::for_secret(&secret)], "evt_x", now, body);
        [
            (HEADER_ID, "evt_x".to_owned()),
            (HEADER_TIMESTAMP, ts.clone()),
            (HEADER_SIGNATURE, signature),
        ]
    };
    let post = |body: Vec<u8>| {
        let headers = signed_headers(&body);
        let receiver = &receiver;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            receiver.post(&headers, body).await
        }
    };
    assert_eq!(post(b"\xff\x00 not json".to_vec()).await, 400);
    assert_eq!(post(br#"{"type": "job.completed"}"#.to_vec()).await, 400);
    assert_eq!(post(b"[1, 2, 3]".to_vec()).await, 400);
    assert_eq!(post(vec![b' '; 1024 * 1024 + 1]).await, 413);
    // Signed by the subscription's secret, but its idempotency key is not
    // the webhook-id it was signed under.
    let mismatched = job_delivery(&sub, "job-1", JobState::Pending, JobState::Running);
    assert_eq!(post(mismatched.body.into_bytes()).await, 400);
    // A GET is no delivery.
    let get = receiver.http.get(&receiver.url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);

    let reasons: Vec<RejectReason> = receiver
        .log
        .rejected()
        .into_iter()
        .map(|r| r.reason)
        .collect();
    assert!(
        matches!(reasons[0], RejectReason::NotAnEvent(_)),
        "{reasons:?}"
    );
    assert!(
        matches!(reasons[1], RejectReason::NotAnEvent(_)),
        "{reasons:?}"
    );
    assert!(
        matches!(reasons[2], RejectReason::NotAnEvent(_)),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[3..],
        [RejectReason::TooLarge, RejectReason::IdMismatch]
    );
    assert!(receiver.log.verified().is_empty());

    // A store that cannot be read: 503, so the sender retries later.
    let db = emulator::dynamodb().await;
    let broken = SubscriptionStore::new(db, emulator::unique_name("NoSuchTable"));
    let receiver = Running::start(broken, &vault).await;
    let delivery = job_delivery(&sub, "job-1", JobState::Pending, JobState::Running);
    assert_eq!(receiver.deliver(&delivery, &[&secret], now).await, 503);
    assert!(matches!(
        receiver.log.rejected()[0].reason,
        RejectReason::StoreUnavailable(_)
    ));
}

#[tokio::test]
async fn shutdown_stops_serving_and_only_loopback_addresses_are_bound() {
    let (store, _, _, vault) = stored_subscription().await;
    let mut receiver = Running::start(store.clone(), &vault).await;
    // A kept-alive connection does not hold the shutdown up.
    assert_eq!(receiver.post(&[], "{}").await, 401);
    receiver.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(WAIT, &mut receiver.server)
        .await
        .expect("the receiver stops")
        .expect("the task completes")
        .expect("serving ends without an error");
    assert!(
        reqwest::Client::new()
            .post(&receiver.url)
            .body("{}")
            .send()
            .await
            .is_err(),
        "nothing listens any more"
    );

    let public = SocketAddr::from(([0, 0, 0, 0], 0));
    let err = DemoReceiver::bind(public, store, vault)
        .await
        .expect_err("not loopback");
    assert!(matches!(err, ReceiverError::NotLoopback(addr) if addr == public));
}
