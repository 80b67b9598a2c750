//! A warm instance's short-lived cache of subscription reads.
//!
//! Every attempt re-reads its subscription so archived ones stop receiving
//! and rotated secrets take effect; a brief cache keeps a batch of events for
//! one subscription from costing one read each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::store::{StoreError, SubscriptionStore};
use shared::subscription::Subscription;

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

type Key = (String, String);
type Entry = (Instant, Option<Arc<Subscription>>);

/// Subscriptions by (company, id), absent ones included, reused for `ttl`.
#[derive(Debug)]
pub struct SubscriptionCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl SubscriptionCache {
    /// An empty cache whose entries live for `ttl` (0 disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, key: &Key) -> Option<Option<Arc<Subscription>>> {
        let entries = self.entries.lock().expect("cache lock");
        entries
            .get(key)
            .filter(|(loaded, _)| loaded.elapsed() < self.ttl)
            .map(|(_, sub)| sub.clone())
    }

    /// The subscription, from the cache or the store; `None` if it doesn't
    /// exist.
    pub async fn get(
        &self,
        company_id: &str,
        subscription_id: &str,
        store: &SubscriptionStore,
    ) -> Result<Option<Arc<Subscription>>, StoreError> {
        let key = (company_id.to_owned(), subscription_id.to_owned());
        if let Some(sub) = self.fresh(&key) {
            return Ok(sub);
        }
        let sub = store.get(company_id, subscription_id).await?.map(Arc::new);
        self.put(key, sub.clone());
        Ok(sub)
    }

    /// Replaces the cached copy (after this instance changed it).
    pub fn update(&self, sub: Subscription) {
        let key = (sub.company_id.clone(), sub.subscription_id.clone());
        self.put(key, Some(Arc::new(sub)));
    }

    fn put(&self, key: Key, sub: Option<Arc<Subscription>>) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= SWEEP_ABOVE {
            entries.retain(|_, (loaded, _)| loaded.elapsed() < self.ttl);
        }
        entries.insert(key, (Instant::now(), sub));
    }
}
