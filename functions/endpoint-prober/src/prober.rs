//! One run of the prober: disable, probe, drain.

use aws_sdk_sqs::error::DisplayErrorContext;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::delivery::breaker::BreakerPolicy;
use shared::delivery::message::{DeliveryMessage, group_id};
use shared::delivery::requeue::Requeuer;
use shared::domain::health::ProbeLane;
use shared::domain::subscription::Subscription;
use shared::metrics::Metrics;
use shared::operational::{OperationalEvent, OperationalEventType, Publisher};
use shared::storage::parked::{Order, ParkedEvents, ParkedQuery, ParkedStatus};
use shared::storage::subscriptions::{StoreError, SubscriptionStore, Updated};

use crate::config::ProberConfig;

/// Reason recorded on subscriptions the prober disables.
pub const DISABLED_REASON: &str = "endpoint failed continuously for DisableAfterSeconds";

/// A run stops taking new subscriptions this long before its deadline, so
/// the one in hand finishes (a drain's sends and deletes) inside it.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Parked events counted for operational events, at most.
const PARKED_COUNT_CAP: u64 = 10_000;

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
    /// Reads, writes or sends that failed (retried on a later run).
    pub errors: u64,
}

impl ProberReport {
    /// The run's EMF metrics.
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        m.count("ProbesSent", self.probes_sent)
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
    sqs: aws_sdk_sqs::Client,
    delivery_queue_url: String,
    policy: BreakerPolicy,
    drain_rate: u32,
    drain_window: chrono::Duration,
    probe_lease: chrono::Duration,
    max_per_run: usize,
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
        Self {
            store: SubscriptionStore::new(dynamodb, config.subscriptions_table.clone()),
            requeuer: Requeuer::new(
                sqs.clone(),
                config.delivery_queue_url.clone(),
                parked.clone(),
            ),
            parked,
            publisher: Publisher::new(events, config.event_bus_name.clone()),
            sqs,
            delivery_queue_url: config.delivery_queue_url.clone(),
            policy: config.breaker.clone(),
            drain_rate: config.drain_rate,
            drain_window: duration(config.drain_window),
            probe_lease: duration(config.probe_lease),
            max_per_run: config.max_per_run,
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
    /// [`DEADLINE_MARGIN`] before it wait for the next run.
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        deadline: Option<std::time::Instant>,
    ) -> ProberReport {
        let mut report = ProberReport::default();
        let near = || deadline.is_some_and(|d| std::time::Instant::now() + DEADLINE_MARGIN >= d);
        match self
            .store
            .due(ProbeLane::Probe, now, self.max_per_run)
            .await
        {
            Ok(due) => {
                for sub in due {
                    if near() {
                        report.deferred += 1;
                        continue;
                    }
                    self.probe_or_disable(&sub, now, &mut report).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "due breakers not read");
                report.errors += 1;
            }
        }
        match self
            .store
            .due(ProbeLane::Drain, now, self.max_per_run)
            .await
        {
            Ok(due) => {
                for sub in due {
                    if near() {
                        report.deferred += 1;
                        continue;
                    }
                    self.drain(&sub, now, &mut report).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "due drains not read");
                report.errors += 1;
            }
        }
        if report != ProberReport::default() {
            tracing::info!(?report, "prober run");
        }
        report
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
        report: &mut ProberReport,
    ) {
        let (company, id) = (sub.company_id.as_str(), sub.subscription_id.as_str());
        let Some(seen) = sub.health.next_probe_at else {
            return;
        };
        if self.policy.should_disable(sub.health.failing_since, now) {
            match self.store.disable(sub, DISABLED_REASON, now).await {
                Ok(Some(Updated { sub: disabled, .. })) => {
                    tracing::warn!(
                        subscription_id = id,
                        failing_since = ?disabled.health.failing_since,
                        "endpoint failed for too long: subscription disabled, its events stay parked"
                    );
                    report.disabled += 1;
                    let parked = self.parked_count(&disabled).await;
                    let event = OperationalEvent::about(
                        OperationalEventType::EndpointDisabled,
                        &disabled,
                        now,
                    )
                    .with_parked(parked);
                    self.publisher.publish_logged(&event).await;
                }
                Ok(None) => report.skipped += 1,
                Err(e) => Self::error(report, id, "could not disable", &e),
            }
            return;
        }
        match self
            .store
            .claim(company, id, ProbeLane::Probe, seen, now + self.probe_lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                report.skipped += 1;
                return;
            }
            Err(e) => return Self::error(report, id, "probe not claimed", &e),
        }
        let oldest = self
            .parked
            .list(
                company,
                id,
                &ParkedQuery {
                    status: Some(ParkedStatus::Parked),
                    ..ParkedQuery::default()
                },
                Order::OldestFirst,
                1,
                None,
            )
            .await;
        let probe = match oldest {
            Ok(page) => page.items.into_iter().next(),
            Err(e) => return Self::error(report, id, "parked events not read", &e),
        };
        let Some(event) = probe else {
            // Nothing to probe with (the customer recovered everything, or
            // it expired): close the breaker and let the next event test it.
            match self.store.close_breaker(sub, now).await {
                Ok(_) => {
                    tracing::info!(
                        subscription_id = id,
                        "no parked event to probe with: breaker closed"
                    );
                    report.closed_without_probe += 1;
                }
                Err(e) => Self::error(report, id, "breaker not closed", &e),
            }
            return;
        };
        let Some(mut msg) = DeliveryMessage::parse(&event.message) else {
            // Kept for the customer to see, out of the probe's way; the
            // next probe takes the next event.
            tracing::error!(subscription_id = id, event_key = %event.event_key, "parked message does not parse: kept as failed");
            let mut failed = event.clone();
            failed.status = ParkedStatus::Failed;
            if let Err(e) = self.parked.put(&failed).await {
                Self::error(report, id, "unreadable parked event not set aside", &e);
            }
            report.errors += 1;
            return;
        };
        msg = msg.redriven();
        msg.probe = Some(event.event_key.clone());
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.delivery_queue_url)
            .message_group_id(group_id(company))
            .message_body(msg.to_body())
            .send()
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(
                    subscription_id = id,
                    event_key = %event.event_key,
                    probes_made = sub.health.probe_attempts,
                    "probe sent"
                );
                report.probes_sent += 1;
            }
            Err(e) => {
                // The lease runs out and a later run probes again.
                tracing::error!(subscription_id = id, error = %DisplayErrorContext(&e), "probe not sent");
                report.errors += 1;
            }
        }
    }

    async fn drain(&self, sub: &Subscription, now: DateTime<Utc>, report: &mut ProberReport) {
        let (company, id) = (sub.company_id.as_str(), sub.subscription_id.as_str());
        let Some(seen) = sub.health.next_probe_at else {
            return;
        };
        let until = now + self.drain_window;
        match self
            .store
            .claim(company, id, ProbeLane::Drain, seen, until)
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
            if let Err(e) = self.store.finish_drain(company, id, until).await {
                Self::error(report, id, "drain not ended", &e);
            }
            return;
        }
        let rate = self.drain_rate.max(1);
        let window_secs = u32::try_from(self.drain_window.num_seconds().max(1)).unwrap_or(1);
        let limit = usize::try_from(rate.saturating_mul(window_secs)).unwrap_or(usize::MAX);
        let page = self
            .parked
            .list(
                company,
                id,
                &ParkedQuery {
                    status: Some(ParkedStatus::Parked),
                    ..ParkedQuery::default()
                },
                Order::OldestFirst,
                limit,
                None,
            )
            .await;
        let events = match page {
            Ok(page) => page.items,
            Err(e) => return Self::error(report, id, "parked events not read", &e),
        };
        if events.is_empty() {
            match self.store.finish_drain(company, id, until).await {
                Ok(true) => {
                    tracing::info!(subscription_id = id, "drain finished");
                    report.drains_finished += 1;
                }
                Ok(false) => {}
                Err(e) => Self::error(report, id, "drain not finished", &e),
            }
            return;
        }
        // Event i becomes visible i / rate seconds from now: at most `rate`
        // a second, oldest first.
        let sent = self
            .requeuer
            .requeue(id, &events, |i| u32::try_from(i).unwrap_or(u32::MAX) / rate)
            .await;
        tracing::info!(
            subscription_id = id,
            sent = sent.sent,
            not_sent = sent.not_sent,
            not_deleted = sent.not_deleted,
            rate_per_second = rate,
            "parked events drained to the delivery queue"
        );
        report.drained += sent.sent as u64;
        if sent.not_sent + sent.not_deleted + sent.unreadable > 0 {
            report.errors += 1;
        }
    }
}
