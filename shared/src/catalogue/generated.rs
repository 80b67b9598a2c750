//! What the catalogue generates from Rust types: the envelope's schema, the
//! job events' and `webhook.test`'s data schemas and examples (their
//! catalogue files hold these, and a test holds the files to them), and the
//! example payloads of every type, built by the same code as real events.

use chrono::{DateTime, Utc};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::job_event::timestamp;
use crate::domain::message::{self, DeliveryMessage, EventContext, EventEnvelope};

/// A generator for self-contained schemas of what the service sends: the
/// serialisation contract, every subschema inlined (no `$ref`s), so one
/// schema can be served, embedded in the OpenAPI document and handed to a
/// validator as it is.
fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
}

pub(super) fn schema_of<T: JsonSchema>(title: &str) -> Value {
    let mut schema = generator().into_root_schema_for::<T>().to_value();
    unwrap_descriptions(&mut schema);
    schema["title"] = title.into();
    schema
}

/// Joins the lines of each paragraph of every `description` (they come
/// from doc comments, wrapped at 80 columns).
fn unwrap_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|p| p.replace('\n', " "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    other => unwrap_descriptions(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The catalogue's example time: fixed, so examples are stable.
fn example_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:00.123Z")
        .expect("a valid time")
        .with_timezone(&Utc)
}

const EXAMPLE_COMPANY: &str = "acme";
const EXAMPLE_SUBSCRIPTION: &str = "sub_0193a4c2e8f47d2a9b1c3e5f7a9b0c1d";

/// The payload a real delivery of `event_type` with `data` would POST.
#[cfg(test)]
pub(super) fn example_payload(event_type: &str, data: &RawValue, event_id: &str) -> Box<RawValue> {
    example_payload_with(event_type, data, event_id, EventContext::default())
}

/// [`example_payload`] of a platform event, with its `context`.
pub(super) fn example_payload_with(
    event_type: &str,
    data: &RawValue,
    event_id: &str,
    context: EventContext<'_>,
) -> Box<RawValue> {
    let at = timestamp(example_time());
    let envelope = EventEnvelope {
        sequence: None,
        company_id: EXAMPLE_COMPANY,
        event_type,
        timestamp: &at,
        data,
    };
    let key = message::webhook_id(EXAMPLE_SUBSCRIPTION, event_id);
    let body = envelope.message_body_with(EXAMPLE_SUBSCRIPTION, &key, context);
    DeliveryMessage::parse(&body)
        .expect("the example message parses")
        .payload
}

/// What the job events' and `webhook.test`'s files hold, generated from the
/// Rust types (a test holds the files to it, and rewrites them on request).
#[cfg(test)]
pub(super) mod files {
    use serde::Serialize;
    use serde_json::{Value, json};

    use super::{EXAMPLE_COMPANY, example_time, schema_of};
    use crate::catalogue::DIALECT;
    use crate::domain::job_event::JobEventData;
    use crate::domain::job_event::{JobError, JobTransition, StateChange, timestamp};
    use crate::domain::jobs::JobState;
    use crate::domain::message::{self, TEST_EVENT_TYPE, TestEventData};
    use schemars::JsonSchema;

    /// A realistic transition of a `materialize-view` job into `state`.
    pub(in crate::catalogue) fn example_transition(state: JobState) -> JobTransition {
        let at = |minutes: i64| timestamp(example_time() - chrono::Duration::minutes(minutes));
        let previous_state = match state {
            JobState::Pending => None,
            JobState::Running => Some(JobState::Pending),
            JobState::PendingCancellation => Some(JobState::Running),
            JobState::Cancelled => Some(JobState::PendingCancellation),
            JobState::Completed | JobState::Failed => Some(JobState::Running),
        };
        let mut history = Vec::new();
        let mut s = previous_state;
        let mut minutes = 1;
        while let Some(past) = s {
            history.insert(
                0,
                StateChange {
                    state: past.as_str().to_owned(),
                    at: at(minutes),
                },
            );
            minutes += 4;
            s = match past {
                JobState::Running => Some(JobState::Pending),
                JobState::PendingCancellation => Some(JobState::Running),
                _ => None,
            };
        }
        let error = match state {
            JobState::Failed => Some(JobError {
                reason: Some("PLANNING_FAILED".to_owned()),
                message: Some("column \"region\" does not exist in dataset ds_7f3a".to_owned()),
            }),
            JobState::Cancelled => Some(JobError {
                reason: Some("CANCELLED_BY_USER".to_owned()),
                message: Some("cancelled by jane@acme.example".to_owned()),
            }),
            _ => None,
        };
        JobTransition {
            company_id: EXAMPLE_COMPANY.to_owned(),
            job_id: "job_01JD8X3K7Q2M".to_owned(),
            job_type: "materialize-view".to_owned(),
            state,
            previous_state,
            state_changed_at: timestamp(example_time()),
            input: json!({ "view_id": "view_4821", "refresh": "incremental" }),
            resource: json!({ "dataset_id": "ds_7f3a", "dataset_name": "Q4 audience segments" }),
            error,
            state_history: history,
            truncated: Vec::new(),
        }
    }

    /// A catalogue file as the generator writes it (the fields in the order
    /// of hand-written files).
    #[derive(Serialize)]
    struct GeneratedFile<'a, D> {
        name: &'a str,
        group: &'a str,
        description: &'a str,
        deprecated: bool,
        requires: [&'a str; 0],
        schema: Value,
        examples: [D; 1],
    }

    impl<D: Serialize> GeneratedFile<'_, D> {
        fn text(&self) -> String {
            let mut text = serde_json::to_string_pretty(self).expect("catalogue files serialise");
            text.push('\n');
            text
        }
    }

    /// The data schema of `T` as a catalogue file holds it.
    fn data_schema<T: JsonSchema>(name: &str) -> Value {
        let mut schema = schema_of::<T>(&format!("{name} data"));
        schema["$schema"] = DIALECT.into();
        schema
    }

    /// The catalogue files generated from Rust types: one per job state (group
    /// `job`) and `webhook.test` (group `webhook`), as (path below
    /// `catalogue/`, text).
    pub(in crate::catalogue) fn generated_files() -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = JobState::ALL
            .iter()
            .map(|state| {
                let transition = example_transition(*state);
                let name = transition.event_type();
                let description = format!(
                    "A job entered the state {}: {}.",
                    state.as_str(),
                    state.description().to_lowercase()
                );
                let mut schema = data_schema::<JobEventData<'static>>(&name);
                schema["properties"]["state"] =
                    json!({ "description": "The state the job entered.", "const": state.as_str() });
                let file = GeneratedFile {
                    name: &name,
                    group: "job",
                    description: &description,
                    deprecated: false,
                    requires: [],
                    schema,
                    examples: [transition.data(0)],
                };
                (format!("job/{name}.json"), file.text())
            })
            .collect();
        let at = timestamp(example_time());
        let test = GeneratedFile {
            name: TEST_EVENT_TYPE,
            group: "webhook",
            description: "Sent on request (POST /webhooks/{id}/test, or the console's Send test event) to check that an endpoint receives and verifies webhooks.",
            deprecated: false,
            requires: [],
            schema: data_schema::<TestEventData<'static>>(TEST_EVENT_TYPE),
            examples: [TestEventData {
                message: message::TEST_EVENT_MESSAGE,
                requested_at: &at,
            }],
        };
        files.push((format!("webhook/{TEST_EVENT_TYPE}.json"), test.text()));
        files
    }
}
