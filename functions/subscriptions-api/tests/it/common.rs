//! The app under test against the local AWS emulator, shared by the API
//! test files: fresh tables and a fresh delivery queue per fixture.

// Each test file uses its own subset of the helpers.

use serde_json::{Value, json};
use std::sync::Arc;

use shared::domain::subscription::Subscription;
use shared::storage::deliveries::DeliveryLog;
use shared::storage::keyring::SecretVault;
use shared::storage::subscriptions::SubscriptionStore;
use shared::target_guard::allow_list::AllowList;
use subscriptions_api::{ApiConfig, App};
use test_kit::api::ApiRequest;
use test_kit::aws_proxy::AwsProxy;
use test_kit::emulator;
use test_kit::stack::{self, ids};

pub const CURSOR_KEY: &[u8] = b"integration-test-cursor-signing-key-0123456789";

pub struct Fixture {
    pub app: App,
    /// The app's configuration, to build another app on the same tables.
    pub config: ApiConfig,
    pub store: SubscriptionStore,
    pub log: DeliveryLog,
    pub sqs: aws_sdk_sqs::Client,
    /// The stack's signing-secret keyring.
    pub vault: Arc<SecretVault>,
    /// The fresh delivery queue (the app's, unless a test pointed it
    /// elsewhere).
    pub queue_url: String,
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with_claim(claim: &str) -> Self {
        Self::with(|c| c.company_claim = claim.to_owned()).await
    }

    pub async fn with_allow_list(list: &str) -> Self {
        let list = AllowList::parse(list).expect("valid allow-list");
        Self::with(|c| c.allow_list = list).await
    }

    /// A fixture whose configuration `tweak` adjusts before the app is
    /// built.
    pub async fn with(tweak: impl FnOnce(&mut ApiConfig)) -> Self {
        let sdk = emulator::sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        // A stack of its own; the API function's deployed configuration
        // with a test cursor key (the emulator resolves no secret).
        let stack = stack::deploy().await;
        let key = std::str::from_utf8(CURSOR_KEY).unwrap().to_owned();
        let mut config = ApiConfig::from_vars(
            &stack
                .function(ids::API_FUNCTION)
                .unwrap()
                .vars_with(&[("CURSOR_SIGNING_KEY", key)]),
        )
        .unwrap();
        assert_eq!(config.company_claim, "company_id");
        assert!(config.allow_list.is_empty());
        let table = config.table.clone();
        let deliveries = config.deliveries_table.clone();
        let queue_url = config.delivery_queue_url.clone();
        tweak(&mut config);
        let vault = stack::secret_vault(&stack).await;
        Self {
            app: App::new(
                config.clone(),
                dynamo.clone(),
                sqs.clone(),
                aws_sdk_eventbridge::Client::new(&sdk),
                Arc::clone(&vault),
            ),
            vault,
            config,
            store: SubscriptionStore::new(dynamo.clone(), table),
            log: DeliveryLog::new(dynamo, deliveries),
            sqs,
            queue_url,
        }
    }

    /// Points the app at the emulator through a proxy that forwards one
    /// call at a time. DynamoDB isolates a conditional write or transaction
    /// from concurrent writes to its items; the emulator does not (it
    /// checks conditions and writes on parallel threads), so tests of racing
    /// callers serialise its calls while the requests still race through
    /// the handler.
    pub async fn serialise_emulator(&mut self) -> AwsProxy {
        let proxy = AwsProxy::start(emulator::endpoint());
        proxy.one_at_a_time();
        let sdk = emulator::sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(proxy.endpoint())
                .build(),
        );
        self.app = App::new(
            self.config.clone(),
            dynamo,
            self.sqs.clone(),
            aws_sdk_eventbridge::Client::new(&sdk),
            Arc::clone(&self.vault),
        );
        proxy
    }

    /// The secrets `sub` signs with at `now`, opened.
    pub fn opened(&self, sub: &Subscription, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
        sub.signing_secrets(&self.vault.current(), now)
            .expect("the secrets open")
            .iter()
            .map(|s| s.expose().to_owned())
            .collect()
    }

    pub async fn call(&self, req: ApiRequest) -> Reply {
        self.call_request(req.build()).await
    }

    pub async fn call_request(&self, req: lambda_http::Request) -> Reply {
        let response = self.app.handle(req).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = match response.body() {
            lambda_http::Body::Empty => Value::Null,
            other => serde_json::from_slice(other.as_ref()).expect("response is JSON"),
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn create(&self, company: &str, body: Value) -> Value {
        let r = self
            .call(ApiRequest::new("POST", "/webhooks", company).json(&body))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body
    }

    pub async fn create_default(&self, company: &str) -> Value {
        self.create(company, json!({"url": "https://hooks.example.com/jobs"}))
            .await
    }

    /// The id of a new default subscription of `company`.
    pub async fn create_id(&self, company: &str) -> String {
        let created = self.create_default(company).await;
        created["id"].as_str().expect("an id").to_owned()
    }

    /// `company`'s `GET {path}`.
    pub async fn get(&self, company: &str, path: &str) -> Reply {
        self.call(ApiRequest::new("GET", path, company)).await
    }

    /// `company`'s `DELETE /webhooks/{id}`.
    pub async fn archive(&self, company: &str, id: &str) -> Reply {
        self.call(ApiRequest::new(
            "DELETE",
            &format!("/webhooks/{id}"),
            company,
        ))
        .await
    }

    /// Checks that `company`'s `GET {path}?{query}` is a 400 with the code
    /// and field of each `(query, code, field)`.
    pub async fn assert_bad_queries(
        &self,
        company: &str,
        path: &str,
        cases: &[(&str, &str, &str)],
    ) {
        for &(query, code, field) in cases {
            let r = self.get(company, &format!("{path}?{query}")).await;
            assert_eq!(error_of(&r), (400, code, Some(field)), "{query}");
        }
    }

    /// Every message on the fixture's delivery queue, received (and so
    /// hidden) once.
    pub async fn queued(&self) -> Vec<String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("ReceiveMessage on the emulator");
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                test_kit::emulator::assert_grouped_by_company(&m);
                m.body.expect("message body")
            })
            .collect()
    }
}

/// Status, code and field of an error reply, after checking it has a
/// message.
pub fn error_of(r: &Reply) -> (u16, &str, Option<&str>) {
    let e = &r.body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
    (r.status, e["code"].as_str().unwrap(), e["field"].as_str())
}
