//! The delivery attempt log (DeliveriesTable).
//!
//! Partition key `company_id`, sort key `attempt_id` =
//! `{subscription_id}#{unix millis, 13 digits}#{webhook_id}#{attempt}`,
//! so one subscription's attempts are one Query, newest first, and every
//! read is keyed by the caller's company. Items expire after 30 days through
//! the TTL attribute `expires_at`.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::to_item;

use crate::storage::error::StoreError;
use crate::storage::table::{Table, key_of, s};

/// How long attempts are kept.
pub const RETENTION: Duration = Duration::days(30);
/// Longest response excerpt kept, in bytes.
pub const MAX_EXCERPT: usize = 1024;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx response.
    Delivered,
    /// Anything else; retried or dead-lettered.
    Failed,
    /// 410 Gone: the subscription was archived.
    Gone,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptLog {
    /// Owning company (partition key).
    pub company_id: String,
    /// Sort key, see the module docs.
    pub attempt_id: String,
    /// Target subscription.
    pub subscription_id: String,
    /// The event's id (`webhook-id`).
    #[serde(rename = "idempotency_key")]
    pub webhook_id: String,
    /// The event type.
    pub event_type: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When the attempt started.
    pub at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// HTTP status, when a response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Error class when no response arrived (`timeout`, `connect`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time to the response (or the error), in milliseconds.
    pub duration_ms: u64,
    /// The start of the response body, at most [`MAX_EXCERPT`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_excerpt: Option<String>,
    /// TTL (unix seconds).
    pub expires_at: i64,
}

impl AttemptLog {
    /// The sort key for an attempt.
    pub fn attempt_id(
        subscription_id: &str,
        at: DateTime<Utc>,
        webhook_id: &str,
        attempt: u32,
    ) -> String {
        format!(
            "{subscription_id}#{:013}#{webhook_id}#{attempt:02}",
            at.timestamp_millis().max(0)
        )
    }
}

/// The start of `body` as text, cut at a character boundary.
pub fn excerpt(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_EXCERPT)]);
    let mut end = text.len().min(MAX_EXCERPT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_owned())
}

/// A page of attempts.
#[derive(Debug)]
pub struct AttemptPage {
    /// Attempts, newest first.
    pub items: Vec<AttemptLog>,
    /// Whether more follow.
    pub has_more: bool,
}

/// The attempt log in DynamoDB.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    table: Table,
}

impl DeliveryLog {
    /// A log over `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    /// Records one attempt.
    pub async fn record(&self, entry: &AttemptLog) -> Result<(), StoreError> {
        self.table.put(&entry.attempt_id, entry).await
    }

    /// Records many attempts with `BatchWriteItem` (25 per call, calls in
    /// parallel; items DynamoDB leaves unprocessed are retried with
    /// backoff). Returns how many could not be written.
    pub async fn record_all(&self, entries: &[AttemptLog]) -> usize {
        const PER_CALL: usize = 25;
        const ATTEMPTS: u32 = 4;
        let calls = entries.chunks(PER_CALL).map(|chunk| async move {
            let mut pending = Vec::with_capacity(chunk.len());
            for entry in chunk {
                match to_item(entry) {
                    Ok(item) => pending.push(
                        WriteRequest::builder()
                            .put_request(
                                PutRequest::builder()
                                    .set_item(Some(item))
                                    .build()
                                    .expect("the item is set"),
                            )
                            .build(),
                    ),
                    Err(e) => tracing::error!(
                        attempt_id = %entry.attempt_id,
                        error = %e,
                        "attempt log entry could not be mapped"
                    ),
                }
            }
            let mut unmapped = chunk.len() - pending.len();
            for attempt in 0..ATTEMPTS {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                match self
                    .table
                    .client()
                    .batch_write_item()
                    .request_items(self.table.name(), pending.clone())
                    .send()
                    .await
                {
                    Ok(out) => {
                        pending = out
                            .unprocessed_items
                            .and_then(|mut u| u.remove(self.table.name()))
                            .unwrap_or_default();
                    }
                    Err(e) => tracing::warn!(
                        table = %self.table.name(),
                        error = %DisplayErrorContext(e),
                        "BatchWriteItem of attempt log entries failed"
                    ),
                }
            }
            unmapped += pending.len();
            unmapped
        });
        futures::future::join_all(calls).await.into_iter().sum()
    }

    /// Up to `limit` attempts of one subscription, newest first, after the
    /// sort key `after`.
    pub async fn list(
        &self,
        company_id: &str,
        subscription_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<AttemptPage, StoreError> {
        let start = after.map(|sk| {
            HashMap::from([
                ("company_id".to_owned(), s(company_id)),
                ("attempt_id".to_owned(), s(sk)),
            ])
        });
        let out = self
            .table
            .query()
            .key_condition_expression("company_id = :c AND begins_with(attempt_id, :p)")
            .expression_attribute_values(":c", s(company_id))
            .expression_attribute_values(":p", s(&format!("{subscription_id}#")))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| self.table.dynamo_err("Query", e))?;
        let mut items = Vec::new();
        for item in out.items.unwrap_or_default() {
            let key = key_of(&item, "attempt_id");
            items.push(self.table.decode(&key, item)?);
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(AttemptPage { items, has_more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_sort_by_time_within_a_subscription() {
        let t0 = DateTime::from_timestamp_millis(1_795_341_600_000).unwrap();
        let a = AttemptLog::attempt_id("sub_1", t0, "evt_b", 2);
        let b = AttemptLog::attempt_id("sub_1", t0 + Duration::milliseconds(1), "evt_a", 1);
        assert!(a < b);
        assert!(a.starts_with("sub_1#1795341600000#evt_b#02"));
    }

    #[test]
    fn excerpts_are_bounded_and_valid_text() {
        assert_eq!(excerpt(b""), None);
        let long = "é".repeat(MAX_EXCERPT);
        let e = excerpt(long.as_bytes()).unwrap();
        assert!(e.len() <= MAX_EXCERPT);
        assert_eq!(excerpt(b"ok"), Some("ok".to_owned()));
    }
}
