//! The receiver over real TCP. Verifying, with subscriptions stored in the
//! local AWS emulator: signed deliveries are verified, recorded and
//! printed; anything unsigned, mis-signed, stale or for an unknown
//! subscription is refused (needs the emulator:
//! `infra/with-emulator.sh cargo test -p local-infra`). Programmed:
//! scripted replies, drops, hangs, HTTPS, and what arrived, seen with
//! reqwest and a raw socket where "no response at all" must be observed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use local_infra::receiver::{Receiver, ReceiverError, RejectReason, Reply};
use serde_json::{Value, json};
use shared::domain::filters::Filters;
use shared::domain::job_event::{JobError, JobTransition, timestamp};
use shared::domain::jobs::JobState;
use shared::domain::message::{DeliveryMessage, EventEnvelope, job_data, webhook_id};
use shared::domain::subscription::{NewSubscription, Subscription, new_subscription_id};
use shared::signing::secret::WebhookSecret;
use shared::signing::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Signer, VerifyError, signature_header,
};
use shared::storage::keyring::SecretVault;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::emulator;
use test_kit::stack::{self, ids};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

/// A running receiver, its printed lines, and what stops it.
struct Running {
    url: String,
    receiver: Receiver,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    http: reqwest::Client,
}

impl Running {
    async fn start(store: SubscriptionStore, secrets: &Arc<SecretVault>) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let receiver = Receiver::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .verifying(store, Arc::clone(secrets))
            .printing({
                let lines = Arc::clone(&lines);
                move |line| lines.lock().unwrap().push(line.to_owned())
            })
            .until(async move {
                let _ = stopped.await;
            })
            .start()
            .expect("receiver binds");
        let url = receiver.url("/webhooks");
        Self {
            url,
            receiver,
            lines,
            stop: Some(stop),
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
    let id = webhook_id(&sub.subscription_id, &uuid::Uuid::new_v4().to_string());
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
    let events = receiver
        .receiver
        .wait_for_verified(1, WAIT)
        .await
        .expect("one event");
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
    let events = receiver
        .receiver
        .wait_for_verified(2, WAIT)
        .await
        .expect("two events");
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
    let events = receiver
        .receiver
        .wait_for_verified(4, WAIT)
        .await
        .expect("four events");
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
    assert!(receiver.receiver.rejected().is_empty());
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

    let rejected = receiver.receiver.rejected();
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
    assert!(
        receiver.receiver.verified().is_empty(),
        "nothing was verified"
    );
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
    assert_eq!(
        receiver
            .receiver
            .wait_for_verified(3, WAIT)
            .await
            .unwrap()
            .len(),
        3
    );

    // Once the grace period is over, the old secret no longer verifies.
    let version = sub.version;
    sub.previous_secret_expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
    sub.version += 1;
    store.replace(&sub, version).await.expect("grace ended");
    let late = job_delivery(&sub, "job-2", JobState::Running, JobState::Failed);
    assert_eq!(receiver.deliver(&late, &[&old], now).await, 401);
    assert_eq!(
        receiver.receiver.rejected()[0].reason,
        RejectReason::Signature(VerifyError::NoMatch)
    );
    assert_eq!(receiver.receiver.verified().len(), 3);
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
    // Signed by the subscription's secret, but its event id is not
    // the webhook-id it was signed under.
    let mismatched = job_delivery(&sub, "job-1", JobState::Pending, JobState::Running);
    assert_eq!(post(mismatched.body.into_bytes()).await, 400);
    // A GET is no delivery.
    let get = receiver.http.get(&receiver.url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);

    let reasons: Vec<RejectReason> = receiver
        .receiver
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
    assert!(receiver.receiver.verified().is_empty());

    // A store that cannot be read: 503, so the sender retries later.
    let db = emulator::dynamodb().await;
    let broken = SubscriptionStore::new(db, emulator::unique_name("NoSuchTable"));
    let receiver = Running::start(broken, &vault).await;
    let delivery = job_delivery(&sub, "job-1", JobState::Pending, JobState::Running);
    assert_eq!(receiver.deliver(&delivery, &[&secret], now).await, 503);
    assert!(matches!(
        receiver.receiver.rejected()[0].reason,
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
    tokio::time::timeout(WAIT, receiver.receiver.stopped())
        .await
        .expect("the receiver stops")
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
    let err = Receiver::bind(public)
        .verifying(store, vault)
        .start()
        .expect_err("not loopback");
    assert!(matches!(err, ReceiverError::NotLoopback(addr) if addr == public));
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("HTTP client")
}

fn https_client(receiver: &Receiver) -> reqwest::Client {
    let pem = receiver
        .ca_pem()
        .expect("an HTTPS receiver has a certificate");
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("PEM"))
        .resolve("localhost", ([127, 0, 0, 1], receiver.port()).into())
        .build()
        .expect("HTTPS client")
}

async fn post_status(client: &reqwest::Client, url: &str) -> u16 {
    client
        .post(url)
        .body("{}")
        .send()
        .await
        .expect("a response")
        .status()
        .as_u16()
}

/// Sends a raw HTTP/1.1 request on a fresh connection and reads until the
/// server closes it: the bytes it answered with, or the read error.
async fn raw_exchange(port: u16) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"POST /raw HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 5\r\n\r\nhello")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")?;
    Ok(answer)
}

#[tokio::test]
async fn scripted_replies_in_order_then_policy() {
    let receiver = Receiver::http().await;
    receiver.script([Reply::status(500), Reply::status(503)]);
    receiver.script([Reply::status(429)]);
    receiver.set_policy(|i| Reply::status(200 + u16::try_from(i).expect("small index")));
    let client = client();
    let url = receiver.url("/hook");

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(post_status(&client, &url).await);
    }

    assert_eq!(statuses, [500, 503, 429, 203, 204]);
}

#[tokio::test]
async fn default_policy_is_200_with_an_empty_body() {
    let receiver = Receiver::http().await;
    assert!(receiver.url("hook").starts_with("http://127.0.0.1:"));
    assert_eq!(
        receiver.url("hook"),
        format!("http://127.0.0.1:{}/hook", receiver.port())
    );
    assert_eq!(receiver.ca_pem(), None);

    let response = client()
        .post(receiver.url("/hook"))
        .send()
        .await
        .expect("a response");

    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "");
}

#[tokio::test]
async fn replies_carry_headers_and_body() {
    let receiver = Receiver::http().await;
    receiver.script([Reply::status(410)
        .header("content-type", "application/json")
        .header("x-receiver", "gone")
        .body(r#"{"gone":true}"#)]);

    let response = client()
        .post(receiver.url("/hook"))
        .send()
        .await
        .expect("a response");

    assert_eq!(response.status(), 410);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-receiver"], "gone");
    assert_eq!(response.text().await.expect("body"), r#"{"gone":true}"#);
}

#[tokio::test]
async fn delayed_reply_arrives_after_the_delay() {
    let receiver = Receiver::http().await;
    let delay = Duration::from_millis(400);
    receiver.script([Reply::status(202).after(delay)]);
    let client = client();

    let started = Instant::now();
    let status = post_status(&client, &receiver.url("/slow")).await;
    let elapsed = started.elapsed();

    assert_eq!(status, 202);
    assert!(
        elapsed >= delay,
        "answered after {elapsed:?}, before {delay:?}"
    );
    // Only the scripted reply was delayed.
    let started = Instant::now();
    assert_eq!(post_status(&client, &receiver.url("/slow")).await, 200);
    assert!(
        started.elapsed() < delay,
        "undelayed reply took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn drop_closes_the_connection_without_a_response() {
    let receiver = Receiver::http().await;
    receiver.script([Reply::Drop]);
    let client = client();

    let error = client
        .post(receiver.url("/hook"))
        .body("payload")
        .send()
        .await
        .expect_err("no response to a dropped request");

    assert!(!error.is_timeout(), "closed, not timed out: {error:?}");
    assert_eq!(error.status(), None);
    assert!(error.is_request(), "failed while sending: {error:?}");
    // It was received, and was the only attempt.
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, "payload");
    // The receiver keeps serving.
    assert_eq!(post_status(&client, &receiver.url("/hook")).await, 200);
}

#[tokio::test]
async fn drop_sends_no_bytes_at_all() {
    let receiver = Receiver::http().await;
    receiver.script([Reply::Drop]);

    // A clean close (EOF) with nothing written, or a reset: either way, no
    // response.
    match raw_exchange(receiver.port()).await {
        Ok(answer) => assert!(
            answer.is_empty(),
            "expected no response, got {:?}",
            String::from_utf8_lossy(&answer)
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert_eq!(receiver.received()[0].body, "hello");
}

#[tokio::test]
async fn raw_exchange_sees_a_normal_response() {
    // Control for `drop_sends_no_bytes_at_all`: the same raw request, asking
    // for the connection to close, gets a status line.
    let receiver = Receiver::http().await;
    let mut stream = TcpStream::connect(("127.0.0.1", receiver.port()))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /raw HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("closed after the response")
        .expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
}

#[tokio::test]
async fn hang_never_answers_until_the_client_gives_up() {
    let receiver = Receiver::http().await;
    receiver.script([Reply::Hang]);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("HTTP client");

    let error = client
        .post(receiver.url("/hook"))
        .body("waiting")
        .send()
        .await
        .expect_err("no answer to a hanging request");

    assert!(error.is_timeout(), "timed out: {error:?}");
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, "waiting");
}

#[tokio::test]
async fn dropping_the_receiver_closes_hanging_connections_and_the_port() {
    let receiver = Receiver::http().await;
    receiver.set_policy(|_| Reply::Hang);
    let port = receiver.port();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    receiver.wait_for(1, WAIT).await;

    drop(receiver);

    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the hanging connection is closed when the receiver is dropped");
    assert!(
        read.is_err() || answer.is_empty(),
        "no response: {answer:?}"
    );
    // The listener went away with the server task, before the connection.
    let error = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect_err("nothing listens any more");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn https_works_when_the_certificate_is_trusted() {
    let receiver = Receiver::https().await;
    assert_eq!(
        receiver.url("/hook"),
        format!("https://127.0.0.1:{}/hook", receiver.port())
    );
    let pem = receiver.ca_pem().expect("certificate");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    receiver.script([Reply::status(201).body("secure")]);
    let client = https_client(&receiver);

    let response = client
        .post(receiver.url("/hook"))
        .header("webhook-id", "msg_1")
        .body("{}")
        .send()
        .await
        .expect("a response over TLS");
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().await.expect("body"), "secure");

    // The certificate also names `localhost`.
    let url = format!("https://localhost:{}/other", receiver.port());
    assert_eq!(post_status(&client, &url).await, 200);

    let received = receiver.wait_for(2, WAIT).await;
    assert_eq!(received[0].header("webhook-id"), Some("msg_1"));
    assert_eq!(received[1].path, "/other");
}

#[tokio::test]
async fn https_fails_without_trusting_the_certificate() {
    let receiver = Receiver::https().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .tls_built_in_root_certs(false)
        .build()
        .expect("HTTPS client");

    let error = client
        .post(receiver.url("/hook"))
        .send()
        .await
        .expect_err("an untrusted certificate is refused");

    assert!(error.is_connect(), "failed to connect: {error:?}");
    assert!(
        format!("{error:?}").to_lowercase().contains("certificate"),
        "a certificate error: {error:?}"
    );
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn https_supports_drop_and_hang() {
    let receiver = Receiver::https().await;
    receiver.script([Reply::Drop, Reply::Hang]);
    let client = https_client(&receiver);

    let dropped = client
        .post(receiver.url("/drop"))
        .send()
        .await
        .expect_err("dropped");
    assert!(!dropped.is_timeout(), "{dropped:?}");
    let hung = client
        .post(receiver.url("/hang"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("hung");
    assert!(hung.is_timeout(), "{hung:?}");
    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/drop", "/hang"]);
}

#[tokio::test]
async fn records_method_path_headers_and_body() {
    let receiver = Receiver::http().await;
    // Waiting starts before anything is sent.
    let waiter = receiver.wait_for(2, WAIT);
    let client = client();
    let before = Instant::now();
    let send = async {
        let status = client
            .post(receiver.url("/hooks/a?x=1&y=2"))
            .header("webhook-id", "msg_2")
            .header("webhook-timestamp", "1700000000")
            .header("webhook-signature", "v1,c2lnbmF0dXJl")
            .header("content-type", "application/json")
            .body(r#"{"job":"j1"}"#)
            .send()
            .await
            .expect("first")
            .status();
        assert_eq!(status, 200);
        let status = client
            .get(receiver.url("/health"))
            .send()
            .await
            .expect("second")
            .status();
        assert_eq!(status, 200);
    };
    let (received, ()) = tokio::join!(waiter, send);
    let after = Instant::now();

    assert_eq!(received.len(), 2);
    let first = &received[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/hooks/a");
    assert_eq!(first.query.as_deref(), Some("x=1&y=2"));
    assert_eq!(first.header("webhook-id"), Some("msg_2"));
    assert_eq!(first.header("Webhook-Timestamp"), Some("1700000000"));
    assert_eq!(first.header("webhook-signature"), Some("v1,c2lnbmF0dXJl"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("missing"), None);
    assert_eq!(first.body, r#"{"job":"j1"}"#);
    assert_eq!(first.body_text(), r#"{"job":"j1"}"#);
    let second = &received[1];
    assert_eq!(second.method, "GET");
    assert_eq!(second.path, "/health");
    assert_eq!(second.query, None);
    assert!(second.body.is_empty());
    assert!(before <= first.at && first.at <= second.at && second.at <= after);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn wait_for_returns_only_once_enough_arrived() {
    let receiver = std::sync::Arc::new(Receiver::http().await);
    let waiter = tokio::spawn({
        let receiver = std::sync::Arc::clone(&receiver);
        async move { receiver.wait_for(2, WAIT).await.len() }
    });
    let client = client();

    post_status(&client, &receiver.url("/one")).await;
    // Let the waiter run after the first arrival; it must still be waiting.
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "returned after one of two requests");
    post_status(&client, &receiver.url("/two")).await;

    assert_eq!(waiter.await.expect("waiter"), 2);
    // Already satisfied: returns at once.
    assert_eq!(receiver.wait_for(1, Duration::ZERO).await.len(), 2);
}

#[tokio::test]
#[should_panic(expected = "waited 200ms for 2 requests, 1 arrived")]
async fn wait_for_panics_listing_what_arrived() {
    let receiver = Receiver::http().await;
    post_status(&client(), &receiver.url("/only-one")).await;

    receiver.wait_for(2, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn wait_for_panic_message_lists_requests() {
    let receiver = Receiver::http().await;
    client()
        .post(receiver.url("/only-one?q=1"))
        .header("webhook-id", "msg_3")
        .body("the body")
        .send()
        .await
        .expect("a response");

    let panic = tokio::spawn(async move {
        receiver.wait_for(2, Duration::from_millis(100)).await;
    })
    .await
    .expect_err("wait_for panics");
    let message = panic
        .into_panic()
        .downcast::<String>()
        .map(|s| *s)
        .expect("a formatted message");

    assert!(message.contains("1 arrived"), "{message}");
    assert!(message.contains("#0 POST /only-one?q=1"), "{message}");
    assert!(message.contains("webhook-id: msg_3"), "{message}");
    assert!(message.contains("the body"), "{message}");
}

#[test]
#[should_panic(expected = "Reply::body applies to Reply::status(..)")]
fn builders_reject_drop_and_hang() {
    let _ = Reply::Drop.body("x");
}
