//! Every catalogue example, rendered by each built-in format, passes the
//! vendor's checks; the fakes answer like the vendors over HTTP.

use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;
use shared::format::pagerduty::Options;
use shared::format::template::Template;
use shared::format::{Format, FormatKind};

use super::*;
use crate::receiver::Receiver;

/// Every example `data` of every catalogue type, as a whole payload.
fn payloads() -> Vec<(String, Box<RawValue>)> {
    shared::catalogue::event_types()
        .iter()
        .flat_map(|t| t.example_payloads())
        .collect()
}

/// A vendor's check.
type Check = fn(&Value) -> Result<(), Vec<String>>;

fn options() -> Options {
    Options {
        routing_key: "R0UT1NGKEY0000000000000000000000".into(),
        severity: None,
    }
}

/// A typical customer template: a Slack message of their own.
const SLACK_TEMPLATE: &str = r#"{
  "text": {{ ("*" ~ type ~ "* " ~ (data.job_id | default(subject_id | default("")))) | tojson }},
  "blocks": [
    {"type": "section", "text": {"type": "mrkdwn", "text": {{ ("*" ~ type ~ "*" ~ (" — " ~ data.error.message if data.error is mapping and data.error.message else "")) | tojson }}}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": {{ timestamp | tojson }}}]}
  ]
}"#;

fn render(format: &Format, payload: &RawValue) -> Value {
    let body = format.render(payload).unwrap();
    serde_json::from_slice(body.as_bytes()).unwrap()
}

#[test]
fn vendors_accept_every_catalogue_example_in_every_format() {
    let template = Format::Template(Arc::new(Template::compile(SLACK_TEMPLATE).unwrap()));
    let formats: [(Format, Check); 4] = [
        (Format::Slack, slack::check),
        (Format::Teams, teams::check),
        (Format::Pagerduty(options()), pagerduty::check),
        (template, slack::check),
    ];
    let mut checked = 0;
    for (name, payload) in payloads() {
        for (format, check) in &formats {
            let body = render(format, &payload);
            if let Err(errors) = check(&body) {
                panic!("{name} as {format:?}: {errors:?}\n{body:#}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 4 * shared::catalogue::event_types().len());
}

#[test]
fn vendors_accept_hostile_payloads_in_every_format() {
    let long = "<&>é\n".repeat(5000);
    let mut data = serde_json::Map::new();
    for i in 0..40 {
        data.insert(format!("f{i}"), json!(long));
    }
    data.insert("job_id".into(), json!(long));
    data.insert("job_type".into(), json!(long));
    data.insert("state".into(), json!("failed"));
    data.insert("error".into(), json!({"reason": long, "message": long}));
    data.insert(
        "url".into(),
        json!(format!("https://x.example/{}", "a".repeat(2900))),
    );
    for event_type in ["job.failed", "subject.failed", "engine.odd", "webhook.test"] {
        let payload = json!({
            "type": event_type, "timestamp": "not a time", "idempotency_key": long,
            "subscription_id": "sub", "company_id": "co", "source": long,
            "subject_type": long, "subject_id": long, "data": data,
        });
        let raw = RawValue::from_string(payload.to_string()).unwrap();
        for (format, check) in [
            (Format::Slack, slack::check as Check),
            (Format::Teams, teams::check),
            (Format::Pagerduty(options()), pagerduty::check),
        ] {
            let body = render(&format, &raw);
            if let Err(errors) = check(&body) {
                panic!("{event_type} as {format:?}: {errors:?}");
            }
        }
    }
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn example(name: &str) -> Vec<u8> {
    let t = shared::catalogue::find(name).unwrap();
    t.example.get().as_bytes().to_vec()
}

fn rendered(kind: FormatKind, name: &str) -> Vec<u8> {
    let format = match kind {
        FormatKind::Slack => Format::Slack,
        FormatKind::Teams => Format::Teams,
        FormatKind::Pagerduty => Format::Pagerduty(options()),
        other => panic!("{other:?}"),
    };
    let payload = RawValue::from_string(String::from_utf8(example(name)).unwrap()).unwrap();
    format.render(&payload).unwrap().as_bytes().to_vec()
}

#[tokio::test]
async fn vendors_pagerduty_fake_opens_and_resolves_incidents() {
    let receiver = Receiver::http().await;
    let state = PagerDutyState::default();
    receiver.set_handler(pagerduty_handler(state.clone()));
    let url = receiver.url("/v2/enqueue");

    let (status, body) = post(&url, rendered(FormatKind::Pagerduty, "job.failed")).await;
    assert_eq!(status, 202, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "success");
    assert_eq!(answer["message"], "Event processed");
    let key = answer["dedup_key"].as_str().unwrap().to_owned();
    let incident = state.incident(&key).unwrap();
    assert_eq!(incident.status, IncidentStatus::Open);
    assert_eq!(incident.severity, "error");
    assert_eq!(state.open(), vec![key.clone()]);

    let (status, body) = post(&url, rendered(FormatKind::Pagerduty, "job.completed")).await;
    assert_eq!(status, 202, "{body}");
    let incident = state.incident(&key).unwrap();
    assert_eq!(incident.status, IncidentStatus::Resolved);
    assert_eq!((incident.triggers, incident.resolves), (1, 1));
    assert!(state.open().is_empty());

    // Resolving an unknown key is accepted and changes nothing.
    let resolve = json!({"routing_key": "k", "event_action": "resolve", "dedup_key": "nope"});
    let (status, _) = post(&url, resolve.to_string()).await;
    assert_eq!(status, 202);
    assert!(state.incident("nope").is_none());
    assert_eq!(state.incidents().len(), 1);

    let (status, body) = post(&url, r#"{"event_action": "trigger"}"#).await;
    assert_eq!(status, 400);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "invalid event");
    assert!(!answer["errors"].as_array().unwrap().is_empty());
    let (status, _) = post(&url, "not json").await;
    assert_eq!(status, 400);
    assert_eq!(receiver.received().len(), 5);
}

#[tokio::test]
async fn vendors_slack_fake_answers_like_slack() {
    let receiver = Receiver::http().await;
    receiver.set_handler(slack_handler());
    let url = receiver.url("/services/T000/B000/XXXX");
    assert_eq!(
        post(&url, rendered(FormatKind::Slack, "job.failed")).await,
        (200, "ok".to_owned())
    );
    assert_eq!(post(&url, "{}").await, (400, "no_text".to_owned()));
    assert_eq!(
        post(&url, "nope").await,
        (400, "invalid_payload".to_owned())
    );
    let bad = json!({"text": "t", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]});
    assert_eq!(
        post(&url, bad.to_string()).await,
        (400, "invalid_blocks".to_owned())
    );
}

#[tokio::test]
async fn vendors_teams_fake_answers_like_a_workflow() {
    let receiver = Receiver::http().await;
    receiver.set_handler(teams_handler());
    let url = receiver.url("/workflows/abc/triggers/manual/paths/invoke");
    let (status, _) = post(&url, rendered(FormatKind::Teams, "app.run_failed")).await;
    assert_eq!(status, 202);
    let (status, body) = post(&url, r#"{"type": "message", "attachments": []}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("attachments"), "{body}");
}
