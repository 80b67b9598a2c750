//! A small map whose entries are reused for a fixed time: the warm-instance
//! caches of the functions.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

/// Values by key, each reused for `ttl` after it was inserted. Expired
/// entries are dropped when an insert finds the map holding at least
/// 10,000 entries.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    sweep_above: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// An empty cache whose entries live for `ttl` (0 disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            sweep_above: SWEEP_ABOVE,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A copy of the value of `key`, if it was inserted less than `ttl`
    /// ago.
    pub fn get_fresh<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entries = self.entries.lock().expect("cache lock");
        entries
            .get(key)
            .filter(|(loaded, _)| loaded.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    /// Forgets `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.entries.lock().expect("cache lock").remove(key);
    }

    /// Stores `value` for `key`, fresh from now.
    pub fn insert(&self, key: K, value: V) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= self.sweep_above {
            entries.retain(|_, (loaded, _)| loaded.elapsed() < self.ttl);
        }
        entries.insert(key, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    /// Inserts `key` as if it had been loaded `age` ago.
    fn insert_aged<K: Eq + Hash, V>(cache: &TtlCache<K, V>, key: K, value: V, age: Duration) {
        let loaded = Instant::now()
            .checked_sub(age)
            .expect("uptime exceeds the age");
        cache.entries.lock().unwrap().insert(key, (loaded, value));
    }

    fn len<K, V>(cache: &TtlCache<K, V>) -> usize {
        cache.entries.lock().unwrap().len()
    }

    #[test]
    fn fresh_entries_are_returned_until_replaced() {
        let cache: TtlCache<String, u32> = TtlCache::new(TTL);
        assert_eq!(cache.get_fresh("a"), None);
        cache.insert("a".to_owned(), 1);
        assert_eq!(cache.get_fresh("a"), Some(1));
        assert_eq!(cache.get_fresh("b"), None);
        cache.insert("a".to_owned(), 2);
        assert_eq!(cache.get_fresh("a"), Some(2));
    }

    #[test]
    fn absent_values_are_cached_too() {
        let cache: TtlCache<(String, String), Option<u32>> = TtlCache::new(TTL);
        let key = ("acme".to_owned(), "sub".to_owned());
        cache.insert(key.clone(), None);
        assert_eq!(cache.get_fresh(&key), Some(None));
    }

    #[test]
    fn expired_entries_are_not_returned() {
        let cache = TtlCache::new(TTL);
        insert_aged(&cache, 1, "one", TTL);
        insert_aged(&cache, 2, "two", TTL - Duration::from_secs(1));
        assert_eq!(cache.get_fresh(&1), None);
        assert_eq!(cache.get_fresh(&2), Some("two"));
    }

    #[test]
    fn a_zero_ttl_disables_caching() {
        let cache = TtlCache::new(Duration::ZERO);
        cache.insert(1, "one");
        assert_eq!(cache.get_fresh(&1), None);
    }

    #[test]
    fn expired_entries_are_swept_once_the_map_is_full() {
        let cache = TtlCache {
            sweep_above: 3,
            ..TtlCache::new(TTL)
        };
        insert_aged(&cache, 1, (), 2 * TTL);
        insert_aged(&cache, 2, (), 2 * TTL);
        cache.insert(3, ());
        assert_eq!(len(&cache), 3, "below the limit nothing is swept");
        cache.insert(4, ());
        assert_eq!(len(&cache), 2, "the expired 1 and 2 are gone");
        assert_eq!(cache.get_fresh(&3), Some(()));
        assert_eq!(cache.get_fresh(&4), Some(()));
    }
}
