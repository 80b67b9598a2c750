//! An independent Standard Webhooks implementation (the `standardwebhooks`
//! package from PyPI, installed in the project's .venv) verifies our
//! signatures with the `whsec_` form of the secret.

use shared::signing::secret::WebhookSecret;
use shared::signing::{Signer, signature_header};
use test_kit::standard_webhooks;

fn verify_with_standardwebhooks(
    id: &str,
    ts: i64,
    sig: &str,
    body: &str,
    secrets: &[String],
) -> Vec<bool> {
    standard_webhooks::verify(id, &ts.to_string(), sig, body, secrets)
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
