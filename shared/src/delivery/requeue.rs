//! Parked and failed events back on the DeliveryQueue: the prober's drain
//! after a recovery and the API's `recover` both send first and delete
//! after, batch by batch, so a crash in between gives at most one batch of
//! duplicates with the same `webhook-id`, never a loss; a delete only
//! removes the copy that was read, so an event parked again meanwhile
//! stays parked.
//!
//! Events go back paced by a [`Pacer`]: at most so many a second, the
//! events of one job (one [order group]) at least [`ORDER_GAP_SECONDS`]
//! apart in the order they were parked, so the endpoint receives each
//! job's states in the order the job went through them.
//!
//! [order group]: crate::domain::message::DeliveryMessage::order_group

use std::collections::HashMap;
use std::time::Instant;

use crate::queue::MAX_DELAY_SECONDS;
use crate::queue::batch::MAX_BATCH_ENTRIES;
use crate::queue::{Outgoing, QueueWriter};
use crate::storage::parked::{ParkedEvent, ParkedEvents};
/// Seconds between two events of one job: each becomes visible on the
/// queue this long after the one before it, so one is delivered before
/// the next is taken (SQS delays have a one-second grain).
pub const ORDER_GAP_SECONDS: u32 = 1;

/// Spaces the events of one requeue step: when each may be delivered,
/// and where the step ends.
#[derive(Debug, Clone)]
pub struct Pacer {
    per_second: Option<u32>,
    offset: u32,
    horizon: u32,
    max_bytes: usize,
    taken: u32,
    bytes: usize,
    last_slot: HashMap<String, u32>,
}

impl Pacer {
    /// Events from `offset` seconds on, at most `per_second` a second
    /// (`None`: as fast as they are sent), none at or past `horizon`
    /// seconds (at most [`MAX_DELAY_SECONDS`]), and at most `max_bytes`
    /// of messages in all.
    pub fn new(per_second: Option<u32>, offset: u32, horizon: u32, max_bytes: usize) -> Self {
        Self {
            per_second: per_second.map(|r| r.max(1)),
            offset,
            horizon: horizon.min(MAX_DELAY_SECONDS + 1),
            max_bytes,
            taken: 0,
            bytes: 0,
            last_slot: HashMap::new(),
        }
    }

    /// The delay in seconds of the next event, of `group` with a message
    /// of `bytes`, or `None` when it does not fit in this step (it and
    /// every event after it wait for the next step).
    pub fn next(&mut self, group: Option<&str>, bytes: usize) -> Option<u32> {
        let base = self.offset + self.per_second.map_or(0, |r| self.taken / r);
        let slot = match group.and_then(|g| self.last_slot.get(g)) {
            Some(last) => base.max(last + ORDER_GAP_SECONDS),
            None => base,
        };
        if slot >= self.horizon || (self.taken > 0 && self.bytes + bytes > self.max_bytes) {
            return None;
        }
        self.taken += 1;
        self.bytes += bytes;
        if let Some(g) = group {
            self.last_slot.insert(g.to_owned(), slot);
        }
        Some(slot)
    }

    /// Events taken so far.
    pub fn taken(&self) -> u32 {
        self.taken
    }

    /// Seconds from the step's start until every event taken so far is
    /// visible: one past the latest delay given (0 when none was).
    pub fn span(&self) -> u32 {
        let latest = self.last_slot.values().copied().max();
        let paced = (self.taken > 0)
            .then(|| self.offset + self.per_second.map_or(0, |r| (self.taken - 1) / r));
        latest.max(paced).map_or(0, |s| s + 1)
    }
}

/// What a requeue did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequeueReport {
    /// Sent to the DeliveryQueue (and deleted, unless counted below).
    pub sent: usize,
    /// Not accepted by SQS: still parked, tried again later.
    pub not_sent: usize,
    /// Sent but still in the table: sent again later (same `webhook-id`).
    pub not_deleted: usize,
    /// Stored messages that no longer parse: set aside as failed, logged.
    pub unreadable: usize,
    /// Events handled from the start of the slice (sent, not sent or set
    /// aside); the rest did not fit the step or the deadline.
    pub handled: usize,
    /// Whether the step stopped before the end of the slice: the pacer is
    /// full or the deadline came.
    pub stopped: bool,
}

/// Sends parked events to the DeliveryQueue and deletes them after.
#[derive(Debug, Clone)]
pub struct Requeuer {
    queue: QueueWriter,
    parked: ParkedEvents,
}

impl Requeuer {
    /// Requeues through `queue` (the DeliveryQueue's writer) from `parked`.
    pub fn new(queue: QueueWriter, parked: ParkedEvents) -> Self {
        Self { queue, parked }
    }

    /// Sends `events` (of one subscription, oldest first) as first
    /// attempts, delayed as `pacer` says, in batches of at most ten entries
    /// and the writer's batch bytes; deletes the ones SQS accepted after each
    /// batch; stops when the pacer is full or `deadline` has come (checked
    /// between batches).
    pub async fn requeue(
        &self,
        subscription_id: &str,
        events: &[ParkedEvent],
        pacer: &mut Pacer,
        deadline: Option<Instant>,
    ) -> RequeueReport {
        let mut report = RequeueReport::default();
        let mut batch: Vec<(&ParkedEvent, Outgoing)> = Vec::with_capacity(MAX_BATCH_ENTRIES);
        let mut limit = self.queue.batch_limit();
        for event in events {
            let Some(msg) = event.requeued() else {
                // Out of the way of the events after it.
                tracing::error!(subscription_id, event_key = %event.event_key, "parked message does not parse: kept as failed");
                if let Err(e) = self.parked.set_aside(event).await {
                    tracing::error!(subscription_id, error = %e, "unreadable parked event not set aside");
                }
                report.unreadable += 1;
                report.handled += 1;
                continue;
            };
            let body = msg.to_body();
            if !limit.fits(body.len()) {
                self.send(subscription_id, std::mem::take(&mut batch), &mut report)
                    .await;
                limit.clear();
            }
            // Between batches, the deadline; the step's first batch always
            // goes, so every step makes progress.
            let first = report.handled == 0 && batch.is_empty();
            if batch.is_empty() && !first && deadline.is_some_and(|d| Instant::now() >= d) {
                report.stopped = true;
                break;
            }
            let Some(delay) = pacer.next(msg.order_group().as_deref(), body.len()) else {
                report.stopped = true;
                break;
            };
            limit.add(body.len());
            let message = Outgoing::of_company(body, &event.company_id).delayed(delay);
            batch.push((event, message));
        }
        self.send(subscription_id, batch, &mut report).await;
        report
    }

    /// Sends one batch and deletes what SQS accepted.
    async fn send(
        &self,
        subscription_id: &str,
        batch: Vec<(&ParkedEvent, Outgoing)>,
        report: &mut RequeueReport,
    ) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len();
        report.handled += count;
        let (events, messages): (Vec<&ParkedEvent>, Vec<Outgoing>) = batch.into_iter().unzip();
        let sent: Vec<&ParkedEvent> = match self.queue.send_batch(&messages).await {
            Ok(answer) => {
                report.not_sent += answer.rejected.len();
                answer
                    .accepted
                    .iter()
                    .filter_map(|&i| events.get(i).copied())
                    .collect()
            }
            Err(e) => {
                tracing::error!(subscription_id, error = %e.message, "parked events not sent: tried again later");
                report.not_sent += count;
                Vec::new()
            }
        };
        report.sent += sent.len();
        report.not_deleted += self.parked.delete_sent(&sent).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_events_are_a_gap_apart_and_others_follow_the_rate() {
        let mut p = Pacer::new(Some(10), 0, 60, usize::MAX);
        let slots: Vec<u32> = ["a", "b", "a", "c", "a"]
            .into_iter()
            .map(|g| p.next(Some(g), 100).unwrap())
            .collect();
        assert_eq!(slots, [0, 0, 1, 0, 2]);
        let mut p = Pacer::new(Some(2), 5, 60, usize::MAX);
        let slots: Vec<u32> = (0..5).map(|_| p.next(None, 1).unwrap()).collect();
        assert_eq!(slots, [5, 5, 6, 6, 7], "two a second after the offset");
    }

    #[test]
    fn a_step_ends_at_its_horizon_or_its_bytes() {
        let mut p = Pacer::new(Some(1), 0, 3, usize::MAX);
        assert_eq!(p.next(None, 1), Some(0));
        assert_eq!(p.next(None, 1), Some(1));
        assert_eq!(p.next(None, 1), Some(2));
        assert_eq!(p.next(None, 1), None);
        let mut p = Pacer::new(None, 0, 900, 1000);
        assert_eq!(p.next(Some("j"), 600), Some(0));
        assert_eq!(p.next(Some("k"), 600), None, "past the byte cap");
        let mut p = Pacer::new(None, 0, 900, 10);
        assert_eq!(p.next(None, 600), Some(0), "one event always fits");
        let mut p = Pacer::new(None, 0, 2, usize::MAX);
        assert_eq!(p.next(Some("j"), 1), Some(0));
        assert_eq!(p.next(Some("j"), 1), Some(1));
        assert_eq!(p.next(Some("j"), 1), None, "the job's next state waits");
        assert_eq!(p.taken(), 2);
        assert_eq!(p.span(), 2);
        let mut p = Pacer::new(Some(2), 3, 60, usize::MAX);
        assert_eq!(p.span(), 0);
        for _ in 0..3 {
            p.next(None, 1);
        }
        assert_eq!(p.span(), 5, "slots 3, 3 and 4");
    }
}
