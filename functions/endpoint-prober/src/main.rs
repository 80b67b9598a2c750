//! Lambda entry point of the endpoint prober (scheduled every minute).

use std::sync::Arc;

use endpoint_prober::{Prober, ProberConfig};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config = ProberConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = shared::config::aws_sdk_config().await;
    let prober = Arc::new(Prober::new(
        &config,
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_eventbridge::Client::new(&sdk),
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let prober = Arc::clone(&prober);
        async move {
            let deadline = shared::deadline::instant_of(event.context.deadline());
            Ok::<_, Error>(prober.handle(deadline).await)
        }
    }))
    .await
}
