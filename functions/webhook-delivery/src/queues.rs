//! Re-sends to the RetryQueue and the DeadLetterQueue.

use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use shared::domain::message::{DEAD_LETTER_REASON_ATTRIBUTE, DeadLetterReason, DeliveryMessage};

/// Longest delay SQS applies to one message; longer waits are chained.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

/// A message could not be enqueued; the original stays on its queue (it is
/// reported in `batchItemFailures`) and comes back after its visibility
/// timeout.
#[derive(Debug, thiserror::Error)]
#[error("SQS SendMessage to the {queue} failed: {message}")]
pub struct QueueError {
    /// `retry queue` or `dead-letter queue`.
    pub queue: &'static str,
    /// The SDK's error with its context.
    pub message: String,
}

/// The queues the delivery function writes to.
#[derive(Debug, Clone)]
pub struct Queues {
    client: aws_sdk_sqs::Client,
    retry_url: String,
    dead_letter_url: String,
}

impl Queues {
    /// Queues at the given URLs.
    pub fn new(client: aws_sdk_sqs::Client, retry_url: String, dead_letter_url: String) -> Self {
        Self {
            client,
            retry_url,
            dead_letter_url,
        }
    }

    /// Puts `msg` on the RetryQueue, delayed by `wait` (at most
    /// [`MAX_QUEUE_DELAY`]; the message's `not_before` carries the rest).
    pub async fn retry(&self, msg: &DeliveryMessage, wait: Duration) -> Result<(), QueueError> {
        let delay = wait.min(MAX_QUEUE_DELAY).as_secs_f64().ceil() as i32;
        self.client
            .send_message()
            .queue_url(&self.retry_url)
            // SQS fair queues: one company's retries don't hold back others'.
            .message_group_id(shared::domain::message::group_id(&msg.company_id))
            .message_body(msg.to_body())
            .delay_seconds(delay)
            .send()
            .await
            .map_err(|e| QueueError {
                queue: "retry queue",
                message: DisplayErrorContext(e).to_string(),
            })?;
        Ok(())
    }

    /// Puts `body` on the DeadLetterQueue, tagged with `reason`, grouped by
    /// its company when known (so SQS's own redrive back to the fair queues
    /// keeps the group).
    pub async fn dead_letter(
        &self,
        body: &str,
        reason: DeadLetterReason,
        company_id: Option<&str>,
    ) -> Result<(), QueueError> {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason.as_str())
            .build()
            .expect("data type is set");
        // SQS refuses empty bodies; keep an empty poison message visible.
        let body = if body.is_empty() { "(empty)" } else { body };
        self.client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .set_message_group_id(
                company_id.map(|c| shared::domain::message::group_id(c).into_owned()),
            )
            .message_body(body)
            .message_attributes(DEAD_LETTER_REASON_ATTRIBUTE, attribute)
            .send()
            .await
            .map_err(|e| QueueError {
                queue: "dead-letter queue",
                message: DisplayErrorContext(e).to_string(),
            })?;
        Ok(())
    }
}
