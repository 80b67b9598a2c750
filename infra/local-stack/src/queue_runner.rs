//! Drives an SQS queue into a function's handler (delivery, platform
//! events ingest) the way Lambda's SQS event source mapping does: pollers
//! each receive a batch of up to `BatchSize` messages, invoke the handler
//! with the SQS event, and delete only the messages not reported in
//! `batchItemFailures`. Failed messages are left to SQS: they come back
//! after the queue's visibility timeout, and after `maxReceiveCount`
//! receives the redrive policy moves them to the dead-letter queue.
//!
//! # Polling and batching, as AWS documents them
//!
//! - <https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html>:
//!   "For standard queues, Lambda uses long polling to poll a queue until
//!   it becomes active. When messages are available, Lambda starts
//!   processing five batches at a time with five concurrent invocations of
//!   your function. If messages are still available, Lambda increases the
//!   number of processes that are reading batches by up to 300 more
//!   instances per minute. The maximum number of batches that an event
//!   source mapping can process simultaneously is 1,000. When traffic is
//!   low, Lambda scales back the processing to five concurrent batches, and
//!   can optimize to as few as 2 concurrent batches to reduce the SQS calls
//!   and corresponding costs. However, this optimization is not available
//!   when you enable the maximum concurrency setting."
//! - <https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html>: "By
//!   default, Lambda polls up to 10 messages in your queue at once and
//!   sends that batch to your function." (`ReceiveMessage` returns at most
//!   10 messages per call.)
//! - <https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventsourcemapping.html>
//!   ("Batching behavior"): "For Kinesis, DynamoDB, and Amazon SQS event
//!   sources: The default batching window is 0 seconds. This means that
//!   Lambda sends batches to your function as quickly as possible. If you
//!   configure a MaximumBatchingWindowInSeconds, the next batching window
//!   begins as soon as the previous function invocation completes." and
//!   "The payload size reaches 6 MB. You cannot modify this limit."
//! - <https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html>:
//!   `MaximumBatchingWindowInSeconds` defaults to 0; `BatchSize` defaults to
//!   10, at most 10,000 for standard queues (and above 10 needs a window of
//!   at least 1 s, per the `CreateEventSourceMapping` reference).
//!
//! So each poller long-polls (`WaitTimeSeconds`) for up to 10 messages per
//! `ReceiveMessage`. With a window of 0 it invokes as soon as a receive
//! returns messages; with a window it goes on receiving until `BatchSize`
//! messages, [`MAX_PAYLOAD_BYTES`] of event, or the end of the window.
//! Messages received past the payload limit stay in the poller's hands and
//! open its next batch. Pollers run concurrently, each with one batch in
//! flight: [`QueueRunner::pollers`] of them.
//!
//! What AWS does not document, and what the runner does:
//! - the wait of Lambda's long polls. SQS allows up to 20 s
//!   (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/best-practices-setting-up-long-polling.html>:
//!   "The maximum long polling wait time is 20 seconds."). The runner
//!   waits [`RECEIVE_WAIT_SECONDS`] = 1 s: a receive still returns as soon as
//!   any message is there, so batches are the same, but a receive cut off
//!   at shutdown goes on in the emulator until its wait ends and can take
//!   messages that then stay invisible for the queue's visibility timeout;
//!   a short wait keeps that short for tests that stop and start runners.
//!   Within a window, the wait is at most what is left of the window
//!   (rounded up to a whole second, SQS's unit).
//! - when the window opens on an idle queue: it opens with the receive
//!   that returns the first message (on a busy queue, the first receive
//!   after the previous invocation, as documented).
//! - the number of pollers: Lambda starts at five and scales with the
//!   backlog up to `MaximumConcurrency` (2 to 1,000; 1,000 unset). Locally
//!   the count is fixed: the mapping's `MaximumConcurrency`, capped by the
//!   pipeline's `max_pollers` ([`LAMBDA_INITIAL_POLLERS`] = 5 for tests,
//!   Lambda's starting and low-traffic count; 2 for `make run`, Lambda's
//!   low-traffic floor), so one machine with an emulator is not flooded.

use std::collections::{HashSet, VecDeque};
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

/// Long-poll wait of each receive, seconds (Lambda's is not documented;
/// SQS allows up to 20).
pub const RECEIVE_WAIT_SECONDS: i32 = 1;

/// Most messages one `ReceiveMessage` returns.
pub const MAX_MESSAGES_PER_RECEIVE: usize = 10;

/// Batches Lambda starts processing at once, and scales back to when
/// traffic is low.
pub const LAMBDA_INITIAL_POLLERS: usize = 5;

/// Largest event one invocation takes: the 6 MB payload limit of a
/// synchronous invocation (6 MiB, the request quota Lambda enforces).
pub const MAX_PAYLOAD_BYTES: usize = crate::stream_runner::MAX_PAYLOAD_BYTES;

/// Bytes of `{"Records":[` and `]}` around the records of an event.
const EVENT_FRAME_BYTES: usize = 14;

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
    /// Pollers run, each with one batch in flight: the mapping's
    /// `MaximumConcurrency` (1,000 unset), capped for one machine by the
    /// pipeline's `max_pollers` (see the module docs).
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
        // Messages received and not handed over yet, with their size in
        // the event.
        let mut in_hand = VecDeque::new();
        loop {
            let stopping = self.gather(sqs, &mut in_hand, &mut shutdown).await;
            if !in_hand.is_empty() {
                let messages = self.take_batch(&mut in_hand);
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
            if stopping && in_hand.is_empty() {
                return;
            }
        }
    }

    /// Receives until `in_hand` holds a batch: with a window of 0, as soon
    /// as a receive returns messages; else until `BatchSize` messages, the
    /// payload limit or the end of the window. `true` on shutdown (with
    /// what is in hand to hand over first).
    async fn gather(
        &self,
        sqs: &aws_sdk_sqs::Client,
        in_hand: &mut VecDeque<(Message, usize)>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let size = self.mapping.batch_size.clamp(1, 10_000);
        let now = tokio::time::Instant::now;
        // Messages carried from the previous batch open this one.
        let mut window_end = (!in_hand.is_empty()).then(|| now() + self.mapping.batching_window);
        loop {
            if window_end.is_some_and(|end| now() >= end)
                || in_hand.len() >= size
                || payload(in_hand) > MAX_PAYLOAD_BYTES
            {
                return false;
            }
            if *shutdown.borrow() {
                return true;
            }
            let wait = match window_end {
                None => RECEIVE_WAIT_SECONDS,
                Some(end) => {
                    let left = end
                        .saturating_duration_since(now())
                        .as_millis()
                        .div_ceil(1000);
                    RECEIVE_WAIT_SECONDS.min(i32::try_from(left).unwrap_or(i32::MAX))
                }
            };
            let want = (size - in_hand.len()).min(MAX_MESSAGES_PER_RECEIVE);
            let started = now();
            let received = tokio::select! {
                r = self.receive(sqs, want, wait) => r,
                _ = shutdown.changed() => return true,
            };
            match received {
                Ok(messages) => {
                    for m in messages {
                        let bytes = self
                            .event(std::slice::from_ref(&m))
                            .records
                            .first()
                            .map_or(0, |r| serde_json::to_vec(r).map_or(0, |json| json.len()));
                        in_hand.push_back((m, bytes));
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "receive failed; retrying");
                    if !in_hand.is_empty() {
                        // Invoke with the messages in hand.
                        return false;
                    }
                    if !pause(Duration::from_secs(1), shutdown).await {
                        return true;
                    }
                    continue;
                }
            }
            if !in_hand.is_empty() && window_end.is_none() {
                window_end = Some(started + self.mapping.batching_window);
            }
        }
    }

    /// The next batch from the messages in hand: up to `BatchSize` of them
    /// and the payload limit, at least one.
    fn take_batch(&self, in_hand: &mut VecDeque<(Message, usize)>) -> Vec<Message> {
        let size = self.mapping.batch_size.clamp(1, 10_000);
        let mut bytes = EVENT_FRAME_BYTES;
        let mut batch = Vec::new();
        while let Some((_, next)) = in_hand.front() {
            let with_comma = next + usize::from(!batch.is_empty());
            if batch.len() >= size || (!batch.is_empty() && bytes + with_comma > MAX_PAYLOAD_BYTES)
            {
                break;
            }
            bytes += with_comma;
            batch.extend(in_hand.pop_front().map(|(m, _)| m));
        }
        batch
    }

    /// One `ReceiveMessage` of up to `want` messages, waiting up to `wait`
    /// seconds for the first.
    async fn receive(
        &self,
        sqs: &aws_sdk_sqs::Client,
        want: usize,
        wait: i32,
    ) -> Result<Vec<Message>, String> {
        let out = sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::try_from(want).unwrap_or(10))
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        Ok(out.messages.unwrap_or_default())
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

/// Size of the event that would carry every message in hand.
fn payload(in_hand: &VecDeque<(Message, usize)>) -> usize {
    EVENT_FRAME_BYTES + in_hand.iter().map(|(_, bytes)| bytes + 1).sum::<usize>()
}
