//! `local-stack redrive '{...}'`: runs the dead-letter redrive function's
//! handler against the local stack's queues, as `aws lambda invoke` would in
//! AWS.

use dlq_redrive::request::RedriveRequest;
use dlq_redrive::{RedriveConfig, RedriveReport, Redriver};

use local_infra::cloudformation::{self, DeployedStack, ids};

/// Redrives the local DeadLetterQueue with `request` (the function's JSON
/// input) and returns the report. The function's configuration is the
/// environment CloudFormation resolved for it in the stack `make run`
/// deployed (`LOCAL_STACK_NAME`).
pub async fn run(request: &str) -> Result<RedriveReport, Box<dyn std::error::Error>> {
    let event: serde_json::Value = if request.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(request).map_err(|e| format!("the request is not JSON: {e}"))?
    };
    let request = RedriveRequest::from_event(event)?;
    let sdk = shared::config::aws_sdk_config().await;
    let stack = DeployedStack::read_existing(&sdk, &cloudformation::stack_name())
        .await
        .map_err(|e| format!("{e} (is `make run` serving?)"))?;
    let config = RedriveConfig::from_vars(&stack.function(ids::REDRIVE_FUNCTION)?.vars_with(&[]))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    Ok(Redriver::new(&config, aws_sdk_sqs::Client::new(&sdk))
        .run(&request, deadline)
        .await)
}
