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
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::subscription::{ID_PREFIX, Subscription, SubscriptionStatus};
use crate::storage::table::{Item, Table, key_of, n, s};

mod create;
mod health;
pub mod receiving;

/// The stores' error, also named here beside the store most callers hold.
use crate::storage::error::StoreError;
pub use create::QUOTA_KEY;
pub use health::PROBE_INDEX;

const IDEMPOTENCY_PREFIX: &str = "idempotency#";

/// A time as the subscription items store it (serde's RFC 3339).
fn time_value(t: DateTime<Utc>) -> AttributeValue {
    AttributeValue::S(
        serde_json::to_value(t)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| t.to_rfc3339()),
    )
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
    table: Table,
}

impl SubscriptionStore {
    /// A store over `table` using `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        self.table.name()
    }

    /// The item of `sub`, refused when a secret of it is in the clear.
    fn encode_subscription(&self, sub: &Subscription) -> Result<Item, StoreError> {
        if sub.has_plaintext_secret() {
            return Err(StoreError::PlaintextSecret(sub.subscription_id.clone()));
        }
        self.table.encode(&sub.subscription_id, sub)
    }

    /// `item`, named by its sort key in errors.
    fn decode_item<T: for<'de> Deserialize<'de>>(&self, item: Item) -> Result<T, StoreError> {
        self.table.decode(&key_of(&item, "subscription_id"), item)
    }

    /// The subscription `subscription_id` of `company_id`, if it exists.
    pub async fn get(
        &self,
        company_id: &str,
        subscription_id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let out = self
            .table
            .get_item()
            .key("company_id", s(company_id))
            .key("subscription_id", s(subscription_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.table.dynamo_err("GetItem", e))?;
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
            .table
            .put_item()
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
            Err(err) => Err(self.table.dynamo_err("PutItem", err)),
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
                .table
                .query()
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
                .map_err(|e| self.table.dynamo_err("Query", e))?;
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
        self.table
            .query()
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
                .map_err(|e| self.table.dynamo_err("Query", e))?;
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
            .table
            .scan()
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
            .map_err(|e| self.table.dynamo_err("Scan", e))?;
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

    /// Stores `sub`'s secrets, header values and routing key as they are now (re-sealed
    /// under a newer key version) if the item is still at `sub.version`; touches nothing else
    /// and leaves `version` as is, since what the secrets open to is
    /// unchanged. `false` when the item changed meanwhile.
    pub async fn store_resealed_secrets(&self, sub: &Subscription) -> Result<bool, StoreError> {
        if sub.has_plaintext_secret() {
            return Err(StoreError::PlaintextSecret(sub.subscription_id.clone()));
        }
        let value = |secret: &crate::signing::sealed::StoredSecret| {
            self.table.attribute(&sub.subscription_id, secret)
        };
        let mut update = self
            .table
            .update_item()
            .key("company_id", s(&sub.company_id))
            .key("subscription_id", s(&sub.subscription_id))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(sub.version))
            .expression_attribute_values(":secret", value(&sub.secret)?);
        let mut set = vec!["secret = :secret".to_owned()];
        if let Some(prev) = &sub.previous_secret {
            set.push("previous_secret = :previous".to_owned());
            update = update.expression_attribute_values(":previous", value(prev)?);
        }
        // The v1a key pairs, sealed like the secrets.
        for (attribute, placeholder, key) in [
            ("signing_key", ":key", &sub.signing_key),
            (
                "previous_signing_key",
                ":previous_key",
                &sub.previous_signing_key,
            ),
        ] {
            if let Some(key) = key {
                set.push(format!("{attribute} = {placeholder}"));
                let key = self.table.attribute(&sub.subscription_id, key)?;
                update = update.expression_attribute_values(placeholder, key);
            }
        }
        if !sub.headers.is_empty() {
            set.push("#headers = :headers".to_owned());
            update = update.expression_attribute_names("#headers", "headers");
            update = update.expression_attribute_values(
                ":headers",
                self.table.attribute(&sub.subscription_id, &sub.headers)?,
            );
        }
        // A PagerDuty format's routing key, sealed like the secrets.
        if sub.format.key_version().is_some() {
            set.push("#format = :format".to_owned());
            update = update.expression_attribute_names("#format", "format");
            update = update.expression_attribute_values(
                ":format",
                self.table.attribute(&sub.subscription_id, &sub.format)?,
            );
        }
        let update = update.update_expression(format!("SET {}", set.join(", ")));
        Ok(self.table.update_if(update).await?.is_some())
    }
}
