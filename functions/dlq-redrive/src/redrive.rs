//! One redrive pass over the DeadLetterQueue.
//!
//! Every message received is held invisible (its visibility timeout covers
//! the rest of the invocation) until the pass ends, so a pass reads each
//! message once and ends when a receive comes back empty. Matching
//! deliveries are sent to the DeliveryQueue first and deleted from the DLQ
//! only once the send was accepted; everything left in the DLQ (other
//! deliveries, malformed bodies, failed sends) is made visible again when
//! the pass ends. If the function dies mid-pass, the held messages come back
//! on their own when their visibility timeout expires.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::Message;
use serde::Serialize;
use shared::domain::message::{DEAD_LETTER_REASON_ATTRIBUTE, DeliveryMessage};
use shared::queue::batch::MAX_BATCH_ENTRIES;
use shared::queue::{Outgoing, QueueWriter};

use crate::batch;
use crate::config::RedriveConfig;
use crate::request::RedriveRequest;

/// A pass stops receiving when less than this is left before the deadline,
/// keeping time to move the last batch and release what it holds.
pub const STOP_MARGIN: Duration = Duration::from_secs(10);

/// Received messages stay invisible this long after the deadline, so they
/// outlive the pass but come back soon if the function dies.
pub const HOLD_MARGIN: Duration = Duration::from_secs(30);

/// Longest visibility timeout SQS accepts (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// Long-poll wait of each receive: a short poll on SQS can come back empty
/// while messages exist, a long poll asks every server.
const RECEIVE_WAIT_SECONDS: i32 = 1;

/// Most messages one pass examines. Everything examined is in flight until
/// the pass ends, and a standard queue allows 120,000 in flight.
pub const MAX_EXAMINED: usize = 100_000;

/// `dead_letter_reason` of messages dead-lettered by the queue's redrive
/// policy, which carry no attribute.
const REDRIVE_POLICY: &str = "redrive_policy";

/// Why a pass ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// A receive returned nothing: every message was examined.
    #[default]
    QueueEmpty,
    /// `max_messages` matching messages were taken.
    MaxMessages,
    /// The invocation deadline was near.
    TimeLimit,
    /// [`MAX_EXAMINED`] messages were examined.
    ExamineLimit,
    /// `ReceiveMessage` failed (see `error`).
    ReceiveFailed,
}

/// What a run did; the invocation's result.
///
/// `examined = matched + skipped + malformed`, and outside a dry run
/// `matched = moved + failed + not_deleted`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// Distinct messages received from the DLQ.
    pub examined: usize,
    /// Delivery messages that match the request (in a dry run: what would
    /// be moved).
    pub matched: usize,
    /// Sent to the DeliveryQueue and deleted from the DLQ.
    pub moved: usize,
    /// Delivery messages that do not match; left in the DLQ.
    pub skipped: usize,
    /// Bodies that are not delivery messages; left in the DLQ.
    pub malformed: usize,
    /// Matching messages the DeliveryQueue did not accept; left in the DLQ.
    pub failed: usize,
    /// Sent to the DeliveryQueue but not deleted from the DLQ: they show up
    /// there again once the run's visibility timeout expires, and a later
    /// redrive sends them again (a duplicate delivery, which the idempotency
    /// key makes safe).
    pub not_deleted: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Why the pass ended.
    pub stopped: Stopped,
    /// The receive error when `stopped` is `receive_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A matching message taken in this pass.
struct Taken {
    message_id: String,
    receipt: String,
    reason: String,
    message: DeliveryMessage,
}

/// Messages received in this pass that stay in the DLQ, by message id, with
/// their latest receipt handle; released when the pass ends.
type Held = HashMap<String, String>;

/// The redrive function: queue client and URLs, built once per process.
#[derive(Debug, Clone)]
pub struct Redriver {
    sqs: aws_sdk_sqs::Client,
    dead_letter_queue_url: String,
    delivery_queue: QueueWriter,
}

impl Redriver {
    /// A redriver from `config` and an SQS client.
    pub fn new(config: &RedriveConfig, sqs: aws_sdk_sqs::Client) -> Self {
        Self {
            delivery_queue: QueueWriter::new(sqs.clone(), config.delivery_queue_url.clone()),
            sqs,
            dead_letter_queue_url: config.dead_letter_queue_url.clone(),
        }
    }

    /// Makes one pass over the DLQ for `request`, receiving nothing new
    /// once `deadline` is less than [`STOP_MARGIN`] away.
    pub async fn run(&self, request: &RedriveRequest, deadline: Instant) -> RedriveReport {
        let mut report = RedriveReport {
            dry_run: request.dry_run,
            ..RedriveReport::default()
        };
        let mut held = Held::new();
        let mut taken_ids: HashSet<String> = HashSet::new();
        report.stopped = loop {
            if report.matched >= request.max_messages {
                break Stopped::MaxMessages;
            }
            if report.examined >= MAX_EXAMINED {
                break Stopped::ExamineLimit;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left < STOP_MARGIN {
                break Stopped::TimeLimit;
            }
            let want = (request.max_messages - report.matched).min(MAX_BATCH_ENTRIES);
            let messages = match self.receive(want, left + HOLD_MARGIN).await {
                Ok(messages) if messages.is_empty() => break Stopped::QueueEmpty,
                Ok(messages) => messages,
                Err(e) => {
                    tracing::error!(error = %e, "receiving from the dead-letter queue failed; ending the pass");
                    report.error = Some(e);
                    break Stopped::ReceiveFailed;
                }
            };
            let mut taken = Vec::new();
            for m in messages {
                let Some(t) = classify(m, request, &mut report, &mut held, &mut taken_ids) else {
                    continue;
                };
                taken.push(t);
            }
            if request.dry_run {
                for t in taken {
                    log_taken(&t, "would move this delivery back to the delivery queue");
                    held.insert(t.message_id, t.receipt);
                }
            } else if !taken.is_empty() {
                self.move_back(taken, &mut report, &mut held).await;
            }
        };
        self.release(held).await;
        report
    }

    /// Receives up to `max` messages, hidden for `hold`.
    async fn receive(&self, max: usize, hold: Duration) -> Result<Vec<Message>, String> {
        let hold = hold.min(MAX_VISIBILITY).as_secs().max(1);
        self.sqs
            .receive_message()
            .queue_url(&self.dead_letter_queue_url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .visibility_timeout(i32::try_from(hold).unwrap_or(43_200))
            .wait_time_seconds(RECEIVE_WAIT_SECONDS)
            .message_attribute_names(DEAD_LETTER_REASON_ATTRIBUTE)
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| DisplayErrorContext(e).to_string())
    }

    /// Sends the redriven bodies, then deletes from the DLQ exactly the
    /// messages whose send was accepted.
    async fn move_back(&self, taken: Vec<Taken>, report: &mut RedriveReport, held: &mut Held) {
        let outgoing: Vec<Outgoing> = taken
            .iter()
            .map(|t| {
                Outgoing::of_company(
                    t.message.clone().redriven().to_body(),
                    &t.message.company_id,
                )
            })
            .collect();
        let sent = self
            .delivery_queue
            .send_all(&outgoing, 1, batch::RETRIES)
            .await
            .accepted;
        let receipts: Vec<String> = sent.iter().map(|&i| taken[i].receipt.clone()).collect();
        let deleted: Vec<usize> = batch::delete(&self.sqs, &self.dead_letter_queue_url, &receipts)
            .await
            .into_iter()
            .map(|j| sent[j])
            .collect();
        for (i, t) in taken.into_iter().enumerate() {
            if deleted.contains(&i) {
                report.moved += 1;
                log_taken(&t, "moved delivery back to the delivery queue");
            } else if sent.contains(&i) {
                report.not_deleted += 1;
                tracing::warn!(
                    message_id = %t.message_id,
                    subscription_id = %t.message.subscription_id,
                    webhook_id = %t.message.webhook_id,
                    "delivery sent to the delivery queue but not deleted from the dead-letter queue; a later redrive would send it again"
                );
            } else {
                report.failed += 1;
                tracing::warn!(
                    message_id = %t.message_id,
                    subscription_id = %t.message.subscription_id,
                    webhook_id = %t.message.webhook_id,
                    "the delivery queue did not accept the delivery; it stays in the dead-letter queue"
                );
                held.insert(t.message_id, t.receipt);
            }
        }
    }

    /// Makes every held message visible again.
    async fn release(&self, held: Held) {
        if held.is_empty() {
            return;
        }
        let receipts: Vec<String> = held.into_values().collect();
        let released = batch::release(&self.sqs, &self.dead_letter_queue_url, &receipts).await;
        if released < receipts.len() {
            tracing::warn!(
                held = receipts.len(),
                released,
                "some messages could not be made visible again; they reappear when their visibility timeout expires"
            );
        }
    }
}

/// Counts one received message and returns it when it is to be moved; the
/// others are held for release. A message already seen in this pass (SQS
/// may deliver a message twice) is not counted again.
fn classify(
    m: Message,
    request: &RedriveRequest,
    report: &mut RedriveReport,
    held: &mut Held,
    taken_ids: &mut HashSet<String>,
) -> Option<Taken> {
    let (Some(message_id), Some(receipt)) = (m.message_id, m.receipt_handle) else {
        tracing::warn!("received a message without id or receipt handle; ignoring it");
        return None;
    };
    if taken_ids.contains(&message_id) {
        return None;
    }
    if let Some(old) = held.get_mut(&message_id) {
        // Only the latest receipt handle is sure to release it.
        *old = receipt;
        return None;
    }
    report.examined += 1;
    let reason = m
        .message_attributes
        .as_ref()
        .and_then(|a| a.get(DEAD_LETTER_REASON_ATTRIBUTE))
        .and_then(|v| v.string_value())
        .unwrap_or(REDRIVE_POLICY)
        .to_owned();
    let Some(message) = m.body.as_deref().and_then(DeliveryMessage::parse) else {
        report.malformed += 1;
        tracing::warn!(
            message_id = %message_id,
            dead_letter_reason = %reason,
            "not a delivery message; it stays in the dead-letter queue"
        );
        held.insert(message_id, receipt);
        return None;
    };
    if !request.selection.matches(&message) {
        report.skipped += 1;
        held.insert(message_id, receipt);
        return None;
    }
    report.matched += 1;
    taken_ids.insert(message_id.clone());
    Some(Taken {
        message_id,
        receipt,
        reason,
        message,
    })
}

fn log_taken(t: &Taken, what: &'static str) {
    tracing::info!(
        message_id = %t.message_id,
        company_id = %t.message.company_id,
        subscription_id = %t.message.subscription_id,
        webhook_id = %t.message.webhook_id,
        event_type = %t.message.event_type,
        dead_lettered_attempt = t.message.attempt,
        dead_letter_reason = %t.reason,
        "{what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_serialises_to_the_documented_shape() {
        let report = RedriveReport {
            examined: 7,
            matched: 4,
            moved: 2,
            skipped: 2,
            malformed: 1,
            failed: 1,
            not_deleted: 1,
            dry_run: false,
            stopped: Stopped::QueueEmpty,
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            json!({
                "examined": 7, "matched": 4, "moved": 2, "skipped": 2,
                "malformed": 1, "failed": 1, "not_deleted": 1,
                "dry_run": false, "stopped": "queue_empty"
            })
        );
        let failed = RedriveReport {
            stopped: Stopped::ReceiveFailed,
            error: Some("boom".into()),
            ..RedriveReport::default()
        };
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            (v["stopped"].as_str(), v["error"].as_str()),
            (Some("receive_failed"), Some("boom"))
        );
    }
}
