//! Drives an SQS queue into a function's handler (delivery, platform
//! events ingest) the way Lambda's SQS event source mapping does: up to `MaximumConcurrency` pollers each receive a
//! batch of up to `BatchSize` messages, invoke the handler with the SQS
//! event, and delete only the messages not reported in
//! `batchItemFailures`. Failed messages are left to SQS: they come back
//! after the queue's visibility timeout, and after `maxReceiveCount`
//! receives the redrive policy moves them to the dead-letter queue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use platform_events_ingest::PlatformIngest;
use shared::deadline::Deadline;
use shared::metrics::Metrics;
use tokio::sync::watch;
use webhook_delivery::Delivery;

use crate::invocations::Invocations;
use crate::stream_runner::pause;
use local_infra::cloudformation::EventSourceMapping;

/// Long-poll wait of each receive, seconds.
const RECEIVE_WAIT_SECONDS: i32 = 1;

/// A function handler that a queue drives.
pub trait QueueHandler: Send + Sync + 'static {
    /// Handles one batch read from `queue` (logging what it did, as the
    /// function does): the response, and the counts the invocation is
    /// recorded with.
    fn handle_batch(
        &self,
        queue: &str,
        event: SqsEvent,
    ) -> impl Future<Output = (SqsBatchResponse, Metrics)> + Send;
}

impl QueueHandler for Delivery {
    async fn handle_batch(&self, queue: &str, event: SqsEvent) -> (SqsBatchResponse, Metrics) {
        let messages = event.records.len();
        let (response, tally) = self.process(event).await;
        tracing::info!(
            queue = %queue,
            messages,
            delivered = tally.delivered,
            retried = tally.retried,
            parked = tally.parked,
            exhausted = tally.exhausted,
            probes = tally.probes,
            dropped = tally.dropped,
            deferred = tally.deferred,
            left_on_queue = response.batch_item_failures.len(),
            "queue batch -> delivery"
        );
        (response, tally.metrics())
    }
}

impl QueueHandler for PlatformIngest {
    async fn handle_batch(&self, queue: &str, event: SqsEvent) -> (SqsBatchResponse, Metrics) {
        let records = event.records.len();
        let (response, stats) = self.process(event, Deadline::none()).await;
        tracing::info!(
            queue = %queue,
            records,
            events = stats.events,
            refused = stats.refused_total(),
            enqueued = stats.enqueued,
            left_on_queue = response.batch_item_failures.len(),
            "queue batch -> platform events ingest"
        );
        (response, stats.metrics())
    }
}

/// One queue's runner.
#[derive(Debug, Clone)]
pub struct QueueRunner {
    /// The deployed mapping.
    pub mapping: EventSourceMapping,
    /// Logical id of the queue, for logs.
    pub queue: String,
    /// The queue's URL.
    pub queue_url: String,
    /// Region written into the records.
    pub region: String,
    /// Pollers actually run: the mapping's maximum concurrency, capped for
    /// one machine.
    pub pollers: usize,
    /// Where each invocation of the handler is recorded.
    pub invocations: Arc<Invocations>,
}

impl QueueRunner {
    /// Runs the pollers until `shutdown` turns true; batches in progress
    /// are finished.
    pub async fn run<H: QueueHandler>(
        self,
        handler: Arc<H>,
        sqs: aws_sdk_sqs::Client,
        shutdown: watch::Receiver<bool>,
    ) {
        let this = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..this.pollers.max(1) {
            let (this, handler, sqs, shutdown) = (
                Arc::clone(&this),
                Arc::clone(&handler),
                sqs.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move { this.poll_loop(&*handler, &sqs, shutdown).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn poll_loop<H: QueueHandler>(
        &self,
        handler: &H,
        sqs: &aws_sdk_sqs::Client,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let received = tokio::select! {
                r = self.receive(sqs) => r,
                _ = shutdown.changed() => return,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "receive failed; retrying");
                    if !pause(Duration::from_secs(1), &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            let event = self.event(&messages);
            let invoked = std::time::Instant::now();
            let (response, metrics) = handler.handle_batch(&self.queue, event).await;
            self.invocations
                .record(&self.mapping.function, invoked.elapsed(), &metrics);
            let failed: HashSet<String> = response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect();
            self.delete_done(sqs, &messages, &failed).await;
        }
    }

    /// One batch: up to `BatchSize` (at most 10 per receive) messages,
    /// gathered for at most the batching window.
    async fn receive(&self, sqs: &aws_sdk_sqs::Client) -> Result<Vec<Message>, String> {
        let size = self.mapping.batch_size.clamp(1, 10_000);
        let deadline = tokio::time::Instant::now() + self.mapping.batching_window;
        let mut messages = Vec::new();
        loop {
            let want = (size - messages.len()).min(10) as i32;
            let out = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(want)
                .wait_time_seconds(RECEIVE_WAIT_SECONDS)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| DisplayErrorContext(e).to_string())?;
            messages.extend(out.messages.unwrap_or_default());
            if messages.len() >= size || tokio::time::Instant::now() >= deadline {
                return Ok(messages);
            }
            if messages.is_empty() {
                return Ok(messages);
            }
        }
    }

    /// The SQS event Lambda would build for `messages`.
    fn event(&self, messages: &[Message]) -> SqsEvent {
        local_infra::queue::lambda_event(messages, &self.mapping.source_arn, &self.region)
    }

    /// Deletes the messages the handler did not report as failed.
    async fn delete_done(
        &self,
        sqs: &aws_sdk_sqs::Client,
        messages: &[Message],
        failed: &HashSet<String>,
    ) {
        let done: Vec<&Message> = messages
            .iter()
            .filter(|m| !failed.contains(m.message_id.as_deref().unwrap_or_default()))
            .collect();
        for chunk in done.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let result = sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match result {
                Ok(out) if !out.failed.is_empty() => tracing::warn!(
                    queue = %self.queue,
                    failed = out.failed.len(),
                    "some deletes failed; those messages will be delivered again"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    queue = %self.queue,
                    error = %DisplayErrorContext(e),
                    "delete failed; those messages will be delivered again"
                ),
            }
        }
    }
}
