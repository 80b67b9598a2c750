//! A warm instance's short-lived cache of subscription reads.
//!
//! Every attempt re-reads its subscription so archived ones stop receiving
//! and rotated secrets take effect; a brief cache keeps a batch of events for
//! one subscription from costing one read each.

use std::sync::Arc;
use std::time::Duration;

use shared::domain::subscription::Subscription;
use shared::storage::subscriptions::{StoreError, SubscriptionStore};
use shared::ttl_cache::TtlCache;

/// Subscriptions by (company, id), absent ones included, reused for `ttl`.
#[derive(Debug)]
pub struct SubscriptionCache {
    entries: TtlCache<(String, String), Option<Arc<Subscription>>>,
}

impl SubscriptionCache {
    /// An empty cache whose entries live for `ttl` (0 disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: TtlCache::new(ttl),
        }
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
        if let Some(sub) = self.entries.get_fresh(&key) {
            return Ok(sub);
        }
        let sub = store.get(company_id, subscription_id).await?.map(Arc::new);
        self.entries.insert(key, sub.clone());
        Ok(sub)
    }

    /// Replaces the cached copy (after this instance changed it).
    pub fn update(&self, sub: Subscription) {
        let key = (sub.company_id.clone(), sub.subscription_id.clone());
        self.entries.insert(key, Some(Arc::new(sub)));
    }
}
