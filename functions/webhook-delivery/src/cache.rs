//! A warm instance's short-lived cache of subscription reads, with their
//! signing secrets opened.
//!
//! Every attempt re-reads its subscription so archived ones stop receiving
//! and rotated secrets take effect; a brief cache keeps a batch of events for
//! one subscription from costing one read each. Secrets and custom header
//! values are decrypted when a subscription is read (a cache miss), never
//! per attempt.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use http::{HeaderMap, HeaderName, HeaderValue};
use shared::domain::headers::HeaderValues;
use shared::domain::subscription::Subscription;
use shared::format::{Format, OpenFormatError};
use shared::signing::SigningKeys;
use shared::signing::sealed::{Keyring, OpenError};
use shared::storage::StoreError;
use shared::storage::keyring::{KeyringError, SecretVault};
use shared::storage::subscriptions::SubscriptionStore;
use shared::ttl_cache::TtlCache;

/// A subscription as read, and its secrets ready to sign (or why they do
/// not open: that delivery then fails like any failed attempt).
#[derive(Debug)]
pub struct Cached {
    /// The subscription.
    pub sub: Subscription,
    /// Its signing keys.
    pub keys: Result<SigningKeys, OpenError>,
    /// Its custom headers, opened, values marked sensitive (so `Debug`
    /// shows none of them).
    pub headers: Result<HeaderMap, OpenError>,
    /// Its body format, opened (routing key decrypted, template compiled).
    pub format: Result<Format, OpenFormatError>,
}

impl Cached {
    /// `sub` with its secrets and headers opened with `keyring`.
    fn open(sub: Subscription, keyring: &Keyring) -> Self {
        let now = Utc::now();
        Self {
            keys: sub.signing_keys(keyring, now),
            headers: sub.header_values(keyring).map(|v| header_map(&sub, &v)),
            format: sub.open_format(keyring),
            sub,
        }
    }

    /// Whether everything opened (a template that does not compile is no
    /// secret that may open on a second read: it is cached, and fails its
    /// attempts until the subscription changes).
    fn opened(&self) -> bool {
        self.keys.is_ok()
            && self.headers.is_ok()
            && !matches!(self.format, Err(OpenFormatError::Sealed(_)))
    }
}

/// The headers to send. The API admits only names and values `http`
/// takes; one that is not (an item written some other way) is left out,
/// and logged by name.
fn header_map(sub: &Subscription, values: &HeaderValues) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(values.len());
    for (name, value) in values.iter() {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(mut value)) => {
                value.set_sensitive(true);
                map.insert(name, value);
            }
            _ => tracing::warn!(
                subscription_id = %sub.subscription_id,
                header = name,
                "custom header is not a valid HTTP header: not sent"
            ),
        }
    }
    map
}

impl std::ops::Deref for Cached {
    type Target = Subscription;

    fn deref(&self) -> &Subscription {
        &self.sub
    }
}

/// A subscription read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The table could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The keyring could not be read again for a new key version.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// Subscriptions by (company, id), absent ones included, reused for `ttl`.
#[derive(Debug)]
pub struct SubscriptionCache {
    entries: TtlCache<(String, String), Option<Arc<Cached>>>,
    vault: Arc<SecretVault>,
}

fn same_secrets(a: &Subscription, b: &Subscription) -> bool {
    a.secret == b.secret
        && a.previous_secret == b.previous_secret
        && a.previous_secret_expires_at == b.previous_secret_expires_at
        && a.signature_schemes == b.signature_schemes
        && a.signing_key == b.signing_key
        && a.previous_signing_key == b.previous_signing_key
}

impl SubscriptionCache {
    /// An empty cache whose entries live for `ttl` (0 disables caching),
    /// opening secrets with `vault`.
    pub fn new(ttl: Duration, vault: Arc<SecretVault>) -> Self {
        Self {
            entries: TtlCache::new(ttl),
            vault,
        }
    }

    /// The subscription, from the cache or the store; `None` if it doesn't
    /// exist.
    pub async fn get(
        &self,
        company_id: &str,
        subscription_id: &str,
        store: &SubscriptionStore,
    ) -> Result<Option<Arc<Cached>>, ReadError> {
        let key = (company_id.to_owned(), subscription_id.to_owned());
        if let Some(sub) = self.entries.get_fresh(&key) {
            return Ok(sub);
        }
        let cached = match store.get(company_id, subscription_id).await? {
            Some(sub) => {
                let versions = sub.secret_key_versions();
                let keyring = self.vault.for_opening(versions).await?;
                let mut opened = Cached::open(sub, &keyring);
                if !opened.opened() {
                    // The keyring may have changed since it was read (a
                    // rotation the last read did not see yet): read it
                    // once more (at most every few seconds) before failing.
                    let keyring = self.vault.reread_for_opening().await?;
                    opened = Cached::open(opened.sub, &keyring);
                }
                Some(Arc::new(opened))
            }
            None => None,
        };
        // A secret that does not open is never cached: the next attempt
        // reads the subscription and the keyring again.
        if cached.as_ref().is_none_or(|c| c.opened()) {
            self.entries.insert(key, cached.clone());
        }
        Ok(cached)
    }

    /// Replaces the cached copy (after this instance changed it), keeping
    /// the opened secrets and headers when they did not change.
    pub fn update(&self, sub: Subscription) {
        let key = (sub.company_id.clone(), sub.subscription_id.clone());
        let kept = self
            .entries
            .get_fresh(&key)
            .flatten()
            .filter(|old| {
                same_secrets(&old.sub, &sub)
                    && old.sub.headers == sub.headers
                    && old.sub.format == sub.format
            })
            .map(|old| (old.keys.clone(), old.headers.clone(), old.format.clone()));
        let cached = match kept {
            Some((keys, headers, format)) => Cached {
                sub,
                keys,
                headers,
                format,
            },
            None => Cached::open(sub, &self.vault.current()),
        };
        if !cached.opened() {
            // Read again, with the keyring, by the next attempt.
            self.entries.remove(&key);
            return;
        }
        self.entries.insert(key, Some(Arc::new(cached)));
    }
}
