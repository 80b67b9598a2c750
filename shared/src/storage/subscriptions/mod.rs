//! The DynamoDB subscription store.
//!
//! Table layout (see `template.yaml`): partition key `company_id`, sort key
//! `subscription_id`. Every read and write is keyed by a company, so one
//! tenant can never address another's items. Besides subscriptions (sort keys
//! `sub_...`), the table holds create-idempotency records (sort keys
//! `idempotency#...`) that expire through the table's TTL attribute
//! `expires_at`, and one quota counter per company (sort key
//! [`QUOTA_KEY`], see [`create`]); subscription queries only ever read the
//! `sub_` range.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;

use crate::domain::health::{BreakerState, DRAIN_START_DELAY, LastFailure, ProbeLane};
use crate::domain::subscription::{ID_PREFIX, Subscription, SubscriptionStatus};

mod create;

pub use create::QUOTA_KEY;

type Item = HashMap<String, AttributeValue>;

const IDEMPOTENCY_PREFIX: &str = "idempotency#";

/// The sparse global secondary index of subscriptions the prober has work
/// for: partition key `probe_lane`, sort key `next_probe_at` (epoch ms).
/// Only subscriptions with an open breaker or parked events to drain have
/// those attributes, so the prober never scans the table.
pub const PROBE_INDEX: &str = "ProbeIndex";

/// A time as the subscription items store it (serde's RFC 3339).
fn time_value(t: DateTime<Utc>) -> AttributeValue {
    AttributeValue::S(
        serde_json::to_value(t)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| t.to_rfc3339()),
    )
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB refused or could not be reached.
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    Dynamo {
        /// The API call, e.g. `PutItem`.
        operation: &'static str,
        /// Table name.
        table: String,
        /// The SDK's error with its context.
        message: String,
    },
    /// An item could not be mapped to or from a subscription.
    #[error("item {key:?} of table {table} could not be mapped: {source}")]
    Mapping {
        /// Sort key of the item.
        key: String,
        /// Table name.
        table: String,
        /// The mapping error.
        source: serde_dynamo::Error,
    },
    /// A conditional write lost against a concurrent write.
    #[error("subscription {0} was changed concurrently")]
    VersionConflict(String),
    /// A create would take the company past its subscription quota.
    #[error(
        "company {company_id} already has {quota} subscriptions that are not archived, its quota"
    )]
    QuotaExceeded {
        /// The company.
        company_id: String,
        /// The quota it is at.
        quota: u64,
    },
    /// A write would have stored a signing secret in the clear.
    #[error("subscription {0} holds a signing secret in the clear: seal it before writing")]
    PlaintextSecret(String),
}

/// A request to make `POST /webhooks` idempotent.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// Fingerprint of the request body, to detect reuse with other content.
    pub request_hash: String,
    /// When the key may be reused for a new request.
    pub expires_at: DateTime<Utc>,
}

/// Outcome of [`SubscriptionStore::create`].
#[derive(Debug)]
pub enum CreateOutcome {
    /// The subscription was written.
    Created,
    /// The idempotency key was seen before with the same request: this is
    /// the subscription it created (in its current state), and nothing new
    /// was written.
    Replayed(Box<Subscription>),
    /// The idempotency key was seen before with a different request body.
    KeyReused,
}

/// One page of a company's subscriptions.
#[derive(Debug)]
pub struct Page {
    /// Items, newest first.
    pub items: Vec<Subscription>,
    /// Whether more items follow the last one.
    pub has_more: bool,
}

#[derive(Serialize, Deserialize)]
struct IdempotencyRecord {
    company_id: String,
    subscription_id: String,
    target_subscription_id: String,
    request_hash: String,
    expires_at: i64,
}

/// The key of a subscription item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionKey {
    /// Partition key.
    pub company_id: String,
    /// Sort key.
    pub subscription_id: String,
}

/// A subscription after one of the health and status updates: the
/// attributes the update wrote as DynamoDB returned them (`UPDATED_NEW`;
/// the delivery and prober roles may read back only what they may write),
/// the rest as the caller held it.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated {
    /// The subscription as the caller held it, with the update applied.
    pub sub: Subscription,
    /// Whether the caller held the item as stored just before the update
    /// (every write moves `version` by one, and this one moved it past
    /// the held version), so `sub` is the whole item as stored now: a copy
    /// worth caching. Otherwise only the attributes the update wrote are
    /// current.
    pub whole: bool,
}

/// Subscriptions in DynamoDB. Cheap to clone; build one per process.
#[derive(Debug, Clone)]
pub struct SubscriptionStore {
    client: Client,
    table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl SubscriptionStore {
    /// A store over `table` using `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn dynamo_err<E>(&self, operation: &'static str, err: E) -> StoreError
    where
        E: std::error::Error,
    {
        StoreError::Dynamo {
            operation,
            table: self.table.clone(),
            message: DisplayErrorContext(err).to_string(),
        }
    }

    fn encode_item<T: Serialize>(&self, key: &str, value: &T) -> Result<Item, StoreError> {
        to_item(value).map_err(|source| StoreError::Mapping {
            key: key.to_owned(),
            table: self.table.clone(),
            source,
        })
    }

    /// The item of `sub`, refused when a secret of it is in the clear.
    fn encode_subscription(&self, sub: &Subscription) -> Result<Item, StoreError> {
        if sub.has_plaintext_secret() {
            return Err(StoreError::PlaintextSecret(sub.subscription_id.clone()));
        }
        self.encode_item(&sub.subscription_id, sub)
    }

    fn decode_item<T: for<'de> Deserialize<'de>>(&self, item: Item) -> Result<T, StoreError> {
        let key = match item.get("subscription_id") {
            Some(AttributeValue::S(k)) => k.clone(),
            _ => String::from("?"),
        };
        from_item(item).map_err(|source| StoreError::Mapping {
            key,
            table: self.table.clone(),
            source,
        })
    }

    /// The subscription `subscription_id` of `company_id`, if it exists.
    pub async fn get(
        &self,
        company_id: &str,
        subscription_id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("company_id", s(company_id))
            .key("subscription_id", s(subscription_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.dynamo_err("GetItem", e))?;
        out.item.map(|item| self.decode_item(item)).transpose()
    }

    /// Overwrites `sub` if the stored version is still `expected_version`.
    pub async fn replace(
        &self,
        sub: &Subscription,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let item = self.encode_subscription(sub)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("version = :expected")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::VersionConflict(sub.subscription_id.clone()))
            }
            Err(err) => Err(self.dynamo_err("PutItem", err)),
        }
    }

    /// Up to `limit` subscriptions of `company_id`, newest first, after the
    /// sort key `after`, optionally only those with `status`.
    pub async fn list(
        &self,
        company_id: &str,
        status: Option<SubscriptionStatus>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page, StoreError> {
        let mut items = Vec::with_capacity(limit + 1);
        let mut start: Option<Item> = after.map(|sk| {
            HashMap::from([
                ("company_id".to_owned(), s(company_id)),
                ("subscription_id".to_owned(), s(sk)),
            ])
        });
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("company_id = :c AND begins_with(subscription_id, :p)")
                .expression_attribute_values(":c", s(company_id))
                .expression_attribute_values(":p", s(ID_PREFIX))
                .scan_index_forward(false)
                .limit(i32::try_from(limit + 1 - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if let Some(status) = status {
                query = query
                    .filter_expression("#status = :s")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":s", s(status.as_str()));
            }
            let out = query
                .send()
                .await
                .map_err(|e| self.dynamo_err("Query", e))?;
            for item in out.items.unwrap_or_default() {
                items.push(self.decode_item::<Subscription>(item)?);
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if items.len() > limit || start.is_none() {
                break;
            }
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, has_more })
    }

    /// A Query of `company_id`'s subscriptions that are not archived (active
    /// and disabled).
    fn not_archived(&self, company_id: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("company_id = :c AND begins_with(subscription_id, :p)")
            .filter_expression("#status <> :archived")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":c", s(company_id))
            .expression_attribute_values(":p", s(ID_PREFIX))
            .expression_attribute_values(":archived", s(SubscriptionStatus::Archived.as_str()))
    }

    /// Every subscription of `company_id` that receives events: active ones,
    /// and disabled ones (their events are parked until they are enabled).
    /// One Query, paged through.
    pub async fn list_receiving(&self, company_id: &str) -> Result<Vec<Subscription>, StoreError> {
        let mut all = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .not_archived(company_id)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.dynamo_err("Query", e))?;
            for item in out.items.unwrap_or_default() {
                all.push(self.decode_item::<Subscription>(item)?);
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok(all);
            }
        }
    }

    /// Archives the subscription `held` with `reason` in one conditional
    /// `UpdateItem` that touches only the status attributes (so a caller
    /// can be granted exactly that), bumping `version` so concurrent
    /// read-modify-writes notice. Returns it as stored, or `None` when it
    /// doesn't exist; an already archived one is left as is (and read).
    pub async fn archive(
        &self,
        held: &Subscription,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        let archived = self
            .update_if(held, &["probe_lane", "next_probe_at"], |u| {
                u.update_expression(
                    "SET #status = :archived, archived_at = :now, archived_reason = :reason, \
                     updated_at = :now, version = version + :one REMOVE probe_lane, next_probe_at",
                )
                .condition_expression("attribute_exists(subscription_id) AND #status <> :archived")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":archived", s(SubscriptionStatus::Archived.as_str()))
                .expression_attribute_values(":now", time_value(now))
                .expression_attribute_values(":reason", s(reason))
            })
            .await?;
        if archived.is_some() {
            return Ok(archived);
        }
        Ok(self
            .get(&held.company_id, &held.subscription_id)
            .await?
            .map(|sub| Updated { sub, whole: true }))
    }

    /// One page of every company's subscriptions (the whole table, for
    /// maintenance such as re-sealing secrets), after the key `after`.
    /// Returns the page and the key to continue after, if any.
    pub async fn scan_page(
        &self,
        after: Option<&SubscriptionKey>,
        limit: i32,
    ) -> Result<(Vec<Subscription>, Option<SubscriptionKey>), StoreError> {
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(subscription_id, :p)")
            .expression_attribute_values(":p", s(ID_PREFIX))
            .limit(limit)
            .set_exclusive_start_key(after.map(|k| {
                HashMap::from([
                    ("company_id".to_owned(), s(&k.company_id)),
                    ("subscription_id".to_owned(), s(&k.subscription_id)),
                ])
            }))
            .send()
            .await
            .map_err(|e| self.dynamo_err("Scan", e))?;
        let mut items = Vec::new();
        for item in out.items.unwrap_or_default() {
            items.push(self.decode_item::<Subscription>(item)?);
        }
        let next = out.last_evaluated_key.and_then(|k| {
            Some(SubscriptionKey {
                company_id: k.get("company_id")?.as_s().ok()?.clone(),
                subscription_id: k.get("subscription_id")?.as_s().ok()?.clone(),
            })
        });
        Ok((items, next))
    }

    /// Stores `sub`'s secrets as they are now (re-sealed under a newer key
    /// version) if the item is still at `sub.version`; touches nothing else
    /// and leaves `version` as is, since what the secrets open to is
    /// unchanged. `false` when the item changed meanwhile.
    pub async fn store_resealed_secrets(&self, sub: &Subscription) -> Result<bool, StoreError> {
        if sub.has_plaintext_secret() {
            return Err(StoreError::PlaintextSecret(sub.subscription_id.clone()));
        }
        let value = |secret: &crate::signing::sealed::StoredSecret| {
            serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(secret).map_err(|source| {
                StoreError::Mapping {
                    key: sub.subscription_id.clone(),
                    table: self.table.clone(),
                    source,
                }
            })
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("company_id", s(&sub.company_id))
            .key("subscription_id", s(&sub.subscription_id))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(sub.version))
            .expression_attribute_values(":secret", value(&sub.secret)?);
        update = match &sub.previous_secret {
            Some(prev) => update
                .update_expression("SET secret = :secret, previous_secret = :previous")
                .expression_attribute_values(":previous", value(prev)?),
            None => update.update_expression("SET secret = :secret"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(self.dynamo_err("UpdateItem", err)),
        }
    }

    /// One conditional `UpdateItem` on the subscription `held` that asks
    /// back only the attributes it wrote (`UPDATED_NEW`) and applies them,
    /// and the removal of `removed`, to `held`; `None` when the condition
    /// did not hold (or it does not exist). Every health write bumps
    /// `version`, so the API's read-modify-writes never overwrite it.
    async fn update_if(
        &self,
        held: &Subscription,
        removed: &[&str],
        build: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<Option<Updated>, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("company_id", s(&held.company_id))
            .key("subscription_id", s(&held.subscription_id))
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew);
        match build(request).send().await {
            Ok(out) => {
                let written = out.attributes.unwrap_or_default();
                let mut item = self.encode_item(&held.subscription_id, held)?;
                for name in removed {
                    item.remove(*name);
                }
                item.extend(written);
                let sub: Subscription = self.decode_item(item)?;
                let whole = sub.version == held.version + 1;
                Ok(Some(Updated { sub, whole }))
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(err) => Err(self.dynamo_err("UpdateItem", err)),
        }
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
            .client
            .update_item()
            .table_name(&self.table)
            .key("company_id", s(company_id))
            .key("subscription_id", s(subscription_id))
            .expression_attribute_values(":one", n(1));
        match build(request).send().await {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(self.dynamo_err("UpdateItem", err)),
        }
    }

    /// `failure` as the `last_failure` map attribute.
    fn failure_value(
        &self,
        subscription_id: &str,
        failure: &LastFailure,
    ) -> Result<AttributeValue, StoreError> {
        serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(failure).map_err(|source| {
            StoreError::Mapping {
                key: subscription_id.to_owned(),
                table: self.table.clone(),
                source,
            }
        })
    }

    /// Counts one failed attempt of `held` atomically (concurrent
    /// instances never lose a count) and starts the streak if none is
    /// running. Returns it with the counts as stored afterwards.
    pub async fn record_failure(
        &self,
        held: &Subscription,
        failure: &LastFailure,
    ) -> Result<Option<Updated>, StoreError> {
        let failure_value = self.failure_value(&held.subscription_id, failure)?;
        self.update_if(held, &[], |u| {
            u.update_expression(
                "SET consecutive_failures = if_not_exists(consecutive_failures, :zero) + :one, \
                 failing_since = if_not_exists(failing_since, :at), last_failure = :failure, \
                 version = version + :one",
            )
            .condition_expression("attribute_exists(subscription_id)")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":at", time_value(failure.at))
            .expression_attribute_values(":failure", failure_value)
        })
        .await
    }

    /// Opens the breaker of an active subscription whose breaker is closed,
    /// with the first probe due at `probe_at`. `Some` only for the call
    /// that opened it: concurrent instances open one breaker.
    pub async fn open_breaker(
        &self,
        held: &Subscription,
        probe_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        self.update_if(held, &[], |u| {
            u.update_expression(
                "SET breaker = :open, breaker_opened_at = :now, probe_attempts = :zero, \
                 probe_lane = :probe, next_probe_at = :probe_at, version = version + :one",
            )
            .condition_expression(
                "#status = :active AND (attribute_not_exists(breaker) OR breaker = :closed)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s(SubscriptionStatus::Active.as_str()))
            .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
            .expression_attribute_values(":closed", s(BreakerState::Closed.as_str()))
            .expression_attribute_values(":now", time_value(now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":probe", s(ProbeLane::Probe.as_str()))
            .expression_attribute_values(":probe_at", n(probe_at.timestamp_millis()))
        })
        .await
    }

    /// Ends a failure streak after a success while the breaker is closed.
    pub async fn record_success(
        &self,
        held: &Subscription,
        now: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        self.update_if(held, &["failing_since"], |u| {
            u.update_expression(
                "SET consecutive_failures = :zero, last_success_at = :now, \
                 version = version + :one REMOVE failing_since",
            )
            .condition_expression("attribute_not_exists(breaker) OR breaker = :closed")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", time_value(now))
            .expression_attribute_values(":closed", s(BreakerState::Closed.as_str()))
        })
        .await
    }

    /// Closes an open or half-open breaker after a successful probe: the
    /// streak ends and its parked events are due to drain after
    /// [`DRAIN_START_DELAY`]. Only an active subscription's. `Some` only
    /// for the call that closed it.
    pub async fn close_breaker(
        &self,
        held: &Subscription,
        now: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        let removed = [
            "failing_since",
            "breaker",
            "breaker_opened_at",
            "probe_attempts",
        ];
        self.update_if(held, &removed, |u| {
            u.update_expression(
                "SET consecutive_failures = :zero, last_success_at = :now, probe_lane = :drain, \
                 next_probe_at = :due, version = version + :one \
                 REMOVE failing_since, breaker, breaker_opened_at, probe_attempts",
            )
            .condition_expression("#status = :active AND breaker IN (:open, :half_open)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s(SubscriptionStatus::Active.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", time_value(now))
            .expression_attribute_values(":drain", s(ProbeLane::Drain.as_str()))
            .expression_attribute_values(":due", n((now + DRAIN_START_DELAY).timestamp_millis()))
            .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
            .expression_attribute_values(":half_open", s(BreakerState::HalfOpen.as_str()))
        })
        .await
    }

    /// Records a failed probe: the breaker stays open, the next probe is
    /// due at `probe_at`.
    pub async fn record_probe_failure(
        &self,
        held: &Subscription,
        failure: &LastFailure,
        probe_at: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        let failure_value = self.failure_value(&held.subscription_id, failure)?;
        self.update_if(held, &[], |u| {
            u.update_expression(
                "SET breaker = :open, next_probe_at = :probe_at, last_failure = :failure, \
                 consecutive_failures = if_not_exists(consecutive_failures, :zero) + :one, \
                 probe_attempts = if_not_exists(probe_attempts, :zero) + :one, \
                 version = version + :one",
            )
            .condition_expression("breaker IN (:open, :half_open) AND probe_lane = :probe")
            .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
            .expression_attribute_values(":half_open", s(BreakerState::HalfOpen.as_str()))
            .expression_attribute_values(":probe", s(ProbeLane::Probe.as_str()))
            .expression_attribute_values(":probe_at", n(probe_at.timestamp_millis()))
            .expression_attribute_values(":failure", failure_value)
            .expression_attribute_values(":zero", n(0))
        })
        .await
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

    /// Disables an active subscription whose breaker is open: status
    /// `disabled` with `reason`, out of the prober's index (its parked
    /// events stay until enabled or expired). `Some` only for the call
    /// that disabled it.
    pub async fn disable(
        &self,
        held: &Subscription,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Updated>, StoreError> {
        self.update_if(held, &["probe_lane", "next_probe_at"], |u| {
            u.update_expression(
                "SET #status = :disabled, disabled_at = :now, disabled_reason = :reason, \
                 breaker = :open, updated_at = :now, version = version + :one \
                 REMOVE probe_lane, next_probe_at",
            )
            .condition_expression("#status = :active AND probe_lane = :probe")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":disabled", s(SubscriptionStatus::Disabled.as_str()))
            .expression_attribute_values(":active", s(SubscriptionStatus::Active.as_str()))
            .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
            .expression_attribute_values(":probe", s(ProbeLane::Probe.as_str()))
            .expression_attribute_values(":now", time_value(now))
            .expression_attribute_values(":reason", s(reason))
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
                .client
                .query()
                .table_name(&self.table)
                .index_name(PROBE_INDEX)
                .key_condition_expression("probe_lane = :lane AND next_probe_at <= :now")
                .expression_attribute_values(":lane", s(lane.as_str()))
                .expression_attribute_values(":now", n(now.timestamp_millis()))
                .limit(i32::try_from(limit - found.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.dynamo_err("Query", e))?;
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
