use super::*;
use crate::domain::message;

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("a valid JSON Schema")
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn names(types: &[&EventType]) -> Vec<String> {
    types.iter().map(|e| e.name.clone()).collect()
}

#[test]
fn every_catalogue_file_loads_in_catalogue_order() {
    let names: Vec<&str> = event_types().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "job.pending",
            "job.running",
            "job.completed",
            "job.pending_cancellation",
            "job.cancelled",
            "job.failed",
            "webhook.test",
            "app.configuration_updated",
            "app.installed",
            "app.run_completed",
            "app.run_failed",
            "app.uninstalled",
            "engine.aggregate_batch_result",
            "engine.aggregate_batch_started",
            "engine.aggregate_prune_result",
            "engine.publish_schema_response",
            "engine.slow_agg_builds",
            "engine.slow_query_event",
            "engine.unpublish_schema_success",
            "subject.completed",
            "subject.created",
            "subject.deleted",
            "subject.failed",
            "subject.started",
            "subject.synccomplete",
            "subject.synced",
            "subject.syncing",
            "subject.update",
        ]
    );
    assert!(find("job.failed").is_some() && find("job.nope").is_none());
    for event in event_types() {
        assert!(
            event.name.starts_with(&format!("{}.", event.group)),
            "{}",
            event.name
        );
        assert!(
            !event.deprecated,
            "{}: nothing is deprecated yet",
            event.name
        );
        let expected: &[&str] = match event.group.as_str() {
            "subject" => &["subject", "subjecttype", "verb"],
            "app" => &["appid"],
            _ => &[],
        };
        assert_eq!(event.requires, expected, "{}", event.name);
    }
}

/// The job events' and `webhook.test`'s files are what the Rust types
/// generate; `UPDATE_CATALOGUE=1` rewrites them.
#[test]
fn generated_catalogue_files_match_the_rust_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalogue");
    let update = std::env::var_os("UPDATE_CATALOGUE").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (path, generated) in generated::files::generated_files() {
        let embedded = files::FILES
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, text)| *text);
        if embedded == Some(generated.as_str()) {
            continue;
        }
        if update {
            let file = root.join(&path);
            std::fs::create_dir_all(file.parent().expect("a group folder")).unwrap();
            std::fs::write(&file, &generated).unwrap();
        }
        stale.push(path);
    }
    if update {
        if !stale.is_empty() {
            eprintln!("rewrote {stale:?}: the next build embeds them");
        }
        return;
    }
    assert!(
        stale.is_empty(),
        "catalogue files differ from what the Rust types generate: {stale:?}; \
         regenerate them with `UPDATE_CATALOGUE=1 cargo test -p shared catalogue` \
         and commit the result"
    );
}

#[test]
fn schemas_are_self_contained_2020_12_and_their_examples_match_them() {
    for event in event_types() {
        for schema in [&event.schema, &event.data_schema] {
            assert_eq!(schema["$schema"], DIALECT, "{}", event.name);
            assert!(
                !schema.to_string().contains("$ref"),
                "{}: no references",
                event.name
            );
        }
        let v = validator(&event.schema);
        let example = event.example_value();
        assert_eq!(errors(&v, &example), Vec::<String>::new(), "{}", event.name);
        assert_eq!(example["type"], event.name.as_str());
        assert_eq!(example["data"], event.examples[0], "{}", event.name);
        assert!(
            event.example.get().starts_with(r#"{"type":""#),
            "sent order"
        );
        assert!(!event.description.is_empty());
        for data in &event.examples {
            assert_eq!(validate_data(&event.name, data), Ok(()), "{}", event.name);
            let mut payload = example.clone();
            payload["data"] = data.clone();
            assert_eq!(errors(&v, &payload), Vec::<String>::new(), "{}", event.name);
        }
    }
}

#[test]
fn examples_keep_the_field_order_of_their_file() {
    let batch = find("engine.aggregate_batch_started").unwrap();
    assert!(
        batch.example.get().contains(
            r#""data":{"event_type":"aggregate_batch_started","id":"378f70a0-9d1f-4591-b64f-89008b079075","context":{"org_id":"default","#
        ),
        "{}",
        batch.example.get()
    );
    let completed = find("job.completed").unwrap();
    assert!(
        completed
            .example
            .get()
            .contains(r#""data":{"job_id":"job_01JD8X3K7Q2M","job_type":"materialize-view","state":"completed""#),
        "job data in the order it is sent: {}",
        completed.example.get()
    );
}

#[test]
fn a_schema_refuses_another_types_payload_and_missing_fields() {
    let completed = find("job.completed").unwrap();
    let failed = find("job.failed").unwrap();
    let v = validator(&completed.schema);
    assert!(
        !v.is_valid(&failed.example_value()),
        "type and state are pinned"
    );
    let mut renamed = failed.example_value();
    renamed["type"] = "job.completed".into();
    assert!(!v.is_valid(&renamed), "data.state is pinned too");
    let mut missing = completed.example_value();
    missing["data"].as_object_mut().unwrap().remove("job_id");
    assert!(!v.is_valid(&missing), "required fields are required");
    let mut bad_time = completed.example_value();
    bad_time["timestamp"] = "yesterday".into();
    assert!(!v.is_valid(&bad_time), "timestamps are date-times");
    let test = find("webhook.test").unwrap();
    assert!(!validator(&test.schema).is_valid(&completed.example_value()));
    for event in event_types() {
        let v = validator(&event.schema);
        for other in event_types().iter().filter(|o| o.name != event.name) {
            assert!(
                !v.is_valid(&other.example_value()),
                "the {} example must not match {}",
                other.name,
                event.name
            );
        }
    }
}

#[test]
fn truncated_payloads_match_and_failed_examples_carry_the_error() {
    let failed = find("job.failed").unwrap().example_value();
    assert_eq!(failed["data"]["error"]["reason"], "PLANNING_FAILED");
    assert_eq!(failed["data"]["previous_state"], "running");
    let transition = generated::files::example_transition(JobState::Completed);
    let data = message::job_data(&transition.data(3));
    let payload: Value =
        serde_json::from_str(generated::example_payload("job.completed", &data, "x").get())
            .unwrap();
    assert_eq!(
        payload["data"]["truncated"],
        json!(["state_history", "input", "resource"])
    );
    let v = validator(&find("job.completed").unwrap().schema);
    assert_eq!(errors(&v, &payload), Vec::<String>::new());

    // An error message cut to its limit is marked, and still matches.
    let mut transition = generated::files::example_transition(JobState::Failed);
    let error = transition.error.as_mut().unwrap();
    error.message = Some("ü".repeat(crate::domain::job_event::MAX_ERROR_MESSAGE_LEN));
    let transition = transition.bounded();
    let data = message::job_data(&transition.data(0));
    let payload: Value =
        serde_json::from_str(generated::example_payload("job.failed", &data, "x").get()).unwrap();
    assert_eq!(payload["data"]["truncated"], json!(["error.message"]));
    let v = validator(&find("job.failed").unwrap().schema);
    assert_eq!(errors(&v, &payload), Vec::<String>::new());
    let mut too_long = payload.clone();
    too_long["data"]["error"]["message"] = "m".repeat(10_000).into();
    assert!(!v.is_valid(&too_long), "the schema states the limit");
}

#[test]
fn patterns_expand_to_a_name_a_group_prefix_or_everything() {
    assert_eq!(names(&expand("job.failed")), ["job.failed"]);
    assert_eq!(names(&expand("engine.*")).len(), 7);
    assert!(expand("engine.*").iter().all(|e| e.group == "engine"));
    assert_eq!(
        names(&expand("app.run_*")),
        Vec::<String>::new(),
        "only `<prefix>.*`"
    );
    assert_eq!(expand("*").len(), event_types().len());
    for nothing in [
        "job.nope", "nope.*", "engine", "engine*", "*.*", "", "job.*.*",
    ] {
        assert!(expand(nothing).is_empty(), "{nothing:?}");
    }
    assert_eq!(
        names(&expand("subject.*")),
        vocabulary()
            .verbs
            .iter()
            .map(|v| format!("subject.{v}"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
}

#[test]
fn validate_data_reports_paths_and_messages_bounded() {
    let good = json!({ "subject_type": "work", "subject_id": "w1", "verb": "created" });
    assert_eq!(validate_data("subject.created", &good), Ok(()));
    let mut wrong_verb = good.clone();
    wrong_verb["verb"] = "deleted".into();
    let errors = validate_data("subject.created", &wrong_verb).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("/verb: "), "{errors:?}");
    let mut bad_type = good.clone();
    bad_type["subject_type"] = "spaceship".into();
    let errors = validate_data("subject.created", &bad_type).unwrap_err();
    assert!(errors[0].starts_with("/subject_type: "), "{errors:?}");
    let errors = validate_data("subject.created", &json!({})).unwrap_err();
    assert!(errors.iter().all(|e| e.starts_with("/: ")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("subject_id")),
        "{errors:?}"
    );
    let many = json!({
        "job_id": 1, "job_type": 2, "state": "gone", "previous_state": 3,
        "state_changed_at": "then", "input": [], "resource": [], "error": 4, "state_history": {}
    });
    let errors = validate_data("job.failed", &many).unwrap_err();
    assert_eq!(errors.len(), MAX_VALIDATION_ERRORS, "{errors:?}");
    assert!(
        errors[MAX_VALIDATION_ERRORS - 1].contains("more"),
        "{errors:?}"
    );
    assert!(validate_data("job.completed", &json!("no")).is_err());
    assert_eq!(
        validate_data("nope.nope", &good),
        Err(vec![r#"/: unknown event type "nope.nope""#.to_owned()])
    );
}

#[test]
fn subject_events_use_the_vocabulary_of_the_seed() {
    let vocabulary = vocabulary();
    assert_eq!(vocabulary.subject_types.len(), 25);
    assert!(
        vocabulary
            .subject_types
            .iter()
            .any(|t| t == "topic-document")
    );
    assert_eq!(
        vocabulary.verbs,
        [
            "synccomplete",
            "update",
            "created",
            "deleted",
            "synced",
            "completed",
            "started",
            "failed",
            "syncing"
        ]
    );
    assert_eq!(vocabulary.verb_descriptions.len(), 9);
    for verb in &vocabulary.verbs {
        let event = find(&format!("subject.{verb}")).unwrap_or_else(|| panic!("subject.{verb}"));
        let properties = &event.data_schema["properties"];
        assert_eq!(properties["verb"]["const"], verb.as_str());
        assert_eq!(
            properties["subject_type"]["enum"],
            json!(vocabulary.subject_types),
            "{}: every subject type of the vocabulary",
            event.name
        );
        assert!(
            event
                .description
                .contains(vocabulary.verb_descriptions[verb].as_str())
        );
    }
    assert_eq!(expand("subject.*").len(), vocabulary.verbs.len());
}

#[test]
fn platform_payloads_carry_their_context_and_require_what_the_type_requires() {
    let completed = find("subject.completed").unwrap();
    let example = completed.example_value();
    assert_eq!(example["source"], "/platform/subject");
    for field in ["subject_type", "subject_id", "verb"] {
        assert_eq!(example[field], example["data"][field], "{field}");
    }
    assert!(example.get("app_id").is_none());
    let v = validator(&completed.schema);
    let mut without = example.clone();
    without.as_object_mut().unwrap().remove("subject_id");
    assert!(!v.is_valid(&without), "subject_id is required");

    let installed = find("app.installed").unwrap();
    let example = installed.example_value();
    assert_eq!(example["app_id"], "app_7c41f2");
    let mut without = example.clone();
    without.as_object_mut().unwrap().remove("app_id");
    assert!(
        !validator(&installed.schema).is_valid(&without),
        "app_id is required"
    );

    let engine = find("engine.slow_query_event").unwrap().example_value();
    assert_eq!(engine["source"], "/platform/engine");
    assert!(engine.get("app_id").is_none() && engine.get("verb").is_none());
    let job = find("job.completed").unwrap().example_value();
    assert!(job.get("source").is_none(), "job events carry no context");
    let v = validator(&find("job.completed").unwrap().schema);
    assert!(v.is_valid(&job));
}

#[test]
fn engine_events_keep_the_engines_names() {
    for event in expand("engine.*") {
        let engine_name = event.name.trim_start_matches("engine.");
        assert_eq!(
            event.data_schema["properties"]["event_type"]["const"], engine_name,
            "{}",
            event.name
        );
        for example in &event.examples {
            assert_eq!(example["event_type"], engine_name, "{}", event.name);
        }
    }
    let started = find("engine.aggregate_batch_started").unwrap();
    let mut no_cube = started.examples[0].clone();
    no_cube["cube_id"] = Value::Null;
    assert_eq!(
        validate_data(&started.name, &no_cube),
        Ok(()),
        "cube_id is nullable"
    );
    no_cube.as_object_mut().unwrap().remove("context");
    assert!(validate_data(&started.name, &no_cube).is_err());
}

const GOOD: &str = r#"{
  "name": "demo.thing_happened",
  "group": "demo",
  "description": "A thing happened.",
  "deprecated": true,
  "requires": ["appid"],
  "schema": {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["thing"],
    "properties": { "thing": { "type": "string", "description": "Which \"thing\"." } }
  },
  "examples": [ { "thing": "a  \"quoted\"\n thing" } ]
}"#;

const VOCABULARY: &str =
    r#"{"subject_types": ["work"], "verbs": [{"name": "created", "description": "Created."}]}"#;

fn load_one(path: &str, text: &str) -> Result<Vec<EventType>, CatalogueError> {
    load(&[(path, text)], VOCABULARY).map(|c| c.types)
}

#[test]
fn a_new_file_is_a_new_event_type() {
    let types = load_one("demo/demo.thing_happened.json", GOOD).unwrap();
    let event = &types[0];
    assert_eq!(event.group, "demo");
    assert!(event.deprecated);
    assert_eq!(event.schema["deprecated"], true);
    assert_eq!(event.requires, ["appid"]);
    let example = event.example_value();
    assert_eq!(example["data"]["thing"], "a  \"quoted\"\n thing");
    assert!(
        event
            .example
            .get()
            .contains(r#""data":{"thing":"a  \"quoted\"\n thing"}"#),
        "compact, strings kept: {}",
        event.example.get()
    );
    assert_eq!(
        errors(&validator(&event.schema), &example),
        Vec::<String>::new()
    );
}

#[test]
fn a_bad_file_is_refused_naming_the_file_and_the_problem() {
    let path = "demo/demo.thing_happened.json";
    let edit = |from: &str, to: &str| {
        assert!(GOOD.contains(from), "{from}");
        GOOD.replacen(from, to, 1)
    };
    let cases = [
        (
            "demo/other.json".to_owned(),
            GOOD.to_owned(),
            "belong in demo/demo.thing_happened.json",
        ),
        (path.to_owned(), "{".to_owned(), "not an event type"),
        (
            path.to_owned(),
            edit(
                r#""deprecated": true"#,
                r#""deprecated": true, "colour": 1"#,
            ),
            "unknown field",
        ),
        (
            path.to_owned(),
            edit(r#""deprecated": true,"#, ""),
            "missing field `deprecated`",
        ),
        (
            path.to_owned(),
            edit(
                r#""description": "A thing happened.""#,
                r#""description": " ""#,
            ),
            "description is empty",
        ),
        (
            path.to_owned(),
            edit(r#"["appid"]"#, r#"["company"]"#),
            "requires \"company\"",
        ),
        (
            path.to_owned(),
            edit(r#"["appid"]"#, r#"["appid", "appid"]"#),
            "at most once",
        ),
        (path.to_owned(), edit("2020-12", "2019-09"), "$schema"),
        (
            path.to_owned(),
            edit(r#""type": "object""#, r#""type": "array""#),
            "not of an object",
        ),
        (
            path.to_owned(),
            edit(r#"{ "type": "string","#, r##"{ "$ref": "#/x","##),
            "$ref",
        ),
        (
            path.to_owned(),
            edit(r#""type": "string""#, r#""type": "text""#),
            "does not compile",
        ),
        (
            path.to_owned(),
            edit(r#""examples": [ { "thing""#, r#""examples": [ { "thin""#),
            "examples[0] does not match",
        ),
        (
            path.to_owned(),
            edit(r#"[ { "thing": "a  \"quoted\"\n thing" } ]"#, "[]"),
            "no examples",
        ),
        (
            "Demo/Demo.thing_happened.json".to_owned(),
            GOOD.replace("\"demo", "\"Demo"),
            "group is lower-case",
        ),
        (
            "demo/demo.json".to_owned(),
            edit(r#""name": "demo.thing_happened""#, r#""name": "demo""#),
            "the name is `demo.`",
        ),
    ];
    for (path, text, problem) in cases {
        let error = load_one(&path, &text)
            .err()
            .unwrap_or_else(|| panic!("{problem}: accepted"));
        assert_eq!(error.file, path, "{problem}");
        assert!(
            error.problem.contains(problem),
            "{problem:?} not in {:?}",
            error.problem
        );
        assert!(
            error
                .to_string()
                .starts_with(&format!("catalogue/{path}: "))
        );
    }

    let twice = load(&[(path, GOOD), (path, GOOD)], VOCABULARY)
        .err()
        .unwrap();
    assert!(twice.problem.contains("a second event type"), "{twice}");
    let bad_vocabulary = load(&[(path, GOOD)], r#"{"subject_types": [], "verbs": []}"#)
        .err()
        .unwrap();
    assert_eq!(bad_vocabulary.file, "vocabulary.json");
    let repeated =
        r#"{"subject_types": ["work", "work"], "verbs": [{"name": "x", "description": ""}]}"#;
    assert!(load(&[], repeated).is_err());
}

#[test]
fn subject_files_are_held_to_the_vocabulary() {
    let subject = |verb: &str, types: &str| {
        format!(
            r#"{{"name": "subject.{verb}", "group": "subject", "description": "d", "deprecated": false,
            "requires": ["subject", "subjecttype", "verb"],
            "schema": {{"$schema": "{DIALECT}", "type": "object", "required": ["subject_type", "subject_id", "verb"],
              "properties": {{"subject_type": {{"enum": {types}}}, "subject_id": {{"type": "string"}}, "verb": {{"const": "created"}}}}}},
            "examples": [{{"subject_type": "work", "subject_id": "w", "verb": "created"}}]}}"#
        )
    };
    let load_subject = |verb: &str, types: &str| {
        load_one(
            &format!("subject/subject.{verb}.json"),
            &subject(verb, types),
        )
    };
    assert!(load_subject("created", r#"["work"]"#).is_ok());
    let error = load_subject("created", r#"["work", "spaceship"]"#).unwrap_err();
    assert!(
        error
            .problem
            .contains("\"spaceship\" is not in vocabulary.json"),
        "{error}"
    );
    let error = load_subject("exploded", r#"["work"]"#).unwrap_err();
    assert!(error.problem.contains("not a verb"), "{error}");
}
