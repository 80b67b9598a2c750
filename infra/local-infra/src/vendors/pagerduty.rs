//! PagerDuty Events API v2's rules for the events
//! `https://events.pagerduty.com/v2/enqueue` takes: what the `pagerduty`
//! body format must satisfy.
//!
//! Sources:
//! - <https://developer.pagerduty.com/docs/events-api-v2/trigger-events>
//!   (fields, required ones, severities, limits);
//! - <https://developer.pagerduty.com/docs/events-api-v2/resolve-events>
//!   (acknowledge and resolve: `routing_key`, `event_action`,
//!   `dedup_key`);
//! - <https://developer.pagerduty.com/docs/events-api-v2/overview#response-codes--retry-logic>
//!   (`202` with `status`, `message`, `dedup_key`; `400` with `status`,
//!   `message`, `errors`).

use chrono::DateTime;
use serde_json::Value;

/// The `event_action`s the API takes.
pub const ACTIONS: [&str; 3] = ["trigger", "acknowledge", "resolve"];
/// The severities a trigger may have.
pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// Checks `body` against the Events API v2's rules; every problem found.
pub fn check(body: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let Some(event) = body.as_object() else {
        return Err(vec!["the event is not a JSON object".into()]);
    };
    // routing_key: "Required. The GUID of one of your Events API V2
    // integrations." (32 characters; not checked here.)
    if event
        .get("routing_key")
        .and_then(Value::as_str)
        .is_none_or(|k| k.is_empty())
    {
        errors.push("routing_key: required, a string".into());
    }
    // event_action: "Required. The type of event. Can be trigger,
    // acknowledge or resolve."
    let action = event.get("event_action").and_then(Value::as_str);
    if !action.is_some_and(|a| ACTIONS.contains(&a)) {
        errors.push("event_action: must be trigger, acknowledge or resolve".into());
    }
    // dedup_key: "Deduplication key for correlating triggers and resolves.
    // The maximum permitted length of this property is 255 characters."
    // Required for acknowledge and resolve (resolve-events).
    match event.get("dedup_key") {
        Some(Value::String(k)) if k.chars().count() > 255 => {
            errors.push("dedup_key: over 255 characters".into())
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("dedup_key: not a string".into()),
        None if matches!(action, Some("acknowledge" | "resolve")) => {
            errors.push("dedup_key: required to acknowledge or resolve".into())
        }
        None => {}
    }
    if action == Some("trigger") {
        match event.get("payload").and_then(Value::as_object) {
            Some(payload) => check_payload(payload, &mut errors),
            None => errors.push("payload: required for a trigger".into()),
        }
    }
    // links: "List of links to include", each with `href` (required) and
    // `text`; images: each with `src`.
    if let Some(links) = event.get("links") {
        match links.as_array() {
            Some(links) => {
                for (i, link) in links.iter().enumerate() {
                    if !link.get("href").is_some_and(Value::is_string) {
                        errors.push(format!("links[{i}].href: required, a string"));
                    }
                    if link.get("text").is_some_and(|t| !t.is_string()) {
                        errors.push(format!("links[{i}].text: not a string"));
                    }
                }
            }
            None => errors.push("links: not an array".into()),
        }
    }
    if let Some(images) = event.get("images")
        && !images
            .as_array()
            .is_some_and(|i| i.iter().all(|i| i.get("src").is_some_and(Value::is_string)))
    {
        errors.push("images: an array of objects with `src`".into());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_payload(payload: &serde_json::Map<String, Value>, errors: &mut Vec<String>) {
    let text = |name: &str| payload.get(name).and_then(Value::as_str);
    // payload.summary: "Required. A brief text summary of the event ...
    // The maximum permitted length of this property is 1024 characters."
    match text("summary") {
        Some("") | None => errors.push("payload.summary: required, a string".into()),
        Some(s) if s.chars().count() > 1024 => {
            errors.push("payload.summary: over 1024 characters".into())
        }
        Some(_) => {}
    }
    // payload.source: "Required. The unique location of the affected
    // system, preferably a hostname or FQDN."
    if text("source").is_none_or(str::is_empty) {
        errors.push("payload.source: required, a string".into());
    }
    // payload.severity: "Required. The perceived severity of the status
    // the event is describing ... Can be critical, error, warning or info."
    if !text("severity").is_some_and(|s| SEVERITIES.contains(&s)) {
        errors.push("payload.severity: must be critical, error, warning or info".into());
    }
    // payload.timestamp: "The time at which the emitting tool detected or
    // generated the event" (ISO 8601; we send RFC 3339).
    if let Some(timestamp) = payload.get("timestamp")
        && timestamp
            .as_str()
            .is_none_or(|t| DateTime::parse_from_rfc3339(t).is_err())
    {
        errors.push("payload.timestamp: not an RFC 3339 time".into());
    }
    // payload.component, group, class: strings.
    for name in ["component", "group", "class"] {
        if payload.get(name).is_some_and(|v| !v.is_string()) {
            errors.push(format!("payload.{name}: not a string"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trigger() -> Value {
        json!({
            "routing_key": "R0UT1NGKEY0000000000000000000000",
            "event_action": "trigger",
            "dedup_key": "job/1",
            "payload": {
                "summary": "Job failed", "source": "materialize-view", "severity": "error",
                "timestamp": "2026-11-22T10:00:00.123Z", "component": "ds", "group": "job",
                "class": "job.failed", "custom_details": {"a": 1},
            },
            "links": [{"href": "https://x.example", "text": "Open"}],
        })
    }

    #[test]
    fn vendors_pagerduty_accepts_valid_events() {
        assert_eq!(check(&trigger()), Ok(()));
        let resolve = json!({"routing_key": "k", "event_action": "resolve", "dedup_key": "job/1"});
        assert_eq!(check(&resolve), Ok(()));
        let mut no_key = trigger();
        no_key.as_object_mut().unwrap().remove("dedup_key");
        assert_eq!(check(&no_key), Ok(()));
    }

    #[test]
    fn vendors_pagerduty_refuses_invalid_events() {
        let edits: [(&str, Value); 10] = [
            ("/routing_key", Value::Null),
            ("/event_action", json!("open")),
            ("/dedup_key", json!("k".repeat(256))),
            ("/payload", Value::Null),
            ("/payload/summary", json!("s".repeat(1025))),
            ("/payload/source", json!("")),
            ("/payload/severity", json!("fatal")),
            ("/payload/timestamp", json!("yesterday")),
            ("/payload/class", json!(3)),
            ("/links", json!([{"text": "no href"}])),
        ];
        for (pointer, value) in edits {
            let mut event = trigger();
            *event.pointer_mut(pointer).unwrap() = value;
            assert!(check(&event).is_err(), "{pointer}: {event}");
        }
        let resolve = json!({"routing_key": "k", "event_action": "resolve"});
        assert!(check(&resolve).is_err());
        assert!(check(&json!("trigger")).is_err());
    }
}
