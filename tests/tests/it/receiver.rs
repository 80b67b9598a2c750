//! The programmable webhook receiver, exercised over real TCP with reqwest
//! (and a raw socket where "no response at all" must be observed).

use std::time::{Duration, Instant};

use test_support::receiver::{Receiver, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

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
