//! `template.yaml` deployed in the local AWS emulator for a test: every
//! test that needs tables, queues or function settings gets its own stack
//! (CloudFormation in moto deploys one in well under a second), so tests
//! never share resources and run against what production deploys.

use std::path::Path;
use std::sync::Arc;

pub use local_stack::cloudformation::ids;
use local_stack::cloudformation::{self, DeployedStack, Deployment};
use shared::config::Vars;
use shared::storage::keyring::{KeyringConfig, KeyringStore, SecretVault};

use crate::emulator;

/// Loopback networks, for receivers on 127.0.0.1.
pub const LOOPBACK_ALLOW_LIST: &str = "127.0.0.0/8,::1";

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
    let mut deployment = deployment(parameters);
    deployment.template = template.to_owned();
    cloudformation::deploy_stack(&sdk, &deployment)
        .await
        .unwrap_or_else(|e| panic!("deploying {}: {e}", template.display()))
}

/// The repository's template as a stack no other test uses, with
/// `parameters` on top of the local ones.
pub fn deployment(parameters: &[(&str, &str)]) -> Deployment {
    let mut deployment = Deployment::local(unique_stack_name());
    for (k, v) in parameters {
        deployment.parameters.retain(|(key, _)| key != k);
        deployment
            .parameters
            .push(((*k).to_owned(), (*v).to_owned()));
    }
    deployment
}

/// A stack name no other test uses.
pub fn unique_stack_name() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
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

/// Settings for a [`local_stack::pipeline::Pipeline`] on a fresh stack:
/// `parameters` on top of the local ones, loopback receivers allowed and
/// `local` set on top of every function's deployed environment.
pub fn pipeline_config(
    parameters: &[(&str, &str)],
    local: &[(&'static str, &str)],
) -> local_stack::pipeline::PipelineConfig {
    let deployment = deployment(parameters);
    let mut local_vars = vec![("TARGET_ALLOW_LIST", LOOPBACK_ALLOW_LIST.to_owned())];
    local_vars.extend(local.iter().map(|(k, v)| (*k, (*v).to_owned())));
    local_stack::pipeline::PipelineConfig {
        deployment,
        local_vars,
        local_cursor_key: "test-cursor-signing-key-for-the-local-pipeline".to_owned(),
        max_pollers: 4,
        schedule_interval: None,
    }
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
