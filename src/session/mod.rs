//! Signed-in users' sessions: the opaque id in the cookie, the record it
//! maps to (identity and tokens), and the store that holds them.
//!
//! The store is an in-memory `dashmap` keyed by a SHA-256 of the session
//! id, so the map never holds a cookie value. The persistence issue puts a
//! durable backend behind [`SessionStore`]; nothing above it changes.

mod cache;
pub mod seal;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::login::provider::UserInfo;

pub use cache::MemoryStore;

/// The key a session is stored under: SHA-256 of its id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey([u8; 32]);

/// A signed-in user's session.
pub struct Session {
    /// Its store key.
    pub key: SessionKey,
    /// Who signed in.
    pub user: UserInfo,
    /// When the user signed in.
    pub created: SystemTime,
    created_at: Instant,
    /// Milliseconds since `created_at` of the last use.
    last_seen_ms: AtomicU64,
    tokens: RwLock<Tokens>,
    /// Serialises refreshes: one token call per session at a time.
    pub refresh: tokio::sync::Mutex<RefreshState>,
    /// Mirrors `RefreshState::attempts`, readable without the lock, so a
    /// waiter can tell that an attempt finished while it waited.
    attempts: AtomicU64,
    /// The ID token, kept only as a logout hint for the provider.
    pub id_token: Option<Secret>,
}

/// The session's current tokens.
#[derive(Clone)]
pub struct Tokens {
    /// `Bearer <access token>`, marked sensitive.
    pub header: HeaderValue,
    /// When the access token expires.
    pub expires_at: Instant,
    /// Its lifetime when issued.
    pub lifetime: Duration,
    /// Wall-clock expiry, for `/.auth/me`.
    pub expires_at_wall: SystemTime,
    /// The refresh token, if any; shared so that the snapshot every
    /// request takes does not copy it.
    pub refresh_token: Option<Arc<Secret>>,
    /// Bumped on every change; tells a waiter someone else refreshed.
    pub generation: u64,
}

/// Bookkeeping of the refresh single flight (held under `Session::refresh`).
#[derive(Default)]
pub struct RefreshState {
    /// Token calls made so far.
    pub attempts: u64,
    /// The outcome of the last call, shared with requests that waited for it.
    pub last_failure: Option<crate::login::idp::Failure>,
    /// No new call before this (backoff after transient failures).
    pub retry_at: Option<Instant>,
    /// The next backoff step.
    pub backoff: Duration,
}

/// Why a cookie did not lead to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No session cookie.
    NoCookie,
    /// A cookie that names no session (unknown, tampered or forgotten).
    Unknown,
    /// The session was idle too long.
    Idle,
    /// The session reached its maximum lifetime.
    Expired,
}

/// Storage of sessions by key.
pub trait SessionStore: Send + Sync {
    /// The session under `key`, if any.
    fn get(&self, key: &SessionKey) -> Option<Arc<Session>>;
    /// Stores `session`.
    fn put(&self, session: Arc<Session>);
    /// Forgets `key`.
    fn remove(&self, key: &SessionKey);
    /// How many sessions are stored.
    fn len(&self) -> usize;
    /// Whether none are.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops sessions for which `expired` says so.
    fn purge(&self, expired: &dyn Fn(&Session) -> bool);
}

// === impl SessionKey ===

impl SessionKey {
    /// The key for a cookie value.
    pub fn of(id: &str) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A short prefix of the hash: enough to correlate logs, useless
        // to an attacker.
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

// === impl Session ===

impl Session {
    /// A new session for `user` with fresh tokens.
    pub fn new(
        key: SessionKey,
        user: UserInfo,
        access_token: &Secret,
        expires_in: Duration,
        refresh_token: Option<Secret>,
        id_token: Option<Secret>,
    ) -> Option<Self> {
        let tokens = Tokens::new(access_token, expires_in, refresh_token.map(Arc::new), 1)?;
        Some(Self {
            key,
            user,
            created: SystemTime::now(),
            created_at: Instant::now(),
            last_seen_ms: AtomicU64::new(0),
            tokens: RwLock::new(tokens),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            attempts: AtomicU64::new(0),
            id_token,
        })
    }

    /// A snapshot of the current tokens.
    pub fn tokens(&self) -> Tokens {
        match self.tokens.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the tokens after a refresh; a missing refresh token in the
    /// answer keeps the old one (providers that do not rotate).
    pub fn set_tokens(
        &self,
        access_token: &Secret,
        expires_in: Duration,
        refresh_token: Option<Secret>,
    ) -> Option<Tokens> {
        let mut guard = match self.tokens.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let refresh = refresh_token
            .map(Arc::new)
            .or_else(|| guard.refresh_token.clone());
        let next = Tokens::new(access_token, expires_in, refresh, guard.generation + 1)?;
        *guard = next.clone();
        Some(next)
    }

    /// Calls started so far (see [`RefreshState::attempts`]).
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    /// Records that a token call starts.
    pub fn note_attempt(&self, state: &mut RefreshState) {
        state.attempts += 1;
        self.attempts.store(state.attempts, Ordering::Release);
    }

    /// Marks the session used now.
    pub fn touch(&self) {
        let ms = self.created_at.elapsed().as_millis() as u64;
        self.last_seen_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether the session has ended by idleness or age.
    pub fn ended(&self, idle: Duration, max: Duration) -> Option<Miss> {
        let age = self.created_at.elapsed();
        if age >= max {
            return Some(Miss::Expired);
        }
        let last = Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        if age.saturating_sub(last) >= idle {
            return Some(Miss::Idle);
        }
        None
    }

    /// When the session ends at the latest (wall clock).
    pub fn expires(&self, idle: Duration, max: Duration) -> SystemTime {
        let last = Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        let by_idle = last + idle;
        self.created + by_idle.min(max)
    }
}

// === impl Tokens ===

impl Tokens {
    fn new(
        access_token: &Secret,
        expires_in: Duration,
        refresh_token: Option<Arc<Secret>>,
        generation: u64,
    ) -> Option<Self> {
        let mut header = HeaderValue::try_from(format!("Bearer {}", access_token.expose())).ok()?;
        header.set_sensitive(true);
        Some(Self {
            header,
            expires_at: Instant::now() + expires_in,
            lifetime: expires_in,
            expires_at_wall: SystemTime::now() + expires_in,
            refresh_token,
            generation,
        })
    }

    /// Seconds since the epoch of the access token's expiry.
    pub fn expires_unix(&self) -> u64 {
        unix(self.expires_at_wall)
    }
}

/// Seconds since the epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session::new(
            SessionKey::of(id),
            UserInfo::default(),
            &Secret::new("at"),
            Duration::from_secs(60),
            Some(Secret::new("rt")),
            None,
        )
        .unwrap()
    }

    #[test]
    fn sessions_end_by_idleness_and_by_age() {
        let s = session("a");
        let long = Duration::from_secs(3600);
        assert_eq!(s.ended(long, long), None);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(s.ended(Duration::from_millis(20), long), Some(Miss::Idle));
        s.touch();
        assert_eq!(
            s.ended(Duration::from_millis(20), long),
            None,
            "use resets idleness"
        );
        assert_eq!(
            s.ended(long, Duration::from_millis(20)),
            Some(Miss::Expired)
        );
    }

    #[test]
    fn rotation_keeps_the_refresh_token_when_none_is_sent_and_bumps_the_generation() {
        let s = session("b");
        let first = s.tokens();
        let next = s
            .set_tokens(&Secret::new("at2"), Duration::from_secs(60), None)
            .unwrap();
        assert_eq!(next.generation, first.generation + 1);
        assert_eq!(next.refresh_token.unwrap().expose(), "rt");
        assert_eq!(next.header, "Bearer at2");
        assert!(next.header.is_sensitive());
        let rotated = s
            .set_tokens(
                &Secret::new("at3"),
                Duration::from_secs(60),
                Some(Secret::new("rt3")),
            )
            .unwrap();
        assert_eq!(rotated.refresh_token.unwrap().expose(), "rt3");
    }

    #[test]
    fn the_store_is_keyed_by_a_hash_and_purges_ended_sessions() {
        let store = MemoryStore::default();
        store.put(Arc::new(session("one")));
        store.put(Arc::new(session("two")));
        assert!(store.get(&SessionKey::of("one")).is_some());
        assert!(store.get(&SessionKey::of("three")).is_none());
        // Logs show only a short prefix of the hash, never the id.
        assert_eq!(format!("{:?}", SessionKey::of("one")).len(), 8);
        store.purge(&|s| s.key == SessionKey::of("one"));
        assert_eq!(store.len(), 1);
        assert!(store.get(&SessionKey::of("one")).is_none());
    }
}
