//! A warm instance's cache of each company's receiving subscriptions: what
//! the ingest functions (jobs and platform events) match events against.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::domain::subscription::Subscription;
use crate::storage::StoreError;
use crate::storage::subscriptions::SubscriptionStore;
use crate::ttl_cache::TtlCache;

/// Receiving subscriptions per company ([`SubscriptionStore::list_receiving`]),
/// reused for `ttl`: a batch touching one company many times costs one
/// Query.
#[derive(Debug)]
pub struct ReceivingCache {
    entries: TtlCache<String, Arc<Vec<Subscription>>>,
}

impl ReceivingCache {
    /// An empty cache whose entries live for `ttl` (0 disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: TtlCache::new(ttl),
        }
    }

    /// The company's receiving subscriptions, from the cache or the store.
    pub async fn receiving(
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

    /// Each of `companies`' receiving subscriptions (each company once, at
    /// most `concurrency` lookups in flight); a failed lookup is logged
    /// and kept as its error, so only that company's events fail.
    pub async fn lookup(
        &self,
        store: &SubscriptionStore,
        mut companies: Vec<String>,
        concurrency: usize,
    ) -> HashMap<String, Result<Arc<Vec<Subscription>>, StoreError>> {
        companies.sort_unstable();
        companies.dedup();
        // Owned ids into an async fn: a closure over borrowed ones makes the
        // handler's future not `Send` (rust-lang/rust#102211).
        futures::stream::iter(companies)
            .map(|company| self.lookup_one(store, company))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    }

    async fn lookup_one(
        &self,
        store: &SubscriptionStore,
        company: String,
    ) -> (String, Result<Arc<Vec<Subscription>>, StoreError>) {
        let result = self.receiving(&company, store).await;
        if let Err(e) = &result {
            tracing::error!(company_id = %company, error = %e, "subscription lookup failed");
        }
        (company, result)
    }
}
