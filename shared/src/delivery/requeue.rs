//! Parked and failed events back on the DeliveryQueue: the prober's drain
//! after a recovery and the API's `recover` both send first and delete
//! after, so a crash in between gives a duplicate with the same
//! `webhook-id`, never a loss; a delete only removes the copy that was
//! read, so an event parked again meanwhile stays parked.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::delivery::message::group_id;
use crate::storage::parked::{ParkedEvent, ParkedEvents, ParkedStatus};

/// Longest delay SQS applies to a message, in seconds.
pub const MAX_DELAY_SECONDS: u32 = 900;
/// Most message bytes in one `SendMessageBatch` (SQS's limit for the whole
/// batch is 256 KiB).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// What a requeue did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequeueReport {
    /// Sent to the DeliveryQueue (and deleted, unless counted below).
    pub sent: usize,
    /// Not accepted by SQS: still parked, tried again later.
    pub not_sent: usize,
    /// Sent but still in the table: sent again later (same `webhook-id`).
    pub not_deleted: usize,
    /// Stored messages that no longer parse: left in the table, logged.
    pub unreadable: usize,
}

/// Sends parked events to the DeliveryQueue and deletes them after.
#[derive(Debug, Clone)]
pub struct Requeuer {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    parked: ParkedEvents,
}

impl Requeuer {
    /// Requeues to `queue_url` from `parked`.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: String, parked: ParkedEvents) -> Self {
        Self {
            sqs,
            queue_url,
            parked,
        }
    }

    /// Sends `events` (of one subscription) in order, event `i` delayed by
    /// `delay_of(i)` seconds (at most 15 minutes), as first attempts; then
    /// deletes the ones SQS accepted.
    pub async fn requeue(
        &self,
        subscription_id: &str,
        events: &[ParkedEvent],
        delay_of: impl Fn(usize) -> u32,
    ) -> RequeueReport {
        let mut report = RequeueReport::default();
        let mut sent: Vec<&ParkedEvent> = Vec::with_capacity(events.len());
        // Batches of at most ten entries and MAX_BATCH_BYTES of bodies.
        let mut batches: Vec<Vec<(usize, &ParkedEvent, String)>> = Vec::new();
        let mut bytes = 0;
        for (i, event) in events.iter().enumerate() {
            let Some(msg) = event.requeued() else {
                // Set aside as failed: kept for the customer to see, and
                // out of the way of the events after it.
                tracing::error!(subscription_id, event_key = %event.event_key, "parked message does not parse: kept as failed");
                let mut failed = event.clone();
                failed.status = ParkedStatus::Failed;
                if let Err(e) = self.parked.put(&failed).await {
                    tracing::error!(subscription_id, error = %e, "unreadable parked event not set aside");
                }
                report.unreadable += 1;
                continue;
            };
            let body = msg.to_body();
            let full = batches
                .last()
                .is_none_or(|b| b.len() == 10 || bytes + body.len() > MAX_BATCH_BYTES);
            if full {
                batches.push(Vec::with_capacity(10));
                bytes = 0;
            }
            bytes += body.len();
            batches.last_mut().expect("a batch").push((i, event, body));
        }
        for batch in batches {
            let mut entries = Vec::with_capacity(batch.len());
            let mut keys = Vec::with_capacity(batch.len());
            for (i, event, body) in batch {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_group_id(group_id(&event.company_id))
                    .message_body(body)
                    .delay_seconds(i32::try_from(delay_of(i).min(MAX_DELAY_SECONDS)).unwrap_or(0))
                    .build()
                    .expect("id and body are set");
                entries.push(entry);
                keys.push((i.to_string(), event));
            }
            if entries.is_empty() {
                continue;
            }
            let count = entries.len();
            match self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for ok in &out.successful {
                        if let Some((_, event)) = keys.iter().find(|(id, _)| *id == ok.id) {
                            sent.push(event);
                        }
                    }
                    report.not_sent += out.failed.len();
                }
                Err(e) => {
                    tracing::error!(subscription_id, error = %DisplayErrorContext(&e), "parked events not sent: tried again later");
                    report.not_sent += count;
                }
            }
        }
        report.sent = sent.len();
        report.not_deleted = self.parked.delete_sent(&sent).await;
        report
    }
}
