//! The stream batch handler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde::Deserialize;
use serde_json::Value;
use shared::deadline::Deadline;
use shared::domain::job_event::{self, ChangeKind, JobTransition, TRIM_ORDER};
use shared::domain::message::{self, EventContext, EventEnvelope, MessageBodies};
use shared::domain::subscription::Subscription;
use shared::metrics::Metrics;
use shared::queue::Outgoing;
use shared::queue::fanout::{Enqueuer, Outbox, Tagged};
use shared::storage::StoreError;
use shared::storage::subscriptions::SubscriptionStore;
use shared::storage::subscriptions::receiving::ReceivingCache;

use crate::config::IngestConfig;
use crate::poison::{PoisonRecord, ShardLookup};

/// Subscription lookups in flight at once.
const LOOKUP_CONCURRENCY: usize = 16;

/// A record of the batch that ingest acts on, in stream order.
enum Item {
    /// A state transition, to fan out.
    Transition(Found),
    /// A record that cannot be turned into messages, to set aside.
    Poison(PoisonRecord),
}

impl Item {
    fn sequence_number(&self) -> Option<&str> {
        match self {
            Self::Transition(f) => Some(&f.sequence_number),
            Self::Poison(p) => p.sequence_number.as_deref(),
        }
    }

    fn event_id(&self) -> Option<&str> {
        match self {
            Self::Transition(f) => Some(&f.event_id),
            Self::Poison(p) => p.event_id.as_deref(),
        }
    }
}

/// A transition found in the batch, with where it came from.
struct Found {
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
    /// Records that could not be parsed (set aside).
    pub malformed: usize,
    /// Records set aside on the poison queue: unparseable, or too large
    /// for a message even when trimmed.
    pub poison: usize,
    /// Messages accepted by SQS.
    pub enqueued: usize,
    /// `SendMessageBatch` calls.
    pub send_calls: usize,
    /// Events trimmed to fit the message size limit.
    pub trimmed: usize,
    /// Records whose messages (or poison entry) were not all accepted.
    pub failed_records: usize,
    /// Times the outbox was sent (each a bounded wave of calls).
    pub flushes: usize,
    /// Most messages held in memory at once.
    pub peak_outbox: usize,
    /// Transitions left for the next invocation because the deadline was
    /// near.
    pub deferred: usize,
}

impl BatchStats {
    /// The invocation's EMF metrics.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.count("StreamRecords", self.records as u64)
            .count("Transitions", self.transitions as u64)
            .count("MalformedRecords", self.malformed as u64)
            .count("PoisonRecords", self.poison as u64)
            .count("MessagesEnqueued", self.enqueued as u64)
            .count("TrimmedEvents", self.trimmed as u64)
            .count("FailedRecords", self.failed_records as u64)
            .count("DeferredRecords", self.deferred as u64);
        m
    }
}

/// The ingest function: configuration, store, cache and queue client,
/// built once per process.
#[derive(Debug)]
pub struct Ingest {
    store: SubscriptionStore,
    cache: ReceivingCache,
    enqueuer: Enqueuer,
    poison: Enqueuer,
    streams: Option<aws_sdk_dynamodbstreams::Client>,
    max_message_bytes: usize,
    outbox_messages: usize,
    outbox_bytes: usize,
    deadline_margin: std::time::Duration,
}

/// One transition's messages, built one at a time from the event's
/// bodies (rendered once) as the outbox takes them.
struct Fanout<'a> {
    found: &'a Found,
    bodies: MessageBodies,
    group: Arc<str>,
    matching: Vec<&'a Subscription>,
    /// The first matching subscription's body, built to check the size.
    first: Option<String>,
}

impl Fanout<'_> {
    fn body(&self, sub: &Subscription) -> String {
        let key = message::webhook_id(&sub.subscription_id, &self.found.event_id);
        self.bodies.body(&sub.subscription_id, &key)
    }

    /// The body of the `index`th matching subscription.
    fn body_at(&mut self, index: usize) -> String {
        match self.first.take() {
            Some(body) if index == 0 => body,
            _ => self.body(self.matching[index]),
        }
    }
}

/// What one transition sends.
enum Plan<'a> {
    /// No subscription matches it.
    Nothing,
    /// These messages.
    Send(Fanout<'a>),
    /// Its event does not fit a message even when trimmed: set aside for
    /// this reason.
    TooLarge(String),
}

/// Why the walk over a batch's records stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// This record's messages (or poison entry) could not all be built or
    /// sent.
    Failed(usize),
    /// The deadline was near before this record was taken.
    Deadline(usize),
}

impl Stop {
    fn position(self) -> usize {
        match self {
            Self::Failed(p) | Self::Deadline(p) => p,
        }
    }

    /// The earlier of two stops.
    fn earliest(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.position() < a.position() { b } else { a }),
            (a, b) => a.or(b),
        }
    }
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
            cache: ReceivingCache::new(config.cache_ttl),
            enqueuer: Enqueuer::new(
                sqs.clone(),
                config.queue_url.clone(),
                config.send_concurrency,
                config.send_attempts,
                config.max_message_bytes,
            ),
            poison: Enqueuer::new(
                sqs,
                config.poison_queue_url.clone(),
                1,
                config.send_attempts,
                config.max_message_bytes,
            ),
            streams: None,
            max_message_bytes: config.max_message_bytes,
            outbox_messages: config.outbox_messages,
            outbox_bytes: config.outbox_bytes,
            deadline_margin: config.deadline_margin,
        }
    }

    /// Sizes the outbox differently (tests of the chunking).
    pub fn with_outbox(mut self, max_messages: usize, max_bytes: usize) -> Self {
        self.outbox_messages = max_messages.max(1);
        self.outbox_bytes = max_bytes.max(1);
        self
    }

    /// Looks up the shard of a poison record in the stream's shard list
    /// with `streams` (`DescribeStream`): Lambda's stream events do not
    /// name their shard. Without it, entries set aside by
    /// [`Ingest::process`] have no shard.
    pub fn with_streams(mut self, streams: aws_sdk_dynamodbstreams::Client) -> Self {
        self.streams = Some(streams);
        self
    }

    /// The invocation's deadline with this function's safety margin.
    pub fn deadline(&self, at: Option<Instant>) -> Deadline {
        Deadline::new(at, self.deadline_margin)
    }

    /// Handles one stream event and returns the checkpoint for Lambda.
    pub async fn handle(&self, event: Value, deadline: Deadline) -> DynamoDbEventResponse {
        let started = Instant::now();
        let (response, stats) = self.process(event, deadline).await;
        // The batch's counts are in its EMF line, and every record that
        // failed, was set aside or refused logs its own warning: this
        // summary is for debugging only.
        tracing::debug!(
            records = stats.records,
            transitions = stats.transitions,
            ignored = stats.ignored,
            malformed = stats.malformed,
            poison = stats.poison,
            enqueued = stats.enqueued,
            send_calls = stats.send_calls,
            trimmed = stats.trimmed,
            failed_records = stats.failed_records,
            deferred = stats.deferred,
            flushes = stats.flushes,
            peak_outbox = stats.peak_outbox,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "stream batch processed"
        );
        stats.metrics().emit("job-events-ingest");
        response
    }

    /// The work of [`Ingest::handle`], with its counts. Records are taken
    /// in order: transitions' messages are sent in bounded flushes as they
    /// are built, records that cannot be turned into messages are set aside
    /// on the poison queue. The walk stops at the first record whose
    /// messages (or poison entry) cannot all be sent, or, once at least one
    /// was taken, when `deadline` is near; the response names the earliest
    /// record not fully handled, so Lambda resumes there.
    pub async fn process(
        &self,
        event: Value,
        deadline: Deadline,
    ) -> (DynamoDbEventResponse, BatchStats) {
        self.process_in(event, None, deadline).await
    }

    /// [`Ingest::process`] for records read from the shard `shard_id` (a
    /// replay), which poison entries name.
    pub async fn process_in_shard(
        &self,
        event: Value,
        shard_id: &str,
        deadline: Deadline,
    ) -> (DynamoDbEventResponse, BatchStats) {
        self.process_in(event, Some(shard_id), deadline).await
    }

    async fn process_in(
        &self,
        event: Value,
        shard_id: Option<&str>,
        deadline: Deadline,
    ) -> (DynamoDbEventResponse, BatchStats) {
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
        let stream_arn = records
            .iter()
            .find_map(|r| r.get("eventSourceARN").and_then(Value::as_str))
            .map(|arn| shared::text::prefix(arn, crate::poison::MAX_COORDINATE_LEN).to_owned());
        let items = self.transitions(records, &mut stats);
        let companies: Vec<String> = items
            .iter()
            .filter_map(|item| match item {
                Item::Transition(f) => Some(f.transition.company_id.clone()),
                Item::Poison(_) => None,
            })
            .collect();
        stats.transitions = companies.len();

        let subscriptions = self.lookup(companies).await;
        let mut outbox = Outbox::new(self.outbox_messages, self.outbox_bytes);
        let mut set_aside: Vec<(usize, PoisonRecord)> = Vec::new();
        let mut stop = None;
        'walk: for (position, item) in items.iter().enumerate() {
            if position > 0 && deadline.is_near() {
                stop = Some(Stop::Deadline(position));
                break;
            }
            let f = match item {
                Item::Transition(f) => f,
                Item::Poison(p) => {
                    set_aside.push((position, p.clone()));
                    continue;
                }
            };
            let Some(Ok(subs)) = subscriptions.get(f.transition.company_id.as_str()) else {
                stats.failed_records += 1;
                stop = Some(Stop::Failed(position));
                break;
            };
            let fanout = match self.fanout(f, subs, &mut stats) {
                Plan::Nothing => continue,
                Plan::Send(fanout) => fanout,
                Plan::TooLarge(reason) => {
                    let poison = PoisonRecord {
                        stream_arn: stream_arn.clone(),
                        sequence_number: Some(f.sequence_number.clone()),
                        event_id: Some(f.event_id.clone()),
                        company_id: Some(f.transition.company_id.clone()),
                        job_id: Some(f.transition.job_id.clone()),
                        ..PoisonRecord::new(&reason)
                    };
                    set_aside.push((position, poison));
                    continue;
                }
            };
            let mut fanout = fanout;
            for index in 0..fanout.matching.len() {
                let full = outbox.push(Tagged {
                    record: position,
                    message: Outgoing::new(fanout.body_at(index))
                        .grouped(Arc::clone(&fanout.group)),
                });
                if full && let Some(failed) = self.flush(&mut outbox, &mut stats).await {
                    stop = Some(Stop::Failed(failed));
                    break 'walk;
                }
            }
        }
        // What is built belongs to records before the stop (the outbox
        // never holds a later one's), and so do the records set aside.
        if let Some(failed) = self.flush(&mut outbox, &mut stats).await {
            stop = Stop::earliest(stop, Some(Stop::Failed(failed)));
        }
        // Boxed: rare, and its DescribeStream future would otherwise make
        // the handler's future too deep for the compiler's layout queries.
        if let Some(failed) = Box::pin(self.set_aside(set_aside, shard_id, &mut stats)).await {
            stop = Stop::earliest(stop, Some(Stop::Failed(failed)));
        }

        let resume_at = match stop {
            None => None,
            Some(Stop::Failed(position)) => {
                tracing::warn!(
                    event_id = items[position].event_id(),
                    sequence_number = items[position].sequence_number(),
                    not_taken = items.len() - position - 1,
                    "record not fully enqueued; Lambda resumes from it"
                );
                resume_point(&items, position)
            }
            Some(Stop::Deadline(position)) => {
                stats.deferred = items.len() - position;
                tracing::warn!(
                    event_id = items[position].event_id(),
                    sequence_number = items[position].sequence_number(),
                    deferred = stats.deferred,
                    remaining_ms = deadline.remaining().map(|d| d.as_millis() as u64),
                    "invocation deadline near; the rest of the batch is left for the next invocation"
                );
                resume_point(&items, position)
            }
        };
        let mut response = DynamoDbEventResponse::default();
        response.batch_item_failures = resume_at
            .map(|sequence_number| {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(sequence_number.to_owned());
                failure
            })
            .into_iter()
            .collect();
        (response, stats)
    }

    /// Sends the poison entries of `records` (with their batch positions)
    /// to the poison queue, naming `shard_id` or the shard the stream's
    /// shard list gives; the earliest position whose entry SQS never
    /// accepted, if any.
    async fn set_aside(
        &self,
        records: Vec<(usize, PoisonRecord)>,
        shard_id: Option<&str>,
        stats: &mut BatchStats,
    ) -> Option<usize> {
        if records.is_empty() {
            return None;
        }
        let mut shards = ShardLookup::default();
        let mut outgoing = Vec::with_capacity(records.len());
        for (position, mut record) in records {
            let shard = match (
                shard_id,
                &self.streams,
                &record.stream_arn,
                &record.sequence_number,
            ) {
                (Some(shard), ..) => Some(shard.to_owned()),
                (None, Some(client), Some(arn), Some(sequence)) => {
                    shards.shard_of(client, arn, sequence).await
                }
                _ => None,
            };
            if let Some(shard) = shard {
                record = record.in_shard(&shard);
            }
            record.log();
            let group = record.company_id.as_deref().map_or_else(
                || Arc::from("unknown"),
                |c| Arc::from(message::group_id(c).as_ref()),
            );
            outgoing.push(Tagged {
                record: position,
                message: Outgoing::new(record.to_body()).grouped(group),
            });
        }
        let total = outgoing.len();
        let report = self.poison.send(outgoing).await;
        stats.poison += total - report.failed_records.len();
        stats.send_calls += report.calls;
        stats.failed_records += report.failed_records.len();
        if !report.failed_records.is_empty() {
            tracing::error!(
                failed = report.failed_records.len(),
                "poison entries not accepted by the poison queue; Lambda resumes from the first"
            );
        }
        report.failed_records.first().copied()
    }

    /// Sets `records` aside on the poison queue (records a replay read but
    /// cannot hand to the handler); the number SQS never accepted.
    pub async fn set_aside_records(&self, records: Vec<PoisonRecord>) -> usize {
        let mut stats = BatchStats::default();
        let positioned = records.into_iter().enumerate().collect();
        self.set_aside(positioned, None, &mut stats).await;
        stats.failed_records
    }

    /// Sends the outbox; the earliest transition (position) with a message
    /// SQS never accepted, if any.
    async fn flush(&self, outbox: &mut Outbox, stats: &mut BatchStats) -> Option<usize> {
        if outbox.is_empty() {
            return None;
        }
        stats.peak_outbox = stats.peak_outbox.max(outbox.len());
        stats.flushes += 1;
        let report = self.enqueuer.send(outbox.take()).await;
        stats.enqueued += report.sent;
        stats.send_calls += report.calls;
        stats.failed_records += report.failed_records.len();
        report.failed_records.first().copied()
    }

    /// Parses each record: the transitions, and the records that cannot be
    /// turned into messages, in order; what is not a transition (a
    /// same-state MODIFY, a REMOVE) is counted and dropped.
    fn transitions(&self, records: Vec<Value>, stats: &mut BatchStats) -> Vec<Item> {
        let mut found = Vec::with_capacity(records.len());
        for raw in records {
            let poison = |reason: &str| PoisonRecord::from_lambda_record(&raw, reason);
            let record = match EventRecord::deserialize(&raw) {
                Ok(r) => r,
                Err(e) => {
                    stats.malformed += 1;
                    found.push(Item::Poison(poison(&format!(
                        "not a DynamoDB stream record: {e}"
                    ))));
                    continue;
                }
            };
            let Some(sequence_number) = record.change.sequence_number.clone() else {
                stats.malformed += 1;
                found.push(Item::Poison(poison("no SequenceNumber")));
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
                    found.push(Item::Transition(Found {
                        event_id: record.event_id,
                        sequence_number,
                        timestamp,
                        transition,
                    }));
                }
                Ok(None) => stats.ignored += 1,
                Err(e) => {
                    stats.malformed += 1;
                    found.push(Item::Poison(poison(&e.to_string())));
                }
            }
        }
        found
    }

    /// Each company's receiving subscriptions, one lookup per company.
    async fn lookup(
        &self,
        companies: Vec<String>,
    ) -> HashMap<String, Result<Arc<Vec<Subscription>>, StoreError>> {
        self.cache
            .lookup(&self.store, companies, LOOKUP_CONCURRENCY)
            .await
    }

    /// The messages of one transition, to be built one at a time.
    fn fanout<'a>(
        &self,
        f: &'a Found,
        subs: &'a [Subscription],
        stats: &mut BatchStats,
    ) -> Plan<'a> {
        let t = &f.transition;
        let matching: Vec<&Subscription> = subs
            .iter()
            .filter(|s| s.receives_job(&t.job_id, &t.job_type, t.state))
            .collect();
        let Some(first) = matching.first() else {
            return Plan::Nothing;
        };
        let group: Arc<str> = Arc::from(message::group_id(&t.company_id).as_ref());
        let event_type = t.event_type();
        for trim in 0..=TRIM_ORDER.len() {
            let data = message::job_data(&t.data(trim));
            let envelope = EventEnvelope {
                sequence: Some(&f.sequence_number),
                company_id: &t.company_id,
                event_type: &event_type,
                timestamp: &f.timestamp,
                data: &data,
            };
            let fanout = Fanout {
                found: f,
                bodies: envelope.bodies(EventContext::default()),
                group: Arc::clone(&group),
                matching: Vec::new(),
                first: None,
            };
            // Subscription ids and keys have fixed lengths: if the first
            // message fits, they all do.
            let body = fanout.body(first);
            if body.len() > self.max_message_bytes {
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
            return Plan::Send(Fanout {
                matching,
                first: Some(body),
                ..fanout
            });
        }
        Plan::TooLarge(format!(
            "the event exceeds the message size limit ({} bytes) even with {} left out",
            self.max_message_bytes,
            TRIM_ORDER.map(|t| t.as_str()).join(", ")
        ))
    }
}

/// The sequence number Lambda resumes from when the record at `position`
/// was not fully handled: its own, or, for records without one (not even
/// stream records; they cannot be named), the next record's that has one.
fn resume_point(items: &[Item], position: usize) -> Option<&str> {
    let named = items[position..]
        .iter()
        .enumerate()
        .find_map(|(skipped, item)| item.sequence_number().map(|s| (skipped, s)));
    let skipped = named.map_or(items.len() - position, |(skipped, _)| skipped);
    if skipped > 0 {
        tracing::error!(
            records = skipped,
            "records without a sequence number could not be set aside and cannot be named for a retry; they are dropped"
        );
    }
    named.map(|(_, s)| s)
}

/// Compile-time check: the handler's future is `Send`, so runners (the
/// local stack) can spawn it on a multi-threaded runtime.
#[cfg(test)]
#[allow(dead_code)]
fn process_is_send(ingest: &'static Ingest, event: Value) {
    fn is_send<T: Send>(_: T) {}
    is_send(ingest.process(event, Deadline::none()));
}
