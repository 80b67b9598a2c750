//! The stream batch handler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::StreamExt;
use serde_json::Value;
use shared::delivery::message::{self, EventEnvelope};
use shared::domain::job_event::{self, ChangeKind, JobTransition, TRIM_ORDER};
use shared::domain::subscription::Subscription;
use shared::metrics::Metrics;
use shared::storage::subscriptions::{StoreError, SubscriptionStore};

use crate::cache::SubscriptionCache;
use crate::config::IngestConfig;
use crate::enqueue::{Enqueuer, Outgoing};

/// Subscription lookups in flight at once.
const LOOKUP_CONCURRENCY: usize = 16;

/// A transition found in the batch, with where it came from.
struct Found {
    /// Position of the record in the batch.
    index: usize,
    event_id: String,
    sequence_number: String,
    timestamp: String,
    transition: JobTransition,
}

/// Counts of one invocation, logged and emitted as metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchStats {
    /// Records in the event.
    pub records: usize,
    /// Records that were state transitions.
    pub transitions: usize,
    /// Records that were not transitions (same-state MODIFY, REMOVE).
    pub ignored: usize,
    /// Records skipped because they could not be parsed.
    pub malformed: usize,
    /// Messages accepted by SQS.
    pub enqueued: usize,
    /// `SendMessageBatch` calls.
    pub send_calls: usize,
    /// Events trimmed to fit the message size limit.
    pub trimmed: usize,
    /// Records whose messages were not all accepted.
    pub failed_records: usize,
}

impl BatchStats {
    /// The invocation's EMF metrics.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.count("StreamRecords", self.records as u64)
            .count("Transitions", self.transitions as u64)
            .count("MalformedRecords", self.malformed as u64)
            .count("MessagesEnqueued", self.enqueued as u64)
            .count("TrimmedEvents", self.trimmed as u64)
            .count("FailedRecords", self.failed_records as u64);
        m
    }
}

/// The ingest function: configuration, store, cache and queue client,
/// built once per process.
#[derive(Debug)]
pub struct Ingest {
    store: SubscriptionStore,
    cache: SubscriptionCache,
    enqueuer: Enqueuer,
    max_message_bytes: usize,
}

fn skip(event_id: &str, reason: &dyn std::fmt::Display) {
    tracing::warn!(event_id, reason = %reason, "skipping stream record");
}

impl Ingest {
    /// An ingest handler from `config` and the two AWS clients.
    pub fn new(
        config: &IngestConfig,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> Self {
        Self {
            store: SubscriptionStore::new(dynamodb, config.table.clone()),
            cache: SubscriptionCache::new(config.cache_ttl),
            enqueuer: Enqueuer::new(
                sqs,
                config.queue_url.clone(),
                config.send_concurrency,
                config.send_attempts,
                config.max_message_bytes,
            ),
            max_message_bytes: config.max_message_bytes,
        }
    }

    /// Handles one stream event and returns the checkpoint for Lambda.
    pub async fn handle(&self, event: Value) -> DynamoDbEventResponse {
        let started = Instant::now();
        let (response, stats) = self.process(event).await;
        tracing::info!(
            records = stats.records,
            transitions = stats.transitions,
            ignored = stats.ignored,
            malformed = stats.malformed,
            enqueued = stats.enqueued,
            send_calls = stats.send_calls,
            trimmed = stats.trimmed,
            failed_records = stats.failed_records,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "stream batch processed"
        );
        stats.metrics().emit("job-events-ingest");
        response
    }

    /// The work of [`Ingest::handle`], with its counts.
    pub async fn process(&self, event: Value) -> (DynamoDbEventResponse, BatchStats) {
        let mut stats = BatchStats::default();
        let records = match event {
            Value::Object(mut map) => match map.remove("Records") {
                Some(Value::Array(records)) => records,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        if records.is_empty() {
            tracing::warn!("stream event without records");
        }
        stats.records = records.len();
        let found = self.transitions(records, &mut stats);
        stats.transitions = found.len();

        let subscriptions = self.lookup(&found).await;
        let mut messages = Vec::new();
        let mut failed: Vec<usize> = Vec::new();
        for f in &found {
            match subscriptions.get(f.transition.company_id.as_str()) {
                Some(Ok(subs)) => {
                    if !self.messages_for(f, subs, &mut messages, &mut stats) {
                        failed.push(f.index);
                    }
                }
                _ => failed.push(f.index),
            }
        }
        let report = self.enqueuer.send(messages).await;
        stats.enqueued = report.sent;
        stats.send_calls = report.calls;
        failed.extend(report.failed_records);
        failed.sort_unstable();
        failed.dedup();
        stats.failed_records = failed.len();

        let batch_item_failures = failed
            .first()
            .and_then(|first| found.iter().find(|f| f.index == *first))
            .map(|f| {
                tracing::warn!(
                    event_id = %f.event_id,
                    sequence_number = %f.sequence_number,
                    later_failed = failed.len() - 1,
                    "records not fully enqueued; Lambda resumes from the earliest"
                );
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(f.sequence_number.clone());
                failure
            })
            .into_iter()
            .collect();
        let mut response = DynamoDbEventResponse::default();
        response.batch_item_failures = batch_item_failures;
        (response, stats)
    }

    /// Parses each record; skips (and logs) what isn't a usable transition.
    fn transitions(&self, records: Vec<Value>, stats: &mut BatchStats) -> Vec<Found> {
        let mut found = Vec::with_capacity(records.len());
        for (index, raw) in records.into_iter().enumerate() {
            let event_id = raw
                .get("eventID")
                .and_then(Value::as_str)
                .unwrap_or("<no eventID>")
                .to_owned();
            let record: EventRecord = match serde_json::from_value(raw) {
                Ok(r) => r,
                Err(e) => {
                    stats.malformed += 1;
                    skip(&event_id, &format!("not a DynamoDB stream record: {e}"));
                    continue;
                }
            };
            let Some(sequence_number) = record.change.sequence_number.clone() else {
                stats.malformed += 1;
                skip(&event_id, &"no SequenceNumber");
                continue;
            };
            let kind = ChangeKind::from_event_name(&record.event_name);
            match job_event::transition(kind, &record.change.new_image, &record.change.old_image) {
                Ok(Some(transition)) => {
                    let at = record.change.approximate_creation_date_time;
                    let timestamp = if at.timestamp() > 0 {
                        job_event::timestamp(at)
                    } else {
                        transition.state_changed_at.clone()
                    };
                    found.push(Found {
                        index,
                        event_id: record.event_id,
                        sequence_number,
                        timestamp,
                        transition,
                    });
                }
                Ok(None) => stats.ignored += 1,
                Err(e) => {
                    stats.malformed += 1;
                    skip(&event_id, &e);
                }
            }
        }
        found
    }

    /// Each company's active subscriptions, one lookup per company.
    async fn lookup(
        &self,
        found: &[Found],
    ) -> HashMap<String, Result<Arc<Vec<Subscription>>, StoreError>> {
        let mut companies: Vec<String> = found
            .iter()
            .map(|f| f.transition.company_id.clone())
            .collect();
        companies.sort_unstable();
        companies.dedup();
        // Owned ids into an async fn: a closure over borrowed ones makes the
        // handler's future not `Send` (rust-lang/rust#102211).
        futures::stream::iter(companies)
            .map(|company| self.lookup_one(company))
            .buffer_unordered(LOOKUP_CONCURRENCY)
            .collect()
            .await
    }

    async fn lookup_one(
        &self,
        company: String,
    ) -> (String, Result<Arc<Vec<Subscription>>, StoreError>) {
        let result = self.cache.active(&company, &self.store).await;
        if let Err(e) = &result {
            tracing::error!(company_id = %company, error = %e, "subscription lookup failed");
        }
        (company, result)
    }

    /// Adds the messages of one transition; false when the event can't be
    /// made to fit the size limit.
    fn messages_for(
        &self,
        f: &Found,
        subs: &[Subscription],
        out: &mut Vec<Outgoing>,
        stats: &mut BatchStats,
    ) -> bool {
        let t = &f.transition;
        let mut matching = subs
            .iter()
            .filter(|s| s.filters.matches(&t.job_id, &t.job_type, t.state))
            .peekable();
        let Some(first) = matching.peek() else {
            return true;
        };
        let event_type = t.event_type();
        let first_key = message::idempotency_key(&first.subscription_id, &f.event_id);
        for trim in 0..=TRIM_ORDER.len() {
            let data = message::job_data(&t.data(trim));
            let envelope = EventEnvelope {
                company_id: &t.company_id,
                event_type: &event_type,
                timestamp: &f.timestamp,
                data: &data,
            };
            // Subscription ids and keys have fixed lengths: if the first
            // message fits, they all do.
            let first_body = envelope.message_body(&first.subscription_id, &first_key);
            if first_body.len() > self.max_message_bytes {
                continue;
            }
            if trim > 0 {
                stats.trimmed += 1;
                tracing::warn!(
                    event_id = %f.event_id,
                    job_id = %t.job_id,
                    dropped = ?&TRIM_ORDER[..trim],
                    "event trimmed to fit the queue's message size limit"
                );
            }
            let mut first_body = Some(first_body);
            let group: std::sync::Arc<str> =
                std::sync::Arc::from(message::group_id(&t.company_id).as_ref());
            for sub in matching {
                let body = first_body.take().unwrap_or_else(|| {
                    let key = message::idempotency_key(&sub.subscription_id, &f.event_id);
                    envelope.message_body(&sub.subscription_id, &key)
                });
                out.push(Outgoing {
                    record: f.index,
                    group: std::sync::Arc::clone(&group),
                    body,
                });
            }
            return true;
        }
        tracing::error!(
            event_id = %f.event_id,
            job_id = %t.job_id,
            "event exceeds the message size limit even when trimmed; the record is reported as failed"
        );
        false
    }
}

/// Compile-time check: the handler's future is `Send`, so runners (the
/// local stack) can spawn it on a multi-threaded runtime.
#[cfg(test)]
#[allow(dead_code)]
fn process_is_send(ingest: &'static Ingest, event: Value) {
    fn is_send<T: Send>(_: T) {}
    is_send(ingest.process(event));
}
