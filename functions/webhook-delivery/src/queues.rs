//! Re-sends to the RetryQueue and the DeadLetterQueue.

use std::time::Duration;

use shared::domain::message::{DEAD_LETTER_REASON_ATTRIBUTE, DeadLetterReason, DeliveryMessage};
use shared::queue::{Outgoing, QueueWriter, SendError};

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

impl QueueError {
    fn new(queue: &'static str, e: SendError) -> Self {
        Self {
            queue,
            message: e.message,
        }
    }
}

/// The queues the delivery function writes to.
#[derive(Debug, Clone)]
pub struct Queues {
    retry: QueueWriter,
    dead_letter: QueueWriter,
}

impl Queues {
    /// Queues at the given URLs.
    pub fn new(client: aws_sdk_sqs::Client, retry_url: String, dead_letter_url: String) -> Self {
        Self {
            retry: QueueWriter::new(client.clone(), retry_url),
            dead_letter: QueueWriter::new(client, dead_letter_url),
        }
    }

    /// Puts `msg` on the RetryQueue, delayed by `wait` (at most
    /// [`MAX_QUEUE_DELAY`]; the message's `not_before` carries the rest).
    pub async fn retry(&self, msg: &DeliveryMessage, wait: Duration) -> Result<(), QueueError> {
        let delay = wait.min(MAX_QUEUE_DELAY).as_secs_f64().ceil() as u32;
        // SQS fair queues: one company's retries don't hold back others'.
        let message = Outgoing::of_company(msg.to_body(), &msg.company_id).delayed(delay);
        self.retry
            .send_one(&message)
            .await
            .map_err(|e| QueueError::new("retry queue", e))
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
        // SQS refuses empty bodies; keep an empty poison message visible.
        let body = if body.is_empty() { "(empty)" } else { body };
        let message = match company_id {
            Some(company) => Outgoing::of_company(body.to_owned(), company),
            None => Outgoing::new(body.to_owned()),
        }
        .with_attribute(DEAD_LETTER_REASON_ATTRIBUTE, reason.as_str());
        self.dead_letter
            .send_one(&message)
            .await
            .map_err(|e| QueueError::new("dead-letter queue", e))
    }
}
