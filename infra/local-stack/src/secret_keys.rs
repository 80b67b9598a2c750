//! `local-stack secret-keys '{...}'`: runs the signing-secret key function's
//! handler against the local stack's tables and KMS key, as `aws lambda
//! invoke` would in AWS.

use std::time::{Duration, Instant};

use secret_keys::{KeysConfig, KeysReport, SecretKeys};

use local_infra::cloudformation::{self, DeployedStack, ids};

/// Handles `request` (the function's JSON input) and returns the report.
/// The function's configuration is the environment CloudFormation resolved
/// for it in the stack `make run` deployed (`LOCAL_STACK_NAME`).
pub async fn run(request: &str) -> Result<KeysReport, Box<dyn std::error::Error>> {
    let event: serde_json::Value =
        serde_json::from_str(request).map_err(|e| format!("the request is not JSON: {e}"))?;
    let sdk = shared::config::aws_sdk_config().await;
    let stack = DeployedStack::read_existing(&sdk, &cloudformation::stack_name())
        .await
        .map_err(|e| format!("{e} (is `make run` serving?)"))?;
    let config = KeysConfig::from_vars(&stack.function(ids::SECRET_KEYS_FUNCTION)?.vars_with(&[]))?;
    // As the function itself ([`local_infra::identity`]).
    let function = local_infra::identity::function_sdk(&sdk, ids::SECRET_KEYS_FUNCTION);
    let keys = SecretKeys::new(
        &config,
        aws_sdk_dynamodb::Client::new(&function),
        aws_sdk_kms::Client::new(&function),
    );
    // The function's timeout in the template.
    let deadline = Instant::now() + Duration::from_secs(900);
    Ok(keys.handle(event, deadline).await?)
}
