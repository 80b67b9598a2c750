//! Lambda entry point of the replay of ingest failures (invoked by an
//! operator, like the dead-letter redrive).

use job_events_ingest::replay::{ReplayConfig, Replayer};
use job_events_ingest::{Ingest, IngestConfig};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::config::Vars;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let (ingest_config, config) = IngestConfig::from_env()
        .and_then(|ingest| Ok((ingest, ReplayConfig::from_vars(&Vars::Process)?)))
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = shared::config::aws_sdk_config().await;
    let ingest = Ingest::new(
        &ingest_config,
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    let replayer = std::sync::Arc::new(Replayer::new(
        &config,
        ingest,
        aws_sdk_dynamodbstreams::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let replayer = std::sync::Arc::clone(&replayer);
        async move {
            let deadline = shared::deadline::instant_of(event.context.deadline());
            replayer.handle(event.payload, deadline).await
        }
    }))
    .await
}
