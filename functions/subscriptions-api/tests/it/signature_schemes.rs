//! Signature schemes through the API: a subscription signs with `v1`
//! (HMAC, the default), `v1a` (Ed25519) or both, chosen on create and
//! PATCH; the v1a public key is shown on every read, the v1 secret only
//! when v1 signs, and rotation replaces both.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde_json::{Value, json};
use shared::signing::ed25519::PublicKey;
use test_kit::api::ApiRequest;

use crate::common::{Fixture, Reply, error_of};

const URL: &str = "https://hooks.example.com/jobs";

/// The 32 bytes of a `whpk_` public key in a response.
fn public_key_of(body: &Value) -> PublicKey {
    let text = body["public_key"].as_str().expect("a public key");
    let raw = STANDARD
        .decode(text.strip_prefix("whpk_").expect("whpk_ prefix"))
        .unwrap();
    assert_eq!(raw.len(), 32, "{text}");
    PublicKey::from_standard_webhooks_form(text).unwrap()
}

async fn patch(f: &Fixture, id: &str, body: Value) -> Reply {
    f.call(ApiRequest::new("PATCH", &format!("/webhooks/{id}"), "acme").json(&body))
        .await
}

#[tokio::test]
async fn schemes_are_chosen_on_create_and_the_public_key_is_shown_on_every_read() {
    let f = Fixture::new().await;

    let v1 = f.create("acme", json!({"url": URL})).await;
    assert_eq!(v1["signature_schemes"], json!(["v1"]), "the default");
    assert!(v1["secret"].is_string() && v1["standard_webhooks_secret"].is_string());
    assert!(v1.get("public_key").is_none());

    let v1a = f
        .create("acme", json!({"url": URL, "signature_schemes": ["v1a"]}))
        .await;
    assert_eq!(v1a["signature_schemes"], json!(["v1a"]));
    assert!(
        v1a.get("secret").is_none() && v1a.get("standard_webhooks_secret").is_none(),
        "no v1 secret without v1: {v1a}"
    );
    let key = public_key_of(&v1a);
    let id = v1a["id"].as_str().unwrap();

    let read = f.get("acme", &format!("/webhooks/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(public_key_of(&read.body), key);
    assert!(read.body.get("secret").is_none());
    let list = f.get("acme", "/webhooks").await;
    let listed = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap();
    assert_eq!(public_key_of(listed), key);

    // Stored: the public key in the clear, the secret key sealed.
    let sub = f.store.get("acme", id).await.unwrap().unwrap();
    let stored = sub.signing_key.as_ref().expect("a key pair");
    assert_eq!(stored.public_key, key.standard_webhooks_form());
    let opened = stored
        .open(&f.vault.current(), sub.secret_owner())
        .expect("sealed for the subscription");
    assert_eq!(opened.public_key(), key);
    assert!(
        !stored
            .sealed
            .ciphertext
            .contains(&opened.standard_webhooks_form()[5..])
    );
    assert_eq!(sub.verifying_keys(Utc::now()), [key]);

    let both = f
        .create(
            "acme",
            json!({"url": URL, "signature_schemes": ["v1a", "v1"]}),
        )
        .await;
    assert_eq!(
        both["signature_schemes"],
        json!(["v1", "v1a"]),
        "header order"
    );
    assert!(both["secret"].is_string());
    assert_ne!(public_key_of(&both), key, "a key pair per subscription");
}

#[tokio::test]
async fn rotation_replaces_the_key_pair_and_the_old_one_verifies_during_the_grace() {
    let f = Fixture::new().await;
    let created = f
        .create("acme", json!({"url": URL, "signature_schemes": ["v1a"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let old = public_key_of(&created);

    let rotated = f
        .call(
            ApiRequest::new("POST", &format!("/webhooks/{id}/rotate-secret"), "acme")
                .json(&json!({"grace_period_seconds": 3600})),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new = public_key_of(&rotated.body);
    assert_ne!(new, old);
    assert!(rotated.body.get("secret").is_none(), "{}", rotated.body);
    assert!(rotated.body["previous_secret_expires_at"].is_string());

    let sub = f.store.get("acme", id).await.unwrap().unwrap();
    let now = Utc::now();
    assert_eq!(sub.verifying_keys(now), [new, old]);
    assert_eq!(
        sub.verifying_keys(now + chrono::Duration::hours(1)),
        [new],
        "the old key stops after the grace period"
    );
    let read = f.get("acme", &format!("/webhooks/{id}")).await;
    assert_eq!(public_key_of(&read.body), new);

    // Without grace, the old key pair goes at once.
    let rotated = f
        .call(
            ApiRequest::new("POST", &format!("/webhooks/{id}/rotate-secret"), "acme")
                .json(&json!({"grace_period_seconds": 0})),
        )
        .await;
    let newest = public_key_of(&rotated.body);
    let sub = f.store.get("acme", id).await.unwrap().unwrap();
    assert_eq!(sub.verifying_keys(Utc::now()), [newest]);
    assert!(sub.previous_signing_key.is_none());
}

#[tokio::test]
async fn patch_changes_the_schemes_and_a_secret_that_starts_signing_again_is_new() {
    let f = Fixture::new().await;
    let created = f.create("acme", json!({"url": URL})).await;
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();

    let r = patch(&f, id, json!({"signature_schemes": ["v1", "v1a"]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["signature_schemes"], json!(["v1", "v1a"]));
    assert_eq!(r.body["version"], 2);
    let key = public_key_of(&r.body);
    assert!(r.body.get("secret").is_none(), "v1 signed already");

    let r = patch(&f, id, json!({"signature_schemes": ["v1a"]})).await;
    assert_eq!(r.body["signature_schemes"], json!(["v1a"]));
    assert_eq!(public_key_of(&r.body), key, "the key pair is kept");
    let same = patch(&f, id, json!({"signature_schemes": ["v1a"]})).await;
    assert_eq!(
        same.body["version"], r.body["version"],
        "no change, no write"
    );

    let r = patch(&f, id, json!({"signature_schemes": ["v1a", "v1"]})).await;
    assert_eq!(r.body["signature_schemes"], json!(["v1", "v1a"]));
    // v1 signs again with a new secret, shown once as on creation: a
    // secret shown before is never shown again.
    let renewed = r.body["secret"].as_str().expect("a new secret");
    assert_ne!(renewed, secret);
    assert!(r.body["standard_webhooks_secret"].is_string());
    let sub = f.store.get("acme", id).await.unwrap().unwrap();
    assert_eq!(
        f.opened(&sub, Utc::now()),
        [renewed],
        "only the new one signs"
    );

    let r = patch(&f, id, json!({"signature_schemes": ["v1"]})).await;
    assert!(r.body.get("public_key").is_none(), "{}", r.body);
    let sub = f.store.get("acme", id).await.unwrap().unwrap();
    assert!(sub.verifying_keys(Utc::now()).is_empty());
    let read = f.get("acme", &format!("/webhooks/{id}")).await;
    assert_eq!(read.body["signature_schemes"], json!(["v1"]));
}

#[tokio::test]
async fn other_schemes_are_refused_naming_the_field_and_the_allowed_values() {
    let f = Fixture::new().await;
    let id = f.create_id("acme").await;
    let cases = [
        (
            json!(["v2"]),
            "invalid_signature_schemes",
            "signature_schemes[0]",
        ),
        (json!([]), "invalid_signature_schemes", "signature_schemes"),
        (
            json!(["v1", "v1"]),
            "invalid_signature_schemes",
            "signature_schemes[1]",
        ),
        (
            json!(["v1", "ed25519"]),
            "invalid_signature_schemes",
            "signature_schemes[1]",
        ),
    ];
    for (schemes, code, field) in &cases {
        let create = f
            .call(
                ApiRequest::new("POST", "/webhooks", "acme")
                    .json(&json!({"url": URL, "signature_schemes": schemes})),
            )
            .await;
        assert_eq!(error_of(&create), (400, *code, Some(*field)), "{schemes}");
        let message = create.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(r#"["v1", "v1a"]"#), "{message}");
        let update = patch(&f, &id, json!({"signature_schemes": schemes})).await;
        assert_eq!(error_of(&update), (400, *code, Some(*field)), "{schemes}");
    }
    for (body, field) in [
        (json!({"signature_schemes": "v1"}), "signature_schemes"),
        (json!({"signature_schemes": null}), "signature_schemes"),
        (json!({"signature_schemes": [1]}), "signature_schemes[0]"),
    ] {
        let r = patch(&f, &id, body.clone()).await;
        assert_eq!(error_of(&r), (400, "invalid_type", Some(field)), "{body}");
    }
    let sub = f.store.get("acme", &id).await.unwrap().unwrap();
    assert_eq!(sub.version, 1, "nothing was written");
}
