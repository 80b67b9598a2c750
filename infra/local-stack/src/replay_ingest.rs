//! `local-stack replay-ingest-failures '{...}'`: runs the ingest-replay
//! function's handler against the local stack's IngestFailureQueue and jobs
//! stream, as `aws lambda invoke` would in AWS.

use job_events_ingest::replay::{ReplayConfig, ReplayReport, Replayer};
use job_events_ingest::{Ingest, IngestConfig};

use local_infra::cloudformation::{self, DeployedStack, ids};

/// Handles `request` (the function's JSON input; empty for the defaults)
/// and returns the report. The function's configuration is the environment
/// CloudFormation resolved for it in the stack `make run` deployed
/// (`LOCAL_STACK_NAME`), and its deadline the function's timeout.
pub async fn run(request: &str) -> Result<ReplayReport, Box<dyn std::error::Error>> {
    let event: serde_json::Value = if request.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(request).map_err(|e| format!("the request is not JSON: {e}"))?
    };
    let sdk = shared::config::aws_sdk_config().await;
    let stack = DeployedStack::read_existing(&sdk, &cloudformation::stack_name())
        .await
        .map_err(|e| format!("{e} (is `make run` serving?)"))?;
    let function = stack.function(ids::INGEST_REPLAY_FUNCTION)?;
    let vars = function.vars_with(&[]);
    let ingest = Ingest::new(
        &IngestConfig::from_vars(&vars)?,
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    let replayer = Replayer::new(
        &ReplayConfig::from_vars(&vars)?,
        ingest,
        aws_sdk_dynamodbstreams::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    let deadline = std::time::Instant::now() + function.timeout;
    Ok(replayer.handle(event, deadline).await?)
}
