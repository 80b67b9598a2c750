//! Lambda entry point of the platform events ingestion function.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use platform_events_ingest::{PlatformIngest, PlatformIngestConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config = PlatformIngestConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = shared::config::aws_sdk_config().await;
    let ingest = Arc::new(PlatformIngest::new(
        &config,
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let ingest = Arc::clone(&ingest);
        let deadline =
            ingest.deadline(Some(shared::deadline::instant_of(event.context.deadline())));
        async move { Ok::<_, Error>(ingest.handle(event.payload, deadline).await) }
    }))
    .await
}
