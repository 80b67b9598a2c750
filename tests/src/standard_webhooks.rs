//! An independent Standard Webhooks implementation: the `standardwebhooks`
//! package from PyPI, run by the project's `.venv` Python (installed by
//! `make tools`), verifying deliveries with `whsec_` secrets.

use std::io::Write;
use std::process::{Command, Stdio};

const VERIFY: &str = r#"
import json, sys
from standardwebhooks import Webhook
case = json.load(sys.stdin)
headers = {"webhook-id": case["id"], "webhook-timestamp": str(case["ts"]), "webhook-signature": case["sig"]}
results = []
for secret in case["secrets"]:
    try:
        Webhook(secret).verify(case["body"], headers)
        results.append(True)
    except Exception:
        results.append(False)
print(json.dumps(results))
"#;

fn python() -> String {
    format!("{}/../.venv/bin/python", env!("CARGO_MANIFEST_DIR"))
}

/// Whether `standardwebhooks` verifies the delivery (`webhook-id` `id`,
/// `webhook-timestamp` `ts`, `webhook-signature` `sig`, payload `body`)
/// with each of `secrets` (`whsec_` form), in order.
///
/// # Panics
/// When the project's Python cannot run the check.
pub fn verify(id: &str, ts: &str, sig: &str, body: &str, secrets: &[String]) -> Vec<bool> {
    let mut child = Command::new(python())
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the project's .venv python runs (make tools)");
    let case =
        serde_json::json!({"id": id, "ts": ts, "sig": sig, "body": body, "secrets": secrets});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(case.to_string().as_bytes())
        .expect("the case is written");
    let out = child.wait_with_output().expect("python exits");
    assert!(out.status.success(), "python failed");
    serde_json::from_slice(&out.stdout).expect("a JSON list")
}
