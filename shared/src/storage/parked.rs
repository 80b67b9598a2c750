//! The ParkedEvents table: events held for an endpoint whose breaker is
//! open or that is disabled (`parked`), and events that used up their
//! retry schedule (`failed`), kept for the retention so the customer can
//! see and recover them.
//!
//! Layout (see `template.yaml`): partition key `subscription_id`, sort key
//! `event_key` = 13-digit epoch milliseconds of the event's time, `#`, its
//! idempotency key: a subscription's events in arrival order, and the same
//! event parked twice (a redelivered message, a re-park during a drain)
//! lands on the same item. `expires_at` is the table's TTL attribute.
//! Every item also holds its `company_id`, and every read is filtered by
//! it, so a subscription id alone never reaches another tenant's events.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

use crate::delivery::message::{AttemptRecord, DeliveryMessage};
use crate::storage::subscriptions::StoreError;

type Item = HashMap<String, AttributeValue>;

/// Why an event is in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParkedStatus {
    /// Held while the breaker is open or the subscription disabled; drained
    /// when the endpoint recovers or is enabled.
    Parked,
    /// Every attempt of the schedule failed while the breaker stayed closed.
    Failed,
}

impl ParkedStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Parked => "parked",
            Self::Failed => "failed",
        }
    }

    /// The status named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "parked" => Some(Self::Parked),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One parked or failed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedEvent {
    /// Partition key.
    pub subscription_id: String,
    /// Sort key: arrival time and idempotency key ([`event_key`]).
    pub event_key: String,
    /// Owning company.
    pub company_id: String,
    /// `webhook-id` of the event.
    pub idempotency_key: String,
    /// Event type.
    pub event_type: String,
    /// Parked or failed.
    pub status: ParkedStatus,
    /// The event's time (its payload `timestamp`).
    pub arrived_at: DateTime<Utc>,
    /// When it was written here.
    pub parked_at: DateTime<Utc>,
    /// Attempts made before it was parked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
    /// The delivery message, as it goes back on the DeliveryQueue.
    pub message: String,
    /// TTL (epoch seconds): end of the retention.
    pub expires_at: i64,
}

/// The sort key of an event that arrived at `at` with `idempotency_key`.
pub fn event_key(at: DateTime<Utc>, idempotency_key: &str) -> String {
    format!("{:013}#{idempotency_key}", at.timestamp_millis().max(0))
}

/// The smallest sort key at or after `at`.
pub fn key_at(at: DateTime<Utc>) -> String {
    format!("{:013}", at.timestamp_millis().max(0))
}

impl ParkedEvent {
    /// `msg` parked (or failed) at `now`, kept for `retention`.
    pub fn of(
        msg: &DeliveryMessage,
        status: ParkedStatus,
        now: DateTime<Utc>,
        retention: chrono::Duration,
    ) -> Self {
        let arrived_at = msg.event_time().unwrap_or(now);
        let message = msg.clone().redriven();
        Self {
            subscription_id: msg.subscription_id.clone(),
            event_key: event_key(arrived_at, &msg.idempotency_key),
            company_id: msg.company_id.clone(),
            idempotency_key: msg.idempotency_key.clone(),
            event_type: msg.event_type.clone(),
            status,
            arrived_at,
            parked_at: now,
            attempts: msg.history.clone(),
            message: message.to_body(),
            expires_at: (now + retention).timestamp(),
        }
    }

    /// The message to put back on the DeliveryQueue: a first attempt
    /// (history kept), `None` if the stored message no longer parses.
    pub fn requeued(&self) -> Option<DeliveryMessage> {
        DeliveryMessage::parse(&self.message).map(DeliveryMessage::redriven)
    }
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ParkedQuery {
    /// Only this status.
    pub status: Option<ParkedStatus>,
    /// Events that arrived at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events that arrived before this time.
    pub until: Option<DateTime<Utc>>,
}

/// One page of events.
#[derive(Debug)]
pub struct ParkedPage {
    /// Events in the order asked for.
    pub items: Vec<ParkedEvent>,
    /// Whether more follow the last one.
    pub has_more: bool,
}

/// Order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first (drain, recover).
    OldestFirst,
    /// Newest first (the API's listing).
    NewestFirst,
}

/// The ParkedEvents table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ParkedEvents {
    client: Client,
    table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl ParkedEvents {
    /// The table `table` through `client`.
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

    fn err<E: std::error::Error>(&self, operation: &'static str, e: E) -> StoreError {
        StoreError::Dynamo {
            operation,
            table: self.table.clone(),
            message: DisplayErrorContext(e).to_string(),
        }
    }

    fn mapping(&self, key: &str, source: serde_dynamo::Error) -> StoreError {
        StoreError::Mapping {
            key: key.to_owned(),
            table: self.table.clone(),
            source,
        }
    }

    /// Writes `event` (overwriting the same event parked before).
    pub async fn put(&self, event: &ParkedEvent) -> Result<(), StoreError> {
        let item: Item = to_item(event).map_err(|e| self.mapping(&event.event_key, e))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.err("PutItem", e))?;
        Ok(())
    }

    /// Up to `limit` events of the subscription matching `query`, in
    /// `order`, after the sort key `after`.
    pub async fn list(
        &self,
        company_id: &str,
        subscription_id: &str,
        query: &ParkedQuery,
        order: Order,
        limit: usize,
        after: Option<&str>,
    ) -> Result<ParkedPage, StoreError> {
        let low = query.since.map_or_else(|| "0".to_owned(), key_at);
        // `~` sorts after every digit and `#`: the whole last millisecond.
        let high = query.until.map_or_else(|| "~".to_owned(), key_at);
        let mut items = Vec::with_capacity(limit + 1);
        let mut start: Option<Item> = after.map(|k| {
            HashMap::from([
                ("subscription_id".to_owned(), s(subscription_id)),
                ("event_key".to_owned(), s(k)),
            ])
        });
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("subscription_id = :s AND event_key BETWEEN :lo AND :hi")
                .expression_attribute_values(":s", s(subscription_id))
                .expression_attribute_values(":lo", s(&low))
                .expression_attribute_values(":hi", s(&high))
                .expression_attribute_values(":c", s(company_id))
                .scan_index_forward(order == Order::OldestFirst)
                .limit(i32::try_from((limit + 1 - items.len()).max(10)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            request = match query.status {
                Some(status) => request
                    .filter_expression("company_id = :c AND #status = :st")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":st", s(status.as_str())),
                None => request.filter_expression("company_id = :c"),
            };
            let out = request.send().await.map_err(|e| self.err("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let key = match item.get("event_key") {
                    Some(AttributeValue::S(k)) => k.clone(),
                    _ => String::from("?"),
                };
                let event: ParkedEvent = from_item(item).map_err(|e| self.mapping(&key, e))?;
                // The sort key range is inclusive; `until` is exclusive.
                if query.until.is_some_and(|until| event.arrived_at >= until) {
                    continue;
                }
                items.push(event);
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if items.len() > limit || start.is_none() {
                break;
            }
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(ParkedPage { items, has_more })
    }

    /// How many events of the subscription are parked, counting at most
    /// `cap` (a `Select=COUNT` query, paged).
    pub async fn count_parked(
        &self,
        company_id: &str,
        subscription_id: &str,
        cap: u64,
    ) -> Result<u64, StoreError> {
        let mut count = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("subscription_id = :s")
                .filter_expression("company_id = :c AND #status = :st")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":s", s(subscription_id))
                .expression_attribute_values(":c", s(company_id))
                .expression_attribute_values(":st", s(ParkedStatus::Parked.as_str()))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Query", e))?;
            count += u64::try_from(out.count).unwrap_or(0);
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if count >= cap || start.is_none() {
                return Ok(count.min(cap));
            }
        }
    }

    /// Deletes `events` (after they were sent back to the DeliveryQueue),
    /// each only if it is still the copy that was read: an event parked
    /// again meanwhile (its breaker reopened and the re-sent copy was
    /// parked under the same key, with a new `parked_at`) stays. Returns
    /// how many could not be deleted for another reason; they are sent
    /// again later, with the same `webhook-id`.
    pub async fn delete_sent(&self, events: &[&ParkedEvent]) -> usize {
        // Owned items into an async fn: a closure over borrowed ones makes
        // the future not `Send` (rust-lang/rust#102211).
        let owned: Vec<(String, String, DateTime<Utc>)> = events
            .iter()
            .map(|e| (e.subscription_id.clone(), e.event_key.clone(), e.parked_at))
            .collect();
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(owned)
            .map(|(sub, key, parked_at)| self.delete_unchanged(sub, key, parked_at))
            .buffer_unordered(16)
            .collect()
            .await;
        results
            .into_iter()
            .filter_map(Result::err)
            .inspect(|e| tracing::error!(error = %e, "parked event not deleted"))
            .count()
    }

    /// Deletes the event if its `parked_at` is still `parked_at`.
    async fn delete_unchanged(
        &self,
        subscription_id: String,
        event_key: String,
        parked_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let parked_at = serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(parked_at)
            .map_err(|e| self.mapping(&event_key, e))?;
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("subscription_id", s(&subscription_id))
            .key("event_key", s(&event_key))
            .condition_expression("parked_at = :parked_at")
            .expression_attribute_values(":parked_at", parked_at)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err("DeleteItem", e)),
        }
    }

    /// Deletes one event.
    pub async fn delete(&self, subscription_id: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("subscription_id", s(subscription_id))
            .key("event_key", s(key))
            .send()
            .await
            .map_err(|e| self.err("DeleteItem", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_arrival_and_windows_bound_them() {
        let t = DateTime::from_timestamp_millis(1_795_341_600_123).unwrap();
        let a = event_key(t, "evt_b");
        let b = event_key(t + chrono::Duration::milliseconds(1), "evt_a");
        assert!(a < b);
        assert!(key_at(t) <= a && a < key_at(t + chrono::Duration::milliseconds(1)));
        assert!(a.as_str() < "~");
        assert_eq!(a, "1795341600123#evt_b");
    }
}
