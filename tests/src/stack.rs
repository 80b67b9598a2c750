//! `template.yaml` deployed in the local AWS emulator for a test: every
//! test that needs tables, queues or function settings gets its own stack
//! (CloudFormation in moto deploys one in well under a second), so tests
//! never share resources and run against what production deploys.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use local_infra::cloudformation::custom_resources::Handlers;
pub use local_infra::cloudformation::ids;
pub use local_infra::cloudformation::unique_stack_name;
use local_infra::cloudformation::{self, DeployedStack, Deployment};
use shared::config::Vars;
use shared::domain::filters::Filters;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::secret::WebhookSecret;
use shared::storage::keyring::{KeyringConfig, KeyringStore, SecretVault};
use shared::storage::subscriptions::SubscriptionStore;

use crate::emulator;

pub use local_infra::receiver::LOOPBACK_ALLOW_LIST;

/// The handlers of the template's custom resources: the keyring's start.
pub const CUSTOM_RESOURCES: Handlers<'static> = &[(
    ids::SECRET_KEYS_FUNCTION,
    secret_keys::answer_custom_resource,
)];

/// A fresh stack of the repository's template with the local parameters.
///
/// # Panics
/// When the stack cannot be deployed: the error names the resource.
pub async fn deploy() -> DeployedStack {
    deploy_with(&[]).await
}

/// A fresh stack with `parameters` on top of the local ones.
///
/// # Panics
/// When the stack cannot be deployed.
pub async fn deploy_with(parameters: &[(&str, &str)]) -> DeployedStack {
    deploy_template(&cloudformation::template_path(), parameters).await
}

/// A fresh stack of the template at `template` (a modified copy, say).
///
/// # Panics
/// When the stack cannot be deployed.
pub async fn deploy_template(template: &Path, parameters: &[(&str, &str)]) -> DeployedStack {
    let sdk = emulator::sdk_config().await;
    let mut deployment = Deployment::isolated(parameters);
    deployment.template = template.to_owned();
    cloudformation::deploy_stack(&sdk, &deployment, CUSTOM_RESOURCES)
        .await
        .unwrap_or_else(|e| panic!("deploying {}: {e}", template.display()))
}

/// The deployed environment of `function` with loopback receivers allowed
/// and `local` on top.
///
/// # Panics
/// When the stack has no such function.
pub fn function_vars(stack: &DeployedStack, function: &str, local: &[(&str, &str)]) -> Vars {
    let mut vars = vec![("TARGET_ALLOW_LIST", LOOPBACK_ALLOW_LIST.to_owned())];
    vars.extend(local.iter().map(|(k, v)| (*k, (*v).to_owned())));
    stack
        .function(function)
        .unwrap_or_else(|e| panic!("{e}"))
        .vars_with(&vars)
}

/// The deployed environment of `function` with `local` on top, as
/// name-value pairs for booting the function's binary.
///
/// # Panics
/// When the stack has no such function.
pub fn function_environment(
    stack: &DeployedStack,
    function: &str,
    local: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = stack
        .function(function)
        .unwrap_or_else(|e| panic!("{e}"))
        .environment
        .clone()
        .into_iter()
        .filter(|(k, _)| !local.iter().any(|(l, _)| l == k))
        .collect();
    env.extend(
        local
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env.sort();
    env
}

/// `pairs` borrowed, as [`crate::runtime_api::boot`] takes them.
pub fn borrowed(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The stack's signing-secret keyring as the API function loads it at cold
/// start (the stack's deploy started it, version 1): tests seal the secrets
/// of the subscriptions they write with it.
///
/// # Panics
/// When the keyring cannot be loaded.
pub async fn secret_vault(stack: &DeployedStack) -> Arc<SecretVault> {
    let sdk = emulator::sdk_config().await;
    let vars = stack
        .function(ids::API_FUNCTION)
        .unwrap_or_else(|e| panic!("{e}"))
        .vars_with(&[]);
    let config = KeyringConfig::from_vars(&vars).expect("the API function configures its keyring");
    let store = KeyringStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_kms::Client::new(&sdk),
        config,
    );
    Arc::new(
        SecretVault::load(store)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// The jobs table of a fresh stack and its stream's ARN.
///
/// # Panics
/// When the stack cannot be deployed or the table has no stream.
pub async fn jobs_table() -> (String, String) {
    let table = deploy().await.table(ids::JOBS_TABLE).unwrap().to_owned();
    let arn = emulator::dynamodb()
        .await
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("table is described")
        .table
        .and_then(|t| t.latest_stream_arn)
        .expect("the jobs table has a stream");
    (table, arn)
}

/// An active subscription of `company` with `filters` to a URL nothing
/// delivers to, stored in `store` with its secret sealed by a throwaway
/// keyring: what the ingest functions read (they never open a secret).
///
/// # Panics
/// When the store refuses it.
pub async fn store_subscription(
    store: &SubscriptionStore,
    company: &str,
    filters: Filters,
) -> Subscription {
    let new = NewSubscription {
        url: "https://hooks.example.com/".to_owned(),
        description: None,
        filters,
    };
    let keyring = shared::signing::sealed::Keyring::generate();
    let (sub, _) =
        Subscription::create(company, new, Utc::now(), &keyring).unwrap_or_else(|e| panic!("{e}"));
    store
        .create(&sub, None, u64::MAX)
        .await
        .unwrap_or_else(|e| panic!("storing {}: {e}", sub.subscription_id));
    sub
}

/// A subscription of `company` to `url` for every job event, stored in
/// `store` with its secret sealed by `vault` (what a create through the
/// API stores), and its secret.
///
/// # Panics
/// When the keyring is empty or the store refuses it.
pub async fn subscribe(
    store: &SubscriptionStore,
    vault: &SecretVault,
    company: &str,
    url: &str,
) -> (Subscription, WebhookSecret) {
    subscribe_with(store, vault, company, url, Filters::default()).await
}

/// [`subscribe`] with `filters` (an events subscription, say).
///
/// # Panics
/// When the keyring is empty or the store refuses it.
pub async fn subscribe_with(
    store: &SubscriptionStore,
    vault: &SecretVault,
    company: &str,
    url: &str,
    filters: Filters,
) -> (Subscription, WebhookSecret) {
    let new = NewSubscription {
        url: url.to_owned(),
        description: None,
        filters,
    };
    let (sub, secret) = Subscription::create(company, new, Utc::now(), &vault.current())
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .create(&sub, None, u64::MAX)
        .await
        .unwrap_or_else(|e| panic!("storing {}: {e}", sub.subscription_id));
    (sub, secret)
}
