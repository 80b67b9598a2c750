//! The README's verification snippets (`docs/snippets/`), run against a
//! real signed delivery to a loopback receiver: Python with the
//! `standardwebhooks` package (v1) and the `cryptography` package (v1a),
//! Node with the `standardwebhooks` npm package (v1) and its own `crypto`
//! (v1a). So our v1a signatures are checked by two Ed25519
//! implementations other than ours, and the README shows code that runs.
//! The tools come from `make tools` (`.venv/`, `docs/snippets/node_modules/`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use shared::signing::SignatureScheme::{V1, V1a};
use shared::signing::ed25519::SigningKey;
use shared::signing::secret::WebhookSecret;

use super::*;

/// The snippet files and the README's language tag for each.
const SNIPPETS: [(&str, &str); 3] = [
    ("verify_v1.py", "python"),
    ("verify_v1a.py", "python"),
    ("verify.mjs", "js"),
];

/// Calls the Python snippets for each `[scheme, key]` of the case on stdin;
/// prints, per key, the verified event's type or `null`.
const PYTHON_RUNNER: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
from verify_v1 import verify_v1
from verify_v1a import verify_v1a
case = json.load(sys.stdin)
verifiers = {"v1": verify_v1, "v1a": verify_v1a}
results = []
for scheme, key in case["keys"]:
    try:
        results.append(verifiers[scheme](key, case["body"].encode(), case["headers"])["type"])
    except Exception:
        results.append(None)
print(json.dumps(results))
"#;

/// The same for the Node snippet.
const NODE_RUNNER: &str = r#"
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const { verifyV1, verifyV1a } = await import(pathToFileURL(process.argv[1]).href);
const kase = JSON.parse(readFileSync(0, "utf8"));
const verifiers = { v1: verifyV1, v1a: verifyV1a };
const results = kase.keys.map(([scheme, key]) => {
  try {
    return verifiers[scheme](key, kase.body, kase.headers).type;
  } catch {
    return null;
  }
});
console.log(JSON.stringify(results));
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn snippets_dir() -> PathBuf {
    repo().join("docs/snippets")
}

/// Runs `program` with `args`, the case on stdin; its JSON answer.
fn run_snippets(program: &PathBuf, args: &[&str], case: &Value) -> Value {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs (make tools): {e}", program.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list")
}

fn python(case: &Value) -> Value {
    let dir = snippets_dir();
    run_snippets(
        &repo().join(".venv/bin/python"),
        &["-c", PYTHON_RUNNER, dir.to_str().unwrap()],
        case,
    )
}

fn node(case: &Value) -> Value {
    let file = snippets_dir().join("verify.mjs");
    run_snippets(
        &PathBuf::from("node"),
        &[
            "--input-type=module",
            "-e",
            NODE_RUNNER,
            file.to_str().unwrap(),
        ],
        case,
    )
}

#[test]
fn the_readme_shows_the_snippet_files_verbatim() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (file, language) in SNIPPETS {
        let code = std::fs::read_to_string(snippets_dir().join(file)).unwrap();
        let block = format!("```{language}\n{code}```\n");
        assert!(
            readme.contains(&block),
            "README.md must show docs/snippets/{file} verbatim in a ```{language} block"
        );
    }
}

#[tokio::test]
async fn the_readme_snippets_verify_a_real_delivery_of_both_schemes_during_a_rotation() {
    let receiver = Receiver::http().await;
    let fx = Fixture::new().await;
    let mut sub = fx
        .subscribe_signing(&receiver.url("/hooks"), &[V1, V1a])
        .await;
    let before = sub.clone();
    let version = sub.version;
    sub.rotate_secret(chrono::Duration::hours(1), Utc::now(), &fx.vault.current())
        .unwrap();
    sub.version += 1;
    fx.store.replace(&sub, version).await.unwrap();

    let (failed, _) = run(&fx.delivery(), vec![fx.event_for(&sub).1]).await;
    assert!(failed.is_empty());
    let req = receiver.wait_for(1, WAIT).await.remove(0);
    let headers: serde_json::Map<String, Value> = req
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().unwrap())))
        .collect();
    assert_eq!(
        req.header("webhook-signature").unwrap().split(' ').count(),
        4,
        "v1 and v1a, each with the new and the previous key"
    );

    let whsec = |s: &Subscription| fx.secret_of(s).standard_webhooks_form();
    let whpk = |s: &Subscription| s.public_key().unwrap().to_owned();
    let keys = json!([
        ["v1", whsec(&sub)],
        ["v1", whsec(&before)],
        ["v1", WebhookSecret::generate().standard_webhooks_form()],
        ["v1a", whpk(&sub)],
        ["v1a", whpk(&before)],
        [
            "v1a",
            SigningKey::generate().public_key().standard_webhooks_form()
        ],
    ]);
    let verified = json!([
        "webhook.test",
        "webhook.test",
        null,
        "webhook.test",
        "webhook.test",
        null
    ]);
    let case = json!({"body": req.body_text(), "headers": headers, "keys": keys});
    let tampered = json!({
        "body": req.body_text().replace("webhook.test", "webhook.tesT"),
        "headers": headers,
        "keys": keys,
    });
    let refused = json!([null, null, null, null, null, null]);
    for (language, run) in [("python", python as fn(&Value) -> Value), ("node", node)] {
        assert_eq!(run(&case), verified, "{language}");
        assert_eq!(run(&tampered), refused, "{language}: a changed body");
    }
}
