//! Every catalogue event type's example, in every format. The vendors'
//! contract checks of the same renderings are in `local-infra`'s
//! `vendors` module (they run with the fakes).

use serde_json::Value;
use serde_json::value::RawValue;

use super::*;

/// Every example `data` of every catalogue type, as a whole payload.
fn payloads() -> Vec<(String, Box<RawValue>)> {
    crate::catalogue::event_types()
        .iter()
        .flat_map(|t| t.example_payloads())
        .collect()
}

fn formats() -> Vec<Format> {
    vec![
        Format::Standard,
        Format::Slack,
        Format::Teams,
        Format::Pagerduty(pagerduty::Options {
            routing_key: "R0UT1NGKEY0000000000000000000000".into(),
            severity: None,
        }),
        Format::Template(Arc::new(
            template::Template::compile(
                r#"{"text": {{ (type ~ " " ~ (data.job_id | default(""))) | tojson }}, "data": {{ data | tojson }}}"#,
            )
            .unwrap(),
        )),
    ]
}

#[test]
fn format_every_example_renders_in_every_format() {
    let formats = formats();
    for (name, payload) in payloads() {
        for format in &formats {
            let body = format
                .render(&payload)
                .unwrap_or_else(|e| panic!("{name} as {format:?}: {e}"));
            let value: Value = serde_json::from_slice(body.as_bytes())
                .unwrap_or_else(|e| panic!("{name} as {format:?}: {e}"));
            match format.kind() {
                FormatKind::Standard => assert_eq!(body.as_bytes(), payload.get().as_bytes()),
                FormatKind::Slack => {
                    assert!(
                        value["text"].as_str().is_some_and(|t| !t.is_empty()),
                        "{name}"
                    );
                    assert_eq!(value["blocks"][0]["type"], "header", "{name}");
                }
                FormatKind::Teams => {
                    assert_eq!(value["type"], "message", "{name}");
                    assert_eq!(value["attachments"][0]["content"]["type"], "AdaptiveCard");
                }
                FormatKind::Pagerduty => {
                    assert!(
                        value["dedup_key"].as_str().is_some_and(|k| !k.is_empty()),
                        "{name}"
                    );
                    let action = value["event_action"].as_str().unwrap();
                    assert!(matches!(action, "trigger" | "resolve"), "{name}");
                    if action == "trigger" {
                        assert!(value["payload"]["summary"].is_string(), "{name}");
                    }
                }
                FormatKind::Template => assert!(value["text"].is_string(), "{name}"),
            }
        }
    }
}

#[test]
fn format_render_refuses_payloads_that_are_not_objects() {
    let raw = RawValue::from_string("[]".into()).unwrap();
    for format in formats() {
        let r = format.render(&raw);
        if format.kind() == FormatKind::Standard {
            assert!(r.is_ok());
        } else {
            assert!(matches!(r, Err(RenderError::Payload(_))), "{format:?}");
        }
    }
}
