//! Where sealed records live: bytes by key with an expiry, plus the few
//! atomic operations sessions need (generation-checked updates, tombstones,
//! get-and-delete, leases). Three backends behind one enum: process memory,
//! an embedded database file (redb) and Redis.
//!
//! Keys are `namespace | 32-byte hash`; values are opaque except that a
//! session record starts with its generation (see [`generation_prefix`]),
//! which `update` compares so an older copy never overwrites a newer one.

mod embedded;
mod lease;
mod memory;
mod redis;
mod redis_link;

use std::time::Duration;

pub use self::embedded::Embedded;
pub use self::memory::Memory;
pub use self::redis::{ENDING_LOG_FOR, Redis, RedisAt, RedisSettings};

/// Bytes of the generation at the start of a session record: decimal,
/// zero-padded, so Redis scripts can read it with `tonumber`.
pub const GENERATION_LEN: usize = 20;

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// A session record.
    Session,
    /// A session's shared access token (Redis only).
    Access,
    /// A signed-out session, so no replica writes it back.
    Tombstone,
    /// The lease of a session's refresh.
    Lease,
    /// Mode `service`'s device-code sign-in.
    Service,
    /// A personal proxy token's pointer to its session.
    PersonalToken,
    /// A session's list of its personal tokens.
    TokenIndex,
    /// The store-wide mark of a restore after a data loss (one key,
    /// `<prefix>restoring`).
    Restoring,
    /// The store's epoch (one key, `<prefix>epoch`, Redis only): gone or
    /// changed means the store lost its data.
    Epoch,
}

/// The one key of [`Namespace::Restoring`].
pub const RESTORING: Key = Key {
    ns: Namespace::Restoring,
    hash: [0; 32],
};
/// The one key of [`Namespace::Epoch`].
pub const EPOCH: Key = Key {
    ns: Namespace::Epoch,
    hash: [0; 32],
};

/// A store key: namespace plus the HMAC of the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// What it holds.
    pub ns: Namespace,
    /// HMAC of the session id (or state) under the current seal key.
    pub hash: [u8; 32],
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with an error.
    #[error("{backend} store unreachable: {detail}")]
    Unavailable {
        /// Which backend.
        backend: &'static str,
        /// What went wrong (never a value).
        detail: String,
    },
}

/// The outcome of a generation-checked write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Written (or re-created after the store lost it).
    Written,
    /// The store holds a newer generation; nothing was written.
    Stale,
    /// The session was signed out; nothing was written.
    Gone,
}

/// One of the backends.
pub enum Backend {
    /// Process memory.
    Memory(Memory),
    /// A redb database file.
    Embedded(Embedded),
    /// A Redis server.
    Redis(Redis),
}

// === impl Key ===

impl Key {
    /// A key in `ns`.
    pub fn new(ns: Namespace, hash: [u8; 32]) -> Self {
        Self { ns, hash }
    }

    /// The same hash in another namespace.
    pub fn with(&self, ns: Namespace) -> Self {
        Self {
            ns,
            hash: self.hash,
        }
    }

    /// Bytes for the embedded and memory stores.
    pub fn to_bytes(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = self.ns.tag();
        out[1..].copy_from_slice(&self.hash);
        out
    }

    /// Text for Redis: `<prefix><tag>:<hex>`; the store-wide keys are
    /// `<prefix>epoch` and `<prefix>restoring`.
    pub fn to_redis(&self, prefix: &str) -> String {
        match self.ns {
            Namespace::Epoch => return format!("{prefix}epoch"),
            Namespace::Restoring => return format!("{prefix}restoring"),
            _ => {}
        }
        let mut s = String::with_capacity(prefix.len() + 2 + 64);
        s.push_str(prefix);
        s.push(self.ns.tag() as char);
        s.push(':');
        for b in self.hash {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl Namespace {
    fn tag(self) -> u8 {
        match self {
            Self::Session => b's',
            Self::Access => b'a',
            Self::Tombstone => b't',
            Self::Lease => b'l',
            Self::Service => b'i',
            Self::PersonalToken => b'p',
            Self::TokenIndex => b'x',
            Self::Restoring => b'r',
            Self::Epoch => b'e',
        }
    }
}

/// The generation prefix of a session record.
pub fn generation_prefix(generation: u64) -> [u8; GENERATION_LEN] {
    let text = format!("{generation:0width$}", width = GENERATION_LEN);
    let mut out = [0u8; GENERATION_LEN];
    out.copy_from_slice(text.as_bytes());
    out
}

/// A store hash as lowercase hex (record lists, the ending log).
pub fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`hex`] wrote; `None` for anything else.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The generation a stored record starts with; 0 when unreadable.
pub fn generation_of(value: &[u8]) -> u64 {
    value
        .get(..GENERATION_LEN)
        .and_then(|g| std::str::from_utf8(g).ok())
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

use crate::clock::Clock;

// === impl Backend ===

macro_rules! each {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Backend::Memory($b) => $e,
            Backend::Embedded($b) => $e,
            Backend::Redis($b) => $e,
        }
    };
}

impl Backend {
    /// The backend's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Embedded(_) => "embedded",
            Self::Redis(_) => "redis",
        }
    }

    /// Whether other processes share it (replicas must coordinate).
    pub fn shared(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// The value under `key`, unless absent or expired.
    pub async fn get(&self, key: Key) -> Result<Option<Vec<u8>>, StoreError> {
        each!(self, b => b.get(key).await)
    }

    /// The values under `keys`, in order: one command on Redis.
    pub async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            Backend::Redis(b) => b.get_many(keys).await,
            _ => {
                let mut out = Vec::with_capacity(keys.len());
                for key in keys {
                    out.push(self.get(*key).await?);
                }
                Ok(out)
            }
        }
    }

    /// Stores `value` under `key` for `ttl`, whatever was there.
    pub async fn put(&self, key: Key, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        each!(self, b => b.put(key, value, ttl).await)
    }

    /// Stores `value` under `key` only if it still holds `expected`
    /// (`None`: nothing); true when written. Replicas editing one record
    /// (a user's token list) then never lose each other's change. The
    /// in-process stores have one writer, whose callers serialise.
    pub async fn swap(
        &self,
        key: Key,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Backend::Redis(b) => b.swap(key, expected, value, ttl).await,
            _ => self.put(key, value, ttl).await.map(|()| true),
        }
    }

    /// Stores many values (one commit where the backend has commits).
    pub async fn put_many(&self, items: Vec<(Key, Vec<u8>, Duration)>) -> Result<(), StoreError> {
        match self {
            Backend::Embedded(b) => b.put_many(items).await,
            _ => {
                for (key, value, ttl) in items {
                    self.put(key, value, ttl).await?;
                }
                Ok(())
            }
        }
    }

    /// Writes a session record unless the stored one has a newer
    /// generation or its tombstone exists; re-creates a lost record.
    pub async fn update(
        &self,
        key: Key,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        each!(self, b => b.update(key, value, ttl).await)
    }

    /// Deletes a session record (and its access token) and leaves a
    /// tombstone for `ttl`.
    pub async fn remove(&self, key: Key, ttl: Duration) -> Result<(), StoreError> {
        each!(self, b => b.remove(key, ttl).await)
    }

    /// Takes the lease `key` for `holder` if free; true when taken.
    pub async fn lease(&self, key: Key, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Backend::Memory(b) => Ok(b.leases.take(key, holder, ttl)),
            Backend::Embedded(b) => Ok(b.leases.take(key, holder, ttl)),
            Backend::Redis(b) => b.lease(key, holder, ttl).await,
        }
    }

    /// Extends a lease `holder` still holds; false when it lost it.
    pub async fn renew(&self, key: Key, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Backend::Memory(b) => Ok(b.leases.renew(key, holder, ttl)),
            Backend::Embedded(b) => Ok(b.leases.renew(key, holder, ttl)),
            Backend::Redis(b) => b.renew(key, holder, ttl).await,
        }
    }

    /// Gives a lease up if `holder` still holds it.
    pub async fn release(&self, key: Key, holder: &str) -> Result<(), StoreError> {
        match self {
            Backend::Memory(b) => b.leases.release(key, holder),
            Backend::Embedded(b) => b.leases.release(key, holder),
            Backend::Redis(b) => return b.release(key, holder).await,
        }
        Ok(())
    }

    /// Deletes expired entries (Redis expires them itself); how many.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        each!(self, b => b.purge().await)
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        each!(self, b => b.ping().await)
    }

    /// The periodic check: whether the store answers and, on Redis, its
    /// epoch (set to `fresh_epoch` when missing: the data was lost or
    /// this is the first replica) and the endings logged since
    /// `since_ms` (the server's time).
    pub async fn check(&self, fresh_epoch: &str, since_ms: u64) -> Result<Checked, StoreError> {
        match self {
            Backend::Redis(b) => b.check(fresh_epoch, since_ms).await,
            _ => {
                self.ping().await?;
                Ok(Checked::default())
            }
        }
    }
}

/// What the periodic check found.
#[derive(Debug, Default)]
pub struct Checked {
    /// The store's epoch, when it keeps one (Redis): a different one than
    /// last time means it lost its data.
    pub epoch: Option<String>,
    /// Endings logged by any replica: store hash, and when each would
    /// have ended anyway (ms since the epoch).
    pub endings: Vec<([u8; 32], u64)>,
    /// The server's time of the latest ending read, for the next check.
    pub read_to_ms: u64,
    /// The backend moved to another server since the last check (a
    /// Sentinel failover): writes made to the old one just before may be
    /// lost, as when the store loses its data.
    pub switched: bool,
}

/// The decision of `update`, shared by the in-process backends.
fn decide(current: Option<&[u8]>, tombstoned: bool, value: &[u8]) -> Update {
    if tombstoned {
        return Update::Gone;
    }
    match current {
        Some(cur) if generation_of(cur) > generation_of(value) => Update::Stale,
        _ => Update::Written,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_round_trip_and_compare_as_numbers() {
        let g = generation_prefix(42);
        assert_eq!(&g, b"00000000000000000042");
        let mut v = g.to_vec();
        v.extend_from_slice(b"sealed");
        assert_eq!(generation_of(&v), 42);
        assert_eq!(generation_of(b"junk"), 0);
        let newer = [generation_prefix(10).as_slice(), b"x"].concat();
        let older = [generation_prefix(9).as_slice(), b"x"].concat();
        assert_eq!(decide(Some(&newer), false, &older), Update::Stale);
        assert_eq!(decide(Some(&older), false, &newer), Update::Written);
        assert_eq!(decide(None, false, &older), Update::Written);
        assert_eq!(decide(None, true, &older), Update::Gone);
    }

    #[test]
    fn redis_keys_carry_the_prefix_namespace_and_hash() {
        let k = Key::new(Namespace::Session, [0xab; 32]);
        let text = k.to_redis("p:");
        assert!(text.starts_with("p:s:abab"));
        assert_eq!(text.len(), 2 + 2 + 64);
        assert_eq!(k.with(Namespace::Lease).to_bytes()[0], b'l');
    }
}
