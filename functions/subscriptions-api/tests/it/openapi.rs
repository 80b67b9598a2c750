//! Keeps `openapi.yaml` honest: every served route is documented with its
//! `operationId`, nothing is documented that isn't served, and the filter
//! enums list exactly the job-type catalogue and the job states.

use serde_yaml::Value;
use shared::domain::jobs::{JOB_TYPES, JobState};
use subscriptions_api::routes::ROUTES;

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");

/// The keys of an OpenAPI path item that are operations.
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    let text =
        std::fs::read_to_string(DOCUMENT).unwrap_or_else(|e| panic!("reading {DOCUMENT}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {DOCUMENT}: {e}"))
}

fn paths(doc: &Value) -> &serde_yaml::Mapping {
    doc.get("paths")
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{DOCUMENT} has no `paths` object"))
}

/// Follows a local `$ref` (`#/a/b/c`) until the value is not a reference.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return value;
        };
        let pointer = reference
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("only local references are supported, found {reference}"));
        value = pointer.split('/').fold(doc, |node, segment| {
            let key = segment.replace("~1", "/").replace("~0", "~");
            node.get(key.as_str())
                .unwrap_or_else(|| panic!("reference {reference} is dangling at {key:?}"))
        });
    }
    panic!("reference cycle at {value:?}");
}

/// The schema node at `keys` below `#/components/schemas`, resolving
/// references on the way.
fn schema_node<'a>(doc: &'a Value, keys: &[&str]) -> &'a Value {
    let schemas = doc
        .get("components")
        .and_then(|c| c.get("schemas"))
        .unwrap_or_else(|| panic!("{DOCUMENT} has no `components/schemas`"));
    let mut walked = String::from("#/components/schemas");
    let mut node = schemas;
    for key in keys {
        let child = node
            .get(*key)
            .unwrap_or_else(|| panic!("{DOCUMENT}: {walked} has no {key:?}"));
        node = resolve(doc, child);
        walked.push('/');
        walked.push_str(key);
    }
    node
}

fn string_enum(doc: &Value, keys: &[&str]) -> Vec<String> {
    let node = schema_node(doc, keys);
    let values = node
        .get("enum")
        .and_then(Value::as_sequence)
        .unwrap_or_else(|| {
            panic!(
                "{DOCUMENT}: #/components/schemas/{} has no `enum` list",
                keys.join("/")
            )
        });
    values
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("non-string enum value {v:?} in {}", keys.join("/")))
                .to_owned()
        })
        .collect()
}

#[test]
fn every_served_route_is_documented_with_its_operation_id() {
    let doc = document();
    let paths = paths(&doc);
    let mut problems = Vec::new();
    for route in ROUTES {
        let method = route.method.as_str().to_ascii_lowercase();
        let operation = paths
            .get(route.path)
            .and_then(|item| item.get(method.as_str()));
        let Some(operation) = operation else {
            problems.push(format!(
                "{} {} ({}) is served but missing from `paths`",
                route.method, route.path, route.operation_id
            ));
            continue;
        };
        let documented = operation.get("operationId").and_then(Value::as_str);
        if documented != Some(route.operation_id) {
            problems.push(format!(
                "{} {} has operationId {documented:?} in the document, but {:?} in ROUTES",
                route.method, route.path, route.operation_id
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_documented_operation_is_served() {
    let doc = document();
    let mut problems = Vec::new();
    for (path, item) in paths(&doc) {
        let path = path
            .as_str()
            .unwrap_or_else(|| panic!("non-string path key {path:?}"));
        let item = item
            .as_mapping()
            .unwrap_or_else(|| panic!("path item {path} is not an object"));
        for key in item.keys() {
            let Some(method) = key.as_str().filter(|k| HTTP_METHODS.contains(k)) else {
                continue;
            };
            let served = ROUTES
                .iter()
                .any(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method));
            if !served {
                problems.push(format!(
                    "{} {path} is documented but not in ROUTES",
                    method.to_ascii_uppercase()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn filters_job_types_enum_is_the_catalogue() {
    let doc = document();
    let documented = string_enum(&doc, &["JobFilters", "properties", "job_types", "items"]);
    let catalogue: Vec<&str> = JOB_TYPES.iter().map(|t| t.name).collect();
    let missing: Vec<&&str> = catalogue
        .iter()
        .filter(|name| !documented.iter().any(|d| d == *name))
        .collect();
    let extra: Vec<&String> = documented
        .iter()
        .filter(|d| !catalogue.contains(&d.as_str()))
        .collect();
    assert_eq!(
        documented, catalogue,
        "Filters.job_types enum differs from shared::domain::jobs::JOB_TYPES \
         (missing from the document: {missing:?}; not in the catalogue: {extra:?}; \
         if both are empty, the order differs)"
    );
}

#[test]
fn filters_states_enum_is_the_job_states() {
    let doc = document();
    let documented = string_enum(&doc, &["JobFilters", "properties", "states", "items"]);
    let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
    let missing: Vec<&&str> = states
        .iter()
        .filter(|name| !documented.iter().any(|d| d == *name))
        .collect();
    let extra: Vec<&String> = documented
        .iter()
        .filter(|d| !states.contains(&d.as_str()))
        .collect();
    assert_eq!(
        documented, states,
        "Filters.states enum differs from shared::domain::jobs::JobState::ALL \
         (missing from the document: {missing:?}; not a job state: {extra:?}; \
         if both are empty, the order differs)"
    );
}

/// The document as JSON, for the JSON Schema validator.
fn json_document() -> serde_json::Value {
    serde_json::to_value(document()).expect("the document is JSON-compatible")
}

/// A validator for the request body schema of webhook `name` in the
/// document's `webhooks` section, with the whole document as the root
/// resource so its `$ref`s resolve.
fn webhook_validator(doc: &serde_json::Value, name: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["$schema"] = shared::catalogue::DIALECT.into();
    root["$ref"] =
        format!("#/webhooks/{name}/post/requestBody/content/application~1json/schema").into();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("webhook {name}: {e}"))
}

#[test]
fn the_webhooks_section_describes_every_catalogued_event_with_its_signature_headers() {
    let doc = json_document();
    let webhooks = doc["webhooks"]
        .as_object()
        .expect("the document has a webhooks section");
    let yaml = document();
    let documented: Vec<&str> = yaml["webhooks"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(Value::as_str)
        .collect();
    let catalogued: Vec<&str> = shared::catalogue::event_types()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(documented, catalogued, "webhooks = the catalogue, in order");
    for (name, hook) in webhooks {
        let post = &hook["post"];
        let headers: Vec<String> = post["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no parameters"))
            .iter()
            .map(|p| {
                let pointer = p["$ref"].as_str().unwrap().trim_start_matches('#');
                let param = doc.pointer(pointer).unwrap();
                assert_eq!(param["in"], "header", "{name}");
                assert_eq!(param["required"], true, "{name}");
                param["name"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            headers,
            ["webhook-id", "webhook-timestamp", "webhook-signature"],
            "{name}"
        );
        assert!(post["responses"].get("2XX").is_some(), "{name}");
    }
}

/// `name` as an operation id: `engine.slow_query_event` is
/// `EngineSlowQueryEventEvent`.
fn operation_id(name: &str) -> String {
    let mut id: String = name
        .split(['.', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    id.push_str("Event");
    id
}

/// A YAML mapping with its keys in the order given.
fn mapping<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn yaml(json: serde_json::Value) -> Value {
    serde_yaml::to_value(json).expect("JSON is YAML")
}

/// The `webhooks` entry of a catalogued event type: the component its
/// payloads share, with `type` (and a job event's `data.state`, a platform
/// event's `data` and required context) pinned.
fn webhook_entry(event: &shared::catalogue::EventType) -> Value {
    use serde_json::json;
    let name = event.name.as_str();
    let (component, pinned) = match event.group.as_str() {
        "job" => (
            "JobEvent",
            json!({ "type": "object", "properties": {
                "type": { "const": name },
                "data": { "type": "object", "properties": {
                    "state": { "const": name.trim_start_matches("job.") } } } } }),
        ),
        "webhook" => (
            "TestEvent",
            json!({ "type": "object", "properties": { "type": { "const": name } } }),
        ),
        _ => {
            let mut data = event.data_schema.clone();
            data.as_object_mut().unwrap().remove("$schema");
            let envelope = shared::catalogue::platform_event_schema();
            let required: Vec<&serde_json::Value> = event.schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| !envelope["required"].as_array().unwrap().contains(f))
                .collect();
            let mut pinned = json!({ "type": "object", "properties": {
                "type": { "const": name }, "data": data } });
            if !required.is_empty() {
                pinned["required"] = json!(required);
            }
            ("PlatformEvent", pinned)
        }
    };
    let description = format!(
        "{}\nSigned with the Standard Webhooks scheme; answer any 2xx to acknowledge it. \
         The catalogue (`GET /event-types`) serves the same schema and examples.\n",
        event.description
    );
    let header = |h: &str| yaml(json!({ "$ref": format!("#/components/parameters/{h}") }));
    let mut post = mapping([
        ("operationId", Value::from(operation_id(name))),
        ("tags", yaml(json!(["Catalogue"]))),
        ("summary", Value::from(format!("The `{name}` event"))),
        ("description", Value::from(description)),
        ("security", yaml(json!([]))),
        (
            "parameters",
            Value::Sequence(vec![
                header("WebhookId"),
                header("WebhookTimestamp"),
                header("WebhookSignature"),
            ]),
        ),
        (
            "requestBody",
            yaml(
                json!({ "required": true, "content": { "application/json": { "schema": {
                "allOf": [{ "$ref": format!("#/components/schemas/{component}") }, pinned] } } } }),
            ),
        ),
        (
            "responses",
            mapping([
                (
                    "2XX",
                    yaml(json!({ "description":
                        "Received. Any other answer (or none within 15 seconds) is retried." })),
                ),
                (
                    "410",
                    yaml(json!({ "description":
                        "Gone. The subscription is archived and receives nothing more." })),
                ),
            ]),
        ),
    ]);
    if event.deprecated {
        post.as_mapping_mut()
            .unwrap()
            .insert("deprecated".into(), true.into());
    }
    mapping([("post", post)])
}

/// The `webhooks` section the catalogue makes: one entry per event type,
/// in catalogue order.
fn generated_webhooks() -> Value {
    Value::Mapping(
        shared::catalogue::event_types()
            .iter()
            .map(|e| (Value::from(e.name.as_str()), webhook_entry(e)))
            .collect(),
    )
}

/// Whether the tests rewrite the generated parts of the document
/// (`UPDATE_OPENAPI=1`) rather than fail on them.
fn updating() -> bool {
    std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1")
}

/// Replaces (or adds, at the end) the schema `name` of the document's
/// `components/schemas` with `schema`.
fn rewrite_component(name: &str, schema: &serde_json::Value) {
    let text = std::fs::read_to_string(DOCUMENT).unwrap();
    let schemas = text.find("\n  schemas:\n").expect("components/schemas") + 1;
    // The next key at the same or an outer level ends a block.
    let block_end = |from: usize| {
        let mut at = from;
        loop {
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
            let next = &text[line_end..];
            let indent = next.len() - next.trim_start_matches(' ').len();
            if next.is_empty() || (indent <= 4 && !next.starts_with('\n')) {
                return line_end;
            }
            at = line_end;
        }
    };
    let heading = format!("\n    {name}:\n");
    let (start, end) = match text[schemas..].find(&heading) {
        Some(i) => (schemas + i + 1, block_end(schemas + i + 1)),
        None => {
            // After the last schema: where the next section of components starts.
            let mut at = block_end(schemas);
            while text[at..].starts_with("    ") {
                at = block_end(at);
            }
            (at, at)
        }
    };
    let mut schema = schema.clone();
    schema.as_object_mut().unwrap().remove("$schema");
    let body = serde_yaml::to_string(&serde_json::json!({ name: schema })).unwrap();
    let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
    let rewritten = format!("{}{indented}{}", &text[..start], &text[end..]);
    std::fs::write(DOCUMENT, rewritten).unwrap();
}

/// The document's `webhooks` section is generated from the catalogue;
/// `UPDATE_OPENAPI=1` rewrites it.
#[test]
fn the_webhooks_section_is_generated_from_the_catalogue() {
    let generated = generated_webhooks();
    if document()["webhooks"] == generated {
        return;
    }
    assert!(
        updating(),
        "the webhooks section of {DOCUMENT} differs from the catalogue; rewrite it with \
         `UPDATE_OPENAPI=1 cargo test -p subscriptions-api --test it openapi` and commit it"
    );
    let text = std::fs::read_to_string(DOCUMENT).unwrap();
    let start = text.find("\nwebhooks:\n").expect("a webhooks section") + 1;
    let end = start
        + text[start..]
            .find("\ncomponents:\n")
            .expect("components after it")
        + 1;
    let section = serde_yaml::to_string(&generated).unwrap();
    let indented: String = section.lines().map(|l| format!("  {l}\n")).collect();
    let rewritten = format!("{}webhooks:\n{indented}{}", &text[..start], &text[end..]);
    std::fs::write(DOCUMENT, rewritten).unwrap();
    assert_eq!(
        document()["webhooks"],
        generated,
        "the rewritten section reads back"
    );
}

/// The values of the events filters, generated from the catalogue:
/// `UPDATE_OPENAPI=1` rewrites them after a catalogue change.
#[test]
fn the_events_filters_values_are_the_catalogue_s() {
    let vocabulary = shared::catalogue::vocabulary();
    let generated = [
        (
            "EventTypePattern",
            serde_json::json!({
                "type": "string",
                "description": "A platform event type of the catalogue (`GET /event-types`), a group's \
                    wildcard (`engine.*`) or `*` for every platform event type; generated from the \
                    catalogue.",
                "enum": shared::domain::filters::event_type_patterns(),
            }),
        ),
        (
            "EventTypeName",
            serde_json::json!({
                "description": "An event type of the catalogue (`GET /event-types`); generated from \
                    the catalogue.",
                "type": "string",
                "enum": shared::catalogue::event_types().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            }),
        ),
        (
            "SubjectType",
            serde_json::json!({
                "type": "string",
                "description": "A subject type of subject/verb events (the catalogue's vocabulary).",
                "enum": vocabulary.subject_types,
            }),
        ),
        (
            "Verb",
            serde_json::json!({
                "type": "string",
                "description": "A verb of subject/verb events (the catalogue's vocabulary).",
                "enum": vocabulary.verbs,
            }),
        ),
    ];
    let doc = json_document();
    for (component, schema) in generated {
        let documented = &doc["components"]["schemas"][component];
        if documented != &schema && updating() {
            rewrite_component(component, &schema);
            continue;
        }
        assert!(
            documented == &schema,
            "components/schemas/{component} differs from the catalogue; rewrite it with \
             `UPDATE_OPENAPI=1 cargo test -p subscriptions-api --test it openapi`"
        );
    }
}

#[test]
fn the_documented_event_schemas_are_the_generated_ones() {
    let doc = json_document();
    for (component, generated) in [
        ("JobEvent", shared::catalogue::job_event_schema()),
        ("TestEvent", shared::catalogue::test_event_schema()),
        ("PlatformEvent", shared::catalogue::platform_event_schema()),
    ] {
        let mut generated = generated;
        generated.as_object_mut().unwrap().remove("$schema");
        let documented = &doc["components"]["schemas"][component];
        if documented != &generated && updating() {
            rewrite_component(component, &generated);
            continue;
        }
        assert!(
            documented == &generated,
            "components/schemas/{component} differs from the schema generated from the payload \
             types; rewrite it with `UPDATE_OPENAPI=1 cargo test -p subscriptions-api --test it \
             openapi`, or replace it with:\n{}",
            serde_yaml::to_string(&serde_json::json!({ component: generated })).unwrap()
        );
    }
}

#[test]
fn catalogue_examples_match_their_documented_webhook_and_no_other() {
    let doc = json_document();
    let events = shared::catalogue::event_types();
    for hook in events {
        let validator = webhook_validator(&doc, &hook.name);
        for event in events {
            let example = event.example_value();
            let errors: Vec<String> = validator
                .iter_errors(&example)
                .map(|e| e.to_string())
                .collect();
            if event.name == hook.name {
                assert_eq!(errors, Vec::<String>::new(), "{}", event.name);
            } else {
                assert!(
                    !errors.is_empty(),
                    "the {} example must not match the {} webhook",
                    event.name,
                    hook.name
                );
            }
        }
    }
}

#[test]
fn the_console_files_enum_is_what_the_console_serves() {
    let doc = json_document();
    let params = doc["paths"]["/console/{file}"]["get"]["parameters"]
        .as_array()
        .expect("the console file route has parameters");
    let documented: Vec<&str> = params[0]["schema"]["enum"]
        .as_array()
        .expect("an enum of file names")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let served: Vec<&str> = subscriptions_api::console::files().collect();
    assert_eq!(documented, served);
    let console = &doc["paths"]["/console"]["get"];
    assert_eq!(console["security"], serde_json::json!([]), "no authorizer");
}

/// A validator for `#/components/schemas/{name}`, with the whole document as
/// the root resource so its `$ref`s resolve.
fn component_validator(doc: &serde_json::Value, name: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["$schema"] = shared::catalogue::DIALECT.into();
    root["$ref"] = format!("#/components/schemas/{name}").into();
    jsonschema::options()
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {name}: {e}"))
}

#[test]
fn the_custom_headers_schemas_accept_exactly_what_the_service_accepts() {
    use shared::domain::headers::{
        HeadersInput, HeadersPatchInput, MAX_HEADERS, MAX_NAME_LEN, MAX_VALUE_LEN, RESERVED_NAMES,
    };
    let doc = json_document();
    let create = component_validator(&doc, "CustomHeaders");
    let patch = component_validator(&doc, "CustomHeadersPatch");
    let mut names: Vec<String> = [
        "x-api-key",
        "Authorization",
        "X!#$%&'*+-.^_`|~09",
        "webhook",
        "x-webhook-id",
        "",
        "x y",
        "x:y",
        "é",
        "a\nb",
        "webhook-id",
        "WEBHOOK-Anything",
        "Webhook-",
    ]
    .map(String::from)
    .to_vec();
    names.push("a".repeat(MAX_NAME_LEN));
    names.push("a".repeat(MAX_NAME_LEN + 1));
    for reserved in RESERVED_NAMES {
        names.push((*reserved).to_owned());
        names.push(reserved.to_uppercase());
        names.push(format!("{reserved}s"));
        names.push(format!("x-{reserved}"));
    }
    let mut values: Vec<String> = ["Basic dXNlcjpwYXNz", "", " a\tb ~", "a\r\nb", "\u{7f}", "é"]
        .map(String::from)
        .to_vec();
    values.push("v".repeat(MAX_VALUE_LEN));
    values.push("v".repeat(MAX_VALUE_LEN + 1));
    let mut cases: Vec<serde_json::Map<String, serde_json::Value>> = Vec::new();
    for name in &names {
        cases.push([(name.clone(), "v".into())].into_iter().collect());
    }
    for value in &values {
        cases.push(
            [("x-key".to_owned(), value.as_str().into())]
                .into_iter()
                .collect(),
        );
    }
    for n in [MAX_HEADERS, MAX_HEADERS + 1] {
        cases.push((0..n).map(|i| (format!("x-h{i}"), "v".into())).collect());
    }
    for case in cases {
        let object = serde_json::Value::Object(case.clone());
        let input: HeadersInput = serde_json::from_value(object.clone()).unwrap();
        assert_eq!(
            create.is_valid(&object),
            input.validate().is_ok(),
            "CustomHeaders and the service disagree on {object}"
        );
        let input: HeadersPatchInput = serde_json::from_value(object.clone()).unwrap();
        assert_eq!(
            patch.is_valid(&object),
            input.validate().is_ok(),
            "CustomHeadersPatch and the service disagree on {object}"
        );
        // Removing is judged like setting.
        let removals: serde_json::Map<_, _> = case
            .keys()
            .map(|k| (k.clone(), serde_json::Value::Null))
            .collect();
        let removals = serde_json::Value::Object(removals);
        let input: HeadersPatchInput = serde_json::from_value(removals.clone()).unwrap();
        assert_eq!(
            patch.is_valid(&removals),
            input.validate().is_ok(),
            "{removals}"
        );
        assert!(!create.is_valid(&removals) || case.is_empty(), "{removals}");
    }
}
