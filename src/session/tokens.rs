//! A session's tokens: the access token as a ready `Authorization`
//! value with its expiry on the session's clock, the refresh token, and
//! the generation that orders replicas' copies.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use super::record::StoredAccess;
use crate::clock::{Clock, unix};
use crate::config::Secret;

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
    /// The user's groups and roles as found when this generation was
    /// issued.
    pub member: Arc<super::Member>,
}

/// What the proxy holds for one session in another directory.
#[derive(Clone)]
pub enum TenantToken {
    /// An access token that directory issued.
    Issued {
        /// `Bearer <access token>`, marked sensitive.
        header: HeaderValue,
        /// When it expires.
        expires_at: Instant,
        /// How long it was issued for.
        lifetime: Duration,
        /// Counts the tokens of this session and directory.
        generation: u64,
    },
    /// The directory refused to issue one (the user is no guest there,
    /// the app has no consent there); not asked again before `until`.
    Refused {
        /// When to ask again.
        until: Instant,
        /// The generation the next token will follow.
        generation: u64,
    },
}

// === impl Tokens ===

impl Tokens {
    /// Tokens without a usable access token: the next use refreshes.
    pub(super) fn expired(
        refresh_token: Option<Arc<Secret>>,
        generation: u64,
        clock: &Clock,
    ) -> Self {
        let mut header = HeaderValue::from_static("Bearer");
        header.set_sensitive(true);
        Self {
            header,
            expires_at: clock.now(),
            lifetime: Duration::ZERO,
            expires_at_wall: clock.wall(),
            refresh_token,
            generation,
            member: Arc::default(),
        }
    }

    pub(super) fn from_stored(
        a: &StoredAccess,
        refresh_token: Option<Arc<Secret>>,
        clock: &Clock,
    ) -> Option<Self> {
        let expires_wall = UNIX_EPOCH + Duration::from_millis(a.expires_ms);
        let left = expires_wall.duration_since(clock.wall()).ok()?;
        let mut t = Self::new(
            &Secret::new(a.token.clone()),
            left,
            refresh_token,
            a.generation,
            clock,
        )?;
        t.lifetime = Duration::from_millis(a.lifetime_ms).max(left);
        Some(t)
    }

    pub(super) fn new(
        access_token: &Secret,
        expires_in: Duration,
        refresh_token: Option<Arc<Secret>>,
        generation: u64,
        clock: &Clock,
    ) -> Option<Self> {
        let mut header = HeaderValue::try_from(format!("Bearer {}", access_token.expose())).ok()?;
        header.set_sensitive(true);
        Some(Self {
            header,
            expires_at: clock.now() + expires_in,
            lifetime: expires_in,
            expires_at_wall: clock.wall() + expires_in,
            refresh_token,
            generation,
            member: Arc::default(),
        })
    }

    /// Seconds since the epoch of the access token's expiry.
    pub fn expires_unix(&self) -> u64 {
        unix(self.expires_at_wall)
    }
}
