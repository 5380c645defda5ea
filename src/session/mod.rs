//! Signed-in users' sessions: the opaque id in the cookie, the record it
//! maps to (identity and tokens), and the store that holds them.
//!
//! [`Sessions`] (`store.rs`) caches live sessions in a `dashmap` keyed by
//! a SHA-256 of the session id, so the map never holds a cookie value,
//! and writes them through to a backend (`backend/`: embedded redb file,
//! Redis or memory) as records (`record.rs`) sealed with AES-256-GCM
//! (`seal.rs`) under an HMAC of the id.

pub mod backend;
mod endings;
mod open;
pub mod personal;
pub(crate) mod record;
mod service_record;
mod store;
mod tokens;
mod user;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::clock::unix_ms;
use crate::config::Secret;

pub use store::{LEASE_TTL, Reloaded, Sessions};
pub use tokens::{TenantToken, Tokens};
pub use user::{Member, UserInfo};

pub use self::record::TokenName;
use self::record::{RECORD_VERSION, StoredAccess, StoredSession};

/// The key a session is cached under: SHA-256 of its id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SessionKey([u8; 32]);

/// A signed-in user's session.
pub struct Session {
    /// Its cache key.
    pub key: SessionKey,
    /// HMAC of the id under the current seal key: where it is stored.
    pub store_key: [u8; 32],
    /// Who signed in.
    pub user: UserInfo,
    /// When the user signed in.
    pub created: SystemTime,
    /// A personal proxy token's session: when it ends. It never idles out
    /// and outlives `session.max_lifetime` when the token does.
    pub until: Option<SystemTime>,
    /// A personal proxy token's session: the token's id and name.
    pub token: Option<TokenName>,
    created_at: Instant,
    /// Milliseconds since `created_at` of the last use.
    last_seen_ms: AtomicU64,
    tokens: RwLock<Tokens>,
    /// Serialises refreshes: one token call per session at a time.
    pub refresh: tokio::sync::Mutex<crate::gate::Attempts>,
    /// Mirrors `Attempts::count`, readable without the lock, so a
    /// waiter can tell that an attempt finished while it waited.
    attempts: AtomicU64,
    /// The ID token, kept only as a logout hint for the provider.
    pub id_token: Option<Secret>,
    /// Access tokens from other directories than the one the user signed
    /// in to, by tenant id (organizations of other directories accept
    /// only theirs). In memory only: each replica redeems its own. The
    /// lock makes one redemption per session at a time.
    pub other_tenants: tokio::sync::Mutex<std::collections::HashMap<String, TenantToken>>,
    /// Milliseconds since `created_at` of the last look at the store.
    checked_ms: AtomicU64,
    /// `last_seen_ms` as last written to the store.
    saved_seen_ms: AtomicU64,
    clock: Clock,
}

/// The tokens a sign-in was answered with.
pub struct Issued {
    /// The access token.
    pub access_token: Secret,
    /// Its lifetime.
    pub expires_in: Duration,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<Secret>,
    /// The ID token, kept only as a logout hint.
    pub id_token: Option<Secret>,
    /// The user's groups and roles as found at sign-in.
    pub member: Member,
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

// === impl SessionKey ===

impl SessionKey {
    /// The key for a cookie value.
    pub fn of(id: &str) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Its bytes, to name the key in a list.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// The key named by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
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
    /// A new session for `user` with the tokens just `issued`, keeping
    /// time by `clock`.
    pub fn new(
        key: SessionKey,
        store_key: [u8; 32],
        user: UserInfo,
        issued: Issued,
        clock: &Clock,
    ) -> Option<Self> {
        let mut tokens = Tokens::new(
            &issued.access_token,
            issued.expires_in,
            issued.refresh_token.map(Arc::new),
            1,
            clock,
        )?;
        tokens.member = Arc::new(issued.member);
        Some(Self::with_tokens(
            key,
            store_key,
            user,
            (clock.wall(), clock.now()),
            tokens,
            issued.id_token,
            clock,
        ))
    }

    fn with_tokens(
        key: SessionKey,
        store_key: [u8; 32],
        user: UserInfo,
        (created, created_at): (SystemTime, Instant),
        tokens: Tokens,
        id_token: Option<Secret>,
        clock: &Clock,
    ) -> Self {
        Self {
            key,
            store_key,
            user,
            created,
            until: None,
            token: None,
            created_at,
            last_seen_ms: AtomicU64::new(0),
            tokens: RwLock::new(tokens),
            refresh: tokio::sync::Mutex::new(crate::gate::Attempts::default()),
            attempts: AtomicU64::new(0),
            id_token,
            other_tenants: tokio::sync::Mutex::default(),
            checked_ms: AtomicU64::new(0),
            saved_seen_ms: AtomicU64::new(0),
            clock: clock.clone(),
        }
    }

    /// A session read back from the store. Its access token comes from
    /// the shared copy when that belongs to the record's generation;
    /// otherwise it has none and refreshes on first use.
    pub fn restore(
        key: SessionKey,
        store_key: [u8; 32],
        rec: StoredSession,
        access: Option<StoredAccess>,
        clock: &Clock,
    ) -> Self {
        let created = UNIX_EPOCH + Duration::from_millis(rec.created_ms);
        let age = clock.wall().duration_since(created).unwrap_or_default();
        let now = clock.now();
        let created_at = now.checked_sub(age).unwrap_or(now);
        let refresh = rec.refresh_token.map(|t| Arc::new(Secret::new(t)));
        let mut tokens = access
            .filter(|a| a.generation == rec.generation)
            .and_then(|a| Tokens::from_stored(&a, refresh.clone(), clock))
            .unwrap_or_else(|| Tokens::expired(refresh, rec.generation, clock));
        tokens.member = Arc::new(rec.member);
        let s = Self::with_tokens(
            key,
            store_key,
            rec.user,
            (created, created_at),
            tokens,
            rec.id_token.map(Secret::new),
            clock,
        );
        let mut s = s;
        s.until = rec
            .until_ms
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        s.token = rec.token;
        let seen = rec.seen_ms.saturating_sub(rec.created_ms);
        s.last_seen_ms.store(seen, Ordering::Relaxed);
        s.saved_seen_ms.store(seen, Ordering::Relaxed);
        s.checked_ms.store(s.age_ms(), Ordering::Relaxed);
        s
    }

    /// When the session ends at the latest, whatever its use.
    pub fn hard_end(&self, max: Duration) -> SystemTime {
        self.until.unwrap_or(self.created + max)
    }

    /// A personal proxy token's session, acting for `owner`'s user with
    /// `owner`'s tokens (its own copy of the refresh token: Entra's stay
    /// valid after use, so both refresh independently) until `until`.
    pub fn for_token(
        key: SessionKey,
        store_key: [u8; 32],
        owner: &Session,
        (until, token): (SystemTime, TokenName),
        clock: &Clock,
    ) -> Self {
        let mut s = Self::with_tokens(
            key,
            store_key,
            owner.user.clone(),
            (clock.wall(), clock.now()),
            owner.tokens(),
            None,
            clock,
        );
        s.until = Some(until);
        s.token = Some(token);
        s
    }

    /// What the store keeps of this session.
    pub fn record(&self) -> StoredSession {
        let t = self.tokens();
        let created_ms = unix_ms(self.created);
        StoredSession {
            v: RECORD_VERSION,
            user: self.user.clone(),
            created_ms,
            seen_ms: created_ms + self.last_seen_ms.load(Ordering::Relaxed),
            generation: t.generation,
            refresh_token: t.refresh_token.as_ref().map(|r| r.expose().to_string()),
            id_token: self.id_token.as_ref().map(|t| t.expose().to_string()),
            until_ms: self.until.map(unix_ms),
            token: self.token.clone(),
            member: (*t.member).clone(),
        }
    }

    /// The current access token for other replicas, unless expired.
    pub fn access_record(&self) -> Option<StoredAccess> {
        let t = self.tokens();
        let left = t.expires_at.checked_duration_since(self.clock.now())?;
        let token = t.header.to_str().ok()?.strip_prefix("Bearer ")?.to_string();
        if token.is_empty() {
            return None;
        }
        Some(StoredAccess {
            v: RECORD_VERSION,
            generation: t.generation,
            token,
            expires_ms: unix_ms(self.clock.wall() + left),
            lifetime_ms: t.lifetime.as_millis() as u64,
        })
    }

    /// Takes tokens another replica stored, when newer than ours.
    pub fn adopt(&self, rec: &StoredSession, access: Option<&StoredAccess>) -> bool {
        let mut guard = match self.tokens.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if rec.generation <= guard.generation {
            return false;
        }
        let refresh = rec
            .refresh_token
            .as_ref()
            .map(|t| Arc::new(Secret::new(t.clone())));
        let mut next = access
            .filter(|a| a.generation == rec.generation)
            .and_then(|a| Tokens::from_stored(a, refresh.clone(), &self.clock))
            .unwrap_or_else(|| Tokens::expired(refresh, rec.generation, &self.clock));
        next.member = Arc::new(rec.member.clone());
        *guard = next;
        true
    }

    /// Takes a later last use recorded by another replica, so a session
    /// used elsewhere is not ended here as idle.
    pub fn note_seen(&self, rec: &StoredSession) {
        let seen = rec.seen_ms.saturating_sub(unix_ms(self.created));
        self.last_seen_ms.fetch_max(seen, Ordering::Relaxed);
        self.saved_seen_ms.fetch_max(seen, Ordering::Relaxed);
    }

    /// Whether the store should be consulted again (once per `every`).
    pub fn check_due(&self, every: Duration) -> bool {
        let now = self.age_ms();
        let last = self.checked_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= every.as_millis() as u64
            && self
                .checked_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether the last use should be written to the store: once it is
    /// `every` newer than what was written. Claims the write.
    pub fn seen_save_due(&self, every: Duration) -> bool {
        let seen = self.last_seen_ms.load(Ordering::Relaxed);
        let saved = self.saved_seen_ms.load(Ordering::Relaxed);
        seen.saturating_sub(saved) >= every.as_millis() as u64
            && self
                .saved_seen_ms
                .compare_exchange(saved, seen, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// How long the store should keep the record: until the session
    /// would end by age or idleness.
    pub fn remaining(&self, idle: Duration, max: Duration) -> Duration {
        self.expires(idle, max)
            .duration_since(self.clock.wall())
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1))
    }

    /// A snapshot of the current tokens.
    pub fn tokens(&self) -> Tokens {
        match self.tokens.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the tokens after a refresh; a missing refresh token in the
    /// answer keeps the old one (providers that do not rotate). `member`
    /// is what was found with the new tokens; without it they carry
    /// none (never the previous generation's: a replica that reads no
    /// groups must not vouch for a finding it did not make).
    pub fn set_tokens(
        &self,
        access_token: &Secret,
        expires_in: Duration,
        refresh_token: Option<Secret>,
        member: Option<Member>,
    ) -> Option<Tokens> {
        let mut guard = match self.tokens.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let refresh = refresh_token
            .map(Arc::new)
            .or_else(|| guard.refresh_token.clone());
        let mut next = Tokens::new(
            access_token,
            expires_in,
            refresh,
            guard.generation + 1,
            &self.clock,
        )?;
        next.member = Arc::new(member.unwrap_or_default());
        *guard = next.clone();
        Some(next)
    }

    /// Calls started so far (see [`crate::gate::Attempts::count`]).
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    /// Records that a token call starts.
    pub fn note_attempt(&self, state: &mut crate::gate::Attempts) {
        state.count += 1;
        self.attempts.store(state.count, Ordering::Release);
    }

    /// Marks the session used now.
    pub fn touch(&self) {
        self.last_seen_ms.store(self.age_ms(), Ordering::Relaxed);
    }

    /// The time the session keeps by (the store's).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Milliseconds since the session began.
    fn age_ms(&self) -> u64 {
        self.clock.since(self.created_at).as_millis() as u64
    }

    /// Whether the session has ended by idleness or age.
    pub fn ended(&self, idle: Duration, max: Duration) -> Option<Miss> {
        if let Some(until) = self.until {
            return (self.clock.wall() >= until).then_some(Miss::Expired);
        }
        let age = self.clock.since(self.created_at);
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
        if let Some(until) = self.until {
            return until;
        }
        let last = Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        let by_idle = last + idle;
        self.created + by_idle.min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        session_at(id, &Clock::default())
    }

    fn session_at(id: &str, clock: &Clock) -> Session {
        let issued = Issued {
            access_token: Secret::new("at"),
            expires_in: Duration::from_secs(60),
            refresh_token: Some(Secret::new("rt")),
            id_token: None,
            member: Default::default(),
        };
        Session::new(
            SessionKey::of(id),
            [0; 32],
            UserInfo::default(),
            issued,
            clock,
        )
        .unwrap()
    }

    #[test]
    fn sessions_end_by_idleness_and_by_age() {
        let clock = Clock::default();
        let s = session_at("a", &clock);
        let (idle, max) = (Duration::from_secs(600), Duration::from_secs(3600));
        assert_eq!(s.ended(idle, max), None);
        clock.advance(Duration::from_secs(599));
        assert_eq!(s.ended(idle, max), None);
        clock.advance(Duration::from_secs(1));
        assert_eq!(s.ended(idle, max), Some(Miss::Idle));
        s.touch();
        assert_eq!(s.ended(idle, max), None, "use resets idleness");
        clock.advance(Duration::from_secs(3000));
        s.touch();
        assert_eq!(s.ended(idle, max), Some(Miss::Expired));
    }

    #[test]
    fn rotation_keeps_the_refresh_token_when_none_is_sent_and_bumps_the_generation() {
        let s = session("b");
        let first = s.tokens();
        let next = s
            .set_tokens(&Secret::new("at2"), Duration::from_secs(60), None, None)
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
                None,
            )
            .unwrap();
        assert_eq!(rotated.refresh_token.unwrap().expose(), "rt3");
    }

    #[test]
    fn a_session_survives_its_record_and_adopts_newer_tokens() {
        let clock = Clock::default();
        let s = session_at("c", &clock);
        clock.advance(Duration::from_millis(5));
        s.touch();
        let rec = s.record();
        assert_eq!(rec.generation, 1);
        assert_eq!(rec.refresh_token.as_deref(), Some("rt"));
        let access = s.access_record().expect("a valid access token is shared");
        assert_eq!(access.token, "at");
        let back = Session::restore(
            SessionKey::of("c"),
            [0; 32],
            serde_json::from_slice(&serde_json::to_vec(&rec).unwrap()).unwrap(),
            None,
            &clock,
        );
        // Without the shared access token the restored session refreshes
        // on first use; its sign-in time and last use are kept.
        assert!(back.tokens().expires_at <= clock.now());
        assert_eq!(unix_ms(back.created), unix_ms(s.created));
        assert_eq!(back.record().seen_ms, rec.seen_ms);
        assert!(back.access_record().is_none());
        // With it (same generation) the token is used as is.
        let with = Session::restore(
            SessionKey::of("c"),
            [0; 32],
            back.record(),
            Some(access),
            &clock,
        );
        assert_eq!(with.tokens().header, "Bearer at");
        // Another replica's newer generation is adopted, an older one not.
        let mut newer = s.record();
        newer.generation = 5;
        newer.refresh_token = Some("rt5".into());
        assert!(with.adopt(&newer, None));
        assert_eq!(with.tokens().generation, 5);
        assert_eq!(with.tokens().refresh_token.unwrap().expose(), "rt5");
        assert!(!with.adopt(&rec, None), "an older generation is ignored");
    }
}
