//! A warm instance's cache of each company's active subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::store::{StoreError, SubscriptionStore};
use shared::subscription::Subscription;

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

type Entry = (Instant, Arc<Vec<Subscription>>);

/// Active subscriptions per company, reused for `ttl`: a batch touching one
/// company many times costs one Query.
#[derive(Debug)]
pub struct SubscriptionCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl SubscriptionCache {
    /// An empty cache whose entries live for `ttl` (0 disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, company_id: &str) -> Option<Arc<Vec<Subscription>>> {
        let entries = self.entries.lock().expect("cache lock");
        entries
            .get(company_id)
            .filter(|(loaded, _)| loaded.elapsed() < self.ttl)
            .map(|(_, subs)| Arc::clone(subs))
    }

    /// The company's active subscriptions, from the cache or the store.
    pub async fn active(
        &self,
        company_id: &str,
        store: &SubscriptionStore,
    ) -> Result<Arc<Vec<Subscription>>, StoreError> {
        if let Some(subs) = self.fresh(company_id) {
            return Ok(subs);
        }
        let subs = Arc::new(store.list_active(company_id).await?);
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= SWEEP_ABOVE {
            entries.retain(|_, (loaded, _)| loaded.elapsed() < self.ttl);
        }
        entries.insert(company_id.to_owned(), (Instant::now(), Arc::clone(&subs)));
        Ok(subs)
    }
}
