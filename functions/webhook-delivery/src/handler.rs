//! The SQS handler: one attempt per message, then delivered, retried,
//! parked, kept as failed or dropped; and the endpoint's health and
//! breaker kept up to date on the way.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use shared::delivery::breaker::{self, BreakerPolicy, Fate, ParkedCount, Write};
use shared::delivery::retry::RetrySchedule;
use shared::domain::health::LastFailure;
use shared::domain::message::{AttemptRecord, DeadLetterReason, DeliveryMessage};
use shared::domain::subscription::Subscription;
use shared::format::OpenFormatError;
use shared::metrics::Metrics;
use shared::operational::{OperationalEvent, OperationalEventType, Publisher};
use shared::storage::deliveries::{AttemptLog, DeliveryLog, Outcome, RETENTION};
use shared::storage::keyring::SecretVault;
use shared::storage::parked::{ParkedEvent, ParkedEvents, ParkedStatus};
use shared::storage::subscriptions::{SubscriptionStore, Updated};
use shared::target_guard::allow_list::AllowList;
use url::Url;

use crate::attempt::{self, AttemptResult, FailureKind, SignedRequest};
use crate::cache::{Cached, SubscriptionCache};
use crate::client::{self, ClientError};
use crate::config::DeliveryConfig;
use crate::queues::Queues;

/// Reason recorded on subscriptions archived by a `410 Gone`.
pub const GONE_REASON: &str = "endpoint answered 410 Gone";

/// Parked events are counted up to this many for operational events.
const PARKED_COUNT_CAP: u64 = 10_000;

/// A message due within this margin is attempted rather than deferred again.
const DUE_SLACK: chrono::Duration = chrono::Duration::seconds(1);

/// What happened to the messages of one invocation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// Accepted with a 2xx.
    pub delivered: u64,
    /// Attempts that got no 2xx (including 410).
    pub failed_attempts: u64,
    /// Re-queued on the RetryQueue for a later attempt.
    pub retried: u64,
    /// Kept as `failed` in the ParkedEvents table after the last attempt.
    pub exhausted: u64,
    /// Parked (breaker open or subscription disabled), not attempted.
    pub parked: u64,
    /// Probes of open breakers attempted.
    pub probes: u64,
    /// Breakers this invocation opened.
    pub breakers_opened: u64,
    /// Breakers this invocation closed (successful probes).
    pub breakers_closed: u64,
    /// Health writes that failed (the attempt's outcome stands).
    pub health_errors: u64,
    /// Operational events that could not be published.
    pub event_errors: u64,
    /// Dropped because the subscription is archived or gone.
    pub dropped: u64,
    /// Subscriptions archived after `410 Gone`.
    pub gone: u64,
    /// Not yet due, re-queued to wait.
    pub deferred: u64,
    /// Unreadable messages moved to the DeadLetterQueue.
    pub malformed: u64,
    /// Messages reported in `batchItemFailures`.
    pub failures: u64,
    /// Attempt-log writes that failed (the attempt itself stands).
    pub log_errors: u64,
    /// Attempt durations, milliseconds.
    pub latencies_ms: Vec<f64>,
}

impl Tally {
    /// The invocation's EMF metrics.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.count("Delivered", self.delivered)
            .count("FailedAttempts", self.failed_attempts)
            .count("Retried", self.retried)
            .count("Exhausted", self.exhausted)
            .count("Parked", self.parked)
            .count("Probes", self.probes)
            .count("BreakersOpened", self.breakers_opened)
            .count("BreakersClosed", self.breakers_closed)
            .count("HealthWriteErrors", self.health_errors)
            .count("OperationalEventErrors", self.event_errors)
            .count("Dropped", self.dropped)
            .count("Gone", self.gone)
            .count("Deferred", self.deferred)
            .count("Malformed", self.malformed)
            .count("BatchItemFailures", self.failures)
            .count("AttemptLogErrors", self.log_errors)
            .milliseconds("AttemptLatency", &self.latencies_ms);
        m
    }
}

/// What the deliveries of one invocation collect.
#[derive(Default)]
struct Batch {
    tally: Mutex<Tally>,
    /// Attempt-log entries, written together at the end.
    log: Mutex<Vec<AttemptLog>>,
}

/// The message stays on its queue and comes back (Lambda reports it in
/// `batchItemFailures`); the reason was logged where it happened.
struct Retry;

/// The delivery function: everything built once per instance.
#[derive(Debug)]
pub struct Delivery {
    http: client::Clients,
    store: SubscriptionStore,
    log: DeliveryLog,
    queues: Queues,
    cache: SubscriptionCache,
    schedule: RetrySchedule,
    breaker: BreakerPolicy,
    parked: ParkedEvents,
    publisher: Publisher,
    allow: AllowList,
    concurrency: usize,
    /// The longest one attempt takes (connect and request timeouts) plus
    /// its writes: a group's next record starts only with this much of
    /// the invocation left.
    attempt_budget: Duration,
}

/// Time kept for an attempt's queue and table writes.
const ATTEMPT_WRITES: Duration = Duration::from_secs(5);

/// One record and its message, if it parses.
type Parsed = (SqsMessage, Option<DeliveryMessage>);

/// The batch's records in groups delivered one after the other: the
/// events of one job for one subscription, in the order of their stream
/// sequence numbers (two states of one job in one batch reach the endpoint
/// in the order the job went through them); every other record alone.
/// Groups keep the order of their first record.
fn in_order(records: Vec<SqsMessage>) -> Vec<Vec<Parsed>> {
    let mut groups: Vec<Vec<Parsed>> = Vec::with_capacity(records.len());
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for record in records {
        let msg = record.body.as_deref().and_then(DeliveryMessage::parse);
        let key = msg.as_ref().and_then(|m| {
            m.sequence.as_ref()?;
            Some((m.subscription_id.clone(), m.order_group()?))
        });
        match key.map(|k| index.entry(k)) {
            Some(Entry::Occupied(at)) => groups[*at.get()].push((record, msg)),
            Some(Entry::Vacant(at)) => {
                at.insert(groups.len());
                groups.push(vec![(record, msg)]);
            }
            None => groups.push(vec![(record, msg)]),
        }
    }
    for group in groups.iter_mut().filter(|g| g.len() > 1) {
        group.sort_by_cached_key(|(_, m)| {
            m.as_ref()
                .and_then(|m| m.sequence.as_deref())
                .map(|s| format!("{s:0>40}"))
        });
    }
    groups
}

impl Delivery {
    /// Builds the function's state; fails when the HTTP client can't be
    /// built from the configuration.
    pub fn new(
        config: &DeliveryConfig,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        events: aws_sdk_eventbridge::Client,
        vault: Arc<SecretVault>,
    ) -> Result<Self, ClientError> {
        Ok(Self::with_http(
            config,
            client::build(config)?,
            dynamodb,
            sqs,
            events,
            vault,
        ))
    }

    /// [`Self::new`] with HTTP clients already built by [`client::build`]
    /// (the cold start builds them before it reads the keyring, so a bad
    /// local setting is reported first).
    pub fn with_http(
        config: &DeliveryConfig,
        http: client::Clients,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        events: aws_sdk_eventbridge::Client,
        vault: Arc<SecretVault>,
    ) -> Self {
        Self {
            http,
            parked: ParkedEvents::new(dynamodb.clone(), config.parked_events_table.clone()),
            publisher: Publisher::new(events, config.event_bus_name.clone()),
            breaker: config.breaker.clone(),
            store: SubscriptionStore::new(dynamodb.clone(), config.subscriptions_table.clone()),
            log: DeliveryLog::new(dynamodb, config.deliveries_table.clone()),
            queues: Queues::new(
                sqs,
                config.retry_queue_url.clone(),
                config.dead_letter_queue_url.clone(),
            ),
            cache: SubscriptionCache::new(config.cache_ttl, vault),
            schedule: config.schedule.clone(),
            allow: config.allow_list.clone(),
            concurrency: config.concurrency,
            attempt_budget: config.connect_timeout + config.request_timeout + ATTEMPT_WRITES,
        }
    }

    /// Handles one invocation that must end by `deadline` and emits its
    /// metrics.
    pub async fn handle(&self, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
        let (response, tally) = self.process_until(event, deadline).await;
        tally.metrics().emit("webhook-delivery");
        response
    }

    /// Handles one invocation with no deadline: the messages to leave on
    /// the queue, and what happened.
    pub async fn process(&self, event: SqsEvent) -> (SqsBatchResponse, Tally) {
        self.process_until(event, None).await
    }

    /// Handles one invocation that must end by `deadline`: a job's later
    /// record that could not finish before it stays on the queue.
    pub async fn process_until(
        &self,
        event: SqsEvent,
        deadline: Option<Instant>,
    ) -> (SqsBatchResponse, Tally) {
        let batch = Batch::default();
        // Owned records into an async fn: a closure over borrowed records
        // makes the whole future not `Send` (rust-lang/rust#102211).
        let outcomes: Vec<Vec<String>> = futures::stream::iter(in_order(event.records))
            .map(|group| self.deliver_group(group, deadline, &batch))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let failed: Vec<String> = outcomes.into_iter().flatten().collect();
        // The batch's attempts in one BatchWriteItem rather than a PutItem
        // each: the SDK's per-call cost is most of an attempt's CPU.
        let entries = batch.log.into_inner().expect("log lock");
        let unlogged = self.log.record_all(&entries).await;
        let mut tally = batch.tally.into_inner().expect("tally lock");
        tally.log_errors = unlogged as u64;
        tally.failures = failed.len() as u64;
        let mut response = SqsBatchResponse::default();
        response.set_failures(failed);
        (response, tally)
    }

    /// [`Self::deliver`] for each record of `group`, one after the other;
    /// the message ids of those that stay on the queue. A later record
    /// starts only if one more attempt fits before `deadline`; otherwise
    /// it stays on the queue, delivered again after its visibility
    /// timeout, still after the records before it.
    async fn deliver_group(
        &self,
        group: Vec<Parsed>,
        deadline: Option<Instant>,
        batch: &Batch,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        for (i, (record, msg)) in group.into_iter().enumerate() {
            let late = deadline.is_some_and(|d| Instant::now() + self.attempt_budget >= d);
            if i > 0 && late {
                failed.push(record.message_id.unwrap_or_default());
                continue;
            }
            if let Err(Retry) = self.deliver(&record, msg, batch).await {
                failed.push(record.message_id.unwrap_or_default());
            }
        }
        failed
    }

    async fn deliver(
        &self,
        record: &SqsMessage,
        msg: Option<DeliveryMessage>,
        batch: &Batch,
    ) -> Result<(), Retry> {
        let Some(msg) = msg else {
            return self.dead_letter_malformed(record, batch).await;
        };
        let Some(sub) = self.admit(&msg, batch).await? else {
            return Ok(());
        };
        let result = self.attempt(&sub, &msg).await;
        batch
            .log
            .lock()
            .expect("log lock")
            .push(log_entry(&msg, &result));
        let probe = msg.probe.is_some();
        let settled = self.settle(&sub, msg, &result, batch).await;
        let mut t = batch.tally.lock().expect("tally lock");
        t.latencies_ms.push(result.duration.as_secs_f64() * 1000.0);
        if probe {
            t.probes += 1;
        }
        if !result.delivered() {
            t.failed_attempts += 1;
        }
        match settled? {
            Settled::Delivered => t.delivered += 1,
            Settled::Gone => t.gone += 1,
            Settled::Retried => t.retried += 1,
            Settled::Exhausted => t.exhausted += 1,
            Settled::Parked => t.parked += 1,
            Settled::ProbeFailed => {}
        }
        Ok(())
    }

    /// Moves an unreadable message to the DeadLetterQueue.
    async fn dead_letter_malformed(&self, record: &SqsMessage, batch: &Batch) -> Result<(), Retry> {
        let message_id = record.message_id.as_deref().unwrap_or("");
        let body = record.body.as_deref().unwrap_or("");
        tracing::warn!(message_id, "malformed delivery message: dead-lettering it");
        self.queues
            .dead_letter(body, DeadLetterReason::Malformed, None)
            .await
            .map_err(|e| {
                tracing::error!(message_id, error = %e, "could not dead-letter a malformed message");
                Retry
            })?;
        Self::count(batch, |t| t.malformed += 1);
        Ok(())
    }

    /// The subscription to attempt `msg` for, or `None` when the message
    /// was settled without an attempt: dropped (archived or gone, or a
    /// probe of a disabled subscription), parked (breaker open or
    /// subscription disabled) or deferred (not yet due).
    async fn admit(
        &self,
        msg: &DeliveryMessage,
        batch: &Batch,
    ) -> Result<Option<Arc<Cached>>, Retry> {
        let (key, subscription_id) = (msg.webhook_id.as_str(), msg.subscription_id.as_str());
        let sub = self
            .cache
            .get(&msg.company_id, subscription_id, &self.store)
            .await
            .map_err(|e| {
                tracing::error!(webhook_id = key, subscription_id, error = %e, "could not read the subscription");
                Retry
            })?;
        let Some(sub) = sub.filter(|s| !s.is_archived()) else {
            Self::drop_event(msg, "subscription archived or deleted", batch);
            return Ok(None);
        };
        let probe = msg.probe.is_some();
        if !probe && !sub.takes_event_type(&msg.event_type) {
            // Queued or parked before the format changed to one that takes
            // fewer states (PagerDuty: failed and completed).
            Self::drop_event(msg, "the subscription's format no longer takes it", batch);
            return Ok(None);
        }
        if probe && sub.is_disabled() {
            // Disabled since the probe was sent: its event stays parked.
            tracing::info!(
                webhook_id = key,
                subscription_id,
                "probe of a disabled subscription dropped"
            );
            Self::count(batch, |t| t.dropped += 1);
            return Ok(None);
        }
        if !probe && sub.parks_events() {
            self.park(msg, ParkedStatus::Parked).await?;
            Self::count(batch, |t| t.parked += 1);
            return Ok(None);
        }
        let now = Utc::now();
        if let Some(not_before) = msg.not_before
            && not_before > now + DUE_SLACK
        {
            let wait = (not_before - now).to_std().unwrap_or_default();
            self.queues.retry(msg, wait).await.map_err(|e| {
                tracing::error!(webhook_id = key, subscription_id, error = %e, "could not defer a message");
                Retry
            })?;
            Self::count(batch, |t| t.deferred += 1);
            return Ok(None);
        }
        Ok(Some(sub))
    }

    /// After the attempt `result` of `msg`: the breaker's decision made,
    /// and the event delivered, archived with its subscription (`410
    /// Gone`), retried, parked, or left parked (a probe).
    async fn settle(
        &self,
        sub: &Subscription,
        mut msg: DeliveryMessage,
        result: &AttemptResult,
        batch: &Batch,
    ) -> Result<Settled, Retry> {
        let (key, subscription_id) = (msg.webhook_id.as_str(), msg.subscription_id.as_str());
        let probe = msg.probe.is_some();
        let outcome = if result.delivered() {
            // Every attempt is in the attempt log and counted in the EMF
            // line: a healthy delivery writes no log line of its own at
            // the default level. Failures below still do.
            tracing::debug!(
                webhook_id = key,
                subscription_id,
                attempt = msg.attempt,
                status = result.status,
                duration_ms = result.duration.as_millis() as u64,
                probe,
                "delivered"
            );
            match &msg.probe {
                Some(event_key) => {
                    if let Err(e) = self.parked.delete(subscription_id, event_key).await {
                        // It drains again later, with the same webhook-id.
                        tracing::warn!(subscription_id, error = %e, "probe delivered; its parked copy stays");
                    }
                    breaker::Outcome::ProbeDelivered
                }
                None => breaker::Outcome::Delivered,
            }
        } else {
            tracing::warn!(
                webhook_id = key,
                subscription_id,
                attempt = msg.attempt,
                status = result.status,
                error = result.failure.map(FailureKind::as_str),
                duration_ms = result.duration.as_millis() as u64,
                probe,
                "attempt failed"
            );
            if result.gone() {
                return self.archive_gone(sub, key).await.map(|()| Settled::Gone);
            }
            if probe {
                breaker::Outcome::ProbeFailed(last_failure(result))
            } else {
                msg.record(attempt_record(msg.attempt, result));
                breaker::Outcome::Failed(last_failure(result))
            }
        };
        match self.breaker(sub, &outcome, batch).await {
            Fate::Delivered => Ok(Settled::Delivered),
            Fate::StayParked => Ok(Settled::ProbeFailed),
            Fate::Park => {
                self.park(&msg, ParkedStatus::Parked).await?;
                Ok(Settled::Parked)
            }
            // The prober's fates never follow an attempt.
            _ => self.reschedule(&msg, result, batch).await,
        }
    }

    /// Writes `msg` to the ParkedEvents table; on failure the message stays
    /// on its queue.
    async fn park(&self, msg: &DeliveryMessage, status: ParkedStatus) -> Result<(), Retry> {
        let event = ParkedEvent::of(msg, status, Utc::now(), self.breaker.retention);
        let (key, subscription_id) = (msg.webhook_id.as_str(), msg.subscription_id.as_str());
        self.parked.put(&event).await.map_err(|e| {
            tracing::error!(webhook_id = key, subscription_id, error = %e, "could not park the event: it stays on its queue");
            Retry
        })?;
        tracing::info!(
            webhook_id = key,
            subscription_id,
            status = status.as_str(),
            event_key = %event.event_key,
            "event parked"
        );
        Ok(())
    }

    /// Drops `msg` unsent, for `why`: logged and counted.
    fn drop_event(msg: &DeliveryMessage, why: &str, batch: &Batch) {
        tracing::info!(
            webhook_id = %msg.webhook_id,
            subscription_id = %msg.subscription_id,
            event_type = %msg.event_type,
            why,
            "event dropped"
        );
        Self::count(batch, |t| t.dropped += 1);
    }

    fn count(batch: &Batch, f: impl FnOnce(&mut Tally)) {
        f(&mut batch.tally.lock().expect("tally lock"));
    }

    async fn publish(&self, event: OperationalEvent, batch: &Batch) {
        if !self.publisher.publish_logged(&event).await {
            Self::count(batch, |t| t.event_errors += 1);
        }
    }

    /// Keeps a subscription this instance just updated for the next
    /// attempts, when it is the whole item as stored; otherwise the cached
    /// copy expires as usual and the next attempt reads it again.
    fn remember(&self, updated: Updated) {
        if updated.whole {
            self.cache.update(updated.sub);
        }
    }

    async fn parked_count(&self, sub: &Subscription) -> Option<u64> {
        self.parked
            .count_parked(&sub.company_id, &sub.subscription_id, PARKED_COUNT_CAP)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "parked events not counted"))
            .ok()
    }

    /// Makes the breaker's decision on `outcome` for `sub`: its write
    /// (a counted failure is decided on again as stored), what it changed
    /// counted, cached and announced. Returns the event's fate.
    async fn breaker(&self, sub: &Subscription, outcome: &breaker::Outcome, batch: &Batch) -> Fate {
        let id = sub.subscription_id.as_str();
        let mut outcome = outcome.clone();
        // The subscription as the previous write of this outcome stored it.
        let mut counted: Option<Updated> = None;
        loop {
            let (held, held_whole) = counted.as_ref().map_or((sub, true), |c| (&c.sub, c.whole));
            let now = Utc::now();
            let decision = breaker::decide(
                &held.health,
                &self.breaker,
                &outcome,
                now,
                breaker::draw_jitter(),
            );
            let Some(write) = &decision.write else {
                if let Some(counted) = counted {
                    self.remember(counted);
                }
                return decision.applied;
            };
            let mut stored = match self.store.execute(held, write, now).await {
                Ok(Some(stored)) => stored,
                Ok(None) if decision.lost == Fate::Reread => {
                    return self.reread(&sub.company_id, id).await;
                }
                Ok(None) => return decision.lost,
                Err(e) => {
                    match write {
                        Write::Close => {
                            tracing::error!(subscription_id = id, error = %e, "could not close the breaker; the next probe will")
                        }
                        _ => {
                            tracing::warn!(subscription_id = id, error = %e, "{}", not_written(write))
                        }
                    }
                    Self::count(batch, |t| t.health_errors += 1);
                    return decision.failed;
                }
            };
            // The whole item only if the copy it applied to was.
            stored.whole &= held_whole;
            if decision.applied == Fate::Count {
                outcome = breaker::Outcome::FailureCounted {
                    disabled: stored.sub.is_disabled(),
                };
                counted = Some(stored);
                continue;
            }
            match write {
                Write::Open { .. } => {
                    tracing::warn!(
                        subscription_id = id,
                        consecutive_failures = stored.sub.health.consecutive_failures,
                        "endpoint keeps failing: breaker opened, events are parked"
                    );
                    Self::count(batch, |t| t.breakers_opened += 1);
                }
                Write::Close => {
                    tracing::warn!(
                        subscription_id = id,
                        "probe succeeded: breaker closed, parked events drain"
                    );
                    Self::count(batch, |t| t.breakers_closed += 1);
                }
                Write::RecordProbeFailure { probe_at, .. } => {
                    tracing::info!(subscription_id = id, next_probe_at = %probe_at, "probe failed: breaker stays open");
                }
                _ => {}
            }
            let event = match &decision.notice {
                Some(notice) => {
                    let parked = match notice.parked {
                        ParkedCount::Counted => self.parked_count(&stored.sub).await,
                        ParkedCount::Zero => None,
                    };
                    Some(notice.event(held, &stored.sub, now, parked))
                }
                None => None,
            };
            self.remember(stored);
            if let Some(event) = event {
                self.publish(event, batch).await;
            }
            return decision.applied;
        }
    }

    /// After another instance's write won: parked if the subscription as
    /// stored now parks events, else retried.
    async fn reread(&self, company_id: &str, subscription_id: &str) -> Fate {
        match self.store.get(company_id, subscription_id).await {
            Ok(Some(current)) => {
                let open = current.parks_events();
                self.cache.update(current);
                if open { Fate::Park } else { Fate::Retry }
            }
            _ => Fate::Retry,
        }
    }

    /// Signs and POSTs the payload (or refuses a blocked target, or a
    /// secret that does not open).
    async fn attempt(&self, sub: &Cached, msg: &DeliveryMessage) -> AttemptResult {
        let now = Utc::now();
        let url = match Url::parse(&sub.url) {
            Ok(url) => url,
            Err(e) => {
                return AttemptResult {
                    at: now,
                    status: None,
                    failure: Some(FailureKind::Request),
                    retry_after: None,
                    duration: Duration::ZERO,
                    excerpt: Some(format!("stored URL does not parse: {e}")),
                };
            }
        };
        if let Err(blocked) = client::check_target(&url, &self.allow) {
            return AttemptResult::blocked(now, &blocked);
        }
        let (keys, headers) = match (&sub.keys, &sub.headers) {
            (Ok(keys), Ok(headers)) => (keys, headers),
            (Err(e), _) | (_, Err(e)) => {
                let what = if sub.keys.is_err() {
                    "signing secret does"
                } else {
                    "custom headers do"
                };
                tracing::error!(
                    webhook_id = %msg.webhook_id,
                    subscription_id = %sub.subscription_id,
                    error = %e,
                    "{what} not decrypt: nothing sent"
                );
                return AttemptResult::unsigned(now, e);
            }
        };
        let rendered = match &sub.format {
            Ok(format) => format.render(&msg.payload),
            Err(OpenFormatError::Template(e)) => Err(e.clone()),
            Err(e @ OpenFormatError::Sealed(_)) => {
                tracing::error!(
                    webhook_id = %msg.webhook_id,
                    subscription_id = %sub.subscription_id,
                    error = %e,
                    "routing key does not decrypt: nothing sent"
                );
                return AttemptResult::unrendered(now, "secret_unreadable", e.to_string());
            }
        };
        let body = match rendered {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(
                    webhook_id = %msg.webhook_id,
                    subscription_id = %sub.subscription_id,
                    error_class = e.class(),
                    error = %e,
                    "body format did not render: nothing sent"
                );
                return AttemptResult::unrendered(now, e.class(), e.to_string());
            }
        };
        let body = body.as_bytes();
        let timestamp = now.timestamp();
        let signature = keys.signature_header(&msg.webhook_id, timestamp, body, now);
        let request = SignedRequest {
            url: &url,
            id: &msg.webhook_id,
            timestamp,
            signature,
            headers,
            body: Bytes::copy_from_slice(body),
        };
        attempt::send(self.http.for_url(&url), request).await
    }

    async fn archive_gone(&self, sub: &Subscription, key: &str) -> Result<(), Retry> {
        let subscription_id = sub.subscription_id.as_str();
        match self.store.archive(sub, GONE_REASON, Utc::now()).await {
            Ok(archived) => {
                tracing::warn!(
                    webhook_id = key,
                    subscription_id,
                    "endpoint answered 410 Gone: subscription archived"
                );
                if let Some(archived) = archived {
                    self.remember(archived);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(webhook_id = key, subscription_id, error = %e, "could not archive after 410 Gone");
                Err(Retry)
            }
        }
    }

    /// Queues the next attempt, or keeps the event as `failed` after the
    /// last one. `msg` already records the failed attempt.
    async fn reschedule(
        &self,
        msg: &DeliveryMessage,
        result: &AttemptResult,
        batch: &Batch,
    ) -> Result<Settled, Retry> {
        let key = msg.webhook_id.as_str();
        let subscription_id = msg.subscription_id.as_str();
        match self
            .schedule
            .next_delay_random(msg.attempt, result.retry_after)
        {
            Some(delay) => {
                let not_before =
                    result.at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                let next = msg.next_attempt(not_before);
                let wait = (not_before - Utc::now()).to_std().unwrap_or_default();
                self.queues.retry(&next, wait).await.map_err(|e| {
                    tracing::error!(webhook_id = key, subscription_id, error = %e, "could not queue the retry");
                    Retry
                })?;
                // The attempt's WARN line and the attempt log say it
                // failed; the retry itself is routine.
                tracing::debug!(
                    webhook_id = key,
                    subscription_id,
                    next_attempt = next.attempt,
                    delay_ms = delay.as_millis() as u64,
                    "retry scheduled"
                );
                Ok(Settled::Retried)
            }
            None => {
                self.park(msg, ParkedStatus::Failed).await?;
                tracing::warn!(
                    webhook_id = key,
                    subscription_id,
                    attempts = msg.attempt,
                    "retries exhausted: kept as failed for the customer to recover"
                );
                let now = Utc::now();
                let sub = self
                    .cache
                    .get(&msg.company_id, subscription_id, &self.store)
                    .await
                    .ok()
                    .flatten();
                if let Some(sub) = sub {
                    let mut event = OperationalEvent::about(
                        OperationalEventType::MessageAttemptExhausted,
                        &sub,
                        now,
                    );
                    event.webhook_id = Some(msg.webhook_id.clone());
                    event.message_event_type = Some(msg.event_type.clone());
                    self.publish(event, batch).await;
                }
                Ok(Settled::Exhausted)
            }
        }
    }
}

/// The history record of a failed attempt.
fn attempt_record(attempt: u32, result: &AttemptResult) -> AttemptRecord {
    AttemptRecord {
        attempt,
        at: result.at,
        status: result.status,
        error: result
            .failure
            .filter(|f| *f != FailureKind::Status)
            .map(|f| f.as_str().to_owned()),
    }
}

/// What the log says when `write` failed.
fn not_written(write: &Write) -> &'static str {
    match write {
        Write::RecordFailure(_) => "failure not counted",
        Write::Open { .. } => "breaker not opened",
        Write::RecordSuccess => "failure streak not cleared",
        Write::RecordProbeFailure { .. } => "probe failure not recorded",
        Write::Close => "breaker not closed",
        Write::Disable { .. } => "subscription not disabled",
    }
}

/// Health's record of a failed attempt.
fn last_failure(result: &AttemptResult) -> LastFailure {
    let record = attempt_record(0, result);
    LastFailure {
        at: record.at,
        status: record.status,
        error: record.error,
    }
}

/// The attempt-log entry of one attempt.
pub fn log_entry(msg: &DeliveryMessage, result: &AttemptResult) -> AttemptLog {
    let outcome = if result.delivered() {
        Outcome::Delivered
    } else if result.gone() {
        Outcome::Gone
    } else {
        Outcome::Failed
    };
    AttemptLog {
        company_id: msg.company_id.clone(),
        attempt_id: AttemptLog::attempt_id(
            &msg.subscription_id,
            result.at,
            &msg.webhook_id,
            msg.attempt,
        ),
        subscription_id: msg.subscription_id.clone(),
        webhook_id: msg.webhook_id.clone(),
        event_type: msg.event_type.clone(),
        attempt: msg.attempt,
        at: result.at,
        outcome,
        status_code: result.status,
        error: result
            .failure
            .filter(|f| *f != FailureKind::Status)
            .map(|f| f.as_str().to_owned()),
        duration_ms: result.duration.as_millis() as u64,
        response_excerpt: result.excerpt.clone(),
        expires_at: (result.at + RETENTION).timestamp(),
    }
}

/// How a message left the handler.
enum Settled {
    Delivered,
    Gone,
    Retried,
    Exhausted,
    Parked,
    ProbeFailed,
}

/// Compile-time check: the handler's future is `Send`, so runners (the
/// local stack) can spawn it on a multi-threaded runtime.
#[cfg(test)]
#[allow(dead_code)]
fn process_is_send(d: &'static Delivery, e: SqsEvent) {
    fn is_send<T: Send>(_: T) {}
    is_send(d.process(e));
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;
    use shared::domain::message::{EventEnvelope, test_event_message};

    use super::*;

    fn record(id: &str, body: String) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.body = Some(body);
        m
    }

    fn job_event(id: &str, sub: &str, job: &str, sequence: &str) -> SqsMessage {
        let data = RawValue::from_string(format!(r#"{{"job_id":"{job}"}}"#)).unwrap();
        let body = EventEnvelope {
            company_id: "acme",
            event_type: "job.running",
            timestamp: "2026-12-06T07:00:00.000Z",
            data: &data,
            sequence: Some(sequence),
        }
        .message_body(sub, &format!("evt_{id}"));
        record(id, body)
    }

    fn ids(groups: &[Vec<Parsed>]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|(r, _)| r.message_id.as_deref().unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn one_jobs_events_for_one_subscription_go_one_after_the_other_in_sequence_order() {
        let records = vec![
            job_event("a-completed", "sub_1", "job-a", "300"),
            job_event("b-running", "sub_1", "job-b", "250"),
            job_event("a-pending", "sub_1", "job-a", "99"),
            job_event("a-other-sub", "sub_2", "job-a", "120"),
            record("test", test_event_message("acme", "sub_1", Utc::now()).1),
            record("garbage", "{}".to_owned()),
            job_event("a-running", "sub_1", "job-a", "200"),
        ];
        assert_eq!(
            ids(&in_order(records)),
            vec![
                vec!["a-pending", "a-running", "a-completed"],
                vec!["b-running"],
                vec!["a-other-sub"],
                vec!["test"],
                vec!["garbage"],
            ]
        );
    }
}
