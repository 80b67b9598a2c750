//! Creating subscriptions: the idempotency claim and the per-company quota.
//!
//! Each company's partition holds a counter item (sort key
//! [`QUOTA_KEY`]) with the number of its subscriptions that are not
//! archived. A create commits the subscription, the counter's increment
//! (conditional on staying within the quota) and, with an
//! `Idempotency-Key`, the claim in one transaction, so two creates racing
//! for the last slot cannot both win. Archiving (through the API or by the
//! delivery function on `410 Gone`) does not touch the counter: it can only
//! count high. When it reaches the quota, the create recounts with a
//! consistent Query and corrects it, conditional on nobody having changed
//! it since it was read, so it never counts low.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::Utc;

use super::{CreateOutcome, IDEMPOTENCY_PREFIX, IdempotencyClaim, IdempotencyRecord};
use crate::domain::subscription::Subscription;
use crate::storage::error::StoreError;
use crate::storage::subscriptions::SubscriptionStore;
use crate::storage::table::{Item, n, s};

/// Sort key of a company's quota counter item.
pub const QUOTA_KEY: &str = "quota#subscriptions";
/// The counter's attribute: subscriptions that are not archived (at most;
/// see the module documentation).
const COUNT: &str = "subscriptions";
/// The counter's revision, bumped by every move of it.
const REVISION: &str = "revision";
/// Transactions tried before a create that keeps losing races gives up.
const CREATE_ATTEMPTS: usize = 5;

/// The counter as read: its value and revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    count: u64,
    revision: u64,
}

/// How a create moves the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Add one if it stays within the quota.
    Increment,
    /// Set it to `to` if it is still at the revision read (absent: `None`).
    Correct { seen: Option<Counter>, to: u64 },
}

impl SubscriptionStore {
    /// Writes a new subscription if its company stays within `quota`
    /// subscriptions that are not archived. With an idempotency claim, the
    /// write and the claim commit together, or the earlier result is
    /// returned (even when the company is now at its quota).
    pub async fn create(
        &self,
        sub: &Subscription,
        claim: Option<&IdempotencyClaim>,
        quota: u64,
    ) -> Result<CreateOutcome, StoreError> {
        let company = sub.company_id.as_str();
        let item = self.encode_subscription(sub)?;
        for _ in 0..CREATE_ATTEMPTS {
            let slot = match self.counter(company).await? {
                Some(counter) if counter.count < quota => Slot::Increment,
                seen => {
                    let real = self.count_not_archived(company).await?;
                    if real >= quota {
                        if let Some(outcome) = self.earlier_outcome(company, claim).await? {
                            return Ok(outcome);
                        }
                        return Err(StoreError::QuotaExceeded {
                            company_id: company.to_owned(),
                            quota,
                        });
                    }
                    Slot::Correct { seen, to: real + 1 }
                }
            };
            let mut transaction = self.table.client().transact_write_items();
            if let Some(claim) = claim {
                transaction = transaction.transact_items(self.claim_put(sub, claim)?);
            }
            let result = transaction
                .transact_items(self.counter_update(company, slot, quota)?)
                .transact_items(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(self.table.name())
                                .set_item(Some(item.clone()))
                                .condition_expression("attribute_not_exists(subscription_id)")
                                .build()
                                .map_err(|e| self.table.dynamo_err("TransactWriteItems", e))?,
                        )
                        .build(),
                )
                .send()
                .await;
            match result {
                Ok(_) => return Ok(CreateOutcome::Created),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_transaction_canceled_exception()) =>
                {
                    // The claim was taken, or the counter moved: find out
                    // which, and otherwise try again with a fresh count.
                    if let Some(outcome) = self.earlier_outcome(company, claim).await? {
                        return Ok(outcome);
                    }
                }
                Err(err) => return Err(self.table.dynamo_err("TransactWriteItems", err)),
            }
        }
        Err(StoreError::VersionConflict(format!(
            "{company}/{QUOTA_KEY}"
        )))
    }

    /// The claim's record, written with the subscription.
    fn claim_put(
        &self,
        sub: &Subscription,
        claim: &IdempotencyClaim,
    ) -> Result<TransactWriteItem, StoreError> {
        let record = IdempotencyRecord {
            company_id: sub.company_id.clone(),
            subscription_id: format!("{IDEMPOTENCY_PREFIX}{}", claim.key),
            target_subscription_id: sub.subscription_id.clone(),
            request_hash: claim.request_hash.clone(),
            expires_at: claim.expires_at.timestamp(),
        };
        let put = Put::builder()
            .table_name(self.table.name())
            .set_item(Some(self.table.encode(&record.subscription_id, &record)?))
            .condition_expression("attribute_not_exists(subscription_id) OR expires_at < :now")
            .expression_attribute_values(
                ":now",
                AttributeValue::N(Utc::now().timestamp().to_string()),
            )
            .build()
            .map_err(|e| self.table.dynamo_err("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The counter's move for `slot`.
    fn counter_update(
        &self,
        company: &str,
        slot: Slot,
        quota: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(self.table.name())
            .key("company_id", s(company))
            .key("subscription_id", s(QUOTA_KEY))
            .expression_attribute_names("#count", COUNT)
            .expression_attribute_names("#revision", REVISION)
            .expression_attribute_values(":one", n(1));
        let update = match slot {
            Slot::Increment => update
                .update_expression("SET #count = #count + :one ADD #revision :one")
                .condition_expression("#count < :quota")
                .expression_attribute_values(":quota", n(quota)),
            Slot::Correct { seen: None, to } => update
                .update_expression("SET #count = :to ADD #revision :one")
                .condition_expression("attribute_not_exists(#count)")
                .expression_attribute_values(":to", n(to)),
            Slot::Correct {
                seen: Some(seen),
                to,
            } => update
                .update_expression("SET #count = :to ADD #revision :one")
                .condition_expression("#revision = :seen")
                .expression_attribute_values(":to", n(to))
                .expression_attribute_values(":seen", n(seen.revision)),
        };
        let update = update
            .build()
            .map_err(|e| self.table.dynamo_err("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The counter, `None` before the company's first create under quotas.
    async fn counter(&self, company: &str) -> Result<Option<Counter>, StoreError> {
        let out = self
            .table
            .get_item()
            .key("company_id", s(company))
            .key("subscription_id", s(QUOTA_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.table.dynamo_err("GetItem", e))?;
        let number =
            |item: &Item, name: &str| -> Option<u64> { item.get(name)?.as_n().ok()?.parse().ok() };
        Ok(out.item.and_then(|item| {
            Some(Counter {
                count: number(&item, COUNT)?,
                revision: number(&item, REVISION).unwrap_or(0),
            })
        }))
    }

    /// The company's subscriptions that are not archived, counted with a
    /// consistent Query.
    pub async fn count_not_archived(&self, company: &str) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut after = None;
        loop {
            let out = self
                .not_archived(company)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(after)
                .send()
                .await
                .map_err(|e| self.table.dynamo_err("Query", e))?;
            count += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => after = Some(key),
                _ => return Ok(count),
            }
        }
    }

    /// What an earlier request with this claim's key produced, if one did
    /// and its record has not expired.
    async fn earlier_outcome(
        &self,
        company_id: &str,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Option<CreateOutcome>, StoreError> {
        let Some(claim) = claim else {
            return Ok(None);
        };
        let key = format!("{IDEMPOTENCY_PREFIX}{}", claim.key);
        let record = self
            .table
            .get_item()
            .key("company_id", s(company_id))
            .key("subscription_id", s(&key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.table.dynamo_err("GetItem", e))?
            .item
            .map(|item| self.decode_item::<IdempotencyRecord>(item))
            .transpose()?;
        let Some(record) = record.filter(|r| r.expires_at >= Utc::now().timestamp()) else {
            return Ok(None);
        };
        if record.request_hash != claim.request_hash {
            return Ok(Some(CreateOutcome::KeyReused));
        }
        match self.get(company_id, &record.target_subscription_id).await? {
            Some(sub) => Ok(Some(CreateOutcome::Replayed(Box::new(sub)))),
            None => Err(StoreError::VersionConflict(record.target_subscription_id)),
        }
    }
}
