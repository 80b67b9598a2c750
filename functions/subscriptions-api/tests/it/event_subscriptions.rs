//! Subscriptions of kind `events` through the API against the local AWS
//! emulator: created with catalogue event types and filters, read back
//! with their kind, refused with the field named, fixed in kind, and kept
//! to their company.

use crate::common;

use common::{Fixture, Reply, error_of};
use serde_json::{Value, json};
use test_kit::api::ApiRequest;

async fn create(f: &Fixture, company: &str, body: Value) -> Reply {
    f.call(ApiRequest::new("POST", "/webhooks", company).json(&body))
        .await
}

#[tokio::test]
async fn an_events_subscription_is_created_read_and_listed_with_its_kind() {
    let f = Fixture::new().await;
    let r = create(
        &f,
        "acme",
        json!({
            "url": "https://hooks.example.com/platform",
            "kind": "events",
            "filters": {
                "event_types": ["engine.*", "subject.failed", "engine.*"],
                "subject_types": ["work", "workflow"],
                "subject_ids": ["w-1"],
                "verbs": ["failed"],
                "app_ids": ["app_a"]
            }
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["kind"], "events");
    assert_eq!(
        r.body["filters"],
        json!({
            "event_types": ["engine.*", "subject.failed"],
            "subject_types": ["work", "workflow"],
            "subject_ids": ["w-1"],
            "verbs": ["failed"],
            "app_ids": ["app_a"]
        })
    );
    let id = r.body["id"].as_str().unwrap().to_owned();
    let stored = f.store.get("acme", &id).await.unwrap().unwrap();
    assert_eq!(
        stored.filters.kind(),
        shared::domain::filters::SubscriptionKind::Events
    );
    let get = f
        .call(ApiRequest::new("GET", &format!("/webhooks/{id}"), "acme"))
        .await;
    assert_eq!((get.status, &get.body["kind"]), (200, &json!("events")));

    // The kind follows from event types when the request does not say.
    let implied = create(
        &f,
        "acme",
        json!({"url": "https://hooks.example.com/apps", "filters": {"event_types": ["app.*"]}}),
    )
    .await;
    assert_eq!(
        (implied.status, &implied.body["kind"]),
        (201, &json!("events"))
    );
    // And a job subscription says it is one, as before.
    let jobs = create(&f, "acme", json!({"url": "https://hooks.example.com/jobs"})).await;
    assert_eq!((jobs.status, &jobs.body["kind"]), (201, &json!("jobs")));

    let list = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    let kinds: Vec<&str> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == "events").count(), 2);
}

#[tokio::test]
async fn bad_event_filters_are_400s_naming_the_field_and_the_allowed_values() {
    let f = Fixture::new().await;
    let cases = [
        (
            json!({"kind": "events"}),
            "missing_event_types",
            "filters.event_types",
            "engine.*",
        ),
        (
            json!({"kind": "events", "filters": {"event_types": ["engine.nope"]}}),
            "unknown_event_type",
            "filters.event_types[0]",
            "engine.slow_query_event",
        ),
        (
            json!({"kind": "events", "filters": {"event_types": ["job.completed"]}}),
            "unknown_event_type",
            "filters.event_types[0]",
            "kind jobs",
        ),
        (
            json!({"kind": "events", "filters": {"event_types": ["*"], "subject_types": ["planet"]}}),
            "unknown_subject_type",
            "filters.subject_types[0]",
            "segment",
        ),
        (
            json!({"kind": "events", "filters": {"event_types": ["*"], "verbs": ["exploded"]}}),
            "unknown_verb",
            "filters.verbs[0]",
            "completed",
        ),
        (
            json!({"kind": "events", "filters": {"event_types": ["*"], "states": ["failed"]}}),
            "filter_not_for_kind",
            "filters.states",
            "app_ids",
        ),
        (
            json!({"kind": "jobs", "filters": {"app_ids": ["app_a"]}}),
            "filter_not_for_kind",
            "filters.app_ids",
            "job_types",
        ),
        (
            json!({"kind": "webhooks"}),
            "invalid_type",
            "kind",
            "events",
        ),
    ];
    for (mut body, code, field, allowed) in cases {
        body["url"] = "https://hooks.example.com/x".into();
        let r = create(&f, "acme", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(error_of(&r), (400, code, Some(field)), "{body}");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(allowed), "{body}: {message}");
    }
}

#[tokio::test]
async fn patch_changes_event_filters_but_never_the_kind() {
    let f = Fixture::new().await;
    let events = create(
        &f,
        "acme",
        json!({"url": "https://hooks.example.com/p", "kind": "events", "filters": {"event_types": ["app.*"]}}),
    )
    .await;
    let id = events.body["id"].as_str().unwrap().to_owned();
    let path = format!("/webhooks/{id}");
    let r = f
        .call(
            ApiRequest::new("PATCH", &path, "acme").json(
                &json!({"filters": {"event_types": ["app.installed"], "app_ids": ["app_b"]}}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["filters"],
        json!({"event_types": ["app.installed"], "app_ids": ["app_b"]})
    );
    // Filters are checked for the subscription's kind: well-formed, but
    // not for this subscription, 422; filters that no subscription takes,
    // 400.
    for (status, body, code, field, says) in [
        (
            422,
            json!({"filters": {"states": ["failed"]}}),
            "filter_not_for_kind",
            "filters.states",
            "kind events",
        ),
        (
            400,
            json!({"filters": {"app_ids": ["app_c"]}}),
            "missing_event_types",
            "filters.event_types",
            "kind events",
        ),
    ] {
        let r = f
            .call(ApiRequest::new("PATCH", &path, "acme").json(&body))
            .await;
        assert_eq!(error_of(&r), (status, code, Some(field)), "{body}");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    for body in [
        json!({"kind": "jobs"}),
        json!({"filters": null}),
        json!({"filters": {}}),
    ] {
        let r = f
            .call(ApiRequest::new("PATCH", &path, "acme").json(&body))
            .await;
        assert_eq!(error_of(&r), (422, "kind_is_fixed", Some("kind")), "{body}");
    }
    let jobs = create(&f, "acme", json!({"url": "https://hooks.example.com/j"})).await;
    let r = f
        .call(
            ApiRequest::new(
                "PATCH",
                &format!("/webhooks/{}", jobs.body["id"].as_str().unwrap()),
                "acme",
            )
            .json(&json!({"filters": {"app_ids": ["app_c"]}})),
        )
        .await;
    assert_eq!(
        error_of(&r),
        (400, "missing_event_types", Some("filters.event_types"))
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kind events")
    );
    let jobs_path = format!("/webhooks/{}", jobs.body["id"].as_str().unwrap());
    let r = f
        .call(
            ApiRequest::new("PATCH", &jobs_path, "acme")
                .json(&json!({"filters": {"event_types": ["*"]}})),
        )
        .await;
    assert_eq!(error_of(&r), (422, "kind_is_fixed", Some("kind")));
    let unchanged = f.call(ApiRequest::new("GET", &path, "acme")).await;
    assert_eq!(unchanged.body["filters"]["app_ids"], json!(["app_b"]));
}

#[tokio::test]
async fn another_company_never_sees_nor_changes_an_events_subscription() {
    let f = Fixture::new().await;
    let r = create(
        &f,
        "acme",
        json!({"url": "https://hooks.example.com/p", "kind": "events", "filters": {"event_types": ["*"], "app_ids": ["app_a"]}}),
    )
    .await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/webhooks/{id}");
    for req in [
        ApiRequest::new("GET", &path, "globex"),
        ApiRequest::new("PATCH", &path, "globex")
            .json(&json!({"filters": {"event_types": ["app.*"], "app_ids": ["app_x"]}})),
    ] {
        let r = f.call(req).await;
        assert_eq!(r.status, 404, "{}", r.body);
    }
    let list = f.call(ApiRequest::new("GET", "/webhooks", "globex")).await;
    assert_eq!(list.body["data"], json!([]));
    let mine = f.call(ApiRequest::new("GET", &path, "acme")).await;
    assert_eq!(mine.body["filters"]["app_ids"], json!(["app_a"]));
}
