//! PagerDuty: an Events API v2 event per event, POSTed to
//! `https://events.pagerduty.com/v2/enqueue`.
//!
//! Contract (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events>,
//! <https://developer.pagerduty.com/docs/events-api-v2/resolve-events>):
//! every event has `routing_key`, `event_action` (`trigger`,
//! `acknowledge` or `resolve`) and a `dedup_key` of at most 255
//! characters; a trigger also has a `payload` with `summary` (at most
//! 1024 characters), `source` and `severity` (`critical`, `error`,
//! `warning` or `info`), and optionally `timestamp` (RFC 3339),
//! `component`, `group`, `class`, `custom_details`, plus `links`. A
//! resolve needs only the first three.
//!
//! What each event becomes:
//!
//! | event                                                   | action    | severity (default)     |
//! |---------------------------------------------------------|-----------|------------------------|
//! | `job.failed`                                            | trigger   | error                  |
//! | `job.completed`                                         | resolve   | –                      |
//! | `job.cancelled`                                         | trigger   | warning                |
//! | other job states (sent only when the filters ask)       | trigger   | info                   |
//! | platform, verb or type ending in `failed` / `_failed`   | trigger   | error                  |
//! | platform, `completed`, `run_completed`, `synccomplete`, `synced` (verb or type's last part; also any `*_completed`) | resolve | – |
//! | `engine.slow_*`                                         | trigger   | warning                |
//! | other platform events                                   | trigger   | info                   |
//! | `webhook.test`                                          | trigger   | info                   |
//!
//! A subscription's `severity` ([`Options::severity`]) replaces the
//! default severity of every trigger.
//!
//! The dedup key (what ties a trigger to its later resolve):
//! - job events: `job/<job_id>`: every event of one job shares it, so a
//!   `completed` resolves the incident a `failed` of the same job opened
//!   (a retried job that fails again re-triggers it);
//! - platform events: `<source>/<subject_type>/<subject_id>` when the
//!   event has a subject (`subject.synced` resolves `subject.failed` of
//!   the same subject), else `<source>/app/<app_id>` (a completed run of
//!   an app resolves its failed run), else the idempotency key;
//! - `webhook.test`: its idempotency key (each test is its own alert).
//!
//! A key longer than 255 characters is replaced by its kind and the
//! SHA-256 of the whole key (`job/sha256:<hex>`), still stable.
//!
//! A trigger's `payload`: `summary` (title, subject, state change and
//! failure, cut to 1024 characters), `source` (the job type; the event's
//! `source` or app; `webhooks` for the test), `severity`, `timestamp`
//! (the event's time, when RFC 3339), `component` (the job's resource,
//! or the subject or app), `group` (the event's group: `job`, `app`...),
//! `class` (the event type) and `custom_details` (the `data` object;
//! when its JSON is larger than [`MAX_DETAILS_BYTES`], its scalar fields
//! only, each cut, with `"truncated": true`).

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::EventView;
use super::event::{Outcome, truncate};

/// A PagerDuty severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// `critical`.
    Critical,
    /// `error`.
    Error,
    /// `warning`.
    Warning,
    /// `info`.
    Info,
}

impl Severity {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }

    /// The severity named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Critical, Self::Error, Self::Warning, Self::Info]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A subscription's PagerDuty settings, opened.
#[derive(Clone, PartialEq, Eq)]
pub struct Options {
    /// The integration's routing key (a secret).
    pub routing_key: String,
    /// The severity of every trigger, instead of the default.
    pub severity: Option<Severity>,
}

impl std::fmt::Debug for Options {
    // Never the routing key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("severity", &self.severity)
            .finish_non_exhaustive()
    }
}

/// The Events API v2 `event_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Opens (or adds to) the alert of the dedup key.
    Trigger,
    /// Resolves the alert of the dedup key.
    Resolve,
}

impl Action {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Trigger => "trigger",
            Self::Resolve => "resolve",
        }
    }
}

/// Longest dedup key, in characters.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
/// Longest summary, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// Largest `custom_details` sent whole (the `data` object's JSON), in
/// bytes; PagerDuty takes events up to 512 KB.
pub const MAX_DETAILS_BYTES: usize = 32 * 1024;
/// A string's length in shortened `custom_details`, in characters.
const DETAIL_CHARS: usize = 1024;

/// The severity a trigger of `event_type` gets by default: `error` for
/// `job.failed` and any type ending in `failed` (`app.run_failed`,
/// `subject.failed`), `warning` for `job.cancelled` and `engine.slow_*`,
/// `info` otherwise.
pub fn default_severity(event_type: &str) -> Severity {
    let action = event_type.split_once('.').map_or(event_type, |(_, a)| a);
    if action == "failed" || action.ends_with("_failed") {
        Severity::Error
    } else if event_type == "job.cancelled" || event_type.starts_with("engine.slow_") {
        Severity::Warning
    } else {
        Severity::Info
    }
}

/// What `event` does to an incident: a completion resolves, anything
/// else triggers.
pub fn action(event: &EventView) -> Action {
    match event.outcome() {
        Outcome::Completed => Action::Resolve,
        Outcome::Failed | Outcome::Other => Action::Trigger,
    }
}

/// The severity of `event`'s trigger: the subscription's, else the
/// type's default ([`default_severity`]), raised to `error` for a
/// platform event whose verb says it failed.
pub fn severity(event: &EventView, options: &Options) -> Severity {
    if let Some(severity) = options.severity {
        return severity;
    }
    match default_severity(event.event_type()) {
        Severity::Info | Severity::Warning if event.outcome() == Outcome::Failed => Severity::Error,
        severity => severity,
    }
}

/// The dedup key of `event` (see the [module](self) documentation).
pub fn dedup_key(event: &EventView) -> String {
    let idempotency = || event.idempotency_key().unwrap_or("").to_owned();
    if event.is_test() {
        return bounded("test", idempotency());
    }
    if event.is_job() {
        return match event.job_id() {
            Some(job_id) => bounded("job", format!("job/{job_id}")),
            None => bounded("event", idempotency()),
        };
    }
    let source = event.str("source").unwrap_or("platform");
    let subject_type = event.str("subject_type");
    let subject_id = event.str("subject_id");
    if let Some(subject_id) = subject_id {
        let subject_type = subject_type.unwrap_or("subject");
        return bounded("subject", format!("{source}/{subject_type}/{subject_id}"));
    }
    if let Some(app_id) = event.str("app_id") {
        return bounded("app", format!("{source}/app/{app_id}"));
    }
    bounded("event", idempotency())
}

/// `key`, or when longer than the limit, `<kind>/sha256:<hex>` of it.
fn bounded(kind: &str, key: String) -> String {
    if key.chars().count() <= MAX_DEDUP_KEY_CHARS {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("{kind}/sha256:{hex}")
}

/// The Events API v2 event for `event`.
pub fn event(event: &EventView, options: &Options) -> Value {
    let dedup_key = dedup_key(event);
    let action = action(event);
    if action == Action::Resolve {
        return json!({
            "routing_key": options.routing_key,
            "event_action": action.as_str(),
            "dedup_key": dedup_key,
        });
    }
    let mut payload = Map::new();
    payload.insert("summary".into(), summary(event).into());
    payload.insert("source".into(), source(event).into());
    payload.insert("severity".into(), severity(event, options).as_str().into());
    if let Some(time) = event
        .time()
        .filter(|t| DateTime::parse_from_rfc3339(t).is_ok())
    {
        payload.insert("timestamp".into(), time.into());
    }
    let component = if event.is_job() {
        event.resource()
    } else {
        event.subject()
    };
    if let Some(component) = component {
        payload.insert("component".into(), truncate(&component, 255).into());
    }
    if !event.group().is_empty() {
        payload.insert("group".into(), truncate(event.group(), 255).into());
    }
    if !event.event_type().is_empty() {
        payload.insert("class".into(), truncate(event.event_type(), 255).into());
    }
    payload.insert("custom_details".into(), custom_details(event.data()));
    let mut body = json!({
        "routing_key": options.routing_key,
        "event_action": action.as_str(),
        "dedup_key": dedup_key,
        "payload": payload,
    });
    if let Some(link) = event.link() {
        body["links"] = json!([{ "href": link, "text": "Open" }]);
    }
    body
}

/// `Job failed: job_01 (materialize-view) running → failed: PLANNING_FAILED: column …`
fn summary(event: &EventView) -> String {
    let mut summary = event.title();
    if let Some(subject) = event.subject() {
        summary.push_str(": ");
        summary.push_str(&subject);
    }
    if let Some(change) = event.is_job().then(|| event.state_change()).flatten() {
        summary.push(' ');
        summary.push_str(&change);
    }
    if let Some(failure) = event.failure() {
        for part in [failure.reason, failure.message].into_iter().flatten() {
            summary.push_str(": ");
            summary.push_str(part);
        }
    }
    truncate(&summary, MAX_SUMMARY_CHARS)
}

/// The payload's `source`: the job type, the event's `source` or app,
/// `webhooks` for the test event.
fn source(event: &EventView) -> String {
    let source = if event.is_test() {
        None
    } else if event.is_job() {
        event.job_type()
    } else {
        event.str("source").or_else(|| event.app_id())
    };
    truncate(source.filter(|s| !s.is_empty()).unwrap_or("webhooks"), 255)
}

/// The `data` object, or its shortened form when large.
fn custom_details(data: &Value) -> Value {
    let size = serde_json::to_vec(data).map_or(usize::MAX, |v| v.len());
    if size <= MAX_DETAILS_BYTES {
        return data.clone();
    }
    let mut details = Map::new();
    let mut budget = MAX_DETAILS_BYTES;
    if let Some(object) = data.as_object() {
        for (k, v) in object {
            let v = match v {
                Value::String(s) => Value::String(truncate(s, DETAIL_CHARS)),
                Value::Number(_) | Value::Bool(_) | Value::Null => v.clone(),
                _ => continue,
            };
            let k = truncate(k, 256);
            let cost = k.len() + v.to_string().len() + 4;
            if cost > budget {
                break;
            }
            budget -= cost;
            details.insert(k, v);
        }
    }
    details.insert("truncated".into(), true.into());
    Value::Object(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            routing_key: "R0UT1NGKEY0000000000000000000000".into(),
            severity: None,
        }
    }

    fn example(name: &str) -> EventView {
        let t = crate::catalogue::find(name).unwrap();
        EventView::parse(&t.example).unwrap()
    }

    #[test]
    fn format_pagerduty_default_severities() {
        assert_eq!(default_severity("job.failed"), Severity::Error);
        assert_eq!(default_severity("job.cancelled"), Severity::Warning);
        assert_eq!(default_severity("job.running"), Severity::Info);
        assert_eq!(default_severity("app.run_failed"), Severity::Error);
        assert_eq!(default_severity("subject.failed"), Severity::Error);
        assert_eq!(
            default_severity("engine.slow_query_event"),
            Severity::Warning
        );
        assert_eq!(
            default_severity("engine.slow_agg_builds"),
            Severity::Warning
        );
        assert_eq!(default_severity("app.installed"), Severity::Info);
        assert_eq!(default_severity("webhook.test"), Severity::Info);
    }

    #[test]
    fn format_pagerduty_failed_then_completed_share_the_dedup_key() {
        let failed = event(&example("job.failed"), &options());
        let completed = event(&example("job.completed"), &options());
        assert_eq!(failed["event_action"], "trigger");
        assert_eq!(failed["payload"]["severity"], "error");
        assert_eq!(failed["payload"]["source"], "materialize-view");
        assert_eq!(failed["dedup_key"], "job/job_01JD8X3K7Q2M");
        assert_eq!(completed["event_action"], "resolve");
        assert_eq!(completed["dedup_key"], failed["dedup_key"]);
        assert_eq!(completed.as_object().unwrap().len(), 3, "{completed}");
        let summary = failed["payload"]["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("Job failed: job_01JD8X3K7Q2M"),
            "{summary}"
        );
        assert!(summary.contains("PLANNING_FAILED"), "{summary}");
    }

    #[test]
    fn format_pagerduty_platform_mapping() {
        let failed = event(&example("subject.failed"), &options());
        assert_eq!(failed["event_action"], "trigger");
        assert_eq!(failed["payload"]["severity"], "error");
        let run_failed = event(&example("app.run_failed"), &options());
        let run_completed = event(&example("app.run_completed"), &options());
        assert_eq!(run_failed["event_action"], "trigger");
        assert_eq!(run_completed["event_action"], "resolve");
        assert_eq!(run_failed["dedup_key"], run_completed["dedup_key"]);
        assert_eq!(
            event(&example("subject.synced"), &options())["event_action"],
            "resolve"
        );
        assert_eq!(
            event(&example("subject.synccomplete"), &options())["event_action"],
            "resolve"
        );
        let slow = event(&example("engine.slow_query_event"), &options());
        assert_eq!(slow["payload"]["severity"], "warning");
        let test = example("webhook.test");
        let test_event = event(&test, &options());
        assert_eq!(test_event["event_action"], "trigger");
        assert_eq!(test_event["payload"]["severity"], "info");
        assert_eq!(test_event["dedup_key"], test.idempotency_key().unwrap());
    }

    #[test]
    fn format_pagerduty_severity_override() {
        let options = Options {
            severity: Some(Severity::Critical),
            ..options()
        };
        for name in ["job.failed", "job.running", "engine.slow_agg_builds"] {
            let e = event(&example(name), &options);
            assert_eq!(e["payload"]["severity"], "critical", "{name}");
        }
    }

    #[test]
    fn format_pagerduty_bounds_keys_summaries_and_details() {
        let long = "é".repeat(2000);
        let e = EventView::from_value(json!({
            "type": "job.failed",
            "data": {
                "job_id": long, "job_type": long, "state": "failed",
                "error": {"reason": long, "message": long},
                "input": {"blob": "x".repeat(100_000)},
                "url": "https://jobs.example/1",
            },
        }))
        .unwrap();
        let body = event(&e, &options());
        let key = body["dedup_key"].as_str().unwrap();
        assert!(key.starts_with("job/sha256:") && key.len() <= 255, "{key}");
        assert_eq!(dedup_key(&e), key, "stable");
        let payload = &body["payload"];
        assert!(payload["summary"].as_str().unwrap().chars().count() <= 1024);
        assert!(payload["source"].as_str().unwrap().chars().count() <= 255);
        assert_eq!(payload["custom_details"]["truncated"], true);
        assert!(payload["custom_details"].get("input").is_none());
        assert!(
            serde_json::to_vec(&payload["custom_details"])
                .unwrap()
                .len()
                < 40_000
        );
        assert_eq!(body["links"][0]["href"], "https://jobs.example/1");
    }

    #[test]
    fn format_pagerduty_options_debug_hides_the_routing_key() {
        assert!(!format!("{:?}", options()).contains("R0UT1NG"));
    }
}
