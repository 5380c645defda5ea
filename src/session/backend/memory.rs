//! The memory backend: a `dashmap` of values with expiries. For tests and
//! throwaway use; a restart forgets everything.

use std::time::Duration;

use dashmap::DashMap;

use super::lease::Leases;
use super::{Clock, Key, Namespace, StoreError, Update, decide};

/// Values in process memory.
#[derive(Default)]
pub struct Memory {
    map: DashMap<Key, (u64, Vec<u8>)>,
    pub(super) leases: Leases,
    clock: Clock,
}

impl Memory {
    /// A store whose time is `clock` (tests move it forward).
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            map: DashMap::new(),
            leases: Leases::with_clock(clock.clone()),
            clock,
        }
    }

    fn live(&self, key: &Key) -> Option<Vec<u8>> {
        let e = self.map.get(key)?;
        (e.0 > self.clock.now_ms()).then(|| e.1.clone())
    }

    pub(super) async fn get(&self, key: Key) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.live(&key))
    }

    pub(super) async fn put(
        &self,
        key: Key,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.map.insert(key, (self.clock.expiry_ms(ttl), value));
        Ok(())
    }

    pub(super) async fn update(
        &self,
        key: Key,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        let tombstoned = self.live(&key.with(Namespace::Tombstone)).is_some();
        // The entry guard makes check and write one step.
        let mut entry = self.map.entry(key).or_insert((0, Vec::new()));
        let current = (entry.0 > self.clock.now_ms()).then_some(entry.1.as_slice());
        let outcome = decide(current, tombstoned, &value);
        if outcome == Update::Written {
            *entry = (self.clock.expiry_ms(ttl), value);
        } else if current.is_none() {
            drop(entry);
            self.map.remove(&key);
        }
        Ok(outcome)
    }

    pub(super) async fn remove(&self, key: Key, ttl: Duration) -> Result<(), StoreError> {
        self.map.remove(&key);
        self.map.remove(&key.with(Namespace::Access));
        self.map.insert(
            key.with(Namespace::Tombstone),
            (self.clock.expiry_ms(ttl), Vec::new()),
        );
        Ok(())
    }

    pub(super) async fn purge(&self) -> Result<u64, StoreError> {
        let now = self.clock.now_ms();
        let before = self.map.len();
        self.map.retain(|_, (exp, _)| *exp > now);
        self.leases.purge();
        Ok(before.saturating_sub(self.map.len()) as u64)
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
