//! Job state transitions read from the jobs table's stream, and the event
//! payload customers receive for them.
//!
//! The jobs table item attributes read are `company_id` (S or N), `job_id`
//! (S), `type` (S), `state` (S), `updated_at` (S, RFC 3339: when the state
//! was entered), and optionally `input` (M), `error` (M: `reason`,
//! `message`), `state_history` (L of M: `state`, `at`) and `resource` (M).
//! Everything else is ignored.

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_dynamo::{AttributeValue, Item};
use serde_json::Value;

use crate::domain::jobs::JobState;

/// Longest accepted company or job id, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Why a stream record could not be turned into a transition. The record is
/// logged with its event id and skipped; it never blocks the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A required attribute is absent.
    #[error("attribute {0} is missing")]
    Missing(&'static str),
    /// An attribute has the wrong DynamoDB type or an unusable value.
    #[error("attribute {attribute} is malformed: {problem}")]
    Malformed {
        /// Attribute name.
        attribute: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// `state` is not one of the six job states.
    #[error("unknown job state {0:?}")]
    UnknownState(String),
}

/// The kind of change a stream record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new item (`INSERT`).
    Insert,
    /// A changed item (`MODIFY`).
    Modify,
    /// Anything else (`REMOVE`, unknown names).
    Other,
}

impl ChangeKind {
    /// The kind for a stream record's `eventName`.
    pub fn from_event_name(name: &str) -> Self {
        match name {
            "INSERT" => Self::Insert,
            "MODIFY" => Self::Modify,
            _ => Self::Other,
        }
    }
}

/// A failed or cancelled job's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct JobError {
    /// Machine-readable reason, e.g. `PLANNING_FAILED`.
    pub reason: Option<String>,
    /// Human-readable message.
    pub message: Option<String>,
}

/// One entry of a job's state history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StateChange {
    /// The state entered, as the job recorded it.
    pub state: String,
    /// When it was entered, as the job recorded it.
    pub at: String,
}

/// A job entering a new state: one INSERT, or one MODIFY that changed
/// `state`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTransition {
    /// Owning company.
    pub company_id: String,
    /// The job.
    pub job_id: String,
    /// Catalogue job type (unknown types are passed through).
    pub job_type: String,
    /// The state entered.
    pub state: JobState,
    /// The state left, for a MODIFY whose old image has a known state.
    pub previous_state: Option<JobState>,
    /// When the state was entered (`updated_at`).
    pub state_changed_at: String,
    /// The job's input parameters (`{}` when absent).
    pub input: Value,
    /// Ids and names of what the job is about (`{}` when absent).
    pub resource: Value,
    /// Error reason and message, when present.
    pub error: Option<JobError>,
    /// Past states, oldest first, when the item carries them.
    pub state_history: Vec<StateChange>,
}

fn string(item: &Item, name: &'static str) -> Result<Option<String>, RecordError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
        Some(_) => Err(RecordError::Malformed {
            attribute: name,
            problem: "expected a string (S)".to_owned(),
        }),
    }
}

fn required_string(item: &Item, name: &'static str) -> Result<String, RecordError> {
    string(item, name)?.ok_or(RecordError::Missing(name))
}

fn id(item: &Item, name: &'static str) -> Result<String, RecordError> {
    let value = match item.get(name) {
        None | Some(AttributeValue::Null(_)) => return Err(RecordError::Missing(name)),
        Some(AttributeValue::S(s)) => s.trim().to_owned(),
        Some(AttributeValue::N(n)) => n.trim().to_owned(),
        Some(_) => {
            return Err(RecordError::Malformed {
                attribute: name,
                problem: "expected a string (S) or number (N)".to_owned(),
            });
        }
    };
    if value.is_empty() || value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        return Err(RecordError::Malformed {
            attribute: name,
            problem: format!("must be 1 to {MAX_ID_LEN} printable bytes"),
        });
    }
    Ok(value)
}

fn map_as_json(item: &Item, name: &'static str) -> Result<Value, RecordError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(Value::Object(Default::default())),
        Some(av @ AttributeValue::M(_)) => {
            serde_dynamo::from_attribute_value(av.clone()).map_err(|e| RecordError::Malformed {
                attribute: name,
                problem: e.to_string(),
            })
        }
        Some(_) => Err(RecordError::Malformed {
            attribute: name,
            problem: "expected a map (M)".to_owned(),
        }),
    }
}

fn job_error(item: &Item) -> Result<Option<JobError>, RecordError> {
    match item.get("error") {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::M(m)) => {
            let field = |key: &str| match m.get(key) {
                Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
                None | Some(AttributeValue::Null(_)) => Ok(None),
                Some(_) => Err(RecordError::Malformed {
                    attribute: "error",
                    problem: format!("{key} must be a string"),
                }),
            };
            Ok(Some(JobError {
                reason: field("reason")?,
                message: field("message")?,
            }))
        }
        Some(_) => Err(RecordError::Malformed {
            attribute: "error",
            problem: "expected a map (M)".to_owned(),
        }),
    }
}

fn state_history(item: &Item) -> Result<Vec<StateChange>, RecordError> {
    let malformed = |problem: &str| RecordError::Malformed {
        attribute: "state_history",
        problem: problem.to_owned(),
    };
    match item.get("state_history") {
        None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
        Some(AttributeValue::L(entries)) => entries
            .iter()
            .map(|entry| match entry {
                AttributeValue::M(m) => match (m.get("state"), m.get("at")) {
                    (Some(AttributeValue::S(state)), Some(AttributeValue::S(at))) => {
                        Ok(StateChange {
                            state: state.clone(),
                            at: at.clone(),
                        })
                    }
                    _ => Err(malformed("entries need string state and at")),
                },
                _ => Err(malformed("entries must be maps")),
            })
            .collect(),
        Some(_) => Err(malformed("expected a list (L)")),
    }
}

fn state(item: &Item) -> Result<JobState, RecordError> {
    let name = required_string(item, "state")?;
    JobState::parse(&name).ok_or(RecordError::UnknownState(name))
}

/// The transition a stream record describes, `Ok(None)` when it describes
/// none (REMOVE, or a MODIFY that kept the state).
pub fn transition(
    kind: ChangeKind,
    new_image: &Item,
    old_image: &Item,
) -> Result<Option<JobTransition>, RecordError> {
    let previous_state = match kind {
        ChangeKind::Other => return Ok(None),
        ChangeKind::Insert => None,
        ChangeKind::Modify => {
            let new_state = string(new_image, "state")?;
            let old_state = match old_image.get("state") {
                Some(AttributeValue::S(s)) => Some(s.as_str()),
                _ => None,
            };
            if new_state.as_deref() == old_state {
                return Ok(None);
            }
            old_state.and_then(JobState::parse)
        }
    };
    let state_changed_at = required_string(new_image, "updated_at")?;
    DateTime::parse_from_rfc3339(&state_changed_at).map_err(|e| RecordError::Malformed {
        attribute: "updated_at",
        problem: format!("not RFC 3339: {e}"),
    })?;
    Ok(Some(JobTransition {
        company_id: id(new_image, "company_id")?,
        job_id: id(new_image, "job_id")?,
        job_type: required_string(new_image, "type")?,
        state: state(new_image)?,
        previous_state,
        state_changed_at,
        input: map_as_json(new_image, "input")?,
        resource: map_as_json(new_image, "resource")?,
        error: job_error(new_image)?,
        state_history: state_history(new_image)?,
    }))
}

/// How much of a large event was left out to fit the queue's size limit,
/// in the order parts are dropped.
pub const TRIM_ORDER: [&str; 3] = ["state_history", "input", "resource"];

/// The `data` object of a job event.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JobEventData<'a> {
    /// The job's id.
    pub job_id: &'a str,
    /// The job's type, e.g. `materialize-view` (see `GET /job-types`).
    pub job_type: &'a str,
    /// The state the job entered.
    pub state: JobState,
    /// The state it left; `null` for a new job.
    pub previous_state: Option<JobState>,
    /// When the state was entered (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub state_changed_at: &'a str,
    /// The job's input parameters (`{}` when it has none).
    #[schemars(extend("type" = "object"))]
    pub input: &'a Value,
    /// Ids and names of what the job is about, e.g. `dataset_id` (`{}` when
    /// none).
    #[schemars(extend("type" = "object"))]
    pub resource: &'a Value,
    /// Why a failed or cancelled job stopped; `null` otherwise.
    pub error: Option<&'a JobError>,
    /// The job's earlier states, oldest first.
    pub state_history: &'a [StateChange],
    /// Parts left out (emptied) to keep the payload under the size limit:
    /// `state_history`, then `input`, then `resource`. Absent when nothing
    /// was.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub truncated: &'a [&'a str],
}

static EMPTY_OBJECT: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| Value::Object(Default::default()));

impl JobTransition {
    /// The event type, `job.<state>`.
    pub fn event_type(&self) -> String {
        format!("job.{}", self.state)
    }

    /// The `data` object with the first `trim` parts of [`TRIM_ORDER`] left
    /// out (0 = everything).
    pub fn data(&self, trim: usize) -> JobEventData<'_> {
        let dropped = &TRIM_ORDER[..trim.min(TRIM_ORDER.len())];
        let keep = |part: &str| !dropped.contains(&part);
        JobEventData {
            job_id: &self.job_id,
            job_type: &self.job_type,
            state: self.state,
            previous_state: self.previous_state,
            state_changed_at: &self.state_changed_at,
            input: if keep("input") {
                &self.input
            } else {
                &EMPTY_OBJECT
            },
            resource: if keep("resource") {
                &self.resource
            } else {
                &EMPTY_OBJECT
            },
            error: self.error.as_ref(),
            state_history: if keep("state_history") {
                &self.state_history
            } else {
                &[]
            },
            truncated: dropped,
        }
    }
}

/// RFC 3339 with milliseconds, UTC: the timestamp format of payloads.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn job(state: &str) -> Item {
        let mut item = Item::from(std::collections::HashMap::from([
            ("company_id".to_owned(), s("acme")),
            ("job_id".to_owned(), s("j-1")),
            ("type".to_owned(), s("materialize-view")),
            ("state".to_owned(), s(state)),
            ("updated_at".to_owned(), s("2026-11-22T10:00:00.123Z")),
        ]));
        item.insert("ignored".to_owned(), AttributeValue::Bool(true));
        item
    }

    #[test]
    fn insert_and_state_changing_modify_are_transitions() {
        let t = transition(ChangeKind::Insert, &job("pending"), &Item::default())
            .unwrap()
            .unwrap();
        assert_eq!(t.state, JobState::Pending);
        assert_eq!(t.previous_state, None);
        assert_eq!(t.event_type(), "job.pending");
        assert_eq!(t.input, serde_json::json!({}));

        let t = transition(ChangeKind::Modify, &job("failed"), &job("running"))
            .unwrap()
            .unwrap();
        assert_eq!(t.previous_state, Some(JobState::Running));
    }

    #[test]
    fn same_state_modify_and_remove_are_not() {
        assert_eq!(
            transition(ChangeKind::Modify, &job("running"), &job("running")),
            Ok(None)
        );
        assert_eq!(
            transition(ChangeKind::Other, &Item::default(), &job("running")),
            Ok(None)
        );
    }

    #[test]
    fn numeric_company_ids_are_accepted_and_other_types_refused() {
        let mut item = job("completed");
        item.insert(
            "company_id".to_owned(),
            AttributeValue::N("4711".to_owned()),
        );
        let t = transition(ChangeKind::Insert, &item, &Item::default())
            .unwrap()
            .unwrap();
        assert_eq!(t.company_id, "4711");
        item.insert("company_id".to_owned(), AttributeValue::Bool(true));
        assert!(matches!(
            transition(ChangeKind::Insert, &item, &Item::default()),
            Err(RecordError::Malformed {
                attribute: "company_id",
                ..
            })
        ));
    }

    #[test]
    fn malformed_records_name_the_attribute() {
        let mut item = job("exploded");
        assert_eq!(
            transition(ChangeKind::Insert, &item, &Item::default()),
            Err(RecordError::UnknownState("exploded".to_owned()))
        );
        item = job("running");
        item.remove("job_id");
        assert_eq!(
            transition(ChangeKind::Insert, &item, &Item::default()),
            Err(RecordError::Missing("job_id"))
        );
        item = job("running");
        item.insert("updated_at".to_owned(), s("yesterday"));
        assert!(transition(ChangeKind::Insert, &item, &Item::default()).is_err());
        item = job("running");
        item.insert("input".to_owned(), s("not a map"));
        assert!(transition(ChangeKind::Insert, &item, &Item::default()).is_err());
        item = job("running");
        item.insert("state_history".to_owned(), AttributeValue::L(vec![s("x")]));
        assert!(transition(ChangeKind::Insert, &item, &Item::default()).is_err());
    }

    #[test]
    fn trimming_drops_history_first_and_says_so() {
        let mut item = job("failed");
        item.insert(
            "state_history".to_owned(),
            AttributeValue::L(vec![AttributeValue::M(std::collections::HashMap::from([
                ("state".to_owned(), s("pending")),
                ("at".to_owned(), s("2026-11-22T09:00:00Z")),
            ]))]),
        );
        item.insert(
            "input".to_owned(),
            AttributeValue::M(std::collections::HashMap::from([(
                "nql".to_owned(),
                s("SELECT 1"),
            )])),
        );
        let t = transition(ChangeKind::Insert, &item, &Item::default())
            .unwrap()
            .unwrap();
        let full = serde_json::to_value(t.data(0)).unwrap();
        assert_eq!(full["state_history"][0]["state"], "pending");
        assert_eq!(full["input"]["nql"], "SELECT 1");
        assert!(full.get("truncated").is_none());
        let one = serde_json::to_value(t.data(1)).unwrap();
        assert_eq!(one["state_history"], serde_json::json!([]));
        assert_eq!(one["input"]["nql"], "SELECT 1");
        assert_eq!(one["truncated"], serde_json::json!(["state_history"]));
        let two = serde_json::to_value(t.data(2)).unwrap();
        assert_eq!(two["input"], serde_json::json!({}));
    }
}
