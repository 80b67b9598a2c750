//! The DynamoDB subscription store.
//!
//! Table layout (see `template.yaml`): partition key `company_id`, sort key
//! `subscription_id`. Every read and write is keyed by a company, so one
//! tenant can never address another's items. Besides subscriptions (sort keys
//! `sub_...`), the table holds create-idempotency records (sort keys
//! `idempotency#...`) that expire through the table's TTL attribute
//! `expires_at`; subscription queries only ever read the `sub_` range.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

use crate::domain::subscription::{ID_PREFIX, Subscription, SubscriptionStatus};

type Item = HashMap<String, AttributeValue>;

const IDEMPOTENCY_PREFIX: &str = "idempotency#";

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

    /// Writes a new subscription. With an idempotency claim, the write and
    /// the claim commit together, or the earlier result is returned.
    pub async fn create(
        &self,
        sub: &Subscription,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let item = self.encode_item(&sub.subscription_id, sub)?;
        let Some(claim) = claim else {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(subscription_id)")
                .send()
                .await
                .map_err(|e| self.dynamo_err("PutItem", e))?;
            return Ok(CreateOutcome::Created);
        };

        let record = IdempotencyRecord {
            company_id: sub.company_id.clone(),
            subscription_id: format!("{IDEMPOTENCY_PREFIX}{}", claim.key),
            target_subscription_id: sub.subscription_id.clone(),
            request_hash: claim.request_hash.clone(),
            expires_at: claim.expires_at.timestamp(),
        };
        let record_item = self.encode_item(&record.subscription_id, &record)?;
        let put_record = Put::builder()
            .table_name(&self.table)
            .set_item(Some(record_item))
            .condition_expression("attribute_not_exists(subscription_id) OR expires_at < :now")
            .expression_attribute_values(
                ":now",
                AttributeValue::N(Utc::now().timestamp().to_string()),
            )
            .build()
            .map_err(|e| self.dynamo_err("TransactWriteItems", e))?;
        let put_sub = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(subscription_id)")
            .build()
            .map_err(|e| self.dynamo_err("TransactWriteItems", e))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_record).build())
            .transact_items(TransactWriteItem::builder().put(put_sub).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                self.replay(&sub.company_id, claim).await
            }
            Err(err) => Err(self.dynamo_err("TransactWriteItems", err)),
        }
    }

    /// Resolves an idempotency key that is already taken.
    async fn replay(
        &self,
        company_id: &str,
        claim: &IdempotencyClaim,
    ) -> Result<CreateOutcome, StoreError> {
        let key = format!("{IDEMPOTENCY_PREFIX}{}", claim.key);
        let record = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("company_id", s(company_id))
            .key("subscription_id", s(&key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.dynamo_err("GetItem", e))?
            .item
            .map(|item| self.decode_item::<IdempotencyRecord>(item))
            .transpose()?;
        let Some(record) = record else {
            return Err(StoreError::VersionConflict(key));
        };
        if record.request_hash != claim.request_hash {
            return Ok(CreateOutcome::KeyReused);
        }
        match self.get(company_id, &record.target_subscription_id).await? {
            Some(sub) => Ok(CreateOutcome::Replayed(Box::new(sub))),
            None => Err(StoreError::VersionConflict(record.target_subscription_id)),
        }
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
        let item = self.encode_item(&sub.subscription_id, sub)?;
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

    /// Every active subscription of `company_id` (one Query, paged through).
    pub async fn list_active(&self, company_id: &str) -> Result<Vec<Subscription>, StoreError> {
        let mut all = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("company_id = :c AND begins_with(subscription_id, :p)")
                .filter_expression("#status = :s")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":c", s(company_id))
                .expression_attribute_values(":p", s(ID_PREFIX))
                .expression_attribute_values(":s", s(SubscriptionStatus::Active.as_str()))
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

    /// Archives the subscription with `reason` in one conditional
    /// `UpdateItem` that touches only the status attributes (so a caller
    /// can be granted exactly that), bumping `version` so concurrent
    /// read-modify-writes notice. Returns it as stored, or `None` when it
    /// doesn't exist; an already archived one is left as is.
    pub async fn archive(
        &self,
        company_id: &str,
        subscription_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let when = AttributeValue::S(
            serde_json::to_value(now)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| now.to_rfc3339()),
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("company_id", s(company_id))
            .key("subscription_id", s(subscription_id))
            .update_expression(
                "SET #status = :archived, archived_at = :now, archived_reason = :reason, \
                 updated_at = :now, version = version + :one",
            )
            .condition_expression("attribute_exists(subscription_id) AND #status = :active")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":archived", s(SubscriptionStatus::Archived.as_str()))
            .expression_attribute_values(":active", s(SubscriptionStatus::Active.as_str()))
            .expression_attribute_values(":now", when)
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out
                .attributes
                .map(|item| self.decode_item(item))
                .transpose(),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.get(company_id, subscription_id).await
            }
            Err(err) => Err(self.dynamo_err("UpdateItem", err)),
        }
    }
}
