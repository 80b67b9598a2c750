//! Custom headers per subscription against the local AWS emulator: set on
//! create, merged by PATCH, masked on every read, sealed in the table, the
//! reserved names and the 20-header limit refused, and scoped to the
//! company.

use crate::common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{Fixture, Reply, error_of};
use serde_json::{Value, json};
use shared::domain::headers::{MASK, MAX_HEADERS, RESERVED_NAMES};
use shared::domain::subscription::Subscription;
use test_kit::api::ApiRequest;

const URL: &str = "https://hooks.example.com/jobs";
const API_KEY: &str = "key-5f1c0a9e7b3d";
const BASIC: &str = "Basic dXNlcjpjb3JyZWN0LWhvcnNl";

async fn create_with(f: &Fixture, company: &str, headers: Value) -> Reply {
    f.call(
        ApiRequest::new("POST", "/webhooks", company)
            .json(&json!({"url": URL, "headers": headers})),
    )
    .await
}

async fn patch(f: &Fixture, company: &str, id: &str, body: Value) -> Reply {
    f.call(ApiRequest::new("PATCH", &format!("/webhooks/{id}"), company).json(&body))
        .await
}

/// The stored subscription's headers, opened with the stack's keyring.
async fn stored_headers(f: &Fixture, company: &str, id: &str) -> Vec<(String, String)> {
    let sub: Subscription = f.store.get(company, id).await.unwrap().expect("stored");
    sub.header_values(&f.vault.current())
        .expect("the headers open")
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// The raw item, as DynamoDB returns it.
async fn raw_item(f: &Fixture, company: &str, id: &str) -> String {
    let out = test_kit::emulator::dynamodb()
        .await
        .get_item()
        .table_name(&f.config.table)
        .key("company_id", AttributeValue::S(company.into()))
        .key("subscription_id", AttributeValue::S(id.into()))
        .send()
        .await
        .unwrap();
    let item = out.item.expect("the item exists");
    let headers = item["headers"].as_m().expect("a map of sealed values");
    let mut names: Vec<&String> = headers.keys().collect();
    names.sort();
    assert_eq!(names, ["authorization", "x-api-key"]);
    format!("{item:?}")
}

#[tokio::test]
async fn headers_set_on_create_are_masked_on_every_read_and_sealed_in_the_item() {
    let f = Fixture::new().await;
    let r = create_with(
        &f,
        "acme",
        json!({"X-Api-Key": API_KEY, "Authorization": BASIC}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let masked = json!({"authorization": MASK, "x-api-key": MASK});
    assert_eq!(r.body["headers"], masked);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let text = r.body.to_string();
    assert!(!text.contains(API_KEY) && !text.contains(BASIC), "{text}");

    let got = f.get("acme", &format!("/webhooks/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["headers"], masked);
    let listed = f.get("acme", "/webhooks").await;
    assert_eq!(listed.body["data"][0]["headers"], masked);
    for body in [&got.body, &listed.body] {
        let text = body.to_string();
        assert!(!text.contains(API_KEY) && !text.contains(BASIC), "{text}");
    }
    // A subscription without headers shows an empty object.
    let plain = f.create_default("acme").await;
    assert_eq!(plain["headers"], json!({}));

    // The item holds the names and sealed values, never a value in the clear.
    let item = raw_item(&f, "acme", &id).await;
    assert!(!item.contains(API_KEY) && !item.contains(BASIC), "{item}");
    assert!(!item.contains("dXNlcjpjb3JyZWN0LWhvcnNl"), "{item}");
    assert_eq!(
        stored_headers(&f, "acme", &id).await,
        pairs(&[("authorization", BASIC), ("x-api-key", API_KEY)])
    );
}

#[tokio::test]
async fn patch_merges_sets_removes_and_keeps_names_not_mentioned() {
    let f = Fixture::new().await;
    let created = create_with(
        &f,
        "acme",
        json!({"x-api-key": API_KEY, "authorization": BASIC, "x-tenant": "t1"}),
    )
    .await;
    let id = created.body["id"].as_str().unwrap().to_owned();

    let r = patch(
        &f,
        "acme",
        &id,
        json!({"headers": {"X-API-KEY": "key-rotated", "Authorization": null, "x-region": "eu"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["headers"],
        json!({"x-api-key": MASK, "x-region": MASK, "x-tenant": MASK})
    );
    assert_eq!(r.body["version"], 2);
    assert_eq!(
        stored_headers(&f, "acme", &id).await,
        pairs(&[
            ("x-api-key", "key-rotated"),
            ("x-region", "eu"),
            ("x-tenant", "t1")
        ])
    );

    // Other fields leave the headers alone; removing a name that is not
    // there, or an empty change, changes nothing.
    let r = patch(&f, "acme", &id, json!({"description": "d"})).await;
    assert_eq!((r.status, &r.body["version"]), (200, &json!(3)));
    let r = patch(&f, "acme", &id, json!({"headers": {"x-absent": null}})).await;
    assert_eq!((r.status, &r.body["version"]), (200, &json!(3)));
    let r = patch(&f, "acme", &id, json!({"headers": {}})).await;
    assert_eq!((r.status, &r.body["version"]), (200, &json!(3)));
    assert_eq!(stored_headers(&f, "acme", &id).await.len(), 3);

    // `headers: null` removes them all.
    let r = patch(&f, "acme", &id, json!({"headers": null})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["headers"], json!({}));
    assert!(stored_headers(&f, "acme", &id).await.is_empty());
}

#[tokio::test]
async fn every_reserved_name_is_refused_in_any_case_naming_the_header() {
    let f = Fixture::new().await;
    let id = f.create_id("acme").await;
    let mut names: Vec<String> = RESERVED_NAMES.iter().map(|n| (*n).to_owned()).collect();
    names.extend(
        [
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "webhook-x",
        ]
        .map(String::from),
    );
    for name in &names {
        let title: String = name
            .split('-')
            .map(|p| p[..1].to_uppercase() + &p[1..])
            .collect::<Vec<_>>()
            .join("-");
        for sent in [name.clone(), name.to_uppercase(), title] {
            let field = format!("headers.{name}");
            let r = create_with(&f, "acme", json!({"x-ok": "v", sent.clone(): "v"})).await;
            assert_eq!(
                error_of(&r),
                (400, "reserved_header", Some(field.as_str())),
                "create {sent}"
            );
            assert!(
                r.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(name.as_str()),
                "{}",
                r.body
            );
            for value in [json!("v"), Value::Null] {
                let r = patch(&f, "acme", &id, json!({"headers": {sent.clone(): value}})).await;
                assert_eq!(
                    error_of(&r),
                    (400, "reserved_header", Some(field.as_str())),
                    "patch {sent}"
                );
            }
        }
    }
    let listed = f.get("acme", "/webhooks").await;
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        1,
        "nothing created"
    );
    assert_eq!(listed.body["data"][0]["version"], 1, "nothing changed");
    // Authorization is allowed, and so are names that only contain a
    // reserved one.
    let r = create_with(
        &f,
        "acme",
        json!({"Authorization": BASIC, "x-webhook-id": "v", "hosts": "v"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn more_than_twenty_headers_are_refused_on_create_and_after_a_patch_merge() {
    let f = Fixture::new().await;
    let many = |n: usize, prefix: &str| -> Value {
        (0..n)
            .map(|i| (format!("{prefix}{i}"), json!("v")))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let r = create_with(&f, "acme", many(MAX_HEADERS + 1, "x-h")).await;
    assert_eq!(error_of(&r), (400, "too_many_headers", Some("headers")));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 20"),
        "{}",
        r.body
    );
    let full = create_with(&f, "acme", many(MAX_HEADERS, "x-h")).await;
    assert_eq!(full.status, 201, "{}", full.body);
    let id = full.body["id"].as_str().unwrap().to_owned();

    // One more, merged: 21.
    let r = patch(&f, "acme", &id, json!({"headers": {"x-one-more": "v"}})).await;
    assert_eq!(error_of(&r), (422, "too_many_headers", Some("headers")));
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains("21"),
        "{}",
        r.body
    );
    let r = patch(
        &f,
        "acme",
        &id,
        json!({"headers": many(MAX_HEADERS + 1, "x-new")}),
    )
    .await;
    assert_eq!(error_of(&r), (400, "too_many_headers", Some("headers")));
    assert_eq!(stored_headers(&f, "acme", &id).await.len(), MAX_HEADERS);
    assert_eq!(
        f.get("acme", &format!("/webhooks/{id}")).await.body["version"],
        1
    );

    // Replacing one and removing one to make room stays within the limit.
    let r = patch(
        &f,
        "acme",
        &id,
        json!({"headers": {"x-h0": "new", "x-h1": null, "x-one-more": "v"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["headers"].as_object().unwrap().len(), MAX_HEADERS);
}

#[tokio::test]
async fn invalid_names_and_values_are_refused_naming_the_header_without_its_value() {
    let f = Fixture::new().await;
    let id = f.create_id("acme").await;
    let long_name = "x".repeat(65);
    let long_value = "v".repeat(1025);
    let cases: Vec<(Value, u16, &str, String)> = vec![
        (
            json!({"x y": "v"}),
            400,
            "invalid_header_name",
            "headers.x y".into(),
        ),
        (
            json!({"x:y": "v"}),
            400,
            "invalid_header_name",
            "headers.x:y".into(),
        ),
        (
            json!({"": "v"}),
            400,
            "invalid_header_name",
            "headers.".into(),
        ),
        (
            json!({"é": "v"}),
            400,
            "invalid_header_name",
            "headers.é".into(),
        ),
        (
            json!({long_name.clone(): "v"}),
            400,
            "invalid_header_name",
            format!("headers.{long_name}"),
        ),
        (
            json!({"X-Key": "secret-a\r\nx-injected: 1"}),
            400,
            "invalid_header_value",
            "headers.x-key".into(),
        ),
        (
            json!({"x-key": "secret-b\u{7}"}),
            400,
            "invalid_header_value",
            "headers.x-key".into(),
        ),
        (
            json!({"x-key": "sécret-c"}),
            400,
            "invalid_header_value",
            "headers.x-key".into(),
        ),
        (
            json!({"x-key": long_value}),
            400,
            "invalid_header_value",
            "headers.x-key".into(),
        ),
        (
            json!({"x-key": 5}),
            400,
            "invalid_type",
            "headers.x-key".into(),
        ),
        (
            json!({"X-Key": "secret-d", "x-key": "secret-e"}),
            422,
            "duplicate_header",
            "headers.x-key".into(),
        ),
    ];
    for (headers, status, code, field) in cases {
        let r = create_with(&f, "acme", headers.clone()).await;
        assert_eq!(
            error_of(&r),
            (status, code, Some(field.as_str())),
            "create {headers}"
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("secret-"), "{message}");
        let r = patch(&f, "acme", &id, json!({"headers": headers})).await;
        assert_eq!(
            error_of(&r),
            (status, code, Some(field.as_str())),
            "patch {headers}"
        );
    }
    // On create, a value can't be null.
    let r = create_with(&f, "acme", json!({"x-key": null})).await;
    assert_eq!(error_of(&r), (400, "invalid_type", Some("headers.x-key")));
    assert_eq!(
        f.get("acme", "/webhooks").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn another_company_can_neither_see_nor_patch_the_headers() {
    let f = Fixture::new().await;
    let created = create_with(&f, "acme", json!({"x-api-key": API_KEY})).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/webhooks/{id}");
    assert_eq!(
        error_of(&f.get("globex", &path).await),
        (404, "not_found", None)
    );
    let r = patch(
        &f,
        "globex",
        &id,
        json!({"headers": {"x-api-key": "stolen", "x-more": "v"}}),
    )
    .await;
    assert_eq!(error_of(&r), (404, "not_found", None));
    let r = patch(&f, "globex", &id, json!({"headers": null})).await;
    assert_eq!(error_of(&r), (404, "not_found", None));
    let listed = f.get("globex", "/webhooks").await;
    assert_eq!(listed.body["data"], json!([]));
    assert_eq!(
        stored_headers(&f, "acme", &id).await,
        pairs(&[("x-api-key", API_KEY)])
    );
    assert_eq!(f.get("acme", &path).await.body["version"], 1);
}

#[tokio::test]
async fn an_idempotent_retry_replays_and_the_stored_fingerprint_holds_no_value() {
    let f = Fixture::new().await;
    let request = |value: &str| {
        ApiRequest::new("POST", "/webhooks", "acme")
            .header("idempotency-key", "headers-1")
            .json(&json!({"url": URL, "headers": {"x-api-key": value}}))
    };
    let first = f.call(request(API_KEY)).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = f.call(request(API_KEY)).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["headers"], json!({"x-api-key": MASK}));
    // Values are left out of the comparison (documented): a retry that
    // changes only a value replays the first request.
    let changed = f.call(request("other")).await;
    assert_eq!(changed.body["id"], first.body["id"]);
    // Nothing in the company's partition holds the value.
    let out = test_kit::emulator::dynamodb()
        .await
        .query()
        .table_name(&f.config.table)
        .key_condition_expression("company_id = :c")
        .expression_attribute_values(":c", AttributeValue::S("acme".into()))
        .send()
        .await
        .unwrap();
    let items = format!("{:?}", out.items.unwrap());
    assert!(items.contains("idempotency#"), "{items}");
    assert!(!items.contains(API_KEY), "{items}");
    // Not even the hash of a body that holds it.
    use sha2::Digest;
    let body = json!({"url": URL, "headers": {"x-api-key": API_KEY}});
    let digest = sha2::Sha256::digest(serde_json::to_vec(&body).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!items.contains(&hex), "the fingerprint hashes the value");
    let masked = json!({"url": URL, "headers": {"x-api-key": MASK}});
    let digest = sha2::Sha256::digest(serde_json::to_vec(&masked).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        items.contains(&hex),
        "the fingerprint is of the masked body"
    );
}
