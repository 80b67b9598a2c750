//! Lambda entry point of the job-state ingestion function.

use std::sync::Arc;

use job_events_ingest::{Ingest, IngestConfig};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config = IngestConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = shared::config::aws_sdk_config().await;
    let ingest = Arc::new(
        Ingest::new(
            &config,
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_sqs::Client::new(&sdk),
        )
        .with_streams(aws_sdk_dynamodbstreams::Client::new(&sdk)),
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let ingest = Arc::clone(&ingest);
        let deadline =
            ingest.deadline(Some(shared::deadline::instant_of(event.context.deadline())));
        async move { Ok::<_, Error>(ingest.handle(event.payload, deadline).await) }
    }))
    .await
}
