//! Who may open signing secrets, read off `template.yaml`: only the
//! subscriptions API (it returns a secret once, on create and rotate), the
//! delivery function (it signs) and the secret-keys operator function may
//! decrypt with the signing-secrets KMS key or read the keyring table; only
//! secret-keys may generate data keys or write the keyring (it starts it
//! for the stack's deploy, as the `SigningKeyring` custom resource, and
//! rotates it), so the public API cannot overwrite a key; every KMS
//! statement is bound to that key and to the `purpose` encryption context.
//! Ingest (of jobs and of platform events), the replay of ingest
//! failures, redrive and the prober get neither, nor the variables that
//! name them. The platform events ingest may read subscriptions and send
//! to the DeliveryQueue and its dead-letter queue, and nothing else. Every `UpdateItem` limited
//! to some attributes may read back only what it writes.

use std::collections::BTreeSet;

use serde_yaml::{Mapping, Value};
use shared::storage::keyring::KEY_PURPOSE;
use test_kit::stack::ids;

/// Function resource types whose `Policies` this test reads.
const FUNCTION_TYPES: [&str; 2] = ["AWS::Serverless::Function", "AWS::Lambda::Function"];
/// Resource types that could grant permissions outside a function's own
/// `Policies`.
const IAM_TYPES: [&str; 4] = [
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::RolePolicy",
];

fn template() -> Value {
    let path = local_infra::cloudformation::template_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn resources(template: &Value) -> &Mapping {
    template["Resources"]
        .as_mapping()
        .expect("the template has Resources")
}

fn of_type<'a>(template: &'a Value, types: &[&str]) -> Vec<(&'a str, &'a Value)> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"].as_str().is_some_and(|t| types.contains(&t)))
        .map(|(id, r)| (id.as_str().expect("resource ids are strings"), r))
        .collect()
}

/// A string or a list of strings, as IAM writes `Action`.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether an IAM action pattern (`*` and `?` wildcards, case-insensitive)
/// matches `action`.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn matches(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], a) || (!a.is_empty() && matches(p, &a[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => matches(&p[1..], &a[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), action.as_bytes())
}

/// The statements of a function's inline policies. A SAM policy template
/// or a managed policy is reported as an opaque entry, which the checks
/// below refuse where they cannot see inside.
fn statements(function: &Value) -> (Vec<&Value>, Vec<String>) {
    let mut statements = Vec::new();
    let mut opaque = Vec::new();
    for policy in function["Properties"]["Policies"]
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        match policy.get("Statement").and_then(Value::as_sequence) {
            Some(list) => statements.extend(list),
            None => opaque.push(format!("{policy:?}")),
        }
    }
    (statements, opaque)
}

fn grants(statement: &Value, action: &str) -> bool {
    statement["Effect"].as_str() == Some("Allow")
        && (strings(&statement["Action"])
            .iter()
            .any(|p| action_matches(p, action))
            || !statement["NotAction"].is_null())
}

/// Whether `value` names resource `id` (`!Ref`, `!GetAtt` or inside a
/// `!Sub`, anywhere in it).
fn names_resource(value: &Value, id: &str) -> bool {
    match value {
        Value::String(s) => {
            s == id
                || s.starts_with(&format!("{id}."))
                || s.contains(&format!("${{{id}}}"))
                || s.contains(&format!("${{{id}."))
        }
        Value::Tagged(tagged) => names_resource(&tagged.value, id),
        Value::Sequence(items) => items.iter().any(|v| names_resource(v, id)),
        Value::Mapping(map) => map.values().any(|v| names_resource(v, id)),
        _ => false,
    }
}

/// Functions (by resource id) with a statement granting `action`.
fn functions_granted(template: &Value, action: &str) -> BTreeSet<String> {
    of_type(template, &FUNCTION_TYPES)
        .into_iter()
        .filter(|(_, f)| statements(f).0.into_iter().any(|s| grants(s, action)))
        .map(|(id, _)| id.to_owned())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn only_the_api_delivery_and_secret_keys_functions_may_decrypt_signing_secrets() {
    let template = template();
    assert_eq!(
        functions_granted(&template, "kms:Decrypt"),
        set(&[
            ids::API_FUNCTION,
            ids::DELIVERY_FUNCTION,
            ids::SECRET_KEYS_FUNCTION
        ]),
    );
    assert_eq!(
        functions_granted(&template, "kms:GenerateDataKey"),
        set(&[ids::SECRET_KEYS_FUNCTION]),
    );
    // The policies this test reads are the only ones: no opaque policy
    // template or managed policy on a function, no IAM resource beside them.
    for (id, function) in of_type(&template, &FUNCTION_TYPES) {
        let (_, opaque) = statements(function);
        assert!(
            opaque.is_empty(),
            "{id} has policies this test cannot read: {opaque:?}"
        );
        assert!(
            function["Properties"]["Role"].is_null(),
            "{id} names its own role"
        );
    }
    assert_eq!(of_type(&template, &IAM_TYPES), Vec::new());
    assert!(
        template["Globals"]["Function"]["Policies"].is_null(),
        "global policies would reach every function"
    );
}

#[test]
fn every_kms_statement_is_bound_to_the_signing_secrets_key_and_its_purpose() {
    let template = template();
    let mut seen = 0;
    for (id, function) in of_type(&template, &FUNCTION_TYPES) {
        for statement in statements(function).0 {
            if !strings(&statement["Action"])
                .iter()
                .any(|a| a.to_ascii_lowercase().starts_with("kms:"))
            {
                continue;
            }
            seen += 1;
            assert!(
                names_resource(&statement["Resource"], ids::SIGNING_SECRETS_KEY),
                "{id}: a KMS statement on another resource: {statement:?}"
            );
            assert_eq!(
                statement["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"].as_str(),
                Some(KEY_PURPOSE),
                "{id}: a KMS statement without the purpose condition: {statement:?}"
            );
            for action in strings(&statement["Action"]) {
                assert!(
                    ["kms:Decrypt", "kms:GenerateDataKey"].contains(&action),
                    "{id}: KMS action {action} beyond unwrapping and generating data keys"
                );
            }
        }
    }
    assert_eq!(seen, 3, "one KMS statement per function that may decrypt");
}

#[test]
fn ingest_platform_ingest_replay_redrive_and_the_prober_cannot_reach_the_keyring_or_its_key() {
    let template = template();
    let resources = resources(&template);
    for id in [
        ids::INGEST_FUNCTION,
        ids::PLATFORM_INGEST_FUNCTION,
        ids::INGEST_REPLAY_FUNCTION,
        ids::REDRIVE_FUNCTION,
        ids::PROBER_FUNCTION,
    ] {
        let function = &resources[id];
        assert!(function.is_mapping(), "the template has {id}");
        for statement in statements(function).0 {
            assert!(
                !names_resource(&statement["Resource"], ids::KEYRING_TABLE)
                    && !names_resource(&statement["Resource"], ids::SIGNING_SECRETS_KEY),
                "{id} may touch the keyring: {statement:?}"
            );
            assert!(
                !strings(&statement["Action"])
                    .iter()
                    .any(|a| a.to_ascii_lowercase().starts_with("kms:") || *a == "*"),
                "{id} has a KMS action: {statement:?}"
            );
        }
        let env = &function["Properties"]["Environment"]["Variables"];
        for var in ["KEYRING_TABLE", "SECRETS_KMS_KEY_ID"] {
            assert!(env[var].is_null(), "{id} is given {var}");
        }
    }
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert!(globals["KEYRING_TABLE"].is_null() && globals["SECRETS_KMS_KEY_ID"].is_null());
}

#[test]
fn only_secret_keys_writes_the_keyring_which_the_deploy_starts_through_it() {
    let template = template();
    let writes = [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    ];
    let mut writers = BTreeSet::new();
    for (id, function) in of_type(&template, &FUNCTION_TYPES) {
        for statement in statements(function).0 {
            if names_resource(&statement["Resource"], ids::KEYRING_TABLE)
                && writes.iter().any(|w| grants(statement, w))
            {
                writers.insert(id.to_owned());
            }
        }
    }
    assert_eq!(writers, set(&[ids::SECRET_KEYS_FUNCTION]));
    // The public API reads the keyring and unwraps its data keys: nothing
    // else, so it can neither overwrite a key nor make one.
    for statement in statements(&resources(&template)[ids::API_FUNCTION]).0 {
        for action in [
            "kms:GenerateDataKey",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:Encrypt",
            "kms:ReEncryptTo",
        ] {
            assert!(
                !grants(statement, action),
                "the API may {action}: {statement:?}"
            );
        }
        if names_resource(&statement["Resource"], ids::KEYRING_TABLE) {
            assert_eq!(strings(&statement["Action"]), ["dynamodb:Scan"]);
        }
    }
    // A new stack's keyring is started by its deploy, through secret-keys.
    let starts: Vec<&str> = resources(&template)
        .iter()
        .filter(|(_, r)| {
            r["Type"]
                .as_str()
                .is_some_and(|t| t.starts_with("Custom::"))
                && names_resource(&r["Properties"]["ServiceToken"], ids::SECRET_KEYS_FUNCTION)
        })
        .filter_map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(starts, ["SigningKeyring"]);
}

#[test]
fn every_attribute_limited_update_reads_back_only_what_it_may() {
    let template = template();
    let mut seen = 0;
    for (id, function) in of_type(&template, &FUNCTION_TYPES) {
        for statement in statements(function).0 {
            let condition = &statement["Condition"];
            if condition["ForAllValues:StringEquals"]["dynamodb:Attributes"].is_null() {
                continue;
            }
            seen += 1;
            let returned = strings(&condition["StringEqualsIfExists"]["dynamodb:ReturnValues"]);
            assert!(
                !returned.is_empty()
                    && returned
                        .iter()
                        .all(|r| ["NONE", "UPDATED_NEW", "UPDATED_OLD"].contains(r)),
                "{id}: an attribute-limited statement must bound ReturnValues to what it writes: {statement:?}"
            );
        }
    }
    assert_eq!(
        seen, 3,
        "delivery, prober and secret-keys update some attributes"
    );
}

/// The checks above see through the ways a policy could grant decryption.
#[test]
fn the_checks_catch_wildcards_and_every_resource_form() {
    for pattern in [
        "kms:Decrypt",
        "kms:*",
        "KMS:decrypt",
        "kms:De*",
        "*",
        "kms:Decryp?",
    ] {
        assert!(action_matches(pattern, "kms:Decrypt"), "{pattern}");
    }
    for pattern in [
        "kms:Encrypt",
        "kms:GenerateDataKey",
        "dynamodb:*",
        "kms:Decrypt2",
    ] {
        assert!(!action_matches(pattern, "kms:Decrypt"), "{pattern}");
    }
    let statement: Value = serde_yaml::from_str(
        "{Effect: Allow, NotAction: dynamodb:Query, Resource: !GetAtt SigningSecretsKey.Arn}",
    )
    .unwrap();
    assert!(
        grants(&statement, "kms:Decrypt"),
        "NotAction grants the rest"
    );
    for resource in [
        "!GetAtt KeyringTable.Arn",
        "!Ref KeyringTable",
        "!Sub '${KeyringTable.Arn}/index/*'",
        "[!GetAtt KeyringTable.Arn]",
    ] {
        let value: Value = serde_yaml::from_str(resource).unwrap();
        assert!(names_resource(&value, ids::KEYRING_TABLE), "{resource}");
    }
    let other: Value = serde_yaml::from_str("!GetAtt KeyringTableCopy.Arn").unwrap();
    assert!(!names_resource(&other, ids::KEYRING_TABLE));
}

#[test]
fn platform_events_ingest_queries_subscriptions_and_sends_to_its_two_queues_only() {
    let template = template();
    let function = &resources(&template)[ids::PLATFORM_INGEST_FUNCTION];
    let (statements, opaque) = statements(function);
    assert!(opaque.is_empty());
    let mut grants: Vec<(String, Vec<&str>)> = Vec::new();
    for statement in statements {
        assert_eq!(statement["Effect"].as_str(), Some("Allow"));
        assert!(statement["NotAction"].is_null() && statement["NotResource"].is_null());
        let targets: Vec<&str> = [
            ids::SUBSCRIPTIONS_TABLE,
            ids::DELIVERY_QUEUE,
            ids::PLATFORM_EVENTS_DEAD_LETTER_QUEUE,
        ]
        .into_iter()
        .filter(|id| names_resource(&statement["Resource"], id))
        .collect();
        for action in strings(&statement["Action"]) {
            grants.push((action.to_owned(), targets.clone()));
        }
    }
    grants.sort();
    assert_eq!(
        grants,
        vec![
            ("dynamodb:Query".to_owned(), vec![ids::SUBSCRIPTIONS_TABLE]),
            ("sqs:SendMessage".to_owned(), vec![ids::DELIVERY_QUEUE]),
            (
                "sqs:SendMessage".to_owned(),
                vec![ids::PLATFORM_EVENTS_DEAD_LETTER_QUEUE]
            ),
        ]
    );
    // Its source is the queue, reported item by item.
    let events = &function["Properties"]["Events"];
    let sources: Vec<&Value> = events
        .as_mapping()
        .map(|m| m.values().collect())
        .unwrap_or_default();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["Type"].as_str(), Some("SQS"));
    assert!(names_resource(
        &sources[0]["Properties"]["Queue"],
        ids::PLATFORM_EVENTS_QUEUE
    ));
    assert_eq!(
        strings(&sources[0]["Properties"]["FunctionResponseTypes"]),
        ["ReportBatchItemFailures"]
    );
}
