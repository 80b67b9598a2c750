//! `local-stack redrive '{...}'`: runs the dead-letter redrive function's
//! handler against the local stack's queues, as `aws lambda invoke` would in
//! AWS.

use dlq_redrive::request::RedriveRequest;
use dlq_redrive::{RedriveConfig, RedriveReport, Redriver};

use crate::stack;

/// Redrives the local DeadLetterQueue with `request` (the function's JSON
/// input) and returns the report.
pub async fn run(request: &str) -> Result<RedriveReport, Box<dyn std::error::Error>> {
    let event: serde_json::Value = if request.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(request).map_err(|e| format!("the request is not JSON: {e}"))?
    };
    let request = RedriveRequest::from_event(event)?;
    let sdk = shared::config::aws_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = |name: &'static str| {
        let sqs = sqs.clone();
        async move {
            sqs.get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "queue {name} not found (is `make run` serving?): {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                })?
                .queue_url
                .ok_or_else(|| format!("queue {name} has no URL"))
        }
    };
    let config = RedriveConfig {
        dead_letter_queue_url: url(stack::DEAD_LETTER_QUEUE).await?,
        delivery_queue_url: url(stack::DELIVERY_QUEUE).await?,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    Ok(Redriver::new(&config, sqs).run(&request, deadline).await)
}
