//! The subscriptions API against the local AWS emulator: every route, every
//! class of client error, pagination, tenant isolation, idempotent create,
//! concurrent updates and secret rotation.

use crate::common;

use std::collections::HashSet;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use common::{Fixture, error_of};
use serde_json::{Value, json};
use test_kit::api::ApiRequest;

fn ts(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn create_returns_the_secret_once_in_both_forms() {
    let f = Fixture::new().await;
    let r = f
        .call(
            ApiRequest::new("POST", "/webhooks", "acme").json(&json!({
                "url": "https://hooks.example.com/jobs?source=platform",
                "description": "pipeline trigger",
                "filters": {"job_types": ["materialize-view", "costs"], "states": ["completed", "failed"], "job_ids": ["j-1"]}
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(shared::domain::subscription::is_subscription_id(&id));
    assert_eq!(r.headers["location"], format!("/webhooks/{id}").as_str());
    assert_eq!(r.headers["etag"], "\"1\"");
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["version"], 1);
    assert_eq!(
        r.body["filters"],
        json!({"job_ids": ["j-1"], "job_types": ["materialize-view", "costs"], "states": ["completed", "failed"]})
    );
    let secret = r.body["secret"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(secret).is_ok(), "{secret}");
    let whsec = r.body["standard_webhooks_secret"].as_str().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(whsec.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(decoded, secret.as_bytes());

    let stored = f.store.get("acme", &id).await.unwrap().unwrap();
    assert_eq!(f.opened(&stored, Utc::now()), [secret]);

    let get = f
        .call(ApiRequest::new("GET", &format!("/webhooks/{id}"), "acme"))
        .await;
    assert_eq!(get.status, 200);
    assert_eq!(
        get.body["url"],
        "https://hooks.example.com/jobs?source=platform"
    );
    assert_eq!(get.body["description"], "pipeline trigger");
    let list = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    let patch = f
        .call(
            ApiRequest::new("PATCH", &format!("/webhooks/{id}"), "acme")
                .json(&json!({"description": "x"})),
        )
        .await;
    let archive = f.archive("acme", &id).await;
    for body in [&get.body, &list.body, &patch.body, &archive.body] {
        let text = body.to_string();
        assert!(!text.contains(secret), "secret leaked: {text}");
        assert!(!text.contains("whsec_"), "secret leaked: {text}");
        assert!(!text.contains("\"secret\""), "secret field present: {text}");
    }
}

#[tokio::test]
async fn create_rejects_target_urls_that_are_not_public_https() {
    let f = Fixture::new().await;
    let long = format!("https://example.com/{}", "a".repeat(2049 - 20));
    assert_eq!(long.len(), 2049);
    let cases: Vec<(&str, &str)> = vec![
        ("http://example.com/hook", "url_not_https"),
        ("ftp://example.com/hook", "url_not_https"),
        ("https://user:pw@example.com/", "url_has_credentials"),
        ("https://user@example.com/", "url_has_credentials"),
        ("https://127.0.0.1/", "url_not_allowed"),
        ("https://10.1.2.3/", "url_not_allowed"),
        ("https://172.16.0.1/", "url_not_allowed"),
        ("https://192.168.1.1/", "url_not_allowed"),
        (
            "https://169.254.169.254/latest/meta-data",
            "url_not_allowed",
        ),
        ("https://100.64.0.1/", "url_not_allowed"),
        ("https://224.0.0.1/", "url_not_allowed"),
        ("https://240.0.0.1/", "url_not_allowed"),
        ("https://0.0.0.0/", "url_not_allowed"),
        ("https://[::1]/", "url_not_allowed"),
        ("https://[fe80::1]/", "url_not_allowed"),
        ("https://[fd00::1]/", "url_not_allowed"),
        ("https://[ff02::1]/", "url_not_allowed"),
        ("https://[::ffff:127.0.0.1]/", "url_not_allowed"),
        ("https://[::ffff:10.0.0.1]/", "url_not_allowed"),
        ("https://2130706433/", "url_not_allowed"),
        ("https://0x7f.1/", "url_not_allowed"),
        ("https://0177.0.0.1/", "url_not_allowed"),
        ("https://localhost/", "url_not_allowed"),
        ("https://LOCALHOST./hook", "url_not_allowed"),
        ("https://api.localhost/", "url_not_allowed"),
        ("https://intranet/", "url_not_allowed"),
        ("not a url", "invalid_url"),
        (&long, "url_too_long"),
    ];
    for (url, code) in cases {
        let r = f
            .call(ApiRequest::new("POST", "/webhooks", "acme").json(&json!({ "url": url })))
            .await;
        assert_eq!(error_of(&r), (400, code, Some("url")), "{url}: {}", r.body);
    }
    let page = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    assert_eq!(page.body["data"], json!([]), "nothing was created");
}

#[tokio::test]
async fn create_rejects_malformed_bodies_with_the_field_named() {
    let f = Fixture::new().await;
    let ids: Vec<String> = (0..1001).map(|i| format!("job-{i}")).collect();
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (json!({}), "missing_field", Some("url")),
        (json!({"url": 42}), "invalid_type", Some("url")),
        (
            json!({"url": "https://example.com", "extra": true}),
            "unknown_field",
            Some("extra"),
        ),
        (
            json!({"url": "https://example.com", "filters": {"job_states": ["failed"]}}),
            "unknown_field",
            Some("filters.job_states"),
        ),
        (
            json!({"url": "https://example.com", "filters": {"states": "failed"}}),
            "invalid_type",
            Some("filters.states"),
        ),
        (
            json!({"url": "https://example.com", "filters": []}),
            "invalid_type",
            Some("filters"),
        ),
        (
            json!({"url": "https://example.com", "filters": {"job_ids": []}}),
            "empty_filter",
            Some("filters.job_ids"),
        ),
        (
            json!({"url": "https://example.com", "filters": {"job_types": []}}),
            "empty_filter",
            Some("filters.job_types"),
        ),
        (
            json!({"url": "https://example.com", "filters": {"states": []}}),
            "empty_filter",
            Some("filters.states"),
        ),
        (
            json!({"url": "https://example.com", "filters": {"job_types": ["forecast", "etl"]}}),
            "unknown_job_type",
            Some("filters.job_types[1]"),
        ),
        (
            json!({"url": "https://example.com", "filters": {"states": ["DONE"]}}),
            "unknown_state",
            Some("filters.states[0]"),
        ),
        (
            json!({"url": "https://example.com", "filters": {"job_ids": ids}}),
            "too_many_job_ids",
            Some("filters.job_ids"),
        ),
        (
            json!({"url": "https://example.com", "description": "d".repeat(1025)}),
            "description_too_long",
            Some("description"),
        ),
        (
            json!({"url": "https://example.com", "description": 7}),
            "invalid_type",
            Some("description"),
        ),
        (json!([1, 2]), "invalid_type", None),
    ];
    for (body, code, field) in cases {
        let r = f
            .call(ApiRequest::new("POST", "/webhooks", "acme").json(&body))
            .await;
        assert_eq!(error_of(&r), (400, code, field), "{body}: {}", r.body);
    }

    let r = f
        .call(
            ApiRequest::new("POST", "/webhooks", "acme")
                .json(&json!({"url": "https://example.com", "filters": {"job_types": ["etl"]}})),
        )
        .await;
    let message = r.body["error"]["message"].as_str().unwrap();
    for t in shared::domain::jobs::JOB_TYPES {
        assert!(message.contains(t.name), "allowed types listed: {message}");
    }
    let r = f
        .call(
            ApiRequest::new("POST", "/webhooks", "acme")
                .json(&json!({"url": "https://example.com", "filters": {"states": ["done"]}})),
        )
        .await;
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pending_cancellation")
    );

    let raw = |body: &str| {
        ApiRequest::new("POST", "/webhooks", "acme")
            .header("content-type", "application/json")
            .raw_body(body.as_bytes().to_vec())
    };
    assert_eq!(
        error_of(&f.call(raw("{\"url\": ")).await).1,
        "malformed_json"
    );
    assert_eq!(error_of(&f.call(raw("")).await).1, "missing_body");
    let big = format!(
        r#"{{"url": "https://example.com", "description": "{}"}}"#,
        "x".repeat(64 * 1024)
    );
    assert_eq!(
        error_of(&f.call(raw(&big)).await),
        (413, "payload_too_large", None)
    );
    let form = ApiRequest::new("POST", "/webhooks", "acme")
        .header("content-type", "application/x-www-form-urlencoded")
        .raw_body(b"url=https://example.com".to_vec());
    assert_eq!(
        error_of(&f.call(form).await),
        (415, "unsupported_media_type", None)
    );

    let page = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    assert_eq!(page.body["data"], json!([]), "nothing was created");
}

#[tokio::test]
async fn the_company_comes_only_from_the_authorizer() {
    let f = Fixture::new().await;
    for req in [
        ApiRequest::anonymous("GET", "/webhooks"),
        ApiRequest::anonymous("GET", "/webhooks").claim("sub", "user-1"),
        ApiRequest::anonymous("GET", "/webhooks").claim("company_id", "   "),
        ApiRequest::anonymous("GET", "/job-types").header("x-company-id", "acme"),
        ApiRequest::anonymous("POST", "/webhooks")
            .json(&json!({"url": "https://example.com", "company_id": "acme"})),
    ] {
        let r = f.call(req).await;
        assert_eq!(error_of(&r), (401, "unauthorized", None), "{}", r.body);
    }

    // A Lambda authorizer's context works too, with string or numeric ids.
    for (value, company) in [(json!("acme"), "acme"), (json!(4711), "4711")] {
        let mut event = ApiRequest::anonymous("POST", "/webhooks")
            .json(&json!({"url": "https://example.com/lambda-auth"}))
            .event();
        event["requestContext"]["authorizer"] = json!({"lambda": {"company_id": value}});
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        let r = f.call_request(req).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["id"].as_str().unwrap();
        assert!(f.store.get(company, id).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn the_company_claim_name_is_configurable() {
    let f = Fixture::with_claim("org").await;
    let r = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    assert_eq!(r.status, 401, "company_id is not the configured claim");
    let r = f
        .call(ApiRequest::anonymous("GET", "/webhooks").claim("org", "acme"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let f = Fixture::new().await;
    let a = f.create_default("acme").await;
    let id = a["id"].as_str().unwrap();
    let missing = f
        .call(ApiRequest::new(
            "GET",
            &format!(
                "/webhooks/{}",
                shared::domain::subscription::new_subscription_id()
            ),
            "globex",
        ))
        .await;
    assert_eq!(error_of(&missing), (404, "not_found", None));
    let foreign = [
        ApiRequest::new("GET", &format!("/webhooks/{id}"), "globex"),
        ApiRequest::new("PATCH", &format!("/webhooks/{id}"), "globex")
            .json(&json!({"description": "mine"})),
        ApiRequest::new("DELETE", &format!("/webhooks/{id}"), "globex"),
        ApiRequest::new("POST", &format!("/webhooks/{id}/rotate-secret"), "globex"),
    ];
    for req in foreign {
        let r = f.call(req).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.body, missing.body, "indistinguishable from a missing id");
    }
    let list = f.call(ApiRequest::new("GET", "/webhooks", "globex")).await;
    assert_eq!(list.body["data"], json!([]));
    let still = f.store.get("acme", id).await.unwrap().unwrap();
    assert_eq!(still.version, 1, "untouched by the other company");
    assert_eq!(
        f.opened(&still, Utc::now()),
        [a["secret"].as_str().unwrap()]
    );
}

#[tokio::test]
async fn unknown_ids_and_routes() {
    let f = Fixture::new().await;
    for path in [
        "/webhooks/nope",
        "/webhooks/idempotency%23key",
        "/webhooks/sub_0",
    ] {
        let r = f.call(ApiRequest::new("GET", path, "acme")).await;
        assert_eq!(error_of(&r), (404, "not_found", None), "{path}");
    }
    let r = f
        .call(ApiRequest::new("GET", "/subscriptions", "acme"))
        .await;
    assert_eq!(error_of(&r), (404, "route_not_found", None));
    let r = f
        .call(ApiRequest::new("PUT", "/webhooks/sub_x", "acme"))
        .await;
    assert_eq!(error_of(&r), (405, "method_not_allowed", None));
    assert_eq!(r.headers["allow"], "GET, PATCH, DELETE");
}

#[tokio::test]
async fn event_types_serve_each_delivered_type_with_its_schema_and_example() {
    let f = Fixture::new().await;
    let r = f.call(ApiRequest::anonymous("GET", "/event-types")).await;
    assert_eq!(
        error_of(&r),
        (401, "unauthorized", None),
        "authorised like the rest"
    );
    let r = f.call(ApiRequest::new("GET", "/event-types", "acme")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let types = r.body["data"].as_array().unwrap();
    let names: Vec<&str> = types.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let catalogued: Vec<&str> = shared::catalogue::event_types()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, catalogued);
    assert_eq!(names[0], "job.pending");
    assert_eq!(names[6], "webhook.test");
    for t in types {
        assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(
            t["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}.", t["group"].as_str().unwrap()))
        );
        assert_eq!(t["deprecated"], false, "{}", t["name"]);
        assert!(t["requires"].is_array(), "{}", t["name"]);
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&t["schema"])
            .unwrap();
        assert!(validator.is_valid(&t["example"]), "{}", t["name"]);
        assert_eq!(t["example"]["type"], t["name"]);
        let data = jsonschema::options()
            .should_validate_formats(true)
            .build(&t["data_schema"])
            .unwrap();
        let examples = t["examples"].as_array().unwrap();
        assert!(!examples.is_empty(), "{}", t["name"]);
        assert!(examples.iter().all(|e| data.is_valid(e)), "{}", t["name"]);
    }
    let app = types.iter().find(|t| t["name"] == "app.installed").unwrap();
    assert_eq!(app["requires"], serde_json::json!(["appid"]));
}

#[tokio::test]
async fn event_types_filter_by_group() {
    let f = Fixture::new().await;
    let r = f
        .call(ApiRequest::new("GET", "/event-types?group=engine", "acme"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("engine.")), "{names:?}");
    let r = f
        .call(ApiRequest::new("GET", "/event-types?group=nope", "acme"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["data"],
        serde_json::json!([]),
        "an unknown group has no types"
    );
    let r = f
        .call(ApiRequest::new("GET", "/event-types?kind=engine", "acme"))
        .await;
    assert_eq!(error_of(&r), (400, "unknown_parameter", Some("kind")));
}

#[tokio::test]
async fn job_types_lists_the_catalogue_and_states() {
    let f = Fixture::new().await;
    let r = f.call(ApiRequest::new("GET", "/job-types", "acme")).await;
    assert_eq!(r.status, 200);
    let types = r.body["data"].as_array().unwrap();
    assert_eq!(types.len(), shared::domain::jobs::JOB_TYPES.len());
    assert_eq!(types[0]["name"], "materialize-view");
    assert_eq!(types[0]["category"], "data_processing");
    assert!(
        types
            .iter()
            .all(|t| t["description"].as_str().is_some_and(|d| !d.is_empty()))
    );
    let states: Vec<&str> = r.body["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "pending",
            "running",
            "completed",
            "pending_cancellation",
            "cancelled",
            "failed"
        ]
    );
}

#[tokio::test]
async fn pagination_walks_every_item_once_newest_first() {
    let f = Fixture::new().await;
    let mut created = Vec::new();
    for i in 0..7 {
        let s = f
            .create(
                "acme",
                json!({"url": format!("https://hooks.example.com/{i}")}),
            )
            .await;
        created.push(s["id"].as_str().unwrap().to_owned());
    }
    f.create_default("globex").await;
    // Archive two so the status filter has something to skip.
    for id in [&created[1], &created[4]] {
        let r = f.archive("acme", id).await;
        assert_eq!(r.status, 200);
    }

    let walk = |status: Option<&'static str>| {
        let f = &f;
        async move {
            let mut seen = Vec::new();
            let mut pages = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut path = String::from("/webhooks?limit=3");
                if let Some(s) = status {
                    path.push_str(&format!("&status={s}"));
                }
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let r = f.call(ApiRequest::new("GET", &path, "acme")).await;
                assert_eq!(r.status, 200, "{}", r.body);
                let data = r.body["data"].as_array().unwrap();
                pages.push(data.len());
                seen.extend(data.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
                match r.body["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return (seen, pages),
                }
            }
        }
    };

    let (all, pages) = walk(None).await;
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(all, newest_first);
    assert_eq!(pages, [3, 3, 1]);

    let (active, pages) = walk(Some("active")).await;
    let expected: Vec<String> = newest_first
        .iter()
        .filter(|id| **id != created[1] && **id != created[4])
        .cloned()
        .collect();
    assert_eq!(active, expected);
    assert_eq!(pages, [3, 2]);
    let (archived, _) = walk(Some("archived")).await;
    assert_eq!(archived, [created[4].clone(), created[1].clone()]);

    // Default page size holds everything here; the last page has no cursor.
    let r = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 7);
    assert_eq!(r.body["next_cursor"], Value::Null);
    let ids: HashSet<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 7);
}

#[tokio::test]
async fn cursors_are_tamper_proof_and_bound_to_company_and_filter() {
    let f = Fixture::new().await;
    for _ in 0..3 {
        f.create_default("acme").await;
        f.create_default("globex").await;
    }
    let first = f
        .call(ApiRequest::new("GET", "/webhooks?limit=1", "acme"))
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let ok = f
        .call(ApiRequest::new(
            "GET",
            &format!("/webhooks?limit=1&cursor={cursor}"),
            "acme",
        ))
        .await;
    assert_eq!(ok.status, 200);

    let (payload, tag) = cursor.split_once('.').unwrap();
    let mut flipped = payload.as_bytes().to_vec();
    flipped[2] = if flipped[2] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
    let bad = [
        ("acme", format!("/webhooks?cursor={tampered}")),
        ("acme", "/webhooks?cursor=garbage".to_owned()),
        ("acme", format!("/webhooks?cursor={payload}")),
        ("globex", format!("/webhooks?limit=1&cursor={cursor}")),
        (
            "acme",
            format!("/webhooks?limit=1&status=active&cursor={cursor}"),
        ),
    ];
    for (company, path) in bad {
        let r = f.call(ApiRequest::new("GET", &path, company)).await;
        assert_eq!(
            error_of(&r),
            (400, "invalid_cursor", Some("cursor")),
            "{company} {path}"
        );
    }
}

#[tokio::test]
async fn list_rejects_bad_parameters() {
    let f = Fixture::new().await;
    f.assert_bad_queries(
        "acme",
        "/webhooks",
        &[
            ("limit=0", "invalid_parameter", "limit"),
            ("limit=101", "invalid_parameter", "limit"),
            ("limit=ten", "invalid_parameter", "limit"),
            ("status=deleted", "invalid_parameter", "status"),
            ("page=2", "unknown_parameter", "page"),
        ],
    )
    .await;
    let r = f
        .call(ApiRequest::new(
            "GET",
            "/webhooks?limit=100&status=archived",
            "acme",
        ))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn idempotent_create_replays_the_original() {
    let f = Fixture::new().await;
    let body = json!({"url": "https://hooks.example.com/idem", "filters": {"states": ["failed"]}});
    let req = || {
        ApiRequest::new("POST", "/webhooks", "acme")
            .header("idempotency-key", "create-1")
            .json(&body)
    };
    let first = f.call(req()).await;
    assert_eq!(first.status, 201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = f.call(req()).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["secret"], first.body["secret"]);

    // Same content, other formatting: still the same request.
    let spaced = ApiRequest::new("POST", "/webhooks", "acme")
        .header("idempotency-key", "create-1")
        .header("content-type", "application/json")
        .raw_body(serde_json::to_vec_pretty(&body).unwrap());
    assert_eq!(f.call(spaced).await.body["id"], first.body["id"]);

    let other = f
        .call(
            ApiRequest::new("POST", "/webhooks", "acme")
                .header("idempotency-key", "create-1")
                .json(&json!({"url": "https://hooks.example.com/other"})),
        )
        .await;
    assert_eq!(
        error_of(&other),
        (422, "idempotency_key_reused", Some("Idempotency-Key"))
    );

    // Keys are per company.
    let globex = f
        .call(
            ApiRequest::new("POST", "/webhooks", "globex")
                .header("idempotency-key", "create-1")
                .json(&body),
        )
        .await;
    assert_eq!(globex.status, 201);
    assert_ne!(globex.body["id"], first.body["id"]);

    let list = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    assert_eq!(
        list.body["data"].as_array().unwrap().len(),
        1,
        "one subscription created"
    );

    for bad in ["", &"k".repeat(256), "has space"] {
        let r = f
            .call(
                ApiRequest::new("POST", "/webhooks", "acme")
                    .header("idempotency-key", bad)
                    .json(&body),
            )
            .await;
        assert_eq!(
            error_of(&r),
            (400, "invalid_idempotency_key", Some("Idempotency-Key")),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_creates_with_one_key_make_one_subscription() {
    let mut f = Fixture::new().await;
    let _proxy = f.serialise_emulator().await;
    let body = json!({"url": "https://hooks.example.com/race"});
    let calls = (0..8).map(|_| {
        f.call(
            ApiRequest::new("POST", "/webhooks", "acme")
                .header("idempotency-key", "race")
                .json(&body),
        )
    });
    let replies = futures::future::join_all(calls).await;
    let ids: HashSet<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let list = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn patch_updates_clears_and_validates() {
    let f = Fixture::new().await;
    let s = f
        .create("acme", json!({"url": "https://hooks.example.com/a", "description": "old", "filters": {"states": ["failed"]}}))
        .await;
    let path = format!("/webhooks/{}", s["id"].as_str().unwrap());
    let r = f
        .call(ApiRequest::new("PATCH", &path, "acme").json(
            &json!({"url": "https://hooks.example.com/b", "filters": {"job_types": ["forecast"]}}),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["url"], "https://hooks.example.com/b");
    assert_eq!(r.body["description"], "old");
    assert_eq!(r.body["filters"], json!({"job_types": ["forecast"]}));
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.headers["etag"], "\"2\"");
    assert!(ts(&r.body["updated_at"]) >= ts(&r.body["created_at"]));

    let r = f
        .call(
            ApiRequest::new("PATCH", &path, "acme")
                .json(&json!({"description": null, "filters": null})),
        )
        .await;
    assert_eq!(r.body["description"], Value::Null);
    assert_eq!(r.body["filters"], json!({}));
    assert_eq!(r.body["version"], 3);

    let unchanged = f
        .call(
            ApiRequest::new("PATCH", &path, "acme")
                .json(&json!({"url": "https://hooks.example.com/b"})),
        )
        .await;
    assert_eq!(unchanged.body["version"], 3, "a no-op patch writes nothing");

    for (body, code, field) in [
        (json!({"url": null}), "invalid_type", "url"),
        (
            json!({"url": "http://hooks.example.com"}),
            "url_not_https",
            "url",
        ),
        (
            json!({"url": "https://192.168.0.10/"}),
            "url_not_allowed",
            "url",
        ),
        (
            json!({"filters": {"states": []}}),
            "empty_filter",
            "filters.states",
        ),
        (json!({"status": "archived"}), "unknown_field", "status"),
        (
            json!({"description": "d".repeat(1025)}),
            "description_too_long",
            "description",
        ),
    ] {
        let r = f
            .call(ApiRequest::new("PATCH", &path, "acme").json(&body))
            .await;
        assert_eq!(error_of(&r), (400, code, Some(field)), "{body}");
    }
    let stored = f
        .store
        .get("acme", s["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 3, "rejected patches wrote nothing");
}

#[tokio::test]
async fn concurrent_patches_never_lose_a_write() {
    let mut f = Fixture::new().await;
    let _proxy = f.serialise_emulator().await;
    let s = f.create_default("acme").await;
    let id = s["id"].as_str().unwrap().to_owned();
    let path = format!("/webhooks/{id}");
    let bodies = [
        json!({"url": "https://hooks.example.com/new"}),
        json!({"description": "renamed-1"}),
        json!({"filters": {"states": ["failed"]}}),
        json!({"description": "renamed-2"}),
    ];
    let replies = futures::future::join_all(
        bodies
            .iter()
            .map(|b| f.call(ApiRequest::new("PATCH", &path, "acme").json(b))),
    )
    .await;
    let mut versions: Vec<u64> = Vec::new();
    for r in &replies {
        assert!(
            r.status == 200 || r.status == 409,
            "{}: {}",
            r.status,
            r.body
        );
        if r.status == 200 {
            versions.push(r.body["version"].as_u64().unwrap());
        }
    }
    let stored = f.store.get("acme", &id).await.unwrap().unwrap();
    // Every successful write got its own version: none overwrote another.
    let mut unique = versions.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), versions.len(), "{versions:?}");
    assert_eq!(stored.version, *unique.last().unwrap());
    if replies.iter().all(|r| r.status == 200) {
        assert_eq!(stored.url, "https://hooks.example.com/new");
        assert!(
            matches!(
                stored.description.as_deref(),
                Some("renamed-1" | "renamed-2")
            ),
            "{:?}",
            stored.description
        );
        assert_eq!(stored.version, 5, "four writes on top of version 1");
        assert_eq!(
            stored.filters.states,
            Some(vec![shared::domain::jobs::JobState::Failed])
        );
    }

    // A client that pins the version it read gets 412 when it is stale.
    let stale = f
        .call(
            ApiRequest::new("PATCH", &path, "acme")
                .header("if-match", "\"1\"")
                .json(&json!({"description": "lost?"})),
        )
        .await;
    assert_eq!(error_of(&stale), (412, "precondition_failed", None));
    let fresh = f
        .call(
            ApiRequest::new("PATCH", &path, "acme")
                .header("if-match", &format!("\"{}\"", stored.version))
                .json(&json!({"description": "pinned"})),
        )
        .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let bad = f
        .call(
            ApiRequest::new("PATCH", &path, "acme")
                .header("if-match", "yesterday")
                .json(&json!({"description": "x"})),
        )
        .await;
    assert_eq!(error_of(&bad), (400, "invalid_if_match", Some("If-Match")));
    let after = f.store.get("acme", &id).await.unwrap().unwrap();
    assert_eq!(after.description.as_deref(), Some("pinned"));
    assert_eq!(after.version, stored.version + 1);
}

#[tokio::test]
async fn archived_subscriptions_are_kept_and_frozen() {
    let f = Fixture::new().await;
    let s = f.create_default("acme").await;
    let id = s["id"].as_str().unwrap();
    let path = format!("/webhooks/{id}");
    let r = f.call(ApiRequest::new("DELETE", &path, "acme")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "archived");
    assert!(r.body["archived_at"].is_string());
    let again = f.call(ApiRequest::new("DELETE", &path, "acme")).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body["version"], r.body["version"],
        "repeat DELETE changes nothing"
    );

    let patch = f
        .call(ApiRequest::new("PATCH", &path, "acme").json(&json!({"description": "x"})))
        .await;
    assert_eq!(error_of(&patch), (409, "subscription_archived", None));
    let rotate = f
        .call(ApiRequest::new(
            "POST",
            &format!("{path}/rotate-secret"),
            "acme",
        ))
        .await;
    assert_eq!(error_of(&rotate), (409, "subscription_archived", None));
    let get = f.call(ApiRequest::new("GET", &path, "acme")).await;
    assert_eq!(get.body["status"], "archived");
    let stored = f.store.get("acme", id).await.unwrap().unwrap();
    assert!(stored.is_archived());
    assert!(f.store.list_receiving("acme").await.unwrap().is_empty());
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_valid_for_the_grace_period() {
    let f = Fixture::new().await;
    let s = f.create_default("acme").await;
    let id = s["id"].as_str().unwrap();
    let old = s["secret"].as_str().unwrap();
    let path = format!("/webhooks/{id}/rotate-secret");

    let before = Utc::now();
    let r = f.call(ApiRequest::new("POST", &path, "acme")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["secret"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(
        r.body["standard_webhooks_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    let expires = ts(&r.body["previous_secret_expires_at"]);
    assert!(
        expires >= before + Duration::hours(24) - Duration::seconds(1)
            && expires <= Utc::now() + Duration::hours(24)
    );

    let stored = f.store.get("acme", id).await.unwrap().unwrap();
    assert_eq!(f.opened(&stored, Utc::now()), [new, old]);
    assert_eq!(
        f.opened(&stored, stored.previous_secret_expires_at.unwrap()),
        [new]
    );
    let get = f
        .call(ApiRequest::new("GET", &format!("/webhooks/{id}"), "acme"))
        .await;
    assert!(get.body["secret"].is_null());
    assert_eq!(
        get.body["previous_secret_expires_at"],
        r.body["previous_secret_expires_at"]
    );

    let r = f
        .call(ApiRequest::new("POST", &path, "acme").json(&json!({"grace_period_seconds": 3600})))
        .await;
    let expires = ts(&r.body["previous_secret_expires_at"]);
    assert!(
        expires <= Utc::now() + Duration::hours(1) && expires > Utc::now() + Duration::minutes(59)
    );

    let r = f
        .call(ApiRequest::new("POST", &path, "acme").json(&json!({"grace_period_seconds": 0})))
        .await;
    assert!(r.body["previous_secret_expires_at"].is_null());
    let stored = f.store.get("acme", id).await.unwrap().unwrap();
    assert_eq!(f.opened(&stored, Utc::now()).len(), 1);

    let r = f
        .call(
            ApiRequest::new("POST", &path, "acme")
                .json(&json!({"grace_period_seconds": 7 * 86400})),
        )
        .await;
    assert_eq!(r.status, 200);
    for body in [
        json!({"grace_period_seconds": 7 * 86400 + 1}),
        json!({"grace_period_seconds": -1}),
    ] {
        let r = f
            .call(ApiRequest::new("POST", &path, "acme").json(&body))
            .await;
        assert_eq!(
            error_of(&r),
            (400, "invalid_grace_period", Some("grace_period_seconds"))
        );
    }
    let r = f
        .call(ApiRequest::new("POST", &path, "acme").json(&json!({"grace": 5})))
        .await;
    assert_eq!(error_of(&r), (400, "unknown_field", Some("grace")));
}

/// Mangles a valid body in one of several ways.
fn mangle(rng: &mut fastrand::Rng, valid: &str) -> Vec<u8> {
    let mut bytes = valid.as_bytes().to_vec();
    match rng.u8(0..6) {
        0 => {
            let at = rng.usize(0..bytes.len());
            bytes.truncate(at);
        }
        1 => {
            for _ in 0..rng.usize(1..8) {
                let at = rng.usize(0..bytes.len());
                bytes[at] = rng.u8(..);
            }
        }
        2 => {
            let at = rng.usize(0..bytes.len());
            let junk = [
                "null",
                "[]",
                "{}",
                "-1",
                "1e999",
                "\"\\u0000\"",
                "true",
                "\u{1F600}",
            ];
            bytes.splice(at..at, junk[rng.usize(0..junk.len())].bytes());
        }
        3 => {
            let value: Value = serde_json::from_str(valid).unwrap();
            let replacements = [
                json!(null),
                json!(0),
                json!(""),
                json!([]),
                json!({}),
                json!("x".repeat(5000)),
                json!([null]),
                json!({"a": [1]}),
            ];
            let mut value = value;
            let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            let key = &keys[rng.usize(0..keys.len())];
            value[key] = replacements[rng.usize(0..replacements.len())].clone();
            bytes = value.to_string().into_bytes();
        }
        4 => bytes = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect(),
        _ => {
            let value: Value = serde_json::from_str(valid).unwrap();
            let mut filters = json!({});
            for kind in ["job_ids", "job_types", "states"] {
                if rng.bool() {
                    let pool = [
                        json!("forecast"),
                        json!("failed"),
                        json!(""),
                        json!(7),
                        json!(null),
                        json!("materialize-view"),
                        json!(["nested"]),
                    ];
                    let list: Vec<Value> = (0..rng.usize(0..4))
                        .map(|_| pool[rng.usize(0..pool.len())].clone())
                        .collect();
                    filters[kind] = json!(list);
                }
            }
            let mut value = value;
            value["filters"] = filters;
            bytes = value.to_string().into_bytes();
        }
    }
    bytes
}

#[tokio::test]
async fn mangled_bodies_never_cause_a_server_error() {
    let f = Fixture::new().await;
    let s = f.create_default("acme").await;
    let id = s["id"].as_str().unwrap();
    let valid = r#"{"url":"https://hooks.example.com/x","description":"d","filters":{"states":["failed"],"job_types":["forecast"],"job_ids":["j1"]}}"#;
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..300 {
        let body = mangle(&mut rng, valid);
        let (method, path) = match i % 3 {
            0 => ("POST", "/webhooks".to_owned()),
            1 => ("PATCH", format!("/webhooks/{id}")),
            _ => ("POST", format!("/webhooks/{id}/rotate-secret")),
        };
        let req = ApiRequest::new(method, &path, "acme")
            .header("content-type", "application/json")
            .raw_body(body.clone());
        let r = f.call(req).await;
        assert!(
            r.status < 500,
            "{method} {path} with {:?} -> {}: {}",
            String::from_utf8_lossy(&body),
            r.status,
            r.body
        );
        if r.status >= 400 {
            assert!(r.body["error"]["code"].is_string(), "{}", r.body);
        }
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 100,
        "{statuses:?}"
    );
}
