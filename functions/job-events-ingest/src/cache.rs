//! A warm instance's cache of each company's active subscriptions.

use std::sync::Arc;
use std::time::Duration;

use shared::domain::subscription::Subscription;
use shared::storage::StoreError;
use shared::storage::subscriptions::SubscriptionStore;
use shared::ttl_cache::TtlCache;

/// Active subscriptions per company, reused for `ttl`: a batch touching one
/// company many times costs one Query.
#[derive(Debug)]
pub struct SubscriptionCache {
    entries: TtlCache<String, Arc<Vec<Subscription>>>,
}

impl SubscriptionCache {
    /// An empty cache whose entries live for `ttl` (0 disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: TtlCache::new(ttl),
        }
    }

    /// The company's active subscriptions, from the cache or the store.
    pub async fn active(
        &self,
        company_id: &str,
        store: &SubscriptionStore,
    ) -> Result<Arc<Vec<Subscription>>, StoreError> {
        if let Some(subs) = self.entries.get_fresh(company_id) {
            return Ok(subs);
        }
        let subs = Arc::new(store.list_receiving(company_id).await?);
        self.entries
            .insert(company_id.to_owned(), Arc::clone(&subs));
        Ok(subs)
    }
}
