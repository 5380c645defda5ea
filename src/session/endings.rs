//! What this replica knows has ended, so that it never brings it back:
//! sessions it signed out or revoked, endings other replicas logged in the
//! shared store, tombstones it met. Kept in memory until each would have
//! ended anyway, so a store that loses its data (a Redis restarted empty)
//! gets its tombstones back from the replicas before any of them writes a
//! cached session back; and ids that have no record, briefly, so random
//! cookies and tokens cost no store reads after the first.
//!
//! Both sets are bounded: an outsider cannot grow them past their caps.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::SessionKey;

/// Endings remembered at most (a sign-out or revocation needs a signed-in
/// user, and a user's tokens are capped, so this is far beyond use).
pub const MAX_ENDINGS: usize = 100_000;
/// Unknown ids remembered at most.
pub const MAX_ABSENT: usize = 10_000;
/// How long an unknown id is answered from memory.
pub const ABSENT_FOR: Duration = Duration::from_secs(5);

/// Sessions known to have ended, by store key, with when each would have
/// ended anyway (after that its record cannot come back either). Ordered
/// by that time too, so the expired go first and a full set makes room in
/// O(log n), whatever it holds.
#[derive(Default)]
pub struct Endings {
    inner: Mutex<EndingSet>,
}

#[derive(Default)]
struct EndingSet {
    by_hash: HashMap<[u8; 32], SystemTime>,
    by_until: BTreeSet<(SystemTime, [u8; 32])>,
}

/// Ids that had no record when last asked.
#[derive(Default)]
pub struct Absent {
    map: Mutex<HashMap<SessionKey, Instant>>,
}

// === impl Endings ===

impl Endings {
    /// Remembers that the session stored under `hash` ended; `until` is
    /// when it would have ended anyway. True when it was not known.
    pub fn remember(&self, hash: [u8; 32], until: SystemTime, now: SystemTime) -> bool {
        if until <= now {
            return false;
        }
        let Ok(mut set) = self.inner.lock() else {
            return false;
        };
        set.drop_ended(now);
        let new = match set.by_hash.insert(hash, until) {
            Some(old) => {
                set.by_until.remove(&(old, hash));
                false
            }
            None => true,
        };
        set.by_until.insert((until, hash));
        if set.by_hash.len() > MAX_ENDINGS {
            // Full of live endings: give up the one that ends first.
            if let Some((_, first)) = set.by_until.pop_first() {
                set.by_hash.remove(&first);
            }
        }
        new
    }

    /// Whether the session stored under `hash` is known to have ended.
    pub fn contains(&self, hash: &[u8; 32], now: SystemTime) -> bool {
        self.inner
            .lock()
            .map(|s| s.by_hash.get(hash).is_some_and(|u| *u > now))
            .unwrap_or(false)
    }

    /// Every live ending, to put back into a store that lost them.
    pub fn live(&self, now: SystemTime) -> Vec<([u8; 32], SystemTime)> {
        self.inner
            .lock()
            .map(|mut s| {
                s.drop_ended(now);
                s.by_until.iter().map(|(u, h)| (*h, *u)).collect()
            })
            .unwrap_or_default()
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|s| s.by_hash.len()).unwrap_or(0)
    }
}

impl EndingSet {
    /// Forgets the endings whose sessions would have ended by `now`.
    fn drop_ended(&mut self, now: SystemTime) {
        while let Some(&(until, hash)) = self.by_until.first() {
            if until > now {
                break;
            }
            self.by_until.pop_first();
            self.by_hash.remove(&hash);
        }
    }
}

// === impl Absent ===

impl Absent {
    /// Whether `key` had no record less than [`ABSENT_FOR`] ago.
    pub fn contains(&self, key: &SessionKey, now: Instant) -> bool {
        self.map
            .lock()
            .map(|m| m.get(key).is_some_and(|t| now < *t + ABSENT_FOR))
            .unwrap_or(false)
    }

    /// Notes that `key` has no record. When full of fresh entries, the new
    /// one is not kept (it costs its reads again, nothing more).
    pub fn insert(&self, key: SessionKey, now: Instant) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= MAX_ABSENT {
            map.retain(|_, t| now < *t + ABSENT_FOR);
            if map.len() >= MAX_ABSENT {
                return;
            }
        }
        map.insert(key, now);
    }

    /// Forgets everything (the store was restored: ids may have records).
    pub fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }

    /// How many are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_kept_until_they_would_have_ended_and_stay_bounded() {
        let e = Endings::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(e.remember([1; 32], now + Duration::from_secs(60), now));
        assert!(!e.remember([1; 32], now + Duration::from_secs(60), now));
        assert!(!e.remember([2; 32], now, now), "already over: not kept");
        assert!(e.contains(&[1; 32], now));
        assert!(!e.contains(&[1; 32], now + Duration::from_secs(61)));
        assert_eq!(e.live(now + Duration::from_secs(61)).len(), 0);

        for i in 0..(MAX_ENDINGS as u32 + 10) {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            e.remember(h, now + Duration::from_secs(10 + u64::from(i)), now);
        }
        assert_eq!(e.len(), MAX_ENDINGS);
        assert_eq!(e.live(now).len(), MAX_ENDINGS);
        // The ones ending first made room; the newest are kept.
        let mut newest = [0u8; 32];
        newest[..4].copy_from_slice(&(MAX_ENDINGS as u32 + 9).to_le_bytes());
        assert!(e.contains(&newest, now));
        assert!(!e.contains(&[0; 32], now));
    }

    #[test]
    fn unknown_ids_are_remembered_briefly_and_bounded() {
        let a = Absent::default();
        let t = crate::clock::real_instant();
        let k = SessionKey::of("x");
        a.insert(k, t);
        assert!(a.contains(&k, t + Duration::from_secs(4)));
        assert!(!a.contains(&k, t + ABSENT_FOR));
        for i in 0..(MAX_ABSENT + 50) {
            a.insert(SessionKey::of(&i.to_string()), t);
        }
        assert_eq!(a.len(), MAX_ABSENT);
        // Stale entries make room.
        a.insert(SessionKey::of("late"), t + ABSENT_FOR);
        assert!(a.contains(&SessionKey::of("late"), t + ABSENT_FOR));
        assert_eq!(a.len(), 1);
        a.clear();
        assert_eq!(a.len(), 0);
    }
}
