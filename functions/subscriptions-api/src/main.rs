//! Lambda entry point of the subscriptions API.

use std::sync::Arc;

use lambda_http::{Error, Request, service_fn};
use shared::storage::keyring::SecretVault;
use subscriptions_api::{ApiConfig, App};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config = ApiConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = shared::config::aws_sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    // Unwrapped once per cold start; a key that does not unwrap stops it
    // here. The stack's deploy starts the keyring (SecretKeysFunction): the
    // API never writes it.
    let vault = SecretVault::load_from(&sdk, dynamo.clone(), &config.keyring).await?;
    let app = Arc::new(App::new(
        config,
        dynamo,
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_eventbridge::Client::new(&sdk),
        Arc::new(vault),
    ));
    lambda_http::run(service_fn(move |req: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, std::convert::Infallible>(app.handle(req).await) }
    }))
    .await
}
