//! Leases for the in-process backends: only this process uses the store,
//! so a map with expiries is the whole protocol.

use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::{Clock, Key};

/// Leases by key: holder and expiry.
#[derive(Default)]
pub struct Leases {
    /// Holder and expiry (the clock's ms).
    map: DashMap<Key, (String, u64)>,
    clock: Clock,
}

impl Leases {
    /// Leases timed by `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            map: DashMap::new(),
            clock,
        }
    }

    /// Takes `key` for `holder` when free or expired.
    pub fn take(&self, key: Key, holder: &str, ttl: Duration) -> bool {
        let now = self.clock.now_ms();
        match self.map.entry(key) {
            Entry::Occupied(mut e) if e.get().1 <= now => {
                e.insert((holder.to_string(), now + ttl.as_millis() as u64));
                true
            }
            Entry::Occupied(_) => false,
            Entry::Vacant(e) => {
                e.insert((holder.to_string(), now + ttl.as_millis() as u64));
                true
            }
        }
    }

    /// Extends `holder`'s lease; false when it is not theirs any more.
    pub fn renew(&self, key: Key, holder: &str, ttl: Duration) -> bool {
        let now = self.clock.now_ms();
        match self.map.get_mut(&key) {
            Some(mut e) if e.0 == holder && e.1 > now => {
                e.1 = now + ttl.as_millis() as u64;
                true
            }
            _ => false,
        }
    }

    /// Gives `holder`'s lease up.
    pub fn release(&self, key: Key, holder: &str) {
        self.map.remove_if(&key, |_, (h, _)| h == holder);
    }

    /// Forgets expired leases.
    pub fn purge(&self) {
        let now = self.clock.now_ms();
        self.map.retain(|_, (_, exp)| *exp > now);
    }
}
