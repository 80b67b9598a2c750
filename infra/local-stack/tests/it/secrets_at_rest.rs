//! Signing secrets at rest, through the deployed stack in the emulator (its
//! KMS key and keyring table), the API handler, the delivery runners and a
//! loopback receiver: raw reads of the table never show a secret, the API
//! still returns it once, deliveries verify with `standardwebhooks`, a
//! ciphertext moved to another item fails that delivery without sending
//! it, and key rotation plus re-encryption migrate old and plaintext items.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use local_stack::pipeline::{Pipeline, PipelineConfig};
use secret_keys::{KeysConfig, KeysReport, SecretKeys};
use serde_json::{Value, json};
use shared::domain::subscription::Subscription;
use shared::signing::sealed::StoredSecret;
use shared::signing::secret::WebhookSecret;
use test_kit::api::{ApiRequest, status_and_json};
use test_kit::emulator;
use test_kit::receiver::Receiver;
use test_kit::stack::{self, ids};
use test_kit::standard_webhooks;
use tokio::sync::watch;
use tokio::task::JoinSet;

const WAIT: Duration = Duration::from_secs(30);

type Item = HashMap<String, AttributeValue>;

struct Running {
    /// Every AWS call of the functions, held to their grants in the template.
    audit: test_kit::iam::Audit,
    pipeline: Pipeline,
    dynamo: aws_sdk_dynamodb::Client,
    table: String,
    company: String,
    stop: watch::Sender<bool>,
    runners: JoinSet<()>,
}

impl Running {
    async fn start() -> Self {
        let audit = test_kit::iam::Audit::start();
        let sdk = audit.sdk().await;
        let config = PipelineConfig::isolated(
            &[],
            &[
                ("SUBSCRIPTION_CACHE_TTL_SECONDS", "0"),
                ("KEYRING_REFRESH_SECONDS", "1"),
            ],
        );
        let pipeline = Pipeline::build(&sdk, config).await.unwrap();
        let (stop, shutdown) = watch::channel(false);
        let runners = pipeline.start(shutdown).await.unwrap();
        Self {
            table: pipeline
                .stack
                .table(ids::SUBSCRIPTIONS_TABLE)
                .unwrap()
                .to_owned(),
            pipeline,
            audit,
            dynamo: aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await),
            company: emulator::unique_name("acme"),
            stop,
            runners,
        }
    }

    /// Stops the runners, then checks every AWS call the functions made
    /// against their grants in the template.
    async fn stop(mut self) {
        self.stop.send(true).unwrap();
        while self.runners.join_next().await.is_some() {}
        self.audit.assert_granted(&self.pipeline.stack);
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = ApiRequest::new(method, path, &self.company);
        if let Some(body) = body {
            request = request.json(&body);
        }
        status_and_json(&self.pipeline.app.handle(request.build()).await)
    }

    async fn create(&self, url: &str) -> (String, String) {
        let (status, body) = self
            .api("POST", "/webhooks", Some(json!({"url": url})))
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().unwrap().to_owned(),
            body["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// Every item of the subscriptions table, read raw (no mapping).
    async fn scan(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .dynamo
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .unwrap();
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return items;
            }
        }
    }

    async fn raw(&self, id: &str) -> Item {
        self.dynamo
            .get_item()
            .table_name(&self.table)
            .key("company_id", AttributeValue::S(self.company.clone()))
            .key("subscription_id", AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap()
    }

    async fn keys(&self) -> SecretKeys {
        let vars = self
            .pipeline
            .stack
            .function(ids::SECRET_KEYS_FUNCTION)
            .unwrap()
            .vars_with(&[]);
        // As itself, through the audit, as the other functions call.
        let sdk =
            local_infra::identity::function_sdk(&self.audit.sdk().await, ids::SECRET_KEYS_FUNCTION);
        SecretKeys::new(
            &KeysConfig::from_vars(&vars).unwrap(),
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_kms::Client::new(&sdk),
        )
    }

    async fn invoke_keys(&self, request: Value) -> Value {
        let report = self
            .keys()
            .await
            .handle(request, Instant::now() + Duration::from_secs(120))
            .await
            .unwrap();
        serde_json::to_value(report).unwrap()
    }
}

/// Every string anywhere in `items` that contains one of `needles`.
fn hits(items: &[Item], needles: &[String]) -> Vec<String> {
    fn walk(v: &AttributeValue, needles: &[String], out: &mut Vec<String>) {
        match v {
            AttributeValue::S(s) if needles.iter().any(|n| s.contains(n.as_str())) => {
                out.push(s.clone());
            }
            AttributeValue::M(m) => m.values().for_each(|v| walk(v, needles, out)),
            AttributeValue::L(l) => l.iter().for_each(|v| walk(v, needles, out)),
            AttributeValue::Ss(l) => out.extend(
                l.iter()
                    .filter(|s| needles.iter().any(|n| s.contains(n.as_str())))
                    .cloned(),
            ),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for item in items {
        item.values().for_each(|v| walk(v, needles, &mut out));
    }
    out
}

/// A secret in every form it could be leaked in: as is, `whsec_`, and the
/// bare base64.
fn forms(secret: &str) -> Vec<String> {
    let whsec = WebhookSecret::from_string(secret.to_owned()).standard_webhooks_form();
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    vec![secret.to_owned(), whsec, b64]
}

/// The key version of the `secret` map attribute of `item`.
fn key_version(item: &Item, attribute: &str) -> Option<u32> {
    let map = item.get(attribute)?.as_m().ok()?;
    map.get("key_version")?.as_n().ok()?.parse().ok()
}

#[tokio::test]
async fn the_table_holds_no_secret_the_api_returns_it_once_and_deliveries_verify() {
    let fx = Running::start().await;
    let receiver = Receiver::http().await;
    let (id, first) = fx.create(&receiver.url("/hook")).await;

    // Raw reads: only a sealed map, version 1.
    let item = fx.raw(&id).await;
    assert!(item["secret"].is_m(), "{:?}", item["secret"]);
    assert_eq!(key_version(&item, "secret"), Some(1));
    assert!(hits(&fx.scan().await, &forms(&first)).is_empty());
    let (status, got) = fx.api("GET", &format!("/webhooks/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(got.get("secret").is_none() && got.get("standard_webhooks_secret").is_none());

    // Rotation returns the new secret once; neither is readable at rest.
    let (status, rotated) = fx
        .api(
            "POST",
            &format!("/webhooks/{id}/rotate-secret"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let item = fx.raw(&id).await;
    assert_eq!(key_version(&item, "previous_secret"), Some(1));
    let mut needles = forms(&first);
    needles.extend(forms(&second));
    assert!(hits(&fx.scan().await, &needles).is_empty());

    // A delivery during the grace period verifies with both secrets in an
    // independent Standard Webhooks library.
    let (status, _) = fx.api("POST", &format!("/webhooks/{id}/test"), None).await;
    assert_eq!(status, 202);
    let got = &receiver.wait_for(1, WAIT).await[0];
    let verified = standard_webhooks::verify(
        got.header("webhook-id").unwrap(),
        got.header("webhook-timestamp").unwrap(),
        got.header("webhook-signature").unwrap(),
        &got.body_text(),
        &[
            rotated["standard_webhooks_secret"]
                .as_str()
                .unwrap()
                .to_owned(),
            WebhookSecret::from_string(first.clone()).standard_webhooks_form(),
            WebhookSecret::generate().standard_webhooks_form(),
        ],
    );
    assert_eq!(verified, [true, true, false]);
    fx.stop().await;
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_item_fails_that_delivery_unsent() {
    let fx = Running::start().await;
    let receiver = Receiver::http().await;
    let (from, _) = fx.create(&receiver.url("/from")).await;
    let (to, _) = fx.create(&receiver.url("/to")).await;
    // Someone with write access copies one subscription's sealed secret
    // into another item.
    let sealed = fx.raw(&from).await["secret"].clone();
    fx.dynamo
        .update_item()
        .table_name(&fx.table)
        .key("company_id", AttributeValue::S(fx.company.clone()))
        .key("subscription_id", AttributeValue::S(to.clone()))
        .update_expression("SET secret = :s")
        .expression_attribute_values(":s", sealed)
        .send()
        .await
        .unwrap();

    let (status, _) = fx.api("POST", &format!("/webhooks/{to}/test"), None).await;
    assert_eq!(status, 202);
    let (status, _) = fx
        .api("POST", &format!("/webhooks/{from}/test"), None)
        .await;
    assert_eq!(status, 202);
    // The intact subscription's event arrives; the other one's attempt is
    // logged as failed, and nothing signed with the wrong key went out.
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].path, "/from");
    let deadline = Instant::now() + WAIT;
    let attempt = loop {
        let (_, log) = fx
            .api("GET", &format!("/webhooks/{to}/deliveries"), None)
            .await;
        if let Some(first) = log["data"].as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no attempt logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(attempt["outcome"], "failed", "{attempt}");
    assert_eq!(attempt["error"], "secret_unreadable", "{attempt}");
    assert!(
        receiver.received().iter().all(|r| r.path != "/to"),
        "a delivery signed with another subscription's key was sent"
    );
    fx.stop().await;
}

#[tokio::test]
async fn key_rotation_keeps_old_items_readable_and_reencryption_migrates_every_item_once() {
    let fx = Running::start().await;
    let receiver = Receiver::http().await;
    let (old, old_secret) = fx.create(&receiver.url("/old")).await;
    // A v1a key pair and custom header values are sealed like the secrets,
    // and re-encrypted with them.
    let header_value = "hdr-value-5c81e2a9".to_owned();
    let v1a_body = json!({
        "url": receiver.url("/v1a"),
        "signature_schemes": ["v1", "v1a"],
        "headers": {"x-api-key": header_value},
    });
    let (status, v1a) = fx.api("POST", "/webhooks", Some(v1a_body)).await;
    assert_eq!(status, 201, "{v1a}");
    let (v1a_id, v1a_public) = (v1a["id"].as_str().unwrap(), &v1a["public_key"]);
    // A PagerDuty format's routing key too.
    let routing_key = "R0ut1ngKey5c81e2a9".to_owned();
    let pagerduty_body = json!({
        "url": receiver.url("/v2/enqueue"),
        "format": {"type": "pagerduty", "routing_key": routing_key},
    });
    let (status, pagerduty) = fx.api("POST", "/webhooks", Some(pagerduty_body)).await;
    assert_eq!(status, 201, "{pagerduty}");
    let pagerduty_id = pagerduty["id"].as_str().unwrap().to_owned();

    // An item from before encryption at rest: its secret in the clear.
    let legacy_secret = WebhookSecret::generate();
    let mut legacy: Subscription = serde_dynamo::aws_sdk_dynamodb_1::from_item(fx.raw(&old).await)
        .expect("a subscription item");
    legacy.subscription_id = shared::domain::subscription::new_subscription_id();
    legacy.secret = StoredSecret::Plaintext(legacy_secret.clone());
    let item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(&legacy).unwrap();
    assert_eq!(
        item["secret"],
        AttributeValue::S(legacy_secret.expose().to_owned())
    );
    fx.dynamo
        .put_item()
        .table_name(&fx.table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    assert_eq!(
        hits(&fx.scan().await, &forms(legacy_secret.expose())).len(),
        1
    );

    // A new key version; items of version 1 still open and deliver.
    let rotated = fx.invoke_keys(json!({"action": "rotate"})).await;
    assert_eq!(rotated["key_version"], 2, "{rotated}");
    assert_eq!(rotated["versions"], json!([1, 2]));
    let (status, _) = fx.api("POST", &format!("/webhooks/{old}/test"), None).await;
    assert_eq!(status, 202);
    let got = &receiver.wait_for(1, WAIT).await[0];
    assert_eq!(
        standard_webhooks::verify(
            got.header("webhook-id").unwrap(),
            got.header("webhook-timestamp").unwrap(),
            got.header("webhook-signature").unwrap(),
            &got.body_text(),
            &[WebhookSecret::from_string(old_secret.clone()).standard_webhooks_form()],
        ),
        [true]
    );
    // The legacy item delivers too (its plaintext secret is read as is).
    let path = format!("/webhooks/{}/test", legacy.subscription_id);
    assert_eq!(fx.api("POST", &path, None).await.0, 202);
    assert_eq!(receiver.wait_for(2, WAIT).await.len(), 2);

    // New writes use the newest version once the API's keyring refreshed
    // (KEYRING_REFRESH_SECONDS=1 here).
    let deadline = Instant::now() + WAIT;
    let (fresh, _) = loop {
        let created = fx.create(&receiver.url("/new")).await;
        if key_version(&fx.raw(&created.0).await, "secret") == Some(2) {
            break created;
        }
        assert!(Instant::now() < deadline, "new writes still use version 1");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // A dry run counts and writes nothing.
    let dry = fx
        .invoke_keys(json!({"action": "reencrypt", "dry_run": true}))
        .await;
    assert_eq!(dry["done"], true, "{dry}");
    assert!(dry["plaintext_sealed"].as_u64().unwrap() >= 1, "{dry}");
    assert_eq!(
        hits(&fx.scan().await, &forms(legacy_secret.expose())).len(),
        1
    );

    // A pass in steps of one item, resumed until done.
    let mut request = json!({"action": "reencrypt", "limit": 1});
    let mut resealed = 0;
    let mut plaintext = 0;
    let mut invocations = 0;
    loop {
        let report = fx.invoke_keys(request.clone()).await;
        invocations += 1;
        assert!(report["scanned"].as_u64().unwrap() <= 1, "{report}");
        assert_eq!(report["unreadable"], 0, "{report}");
        resealed += report["resealed"].as_u64().unwrap();
        plaintext += report["plaintext_sealed"].as_u64().unwrap();
        if report["done"] == true {
            break;
        }
        request["resume_after"] = report["resume_after"].clone();
        assert!(invocations < 1000, "the pass never ends");
    }
    assert!(invocations > 1);
    assert!(resealed >= 2, "the version-1 item and the plaintext one");
    assert!(plaintext >= 1);

    // No plaintext and no old version left; every secret still opens to
    // what the customer holds.
    let items = fx.scan().await;
    assert!(hits(&items, &forms(legacy_secret.expose())).is_empty());
    assert!(hits(&items, &forms(&old_secret)).is_empty());
    for item in items.iter().filter(|i| {
        i["subscription_id"]
            .as_s()
            .is_ok_and(|s| s.starts_with("sub_"))
    }) {
        assert!(item["secret"].is_m(), "{:?}", item["secret"]);
        assert_eq!(key_version(item, "secret"), Some(2), "{item:?}");
    }
    let keyring = stack::secret_vault(&fx.pipeline.stack).await.current();
    let opened = |item: Item| {
        let sub: Subscription = serde_dynamo::aws_sdk_dynamodb_1::from_item(item).unwrap();
        keyring
            .open_stored(&sub.secret, sub.secret_owner())
            .unwrap()
            .expose()
            .to_owned()
    };
    assert_eq!(
        opened(fx.raw(&legacy.subscription_id).await),
        legacy_secret.expose()
    );
    assert_eq!(opened(fx.raw(&old).await), old_secret);
    let v1a_sub: Subscription = serde_dynamo::aws_sdk_dynamodb_1::from_item(fx.raw(v1a_id).await)
        .expect("a subscription item");
    let key_pair = v1a_sub.signing_key.as_ref().expect("a key pair");
    assert_eq!(key_pair.sealed.key_version, 2, "re-encrypted");
    let opened_key = key_pair.open(&keyring, v1a_sub.secret_owner()).unwrap();
    assert_eq!(
        json!(opened_key.public_key().standard_webhooks_form()),
        *v1a_public
    );
    assert_eq!(
        v1a_sub.headers.key_versions().collect::<Vec<_>>(),
        [2],
        "header values re-encrypted"
    );
    let headers = v1a_sub
        .headers
        .open(&keyring, v1a_sub.secret_owner())
        .unwrap();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [("x-api-key", header_value.as_str())]
    );
    assert!(
        hits(&items, &forms(&header_value)).is_empty(),
        "never in the clear"
    );
    assert_eq!(key_version(&fx.raw(&fresh).await, "secret"), Some(2));
    let pagerduty_sub: Subscription =
        serde_dynamo::aws_sdk_dynamodb_1::from_item(fx.raw(&pagerduty_id).await)
            .expect("a subscription item");
    assert_eq!(
        pagerduty_sub.format.key_version(),
        Some(2),
        "routing key re-encrypted"
    );
    match pagerduty_sub.open_format(&keyring).unwrap() {
        shared::format::Format::Pagerduty(options) => assert_eq!(options.routing_key, routing_key),
        other => panic!("{other:?}"),
    }
    assert!(
        hits(&items, &forms(&routing_key)).is_empty(),
        "never in the clear"
    );

    // Idempotent: a second pass changes nothing.
    let again = fx.invoke_keys(json!({"action": "reencrypt"})).await;
    assert_eq!(again["done"], true);
    assert_eq!(again["resealed"], 0, "{again}");
    assert_eq!(again["already_current"], again["scanned"], "{again}");
    fx.stop().await;
}

#[tokio::test]
async fn an_unknown_request_is_refused() {
    let fx = Running::start().await;
    let keys = fx.keys().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for bad in [
        json!({"action": "delete-everything"}),
        json!({"action": "reencrypt", "resume_afer": null}),
        json!({}),
    ] {
        let err = keys.handle(bad.clone(), deadline).await.unwrap_err();
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "InvalidRequest", "{bad}");
    }
    assert!(matches!(
        keys.handle(json!({"action": "rotate"}), deadline).await,
        Ok(KeysReport::Rotated(_))
    ));
    fx.stop().await;
}
