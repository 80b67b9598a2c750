//! The delivery log and test-event routes against the local AWS emulator:
//! `GET /webhooks/{id}/deliveries` pages through attempts seeded in the
//! DeliveriesTable, `POST /webhooks/{id}/test` puts a real message on an
//! SQS queue; both are scoped to the caller's company. Also the target
//! allow-list of create and update.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::{Fixture, Reply, error_of};
use serde_json::{Value, json};
use shared::domain::message::{DeliveryMessage, TEST_EVENT_TYPE};
use shared::storage::deliveries::{AttemptLog, Outcome, RETENTION};
use test_kit::api::ApiRequest;

fn attempt(
    company: &str,
    subscription_id: &str,
    at: DateTime<Utc>,
    key: &str,
    attempt: u32,
    outcome: Outcome,
) -> AttemptLog {
    let (status_code, error, response_excerpt) = match outcome {
        Outcome::Delivered => (Some(200), None, Some("ok".to_owned())),
        Outcome::Failed => (None, Some("timeout".to_owned()), None),
        Outcome::Gone => (Some(410), None, Some("gone".to_owned())),
    };
    AttemptLog {
        company_id: company.to_owned(),
        attempt_id: AttemptLog::attempt_id(subscription_id, at, key, attempt),
        subscription_id: subscription_id.to_owned(),
        webhook_id: key.to_owned(),
        event_type: "job.completed".to_owned(),
        attempt,
        at,
        outcome,
        status_code,
        error,
        duration_ms: 40 + u64::from(attempt),
        response_excerpt,
        expires_at: (at + RETENTION).timestamp(),
    }
}

fn deliveries_path(id: &str, query: &str) -> String {
    format!("/webhooks/{id}/deliveries{query}")
}

/// `company`'s `GET /webhooks/{id}/deliveries{query}`.
async fn deliveries(f: &Fixture, company: &str, id: &str, query: &str) -> Reply {
    f.get(company, &deliveries_path(id, query)).await
}

/// Walks every page of `id`'s log with `limit`, returning the attempt ids
/// and, per page, its size and `has_more`.
async fn walk(
    f: &Fixture,
    company: &str,
    id: &str,
    limit: usize,
) -> (Vec<String>, Vec<(usize, bool)>) {
    let mut ids = Vec::new();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = format!("?limit={limit}");
        if let Some(c) = &cursor {
            query.push_str(&format!("&cursor={c}"));
        }
        let r = deliveries(f, company, id, &query).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let data = r.body["data"].as_array().unwrap();
        let has_more = r.body["has_more"].as_bool().unwrap();
        pages.push((data.len(), has_more));
        ids.extend(data.iter().map(|a| a["id"].as_str().unwrap().to_owned()));
        match r.body["next_cursor"].as_str() {
            Some(c) => {
                assert!(has_more, "a cursor only while more follow");
                cursor = Some(c.to_owned());
            }
            None => {
                assert!(!has_more, "the last page has no cursor");
                return (ids, pages);
            }
        }
    }
}

/// Seeds five attempts of `id` (one per second, oldest first) plus noise
/// on `other` of the same company; returns the five, newest first.
async fn seed(f: &Fixture, company: &str, id: &str, other: &str) -> Vec<AttemptLog> {
    let t0 = DateTime::from_timestamp_millis(1_795_341_600_000).unwrap();
    let outcomes = [
        Outcome::Failed,
        Outcome::Failed,
        Outcome::Delivered,
        Outcome::Gone,
        Outcome::Delivered,
    ];
    let mut seeded = Vec::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let at = t0 + Duration::seconds(i as i64);
        let key = format!("evt_{}", i / 2);
        let log = attempt(company, id, at, &key, 1 + (i % 2) as u32, outcome);
        f.log.record(&log).await.unwrap();
        seeded.push(log);
        // Interleaved attempts of another subscription of the same company.
        let noise = attempt(company, other, at, &key, 1, Outcome::Delivered);
        f.log.record(&noise).await.unwrap();
    }
    seeded.reverse();
    seeded
}

/// `company`'s `POST /webhooks/{id}/test` without a body.
async fn test_event(f: &Fixture, company: &str, id: &str) -> Reply {
    f.call(ApiRequest::new(
        "POST",
        &format!("/webhooks/{id}/test"),
        company,
    ))
    .await
}

/// Two new subscriptions of acme, the first with the five attempts of
/// [`seed`] and the second with the noise: their ids and the five.
async fn seeded_pair(f: &Fixture) -> (String, String, Vec<AttemptLog>) {
    let id = f.create_id("acme").await;
    let other = f.create_id("acme").await;
    let seeded = seed(f, "acme", &id, &other).await;
    (id, other, seeded)
}

#[tokio::test]
async fn deliveries_are_listed_newest_first_across_pages() {
    let f = Fixture::new().await;
    let (id, other, seeded) = seeded_pair(&f).await;
    let expected: Vec<String> = seeded.iter().map(|a| a.attempt_id.clone()).collect();

    let (ids, pages) = walk(&f, "acme", &id, 2).await;
    assert_eq!(
        ids, expected,
        "newest first, each attempt once, only this subscription's"
    );
    assert_eq!(pages, [(2, true), (2, true), (1, false)]);
    let (ids, pages) = walk(&f, "acme", &id, 5).await;
    assert_eq!(ids, expected);
    assert_eq!(pages, [(5, false)], "an exact fit has no empty last page");

    // Default page size holds everything; every field of the view.
    let r = deliveries(&f, "acme", &id, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["has_more"], false);
    assert_eq!(r.body["next_cursor"], Value::Null);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 5);
    assert_eq!(
        data[1],
        json!({
            "id": seeded[1].attempt_id,
            "idempotency_key": "evt_1",
            "event_type": "job.completed",
            "attempt": 2,
            "at": "2026-11-22T10:00:03.000Z",
            "outcome": "gone",
            "status_code": 410,
            "error": null,
            "duration_ms": 42,
            "response_excerpt": "gone"
        })
    );
    assert_eq!(data[4]["outcome"], "failed");
    assert_eq!(data[4]["error"], "timeout");
    assert_eq!(data[4]["status_code"], Value::Null);
    assert_eq!(data[4]["response_excerpt"], Value::Null);

    // The other subscription sees only its own five.
    let (ids, _) = walk(&f, "acme", &other, 100).await;
    assert_eq!(ids.len(), 5);
    assert!(ids.iter().all(|a| a.starts_with(&format!("{other}#"))));
}

#[tokio::test]
async fn a_subscription_without_attempts_has_an_empty_log() {
    let f = Fixture::new().await;
    let id = f.create_id("acme").await;
    let r = deliveries(&f, "acme", &id, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"data": [], "has_more": false, "next_cursor": null})
    );
}

#[tokio::test]
async fn archived_subscriptions_still_list_their_log() {
    let f = Fixture::new().await;
    let (id, _, seeded) = seeded_pair(&f).await;
    let r = f.archive("acme", &id).await;
    assert_eq!(r.body["status"], "archived");
    let (ids, _) = walk(&f, "acme", &id, 3).await;
    assert_eq!(ids.len(), seeded.len());
}

#[tokio::test]
async fn another_companys_log_is_a_404_like_a_missing_id() {
    let f = Fixture::new().await;
    let (id, _, _) = seeded_pair(&f).await;
    let missing = deliveries(
        &f,
        "acme",
        &shared::domain::subscription::new_subscription_id(),
        "",
    )
    .await;
    assert_eq!(error_of(&missing), (404, "not_found", None));
    for (company, path) in [
        ("globex", deliveries_path(&id, "")),
        ("globex", deliveries_path(&id, "?limit=1")),
        ("acme", deliveries_path("sub_0", "")),
        ("acme", deliveries_path("evt_0", "")),
    ] {
        let r = f.get(company, &path).await;
        assert_eq!(r.status, 404, "{company} {path}");
        assert_eq!(r.body, missing.body, "indistinguishable from a missing id");
    }
}

#[tokio::test]
async fn deliveries_cursors_are_tamper_proof_and_bound_to_the_subscription() {
    let f = Fixture::new().await;
    let (id, other, _) = seeded_pair(&f).await;
    f.create_default("acme").await;
    let first = deliveries(&f, "acme", &id, "?limit=1").await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let ok = deliveries(&f, "acme", &id, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_ne!(ok.body["data"][0]["id"], first.body["data"][0]["id"]);

    // A cursor of the subscriptions list is no deliveries cursor.
    let list = f.get("acme", "/webhooks?limit=1").await;
    let list_cursor = list.body["next_cursor"].as_str().unwrap().to_owned();

    let (payload, tag) = cursor.split_once('.').unwrap();
    let mut flipped = payload.as_bytes().to_vec();
    flipped[2] = if flipped[2] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
    for (target, bad) in [
        (&id, tampered),
        (&id, "garbage".to_owned()),
        (&id, payload.to_owned()),
        (&other, cursor.clone()),
        (&id, list_cursor.clone()),
    ] {
        let r = deliveries(&f, "acme", target, &format!("?cursor={bad}")).await;
        assert_eq!(
            error_of(&r),
            (400, "invalid_cursor", Some("cursor")),
            "{target} {bad}"
        );
    }
    // And the other way round.
    let r = f.get("acme", &format!("/webhooks?cursor={cursor}")).await;
    assert_eq!(error_of(&r), (400, "invalid_cursor", Some("cursor")));
}

#[tokio::test]
async fn deliveries_reject_bad_parameters() {
    let f = Fixture::new().await;
    let id = f.create_id("acme").await;
    f.assert_bad_queries(
        "acme",
        &deliveries_path(&id, ""),
        &[
            ("limit=0", "invalid_parameter", "limit"),
            ("limit=101", "invalid_parameter", "limit"),
            ("limit=ten", "invalid_parameter", "limit"),
            ("limit=-1", "invalid_parameter", "limit"),
            ("status=active", "unknown_parameter", "status"),
        ],
    )
    .await;
    let r = deliveries(&f, "acme", &id, "?limit=100").await;
    assert_eq!(r.status, 200);
    let r = f
        .call(ApiRequest::new("POST", &deliveries_path(&id, ""), "acme"))
        .await;
    assert_eq!(error_of(&r), (405, "method_not_allowed", None));
    assert_eq!(r.headers["allow"], "GET");
}

#[tokio::test]
async fn test_route_queues_one_webhook_test_message() {
    let f = Fixture::new().await;
    let id = f.create_id("acme").await;
    let r = test_event(&f, "acme", &id).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let key = r.body["idempotency_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("evt_"), "{key}");
    assert_eq!(
        r.body,
        json!({"idempotency_key": key, "event_type": "webhook.test", "status": "queued"})
    );

    let queued = f.queued().await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    let msg = DeliveryMessage::parse(&queued[0]).expect("a delivery message");
    assert_eq!(msg.attempt, 1);
    assert_eq!(msg.event_type, TEST_EVENT_TYPE);
    assert_eq!(msg.webhook_id, key);
    assert_eq!(
        (msg.company_id.as_str(), msg.subscription_id.as_str()),
        ("acme", id.as_str())
    );
    let payload: Value = serde_json::from_str(msg.payload.get()).unwrap();
    assert_eq!(payload["type"], "webhook.test");
    assert_eq!(payload["subscription_id"], id.as_str());
    assert_eq!(payload["company_id"], "acme");
    assert_eq!(payload["idempotency_key"], key.as_str());

    // `{}` is accepted too, and every call is a new event.
    let again = f
        .call(ApiRequest::new("POST", &format!("/webhooks/{id}/test"), "acme").json(&json!({})))
        .await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_ne!(again.body["idempotency_key"], key.as_str());
    assert_eq!(f.queued().await.len(), 1);
}

#[tokio::test]
async fn test_route_refuses_foreign_archived_and_bad_requests_without_queueing() {
    let f = Fixture::new().await;
    let id = f.create_id("acme").await;
    let path = format!("/webhooks/{id}/test");
    let missing = test_event(
        &f,
        "acme",
        &shared::domain::subscription::new_subscription_id(),
    )
    .await;
    assert_eq!(error_of(&missing), (404, "not_found", None));
    let foreign = test_event(&f, "globex", &id).await;
    assert_eq!(foreign.status, 404);
    assert_eq!(
        foreign.body, missing.body,
        "indistinguishable from a missing id"
    );

    let cases = [
        (
            json!({"type": "job.completed"}),
            (400, "unknown_field", Some("type")),
        ),
        (json!([]), (400, "invalid_type", None)),
        (json!("x"), (400, "invalid_type", None)),
    ];
    for (body, expected) in cases {
        let r = f
            .call(ApiRequest::new("POST", &path, "acme").json(&body))
            .await;
        assert_eq!(error_of(&r), expected, "{body}");
    }
    let r = f
        .call(ApiRequest::new("POST", &path, "acme").raw_body("{"))
        .await;
    assert_eq!(error_of(&r), (400, "malformed_json", None));
    let r = f
        .call(
            ApiRequest::new("POST", &path, "acme")
                .header("content-type", "text/plain")
                .raw_body("hello"),
        )
        .await;
    assert_eq!(error_of(&r), (415, "unsupported_media_type", None));

    let r = f.archive("acme", &id).await;
    assert_eq!(r.status, 200);
    let r = test_event(&f, "acme", &id).await;
    assert_eq!(error_of(&r), (409, "subscription_archived", None));

    assert!(f.queued().await.is_empty(), "nothing was queued");
}

#[tokio::test]
async fn test_route_answers_503_when_the_queue_is_unreachable() {
    let missing_queue = format!(
        "{}/000000000000/no-such-queue",
        test_kit::emulator::endpoint()
    );
    let f = Fixture::with(|c| c.delivery_queue_url = missing_queue).await;
    let id = f.create_id("acme").await;
    let r = test_event(&f, "acme", &id).await;
    assert_eq!(error_of(&r), (503, "unavailable", None));
}

#[tokio::test]
async fn the_allow_list_admits_listed_non_public_targets() {
    let target = json!({"url": "http://127.0.0.1:9/x"});
    let strict = Fixture::new().await;
    let r = strict
        .call(ApiRequest::new("POST", "/webhooks", "acme").json(&target))
        .await;
    assert_eq!(error_of(&r), (400, "url_not_https", Some("url")));
    let r = strict
        .call(
            ApiRequest::new("POST", "/webhooks", "acme")
                .json(&json!({"url": "https://127.0.0.1:9/x"})),
        )
        .await;
    assert_eq!(error_of(&r), (400, "url_not_allowed", Some("url")));

    let local = Fixture::with_allow_list("127.0.0.0/8").await;
    let created = local.create("acme", target).await;
    assert_eq!(created["url"], "http://127.0.0.1:9/x");
    let id = created["id"].as_str().unwrap();
    let r = local
        .call(
            ApiRequest::new("PATCH", &format!("/webhooks/{id}"), "acme")
                .json(&json!({"url": "http://127.0.0.2:8080/y"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["url"], "http://127.0.0.2:8080/y");
    // Only the listed networks.
    let r = local
        .call(
            ApiRequest::new("POST", "/webhooks", "acme").json(&json!({"url": "http://10.0.0.1/x"})),
        )
        .await;
    assert_eq!(error_of(&r), (400, "url_not_allowed", Some("url")));
}

#[tokio::test]
async fn with_an_allow_list_plain_http_is_only_for_hosts_inside_it() {
    let local = Fixture::with_allow_list("127.0.0.0/8,::1").await;
    let create =
        |url: &str| ApiRequest::new("POST", "/webhooks", "acme").json(&json!({ "url": url }));
    // Outside the listed networks plain http keeps the https rule: a public
    // IP literal, a public name, a name that does not resolve.
    for url in [
        "http://93.184.216.34/hook",
        "http://example.com/h",
        "http://no-such-host.invalid/h",
    ] {
        let r = local.call(create(url)).await;
        assert_eq!(error_of(&r), (400, "url_not_https", Some("url")), "{url}");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("TARGET_ALLOW_LIST"),
            "{}",
            r.body
        );
    }
    // https to public hosts is unaffected; listed hosts may use plain http,
    // by address or by a name that resolves only into the list.
    for url in [
        "https://example.com/h",
        "http://127.0.0.1:9/x",
        "http://[::1]:9/x",
        "http://localhost:9/x",
    ] {
        let r = local.call(create(url)).await;
        assert_eq!(r.status, 201, "{url}: {}", r.body);
    }
    // The same rule on PATCH.
    let id = local.create_id("acme").await;
    let r = local
        .call(
            ApiRequest::new("PATCH", &format!("/webhooks/{id}"), "acme")
                .json(&json!({"url": "http://example.com/h"})),
        )
        .await;
    assert_eq!(error_of(&r), (400, "url_not_https", Some("url")));
}
