//! Body formats through the API against the local AWS emulator: set on
//! create and PATCH, the PagerDuty routing key sealed in the item and
//! masked on every read, fields of another format and unknown formats
//! refused, a template refused when it fails on the catalogue's example of
//! an event type the subscription can receive (on create, and on a PATCH
//! of its filters), and `POST /webhooks/preview`.

use crate::common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{Fixture, Reply, error_of};
use serde_json::{Value, json};
use shared::domain::headers::MASK;
use shared::domain::subscription::Subscription;
use shared::format::Format;
use test_kit::api::ApiRequest;

const URL: &str = "https://events.example.com/v2/enqueue";
const ROUTING_KEY: &str = "R0ut1ngKeyOfThePagerDutyService";

async fn create(f: &Fixture, body: Value) -> Reply {
    f.call(ApiRequest::new("POST", "/webhooks", "acme").json(&body))
        .await
}

async fn patch(f: &Fixture, id: &str, body: Value) -> Reply {
    f.call(ApiRequest::new("PATCH", &format!("/webhooks/{id}"), "acme").json(&body))
        .await
}

async fn preview(f: &Fixture, body: Value) -> Reply {
    f.call(ApiRequest::new("POST", "/webhooks/preview", "acme").json(&body))
        .await
}

/// The stored subscription's format, opened with the stack's keyring.
async fn opened_format(f: &Fixture, id: &str) -> Format {
    let sub: Subscription = f.store.get("acme", id).await.unwrap().expect("stored");
    sub.open_format(&f.vault.current())
        .expect("the format opens")
}

/// The raw item, as DynamoDB returns it.
async fn raw_item(f: &Fixture, id: &str) -> String {
    let out = test_kit::emulator::dynamodb()
        .await
        .get_item()
        .table_name(&f.config.table)
        .key("company_id", AttributeValue::S("acme".into()))
        .key("subscription_id", AttributeValue::S(id.into()))
        .send()
        .await
        .unwrap();
    format!("{:?}", out.item.expect("the item exists"))
}

fn routing_key_of(format: &Format) -> Option<&str> {
    match format {
        Format::Pagerduty(options) => Some(&options.routing_key),
        _ => None,
    }
}

#[tokio::test]
async fn a_routing_key_is_sealed_masked_on_every_read_and_kept_by_a_patch_without_one() {
    let f = Fixture::new().await;
    let r = create(
        &f,
        json!({"url": URL, "format": {"type": "pagerduty", "routing_key": ROUTING_KEY}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["format"],
        json!({"type": "pagerduty", "routing_key": MASK})
    );
    assert!(!r.body.to_string().contains(ROUTING_KEY));
    let id = r.body["id"].as_str().unwrap().to_owned();
    let item = raw_item(&f, &id).await;
    assert!(
        !item.contains(ROUTING_KEY),
        "the key is in the clear: {item}"
    );
    assert_eq!(
        routing_key_of(&opened_format(&f, &id).await),
        Some(ROUTING_KEY)
    );

    let read = f
        .call(ApiRequest::new("GET", &format!("/webhooks/{id}"), "acme"))
        .await;
    assert_eq!(read.body["format"]["routing_key"], MASK);
    let listed = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    assert!(!listed.body.to_string().contains(ROUTING_KEY));

    // A new severity, no key: the key stays.
    let r = patch(
        &f,
        &id,
        json!({"format": {"type": "pagerduty", "severity": "critical"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["format"],
        json!({"type": "pagerduty", "routing_key": MASK, "severity": "critical"})
    );
    assert_eq!(
        routing_key_of(&opened_format(&f, &id).await),
        Some(ROUTING_KEY)
    );

    // Back to standard, and then PagerDuty again needs a key.
    let r = patch(&f, &id, json!({"format": null})).await;
    assert_eq!(r.body["format"], json!({"type": "standard"}), "{}", r.body);
    assert!(matches!(opened_format(&f, &id).await, Format::Standard));
    let r = patch(&f, &id, json!({"format": {"type": "pagerduty"}})).await;
    assert_eq!(
        error_of(&r),
        (400, "invalid_format", Some("format.routing_key"))
    );
}

#[tokio::test]
async fn unknown_formats_missing_fields_and_fields_of_another_format_are_refused() {
    let f = Fixture::new().await;
    for (format, field) in [
        (json!({"type": "fax"}), "format.type"),
        (json!({"type": "pagerduty"}), "format.routing_key"),
        (
            json!({"type": "pagerduty", "routing_key": "has space"}),
            "format.routing_key",
        ),
        (
            json!({"type": "pagerduty", "routing_key": ROUTING_KEY, "severity": "loud"}),
            "format.severity",
        ),
        (
            json!({"type": "slack", "routing_key": ROUTING_KEY}),
            "format.routing_key",
        ),
        (
            json!({"type": "teams", "template": "{}"}),
            "format.template",
        ),
        (json!({"type": "template"}), "format.template"),
    ] {
        let r = create(&f, json!({"url": URL, "format": format})).await;
        assert_eq!(
            error_of(&r),
            (400, "invalid_format", Some(field)),
            "{format}"
        );
    }
    // Well-formed, but not a template: 422.
    let r = create(
        &f,
        json!({"url": URL, "format": {"type": "template", "template": "{% if %}"}}),
    )
    .await;
    assert_eq!(
        error_of(&r),
        (422, "template_invalid", Some("format.template"))
    );
    let r = create(&f, json!({"url": URL, "format": {"type": "slack", "x": 1}})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let listed = f.call(ApiRequest::new("GET", "/webhooks", "acme")).await;
    assert_eq!(listed.body["data"], json!([]), "nothing was created");
}

/// JSON for a failed job only.
const FAILED_ONLY: &str = r#"{% if type == "job.failed" %}{"failed": {{ data.job_id|tojson }}}{% else %}not json{% endif %}"#;

#[tokio::test]
async fn a_template_must_render_every_event_type_the_subscription_can_receive() {
    let f = Fixture::new().await;
    let template = json!({"type": "template", "template": FAILED_ONLY});
    // Every state: it fails on the first other one.
    let r = create(&f, json!({"url": URL, "format": template})).await;
    let (status, code, field) = error_of(&r);
    assert_eq!(
        (status, code, field),
        (422, "template_fails", Some("format.template"))
    );
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("job.pending"), "{message}");

    // Failed jobs only, and the test event: that one fails too.
    let r = create(
        &f,
        json!({"url": URL, "format": template, "filters": {"states": ["failed"]}}),
    )
    .await;
    assert_eq!(error_of(&r).1, "template_fails");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("webhook.test")
    );

    let both = r#"{% if type == "job.failed" %}{"failed": {{ data.job_id|tojson }}}{% else %}{"other": {{ type|tojson }}}{% endif %}"#;
    let r = create(
        &f,
        json!({"url": URL, "filters": {"states": ["failed"]},
               "format": {"type": "template", "template": FAILED_ONLY.replace("not json", "{}")}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["format"]["type"], "template");
    assert!(
        r.body["format"]["template"]
            .as_str()
            .unwrap()
            .contains("job.failed")
    );

    // A template kept while the filters change is checked again.
    let r = patch(
        &f,
        &id,
        json!({"format": {"type": "template", "template": FAILED_ONLY}}),
    )
    .await;
    assert_eq!(error_of(&r).1, "template_fails");
    let r = patch(
        &f,
        &id,
        json!({"format": {"type": "template", "template": both}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = patch(
        &f,
        &id,
        json!({"filters": {"states": ["failed", "completed"]}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn preview_renders_a_format_against_the_catalogue_example() {
    let f = Fixture::new().await;
    let r = preview(
        &f,
        json!({"format": {"type": "slack"}, "event_type": "job.failed"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["format"], "slack");
    assert_eq!(r.body["content_type"], "application/json");
    assert!(r.body["body"]["blocks"].is_array(), "{}", r.body);
    assert!(r.body["body"]["text"].is_string(), "{}", r.body);

    let r = preview(
        &f,
        json!({"format": {"type": "pagerduty", "routing_key": ROUTING_KEY}, "event_type": "job.failed"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["body"]["event_action"], "trigger");
    assert_eq!(r.body["body"]["routing_key"], MASK);
    assert!(!r.body.to_string().contains(ROUTING_KEY));

    let r = preview(
        &f,
        json!({"format": {"type": "template", "template": r#"{"t": {{ type|tojson }}, "job": {{ data.job_id|tojson }}}"#},
               "event_type": "job.completed"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let example = shared::catalogue::find("job.completed")
        .unwrap()
        .example_value();
    assert_eq!(
        r.body["body"],
        json!({"t": "job.completed", "job": example["data"]["job_id"]})
    );

    let r = preview(
        &f,
        json!({"format": {"type": "template", "template": FAILED_ONLY}, "event_type": "job.running"}),
    )
    .await;
    assert_eq!(error_of(&r), (422, "template_not_json", Some("format")));
    let r = preview(
        &f,
        json!({"format": {"type": "standard"}, "event_type": "job.exploded"}),
    )
    .await;
    assert_eq!(
        error_of(&r),
        (400, "unknown_event_type", Some("event_type"))
    );
    // The standard format previews the example itself.
    let r = preview(
        &f,
        json!({"format": {"type": "standard"}, "event_type": "engine.slow_query_event"}),
    )
    .await;
    let example = shared::catalogue::find("engine.slow_query_event")
        .unwrap()
        .example_value();
    assert_eq!(r.body["body"], example);
}
