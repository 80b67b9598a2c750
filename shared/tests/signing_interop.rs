//! An independent Standard Webhooks implementation (the `standardwebhooks`
//! package from PyPI, installed in the project's .venv) verifies our
//! signatures with the `whsec_` form of the secret.

use std::io::Write;
use std::process::{Command, Stdio};

use shared::signing::secret::WebhookSecret;
use shared::signing::{Signer, signature_header};

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

fn verify_with_standardwebhooks(
    id: &str,
    ts: i64,
    sig: &str,
    body: &str,
    secrets: &[String],
) -> Vec<bool> {
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
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn standardwebhooks_verifies_our_signatures() {
    let current = WebhookSecret::generate();
    let previous = WebhookSecret::generate();
    let stranger = WebhookSecret::generate();
    let body = r#"{"type":"job.completed","data":{"job_id":"j-1","note":"ünïcödé"}}"#;
    let ts = chrono::Utc::now().timestamp();
    let signers = [Signer::for_secret(&current), Signer::for_secret(&previous)];
    let sig = signature_header(&signers, "evt_0123", ts, body.as_bytes());
    let results = verify_with_standardwebhooks(
        "evt_0123",
        ts,
        &sig,
        body,
        &[
            current.standard_webhooks_form(),
            previous.standard_webhooks_form(),
            stranger.standard_webhooks_form(),
        ],
    );
    assert_eq!(results, [true, true, false]);

    // A tampered body fails there too.
    let results = verify_with_standardwebhooks(
        "evt_0123",
        ts,
        &sig,
        &body.replace("j-1", "j-2"),
        &[current.standard_webhooks_form()],
    );
    assert_eq!(results, [false]);
}
