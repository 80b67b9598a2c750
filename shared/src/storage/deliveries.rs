//! The delivery attempt log (DeliveriesTable).
//!
//! Every attempt has a key, its `attempt_id`:
//! `{subscription_id}#{unix millis, 13 digits}#{webhook_id}#{attempt:02}`.
//! A subscription's log is its attempts in descending key order (newest
//! first: by time, then webhook id, then attempt number), a page at a time;
//! the API's cursor is the last listed attempt's key. Partition key
//! `company_id`, sort key `attempt_id`, so every read is keyed by the
//! caller's company; items expire through the TTL attribute `expires_at`.
//!
//! # Packs
//!
//! An item is a *pack*: one or more attempts of one subscription, and its
//! sort key is the key of its newest attempt. The delivery function writes
//! one pack per (company, subscription) per invocation
//! ([`DeliveryLog::record_all`]), its attempts in the binary attribute
//! `pack` (format in [`pack`]: a tag byte, then a compact encoding,
//! deflated when that is smaller). Items written before packs existed hold
//! one attempt as plain attributes under that attempt's own key: a pack of
//! one in another shape, read alike. A pack is split when its attempts
//! would span more than [`PACK_SPAN`] or its item would pass
//! [`MAX_PACK_BYTES`]; its `expires_at` is its attempts' latest, so an
//! attempt is kept at least [`RETENTION`].
//!
//! Reading ([`DeliveryLog::list`]) queries the subscription's items in
//! descending key order and merges their attempts. Every attempt of an
//! item is at or below the item's key, and items come in descending key
//! order, so every attempt of the items not read yet is at or below the
//! next item's key: an attempt read is listed once it is above that key
//! (unique keys make it strictly above). Resuming after a cursor at time
//! `t`, the items that can hold attempts below the cursor have keys at
//! most `t` + [`PACK_SPAN`]: the query starts there and skips the attempts
//! at or above the cursor, so attempts of packs that straddle a cursor are
//! listed once, and cursors issued before packs existed keep working.
//!
//! # Write units
//!
//! DynamoDB bills one write unit per started KiB of an item: attribute
//! names and values (strings and binaries by their bytes, numbers about one
//! byte per two digits). A pack costs `company_id` and `attempt_id` (about
//! 110 bytes with 36-byte subscription and webhook ids), `expires_at` (16)
//! and `pack` (4 + the payload). An attempt answered with a 50-byte JSON
//! body is about 120 bytes of payload, 65 deflated (the 36-byte webhook id
//! and the body most of it; event type, error and a repeated body are
//! written once per pack), where its own item was about 420 bytes: ten
//! such attempts of one subscription are one item under 1 KiB, one write
//! unit where one item per attempt took ten. Ten attempts for three
//! subscriptions are three units; for ten subscriptions ten, as before.
//! The unit test `write_units` holds these bounds.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::error::StoreError;
use crate::storage::table::{Item, Table, key_of, n, s};

pub mod pack;

/// How long attempts are kept.
pub const RETENTION: Duration = Duration::days(30);
/// Longest response excerpt kept, in bytes.
pub const MAX_EXCERPT: usize = 1024;
/// Longest time between the newest and the oldest attempt of one pack: an
/// invocation's attempts that span more are split into several packs. Twice
/// the delivery function's 30 s timeout, so an invocation's attempts fit
/// one pack; the reader resuming after a cursor reads the items of this
/// span above it.
pub const PACK_SPAN: Duration = Duration::seconds(60);
/// Size above which a pack is split, in bytes of its item (DynamoDB's
/// rules): four write units. A single attempt larger than this (long
/// error text) is a pack of its own.
pub const MAX_PACK_BYTES: usize = 4096;

/// The attribute holding a pack's attempts.
const PACK: &str = "pack";
/// Items per `BatchWriteItem`, its limit.
const PER_CALL: usize = 25;

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

    /// Records one attempt, as a pack of one (`PutItem`).
    pub async fn record(&self, entry: &AttemptLog) -> Result<(), StoreError> {
        if !pack::has_own_key(entry) {
            return Err(self.foreign_key(entry));
        }
        let item = Pack::of(entry.company_id.clone(), &[entry]).item();
        self.table
            .put_item()
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.table.dynamo_err("PutItem", e))?;
        Ok(())
    }

    /// Records many attempts, packed per (company, subscription) (see the
    /// module docs), with `BatchWriteItem` (25 items per call, calls in
    /// parallel; items DynamoDB leaves unprocessed are retried with
    /// backoff). Returns how many attempts could not be written (an
    /// attempt whose `attempt_id` is not the key its fields make is one,
    /// logged).
    pub async fn record_all(&self, entries: &[AttemptLog]) -> usize {
        const ATTEMPTS: u32 = 4;
        let mut refused = 0;
        let valid: Vec<&AttemptLog> = entries
            .iter()
            .filter(|entry| {
                let ok = pack::has_own_key(entry);
                if !ok {
                    refused += 1;
                    tracing::error!(error = %self.foreign_key(entry), "attempt log entry refused");
                }
                ok
            })
            .collect();
        let packs = packs(&valid);
        let calls = packs.chunks(PER_CALL).map(|chunk| async move {
            let mut attempts: HashMap<(&str, &str), usize> = HashMap::new();
            let mut pending = Vec::with_capacity(chunk.len());
            for pack in chunk {
                *attempts
                    .entry((pack.company_id.as_str(), pack.key.as_str()))
                    .or_default() += pack.attempts;
                pending.push(
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(pack.item()))
                                .build()
                                .expect("the item is set"),
                        )
                        .build(),
                );
            }
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
                        "BatchWriteItem of attempt log packs failed"
                    ),
                }
            }
            pending
                .iter()
                .filter_map(|r| r.put_request.as_ref())
                .map(|put| {
                    let key = (
                        key_str(&put.item, "company_id"),
                        key_str(&put.item, "attempt_id"),
                    );
                    attempts.get(&key).copied().unwrap_or(1)
                })
                .sum::<usize>()
        });
        refused
            + futures::future::join_all(calls)
                .await
                .into_iter()
                .sum::<usize>()
    }

    /// Up to `limit` attempts of one subscription, newest first, below the
    /// attempt key `after` (see the module docs for how packs are merged).
    pub async fn list(
        &self,
        company_id: &str,
        subscription_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<AttemptPage, StoreError> {
        let prefix = format!("{subscription_id}#");
        let mut query = self
            .table
            .query()
            .expression_attribute_values(":c", s(company_id))
            .scan_index_forward(false);
        query = match after {
            None => query
                .key_condition_expression("company_id = :c AND begins_with(attempt_id, :p)")
                .expression_attribute_values(":p", s(&prefix)),
            Some(cursor) => {
                // Items whose newest attempt is within PACK_SPAN above the
                // cursor may hold attempts below it.
                let top = match pack::key_millis(subscription_id, cursor) {
                    Some(millis) => format!(
                        "{prefix}{:013}",
                        (millis + PACK_SPAN.num_milliseconds() + 1).min(9_999_999_999_999)
                    ),
                    None => cursor.to_owned(),
                };
                query
                    .key_condition_expression("company_id = :c AND attempt_id BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(&prefix))
                    .expression_attribute_values(":hi", s(&top))
            }
        };
        // Read but not listed yet, by key.
        let mut held: BTreeMap<String, AttemptLog> = BTreeMap::new();
        let mut items: Vec<AttemptLog> = Vec::with_capacity(limit.saturating_add(1).min(1000));
        // Each item holds at least one attempt: a page of `limit + 2`
        // items lists `limit + 1` attempts unless packs overlap; later
        // pages grow.
        let mut page = limit.saturating_add(2);
        let mut start = None;
        'pages: loop {
            let out = query
                .clone()
                .limit(i32::try_from(page).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.table.dynamo_err("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let key = key_of(&item, "attempt_id");
                while let Some(newest) = held.last_entry() {
                    if newest.key().as_str() <= key.as_str() {
                        break;
                    }
                    items.push(newest.remove());
                    if items.len() > limit {
                        break 'pages;
                    }
                }
                for attempt in self.unpack(company_id, subscription_id, &key, item)? {
                    if after.is_none_or(|cursor| attempt.attempt_id.as_str() < cursor) {
                        held.insert(attempt.attempt_id.clone(), attempt);
                    }
                }
            }
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => {
                    // The range is read: everything held follows in order.
                    while items.len() <= limit {
                        match held.pop_last() {
                            Some((_, attempt)) => items.push(attempt),
                            None => break,
                        }
                    }
                    break;
                }
            }
            page = page.saturating_mul(2).min(1000);
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(AttemptPage { items, has_more })
    }

    /// The attempts of the item `key`: a pack, or one attempt as plain
    /// attributes (items written before packs).
    fn unpack(
        &self,
        company_id: &str,
        subscription_id: &str,
        key: &str,
        mut item: Item,
    ) -> Result<Vec<AttemptLog>, StoreError> {
        match item.remove(PACK) {
            Some(AttributeValue::B(blob)) => {
                pack::unpack(company_id, subscription_id, key, blob.as_ref())
                    .map_err(|e| self.mapping_err(key, e))
            }
            Some(_) => Err(self.mapping_err(key, "the pack attribute is not binary")),
            None => Ok(vec![self.table.decode(key, item)?]),
        }
    }

    fn mapping_err(&self, key: &str, reason: impl std::fmt::Display) -> StoreError {
        self.table.mapping_err(
            key,
            <serde_dynamo::Error as serde::de::Error>::custom(reason),
        )
    }

    fn foreign_key(&self, entry: &AttemptLog) -> StoreError {
        self.mapping_err(
            &entry.attempt_id,
            "attempt_id is not the key of its subscription, time, webhook id and attempt",
        )
    }
}

/// The string attribute `name` of `item`, or "".
fn key_str<'a>(item: &'a Item, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v,
        _ => "",
    }
}

/// One item to write: attempts of one subscription of one company.
#[derive(Debug)]
struct Pack {
    company_id: String,
    /// Sort key: the newest attempt's key.
    key: String,
    /// The latest `expires_at` of its attempts.
    expires_at: i64,
    /// How many attempts it holds.
    attempts: usize,
    /// The `pack` attribute.
    blob: Vec<u8>,
}

impl Pack {
    /// The pack of `entries` of `company_id`: one subscription's, newest
    /// first, each with its own key.
    fn of(company_id: String, entries: &[&AttemptLog]) -> Self {
        let newest = entries[0];
        let mut encoder = pack::Encoder::new(pack::millis_of(newest));
        for entry in entries {
            encoder.push(entry);
        }
        Self {
            company_id,
            key: newest.attempt_id.clone(),
            expires_at: entries
                .iter()
                .map(|e| e.expires_at)
                .max()
                .unwrap_or_default(),
            attempts: entries.len(),
            blob: pack::seal(&encoder.payload()),
        }
    }

    fn item(&self) -> Item {
        Item::from([
            ("company_id".to_owned(), s(&self.company_id)),
            ("attempt_id".to_owned(), s(&self.key)),
            ("expires_at".to_owned(), n(self.expires_at)),
            (PACK.to_owned(), AttributeValue::B(self.blob.clone().into())),
        ])
    }

    /// The item's size by DynamoDB's rules.
    #[cfg(test)]
    fn size(&self) -> usize {
        fixed_size(&self.company_id, &self.key, self.expires_at) + self.blob.len()
    }

    /// Write units of the item.
    #[cfg(test)]
    fn write_units(&self) -> usize {
        self.size().div_ceil(1024)
    }
}

/// The size of a pack item but for its `pack` value.
fn fixed_size(company_id: &str, key: &str, expires_at: i64) -> usize {
    "company_id".len()
        + company_id.len()
        + "attempt_id".len()
        + key.len()
        + "expires_at".len()
        + pack::number_size(expires_at)
        + PACK.len()
}

/// `entries` (each with its own key) as packs: per (company,
/// subscription), newest first, split at [`PACK_SPAN`] and
/// [`MAX_PACK_BYTES`]. An attempt given twice is written once, the later
/// one.
fn packs(entries: &[&AttemptLog]) -> Vec<Pack> {
    let mut groups: BTreeMap<(&str, &str), Vec<&AttemptLog>> = BTreeMap::new();
    // Latest first, so the stable sort and dedup below keep the latest.
    for entry in entries.iter().rev() {
        groups
            .entry((&entry.company_id, &entry.subscription_id))
            .or_default()
            .push(entry);
    }
    let span = PACK_SPAN.num_milliseconds();
    let mut packs = Vec::new();
    for ((company_id, _), mut group) in groups {
        group.sort_by(|a, b| b.attempt_id.cmp(&a.attempt_id));
        group.dedup_by(|later, kept| later.attempt_id == kept.attempt_id);
        let mut start = 0;
        while start < group.len() {
            let newest = pack::millis_of(group[start]);
            let fixed = fixed_size(
                company_id,
                &group[start].attempt_id,
                group[start].expires_at,
            );
            let mut encoder = pack::Encoder::new(newest);
            let mut probe = pack::SizeProbe::default();
            let mut end = start;
            while end < group.len() {
                let entry = group[end];
                if end > start && newest - pack::millis_of(entry) > span {
                    break;
                }
                encoder.push(entry);
                let limit = MAX_PACK_BYTES.saturating_sub(fixed);
                let size = fixed + probe.size(encoder.bytes(), limit);
                if end > start && size > MAX_PACK_BYTES {
                    break;
                }
                end += 1;
            }
            packs.push(Pack::of(company_id.to_owned(), &group[start..end]));
            start = end;
        }
    }
    packs
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

    use crate::domain::message::webhook_id;
    use crate::domain::subscription::new_subscription_id;

    const T0: i64 = 1_795_341_600_000;

    /// An attempt of `sub` at `millis` (+ some nanoseconds, as `Utc::now`
    /// gives them) of the `i`-th event, answered as receivers commonly do:
    /// a 200 with a short JSON body naming the receipt.
    fn typical(company: &str, sub: &str, millis: i64, i: usize) -> AttemptLog {
        let at = DateTime::from_timestamp_millis(millis).unwrap()
            + Duration::nanoseconds(fastrand::i64(0..1_000_000));
        let wid = webhook_id(sub, &format!("job-{i}#completed"));
        AttemptLog {
            company_id: company.to_owned(),
            attempt_id: AttemptLog::attempt_id(sub, at, &wid, 1),
            subscription_id: sub.to_owned(),
            webhook_id: wid,
            event_type: ["job.completed", "job.started", "job.failed"][i % 3].to_owned(),
            attempt: 1,
            at,
            outcome: Outcome::Delivered,
            status_code: Some(200),
            error: None,
            duration_ms: fastrand::u64(40..400),
            response_excerpt: Some(format!(
                r#"{{"status":"accepted","id":"{}"}}"#,
                uuid::Uuid::new_v4()
            )),
            expires_at: (at + RETENTION).timestamp(),
        }
    }

    /// Ten messages of one invocation (started within 300 ms) for
    /// `subs` subscriptions in turn.
    fn batch(subs: usize) -> Vec<AttemptLog> {
        let subs: Vec<String> = (0..subs).map(|_| new_subscription_id()).collect();
        (0..10)
            .map(|i| {
                typical(
                    "acme-corp",
                    &subs[i % subs.len()],
                    T0 + fastrand::i64(0..300),
                    i,
                )
            })
            .collect()
    }

    fn refs(entries: &[AttemptLog]) -> Vec<&AttemptLog> {
        entries.iter().collect()
    }

    /// The attempts of `packs` as the reader sees them, in key order
    /// (newest first), with every pack's attempts at or below its key.
    fn read_back(packs: &[Pack]) -> Vec<AttemptLog> {
        let mut all = Vec::new();
        for p in packs {
            let sub = p.key.split('#').next().unwrap();
            let attempts = pack::unpack(&p.company_id, sub, &p.key, &p.blob).unwrap();
            assert_eq!(attempts.len(), p.attempts);
            assert_eq!(
                attempts[0].attempt_id, p.key,
                "the key is the newest attempt's"
            );
            assert!(attempts.iter().all(|a| a.attempt_id <= p.key));
            assert_eq!(
                p.expires_at,
                attempts.iter().map(|a| a.expires_at).max().unwrap()
            );
            all.extend(attempts);
        }
        all.sort_by(|a, b| b.attempt_id.cmp(&a.attempt_id));
        all
    }

    fn newest_first(entries: &[AttemptLog]) -> Vec<AttemptLog> {
        let mut sorted = entries.to_vec();
        sorted.sort_by(|a, b| b.attempt_id.cmp(&a.attempt_id));
        sorted
    }

    /// Write units per attempt of `entries` packed: sealed as written, and
    /// with the payload left uncompressed.
    fn units_per_attempt(entries: &[AttemptLog]) -> (f64, f64) {
        let packs = packs(&refs(entries));
        let sealed: usize = packs.iter().map(Pack::write_units).sum();
        let raw: usize = packs
            .iter()
            .map(|p| {
                let sub = p.key.split('#').next().unwrap();
                let attempts = pack::unpack(&p.company_id, sub, &p.key, &p.blob).unwrap();
                let mut encoder = pack::Encoder::new(pack::millis_of(&attempts[0]));
                attempts.iter().for_each(|a| encoder.push(a));
                (fixed_size(&p.company_id, &p.key, p.expires_at) + 1 + encoder.payload().len())
                    .div_ceil(1024)
            })
            .sum();
        let n = entries.len() as f64;
        (sealed as f64 / n, raw as f64 / n)
    }

    #[test]
    fn write_units() {
        // (b) Ten messages for one subscription: one item.
        let (sealed, raw) = units_per_attempt(&batch(1));
        assert!(
            sealed <= 0.3 && raw <= 0.3,
            "{sealed} {raw} WRU per attempt"
        );
        // (a) Ten messages across three subscriptions: three items.
        let (sealed, raw) = units_per_attempt(&batch(3));
        assert!(
            sealed <= 0.3 && raw <= 0.3,
            "{sealed} {raw} WRU per attempt"
        );
        // (c) Ten subscriptions: one item each, as an item per attempt was.
        assert_eq!(units_per_attempt(&batch(10)), (1.0, 1.0));
    }

    #[test]
    fn packs_round_trip_every_field() {
        let sub = new_subscription_id();
        let mut entries: Vec<AttemptLog> = (0..6)
            .map(|i| typical("acme", &sub, T0 + 7 * i as i64, i))
            .collect();
        entries[1].outcome = Outcome::Failed;
        entries[1].status_code = None;
        entries[1].error = Some("timeout".to_owned());
        entries[1].response_excerpt = None;
        entries[2].outcome = Outcome::Gone;
        entries[2].status_code = Some(410);
        entries[2].response_excerpt = Some("gone é ✓".to_owned());
        entries[3].expires_at = 42;
        entries[3].attempt = 123;
        entries[4].response_excerpt = entries[0].response_excerpt.clone();
        entries[4].duration_ms = u64::MAX;
        // A time before 1970 (key milliseconds 0) and one at the
        // pack's newest millisecond exactly.
        entries[5].at = DateTime::from_timestamp(-5, 123).unwrap();
        entries[0].at = DateTime::from_timestamp_millis(T0 + 35).unwrap();
        for e in &mut entries {
            e.attempt_id =
                AttemptLog::attempt_id(&e.subscription_id, e.at, &e.webhook_id, e.attempt);
        }
        // The pre-1970 attempt is more than PACK_SPAN older: its own pack.
        let packs = packs(&refs(&entries));
        assert_eq!(packs.len(), 2);
        assert_eq!(read_back(&packs), newest_first(&entries));
    }

    #[test]
    fn an_attempt_given_twice_is_packed_once_the_later() {
        let sub = new_subscription_id();
        let first = typical("acme", &sub, T0, 0);
        let mut again = first.clone();
        again.duration_ms = first.duration_ms + 1;
        let entries = [first, again.clone(), typical("acme", &sub, T0 + 1, 1)];
        let read = read_back(&packs(&refs(&entries)));
        assert_eq!(read.len(), 2);
        assert_eq!(read[1], again);
    }

    #[test]
    fn packs_are_split_at_the_span() {
        let sub = new_subscription_id();
        let span = PACK_SPAN.num_milliseconds();
        let entries: Vec<AttemptLog> = [0, span / 2, span, span + 1, 3 * span]
            .iter()
            .enumerate()
            .map(|(i, &ms)| typical("acme", &sub, T0 + ms, i))
            .collect();
        let packs = packs(&refs(&entries));
        // [3 span], [span + 1, span, span / 2], [0].
        assert_eq!(
            packs.iter().map(|p| p.attempts).collect::<Vec<_>>(),
            [1, 3, 1]
        );
        assert_eq!(read_back(&packs), newest_first(&entries));
    }

    #[test]
    fn packs_are_split_at_the_size_bound() {
        let sub = new_subscription_id();
        let entries: Vec<AttemptLog> = (0..30)
            .map(|i| {
                let mut e = typical("acme", &sub, T0 + i as i64, i);
                // Incompressible 1 KiB bodies.
                e.response_excerpt = Some(
                    std::iter::repeat_with(fastrand::alphanumeric)
                        .take(MAX_EXCERPT)
                        .collect(),
                );
                e
            })
            .collect();
        let packs = packs(&refs(&entries));
        assert!(packs.len() >= 8, "{} packs", packs.len());
        for p in &packs {
            assert!(p.size() <= MAX_PACK_BYTES, "{}", p.size());
        }
        assert_eq!(read_back(&packs), newest_first(&entries));

        // Bodies that compress: the bound is on the compressed size.
        let page = "<html><body><h1>502 Bad Gateway</h1><p>upstream unavailable</p>".repeat(16);
        let similar: Vec<AttemptLog> = entries
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.response_excerpt =
                    Some(format!("{}{}", &e.webhook_id, &page[..MAX_EXCERPT - 36]));
                e
            })
            .collect();
        let packed = super::packs(&refs(&similar));
        assert!(packed.len() < packs.len() / 2, "{} packs", packed.len());
        assert_eq!(read_back(&packed), newest_first(&similar));
    }

    #[test]
    fn companies_and_subscriptions_are_packed_apart() {
        let (a, b) = (new_subscription_id(), new_subscription_id());
        let entries = [
            typical("acme", &a, T0, 0),
            typical("globex", &a, T0, 1),
            typical("acme", &b, T0, 2),
            typical("acme", &a, T0 + 1, 3),
        ];
        let packs = packs(&refs(&entries));
        assert_eq!(packs.len(), 3);
        for p in &packs {
            let sub = p.key.split('#').next().unwrap();
            for attempt in pack::unpack(&p.company_id, sub, &p.key, &p.blob).unwrap() {
                let given = entries
                    .iter()
                    .find(|e| e.attempt_id == attempt.attempt_id && e.company_id == p.company_id)
                    .unwrap();
                assert_eq!(&attempt, given);
            }
        }
    }

    #[test]
    fn corrupt_packs_are_errors_not_panics() {
        let sub = new_subscription_id();
        let entries: Vec<AttemptLog> = (0..4)
            .map(|i| typical("acme", &sub, T0 + i, i as usize))
            .collect();
        let p = &packs(&refs(&entries))[0];
        let unpack = |blob: &[u8]| pack::unpack("acme", &sub, &p.key, blob);
        assert!(unpack(&p.blob).is_ok());
        let mut encoder = pack::Encoder::new(pack::millis_of(&entries[3]));
        entries.iter().rev().for_each(|e| encoder.push(e));
        let mut raw = vec![pack::RAW];
        raw.extend_from_slice(&encoder.payload());
        assert_eq!(unpack(&raw).unwrap().len(), 4);
        for blob in [&p.blob, &raw] {
            for cut in 0..blob.len() {
                assert!(unpack(&blob[..cut]).is_err(), "cut at {cut}");
            }
        }
        assert!(unpack(&[9, 1, 2]).is_err(), "unknown tag");
        assert!(
            pack::unpack("acme", &sub, "sub_x#1#x", &p.blob).is_err(),
            "bad key"
        );
        // A deflate bomb stops at the bound.
        let bomb = [&[pack::DEFLATE][..], &pack::deflate(&vec![0; 8 << 20])].concat();
        assert!(unpack(&bomb).is_err());
        for _ in 0..2000 {
            let mut noisy = raw.clone();
            let i = fastrand::usize(1..noisy.len());
            noisy[i] = fastrand::u8(..);
            let _ = unpack(&noisy);
            let random: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
                .take(fastrand::usize(0..64))
                .collect();
            let _ = unpack(&[&[pack::DEFLATE][..], &random].concat());
            let _ = unpack(&[&[pack::RAW][..], &random].concat());
        }
    }

    #[test]
    fn key_millis_are_the_digits_after_the_subscription() {
        assert_eq!(
            pack::key_millis("sub_1", "sub_1#1795341600000#evt_b#02"),
            Some(T0)
        );
        assert_eq!(
            pack::key_millis("sub_1", "sub_2#1795341600000#evt_b#02"),
            None
        );
        assert_eq!(
            pack::key_millis("sub_1", "sub_1#179534160000#evt_b#02"),
            None
        );
        assert_eq!(pack::key_millis("sub_1", "sub_1#17953416000x0#e"), None);
        assert_eq!(pack::key_millis("sub_1", "sub_1#"), None);
    }
}
