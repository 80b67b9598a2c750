//! The queue batch handler.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use shared::deadline::Deadline;
use shared::domain::cloud_event::{PlatformEvent, Refusal, RefusalCode};
use shared::domain::message;
use shared::domain::subscription::Subscription;
use shared::metrics::Metrics;
use shared::queue::Outgoing;
use shared::queue::batch::MAX_BATCH_BYTES;
use shared::queue::fanout::{Enqueuer, Outbox, SendReport, Tagged};
use shared::storage::subscriptions::SubscriptionStore;
use shared::storage::subscriptions::receiving::ReceivingCache;

use crate::config::PlatformIngestConfig;

/// Subscription lookups in flight at once.
const LOOKUP_CONCURRENCY: usize = 16;
/// Largest SQS message, body and attributes together (256 KiB).
const MAX_SQS_MESSAGE_BYTES: usize = 262_144;
/// Bytes of bodies in one dead-letter batch: refused events carry a few
/// attributes on top of their body, which SQS counts in the batch too.
const DEAD_LETTER_BATCH_BYTES: usize = 200 * 1024;

/// Message attribute of a dead-lettered event: its refusal's code.
pub const REASON_ATTRIBUTE: &str = "reason";
/// Message attribute of a dead-lettered event: its refusal's message.
pub const REASON_DETAIL_ATTRIBUTE: &str = "reason_detail";
/// Message attribute of a dead-lettered event: the `messageId` it had on
/// PlatformEventsQueue.
pub const SOURCE_MESSAGE_ID_ATTRIBUTE: &str = "source_message_id";
/// Message attribute of a dead-lettered event whose body was cut to fit
/// beside its attributes: the body's full length in bytes.
pub const BODY_BYTES_ATTRIBUTE: &str = "body_bytes";

/// Counts of one invocation, logged and emitted as metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchStats {
    /// Records in the event.
    pub records: usize,
    /// Records that were valid platform events.
    pub events: usize,
    /// Valid events no subscription matched.
    pub unmatched: usize,
    /// Records refused, by reason (each sent to the dead-letter queue).
    pub refused: BTreeMap<RefusalCode, usize>,
    /// Refused records the dead-letter queue accepted.
    pub dead_lettered: usize,
    /// Delivery messages accepted by SQS.
    pub enqueued: usize,
    /// `SendMessageBatch` calls, both queues, retries included.
    pub send_calls: usize,
    /// Records reported in `batchItemFailures` because a message of theirs
    /// (or their dead letter, or their company's subscriptions) failed.
    pub failed_records: usize,
    /// Records not taken because the deadline was near (also reported).
    pub deferred: usize,
    /// Times the outbox was sent.
    pub flushes: usize,
    /// Most messages held in memory at once.
    pub peak_outbox: usize,
}

impl BatchStats {
    /// Refused records, whatever the reason.
    pub fn refused_total(&self) -> usize {
        self.refused.values().sum()
    }

    /// The invocation's EMF metrics.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.count("PlatformRecords", self.records as u64)
            .count("PlatformEvents", self.events as u64)
            .count("RefusedEvents", self.refused_total() as u64)
            .count("DeadLetteredEvents", self.dead_lettered as u64)
            .count("MessagesEnqueued", self.enqueued as u64)
            .count("FailedRecords", self.failed_records as u64)
            .count("DeferredRecords", self.deferred as u64);
        m
    }
}

/// The platform events ingestion: configuration, store, cache and queue
/// clients, built once per process.
#[derive(Debug)]
pub struct PlatformIngest {
    store: SubscriptionStore,
    cache: ReceivingCache,
    deliveries: Enqueuer,
    dead_letters: Enqueuer,
    outbox_messages: usize,
    outbox_bytes: usize,
    deadline_margin: Duration,
}

impl PlatformIngest {
    /// A handler from `config` and the two AWS clients.
    pub fn new(
        config: &PlatformIngestConfig,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> Self {
        Self {
            store: SubscriptionStore::new(dynamodb, config.table.clone()),
            cache: ReceivingCache::new(config.fanout.cache_ttl),
            deliveries: Enqueuer::new(
                sqs.clone(),
                config.queue_url.clone(),
                config.fanout.send_concurrency,
                config.fanout.send_attempts,
                MAX_BATCH_BYTES,
            ),
            dead_letters: Enqueuer::new(
                sqs,
                config.dead_letter_queue_url.clone(),
                1,
                config.fanout.send_attempts,
                DEAD_LETTER_BATCH_BYTES,
            ),
            outbox_messages: config.fanout.outbox_messages,
            outbox_bytes: config.fanout.outbox_bytes,
            deadline_margin: config.deadline_margin,
        }
    }

    /// Sizes the outbox differently (tests of the chunking).
    pub fn with_outbox(mut self, max_messages: usize, max_bytes: usize) -> Self {
        self.outbox_messages = max_messages.max(1);
        self.outbox_bytes = max_bytes.max(1);
        self
    }

    /// The invocation's deadline with this function's safety margin.
    pub fn deadline(&self, at: Option<Instant>) -> Deadline {
        Deadline::new(at, self.deadline_margin)
    }

    /// Handles one queue batch: logs its counts, emits its metrics and
    /// returns the records SQS is to deliver again.
    pub async fn handle(&self, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        let started = Instant::now();
        let (response, stats) = self.process(event, deadline).await;
        let refused: BTreeMap<&str, usize> = stats
            .refused
            .iter()
            .map(|(code, n)| (code.as_str(), *n))
            .collect();
        // The batch's counts are in its EMF line, and every record that
        // failed, was set aside or refused logs its own warning: this
        // summary is for debugging only.
        tracing::debug!(
            records = stats.records,
            events = stats.events,
            unmatched = stats.unmatched,
            refused = ?refused,
            dead_lettered = stats.dead_lettered,
            enqueued = stats.enqueued,
            send_calls = stats.send_calls,
            failed_records = stats.failed_records,
            deferred = stats.deferred,
            flushes = stats.flushes,
            peak_outbox = stats.peak_outbox,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "platform events batch processed"
        );
        stats.metrics().emit("platform-events-ingest");
        response
    }

    /// The work of [`Self::handle`], with its counts. Every record is read
    /// and validated; refused ones are sent to the dead-letter queue with
    /// their reason, valid ones to the DeliveryQueue once per matching
    /// subscription, in bounded flushes. A record is reported as failed
    /// when a message of it was never accepted, its company's
    /// subscriptions could not be read, or the deadline was near before it
    /// was taken; every other record is acknowledged.
    pub async fn process(
        &self,
        event: SqsEvent,
        deadline: Deadline,
    ) -> (SqsBatchResponse, BatchStats) {
        let mut stats = BatchStats {
            records: event.records.len(),
            ..BatchStats::default()
        };
        let now = Utc::now();
        let items: Vec<Result<PlatformEvent, Refusal>> = event
            .records
            .iter()
            .map(|record| read(record, now))
            .collect();
        let companies: Vec<String> = items
            .iter()
            .filter_map(|item| match item {
                Ok(e) => Some(e.company_id.clone()),
                Err(_) => None,
            })
            .collect();
        stats.events = companies.len();
        let subscriptions = self
            .cache
            .lookup(&self.store, companies, LOOKUP_CONCURRENCY)
            .await;

        let mut failed: BTreeSet<usize> = BTreeSet::new();
        let mut outbox = Outbox::new(self.outbox_messages, self.outbox_bytes);
        let mut dead = Vec::new();
        for (position, (record, item)) in event.records.iter().zip(&items).enumerate() {
            if position > 0 && deadline.is_near() {
                stats.deferred = items.len() - position;
                failed.extend(position..items.len());
                tracing::warn!(
                    deferred = stats.deferred,
                    remaining_ms = deadline.remaining().map(|d| d.as_millis() as u64),
                    "invocation deadline near; the rest of the batch is left on the queue"
                );
                break;
            }
            let event = match item {
                Err(refusal) => {
                    *stats.refused.entry(refusal.code).or_default() += 1;
                    tracing::warn!(
                        message_id = record.message_id.as_deref(),
                        reason = refusal.code.as_str(),
                        detail = %refusal.message,
                        "platform event refused; sent to the dead-letter queue"
                    );
                    dead.push(Tagged {
                        record: position,
                        message: dead_letter(record, refusal),
                    });
                    continue;
                }
                Ok(event) => event,
            };
            let subs = match subscriptions.get(&event.company_id) {
                Some(Ok(subs)) => subs,
                _ => {
                    failed.insert(position);
                    continue;
                }
            };
            let matching = matching(event, subs);
            if matching.is_empty() {
                stats.unmatched += 1;
                continue;
            }
            let group: Arc<str> = Arc::from(message::group_id(&event.company_id).as_ref());
            let bodies = event.bodies();
            for sub in matching {
                let message =
                    Outgoing::new(bodies.body(&sub.subscription_id)).grouped(Arc::clone(&group));
                if outbox.push(Tagged {
                    record: position,
                    message,
                }) {
                    let report = self.flush(&mut outbox, &mut stats).await;
                    failed.extend(report.failed_records);
                }
            }
        }
        let report = self.flush(&mut outbox, &mut stats).await;
        failed.extend(report.failed_records);
        if !dead.is_empty() {
            let total = dead.len();
            let report = self.dead_letters.send(dead).await;
            stats.send_calls += report.calls;
            stats.dead_lettered += total - report.failed_records.len();
            if !report.failed_records.is_empty() {
                tracing::error!(
                    failed = report.failed_records.len(),
                    "refused events not accepted by the dead-letter queue; SQS delivers them again"
                );
            }
            failed.extend(report.failed_records);
        }
        stats.failed_records = failed.len() - stats.deferred;

        let mut unnamed = 0;
        let ids: Vec<&str> = failed
            .iter()
            .filter_map(|&position| {
                let id = event.records[position].message_id.as_deref();
                unnamed += usize::from(id.is_none());
                id
            })
            .collect();
        if unnamed > 0 {
            tracing::error!(
                records = unnamed,
                "failed records without a messageId cannot be reported; SQS will not deliver them again"
            );
        }
        let mut response = SqsBatchResponse::default();
        response.set_failures(ids);
        (response, stats)
    }

    /// Sends the outbox to the DeliveryQueue.
    async fn flush(&self, outbox: &mut Outbox, stats: &mut BatchStats) -> SendReport {
        if outbox.is_empty() {
            return SendReport::default();
        }
        stats.peak_outbox = stats.peak_outbox.max(outbox.len());
        stats.flushes += 1;
        let report = self.deliveries.send(outbox.take()).await;
        stats.enqueued += report.sent;
        stats.send_calls += report.calls;
        report
    }
}

/// The record's event, or why it is refused. Its time, when it carries
/// none, is when SQS received it (`SentTimestamp`, the same on every
/// redelivery), else `now`.
fn read(record: &SqsMessage, now: DateTime<Utc>) -> Result<PlatformEvent, Refusal> {
    let received = record
        .attributes
        .get("SentTimestamp")
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(now);
    let Some(body) = record.body.as_deref() else {
        return Err(Refusal {
            code: RefusalCode::Malformed,
            message: "the message has no body".to_owned(),
        });
    };
    PlatformEvent::parse(body, received)
}

/// The subscriptions of the event's company whose filters it passes
/// (`events` subscriptions only: a `jobs` one passes no platform event).
fn matching<'a>(event: &PlatformEvent, subs: &'a [Subscription]) -> Vec<&'a Subscription> {
    let context = event.context();
    subs.iter()
        .filter(|s| s.filters.matches_event(&event.event_type, &context))
        .collect()
}

/// The dead-letter message of a refused record: its body as it came
/// (cut, and its length said, when it would not fit beside the
/// attributes), with the refusal's code and message and the record's
/// message id.
fn dead_letter(record: &SqsMessage, refusal: &Refusal) -> Outgoing {
    let mut attributes = vec![
        (REASON_ATTRIBUTE, refusal.code.as_str().to_owned()),
        (REASON_DETAIL_ATTRIBUTE, refusal.message.clone()),
    ];
    if let Some(id) = &record.message_id {
        attributes.push((SOURCE_MESSAGE_ID_ATTRIBUTE, id.clone()));
    }
    let body = record.body.as_deref().unwrap_or_default();
    // Each attribute counts its name, its type ("String") and its value.
    let attribute_bytes: usize = attributes
        .iter()
        .map(|(name, value)| name.len() + 6 + value.len())
        .sum::<usize>()
        + BODY_BYTES_ATTRIBUTE.len()
        + 6
        + 20;
    let room = MAX_SQS_MESSAGE_BYTES - attribute_bytes;
    // SQS refuses an empty body.
    let mut kept = shared::text::prefix(body, room).to_owned();
    if kept.len() < body.len() {
        attributes.push((BODY_BYTES_ATTRIBUTE, body.len().to_string()));
    }
    if kept.is_empty() {
        kept.push_str("(empty)");
    }
    attributes
        .into_iter()
        .fold(Outgoing::new(kept), |m, (name, value)| {
            m.with_attribute(name, value)
        })
}

/// Compile-time check: the handler's future is `Send`, so runners (the
/// local stack) can spawn it on a multi-threaded runtime.
#[cfg(test)]
#[allow(dead_code)]
fn process_is_send(ingest: &'static PlatformIngest, event: SqsEvent) {
    fn is_send<T: Send>(_: T) {}
    is_send(ingest.process(event, Deadline::none()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &str) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = Some("m-1".to_owned());
        r.body = Some(body.to_owned());
        r
    }

    fn attribute<'a>(m: &'a Outgoing, name: &str) -> Option<&'a str> {
        m.attributes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn dead_letters_carry_the_body_and_the_reason_within_sqs_limits() {
        let refusal = Refusal {
            code: RefusalCode::UnknownType,
            message: "type \"x\" is not in the event catalogue".to_owned(),
        };
        let m = dead_letter(&record("{\"type\":\"x\"}"), &refusal);
        assert_eq!(m.body, "{\"type\":\"x\"}");
        assert_eq!(attribute(&m, REASON_ATTRIBUTE), Some("unknown_type"));
        assert_eq!(
            attribute(&m, REASON_DETAIL_ATTRIBUTE),
            Some(refusal.message.as_str())
        );
        assert_eq!(attribute(&m, SOURCE_MESSAGE_ID_ATTRIBUTE), Some("m-1"));
        assert_eq!(attribute(&m, BODY_BYTES_ATTRIBUTE), None);

        let huge = "é".repeat(MAX_SQS_MESSAGE_BYTES / 2);
        let m = dead_letter(&record(&huge), &refusal);
        let total: usize = m.body.len()
            + m.attributes
                .iter()
                .map(|(n, v)| n.len() + 6 + v.len())
                .sum::<usize>();
        assert!(total <= MAX_SQS_MESSAGE_BYTES, "{total}");
        assert!(huge.starts_with(&m.body));
        assert_eq!(
            attribute(&m, BODY_BYTES_ATTRIBUTE),
            Some(huge.len().to_string().as_str())
        );

        let m = dead_letter(&record(""), &refusal);
        assert!(!m.body.is_empty(), "SQS refuses empty bodies");
    }

    #[test]
    fn the_event_time_defaults_to_when_sqs_received_it() {
        let data = shared::catalogue::find("engine.slow_query_event")
            .and_then(|e| e.examples.first())
            .expect("a catalogue example");
        let event = serde_json::json!({
            "specversion": "1.0", "id": "1", "source": "s",
            "type": "engine.slow_query_event", "companyid": "acme", "data": data
        });
        let mut r = record(&event.to_string());
        r.attributes
            .insert("SentTimestamp".to_owned(), "1795341600123".to_owned());
        let e = read(&r, Utc::now()).expect("a valid event");
        assert_eq!(e.timestamp, "2026-11-22T10:00:00.123Z");
    }
}
