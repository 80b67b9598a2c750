//! The ParkedEvents table: events held for an endpoint whose breaker is
//! open or that is disabled (`parked`), and events that used up their
//! retry schedule (`failed`), kept for the retention so the customer can
//! see and recover them.
//!
//! Layout (see `template.yaml`): partition key `subscription_id`, sort key
//! `event_key` = status, `#`, then the event's [position]: 13-digit epoch
//! milliseconds of the event's time, `#`, its sequence number padded to 40
//! digits (the stream record's, which grows with every change of one job),
//! `#`, its id (`webhook-id`). So each status is its own key range, in the
//! order the events happened and, for one job, exactly in the order of its
//! states; "the oldest parked event" and "how many are parked" are one
//! key-range read each, however many failed events the subscription holds.
//! The same event parked twice (a redelivered message, a re-park during a
//! drain) lands on the same item. `expires_at` is the table's TTL attribute.
//! Every item also holds its `company_id`, and every read is filtered by
//! it, so a subscription id alone never reaches another tenant's events.
//!
//! Items written before the status led the key (`{millis}#{key}`, status
//! only in an attribute) sort before every status range; reads include
//! that legacy range, filtered by status, until its items expire.
//!
//! [position]: ParkedEvent::position

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::Select;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::domain::message::{AttemptRecord, DeliveryMessage};
use crate::storage::error::StoreError;
use crate::storage::table::{Item, Table, key_of, s};

/// Digits of the sequence number in a position: DynamoDB stream sequence
/// numbers have 21 to 40.
pub const SEQUENCE_DIGITS: usize = 40;

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
    /// Sort key: status and [`ParkedEvent::position`] ([`event_key`]).
    pub event_key: String,
    /// Owning company.
    pub company_id: String,
    /// `webhook-id` of the event.
    #[serde(rename = "idempotency_key")]
    pub webhook_id: String,
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

/// `sequence` as [`SEQUENCE_DIGITS`] digits (zeros when it has none or is
/// not a decimal number of at most that many digits).
fn padded_sequence(sequence: Option<&str>) -> String {
    match sequence {
        Some(seq)
            if !seq.is_empty()
                && seq.len() <= SEQUENCE_DIGITS
                && seq.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{seq:0>SEQUENCE_DIGITS$}")
        }
        _ => "0".repeat(SEQUENCE_DIGITS),
    }
}

/// The position of an event that happened at `at`, `sequence`-th of its
/// source, with `webhook_id`: what orders a status range.
pub fn position(at: DateTime<Utc>, sequence: Option<&str>, webhook_id: &str) -> String {
    format!("{}#{}#{webhook_id}", key_at(at), padded_sequence(sequence))
}

/// The sort key of an event with `status` at `position`.
pub fn event_key(status: ParkedStatus, position: &str) -> String {
    format!("{}#{position}", status.as_str())
}

/// The smallest position at or after `at`.
pub fn key_at(at: DateTime<Utc>) -> String {
    format!("{:013}", at.timestamp_millis().max(0))
}

/// `~` sorts after every digit, letter and `#`.
const TOP: &str = "~";
/// The legacy range (`{millis}#{key}`) ends before `9~`.
const LEGACY_TOP: &str = "9~";

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
        let at = position(arrived_at, msg.sequence.as_deref(), &msg.webhook_id);
        Self {
            subscription_id: msg.subscription_id.clone(),
            event_key: event_key(status, &at),
            company_id: msg.company_id.clone(),
            webhook_id: msg.webhook_id.clone(),
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

    /// Where it stands among the subscription's events, whatever its
    /// status: `{millis}#{sequence}#{webhook id}`, comparable as text.
    /// Listings continue after a position.
    pub fn position(&self) -> String {
        match self.event_key.split_once('#') {
            Some((status, rest)) if ParkedStatus::parse(status).is_some() => rest.to_owned(),
            // A legacy key `{millis}#{key}`: no sequence number.
            Some((millis, key)) => format!("{millis}#{}#{key}", padded_sequence(None)),
            None => self.event_key.clone(),
        }
    }

    /// The same event with another status, under that status's key.
    pub fn with_status(&self, status: ParkedStatus) -> Self {
        Self {
            event_key: event_key(status, &self.position()),
            status,
            ..self.clone()
        }
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

/// One key range of a subscription's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    /// The events of one status.
    Status(ParkedStatus),
    /// Items written before the status led the key, filtered by status.
    Legacy(Option<ParkedStatus>),
}

impl Range {
    /// The ranges holding `status` (every status when `None`).
    fn holding(status: Option<ParkedStatus>) -> Vec<Self> {
        match status {
            Some(st) => vec![Self::Status(st), Self::Legacy(Some(st))],
            None => vec![
                Self::Status(ParkedStatus::Parked),
                Self::Status(ParkedStatus::Failed),
                Self::Legacy(None),
            ],
        }
    }

    /// The sort key at `position` in this range.
    fn key(self, position: &str) -> String {
        match self {
            Self::Status(st) => event_key(st, position),
            // Legacy keys have no sequence: an event with none sits at
            // `{millis}#{key}`; past one with a sequence, after every
            // legacy key of that millisecond.
            Self::Legacy(_) => {
                let mut parts = position.splitn(3, '#');
                let (millis, seq, key) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                    parts.next(),
                );
                match key {
                    Some(key) if seq.bytes().all(|b| b == b'0') => format!("{millis}#{key}"),
                    Some(_) => format!("{millis}#{TOP}"),
                    // A bare time bound.
                    None => position.to_owned(),
                }
            }
        }
    }

    /// Inclusive bounds of the range within the window of `query`.
    fn bounds(self, query: &ParkedQuery) -> (String, String) {
        let low = query.since.map(key_at);
        let high = query.until.map(key_at);
        match self {
            Self::Status(st) => (
                event_key(st, low.as_deref().unwrap_or("")),
                event_key(st, high.as_deref().unwrap_or(TOP)),
            ),
            Self::Legacy(_) => (
                low.unwrap_or_else(|| "0".to_owned()),
                high.unwrap_or_else(|| LEGACY_TOP.to_owned()),
            ),
        }
    }

    fn status_filter(self) -> Option<ParkedStatus> {
        match self {
            Self::Status(_) | Self::Legacy(None) => None,
            Self::Legacy(Some(st)) => Some(st),
        }
    }
}

/// The ParkedEvents table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ParkedEvents {
    table: Table,
}

impl ParkedEvents {
    /// The table `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        self.table.name()
    }

    /// Writes `event` (overwriting the same event parked before).
    pub async fn put(&self, event: &ParkedEvent) -> Result<(), StoreError> {
        self.table.put(&event.event_key, event).await
    }

    /// Moves an event whose stored message no longer parses out of the
    /// parked range: kept as `failed` for the customer to see, out of the
    /// way of the probe and the drain.
    pub async fn set_aside(&self, event: &ParkedEvent) -> Result<(), StoreError> {
        let failed = event.with_status(ParkedStatus::Failed);
        self.put(&failed).await?;
        if failed.event_key != event.event_key {
            self.delete(&event.subscription_id, &event.event_key)
                .await?;
        }
        Ok(())
    }

    /// Up to `limit` events of the subscription matching `query`, in
    /// `order`, after the position `after` ([`ParkedEvent::position`]).
    /// Each status is one key range, so a listing of one status reads only
    /// that status's events.
    pub async fn list(
        &self,
        company_id: &str,
        subscription_id: &str,
        query: &ParkedQuery,
        order: Order,
        limit: usize,
        after: Option<&str>,
    ) -> Result<ParkedPage, StoreError> {
        let mut items = Vec::new();
        for range in Range::holding(query.status) {
            let found = self
                .list_range(
                    company_id,
                    subscription_id,
                    range,
                    query,
                    order,
                    limit + 1,
                    after,
                )
                .await?;
            items.extend(found.into_iter().map(|e| (e.position(), e)));
        }
        match order {
            Order::OldestFirst => items.sort_by(|a, b| a.0.cmp(&b.0)),
            Order::NewestFirst => items.sort_by(|a, b| b.0.cmp(&a.0)),
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(ParkedPage {
            items: items.into_iter().map(|(_, e)| e).collect(),
            has_more,
        })
    }

    /// Up to `want` events of one range, in `order`, after `after`.
    #[allow(clippy::too_many_arguments)]
    async fn list_range(
        &self,
        company_id: &str,
        subscription_id: &str,
        range: Range,
        query: &ParkedQuery,
        order: Order,
        want: usize,
        after: Option<&str>,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        let (mut low, mut high) = range.bounds(query);
        // The key of `after` itself is skipped below: BETWEEN is inclusive.
        let after_key = after.map(|p| range.key(p));
        if let Some(k) = &after_key {
            match order {
                Order::OldestFirst if *k > low => low.clone_from(k),
                Order::NewestFirst if *k < high => high.clone_from(k),
                _ => {}
            }
        }
        if low > high {
            return Ok(Vec::new());
        }
        let mut items = Vec::with_capacity(want.min(1000));
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .table
                .query()
                .key_condition_expression("subscription_id = :s AND event_key BETWEEN :lo AND :hi")
                .expression_attribute_values(":s", s(subscription_id))
                .expression_attribute_values(":lo", s(&low))
                .expression_attribute_values(":hi", s(&high))
                .expression_attribute_values(":c", s(company_id))
                .scan_index_forward(order == Order::OldestFirst)
                .set_exclusive_start_key(start.take());
            // A status range holds only what is asked for: read what is
            // wanted. The legacy range is filtered by status, so it is read
            // in whole pages (1 MB each), not ten items a query.
            if let Range::Status(_) = range {
                request = request
                    .limit(i32::try_from((want + 1 - items.len()).max(10)).unwrap_or(i32::MAX));
            }
            request = match range.status_filter() {
                Some(status) => request
                    .filter_expression("company_id = :c AND #status = :st")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":st", s(status.as_str())),
                None => request.filter_expression("company_id = :c"),
            };
            let out = request
                .send()
                .await
                .map_err(|e| self.table.dynamo_err("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let key = key_of(&item, "event_key");
                if after_key.as_deref() == Some(key.as_str()) {
                    continue;
                }
                let event: ParkedEvent = self.table.decode(&key, item)?;
                // The sort key range is inclusive; `until` is exclusive.
                if query.until.is_some_and(|until| event.arrived_at >= until) {
                    continue;
                }
                items.push(event);
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if items.len() >= want || start.is_none() {
                break;
            }
        }
        items.truncate(want);
        Ok(items)
    }

    /// The oldest parked event of the subscription, if any: one read of the
    /// parked range (and of the legacy range while it holds items).
    pub async fn oldest_parked(
        &self,
        company_id: &str,
        subscription_id: &str,
    ) -> Result<Option<ParkedEvent>, StoreError> {
        let query = ParkedQuery {
            status: Some(ParkedStatus::Parked),
            ..ParkedQuery::default()
        };
        let page = self
            .list(
                company_id,
                subscription_id,
                &query,
                Order::OldestFirst,
                1,
                None,
            )
            .await?;
        Ok(page.items.into_iter().next())
    }

    /// How many events of the subscription are parked, counting at most
    /// `cap` (`Select=COUNT` queries of the parked range, paged).
    pub async fn count_parked(
        &self,
        company_id: &str,
        subscription_id: &str,
        cap: u64,
    ) -> Result<u64, StoreError> {
        let query = ParkedQuery::default();
        let mut count = 0u64;
        for range in Range::holding(Some(ParkedStatus::Parked)) {
            let (low, high) = range.bounds(&query);
            let mut start: Option<Item> = None;
            loop {
                let out = self
                    .table
                    .query()
                    .key_condition_expression(
                        "subscription_id = :s AND event_key BETWEEN :lo AND :hi",
                    )
                    .filter_expression("company_id = :c AND #status = :st")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":s", s(subscription_id))
                    .expression_attribute_values(":lo", s(&low))
                    .expression_attribute_values(":hi", s(&high))
                    .expression_attribute_values(":c", s(company_id))
                    .expression_attribute_values(":st", s(ParkedStatus::Parked.as_str()))
                    .select(Select::Count)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| self.table.dynamo_err("Query", e))?;
                count += u64::try_from(out.count).unwrap_or(0);
                start = out.last_evaluated_key.filter(|k| !k.is_empty());
                if count >= cap {
                    return Ok(cap);
                }
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(count)
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
        let parked_at = self.table.attribute(&event_key, &parked_at)?;
        let result = self
            .table
            .delete_item()
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
            Err(e) => Err(self.table.dynamo_err("DeleteItem", e)),
        }
    }

    /// Deletes one event.
    pub async fn delete(&self, subscription_id: &str, key: &str) -> Result<(), StoreError> {
        self.table
            .delete_item()
            .key("subscription_id", s(subscription_id))
            .key("event_key", s(key))
            .send()
            .await
            .map_err(|e| self.table.dynamo_err("DeleteItem", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(millis).unwrap()
    }

    #[test]
    fn positions_sort_by_time_then_sequence_and_windows_bound_them() {
        let t = ts(1_795_341_600_123);
        // One job's states in one millisecond: the sequence orders them,
        // whatever the random event ids say.
        let running = position(t, Some("9900000000000000000001"), "evt_f");
        let completed = position(t, Some("10000000000000000000002"), "evt_a");
        assert!(running < completed, "{running} < {completed}");
        let later = position(t + chrono::Duration::milliseconds(1), None, "evt_0");
        assert!(completed < later);
        assert!(key_at(t) <= running && later < key_at(t + chrono::Duration::seconds(1)));
        assert_eq!(
            running,
            format!("1795341600123#{:0>40}#evt_f", "9900000000000000000001")
        );
        assert_eq!(
            position(t, Some("not-a-number"), "evt_x"),
            position(t, None, "evt_x")
        );
    }

    #[test]
    fn each_status_is_its_own_range_after_the_legacy_one() {
        let t = ts(1_795_341_600_123);
        let at = position(t, Some("5"), "evt_a");
        let parked = event_key(ParkedStatus::Parked, &at);
        let failed = event_key(ParkedStatus::Failed, &at);
        let legacy = "9999999999999#evt_z";
        assert!(legacy < LEGACY_TOP && LEGACY_TOP < failed.as_str());
        let q = ParkedQuery::default();
        for (range, key) in [
            (Range::Status(ParkedStatus::Parked), &parked),
            (Range::Status(ParkedStatus::Failed), &failed),
        ] {
            let (lo, hi) = range.bounds(&q);
            assert!(lo <= *key && *key <= hi, "{key} in {lo}..{hi}");
        }
        let (lo, hi) = Range::Status(ParkedStatus::Parked).bounds(&q);
        assert!(
            !(lo <= failed && failed <= hi),
            "failed events are not in the parked range"
        );
        assert!(!(lo.as_str() <= legacy && legacy <= hi.as_str()));
    }

    #[test]
    fn an_event_keeps_its_position_across_statuses_and_from_legacy_keys() {
        let msg_body = crate::domain::message::test_event_message("acme", "sub_1", ts(0)).1;
        let mut msg = DeliveryMessage::parse(&msg_body).unwrap();
        msg.sequence = Some("42".to_owned());
        let e = ParkedEvent::of(
            &msg,
            ParkedStatus::Parked,
            Utc::now(),
            chrono::Duration::days(1),
        );
        assert!(e.event_key.starts_with("parked#"));
        let f = e.with_status(ParkedStatus::Failed);
        assert!(f.event_key.starts_with("failed#"));
        assert_eq!(e.position(), f.position());
        let legacy = ParkedEvent {
            event_key: "1795341600123#evt_b".to_owned(),
            ..e.clone()
        };
        assert_eq!(
            legacy.position(),
            position(ts(1_795_341_600_123), None, "evt_b")
        );
        // A listing resumed after a legacy event's position starts right
        // after its legacy key; after a sequenced one, past the whole
        // millisecond of legacy keys.
        let r = Range::Legacy(None);
        assert_eq!(r.key(&legacy.position()), "1795341600123#evt_b");
        assert_eq!(r.key(&e.position()), format!("{}#~", key_at(ts(0))));
    }
}
