//! One run of the prober: disable, probe, drain.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::delivery::breaker::{self, BreakerPolicy, Decision, Fate, ParkedCount, Write};
use shared::delivery::requeue::{ORDER_GAP_SECONDS, Pacer, RequeueReport, Requeuer};
use shared::domain::health::ProbeLane;
use shared::domain::message::DeliveryMessage;
use shared::domain::subscription::Subscription;
use shared::metrics::Metrics;
use shared::operational::Publisher;
use shared::queue::{MAX_DELAY_SECONDS, Outgoing, QueueWriter};
use shared::storage::StoreError;
use shared::storage::parked::{Order, ParkedEvents, ParkedQuery, ParkedStatus};
use shared::storage::subscriptions::SubscriptionStore;

use crate::config::ProberConfig;

pub use shared::delivery::breaker::DISABLED_REASON;

/// A run stops this long before its deadline: it takes no new
/// subscription, and the one in hand stops between two SQS batches (its
/// drain goes on in the next run).
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Parked events counted for operational events, at most.
const PARKED_COUNT_CAP: u64 = 10_000;

/// Most message bytes one drain step sends for one subscription, so a
/// step's work stays bounded whatever the events weigh.
pub const DRAIN_STEP_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Parked events read per page of a drain step (DynamoDB returns at most
/// 1 MB a page anyway): the most a step holds in memory at once.
pub const DRAIN_PAGE: usize = 100;

/// The least time a drain step has to read its first page, however little
/// of its budget is left, so that every step makes progress.
const FIRST_PAGE_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Unreadable parked events set aside in search of one to probe with,
/// per run.
const PROBE_CANDIDATES: usize = 5;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ProberReport {
    /// Probes sent to the DeliveryQueue.
    pub probes_sent: u64,
    /// Breakers closed without a probe (nothing was parked to probe with).
    pub closed_without_probe: u64,
    /// Subscriptions disabled.
    pub disabled: u64,
    /// Parked events sent back to the DeliveryQueue.
    pub drained: u64,
    /// Drains that found nothing left and ended.
    pub drains_finished: u64,
    /// Due subscriptions another run had already claimed.
    pub skipped: u64,
    /// Due subscriptions left for the next run because the deadline was near.
    pub deferred: u64,
    /// Subscriptions whose probe or drain step used up its time budget
    /// (the drain goes on in the next run).
    pub over_budget: u64,
    /// Reads, writes or sends that failed (retried on a later run).
    pub errors: u64,
}

impl ProberReport {
    /// The run's EMF metrics.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.count("ProbesSent", self.probes_sent)
            .count("EndpointsOverBudget", self.over_budget)
            .count("EndpointsDisabled", self.disabled)
            .count("DrainedEvents", self.drained)
            .count("DrainsFinished", self.drains_finished)
            .count("ProberErrors", self.errors);
        m
    }
}

/// The prober: built once per instance.
#[derive(Debug)]
pub struct Prober {
    store: SubscriptionStore,
    parked: ParkedEvents,
    requeuer: Requeuer,
    publisher: Publisher,
    delivery_queue: QueueWriter,
    policy: BreakerPolicy,
    drain_rate: u32,
    drain_window: chrono::Duration,
    probe_lease: chrono::Duration,
    max_per_run: usize,
    lookahead: chrono::Duration,
    endpoint_budget: std::time::Duration,
}

impl Prober {
    /// The prober over the configured tables, queue and bus.
    pub fn new(
        config: &ProberConfig,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        events: aws_sdk_eventbridge::Client,
    ) -> Self {
        let parked = ParkedEvents::new(dynamodb.clone(), config.parked_events_table.clone());
        let duration = |d| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let delivery_queue = QueueWriter::new(sqs, config.delivery_queue_url.clone());
        Self {
            store: SubscriptionStore::new(dynamodb, config.subscriptions_table.clone()),
            requeuer: Requeuer::new(delivery_queue.clone(), parked.clone()),
            parked,
            publisher: Publisher::new(events, config.event_bus_name.clone()),
            delivery_queue,
            policy: config.breaker.clone(),
            drain_rate: config.drain_rate,
            drain_window: duration(config.drain_window),
            probe_lease: duration(config.probe_lease),
            max_per_run: config.max_per_run,
            lookahead: duration(config.lookahead),
            endpoint_budget: config.endpoint_budget,
        }
    }

    /// One scheduled invocation that must end by `deadline`: runs and
    /// emits its metrics.
    pub async fn handle(&self, deadline: std::time::Instant) -> ProberReport {
        let report = self.run(Utc::now(), Some(deadline)).await;
        report.metrics().emit("endpoint-prober");
        report
    }

    /// One run at `now`; with a `deadline`, subscriptions not started
    /// [`DEADLINE_MARGIN`] before it wait for the next run. Takes what is
    /// due up to the lookahead after `now`.
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        deadline: Option<std::time::Instant>,
    ) -> ProberReport {
        let mut report = ProberReport::default();
        let stop_at = deadline.map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d));
        let near = || stop_at.is_some_and(|d| std::time::Instant::now() >= d);
        // Each subscription's share of the run: its budget, and never past
        // the point where the run stops.
        let budget = || {
            let own = std::time::Instant::now() + self.endpoint_budget;
            stop_at.map_or(own, |d| own.min(d))
        };
        let horizon = now + self.lookahead;
        // Each subscription is handled at the run's time plus what the run
        // has taken so far: its delays and claims count from when its
        // messages are actually sent.
        let started = std::time::Instant::now();
        let at = || now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        for lane in [ProbeLane::Probe, ProbeLane::Drain] {
            let due = match self.store.due(lane, horizon, self.max_per_run).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(error = %e, lane = lane.as_str(), "due subscriptions not read");
                    report.errors += 1;
                    continue;
                }
            };
            for sub in due {
                if near() {
                    report.deferred += 1;
                    continue;
                }
                match lane {
                    ProbeLane::Probe => {
                        self.probe_or_disable(&sub, at(), budget(), &mut report)
                            .await;
                    }
                    ProbeLane::Drain => self.drain(&sub, at(), budget(), &mut report).await,
                }
            }
        }
        if report != ProberReport::default() {
            tracing::info!(?report, "prober run");
        }
        report
    }

    /// Seconds from `now` until `due` (epoch milliseconds), 0 if past.
    fn seconds_until(due: i64, now: DateTime<Utc>) -> u32 {
        let ms = (due - now.timestamp_millis()).max(0);
        u32::try_from((ms + 999) / 1000).unwrap_or(u32::MAX)
    }

    fn error(report: &mut ProberReport, subscription_id: &str, what: &str, e: &StoreError) {
        tracing::error!(subscription_id, error = %e, "{what}");
        report.errors += 1;
    }

    async fn parked_count(&self, sub: &Subscription) -> Option<u64> {
        self.parked
            .count_parked(&sub.company_id, &sub.subscription_id, PARKED_COUNT_CAP)
            .await
            .ok()
    }

    async fn probe_or_disable(
        &self,
        sub: &Subscription,
        now: DateTime<Utc>,
        until: std::time::Instant,
        report: &mut ProberReport,
    ) {
        let (company, id) = (sub.company_id.as_str(), sub.subscription_id.as_str());
        let Some((seen, due)) = due_at(sub, now) else {
            return;
        };
        let decision = self.decide(sub, breaker::Outcome::ProbeDue { due }, now);
        if decision.applied != Fate::Probe {
            // Disabled now, or by the run at its time, not probed before.
            return self.execute(sub, &decision, now, report).await;
        }
        // The event to probe with, found before the claim: a read that
        // runs out of budget leaves the breaker as it was, due now.
        let probe =
            match tokio::time::timeout_at(until.into(), self.probe_candidate(sub, report)).await {
                Ok(Ok(found)) => found,
                Ok(Err(e)) => return Self::error(report, id, "parked events not read", &e),
                Err(_) => {
                    tracing::warn!(
                        subscription_id = id,
                        "probe not sent: its parked events took longer than the budget to read"
                    );
                    report.over_budget += 1;
                    return;
                }
            };
        match self
            .store
            .claim(company, id, ProbeLane::Probe, seen, due + self.probe_lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                report.skipped += 1;
                return;
            }
            Err(e) => return Self::error(report, id, "probe not claimed", &e),
        }
        let Some((event_key, mut msg)) = probe else {
            // Nothing to probe with (the customer recovered everything, or
            // it expired): close the breaker and let the next event test it.
            let decision = self.decide(sub, breaker::Outcome::NothingToProbe, now);
            return self.execute(sub, &decision, now, report).await;
        };
        msg = msg.redriven();
        msg.probe = Some(event_key.clone());
        let delay = Self::seconds_until(seen, now).min(MAX_DELAY_SECONDS);
        let probe = Outgoing::of_company(msg.to_body(), company).delayed(delay);
        let sent = self.delivery_queue.send_one(&probe).await;
        match sent {
            Ok(_) => {
                tracing::info!(
                    subscription_id = id,
                    event_key = %event_key,
                    delay_seconds = delay,
                    probes_made = sub.health.probe_attempts,
                    "probe sent"
                );
                report.probes_sent += 1;
            }
            Err(e) => {
                // The lease runs out and a later run probes again.
                tracing::error!(subscription_id = id, error = %e.message, "probe not sent");
                report.errors += 1;
            }
        }
    }

    /// The oldest parked event that parses, with its key; unreadable ones
    /// found first are set aside as failed, out of the probe's way.
    async fn probe_candidate(
        &self,
        sub: &Subscription,
        report: &mut ProberReport,
    ) -> Result<Option<(String, DeliveryMessage)>, StoreError> {
        let (company, id) = (sub.company_id.as_str(), sub.subscription_id.as_str());
        for _ in 0..PROBE_CANDIDATES {
            let Some(event) = self.parked.oldest_parked(company, id).await? else {
                return Ok(None);
            };
            if let Some(msg) = DeliveryMessage::parse(&event.message) {
                return Ok(Some((event.event_key, msg)));
            }
            tracing::error!(subscription_id = id, event_key = %event.event_key, "parked message does not parse: kept as failed");
            report.errors += 1;
            self.parked.set_aside(&event).await?;
        }
        Ok(None)
    }

    /// The breaker's decision on `outcome` for `sub` at `now`.
    fn decide(
        &self,
        sub: &Subscription,
        outcome: breaker::Outcome,
        now: DateTime<Utc>,
    ) -> Decision {
        let jitter = breaker::draw_jitter();
        breaker::decide(&sub.health, &self.policy, &outcome, now, jitter)
    }

    /// Makes the breaker's `decision` on `sub` at `now`: its write,
    /// counted, and announced when it applied.
    async fn execute(
        &self,
        sub: &Subscription,
        decision: &Decision,
        now: DateTime<Utc>,
        report: &mut ProberReport,
    ) {
        let id = sub.subscription_id.as_str();
        let Some(write) = &decision.write else {
            return;
        };
        let disable = matches!(write, Write::Disable { .. });
        match self.store.execute(sub, write, now).await {
            Ok(Some(stored)) if disable => {
                tracing::warn!(
                    subscription_id = id,
                    failing_since = ?stored.sub.health.failing_since,
                    "endpoint failed for too long: subscription disabled, its events stay parked"
                );
                report.disabled += 1;
                if let Some(notice) = &decision.notice {
                    let parked = match notice.parked {
                        ParkedCount::Counted => self.parked_count(&stored.sub).await,
                        ParkedCount::Zero => None,
                    };
                    let event = notice.event(sub, &stored.sub, now, parked);
                    self.publisher.publish_logged(&event).await;
                }
            }
            Ok(None) if disable => report.skipped += 1,
            Ok(_) => {
                tracing::info!(
                    subscription_id = id,
                    "no parked event to probe with: breaker closed"
                );
                report.closed_without_probe += 1;
            }
            Err(e) if disable => Self::error(report, id, "could not disable", &e),
            Err(e) => Self::error(report, id, "breaker not closed", &e),
        }
    }

    async fn drain(
        &self,
        sub: &Subscription,
        now: DateTime<Utc>,
        until: std::time::Instant,
        report: &mut ProberReport,
    ) {
        let (company, id) = (sub.company_id.as_str(), sub.subscription_id.as_str());
        let Some((seen, due)) = due_at(sub, now) else {
            return;
        };
        if due > now {
            // Due before the next run: its first step goes out now, delayed.
            // With nothing parked yet there is nothing to send and nothing
            // to end (a drain ends only once due): left for that run.
            let oldest =
                tokio::time::timeout_at(until.into(), self.parked.oldest_parked(company, id)).await;
            match oldest {
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return,
                Ok(Err(e)) => return Self::error(report, id, "parked events not read", &e),
                Err(_) => {
                    report.over_budget += 1;
                    return;
                }
            }
        }
        // Held until every event this step sends is visible: the step's
        // window after it is due, plus the time its sends may take (they
        // stop at the budget), plus a job's gap to the next step's first.
        let claimed_until = due
            + self.drain_window
            + chrono::Duration::from_std(self.endpoint_budget).unwrap_or_default()
            + chrono::Duration::seconds(i64::from(ORDER_GAP_SECONDS));
        match self
            .store
            .claim(company, id, ProbeLane::Drain, seen, claimed_until)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                report.skipped += 1;
                return;
            }
            Err(e) => return Self::error(report, id, "drain not claimed", &e),
        }
        if sub.is_disabled() {
            // Drained once enabled.
            if let Err(e) = self.store.finish_drain(company, id, claimed_until).await {
                Self::error(report, id, "drain not ended", &e);
            }
            return;
        }
        // This step's events become visible from `due` on, at most `rate`
        // a second, for one window.
        let rate = self.drain_rate.max(1);
        let offset = Self::seconds_until(seen, now);
        let window_secs = u32::try_from(self.drain_window.num_seconds().max(1)).unwrap_or(1);
        let mut pacer = Pacer::new(
            Some(rate),
            offset,
            offset.saturating_add(window_secs),
            DRAIN_STEP_MAX_BYTES,
        );
        let query = ParkedQuery {
            status: Some(ParkedStatus::Parked),
            ..ParkedQuery::default()
        };
        let mut after: Option<String> = None;
        let mut total = RequeueReport::default();
        let mut first_page = true;
        loop {
            // Every step makes progress: its first page (given at least
            // FIRST_PAGE_TIME to be read) and first SQS batch go whatever
            // the budget says; after that the budget decides.
            let now_instant = std::time::Instant::now();
            if !first_page && now_instant >= until {
                report.over_budget += 1;
                break;
            }
            let read_until = if first_page {
                until.max(now_instant + FIRST_PAGE_TIME)
            } else {
                until
            };
            let page = tokio::time::timeout_at(
                read_until.into(),
                self.parked.list(
                    company,
                    id,
                    &query,
                    Order::OldestFirst,
                    DRAIN_PAGE,
                    after.as_deref(),
                ),
            )
            .await;
            let page = match page {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    Self::error(report, id, "parked events not read", &e);
                    break;
                }
                Err(_) => {
                    report.over_budget += 1;
                    break;
                }
            };
            if page.items.is_empty() {
                // Never before the drain is due: events that instances
                // with an older copy of the subscription still park until
                // then must be drained too.
                if first_page && due <= now {
                    match self.store.finish_drain(company, id, claimed_until).await {
                        Ok(true) => {
                            tracing::info!(subscription_id = id, "drain finished");
                            report.drains_finished += 1;
                        }
                        Ok(false) => {}
                        Err(e) => Self::error(report, id, "drain not finished", &e),
                    }
                }
                break;
            }
            first_page = false;
            let step = self
                .requeuer
                .requeue(id, &page.items, &mut pacer, Some(until))
                .await;
            if let Some(last) = step.handled.checked_sub(1).and_then(|i| page.items.get(i)) {
                after = Some(last.position());
            }
            total.sent += step.sent;
            total.not_sent += step.not_sent;
            total.not_deleted += step.not_deleted;
            total.unreadable += step.unreadable;
            if step.stopped && std::time::Instant::now() >= until {
                report.over_budget += 1;
            }
            if step.stopped || !page.has_more {
                break;
            }
        }
        if total != RequeueReport::default() {
            tracing::info!(
                subscription_id = id,
                sent = total.sent,
                not_sent = total.not_sent,
                not_deleted = total.not_deleted,
                rate_per_second = rate,
                delay_seconds = offset,
                "parked events drained to the delivery queue"
            );
        }
        report.drained += total.sent as u64;
        if total.not_sent + total.not_deleted + total.unreadable > 0 {
            report.errors += 1;
        }
    }
}

/// When `sub`'s probe or drain step is due (its `next_probe_at`, not
/// before `now`), with the stored `next_probe_at` a claim is conditional
/// on; `None` when nothing is scheduled.
fn due_at(sub: &Subscription, now: DateTime<Utc>) -> Option<(i64, DateTime<Utc>)> {
    let seen = sub.health.next_probe_at?;
    let due = DateTime::from_timestamp_millis(seen)
        .unwrap_or(now)
        .max(now);
    Some((seen, due))
}
