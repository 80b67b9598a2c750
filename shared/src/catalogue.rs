//! The event catalogue: every event type the service delivers, with a
//! description, a group, a JSON Schema (draft 2020-12) of its `data` and of
//! its whole payload, and examples.
//!
//! Event types are data: each is a file `catalogue/<group>/<type>.json` at
//! the repository root, embedded at build time (`build.rs` lists the
//! folder) and checked at cold start, so a new event type is a new file
//! and a deploy. A file holds `name`, `group`, `description`, `deprecated`,
//! `requires` (the CloudEvent context attributes an event of the type must
//! carry: `appid`, `subject`, `subjecttype`, `verb`), `schema` (of the
//! event's `data`: self-contained, no `$ref`) and `examples` (`data`
//! objects, at least one). `catalogue/vocabulary.json` lists the subject
//! types and verbs of `subject.*` events.
//!
//! The job events' files (`job.*`) and `webhook.test`'s are generated from
//! the Rust types that build those payloads ([`JobEventData`] and the test
//! event's data) and held to them by a test (`UPDATE_CATALOGUE=1 cargo test
//! -p shared catalogue` rewrites them). A type's whole-payload schema is
//! the shared envelope (generated from the payload type) with `data`
//! replaced by the file's schema and `type` pinned; its example payload is
//! built from its first example by the same code as real deliveries.
//!
//! [`JobEventData`]: crate::domain::job_event::JobEventData

mod generated;

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::domain::job_event::JobEventData;
use crate::domain::jobs::JobState;
use crate::domain::message::{EventContext, Payload, TestEventData};

mod files {
    include!(concat!(env!("OUT_DIR"), "/catalogue_files.rs"));
}

/// The JSON Schema dialect of every schema here.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The CloudEvent context attributes an event type may require.
pub const REQUIREMENTS: [&str; 4] = ["appid", "subject", "subjecttype", "verb"];

/// Most errors [`validate_data`] reports.
pub const MAX_VALIDATION_ERRORS: usize = 5;

/// One delivered event type.
#[derive(Debug, Clone, Serialize)]
pub struct EventType {
    /// The `type` of its payloads, e.g. `job.completed`.
    pub name: String,
    /// When it is sent.
    pub description: String,
    /// Its group, the first part of its name: `job`, `webhook`, `engine`,
    /// `subject`, `app`, ...
    pub group: String,
    /// Still sent, but on its way out: new subscriptions should not rely
    /// on it.
    pub deprecated: bool,
    /// The CloudEvent context attributes an event of this type must carry
    /// (from [`REQUIREMENTS`]); empty for most.
    pub requires: Vec<String>,
    /// The JSON Schema of its `data` object.
    pub data_schema: Value,
    /// The JSON Schema of its payloads (the whole body POSTed: the
    /// envelope with `data`).
    pub schema: Value,
    /// A realistic payload, exactly as it is POSTed (fields in the order
    /// they are sent).
    pub example: Box<RawValue>,
    /// Example `data` objects, at least one (the first is `example`'s).
    pub examples: Vec<Value>,
}

impl EventType {
    /// Every example `data` as a whole payload: the example payload with
    /// its `data` replaced, with a label `<type>[<n>]`.
    pub fn example_payloads(&self) -> Vec<(String, Box<RawValue>)> {
        self.examples
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let mut payload = self.example_value();
                payload["data"] = data.clone();
                let raw =
                    RawValue::from_string(payload.to_string()).expect("a JSON value is raw JSON");
                (format!("{}[{i}]", self.name), raw)
            })
            .collect()
    }

    /// The example as a JSON value.
    pub fn example_value(&self) -> Value {
        serde_json::from_str(self.example.get()).expect("examples are JSON")
    }
}

/// The vocabulary of `subject.*` events (`catalogue/vocabulary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Vocabulary {
    /// What an event may be about, e.g. `work`, `campaign`, `segment`.
    pub subject_types: Vec<String>,
    /// What may happen to a subject, e.g. `created`, `synccomplete`.
    pub verbs: Vec<String>,
    /// Each verb's meaning.
    pub verb_descriptions: BTreeMap<String, String>,
}

/// A catalogue file that is not a valid event type (or vocabulary).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("catalogue/{file}: {problem}")]
pub struct CatalogueError {
    /// The file, below `catalogue/`.
    pub file: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The schema every job event (`job.*`) matches: the envelope with job
/// data, any job state. The OpenAPI document carries it as `JobEvent`.
pub fn job_event_schema() -> Value {
    generated::schema_of::<Payload<'static, JobEventData<'static>>>("JobEvent")
}

/// The schema of `webhook.test` payloads before `type` is pinned. The
/// OpenAPI document carries it as `TestEvent`.
pub fn test_event_schema() -> Value {
    generated::schema_of::<Payload<'static, TestEventData<'static>>>("TestEvent")
}

/// The schema every platform event (one of neither the `job` nor the
/// `webhook` group) matches: the envelope with its context and any `data`.
/// The OpenAPI document carries it as `PlatformEvent`.
pub fn platform_event_schema() -> Value {
    generated::schema_of::<Payload<'static, Value>>("PlatformEvent")
}

/// The loaded catalogue: event types with their compiled data validators.
struct Catalogue {
    types: Vec<EventType>,
    validators: Vec<jsonschema::Validator>,
    vocabulary: Vocabulary,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    load(files::FILES, files::VOCABULARY).unwrap_or_else(|e| panic!("invalid event catalogue: {e}"))
});

/// The CloudEvents `source` of a group's example events: the platform
/// service that publishes them (`/platform/engine`, ...).
pub fn example_source(group: &str) -> String {
    format!("/platform/{group}")
}

/// Every event type: the job events in lifecycle order, `webhook.test`,
/// then the other groups by name, each group's types by name.
pub fn event_types() -> &'static [EventType] {
    &CATALOGUE.types
}

/// The event type named `name`.
pub fn find(name: &str) -> Option<&'static EventType> {
    event_types().iter().find(|e| e.name == name)
}

/// The event types a subscription pattern names: an exact name, `<prefix>.*`
/// (every type whose name starts with `<prefix>.`, e.g. `engine.*`), or `*`
/// (every type). Empty when none matches. Job events are included like any
/// other: callers exclude them where they don't belong.
pub fn expand(pattern: &str) -> Vec<&'static EventType> {
    let matches = |name: &str| match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) if prefix.ends_with('.') && !prefix.contains('*') => name.starts_with(prefix),
        Some(_) => false,
        None => name == pattern,
    };
    event_types().iter().filter(|e| matches(&e.name)).collect()
}

/// Checks `data` against the data schema of event type `name` (compiled
/// once, formats checked). The errors are `"<instance path>: <message>"`
/// (`/` for the object itself), at most [`MAX_VALIDATION_ERRORS`] of them,
/// the last saying how many more there were.
pub fn validate_data(name: &str, data: &Value) -> Result<(), Vec<String>> {
    let catalogue = &*CATALOGUE;
    let Some(index) = catalogue.types.iter().position(|e| e.name == name) else {
        return Err(vec![format!("/: unknown event type {name:?}")]);
    };
    let mut errors: Vec<String> = catalogue.validators[index]
        .iter_errors(data)
        .map(|e| {
            let path = e.instance_path().to_string();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            format!("{path}: {e}")
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    if errors.len() > MAX_VALIDATION_ERRORS {
        let more = errors.len() - (MAX_VALIDATION_ERRORS - 1);
        errors.truncate(MAX_VALIDATION_ERRORS - 1);
        errors.push(format!("... and {more} more"));
    }
    Err(errors)
}

/// The subject types and verbs of `subject.*` events.
pub fn vocabulary() -> &'static Vocabulary {
    &CATALOGUE.vocabulary
}

/// An event type file as it is written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    group: String,
    description: String,
    deprecated: bool,
    requires: Vec<String>,
    schema: Value,
    examples: Vec<Box<RawValue>>,
}

/// `catalogue/vocabulary.json` as it is written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabularyFile {
    subject_types: Vec<String>,
    verbs: Vec<VerbFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerbFile {
    name: String,
    description: String,
}

const VOCABULARY_FILE: &str = "vocabulary.json";

/// Parses and checks the catalogue: `files` are (path below `catalogue/`,
/// text), `vocabulary` is the vocabulary file's text.
fn load(files: &[(&str, &str)], vocabulary: &str) -> Result<Catalogue, CatalogueError> {
    let vocabulary = load_vocabulary(vocabulary)?;
    let envelope = platform_event_schema();
    let mut loaded: Vec<(EventType, jsonschema::Validator)> = Vec::with_capacity(files.len());
    let mut names = HashSet::new();
    for (path, text) in files {
        let fail = |problem: String| CatalogueError {
            file: (*path).to_owned(),
            problem,
        };
        let (event, validator) = load_file(path, text, &envelope, &vocabulary).map_err(fail)?;
        if !names.insert(event.name.clone()) {
            return Err(fail(format!("a second event type named {:?}", event.name)));
        }
        loaded.push((event, validator));
    }
    loaded.sort_by_cached_key(|(e, _)| order(e));
    let (types, validators) = loaded.into_iter().unzip();
    Ok(Catalogue {
        types,
        validators,
        vocabulary,
    })
}

/// Where an event type is listed: job events in lifecycle order, then
/// `webhook.test`, then every other group by name.
fn order(event: &EventType) -> (u8, String, usize, String) {
    let rank = match event.group.as_str() {
        "job" => 0,
        "webhook" => 1,
        _ => 2,
    };
    let lifecycle = JobState::ALL
        .iter()
        .position(|s| event.name.strip_prefix("job.") == Some(s.as_str()))
        .unwrap_or(0);
    (rank, event.group.clone(), lifecycle, event.name.clone())
}

fn load_vocabulary(text: &str) -> Result<Vocabulary, CatalogueError> {
    let fail = |problem: String| CatalogueError {
        file: VOCABULARY_FILE.to_owned(),
        problem,
    };
    let file: VocabularyFile = serde_json::from_str(text).map_err(|e| fail(e.to_string()))?;
    let verbs: Vec<String> = file.verbs.iter().map(|v| v.name.clone()).collect();
    for (kind, list) in [("subject type", &file.subject_types), ("verb", &verbs)] {
        if list.is_empty() {
            return Err(fail(format!("no {kind}s")));
        }
        let mut seen = HashSet::new();
        if let Some(bad) = list
            .iter()
            .find(|v| v.is_empty() || v.contains(char::is_whitespace) || !seen.insert(*v))
        {
            return Err(fail(format!(
                "{kind} {bad:?} is empty, has spaces or repeats"
            )));
        }
    }
    Ok(Vocabulary {
        subject_types: file.subject_types,
        verbs,
        verb_descriptions: file
            .verbs
            .into_iter()
            .map(|v| (v.name, v.description))
            .collect(),
    })
}

/// One event type file, checked; the problem otherwise.
fn load_file(
    path: &str,
    text: &str,
    envelope: &Value,
    vocabulary: &Vocabulary,
) -> Result<(EventType, jsonschema::Validator), String> {
    let file: File = serde_json::from_str(text).map_err(|e| format!("not an event type: {e}"))?;
    let expected = format!("{}/{}.json", file.group, file.name);
    if path != expected {
        return Err(format!(
            "name {:?} and group {:?} belong in {expected}",
            file.name, file.group
        ));
    }
    let valid_group = !file.group.is_empty()
        && file
            .group
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid_group {
        return Err("the group is lower-case letters, digits and `_`".to_owned());
    }
    let rest = file
        .name
        .strip_prefix(&format!("{}.", file.group))
        .unwrap_or_default();
    let valid_name = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if !valid_name {
        return Err(format!(
            "the name is `{}.` then lower-case letters, digits, `_` and `.`",
            file.group
        ));
    }
    if file.description.trim().is_empty() {
        return Err("the description is empty".to_owned());
    }
    let mut requires = HashSet::new();
    if let Some(bad) = file
        .requires
        .iter()
        .find(|r| !REQUIREMENTS.contains(&r.as_str()) || !requires.insert(r.as_str()))
    {
        return Err(format!(
            "requires {bad:?}: each of {REQUIREMENTS:?} at most once"
        ));
    }
    if file.schema.get("$schema").and_then(Value::as_str) != Some(DIALECT) {
        return Err(format!("the schema's $schema is not {DIALECT}"));
    }
    if file.schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err("the schema is not of an object (`\"type\": \"object\"`)".to_owned());
    }
    if let Some(key) = reference(&file.schema) {
        return Err(format!("the schema uses {key}: schemas are self-contained"));
    }
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&file.schema)
        .map_err(|e| format!("the schema does not compile: {e}"))?;
    if file.examples.is_empty() {
        return Err("no examples".to_owned());
    }
    let mut examples = Vec::with_capacity(file.examples.len());
    for (i, raw) in file.examples.iter().enumerate() {
        let example: Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
        if let Some(e) = validator.iter_errors(&example).next() {
            return Err(format!(
                "examples[{i}] does not match the schema: {}: {e}",
                e.instance_path()
            ));
        }
        examples.push(example);
    }
    if file.group == "subject" {
        check_subject_schema(&file.name, &file.schema, vocabulary)?;
    }
    let data = RawValue::from_string(compact(file.examples[0].get()))
        .map_err(|e| format!("examples[0]: {e}"))?;
    let source = example_source(&file.group);
    let context = example_context(&file, &examples[0], &source);
    let example = generated::example_payload_with(
        &file.name,
        &data,
        &format!("example:{}", file.name),
        context,
    );
    let schema = payload_schema(envelope, &file);
    Ok((
        EventType {
            name: file.name,
            description: file.description,
            group: file.group,
            deprecated: file.deprecated,
            requires: file.requires,
            data_schema: file.schema,
            schema,
            example,
            examples,
        },
        validator,
    ))
}

/// A `subject.<verb>` schema pins `verb` to a verb of the vocabulary and
/// allows only its subject types.
fn check_subject_schema(name: &str, schema: &Value, vocabulary: &Vocabulary) -> Result<(), String> {
    let verb = name.strip_prefix("subject.").unwrap_or_default();
    if !vocabulary.verbs.iter().any(|v| v == verb) {
        return Err(format!(
            "{verb:?} is not a verb of {VOCABULARY_FILE} ({:?})",
            vocabulary.verbs
        ));
    }
    let properties = &schema["properties"];
    if properties["verb"]["const"] != verb {
        return Err(format!("the schema must pin `verb` to {verb:?} (`const`)"));
    }
    let Some(types) = properties["subject_type"]["enum"].as_array() else {
        return Err(format!(
            "the schema must list `subject_type`'s values (`enum`, from {VOCABULARY_FILE})"
        ));
    };
    if let Some(bad) = types.iter().find(|t| {
        !t.as_str()
            .is_some_and(|t| vocabulary.subject_types.iter().any(|s| s == t))
    }) {
        return Err(format!("subject type {bad} is not in {VOCABULARY_FILE}"));
    }
    let required = schema["required"].as_array();
    for field in ["subject_type", "subject_id", "verb"] {
        if !required.is_some_and(|r| r.iter().any(|f| f == field)) {
            return Err(format!("the schema must require `{field}`"));
        }
    }
    Ok(())
}

/// The first `$ref`-like keyword anywhere in `schema`.
fn reference(schema: &Value) -> Option<&'static str> {
    const KEYWORDS: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];
    match schema {
        Value::Object(map) => map.iter().find_map(|(key, value)| {
            KEYWORDS
                .iter()
                .find(|k| *k == key)
                .copied()
                .or_else(|| reference(value))
        }),
        Value::Array(items) => items.iter().find_map(reference),
        _ => None,
    }
}

/// `json` without the whitespace between its tokens (its field order
/// kept, unlike a round trip through [`Value`]).
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// Each CloudEvent context attribute an event type may require, and the
/// field that carries it in the payload's envelope (see [`EventContext`])
/// and, when the data has it, in the data.
pub const CONTEXT_FIELDS: [(&str, &str); 4] = [
    ("appid", "app_id"),
    ("subject", "subject_id"),
    ("subjecttype", "subject_type"),
    ("verb", "verb"),
];

/// The envelope fields `requires` makes required.
fn required_fields(requires: &[String]) -> impl Iterator<Item = &'static str> {
    CONTEXT_FIELDS
        .into_iter()
        .filter(|(attribute, _)| requires.iter().any(|r| r == attribute))
        .map(|(_, field)| field)
}

/// The context of a platform event's example payload: its `source`, and
/// the required fields, taken from the `data` fields of the same name.
/// Job events and `webhook.test` (not platform events) carry none.
fn example_context<'a>(file: &File, data: &'a Value, source: &'a str) -> EventContext<'a> {
    if matches!(file.group.as_str(), "job" | "webhook") {
        return EventContext::default();
    }
    let mut context = EventContext {
        source: Some(source),
        ..EventContext::default()
    };
    for field in required_fields(&file.requires) {
        let value = data[field].as_str().or(Some("example"));
        match field {
            "app_id" => context.app_id = value,
            "subject_id" => context.subject_id = value,
            "subject_type" => context.subject_type = value,
            "verb" => context.verb = value,
            _ => {}
        }
    }
    context
}

/// The whole-payload schema of `file`'s events: the envelope with `type`
/// pinned and `data` replaced by the file's schema.
fn payload_schema(envelope: &Value, file: &File) -> Value {
    let mut schema = envelope.clone();
    schema["$schema"] = DIALECT.into();
    schema["title"] = file.name.as_str().into();
    schema["description"] = file.description.as_str().into();
    if file.deprecated {
        schema["deprecated"] = true.into();
    }
    schema["properties"]["type"] = json!({ "description": "The event type.", "const": file.name });
    let mut data = file.schema.clone();
    if let Some(map) = data.as_object_mut() {
        map.remove("$schema");
    }
    schema["properties"]["data"] = data;
    if let Some(required) = schema["required"].as_array_mut() {
        required.extend(required_fields(&file.requires).map(Value::from));
    }
    schema
}

#[cfg(test)]
mod tests;
