//! Lambda entry point of the signing-secret key maintenance function.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use secret_keys::{KeysConfig, SecretKeys};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config = KeysConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = shared::config::aws_sdk_config().await;
    let keys = Arc::new(SecretKeys::from_sdk(&config, &sdk));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let keys = Arc::clone(&keys);
        let deadline = shared::deadline::instant_of(event.context.deadline());
        async move { keys.handle(event.payload, deadline).await }
    }))
    .await
}
