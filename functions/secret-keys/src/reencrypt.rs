//! Re-sealing every stored secret under the newest key version.

use std::time::{Duration, Instant};

use serde::Serialize;
use shared::domain::subscription::Subscription;
use shared::signing::sealed::Keyring;
use shared::storage::keyring::{KeyringStore, SecretVault};
use shared::storage::subscriptions::{SubscriptionKey, SubscriptionStore};

use crate::KeysError;

/// Items read per Scan page.
const PAGE: i32 = 100;
/// Stop taking items this long before the deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
/// Re-reads of an item that changed between read and write.
const CONFLICT_RETRIES: usize = 3;
/// Unreadable items listed in the report (all are counted).
const LISTED_UNREADABLE: usize = 100;

/// What one `reencrypt` invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReencryptReport {
    /// The version secrets are sealed with now.
    pub key_version: u32,
    /// Subscriptions read.
    pub scanned: usize,
    /// Rewritten under the newest version (or would be, in a dry run).
    pub resealed: usize,
    /// Of those, items that held a secret in the clear.
    pub plaintext_sealed: usize,
    /// Already under the newest version: left alone.
    pub already_current: usize,
    /// Items that changed while being re-sealed and were read again.
    pub conflicts: usize,
    /// Items whose secret does not open (tampered, moved, unknown
    /// version): left alone and logged. Counted, and listed up to 100.
    pub unreadable: usize,
    /// `company_id/subscription_id` of unreadable items.
    pub unreadable_items: Vec<String>,
    /// Nothing was written.
    pub dry_run: bool,
    /// Whether the whole table was covered.
    pub done: bool,
    /// Invoke again with this to continue (when not done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<SubscriptionKey>,
}

/// What one invocation covers.
#[derive(Debug, Clone)]
pub struct Pass {
    /// Start after this item.
    pub resume_after: Option<SubscriptionKey>,
    /// Count only.
    pub dry_run: bool,
    /// Most items to read.
    pub limit: usize,
    /// Stop before this.
    pub deadline: Instant,
}

/// Re-seals the table's secrets after `pass.resume_after`, until done, the
/// limit, or near the deadline.
pub async fn run(
    keyring: &KeyringStore,
    store: &SubscriptionStore,
    pass: Pass,
) -> Result<ReencryptReport, KeysError> {
    let Pass {
        resume_after,
        dry_run,
        limit,
        deadline,
    } = pass;
    // Read afresh: the newest version may be minutes old.
    let ring = SecretVault::load(keyring.clone()).await?.current();
    let key_version = ring.newest().ok_or(KeysError::EmptyKeyring)?;
    let mut report = ReencryptReport {
        key_version,
        dry_run,
        ..ReencryptReport::default()
    };
    let mut after = resume_after;
    let stop = |report: &ReencryptReport| {
        report.scanned >= limit || Instant::now() + DEADLINE_MARGIN >= deadline
    };
    loop {
        if stop(&report) {
            report.resume_after = after;
            return Ok(report);
        }
        let page = i32::try_from(limit - report.scanned).map_or(PAGE, |left| left.min(PAGE));
        let (items, next) = store.scan_page(after.as_ref(), page).await?;
        for sub in items {
            if stop(&report) {
                report.resume_after = after;
                return Ok(report);
            }
            let key = SubscriptionKey {
                company_id: sub.company_id.clone(),
                subscription_id: sub.subscription_id.clone(),
            };
            report.scanned += 1;
            reseal_one(store, &ring, sub, dry_run, &mut report).await?;
            after = Some(key);
        }
        match next {
            Some(next) => after = Some(next),
            None => {
                report.done = true;
                tracing::info!(
                    key_version,
                    scanned = report.scanned,
                    resealed = report.resealed,
                    plaintext_sealed = report.plaintext_sealed,
                    unreadable = report.unreadable,
                    dry_run,
                    "re-encryption pass finished"
                );
                return Ok(report);
            }
        }
    }
}

async fn reseal_one(
    store: &SubscriptionStore,
    ring: &Keyring,
    mut sub: Subscription,
    dry_run: bool,
    report: &mut ReencryptReport,
) -> Result<(), KeysError> {
    for _ in 0..=CONFLICT_RETRIES {
        let plaintext = sub.has_plaintext_secret();
        match sub.reseal_secrets(ring) {
            Ok(false) => {
                report.already_current += 1;
                return Ok(());
            }
            Ok(true) if dry_run => {}
            Ok(true) => {
                if !store.store_resealed_secrets(&sub).await? {
                    report.conflicts += 1;
                    match store.get(&sub.company_id, &sub.subscription_id).await? {
                        Some(current) => {
                            sub = current;
                            continue;
                        }
                        // Deleted meanwhile: nothing left to seal.
                        None => return Ok(()),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    company_id = %sub.company_id,
                    subscription_id = %sub.subscription_id,
                    error = %e,
                    "stored signing secret does not open: left as is"
                );
                report.unreadable += 1;
                if report.unreadable_items.len() < LISTED_UNREADABLE {
                    report
                        .unreadable_items
                        .push(format!("{}/{}", sub.company_id, sub.subscription_id));
                }
                return Ok(());
            }
        }
        report.resealed += 1;
        if plaintext {
            report.plaintext_sealed += 1;
        }
        return Ok(());
    }
    // Changed on every try: the writer that keeps changing it seals it too.
    tracing::warn!(subscription_id = %sub.subscription_id, "item kept changing: left to its writers, which seal on every write");
    Ok(())
}
