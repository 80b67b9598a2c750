//! The vendors the built-in body formats talk to, on one machine: each
//! vendor's documented rules for what we send ([`slack::check`],
//! [`pagerduty::check`], [`teams::check`]), and fakes that answer like the
//! vendor does, as handlers of the loopback
//! [`Receiver`](crate::receiver::Receiver) ([`slack_handler`],
//! [`pagerduty_handler`], [`teams_handler`]):
//!
//! ```text
//! let receiver = Receiver::http().await;
//! let pagerduty = PagerDutyState::default();
//! receiver.set_handler(pagerduty_handler(pagerduty.clone()));
//! // ... deliver job.failed, then job.completed ...
//! assert_eq!(pagerduty.incident("job/job_01").unwrap().status, IncidentStatus::Resolved);
//! ```
//!
//! Each module cites the vendor documentation of every rule it checks.

pub mod pagerduty;
pub mod slack;
pub mod teams;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::receiver::{Received, Reply};

/// The body as JSON, if it is.
fn json_body(received: &Received) -> Option<Value> {
    serde_json::from_slice(&received.body).ok()
}

/// A fake Slack incoming webhook: `200 ok` for a message Slack takes;
/// `400` with `invalid_payload` (not JSON), `no_text` (neither `text`
/// nor `blocks`) or `invalid_blocks` (a block breaks a rule), as Slack
/// answers (<https://api.slack.com/messaging/webhooks#handling_errors>).
pub fn slack_handler() -> impl Fn(usize, &Received) -> Reply + Send + Sync + 'static {
    |_, received| {
        let text = |status, body: &str| {
            Reply::status(status)
                .header("content-type", "text/plain")
                .body(body)
        };
        let Some(body) = json_body(received) else {
            return text(400, "invalid_payload");
        };
        match slack::check(&body) {
            Ok(()) => text(200, "ok"),
            Err(errors) if errors.iter().any(|e| e.starts_with("no_text")) => text(400, "no_text"),
            Err(_) if !body.is_object() => text(400, "invalid_payload"),
            Err(_) => text(400, "invalid_blocks"),
        }
    }
}

/// A fake Teams workflow trigger: `202 Accepted` for a message the
/// workflow posts, `400` with the problems otherwise.
pub fn teams_handler() -> impl Fn(usize, &Received) -> Reply + Send + Sync + 'static {
    |_, received| {
        let problems = match json_body(received) {
            Some(body) => match teams::check(&body) {
                Ok(()) => return Reply::status(202),
                Err(errors) => errors,
            },
            None => vec!["the request body is not JSON".to_owned()],
        };
        let error =
            json!({"error": {"code": "InvalidRequestContent", "message": problems.join("; ")}});
        Reply::status(400)
            .header("content-type", "application/json")
            .body(error.to_string())
    }
}

/// A fake PagerDuty Events API v2 (`/v2/enqueue`): `202` with
/// `{"status":"success","message":"Event processed","dedup_key":...}` for
/// a valid event, which it applies to `state`; `400` with
/// `{"status":"invalid event","message":"Event object is invalid","errors":[...]}`
/// otherwise.
pub fn pagerduty_handler(
    state: PagerDutyState,
) -> impl Fn(usize, &Received) -> Reply + Send + Sync + 'static {
    move |_, received| {
        let reply = |status, body: Value| {
            Reply::status(status)
                .header("content-type", "application/json")
                .body(body.to_string())
        };
        let Some(event) = json_body(received) else {
            return reply(
                400,
                json!({"status": "invalid event", "message": "Event object is invalid",
                       "errors": ["Malformed JSON"]}),
            );
        };
        if let Err(errors) = pagerduty::check(&event) {
            return reply(
                400,
                json!({"status": "invalid event", "message": "Event object is invalid",
                       "errors": errors}),
            );
        }
        let dedup_key = state.apply(&event);
        reply(
            202,
            json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
        )
    }
}

/// Where a fake PagerDuty incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentStatus {
    /// Triggered and not resolved.
    Open,
    /// Acknowledged, not resolved.
    Acknowledged,
    /// Resolved (a later trigger opens it again).
    Resolved,
}

/// A fake PagerDuty incident: the alert of one dedup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Where it stands.
    pub status: IncidentStatus,
    /// Triggers received for its key.
    pub triggers: usize,
    /// Acknowledges received while it was open.
    pub acknowledges: usize,
    /// Resolves received while it was open or acknowledged.
    pub resolves: usize,
    /// The last trigger's `payload.summary`.
    pub summary: String,
    /// The last trigger's `payload.severity`.
    pub severity: String,
}

/// The fake PagerDuty's incidents by dedup key; clones share them.
#[derive(Debug, Clone, Default)]
pub struct PagerDutyState {
    incidents: Arc<Mutex<BTreeMap<String, Incident>>>,
}

impl PagerDutyState {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Incident>> {
        self.incidents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The incident of `dedup_key`, if one was triggered.
    pub fn incident(&self, dedup_key: &str) -> Option<Incident> {
        self.lock().get(dedup_key).cloned()
    }

    /// Every incident, by dedup key.
    pub fn incidents(&self) -> BTreeMap<String, Incident> {
        self.lock().clone()
    }

    /// The dedup keys of the incidents open (or acknowledged) now.
    pub fn open(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, i)| i.status != IncidentStatus::Resolved)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Applies a valid event (see [`pagerduty::check`]) as PagerDuty
    /// does; returns its dedup key (a new one for a trigger without).
    /// A trigger opens the key's incident (again, if resolved) or adds to
    /// the open one; acknowledging or resolving an unknown or resolved
    /// key is accepted and changes nothing.
    pub fn apply(&self, event: &Value) -> String {
        let dedup_key = event["dedup_key"]
            .as_str()
            .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
        let mut incidents = self.lock();
        match event["event_action"].as_str() {
            Some("trigger") => {
                let text = |name: &str| event["payload"][name].as_str().unwrap_or("").to_owned();
                let incident = incidents.entry(dedup_key.clone()).or_insert(Incident {
                    status: IncidentStatus::Open,
                    triggers: 0,
                    acknowledges: 0,
                    resolves: 0,
                    summary: String::new(),
                    severity: String::new(),
                });
                if incident.status == IncidentStatus::Resolved {
                    incident.status = IncidentStatus::Open;
                }
                incident.triggers += 1;
                incident.summary = text("summary");
                incident.severity = text("severity");
            }
            Some("acknowledge") => {
                if let Some(i) = incidents.get_mut(&dedup_key)
                    && i.status == IncidentStatus::Open
                {
                    i.status = IncidentStatus::Acknowledged;
                    i.acknowledges += 1;
                }
            }
            Some("resolve") => {
                if let Some(i) = incidents.get_mut(&dedup_key)
                    && i.status != IncidentStatus::Resolved
                {
                    i.status = IncidentStatus::Resolved;
                    i.resolves += 1;
                }
            }
            _ => {}
        }
        dedup_key
    }
}

#[cfg(test)]
mod tests;
