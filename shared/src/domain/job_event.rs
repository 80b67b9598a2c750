//! Job state transitions read from the jobs table's stream, and the event
//! payload customers receive for them.
//!
//! The jobs table item attributes read are `company_id` (S or N), `job_id`
//! (S), `type` (S), `state` (S), `updated_at` (S, RFC 3339: when the state
//! was entered), and optionally `input` (M), `error` (M: `reason`,
//! `message`), `state_history` (L of M: `state`, `at`) and `resource` (M).
//! Everything else is ignored.
//!
//! Every variable-size part of a payload is bounded, so an event always fits
//! one SQS message (256 KiB) with room to spare: ids, the job type and
//! `updated_at` longer than their limits make the record unusable (they are
//! never cut); `error.reason`, `error.message` and the entries of
//! `state_history` are cut at a character boundary; `state_history` keeps
//! its latest [`MAX_STATE_HISTORY`] entries; `input` and `resource` larger
//! than their limits are left out (`{}`). What was cut is listed in
//! `data.truncated`.

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_dynamo::{AttributeValue, Item};
use serde_json::Value;

use crate::domain::jobs::JobState;

/// Longest accepted company or job id, in bytes. Ids are never cut: a
/// longer one makes the record unusable.
pub const MAX_ID_LEN: usize = 256;
/// Longest accepted job type (`type`), in bytes; never cut either.
pub const MAX_JOB_TYPE_LEN: usize = 256;
/// Longest accepted `updated_at`, in bytes.
pub const MAX_TIMESTAMP_LEN: usize = 64;
/// `error.reason` is cut to this many bytes.
pub const MAX_ERROR_REASON_LEN: usize = 256;
/// `error.message` is cut to this many bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 8 * 1024;
/// `input` whose JSON is larger than this many bytes is left out (`{}`).
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
/// `resource` whose JSON is larger than this many bytes is left out (`{}`).
pub const MAX_RESOURCE_BYTES: usize = 16 * 1024;
/// Most `state_history` entries a payload carries: the latest are kept.
pub const MAX_STATE_HISTORY: usize = 50;
/// `state` and `at` of a `state_history` entry are cut to this many bytes.
pub const MAX_STATE_HISTORY_FIELD_LEN: usize = 64;
/// Longest unknown state quoted in a [`RecordError`], in bytes.
const MAX_QUOTED_STATE_LEN: usize = 64;

/// Why a stream record could not be turned into a transition. Ingest sets
/// the record aside with this reason; it never blocks the stream.
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
    /// Machine-readable reason, e.g. `PLANNING_FAILED`; at most 256 bytes
    /// (longer ones are cut, see `truncated`).
    #[schemars(length(max = MAX_ERROR_REASON_LEN))]
    pub reason: Option<String>,
    /// Human-readable message; at most 8,192 bytes (longer ones are cut,
    /// see `truncated`).
    #[schemars(length(max = MAX_ERROR_MESSAGE_LEN))]
    pub message: Option<String>,
}

/// One entry of a job's state history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StateChange {
    /// The state entered, as the job recorded it (at most 64 bytes).
    #[schemars(length(max = MAX_STATE_HISTORY_FIELD_LEN))]
    pub state: String,
    /// When it was entered, as the job recorded it (at most 64 bytes).
    #[schemars(length(max = MAX_STATE_HISTORY_FIELD_LEN))]
    pub at: String,
}

/// A part of a job event's `data` that was cut or left out to keep the
/// payload within its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
pub enum Truncated {
    /// `error.reason` was cut to its first 256 bytes.
    #[serde(rename = "error.reason")]
    ErrorReason,
    /// `error.message` was cut to its first 8,192 bytes.
    #[serde(rename = "error.message")]
    ErrorMessage,
    /// `state_history` holds only its latest entries (or none), or entries
    /// were cut to 64 bytes.
    #[serde(rename = "state_history")]
    StateHistory,
    /// `input` was left out (`{}`).
    #[serde(rename = "input")]
    Input,
    /// `resource` was left out (`{}`).
    #[serde(rename = "resource")]
    Resource,
}

impl Truncated {
    /// The name in `data.truncated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorReason => "error.reason",
            Self::ErrorMessage => "error.message",
            Self::StateHistory => "state_history",
            Self::Input => "input",
            Self::Resource => "resource",
        }
    }
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
    /// Parts cut or left out by [`JobTransition::bounded`], in the order of
    /// [`Truncated`].
    pub truncated: Vec<Truncated>,
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
    let mut name = required_string(item, "state")?;
    JobState::parse(&name).ok_or_else(|| {
        crate::text::truncate(&mut name, MAX_QUOTED_STATE_LEN);
        RecordError::UnknownState(name)
    })
}

fn job_type(item: &Item) -> Result<String, RecordError> {
    let value = required_string(item, "type")?;
    if value.is_empty() || value.len() > MAX_JOB_TYPE_LEN {
        return Err(RecordError::Malformed {
            attribute: "type",
            problem: format!("must be 1 to {MAX_JOB_TYPE_LEN} bytes"),
        });
    }
    Ok(value)
}

/// The length of `value` as compact JSON, without building the text.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("JSON values serialise");
    count.0
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
    if state_changed_at.len() > MAX_TIMESTAMP_LEN {
        return Err(RecordError::Malformed {
            attribute: "updated_at",
            problem: format!("longer than {MAX_TIMESTAMP_LEN} bytes"),
        });
    }
    DateTime::parse_from_rfc3339(&state_changed_at).map_err(|e| RecordError::Malformed {
        attribute: "updated_at",
        problem: format!("not RFC 3339: {e}"),
    })?;
    let transition = JobTransition {
        company_id: id(new_image, "company_id")?,
        job_id: id(new_image, "job_id")?,
        job_type: job_type(new_image)?,
        state: state(new_image)?,
        previous_state,
        state_changed_at,
        input: map_as_json(new_image, "input")?,
        resource: map_as_json(new_image, "resource")?,
        error: job_error(new_image)?,
        state_history: state_history(new_image)?,
        truncated: Vec::new(),
    };
    Ok(Some(transition.bounded()))
}

/// What is left out, in this order, of an event that is still too large
/// for a smaller configured message size limit.
pub const TRIM_ORDER: [Truncated; 3] = [
    Truncated::StateHistory,
    Truncated::Input,
    Truncated::Resource,
];

/// The `data` object of a job event.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JobEventData<'a> {
    /// The job's id (at most 256 bytes).
    #[schemars(length(max = MAX_ID_LEN))]
    pub job_id: &'a str,
    /// The job's type, e.g. `materialize-view` (see `GET /job-types`; at
    /// most 256 bytes).
    #[schemars(length(max = MAX_JOB_TYPE_LEN))]
    pub job_type: &'a str,
    /// The state the job entered.
    pub state: JobState,
    /// The state it left; `null` for a new job.
    pub previous_state: Option<JobState>,
    /// When the state was entered (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub state_changed_at: &'a str,
    /// The job's input parameters (`{}` when it has none, or when their
    /// JSON is larger than 64 KiB: see `truncated`).
    #[schemars(extend("type" = "object"))]
    pub input: &'a Value,
    /// Ids and names of what the job is about, e.g. `dataset_id` (`{}` when
    /// none, or when their JSON is larger than 16 KiB: see `truncated`).
    #[schemars(extend("type" = "object"))]
    pub resource: &'a Value,
    /// Why a failed or cancelled job stopped; `null` otherwise.
    pub error: Option<&'a JobError>,
    /// The job's earlier states, oldest first: at most the latest 50.
    #[schemars(length(max = MAX_STATE_HISTORY))]
    pub state_history: &'a [StateChange],
    /// Parts cut or left out to keep the payload within its limits (see
    /// each field). Absent when nothing was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<Truncated>,
}

static EMPTY_OBJECT: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| Value::Object(Default::default()));

impl JobTransition {
    /// The event type, `job.<state>`.
    pub fn event_type(&self) -> String {
        format!("job.{}", self.state)
    }

    /// The transition with every part within its limit (see the module
    /// documentation), and what was cut in `truncated`. [`transition`]
    /// returns transitions bounded.
    pub fn bounded(mut self) -> Self {
        let mut cut = Vec::new();
        if let Some(error) = &mut self.error {
            if let Some(reason) = &mut error.reason
                && crate::text::truncate(reason, MAX_ERROR_REASON_LEN)
            {
                cut.push(Truncated::ErrorReason);
            }
            if let Some(message) = &mut error.message
                && crate::text::truncate(message, MAX_ERROR_MESSAGE_LEN)
            {
                cut.push(Truncated::ErrorMessage);
            }
        }
        let history = &mut self.state_history;
        let mut history_cut = history.len() > MAX_STATE_HISTORY;
        history.drain(..history.len().saturating_sub(MAX_STATE_HISTORY));
        for entry in history.iter_mut() {
            history_cut |= crate::text::truncate(&mut entry.state, MAX_STATE_HISTORY_FIELD_LEN);
            history_cut |= crate::text::truncate(&mut entry.at, MAX_STATE_HISTORY_FIELD_LEN);
        }
        if history_cut {
            cut.push(Truncated::StateHistory);
        }
        if json_len(&self.input) > MAX_INPUT_BYTES {
            self.input = Value::Object(Default::default());
            cut.push(Truncated::Input);
        }
        if json_len(&self.resource) > MAX_RESOURCE_BYTES {
            self.resource = Value::Object(Default::default());
            cut.push(Truncated::Resource);
        }
        self.truncated.extend(cut);
        self.truncated.sort_unstable();
        self.truncated.dedup();
        self
    }

    /// The `data` object with the first `trim` parts of [`TRIM_ORDER`] left
    /// out (0 = everything).
    pub fn data(&self, trim: usize) -> JobEventData<'_> {
        let dropped = &TRIM_ORDER[..trim.min(TRIM_ORDER.len())];
        let keep = |part: Truncated| !dropped.contains(&part);
        let mut truncated = self.truncated.clone();
        truncated.extend_from_slice(dropped);
        truncated.sort_unstable();
        truncated.dedup();
        JobEventData {
            job_id: &self.job_id,
            job_type: &self.job_type,
            state: self.state,
            previous_state: self.previous_state,
            state_changed_at: &self.state_changed_at,
            input: if keep(Truncated::Input) {
                &self.input
            } else {
                &EMPTY_OBJECT
            },
            resource: if keep(Truncated::Resource) {
                &self.resource
            } else {
                &EMPTY_OBJECT
            },
            error: self.error.as_ref(),
            state_history: if keep(Truncated::StateHistory) {
                &self.state_history
            } else {
                &[]
            },
            truncated,
        }
    }
}

/// RFC 3339 with milliseconds, UTC: the timestamp format of payloads.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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

    fn history(entries: usize, state: &str, at: &str) -> AttributeValue {
        AttributeValue::L(
            (0..entries)
                .map(|i| {
                    AttributeValue::M(std::collections::HashMap::from([
                        ("state".to_owned(), s(&format!("{i}{state}"))),
                        ("at".to_owned(), s(at)),
                    ]))
                })
                .collect(),
        )
    }

    fn error(reason: &str, message: &str) -> AttributeValue {
        AttributeValue::M(std::collections::HashMap::from([
            ("reason".to_owned(), s(reason)),
            ("message".to_owned(), s(message)),
        ]))
    }

    /// A map attribute whose JSON (`{"k":"..."}`) is exactly `bytes` long
    /// once `fill` is escaped.
    fn map_of_json_len(bytes: usize, fill: char) -> AttributeValue {
        let escaped = serde_json::to_string(&fill.to_string()).unwrap().len() - 2;
        let room = bytes - r#"{"k":""}"#.len();
        let text = fill.to_string().repeat(room / escaped) + &"x".repeat(room % escaped);
        let map = AttributeValue::M(std::collections::HashMap::from([(
            "k".to_owned(),
            s(&text),
        )]));
        assert_eq!(
            json_len(&serde_dynamo::from_attribute_value(map.clone()).unwrap()),
            bytes
        );
        map
    }

    #[test]
    fn every_variable_part_is_bounded_and_what_was_cut_is_listed() {
        let mut item = job("failed");
        item.insert(
            "error".to_owned(),
            error(&"R".repeat(300), &"é".repeat(125_000)),
        );
        item.insert(
            "state_history".to_owned(),
            history(80, &"s".repeat(70), "t"),
        );
        item.insert(
            "input".to_owned(),
            map_of_json_len(MAX_INPUT_BYTES + 1, 'x'),
        );
        item.insert(
            "resource".to_owned(),
            map_of_json_len(MAX_RESOURCE_BYTES + 1, 'x'),
        );
        let t = transition(ChangeKind::Insert, &item, &Item::default())
            .unwrap()
            .unwrap();
        let cut = t.error.as_ref().unwrap();
        assert_eq!(cut.reason.as_deref(), Some("R".repeat(256).as_str()));
        let message = cut.message.as_deref().unwrap();
        assert_eq!(
            message.len(),
            MAX_ERROR_MESSAGE_LEN,
            "4096 two-byte characters"
        );
        assert!(message.chars().all(|c| c == 'é'));
        assert_eq!(t.state_history.len(), MAX_STATE_HISTORY);
        assert!(
            t.state_history[0].state.starts_with("30s"),
            "the latest kept"
        );
        assert!(t.state_history.iter().all(|e| e.state.len() == 64));
        assert_eq!(
            (t.input.clone(), t.resource.clone()),
            (json!({}), json!({}))
        );
        let data = serde_json::to_value(t.data(0)).unwrap();
        assert_eq!(
            data["truncated"],
            json!([
                "error.reason",
                "error.message",
                "state_history",
                "input",
                "resource"
            ])
        );
        assert_eq!(data["error"]["message"].as_str().unwrap(), message);

        // At the limits exactly, nothing is cut.
        let mut item = job("failed");
        item.insert(
            "error".to_owned(),
            error(&"R".repeat(256), &"m".repeat(MAX_ERROR_MESSAGE_LEN)),
        );
        item.insert("state_history".to_owned(), history(50, "", "t"));
        item.insert("input".to_owned(), map_of_json_len(MAX_INPUT_BYTES, 'x'));
        item.insert(
            "resource".to_owned(),
            map_of_json_len(MAX_RESOURCE_BYTES, 'x'),
        );
        let t = transition(ChangeKind::Insert, &item, &Item::default())
            .unwrap()
            .unwrap();
        assert_eq!(t.truncated, []);
        assert!(
            serde_json::to_value(t.data(0))
                .unwrap()
                .get("truncated")
                .is_none()
        );
        assert_eq!(json_len(&t.input), MAX_INPUT_BYTES);
    }

    #[test]
    fn ids_types_and_times_over_their_limits_make_the_record_unusable() {
        for (attribute, value) in [
            ("company_id", "c".repeat(MAX_ID_LEN + 1)),
            ("job_id", "j".repeat(MAX_ID_LEN + 1)),
            ("type", "t".repeat(MAX_JOB_TYPE_LEN + 1)),
            (
                "updated_at",
                format!("2026-11-22T10:00:00.{}Z", "0".repeat(60)),
            ),
        ] {
            let mut item = job("running");
            item.insert(attribute.to_owned(), s(&value));
            let err = transition(ChangeKind::Insert, &item, &Item::default()).unwrap_err();
            assert!(
                matches!(err, RecordError::Malformed { attribute: a, .. } if a == attribute),
                "{attribute}: {err}"
            );
        }
        let huge_state = "x".repeat(300_000);
        let err = transition(ChangeKind::Insert, &job(&huge_state), &Item::default()).unwrap_err();
        assert!(
            err.to_string().len() < 200,
            "the reason quotes a bounded part"
        );
    }

    /// SQS's limit on one message (and one `SendMessageBatch`).
    const SQS_MAX_MESSAGE_BYTES: usize = 262_144;
    /// What a first attempt at every limit must leave free: retries add
    /// their attempt history and scheduling fields to the same message.
    const SPARE_BYTES: usize = 64 * 1024;

    #[test]
    fn a_payload_at_every_limit_fits_one_sqs_message_with_room_to_spare() {
        use crate::domain::message::{self, DeliveryMessage, EventEnvelope};
        // Characters JSON escapes the most: `"` (2 bytes) where controls
        // are refused, a control character (6 bytes: \u0001) elsewhere.
        let quote = "\"";
        let control = "\u{1}";
        let company = quote.repeat(MAX_ID_LEN);
        let mut item = job("pending_cancellation");
        item.insert("company_id".to_owned(), s(&company));
        item.insert("job_id".to_owned(), s(&quote.repeat(MAX_ID_LEN)));
        item.insert("type".to_owned(), s(&control.repeat(MAX_JOB_TYPE_LEN)));
        let updated_at = format!(
            "2026-11-22T10:00:00.{}Z",
            "1".repeat(MAX_TIMESTAMP_LEN - 21)
        );
        assert_eq!(updated_at.len(), MAX_TIMESTAMP_LEN);
        item.insert("updated_at".to_owned(), s(&updated_at));
        item.insert(
            "error".to_owned(),
            error(&control.repeat(10_000), &control.repeat(100_000)),
        );
        let long = control.repeat(1000);
        item.insert("state_history".to_owned(), history(1000, &long, &long));
        item.insert(
            "input".to_owned(),
            map_of_json_len(MAX_INPUT_BYTES, '\u{1}'),
        );
        item.insert(
            "resource".to_owned(),
            map_of_json_len(MAX_RESOURCE_BYTES, '\u{1}'),
        );
        let t = transition(ChangeKind::Modify, &item, &job("running"))
            .unwrap()
            .unwrap();
        let data = message::job_data(&t.data(0));
        let at = timestamp(Utc::now());
        let envelope = EventEnvelope {
            company_id: &t.company_id,
            event_type: &t.event_type(),
            timestamp: &at,
            data: &data,
            // Stream sequence numbers have up to 40 digits.
            sequence: Some(&"9".repeat(40)),
        };
        let subscription = format!("sub_{}", "f".repeat(32));
        let key = message::webhook_id(&subscription, &"e".repeat(128));
        let body = envelope.message_body(&subscription, &key);
        assert!(
            body.len() <= SQS_MAX_MESSAGE_BYTES - SPARE_BYTES,
            "{} bytes at every limit",
            body.len()
        );
        let parsed = DeliveryMessage::parse(&body).expect("a delivery message");
        let payload: Value = serde_json::from_str(parsed.payload.get()).unwrap();
        assert_eq!(payload["data"]["truncated"].as_array().unwrap().len(), 3);
        assert_eq!(payload["company_id"], company.as_str());
    }
}
