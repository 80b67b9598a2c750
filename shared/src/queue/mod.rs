//! Writing messages to an SQS queue: [`QueueWriter`] is the one writer of
//! the DeliveryQueue (ingest's fan-out, test events, probes, drains,
//! recovers and redrives), and of the other queues the functions send to
//! (RetryQueue, DeadLetterQueue, poison queue).
//!
//! It owns what a send carries: the message group (the company, which
//! makes the standard queues fair across companies), the delay, message
//! attributes, batching ([`batch`]: ten entries and 256 KiB a batch, entry
//! ids that are positions) and partial failures (which entries SQS did not
//! take, with their error code).

pub mod batch;
pub mod fanout;

use std::sync::Arc;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use crate::domain::message::group_id;
use batch::{Answer, BatchLimit, MAX_BATCH_BYTES, Outcome, Retries};

/// Longest delay SQS applies to a message, in seconds.
pub const MAX_DELAY_SECONDS: u32 = 900;

/// One message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// The message body.
    pub body: String,
    /// Its `MessageGroupId`, if it has one.
    pub group: Option<Arc<str>>,
    /// Its `DelaySeconds` (at most [`MAX_DELAY_SECONDS`]); `None`: the
    /// queue's own.
    pub delay_seconds: Option<u32>,
    /// String message attributes, by name.
    pub attributes: Vec<(&'static str, String)>,
}

impl Outgoing {
    /// A message with `body` and nothing else.
    pub fn new(body: String) -> Self {
        Self {
            body,
            ..Self::default()
        }
    }

    /// A message of `company_id`: grouped by its [`group_id`].
    pub fn of_company(body: String, company_id: &str) -> Self {
        Self::new(body).grouped(group_id(company_id).as_ref())
    }

    /// The same in message group `group`.
    pub fn grouped(mut self, group: impl Into<Arc<str>>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The same, delayed by `seconds`.
    pub fn delayed(mut self, seconds: u32) -> Self {
        self.delay_seconds = Some(seconds);
        self
    }

    /// The same with the string attribute `name` = `value`.
    pub fn with_attribute(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.attributes.push((name, value.into()));
        self
    }

    fn delay(&self) -> Option<i32> {
        self.delay_seconds
            .map(|d| i32::try_from(d.min(MAX_DELAY_SECONDS)).unwrap_or(0))
    }

    fn attribute_values(&self) -> Option<std::collections::HashMap<String, MessageAttributeValue>> {
        (!self.attributes.is_empty()).then(|| {
            self.attributes
                .iter()
                .map(|(name, value)| {
                    let value = MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(value)
                        .build()
                        .expect("data type is set");
                    ((*name).to_owned(), value)
                })
                .collect()
        })
    }

    fn batch_entry(&self, id: String) -> SendMessageBatchRequestEntry {
        SendMessageBatchRequestEntry::builder()
            .id(id)
            .set_message_group_id(self.group.as_deref().map(str::to_owned))
            .message_body(self.body.clone())
            .set_delay_seconds(self.delay())
            .set_message_attributes(self.attribute_values())
            .build()
            .expect("id and body are set")
    }
}

/// A send SQS failed as a whole: nothing was sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("SQS {operation} to {queue_url} failed: {message}")]
pub struct SendError {
    /// `SendMessage` or `SendMessageBatch`.
    pub operation: &'static str,
    /// The queue.
    pub queue_url: String,
    /// The SDK's error with its context.
    pub message: String,
}

/// Sends messages to one queue.
#[derive(Debug, Clone)]
pub struct QueueWriter {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    max_batch_bytes: usize,
}

impl QueueWriter {
    /// A writer to `queue_url`, batches of at most [`MAX_BATCH_BYTES`].
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self {
            client,
            queue_url,
            max_batch_bytes: MAX_BATCH_BYTES,
        }
    }

    /// The same with batches of at most `max_batch_bytes` of bodies.
    pub fn with_max_batch_bytes(mut self, max_batch_bytes: usize) -> Self {
        self.max_batch_bytes = max_batch_bytes;
        self
    }

    /// The queue it writes to.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// An empty batch of this writer's size, for callers that fill
    /// batches themselves and send each with [`Self::send_batch`].
    pub fn batch_limit(&self) -> BatchLimit {
        BatchLimit::new(self.max_batch_bytes)
    }

    /// Sends one message with one `SendMessage` call.
    pub async fn send_one(&self, message: &Outgoing) -> Result<(), SendError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .set_message_group_id(message.group.as_deref().map(str::to_owned))
            .message_body(message.body.clone())
            .set_delay_seconds(message.delay())
            .set_message_attributes(message.attribute_values())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("SendMessage", &e))
    }

    /// Sends `messages` (one batch: at most ten, within the byte limit)
    /// with one `SendMessageBatch` call, not retried; entry ids are their
    /// positions.
    pub async fn send_batch(&self, messages: &[Outgoing]) -> Result<Answer, SendError> {
        let indices: Vec<usize> = (0..messages.len()).collect();
        self.call(messages, &indices).await
    }

    /// Sends every message in batches, at most `concurrency` in flight,
    /// retrying the entries SQS did not take as `retries` says; positions
    /// SQS took and the entries it never took.
    pub async fn send_all(
        &self,
        messages: &[Outgoing],
        concurrency: usize,
        retries: Retries,
    ) -> Outcome {
        let sizes: Vec<usize> = messages.iter().map(|m| m.body.len()).collect();
        let chunks = batch::chunks(&sizes, self.max_batch_bytes);
        batch::batched(
            "SendMessageBatch",
            chunks,
            concurrency,
            retries,
            |indices| async move { self.call(messages, &indices).await.map_err(|e| e.message) },
        )
        .await
    }

    async fn call(&self, messages: &[Outgoing], indices: &[usize]) -> Result<Answer, SendError> {
        let entries = indices
            .iter()
            .map(|&i| messages[i].batch_entry(i.to_string()))
            .collect();
        self.client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map(|out| Answer::read(out.successful.iter().map(|s| s.id.as_str()), &out.failed))
            .map_err(|e| self.error("SendMessageBatch", &e))
    }

    fn error<E, R>(
        &self,
        operation: &'static str,
        e: &aws_sdk_sqs::error::SdkError<E, R>,
    ) -> SendError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        SendError {
            operation,
            queue_url: self.queue_url.clone(),
            message: DisplayErrorContext(e).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_group_delay_and_attributes() {
        let m = Outgoing::of_company("{}".into(), "Acme Corp")
            .delayed(1200)
            .with_attribute("dead_letter_reason", "exhausted");
        assert_eq!(m.group.as_deref(), Some(group_id("Acme Corp").as_ref()));
        assert_eq!(m.delay(), Some(900), "at most SQS's longest delay");
        let entry = m.batch_entry("3".into());
        assert_eq!(entry.id(), "3");
        assert_eq!(entry.delay_seconds(), Some(900));
        let attributes = entry.message_attributes().unwrap();
        assert_eq!(
            attributes["dead_letter_reason"].string_value(),
            Some("exhausted")
        );
        let plain = Outgoing::new("x".into()).batch_entry("0".into());
        assert_eq!(plain.message_group_id(), None);
        assert_eq!(plain.delay_seconds(), None, "the queue's own delay");
        assert!(plain.message_attributes().is_none());
    }

    #[test]
    fn answers_name_entries_by_position() {
        let failed = [aws_sdk_sqs::types::BatchResultErrorEntry::builder()
            .id("2")
            .code("InternalError")
            .sender_fault(false)
            .build()
            .unwrap()];
        let answer = Answer::read(["0", "1"].into_iter(), &failed);
        assert_eq!(answer.accepted, [0, 1]);
        assert_eq!(answer.rejected.len(), 1);
        assert_eq!(
            (answer.rejected[0].index, answer.rejected[0].code.as_str()),
            (2, "InternalError")
        );
    }
}
