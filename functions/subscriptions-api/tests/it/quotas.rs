//! Per-company quotas against the local AWS emulator: subscriptions that
//! are not archived (counted with conditional writes, so racing creates
//! cannot overshoot) and job ids per filter, both from the template's
//! parameters.

use crate::common;

use common::{Fixture, error_of};
use serde_json::json;
use shared::storage::subscriptions::QUOTA_KEY;
use subscriptions_api::ApiConfig;
use test_kit::api::ApiRequest;
use test_kit::stack::{self, ids};

async fn create(f: &Fixture, company: &str, url: &str) -> common::Reply {
    f.call(ApiRequest::new("POST", "/webhooks", company).json(&json!({"url": url})))
        .await
}

fn assert_quota_exceeded(r: &common::Reply, quota: u64) {
    assert_eq!(error_of(r), (422, "subscription_quota_exceeded", None));
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{quota} webhook subscriptions"))
            && message.contains("MAX_SUBSCRIPTIONS_PER_COMPANY"),
        "{message}"
    );
}

async fn listed(f: &Fixture, company: &str) -> usize {
    let r = f.get(company, "/webhooks?limit=100").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_template_sets_the_quotas_and_their_defaults() {
    let stack = stack::deploy_with(&[
        ("MaxSubscriptionsPerCompany", "7"),
        ("MaxJobIdsPerFilter", "12"),
    ])
    .await;
    let vars = stack
        .function(ids::API_FUNCTION)
        .unwrap()
        .vars_with(&[("CURSOR_SIGNING_KEY", "q".repeat(40))]);
    let config = ApiConfig::from_vars(&vars).unwrap();
    assert_eq!((config.max_subscriptions, config.max_job_ids), (7, 12));
    let defaults = Fixture::new().await.config;
    assert_eq!(
        (defaults.max_subscriptions, defaults.max_job_ids),
        (100, 1000)
    );
}

#[tokio::test]
async fn creates_stop_at_the_quota_per_company_and_archiving_frees_a_slot() {
    let f = Fixture::with(|c| c.max_subscriptions = 3).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = create(&f, "acme", &format!("https://hooks.example.com/{i}")).await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    assert_quota_exceeded(&create(&f, "acme", "https://hooks.example.com/4").await, 3);
    assert_eq!(
        listed(&f, "acme").await,
        3,
        "nothing written past the quota"
    );
    // Another company has its own quota.
    assert_eq!(
        create(&f, "globex", "https://hooks.example.com/g")
            .await
            .status,
        201
    );

    // An archived subscription no longer counts; the slot goes once.
    assert_eq!(f.archive("acme", &ids[0]).await.status, 200);
    assert_eq!(
        create(&f, "acme", "https://hooks.example.com/5")
            .await
            .status,
        201
    );
    assert_quota_exceeded(&create(&f, "acme", "https://hooks.example.com/6").await, 3);
}

#[tokio::test]
async fn an_idempotent_retry_of_the_create_that_took_the_last_slot_replays_it() {
    let f = Fixture::with(|c| c.max_subscriptions = 1).await;
    let request = || {
        ApiRequest::new("POST", "/webhooks", "acme")
            .header("idempotency-key", "last-slot")
            .json(&json!({"url": "https://hooks.example.com/last"}))
    };
    let first = f.call(request()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = f.call(request()).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_quota_exceeded(
        &create(&f, "acme", "https://hooks.example.com/other").await,
        1,
    );
}

#[tokio::test]
async fn creates_racing_for_the_last_slot_make_exactly_one() {
    let mut f = Fixture::with(|c| c.max_subscriptions = 2).await;
    assert_eq!(
        create(&f, "acme", "https://hooks.example.com/first")
            .await
            .status,
        201
    );
    let _proxy = f.serialise_emulator().await;
    let urls: Vec<String> = (0..8)
        .map(|i| format!("https://hooks.example.com/race-{i}"))
        .collect();
    let racing = urls.iter().map(|url| create(&f, "acme", url));
    let replies = futures::future::join_all(racing).await;
    let won = replies.iter().filter(|r| r.status == 201).count();
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_quota_exceeded(r, 2);
    }
    assert_eq!(won, 1, "exactly one create takes the last slot");
    assert_eq!(listed(&f, "acme").await, 2);
}

#[tokio::test]
async fn subscriptions_from_before_quotas_are_counted() {
    let f = Fixture::with(|c| c.max_subscriptions = 2).await;
    for i in 0..2 {
        assert_eq!(
            create(&f, "acme", &format!("https://hooks.example.com/{i}"))
                .await
                .status,
            201
        );
    }
    // A table written before quotas has no counter: the API counts.
    test_kit::emulator::dynamodb()
        .await
        .delete_item()
        .table_name(&f.config.table)
        .key(
            "company_id",
            aws_sdk_dynamodb::types::AttributeValue::S("acme".into()),
        )
        .key(
            "subscription_id",
            aws_sdk_dynamodb::types::AttributeValue::S(QUOTA_KEY.into()),
        )
        .send()
        .await
        .unwrap();
    assert_quota_exceeded(&create(&f, "acme", "https://hooks.example.com/3").await, 2);
    assert_eq!(f.store.count_not_archived("acme").await.unwrap(), 2);
}

#[tokio::test]
async fn job_ids_per_filter_are_limited_by_the_quota() {
    let f = Fixture::with(|c| c.max_job_ids = 2).await;
    let body = |ids: &[&str]| json!({"url": "https://hooks.example.com/jobs", "filters": {"job_ids": ids}});
    let ok = f
        .call(ApiRequest::new("POST", "/webhooks", "acme").json(&body(&["a", "b"])))
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let over = f
        .call(ApiRequest::new("POST", "/webhooks", "acme").json(&body(&["a", "b", "c"])))
        .await;
    assert_eq!(
        error_of(&over),
        (400, "too_many_job_ids", Some("filters.job_ids"))
    );
    assert!(
        over.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 job ids")
    );
    let id = ok.body["id"].as_str().unwrap();
    let patch = f
        .call(
            ApiRequest::new("PATCH", &format!("/webhooks/{id}"), "acme")
                .json(&json!({"filters": {"job_ids": ["a", "b", "c"]}})),
        )
        .await;
    assert_eq!(
        error_of(&patch),
        (400, "too_many_job_ids", Some("filters.job_ids"))
    );
}

#[tokio::test]
async fn subject_and_app_ids_per_filter_are_limited_by_the_same_quota() {
    let f = Fixture::with(|c| c.max_job_ids = 2).await;
    for (list, code) in [
        ("subject_ids", "too_many_subject_ids"),
        ("app_ids", "too_many_app_ids"),
    ] {
        let body = |ids: &[&str]| {
            json!({"url": "https://hooks.example.com/events", "kind": "events",
                   "filters": {"event_types": ["*"], list: ids}})
        };
        let ok = f
            .call(ApiRequest::new("POST", "/webhooks", "acme").json(&body(&["a", "b"])))
            .await;
        assert_eq!(ok.status, 201, "{}", ok.body);
        let over = f
            .call(ApiRequest::new("POST", "/webhooks", "acme").json(&body(&["a", "b", "c"])))
            .await;
        let field = format!("filters.{list}");
        assert_eq!(error_of(&over), (400, code, Some(field.as_str())));
        assert!(
            over.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("MAX_JOB_IDS_PER_FILTER")
        );
        let id = ok.body["id"].as_str().unwrap();
        let patch = f
            .call(
                ApiRequest::new("PATCH", &format!("/webhooks/{id}"), "acme")
                    .json(&json!({"filters": {"event_types": ["*"], list: ["a", "b", "c"]}})),
            )
            .await;
        assert_eq!(error_of(&patch), (400, code, Some(field.as_str())));
    }
}

#[tokio::test]
async fn creates_racing_to_recount_after_an_archive_take_the_freed_slot_once() {
    let mut f = Fixture::with(|c| c.max_subscriptions = 2).await;
    let first = create(&f, "acme", "https://hooks.example.com/1").await;
    assert_eq!(
        create(&f, "acme", "https://hooks.example.com/2")
            .await
            .status,
        201
    );
    // The counter still says 2: every racer recounts (1) and corrects it.
    assert_eq!(
        f.archive("acme", first.body["id"].as_str().unwrap())
            .await
            .status,
        200
    );
    let _proxy = f.serialise_emulator().await;
    let urls: Vec<String> = (0..8)
        .map(|i| format!("https://hooks.example.com/recount-{i}"))
        .collect();
    let replies = futures::future::join_all(urls.iter().map(|url| create(&f, "acme", url))).await;
    let won = replies.iter().filter(|r| r.status == 201).count();
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_quota_exceeded(r, 2);
    }
    assert_eq!(won, 1, "the freed slot goes once");
    assert_eq!(f.store.count_not_archived("acme").await.unwrap(), 2);
}
