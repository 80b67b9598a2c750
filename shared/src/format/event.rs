//! The standard payload, parsed once, as the built-in formats and
//! templates read it.
//!
//! Besides the raw fields, [`EventView`] derives what the built-in
//! formats show: a human title ("Job failed"), the subject line (the job
//! and its type, or the platform event's subject or app), the state
//! change ("running → failed"), the error of a failure, the event's time
//! and an `https` link when the data carries one. Every accessor works on
//! any payload: fields missing or of another type give `None`.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::RenderError;

/// The payload fields that are not the platform event's context: what
/// every payload carries.
const ENVELOPE_FIELDS: [&str; 6] = [
    "type",
    "timestamp",
    "idempotency_key",
    "subscription_id",
    "company_id",
    "data",
];

/// A parsed standard payload (§4.3): `type`, `timestamp`,
/// `idempotency_key`, `subscription_id`, `company_id`, the platform
/// event's context (`source`, `app_id`, `subject_type`, `subject_id`,
/// `verb`) when it has one, and `data`.
#[derive(Debug, Clone)]
pub struct EventView {
    value: Value,
}

/// Whether an event reports that something failed, finished, or neither:
/// what opens and closes a PagerDuty incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Something failed: `job.failed`, or a platform event whose verb or
    /// type ends in `failed` (`subject.failed`, `app.run_failed`).
    Failed,
    /// Something finished well: `job.completed`, or a platform event whose
    /// verb or type's last part is `completed`, `run_completed`,
    /// `synccomplete` or `synced`.
    Completed,
    /// Anything else.
    Other,
}

/// Why something failed, as the event tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure<'a> {
    /// A machine-readable reason or code, e.g. `PLANNING_FAILED`.
    pub reason: Option<&'a str>,
    /// The human-readable message.
    pub message: Option<&'a str>,
}

impl EventView {
    /// Parses `payload`; it must be a JSON object.
    pub fn parse(payload: &RawValue) -> Result<Self, RenderError> {
        let value: Value =
            serde_json::from_str(payload.get()).map_err(|e| RenderError::Payload(e.to_string()))?;
        Self::from_value(value)
    }

    /// The view of an already parsed payload; it must be a JSON object.
    pub fn from_value(value: Value) -> Result<Self, RenderError> {
        if !value.is_object() {
            return Err(RenderError::Payload("not an object".into()));
        }
        Ok(Self { value })
    }

    /// The whole payload.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// A top-level string field.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.value.get(name)?.as_str()
    }

    /// The event type, e.g. `job.failed`.
    pub fn event_type(&self) -> &str {
        self.str("type").unwrap_or("")
    }

    /// The `data` object (`Null` when absent).
    pub fn data(&self) -> &Value {
        self.value.get("data").unwrap_or(&Value::Null)
    }

    /// A string field of `data`.
    pub fn data_str(&self, name: &str) -> Option<&str> {
        self.data().get(name)?.as_str()
    }

    /// The event type's group, its first part: `job`, `webhook`, `app`...
    pub fn group(&self) -> &str {
        let t = self.event_type();
        t.split_once('.').map_or(t, |(group, _)| group)
    }

    /// The event type's last part, after the group: `failed`,
    /// `run_completed`...
    pub fn action(&self) -> &str {
        let t = self.event_type();
        t.split_once('.').map_or(t, |(_, action)| action)
    }

    /// Whether it is a job event (`job.*`).
    pub fn is_job(&self) -> bool {
        self.group() == "job"
    }

    /// Whether it is the test event (`webhook.test`).
    pub fn is_test(&self) -> bool {
        self.event_type() == "webhook.test"
    }

    /// The `idempotency_key` (the `webhook-id` of every delivery).
    pub fn idempotency_key(&self) -> Option<&str> {
        self.str("idempotency_key")
    }

    /// A job event's `data.job_id`.
    pub fn job_id(&self) -> Option<&str> {
        self.is_job().then(|| self.data_str("job_id")).flatten()
    }

    /// A job event's `data.job_type`.
    pub fn job_type(&self) -> Option<&str> {
        self.is_job().then(|| self.data_str("job_type")).flatten()
    }

    /// A job event's new state (`data.state`, else the type's last part).
    pub fn state(&self) -> Option<&str> {
        if !self.is_job() {
            return None;
        }
        self.data_str("state")
            .or_else(|| Some(self.action()).filter(|a| !a.is_empty()))
    }

    /// A job event's `data.previous_state` (`None` for a new job).
    pub fn previous_state(&self) -> Option<&str> {
        self.is_job()
            .then(|| self.data_str("previous_state"))
            .flatten()
    }

    /// The state change, `running → failed` (just `pending` for a new
    /// job); for a platform event with a `verb`, the verb.
    pub fn state_change(&self) -> Option<String> {
        match (self.previous_state(), self.state()) {
            (Some(from), Some(to)) => Some(format!("{from} → {to}")),
            (None, Some(to)) => Some(to.to_owned()),
            _ => self.str("verb").map(str::to_owned),
        }
    }

    /// A human title: `Job failed`, `App run failed`, `Test event`.
    pub fn title(&self) -> String {
        if self.is_test() {
            return "Test event".to_owned();
        }
        if self.event_type().is_empty() {
            return "Event".to_owned();
        }
        let action = match self.state() {
            Some(state) => state,
            None => self.action(),
        };
        let group = self.group();
        let mut title = String::with_capacity(group.len() + action.len() + 1);
        title.push_str(group);
        if !action.is_empty() && action != group {
            title.push(' ');
            title.push_str(action);
        }
        capitalise(&humanise(&title))
    }

    /// What the event is about, in one line: `job_01 (materialize-view)`
    /// for a job, `provider prov_salesforce` for a platform event with a
    /// subject, `app app_7c41f2` for one with an app, else `None`.
    pub fn subject(&self) -> Option<String> {
        if self.is_job() {
            return match (self.job_id(), self.job_type()) {
                (Some(id), Some(t)) => Some(format!("{id} ({t})")),
                (Some(id), None) => Some(id.to_owned()),
                (None, Some(t)) => Some(t.to_owned()),
                (None, None) => None,
            };
        }
        let subject_type = self
            .str("subject_type")
            .or_else(|| self.data_str("subject_type"));
        let subject_id = self
            .str("subject_id")
            .or_else(|| self.data_str("subject_id"));
        match (subject_type, subject_id) {
            (Some(t), Some(id)) => return Some(format!("{t} {id}")),
            (None, Some(id)) => return Some(id.to_owned()),
            _ => {}
        }
        self.app_id().map(|app| format!("app {app}"))
    }

    /// The platform event's `app_id` (the context's, else the data's).
    pub fn app_id(&self) -> Option<&str> {
        self.str("app_id").or_else(|| self.data_str("app_id"))
    }

    /// The resource a job works on, from `data.resource`: its name and id
    /// (`Q4 audience segments (ds_7f3a)`), or whichever it has.
    pub fn resource(&self) -> Option<String> {
        let resource = self.data().get("resource")?.as_object()?;
        let by_suffix = |suffix: &str| {
            resource
                .iter()
                .find(|(k, v)| (k.as_str() == &suffix[1..] || k.ends_with(suffix)) && v.is_string())
                .and_then(|(_, v)| v.as_str())
        };
        match (by_suffix("_name"), by_suffix("_id")) {
            (Some(name), Some(id)) => Some(format!("{name} ({id})")),
            (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
            (None, None) => None,
        }
    }

    /// Whether the event reports a failure, a completion, or neither.
    pub fn outcome(&self) -> Outcome {
        let verb_or_action =
            |pred: &dyn Fn(&str) -> bool| pred(self.action()) || self.str("verb").is_some_and(pred);
        if self.is_job() {
            return match self.state() {
                Some("failed") => Outcome::Failed,
                Some("completed") => Outcome::Completed,
                _ => Outcome::Other,
            };
        }
        if self.is_test() {
            return Outcome::Other;
        }
        if verb_or_action(&|a: &str| a == "failed" || a.ends_with("_failed")) {
            Outcome::Failed
        } else if verb_or_action(&|a: &str| {
            matches!(a, "completed" | "run_completed" | "synccomplete" | "synced")
                || a.ends_with("_completed")
        }) {
            Outcome::Completed
        } else {
            Outcome::Other
        }
    }

    /// Why it failed, when the event says: a job's `data.error`
    /// (`reason`, `message`), an app run's `data.error` (`code`,
    /// `message`), an `error` string, or a failed subject's
    /// `data.details` (`reason`, `message`). `None` when the event
    /// carries no error (a completed job's `error` is `null`).
    pub fn failure(&self) -> Option<Failure<'_>> {
        let data = self.data();
        fn from_object(o: &Map<String, Value>) -> Option<Failure<'_>> {
            let text = |k: &str| o.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let failure = Failure {
                reason: text("reason").or_else(|| text("code")),
                message: text("message"),
            };
            (failure.reason.is_some() || failure.message.is_some()).then_some(failure)
        }
        match data.get("error") {
            Some(Value::Object(o)) => return from_object(o),
            Some(Value::String(s)) if !s.is_empty() => {
                return Some(Failure {
                    reason: None,
                    message: Some(s),
                });
            }
            _ => {}
        }
        if self.outcome() == Outcome::Failed
            && let Some(Value::Object(details)) = data.get("details")
        {
            return from_object(details);
        }
        None
    }

    /// When it happened (RFC 3339): a job's `data.state_changed_at`, else
    /// the payload's `timestamp`.
    pub fn time(&self) -> Option<&str> {
        self.is_job()
            .then(|| self.data_str("state_changed_at"))
            .flatten()
            .or_else(|| self.str("timestamp"))
    }

    /// A link to show: `data.url`, `data.resource.url` or `data.link`,
    /// the first that is an absolute `https` URL of at most
    /// [`MAX_LINK_CHARS`] characters.
    pub fn link(&self) -> Option<&str> {
        let data = self.data();
        [
            data.get("url"),
            data.get("resource").and_then(|r| r.get("url")),
            data.get("link"),
        ]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|s| is_https_url(s))
    }

    /// The context fields the payload carries (`source`, `app_id`,
    /// `subject_type`, `subject_id`, `verb`, and any other top-level
    /// field that is not the envelope's), in payload order.
    pub fn context(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !ENVELOPE_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// What a card lists about the event, as (label, value) pairs, at most
    /// `max`: the event type; a job's id, type, state change, resource
    /// and failure reason; a platform event's subject, app, verb, source
    /// and failure reason, then its data's scalar fields (the generic
    /// rendering every event type gets). Values are not cut.
    pub fn facts(&self, max: usize) -> Vec<(String, String)> {
        let mut facts: Vec<(String, String)> = Vec::new();
        let mut push = |label: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                facts.push((label.to_owned(), value));
            }
        };
        push("Event", Some(self.event_type().to_owned()));
        let reason = self.failure().and_then(|f| f.reason).map(str::to_owned);
        if self.is_job() {
            push("Job", self.job_id().map(str::to_owned));
            push("Job type", self.job_type().map(str::to_owned));
            push("State", self.state_change());
            push("Resource", self.resource());
            push("Reason", reason);
            facts.truncate(max);
            return facts;
        }
        if self
            .str("subject_id")
            .or_else(|| self.data_str("subject_id"))
            .is_some()
        {
            push("Subject", self.subject());
        }
        push("App", self.app_id().map(str::to_owned));
        push("Verb", self.str("verb").map(str::to_owned));
        push("Source", self.str("source").map(str::to_owned));
        push("Reason", reason);
        let shown = |k: &str| {
            matches!(k, "app_id" | "verb" | "subject_id" | "subject_type")
                || (k == "event_type" && self.data_str(k) == Some(self.action()))
        };
        for (k, v) in self.scalar_fields() {
            if facts.len() >= max {
                break;
            }
            if !shown(k) {
                facts.push((capitalise(&humanise(k)), v));
            }
        }
        facts.truncate(max);
        facts
    }

    /// The data's top-level fields that are scalars (strings, numbers,
    /// booleans), in order: what a generic rendering lists.
    pub fn scalar_fields(&self) -> impl Iterator<Item = (&str, String)> {
        self.data()
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| scalar_text(v).map(|text| (k.as_str(), text)))
    }
}

/// The longest link shown, in characters (Slack's limit on a button's
/// URL).
pub const MAX_LINK_CHARS: usize = 3000;

fn is_https_url(s: &str) -> bool {
    s.len() <= MAX_LINK_CHARS
        && url::Url::parse(s).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some())
}

/// A scalar's text: strings as they are, numbers and booleans as JSON;
/// `None` for null, arrays and objects.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `run_failed` → `run failed`, `job.pending_cancellation` → `job
/// pending cancellation`.
pub fn humanise(name: &str) -> String {
    name.replace(['_', '.', '-'], " ")
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `s` cut to at most `max` characters, on a character boundary, ending
/// in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(value: Value) -> EventView {
        EventView::from_value(value).unwrap()
    }

    fn example(name: &str) -> EventView {
        let t = crate::catalogue::find(name).unwrap();
        EventView::parse(&t.example).unwrap()
    }

    #[test]
    fn format_event_rejects_non_objects() {
        let raw = RawValue::from_string("[1]".into()).unwrap();
        assert!(matches!(
            EventView::parse(&raw),
            Err(RenderError::Payload(_))
        ));
        let raw = RawValue::from_string("\"x\"".into()).unwrap();
        assert!(EventView::parse(&raw).is_err());
    }

    #[test]
    fn format_event_job_failed() {
        let e = example("job.failed");
        assert_eq!(e.title(), "Job failed");
        assert_eq!(e.subject().unwrap(), "job_01JD8X3K7Q2M (materialize-view)");
        assert_eq!(e.state_change().unwrap(), "running → failed");
        assert_eq!(e.outcome(), Outcome::Failed);
        let f = e.failure().unwrap();
        assert_eq!(f.reason, Some("PLANNING_FAILED"));
        assert!(f.message.unwrap().contains("region"));
        assert_eq!(e.resource().unwrap(), "Q4 audience segments (ds_7f3a)");
        assert_eq!(e.time(), Some("2026-11-22T10:00:00.123Z"));
        assert_eq!(e.link(), None);
    }

    #[test]
    fn format_event_titles_and_outcomes() {
        let cases = [
            ("job.completed", "Job completed", Outcome::Completed),
            ("job.pending", "Job pending", Outcome::Other),
            (
                "job.pending_cancellation",
                "Job pending cancellation",
                Outcome::Other,
            ),
            ("app.run_failed", "App run failed", Outcome::Failed),
            ("app.run_completed", "App run completed", Outcome::Completed),
            ("subject.failed", "Subject failed", Outcome::Failed),
            (
                "subject.synccomplete",
                "Subject synccomplete",
                Outcome::Completed,
            ),
            ("subject.synced", "Subject synced", Outcome::Completed),
            ("subject.syncing", "Subject syncing", Outcome::Other),
            (
                "engine.slow_query_event",
                "Engine slow query event",
                Outcome::Other,
            ),
            ("webhook.test", "Test event", Outcome::Other),
        ];
        for (name, title, outcome) in cases {
            let e = example(name);
            assert_eq!(e.title(), title, "{name}");
            assert_eq!(e.outcome(), outcome, "{name}");
        }
        assert_eq!(example("job.pending").state_change().unwrap(), "pending");
        assert!(example("job.completed").failure().is_none());
    }

    #[test]
    fn format_event_platform_subjects_and_failures() {
        let e = example("subject.failed");
        assert_eq!(e.subject().unwrap(), "provider prov_salesforce");
        assert_eq!(e.failure().unwrap().reason, Some("AUTH_EXPIRED"));
        let e = example("app.run_failed");
        assert_eq!(e.subject().unwrap(), "app app_7c41f2");
        assert_eq!(e.failure().unwrap().reason, Some("DESTINATION_UNREACHABLE"));
        let e =
            view(json!({"type": "engine.aggregate_batch_result", "data": {"error": "timed out"}}));
        assert_eq!(e.failure().unwrap().message, Some("timed out"));
        assert_eq!(e.subject(), None);
    }

    #[test]
    fn format_event_links_are_https_only() {
        let e = view(
            json!({"type": "x.y", "data": {"url": "http://a.example/", "link": "https://b.example/x"}}),
        );
        assert_eq!(e.link(), Some("https://b.example/x"));
        let e = view(json!({"type": "x.y", "data": {"resource": {"url": "https://c.example"}}}));
        assert_eq!(e.link(), Some("https://c.example"));
        let e = view(json!({"type": "x.y", "data": {"url": "javascript:alert(1)"}}));
        assert_eq!(e.link(), None);
        let long = format!("https://d.example/{}", "a".repeat(MAX_LINK_CHARS));
        let e = view(json!({"type": "x.y", "data": {"url": long}}));
        assert_eq!(e.link(), None);
    }

    #[test]
    fn format_event_truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo", 3), "hé…");
        assert_eq!(truncate("ééé", 1), "…");
    }

    #[test]
    fn format_event_survives_odd_payloads() {
        for v in [
            json!({}),
            json!({"type": 3, "data": [1]}),
            json!({"type": "job"}),
        ] {
            let e = view(v);
            let _ = (
                e.title(),
                e.subject(),
                e.state_change(),
                e.failure(),
                e.time(),
            );
            let _ = (
                e.link(),
                e.outcome(),
                e.scalar_fields().count(),
                e.context().count(),
            );
        }
    }
}
