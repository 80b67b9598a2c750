//! The packed attempt log against the local AWS emulator: the delivery
//! function writes one item per (company, subscription, invocation) holding
//! that invocation's attempts ([`DeliveryLog::record_all`]); reading merges
//! them back into one log, newest first, paged with per-attempt cursors,
//! together with items of one attempt written before packs existed.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration};
use shared::domain::subscription::new_subscription_id;
use shared::storage::deliveries::{
    AttemptLog, DeliveryLog, MAX_EXCERPT, MAX_PACK_BYTES, Outcome, PACK_SPAN, RETENTION,
};
use shared::storage::table::{Item, Table};
use test_kit::aws_proxy::AwsProxy;
use test_kit::emulator;
use test_kit::metering::{Dimension, Meter};

use crate::common::Fixture;

const T0: i64 = 1_795_341_600_000;

/// Attempt `n` of `webhook_id` for `sub` at `millis` (plus nanoseconds, as
/// clocks give them); outcomes vary with `n`.
fn attempt(company: &str, sub: &str, millis: i64, webhook_id: &str, n: u32) -> AttemptLog {
    let at = DateTime::from_timestamp_millis(millis).unwrap()
        + Duration::nanoseconds(fastrand::i64(0..1_000_000));
    let (outcome, status_code, error, response_excerpt) = match n % 3 {
        0 => (Outcome::Delivered, Some(200), None, Some("ok".to_owned())),
        1 => (Outcome::Failed, None, Some("timeout".to_owned()), None),
        _ => (
            Outcome::Failed,
            Some(503),
            None,
            Some(format!("busy {webhook_id}")),
        ),
    };
    AttemptLog {
        company_id: company.to_owned(),
        attempt_id: AttemptLog::attempt_id(sub, at, webhook_id, n),
        subscription_id: sub.to_owned(),
        webhook_id: webhook_id.to_owned(),
        event_type: "job.completed".to_owned(),
        attempt: n,
        at,
        outcome,
        status_code,
        error,
        duration_ms: fastrand::u64(1..30_000),
        response_excerpt,
        expires_at: (at + RETENTION).timestamp(),
    }
}

fn newest_first(entries: &[AttemptLog]) -> Vec<AttemptLog> {
    let mut sorted = entries.to_vec();
    sorted.sort_by(|a, b| b.attempt_id.cmp(&a.attempt_id));
    sorted
}

fn ids(entries: &[AttemptLog]) -> Vec<String> {
    entries.iter().map(|a| a.attempt_id.clone()).collect()
}

/// Every page of `sub`'s log with `limit`, each page resuming after the
/// last attempt of the one before, as the API does; checks each page's
/// size against `has_more`.
async fn walk(log: &DeliveryLog, company: &str, sub: &str, limit: usize) -> Vec<AttemptLog> {
    let mut all: Vec<AttemptLog> = Vec::new();
    loop {
        let after = all.last().map(|a| a.attempt_id.clone());
        let page = log
            .list(company, sub, limit, after.as_deref())
            .await
            .unwrap();
        if page.has_more {
            assert_eq!(page.items.len(), limit, "a page that has more is full");
        } else {
            assert!(page.items.len() <= limit);
        }
        let done = !page.has_more;
        all.extend(page.items);
        if done {
            return all;
        }
    }
}

/// Walks `sub`'s log at several page sizes and holds each walk to
/// `expected`, newest first, every value as written.
async fn assert_walks(log: &DeliveryLog, company: &str, sub: &str, expected: &[AttemptLog]) {
    let expected = newest_first(expected);
    for limit in [1, 2, 3, 4, 7, 10, 100] {
        let walked = walk(log, company, sub, limit).await;
        assert_eq!(
            ids(&walked),
            ids(&expected),
            "limit {limit}: every attempt once, newest first"
        );
        assert_eq!(walked, expected, "limit {limit}: the values as written");
    }
}

/// The items of `sub` in `company`'s partition, newest key first.
async fn items(f: &Fixture, company: &str, sub: &str) -> Vec<Item> {
    emulator::dynamodb()
        .await
        .query()
        .table_name(&f.config.deliveries_table)
        .key_condition_expression("company_id = :c AND begins_with(attempt_id, :p)")
        .expression_attribute_values(":c", AttributeValue::S(company.to_owned()))
        .expression_attribute_values(":p", AttributeValue::S(format!("{sub}#")))
        .scan_index_forward(false)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
}

fn string<'a>(item: &'a Item, name: &str) -> &'a str {
    item[name].as_s().unwrap()
}

/// An item's size by DynamoDB's rules.
fn size(item: &Item) -> usize {
    item.iter()
        .map(|(name, v)| {
            name.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    // One byte per two significant digits, plus one.
                    AttributeValue::N(n) => {
                        let digits = n.trim_start_matches('-');
                        let significant = digits.trim_start_matches('0').trim_end_matches('0');
                        significant.len().max(1).div_ceil(2) + 1
                    }
                    AttributeValue::B(b) => b.as_ref().len(),
                    other => panic!("unexpected attribute {other:?}"),
                }
        })
        .sum()
}

/// `company`'s `GET /webhooks/{id}/deliveries` page by page with `limit`:
/// the attempt ids.
async fn walk_api(f: &Fixture, company: &str, id: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/webhooks/{id}/deliveries?limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = f.get(company, &path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        ids.extend(
            r.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_owned()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn overlapping_packs_list_every_attempt_once_newest_first_at_any_page_size() {
    let f = Fixture::new().await;
    let id = f.create_id("acme").await;
    let other = new_subscription_id();
    // Eight invocations running at once: their attempts interleave in
    // time, many on the same millisecond (ties ordered by webhook id, then
    // attempt number), some events' attempts 1 and 2 in different
    // invocations.
    let mut expected = Vec::new();
    for k in 0..8u32 {
        let mut invocation = Vec::new();
        for j in 0..(3 + k as usize % 5) {
            let millis = T0 + ((k as i64 * 7 + j as i64 * 3) % 25) * 200;
            let event = format!("evt_{}", (k as usize * 5 + j) % 17);
            invocation.push(attempt("acme", &id, millis, &event, 1 + k % 2));
            invocation.push(attempt("acme", &other, millis, &event, 1));
        }
        assert_eq!(f.log.record_all(&invocation).await, 0);
        expected.extend(invocation.into_iter().filter(|a| a.subscription_id == id));
    }
    assert_eq!(expected.len(), 37);

    // One item per invocation, keyed by its newest attempt.
    let stored = items(&f, "acme", &id).await;
    assert_eq!(stored.len(), 8, "packed: one item per invocation");
    assert!(stored.iter().all(|i| i.contains_key("pack")));

    assert_walks(&f.log, "acme", &id, &expected).await;
    // The same through the API's signed cursors.
    assert_eq!(
        walk_api(&f, "acme", &id, 3).await,
        ids(&newest_first(&expected))
    );
    assert_eq!(
        walk_api(&f, "acme", &id, 20).await,
        ids(&newest_first(&expected))
    );
}

#[tokio::test]
async fn a_cursor_inside_packs_resumes_after_it_without_gaps_or_repeats() {
    let f = Fixture::new().await;
    let sub = new_subscription_id();
    let s = |ms: i64| T0 + ms * 1000;
    // Two invocations whose attempts alternate over 50 s, ties at 20 s,
    // and one long before them.
    let a = vec![
        attempt("acme", &sub, s(0), "evt_a", 1),
        attempt("acme", &sub, s(20), "evt_b", 1),
        attempt("acme", &sub, s(40), "evt_c", 1),
    ];
    let b = vec![
        attempt("acme", &sub, s(10), "evt_d", 1),
        attempt("acme", &sub, s(20), "evt_a", 2),
        attempt("acme", &sub, s(20), "evt_c", 1),
        attempt("acme", &sub, s(30), "evt_e", 1),
        attempt("acme", &sub, s(50), "evt_f", 1),
    ];
    let old = vec![attempt("acme", &sub, s(-600), "evt_g", 1)];
    for invocation in [&a, &b, &old] {
        assert_eq!(f.log.record_all(invocation).await, 0);
    }
    assert_eq!(items(&f, "acme", &sub).await.len(), 3);
    let expected = newest_first(&[a, b, old].concat());

    // Resuming after each attempt lists exactly those after it, whichever
    // pack the cursor falls inside.
    for (i, cursor) in expected.iter().enumerate() {
        let page = f
            .log
            .list("acme", &sub, 100, Some(&cursor.attempt_id))
            .await
            .unwrap();
        assert_eq!(ids(&page.items), ids(&expected[i + 1..]), "after {i}");
        assert!(!page.has_more);
        if i + 2 < expected.len() {
            let page = f
                .log
                .list("acme", &sub, 1, Some(&cursor.attempt_id))
                .await
                .unwrap();
            assert_eq!(page.items, expected[i + 1..i + 2], "one after {i}");
            assert!(page.has_more);
        }
    }
    assert_walks(&f.log, "acme", &sub, &expected).await;
}

#[tokio::test]
async fn items_of_one_attempt_written_before_packs_are_listed_with_packs() {
    let f = Fixture::new().await;
    let id = f.create_id("acme").await;
    // The item of one attempt as it was written before packs: the attempt's
    // attributes under its own key.
    let legacy = Table::new(
        emulator::dynamodb().await,
        f.config.deliveries_table.clone(),
    );
    let mut before = Vec::new();
    for (i, ms) in [0, 1000, 1000, 2000, 5000].into_iter().enumerate() {
        let a = attempt("acme", &id, T0 + ms, &format!("evt_{i}"), 1);
        legacy.put(&a.attempt_id, &a).await.unwrap();
        before.push(a);
    }
    let stored = items(&f, "acme", &id).await;
    assert!(stored.iter().all(|i| !i.contains_key("pack")));

    // A cursor issued before the first pack was written.
    let first = f
        .get("acme", &format!("/webhooks/{id}/deliveries?limit=2"))
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();

    // Then packs, around and between the old items, ties included.
    let mut after = Vec::new();
    for (k, ms) in [[500, 1000, 4000], [1000, 1500, 6000]]
        .into_iter()
        .enumerate()
    {
        let invocation: Vec<AttemptLog> = ms
            .iter()
            .map(|&m| attempt("acme", &id, T0 + m, &format!("evt_p{k}_{m}"), 2))
            .collect();
        assert_eq!(f.log.record_all(&invocation).await, 0);
        after.extend(invocation);
    }
    let all = newest_first(&[before.clone(), after].concat());
    assert_walks(&f.log, "acme", &id, &all).await;
    assert_eq!(walk_api(&f, "acme", &id, 2).await, ids(&all));

    // The old cursor goes on below the old page's last attempt.
    let old_last = &newest_first(&before)[1].attempt_id;
    let rest = f
        .get(
            "acme",
            &format!("/webhooks/{id}/deliveries?limit=100&cursor={cursor}"),
        )
        .await;
    assert_eq!(rest.status, 200, "{}", rest.body);
    let listed: Vec<&str> = rest.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = all
        .iter()
        .map(|a| a.attempt_id.as_str())
        .filter(|k| k < &old_last.as_str())
        .collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn every_message_for_another_subscription_is_an_item_each_read_correctly() {
    let f = Fixture::new().await;
    let subs: Vec<String> = (0..10).map(|_| new_subscription_id()).collect();
    let mut by_sub: BTreeMap<String, Vec<AttemptLog>> = BTreeMap::new();
    for k in 0..3i64 {
        let invocation: Vec<AttemptLog> = subs
            .iter()
            .enumerate()
            .map(|(i, sub)| attempt("acme", sub, T0 + k * 150 + i as i64, &format!("evt_{k}"), 1))
            .collect();
        assert_eq!(f.log.record_all(&invocation).await, 0);
        for a in invocation {
            by_sub.entry(a.subscription_id.clone()).or_default().push(a);
        }
    }
    for (sub, expected) in &by_sub {
        assert_eq!(items(&f, "acme", sub).await.len(), 3, "a pack of one each");
        assert_walks(&f.log, "acme", sub, expected).await;
    }
}

#[tokio::test]
async fn attempts_with_long_excerpts_are_split_into_bounded_items_all_read_back() {
    let f = Fixture::new().await;
    let sub = new_subscription_id();
    let invocation: Vec<AttemptLog> = (0..40)
        .map(|i| {
            let mut a = attempt("acme", &sub, T0 + i * 10, &format!("evt_{i}"), 2);
            // Bodies that do not compress.
            a.response_excerpt = Some(
                std::iter::repeat_with(fastrand::alphanumeric)
                    .take(MAX_EXCERPT)
                    .collect(),
            );
            a
        })
        .collect();
    assert_eq!(f.log.record_all(&invocation).await, 0);
    let stored = items(&f, "acme", &sub).await;
    assert!(stored.len() >= 10, "{} items", stored.len());
    for item in &stored {
        assert!(size(item) <= MAX_PACK_BYTES, "{}", size(item));
    }
    assert_walks(&f.log, "acme", &sub, &invocation).await;
}

#[tokio::test]
async fn another_companys_packs_never_appear_and_items_expire_with_their_newest_attempt() {
    let f = Fixture::new().await;
    let sub = new_subscription_id();
    let mut acme = Vec::new();
    for k in 0..4i64 {
        // The same subscription id and times in another company's
        // partition, in the same invocations.
        let invocation: Vec<AttemptLog> = (0..3)
            .flat_map(|j| {
                let ms = T0 + k * 100 + j * 40;
                [
                    attempt("acme", &sub, ms, &format!("evt_{k}_{j}"), 1),
                    attempt("globex", &sub, ms, &format!("evt_{k}_{j}"), 1),
                ]
            })
            .collect();
        assert_eq!(f.log.record_all(&invocation).await, 0);
        acme.extend(invocation.into_iter().filter(|a| a.company_id == "acme"));
    }
    assert_walks(&f.log, "acme", &sub, &acme).await;
    for limit in [1, 5, 100] {
        assert!(
            walk(&f.log, "acme", &sub, limit)
                .await
                .iter()
                .all(|a| a.company_id == "acme")
        );
    }
    assert!(walk(&f.log, "initech", &sub, 100).await.is_empty());

    let stored = items(&f, "acme", &sub).await;
    assert_eq!(stored.len(), 4);
    for item in &stored {
        let key = string(item, "attempt_id");
        let newest = acme.iter().find(|a| a.attempt_id == key).unwrap();
        assert_eq!(
            item["expires_at"].as_n().unwrap(),
            &(newest.at + RETENTION).timestamp().to_string(),
            "expires with its newest attempt, 30 days on"
        );
    }
}

#[tokio::test]
async fn packs_span_at_most_pack_span() {
    let f = Fixture::new().await;
    let sub = new_subscription_id();
    let span = PACK_SPAN.num_milliseconds();
    // An invocation that ran longer than the span.
    let invocation: Vec<AttemptLog> = [0, span / 2, span + 1, 2 * span + 2]
        .iter()
        .map(|&ms| attempt("acme", &sub, T0 + ms, &format!("evt_{ms}"), 1))
        .collect();
    assert_eq!(f.log.record_all(&invocation).await, 0);
    assert_eq!(items(&f, "acme", &sub).await.len(), 3);
    assert_walks(&f.log, "acme", &sub, &invocation).await;
}

/// `entries` written through a metering proxy: the write units billed.
async fn metered_write_units(table: &str, entries: &[AttemptLog]) -> f64 {
    let proxy = AwsProxy::start(emulator::endpoint());
    let meter = Meter::default();
    let observer = meter.clone();
    proxy.observe(move |call| observer.record(call));
    let log = DeliveryLog::new(aws_sdk_dynamodb::Client::new(&proxy.sdk().await), table);
    assert_eq!(log.record_all(entries).await, 0);
    let usage = meter.usage();
    let (dimension, usage) = usage["DynamoDB_20120810.BatchWriteItem"];
    assert_eq!(dimension, Dimension::DynamoWrites);
    assert_eq!(usage.calls, 1);
    usage.units
}

#[tokio::test]
async fn the_metering_of_the_cost_benchmark_bills_packs_by_their_size() {
    let f = Fixture::new().await;
    let table = f.config.deliveries_table.clone();
    let subs: Vec<String> = (0..10).map(|_| new_subscription_id()).collect();
    let batch = |n: usize| -> Vec<AttemptLog> {
        (0..10)
            .map(|i| {
                let mut a = attempt(
                    "acme",
                    &subs[i % n],
                    T0 + i as i64 * 20,
                    &format!("evt_{i}"),
                    3,
                );
                a.response_excerpt = Some(r#"{"received":true}"#.to_owned());
                a
            })
            .collect()
    };
    // Ten attempts for one subscription: one item under 1 KiB.
    assert_eq!(metered_write_units(&table, &batch(1)).await, 1.0);
    // For three: three items; for ten: ten, as an item per attempt was.
    assert_eq!(metered_write_units(&table, &batch(3)).await, 3.0);
    assert_eq!(metered_write_units(&table, &batch(10)).await, 10.0);
    // Larger packs by their size.
    let sub = new_subscription_id();
    let big: Vec<AttemptLog> = (0..6)
        .map(|i| {
            let mut a = attempt("acme", &sub, T0 + i, &format!("evt_{i}"), 3);
            a.response_excerpt = Some(
                std::iter::repeat_with(fastrand::alphanumeric)
                    .take(MAX_EXCERPT)
                    .collect(),
            );
            a
        })
        .collect();
    let units = metered_write_units(&table, &big).await;
    let stored = items(&f, "acme", &sub).await;
    let expected: usize = stored.iter().map(|i| size(i).div_ceil(1024)).sum();
    assert_eq!(units, expected as f64);
    assert!(stored.len() > 1);
}

#[tokio::test]
async fn record_all_counts_the_attempts_it_could_not_write() {
    let f = Fixture::new().await;
    let sub = new_subscription_id();
    let entries: Vec<AttemptLog> = (0..10)
        .map(|i| attempt("acme", &sub, T0 + i, &format!("evt_{i}"), 1))
        .collect();
    // Every BatchWriteItem fails: ten attempts in one pack are ten lost.
    let proxy = AwsProxy::start(emulator::endpoint());
    proxy.fail_requests("DynamoDB_20120810.BatchWriteItem", 1000);
    let failing = DeliveryLog::new(
        aws_sdk_dynamodb::Client::new(&proxy.sdk().await),
        f.config.deliveries_table.clone(),
    );
    assert_eq!(failing.record_all(&entries).await, 10);
    assert!(items(&f, "acme", &sub).await.is_empty());

    // An attempt whose key is not the one its fields make is refused,
    // logged and counted; the others are written.
    let mut wrong = entries.clone();
    wrong[3].attempt_id = format!("{sub}#0000000000001#evt_x#01");
    assert_eq!(f.log.record_all(&wrong).await, 1);
    let mut written = entries.clone();
    written.remove(3);
    assert_walks(&f.log, "acme", &sub, &written).await;
    assert!(f.log.record(&wrong[3]).await.is_err());
}
