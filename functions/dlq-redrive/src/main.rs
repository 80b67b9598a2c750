//! Lambda entry point of the dead-letter redrive function.

use std::sync::Arc;

use dlq_redrive::{RedriveConfig, Redriver};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config = RedriveConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = shared::config::aws_sdk_config().await;
    let redriver = Arc::new(Redriver::new(&config, aws_sdk_sqs::Client::new(&sdk)));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let redriver = Arc::clone(&redriver);
        async move {
            let deadline = shared::deadline::instant_of(event.context.deadline());
            redriver.handle(event.payload, deadline).await
        }
    }))
    .await
}
