//! Endpoint health writes and the prober's lanes: the store makes the
//! breaker's [`Write`]s it is handed (decided in
//! `delivery::breaker::decision`), each one conditional
//! `UpdateItem` that asks back only what it wrote, and claims, ends and
//! lists the prober's jobs in [`PROBE_INDEX`].

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use super::{StoreError, SubscriptionStore, Updated, time_value};
use crate::domain::health::{BreakerState, DRAIN_START_DELAY, LastFailure, ProbeLane};
use crate::domain::health::{Condition, Write};
use crate::domain::subscription::{Subscription, SubscriptionStatus};
use crate::storage::table::{Item, n, s};

/// The sparse global secondary index of subscriptions the prober has work
/// for: partition key `probe_lane`, sort key `next_probe_at` (epoch ms).
/// Only subscriptions with an open breaker or parked events to drain have
/// those attributes, so the prober never scans the table.
pub const PROBE_INDEX: &str = "ProbeIndex";

/// `condition` as the request's condition expression and its values.
fn condition(u: UpdateItemFluentBuilder, condition: Condition) -> UpdateItemFluentBuilder {
    let active = || s(SubscriptionStatus::Active.as_str());
    let open = || s(BreakerState::Open.as_str());
    let half_open = || s(BreakerState::HalfOpen.as_str());
    let closed = || s(BreakerState::Closed.as_str());
    let probe = || s(ProbeLane::Probe.as_str());
    match condition {
        Condition::Exists => u.condition_expression("attribute_exists(subscription_id)"),
        Condition::ActiveAndClosed => u
            .condition_expression(
                "#status = :active AND (attribute_not_exists(breaker) OR breaker = :closed)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", active())
            .expression_attribute_values(":closed", closed()),
        Condition::Closed => u
            .condition_expression("attribute_not_exists(breaker) OR breaker = :closed")
            .expression_attribute_values(":closed", closed()),
        Condition::ActiveAndOpen => u
            .condition_expression("#status = :active AND breaker IN (:open, :half_open)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", active())
            .expression_attribute_values(":open", open())
            .expression_attribute_values(":half_open", half_open()),
        Condition::OpenAwaitingProbe => u
            .condition_expression("breaker IN (:open, :half_open) AND probe_lane = :probe")
            .expression_attribute_values(":open", open())
            .expression_attribute_values(":half_open", half_open())
            .expression_attribute_values(":probe", probe()),
        Condition::ActiveAwaitingProbe => u
            .condition_expression("#status = :active AND probe_lane = :probe")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", active())
            .expression_attribute_values(":probe", probe()),
    }
}

impl SubscriptionStore {
    /// Makes the breaker's `write` on the subscription `held` at `now`, if
    /// its [`Write::condition`] holds: `Some` only for the call that made
    /// it (concurrent instances make each transition once), with the
    /// attributes it wrote applied to `held`. Failures are counted
    /// atomically, so concurrent instances never lose a count.
    pub async fn execute(
        &self,
        held: &Subscription,
        write: &Write,
        now: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        let removed: &[&str] = match write {
            Write::RecordSuccess => &["failing_since"],
            Write::Close => &[
                "failing_since",
                "breaker",
                "breaker_opened_at",
                "probe_attempts",
            ],
            Write::Disable { .. } => &["probe_lane", "next_probe_at"],
            _ => &[],
        };
        let failure = match write {
            Write::RecordFailure(failure) | Write::RecordProbeFailure { failure, .. } => {
                Some(self.failure_value(&held.subscription_id, failure)?)
            }
            _ => None,
        };
        self.update_if(held, removed, |u| {
            let u = match failure {
                Some(value) => u.expression_attribute_values(":failure", value),
                None => u,
            };
            let u = match write {
                Write::RecordFailure(f) => u
                    .update_expression(
                        "SET consecutive_failures = if_not_exists(consecutive_failures, :zero) + :one, \
                         failing_since = if_not_exists(failing_since, :at), last_failure = :failure, \
                         version = version + :one",
                    )
                    .expression_attribute_values(":zero", n(0))
                    .expression_attribute_values(":at", time_value(f.at)),
                Write::Open { probe_at } => u
                    .update_expression(
                        "SET breaker = :open, breaker_opened_at = :now, probe_attempts = :zero, \
                         probe_lane = :probe, next_probe_at = :probe_at, version = version + :one",
                    )
                    .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
                    .expression_attribute_values(":now", time_value(now))
                    .expression_attribute_values(":zero", n(0))
                    .expression_attribute_values(":probe", s(ProbeLane::Probe.as_str()))
                    .expression_attribute_values(":probe_at", n(probe_at.timestamp_millis())),
                Write::RecordSuccess => u
                    .update_expression(
                        "SET consecutive_failures = :zero, last_success_at = :now, \
                         version = version + :one REMOVE failing_since",
                    )
                    .expression_attribute_values(":zero", n(0))
                    .expression_attribute_values(":now", time_value(now)),
                Write::Close => u
                    .update_expression(
                        "SET consecutive_failures = :zero, last_success_at = :now, probe_lane = :drain, \
                         next_probe_at = :due, version = version + :one \
                         REMOVE failing_since, breaker, breaker_opened_at, probe_attempts",
                    )
                    .expression_attribute_values(":zero", n(0))
                    .expression_attribute_values(":now", time_value(now))
                    .expression_attribute_values(":drain", s(ProbeLane::Drain.as_str()))
                    .expression_attribute_values(
                        ":due",
                        n((now + DRAIN_START_DELAY).timestamp_millis()),
                    ),
                Write::RecordProbeFailure { probe_at, .. } => u
                    .update_expression(
                        "SET breaker = :open, next_probe_at = :probe_at, last_failure = :failure, \
                         consecutive_failures = if_not_exists(consecutive_failures, :zero) + :one, \
                         probe_attempts = if_not_exists(probe_attempts, :zero) + :one, \
                         version = version + :one",
                    )
                    .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
                    .expression_attribute_values(":probe_at", n(probe_at.timestamp_millis()))
                    .expression_attribute_values(":zero", n(0)),
                Write::Disable { reason } => u
                    .update_expression(
                        "SET #status = :disabled, disabled_at = :now, disabled_reason = :reason, \
                         breaker = :open, updated_at = :now, version = version + :one \
                         REMOVE probe_lane, next_probe_at",
                    )
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(
                        ":disabled",
                        s(SubscriptionStatus::Disabled.as_str()),
                    )
                    .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
                    .expression_attribute_values(":now", time_value(now))
                    .expression_attribute_values(":reason", s(reason)),
            };
            condition(u, write.condition())
        })
        .await
    }

    /// [`Write::RecordFailure`] of `failure` on `held`: returns it with the
    /// counts as stored afterwards.
    pub async fn record_failure(
        &self,
        held: &Subscription,
        failure: &LastFailure,
    ) -> Result<Option<Updated>, StoreError> {
        let write = Write::RecordFailure(failure.clone());
        self.execute(held, &write, failure.at).await
    }

    /// [`Write::Open`] on `held` at `now`, the first probe due at
    /// `probe_at`.
    pub async fn open_breaker(
        &self,
        held: &Subscription,
        probe_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        self.execute(held, &Write::Open { probe_at }, now).await
    }

    /// [`Write::Close`] on `held` at `now`.
    pub async fn close_breaker(
        &self,
        held: &Subscription,
        now: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        self.execute(held, &Write::Close, now).await
    }

    /// [`Write::RecordProbeFailure`] of `failure` on `held`, the next probe
    /// due at `probe_at`.
    pub async fn record_probe_failure(
        &self,
        held: &Subscription,
        failure: &LastFailure,
        probe_at: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        let write = Write::RecordProbeFailure {
            failure: failure.clone(),
            probe_at,
        };
        self.execute(held, &write, failure.at).await
    }

    /// [`Write::Disable`] of `held` with `reason` at `now`.
    pub async fn disable(
        &self,
        held: &Subscription,
        reason: &'static str,
        now: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        self.execute(held, &Write::Disable { reason }, now).await
    }

    /// One conditional `UpdateItem` on the subscription `held` that asks
    /// back only the attributes it wrote (`UPDATED_NEW`; the delivery and
    /// prober roles may read back only what they may write) and applies
    /// them, and the removal of `removed`, to `held`; `None` when the
    /// condition did not hold (or it does not exist). Every health write
    /// bumps `version`, so the API's read-modify-writes never overwrite it.
    pub(super) async fn update_if(
        &self,
        held: &Subscription,
        removed: &[&str],
        build: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<Option<Updated>, StoreError> {
        let request = self
            .table
            .update_item()
            .key("company_id", s(&held.company_id))
            .key("subscription_id", s(&held.subscription_id))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew);
        let Some(out) = self.table.update_if(build(request)).await? else {
            return Ok(None);
        };
        let written = out.attributes.unwrap_or_default();
        let mut item = self.table.encode(&held.subscription_id, held)?;
        for name in removed {
            item.remove(*name);
        }
        item.extend(written);
        let sub: Subscription = self.decode_item(item)?;
        let whole = sub.version == held.version + 1;
        Ok(Some(Updated { sub, whole }))
    }

    /// One conditional `UpdateItem` that asks nothing back; `false` when
    /// the condition did not hold.
    async fn write_if(
        &self,
        company_id: &str,
        subscription_id: &str,
        build: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<bool, StoreError> {
        let request = self
            .table
            .update_item()
            .key("company_id", s(company_id))
            .key("subscription_id", s(subscription_id))
            .expression_attribute_values(":one", n(1));
        Ok(self.table.update_if(build(request)).await?.is_some())
    }

    /// `failure` as the `last_failure` map attribute.
    fn failure_value(
        &self,
        subscription_id: &str,
        failure: &LastFailure,
    ) -> Result<AttributeValue, StoreError> {
        self.table.attribute(subscription_id, failure)
    }

    /// Claims the prober's job on a subscription it found due at `seen`
    /// (its `next_probe_at`): moves `next_probe_at` to `until`, so an
    /// overlapping run skips it. A probe claim also half-opens the
    /// breaker. `true` only for the run that claimed it.
    pub async fn claim(
        &self,
        company_id: &str,
        subscription_id: &str,
        lane: ProbeLane,
        seen: i64,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write_if(company_id, subscription_id, |u| {
            let u = match lane {
                ProbeLane::Probe => u
                    .update_expression(
                        "SET next_probe_at = :until, breaker = :half_open, \
                             version = version + :one",
                    )
                    .expression_attribute_values(":half_open", s(BreakerState::HalfOpen.as_str())),
                ProbeLane::Drain => {
                    u.update_expression("SET next_probe_at = :until, version = version + :one")
                }
            };
            u.condition_expression("probe_lane = :lane AND next_probe_at = :seen")
                .expression_attribute_values(":lane", s(lane.as_str()))
                .expression_attribute_values(":seen", n(seen))
                .expression_attribute_values(":until", n(until.timestamp_millis()))
        })
        .await
    }

    /// Takes a drained subscription out of the prober's index, if the
    /// drain is still the one claimed with `claimed_until`.
    pub async fn finish_drain(
        &self,
        company_id: &str,
        subscription_id: &str,
        claimed_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write_if(company_id, subscription_id, |u| {
            u.update_expression("SET version = version + :one REMOVE probe_lane, next_probe_at")
                .condition_expression("probe_lane = :drain AND next_probe_at = :until")
                .expression_attribute_values(":drain", s(ProbeLane::Drain.as_str()))
                .expression_attribute_values(":until", n(claimed_until.timestamp_millis()))
        })
        .await
    }

    /// Up to `limit` subscriptions waiting in `lane` whose job is due at
    /// `now`, the longest waiting first (a query of [`PROBE_INDEX`]).
    pub async fn due(
        &self,
        lane: ProbeLane,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .table
                .query()
                .index_name(PROBE_INDEX)
                .key_condition_expression("probe_lane = :lane AND next_probe_at <= :now")
                .expression_attribute_values(":lane", s(lane.as_str()))
                .expression_attribute_values(":now", n(now.timestamp_millis()))
                .limit(i32::try_from(limit - found.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.table.dynamo_err("Query", e))?;
            for item in out.items.unwrap_or_default() {
                // One item that does not decode must not stop the lane for
                // every other subscription.
                match self.decode_item::<Subscription>(item) {
                    Ok(sub) => found.push(sub),
                    Err(e) => {
                        tracing::error!(error = %e, "skipped an undecodable subscription in the probe index")
                    }
                }
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if found.len() >= limit || start.is_none() {
                return Ok(found);
            }
        }
    }
}
