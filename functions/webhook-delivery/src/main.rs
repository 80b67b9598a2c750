//! Lambda entry point of the webhook delivery function.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::storage::keyring::SecretVault;
use webhook_delivery::{Delivery, DeliveryConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config = DeliveryConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let http = webhook_delivery::client::build(&config)
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = shared::config::aws_sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    // Unwrapped once per cold start; a key that does not unwrap stops it here.
    let vault = SecretVault::load_from(&sdk, dynamo.clone(), &config.keyring).await?;
    let delivery = Delivery::with_http(
        &config,
        http,
        dynamo,
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_eventbridge::Client::new(&sdk),
        Arc::new(vault),
    );
    let delivery = Arc::new(delivery);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let delivery = Arc::clone(&delivery);
        async move {
            let deadline = shared::deadline::instant_of(event.context.deadline());
            Ok::<_, Error>(delivery.handle(event.payload, Some(deadline)).await)
        }
    }))
    .await
}
