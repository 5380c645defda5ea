//! [`Sessions`]: live sessions cached in memory, written through to the
//! configured backend as sealed records.
//!
//! - A cookie the cache does not know is looked up in the store (lazily:
//!   nothing is loaded at start-up), under the HMAC of every configured
//!   key, newest first; a record found under an older key is moved to the
//!   current one.
//! - Records carry their token generation; writes are generation-checked
//!   (`Update`), so an older copy never overwrites a newer one, and a
//!   signed-out session leaves a tombstone so no replica writes it back.
//! - With Redis, cached sessions are re-read every `revalidate_interval`
//!   and the current access token is shared (sealed, with a TTL no longer
//!   than its expiry) so replicas do not refresh the same session twice.
//! - When the store fails, cached sessions keep working; when it answers
//!   again, every sign-out made meanwhile and every cached session is
//!   written back.
//! - Every ending (sign-out, revocation, idle end) is remembered here
//!   (`endings.rs`) until it would have ended anyway, and with Redis logged
//!   for the other replicas, which read the log at every check. A Redis
//!   that lost its data (its epoch changed) gets every remembered ending
//!   back as a tombstone first and the cached sessions only
//!   [`RESTORE_SETTLE`] later, so no replica writes back what another
//!   ended; a remembered ending is never loaded, saved or written back.
//! - All cookie values and keys of a lookup are one read (`MGET`); ids
//!   without a record are answered from memory for a few seconds.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use super::backend::{Backend, EPOCH, Key, Namespace, RESTORING, StoreError, Update};
use super::endings::{Absent, Endings};
use super::record::{self, StoredAccess};
use super::{Session, SessionKey, open};
use crate::clock::Clock;
use crate::config::{SessionConfig, StorePlan};
use crate::metrics::Metrics;
use crate::metrics::StoreOp;
use crate::seal::Sealer;

mod leases;
mod restore;
mod sealing;

use self::restore::{Epoch, Restore};

/// How long a refresh lease lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// Unreadable records remembered so each is logged once.
const MAX_LOGGED: usize = 10_000;
/// After a data loss, how long cached sessions wait before they are
/// written back: meanwhile every replica puts its endings back (each
/// notices within one store check).
pub const RESTORE_SETTLE: Duration = Duration::from_secs(5);

/// What re-reading a cached session found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// Nothing newer.
    Same,
    /// Another replica refreshed: its tokens were taken.
    Newer,
    /// Signed out elsewhere.
    Gone,
}

/// Live sessions and their store.
pub struct Sessions {
    cache: DashMap<SessionKey, Arc<Session>>,
    backend: Backend,
    sealer: Sealer,
    idle: Duration,
    max: Duration,
    revalidate: Duration,
    metrics: Arc<Metrics>,
    clock: Clock,
    up: AtomicBool,
    /// Sign-outs the store missed, replayed when it answers again.
    removals: Mutex<Vec<(Key, SystemTime)>>,
    logged: Mutex<HashSet<[u8; 32]>>,
    /// Sessions known to have ended: never loaded, saved or written back.
    endings: Endings,
    /// Ids that had no record moments ago.
    absent: Absent,
    epoch: Mutex<Epoch>,
    /// The server time (ms) up to which the ending log was read.
    log_read_to: AtomicU64,
    /// Whether the start-up log has said that the store answers.
    announced: AtomicBool,
    /// Serialise the edits of a user's token list in this process.
    list_locks: [tokio::sync::Mutex<()>; LIST_LOCKS],
}

/// Locks of users' token lists (striped).
const LIST_LOCKS: usize = 64;

// === impl Sessions ===

impl Sessions {
    /// Opens the configured store. The embedded database and, without a
    /// configured key file, a key file beside it are created (mode 0600).
    /// Sessions and the in-process backends keep time by `clock`.
    pub fn open(
        config: &SessionConfig,
        plan: &StorePlan,
        metrics: Arc<Metrics>,
        clock: &Clock,
    ) -> Result<Self, String> {
        Self::open_as(config, plan, metrics, clock, true)
    }

    /// Opens the store beside a running proxy (`ado-auth-proxy login`).
    pub fn open_for_tool(
        config: &SessionConfig,
        plan: &StorePlan,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        Self::open_as(config, plan, metrics, &Clock::default(), false)
    }

    fn open_as(
        config: &SessionConfig,
        plan: &StorePlan,
        metrics: Arc<Metrics>,
        clock: &Clock,
        owner: bool,
    ) -> Result<Self, String> {
        let backend = open::backend(config, plan, clock, owner)?;
        let sealer = open::sealer(config, &backend)?;
        tracing::info!(store = backend.name(), "session store opened");
        metrics.store.up.set(1);
        Ok(Self {
            cache: DashMap::new(),
            backend,
            sealer,
            idle: config.idle_timeout,
            max: config.max_lifetime,
            revalidate: config.revalidate_interval,
            metrics,
            clock: clock.clone(),
            up: AtomicBool::new(true),
            removals: Mutex::new(Vec::new()),
            logged: Mutex::new(HashSet::new()),
            endings: Endings::default(),
            absent: Absent::default(),
            epoch: Mutex::new(Epoch {
                known: None,
                restore: Restore::Idle,
            }),
            log_read_to: AtomicU64::new(0),
            announced: AtomicBool::new(false),
            list_locks: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
        })
    }

    /// The time sessions are kept by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether replicas share the store.
    pub fn shared(&self) -> bool {
        self.backend.shared()
    }

    /// Whether the store answered last time it was asked.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Sessions cached in this process.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// HMAC of a session id under the current key.
    pub fn store_key(&self, id: &str) -> [u8; 32] {
        self.sealer.store_keys(id)[0]
    }

    /// The session for a cookie value: cached, or loaded from the store.
    pub async fn lookup(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self
            .lookup_many(std::slice::from_ref(&id.to_string()))
            .await?
            .pop()
            .flatten())
    }

    /// The sessions for several cookie values, in order: cached, answered
    /// from memory (known to have ended, or absent moments ago), or read
    /// from the store under every configured key at once (one command).
    pub async fn lookup_many(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<Arc<Session>>>, StoreError> {
        let mut out = vec![None; ids.len()];
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let mut wanted: Vec<(usize, SessionKey, Vec<[u8; 32]>)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let ck = SessionKey::of(id);
            if let Some(s) = self.cache.get(&ck).map(|e| e.value().clone()) {
                if self.shared() && s.check_due(self.revalidate) {
                    // A failed look keeps the cached session working.
                    if let Ok(Reloaded::Gone) = self.reload(&s).await {
                        continue;
                    }
                }
                out[i] = Some(s);
                continue;
            }
            if wanted.iter().any(|(_, k, _)| *k == ck) {
                continue;
            }
            let hashes = self.sealer.store_keys(id);
            if self.absent.contains(&ck, now) || self.endings.contains(&hashes[0], wall) {
                self.metrics
                    .store
                    .loaded(crate::metrics::LoadOutcome::Remembered);
                continue;
            }
            wanted.push((i, ck, hashes));
        }
        if wanted.is_empty() {
            return Ok(out);
        }
        if self.restoring() {
            // Another replica may still be writing this one back.
            return Err(self.restoring_error());
        }
        let keys: Vec<Key> = wanted
            .iter()
            .flat_map(|(_, _, hs)| hs.iter().map(|h| Key::new(Namespace::Session, *h)))
            .collect();
        let (raws, marked) = self.read_records(keys).await?;
        let mut raws = raws.into_iter();
        for (i, ck, hashes) in wanted {
            let found: Vec<Option<Vec<u8>>> = raws.by_ref().take(hashes.len()).collect();
            if marked && found.iter().all(Option::is_none) {
                return Err(self.restoring_error());
            }
            out[i] = self.load_found(ck, &hashes, found).await?;
        }
        Ok(out)
    }

    /// Reads session records; from a shared store in the same read the
    /// restore mark (while it stands, a session missing from the store
    /// may still be written back by another replica: the `bool`) and the
    /// epoch (a loss no check has seen yet: noticed now, so the restore
    /// starts, and answered "try again shortly", never "unknown"). The
    /// epoch is compared with the one known when the read began: a read
    /// that raced the first check (which writes the epoch) is no loss.
    async fn read_records(
        &self,
        mut keys: Vec<Key>,
    ) -> Result<(Vec<Option<Vec<u8>>>, bool), StoreError> {
        if !self.shared() {
            let raws = self.op(StoreOp::Get, self.backend.get_many(&keys)).await?;
            return Ok((raws, false));
        }
        keys.extend([RESTORING, EPOCH]);
        let known = self.known_epoch();
        let mut raws = self.op(StoreOp::Get, self.backend.get_many(&keys)).await?;
        let epoch = raws.pop().flatten();
        let marked = raws.pop().flatten().is_some();
        if known.is_some_and(|k| epoch.as_deref() != Some(k.as_bytes())) {
            let _ = self.observe().await;
            return Err(self.restoring_error());
        }
        Ok((raws, marked))
    }

    /// A session from what the store held under each of its hashes
    /// (current key first), cached; `None` (and remembered as absent)
    /// when none of them is a usable record.
    async fn load_found(
        &self,
        ck: SessionKey,
        hashes: &[[u8; 32]],
        found: Vec<Option<Vec<u8>>>,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        for (i, (hash, raw)) in hashes.iter().zip(found).enumerate() {
            let key = Key::new(Namespace::Session, *hash);
            let Some(raw) = raw else {
                continue;
            };
            let Some(rec) = self.open_record(key, &raw) else {
                continue;
            };
            let access = self.read_access(key).await;
            let session = Arc::new(Session::restore(ck, hashes[0], rec, access, &self.clock));
            if i > 0 {
                // Written before a key rotation: move it to the current key.
                self.save(&session).await?;
                let ttl = self.tombstone_ttl(&session);
                self.op(StoreOp::Remove, self.backend.remove(key, ttl))
                    .await?;
                self.metrics
                    .store
                    .loaded(crate::metrics::LoadOutcome::Migrated);
            } else {
                self.metrics
                    .store
                    .loaded(crate::metrics::LoadOutcome::Loaded);
            }
            let s = self.cache.entry(ck).or_insert(session).value().clone();
            self.gauge();
            return Ok(Some(s));
        }
        self.absent.insert(ck, self.clock.now());
        self.metrics
            .store
            .loaded(crate::metrics::LoadOutcome::Absent);
        Ok(None)
    }

    /// Stores a new session and caches it.
    pub async fn create(&self, session: Arc<Session>) -> Result<(), StoreError> {
        let key = Key::new(Namespace::Session, session.store_key);
        self.share_access(&session).await;
        let value = self.seal_record(key, &session.record());
        let ttl = session.remaining(self.idle, self.max);
        self.op(StoreOp::Put, self.backend.put(key, value, ttl))
            .await?;
        self.cache.insert(session.key, session);
        self.gauge();
        Ok(())
    }

    /// Caches a session without writing it (benchmarks).
    #[doc(hidden)]
    pub fn cache_insert(&self, session: Arc<Session>) {
        self.cache.insert(session.key, session);
    }

    /// Stores many new sessions at once, uncached (benchmarks: a large
    /// store in one commit).
    #[doc(hidden)]
    pub async fn create_batch(&self, sessions: &[Arc<Session>]) -> Result<(), StoreError> {
        let items = sessions
            .iter()
            .map(|s| {
                let key = Key::new(Namespace::Session, s.store_key);
                let ttl = s.remaining(self.idle, self.max);
                (key, self.seal_record(key, &s.record()), ttl)
            })
            .collect();
        self.op(StoreOp::Put, self.backend.put_many(items)).await
    }

    /// Writes a session's current state (after a refresh, or to record
    /// its use). `Gone` means it was signed out elsewhere: it is dropped
    /// here too.
    pub async fn save(&self, session: &Session) -> Result<Update, StoreError> {
        if self.endings.contains(&session.store_key, self.clock.wall()) {
            self.forget(&session.key);
            return Ok(Update::Gone);
        }
        if self.restoring() {
            // Written back with every cached session once the endings are.
            return Ok(Update::Written);
        }
        let key = Key::new(Namespace::Session, session.store_key);
        self.share_access(session).await;
        let value = self.seal_record(key, &session.record());
        let ttl = session.remaining(self.idle, self.max);
        let outcome = self
            .op(StoreOp::Update, self.backend.update(key, value, ttl))
            .await?;
        if outcome == Update::Gone {
            self.ended_elsewhere(session);
        }
        Ok(outcome)
    }

    /// Ends a session everywhere. When the store is unreachable it ends
    /// here at once and in the store when the store answers again.
    pub async fn remove(&self, session: &Session) {
        self.remove_key(session.key, session.store_key, session.hard_end(self.max))
            .await;
    }

    /// [`remove`](Self::remove) by keys, for a session not at hand (a
    /// revoked personal token's); `until` is when it would have ended.
    pub async fn remove_key(&self, cache_key: SessionKey, store_key: [u8; 32], until: SystemTime) {
        self.forget(&cache_key);
        self.endings.remember(store_key, until, self.clock.wall());
        let key = Key::new(Namespace::Session, store_key);
        let ttl = until
            .duration_since(self.clock.wall())
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        if self
            .op(StoreOp::Remove, self.backend.remove(key, ttl))
            .await
            .is_err()
            && let Ok(mut q) = self.removals.lock()
        {
            q.push((key, until));
        }
    }

    /// Splits cookie values into those this process holds and the others,
    /// so callers settle the held ones first, without the store.
    pub fn split_held(&self, ids: Vec<String>) -> (Vec<String>, Vec<String>) {
        if ids.len() < 2 {
            // One value (nearly every request): nothing to order, and no
            // second hash of it.
            return (ids, Vec::new());
        }
        ids.into_iter()
            .partition(|id| self.cache.contains_key(&SessionKey::of(id)))
    }

    /// Whether this process's cache still holds `session` itself (a
    /// sign-out or revocation here drops it).
    pub fn holds(&self, session: &Arc<Session>) -> bool {
        self.cache
            .get(&session.key)
            .is_some_and(|s| Arc::ptr_eq(s.value(), session))
    }

    /// Drops a session from this process's cache only.
    pub fn forget(&self, key: &SessionKey) {
        self.cache.remove(key);
        self.gauge();
    }

    /// Notes a session that the store says ended (its tombstone).
    fn ended_elsewhere(&self, session: &Session) {
        self.endings.remember(
            session.store_key,
            session.hard_end(self.max),
            self.clock.wall(),
        );
        self.forget(&session.key);
    }

    /// Re-reads a cached session: takes newer tokens, notices a sign-out,
    /// and re-creates the record if the store lost it.
    pub async fn reload(&self, session: &Session) -> Result<Reloaded, StoreError> {
        if self.endings.contains(&session.store_key, self.clock.wall()) {
            self.forget(&session.key);
            return Ok(Reloaded::Gone);
        }
        let key = Key::new(Namespace::Session, session.store_key);
        match self.op(StoreOp::Get, self.backend.get(key)).await? {
            Some(raw) => {
                let Some(rec) = self.open_record(key, &raw) else {
                    return Ok(Reloaded::Same);
                };
                session.note_seen(&rec);
                let access = self.read_access(key).await;
                Ok(if session.adopt(&rec, access.as_ref()) {
                    Reloaded::Newer
                } else {
                    Reloaded::Same
                })
            }
            None => {
                // A lost record: if the store lost everything, the
                // endings go back before any session is written back.
                if self.shared() && self.observe().await? {
                    return Ok(Reloaded::Same);
                }
                Ok(match self.save(session).await? {
                    Update::Gone => Reloaded::Gone,
                    _ => Reloaded::Same,
                })
            }
        }
    }

    /// The backend, for the other record kinds of this module's siblings.
    pub(super) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The token-list locks.
    pub(super) fn list_locks(&self) -> &[tokio::sync::Mutex<()>] {
        &self.list_locks
    }

    /// The sealer, for records this module's siblings keep.
    pub(super) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The metrics.
    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store hashes of `id` under every seal key, current first.
    pub(super) fn sealer_keys(&self, id: &str) -> Vec<[u8; 32]> {
        self.sealer.store_keys(id)
    }

    /// Seals `plaintext` for `key`.
    pub(super) fn seal_for(&self, key: &Key, plaintext: &[u8]) -> Vec<u8> {
        self.sealer.seal(&key.to_bytes(), plaintext)
    }

    /// Opens what [`seal_for`](Self::seal_for) sealed for `key`.
    pub(super) fn open_for(&self, key: &Key, sealed: &[u8]) -> Option<Vec<u8>> {
        self.sealer.open(&key.to_bytes(), sealed).ok()
    }

    /// Housekeeping: forgets ended sessions here, expired entries in the
    /// embedded or memory store.
    pub async fn sweep(&self, ended: &(dyn Fn(&Session) -> bool + Sync)) {
        self.cache.retain(|_, s| !ended(s));
        self.gauge();
        match self.op(StoreOp::Purge, self.backend.purge()).await {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "expired store entries deleted"),
            _ => {}
        }
    }

    /// Runs a store operation: counts failures and marks the store down.
    pub(super) async fn op<T>(
        &self,
        name: StoreOp,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let r = f.await;
        if let Err(e) = &r {
            self.metrics.store.failed(name);
            if self.up.swap(false, Ordering::AcqRel) {
                tracing::warn!(
                    error = %e,
                    "session store failed; cached sessions keep working, new sign-ins wait"
                );
                self.metrics.store.up.set(0);
            }
        }
        r
    }

    /// Another replica's access token for this session, if shared.
    async fn read_access(&self, key: Key) -> Option<StoredAccess> {
        if !self.shared() {
            return None;
        }
        let key = key.with(Namespace::Access);
        let raw = self.op(StoreOp::Get, self.backend.get(key)).await.ok()??;
        let json = self.sealer.open(&key.to_bytes(), &raw).ok()?;
        let a: StoredAccess = record::decode(&json).ok()?;
        (a.expires_ms > self.clock.now_ms()).then_some(a)
    }

    /// Shares the current access token with other replicas (Redis only),
    /// for no longer than it is valid.
    async fn share_access(&self, session: &Session) {
        if !self.shared() {
            return;
        }
        let Some(a) = session.access_record() else {
            return;
        };
        let key = Key::new(Namespace::Access, session.store_key);
        let ttl = Duration::from_millis(a.expires_ms.saturating_sub(self.clock.now_ms()));
        let json = serde_json::to_vec(&a).unwrap_or_default();
        let sealed = self.sealer.seal(&key.to_bytes(), &json);
        // Not fatal: the other replicas refresh for themselves.
        let _ = self
            .op(StoreOp::Put, self.backend.put(key, sealed, ttl))
            .await;
    }

    fn tombstone_ttl(&self, session: &Session) -> Duration {
        session
            .hard_end(self.max)
            .duration_since(self.clock.wall())
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1))
    }

    fn gauge(&self) {
        self.metrics
            .login
            .sessions_active
            .set(self.cache.len() as i64);
    }
}
