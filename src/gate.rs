//! The one token-refresh policy of every keeper of tokens: a session's
//! own token (`login::refresh`), its per-directory tokens
//! (`login::tenants`) and the service identity's (`identity::service`).
//! From a held token's expiry and generation, a refusal by Azure DevOps,
//! the keeper's attempts and now, [`Gate::decide`] says whether to use
//! the token, call the provider, share the attempt that just ended, wait
//! out a backoff, or leave a refusal alone. Pure: the keepers own the
//! calls, the locks and the answers; this file owns the rules.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// A token this close to expiry is not sent any more.
pub const MIN_VALIDITY: Duration = Duration::from_secs(2);

/// A held token, as the gate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// When it expires.
    pub expires_at: Instant,
    /// How long it was issued for.
    pub lifetime: Duration,
    /// Which token of its keeper it is (1 for the first).
    pub generation: u64,
}

/// Azure DevOps refused generation `generation`, with a claims challenge
/// (Continuous Access Evaluation) or without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The refused token's generation.
    pub generation: u64,
    /// Whether it came with claims to ask the provider for.
    pub claims: bool,
}

/// What a failed token call means for the one who holds the grant; the
/// identity provider client classifies its answers into this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The grant is dead (expired, revoked, MFA or consent needed): the
    /// user must sign in again, passing `claims` on when given.
    Relogin {
        /// Short reason for logs and the answer.
        reason: String,
        /// A claims challenge for `/authorize`.
        claims: Option<String>,
    },
    /// The proxy's own registration or credential is wrong.
    Operator {
        /// What the provider said.
        reason: String,
        /// Its error body, for the answer (code, message, ids).
        said: Option<Box<crate::diagnose::ProviderSaid>>,
    },
    /// Worth retrying later (network, provider 5xx, throttling).
    Transient {
        /// What happened.
        reason: String,
    },
}

/// A keeper's attempts: the bookkeeping of its single flight.
#[derive(Default)]
pub struct Attempts {
    /// Token calls made so far.
    pub count: u64,
    /// The outcome of the last call, shared with requests that waited.
    pub last_failure: Option<Failure>,
    /// No new call before this (backoff after failures).
    pub retry_at: Option<Instant>,
    /// The backoff after failures; only a success resets it.
    pub backoff: Backoff,
    /// The last refresh forced by Azure DevOps refusing a token.
    pub last_forced: Option<Instant>,
}

/// What to do with a held token now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it: not due.
    Use,
    /// Call the provider now.
    Refresh,
    /// Azure DevOps refused a fresh token again within the forced
    /// interval: send it and let Azure DevOps' answer through.
    Throttled,
    /// Azure DevOps challenged a fresh token again within the forced
    /// interval: only a sign-in can satisfy the claims.
    SignInAgain,
    /// A call ended while this request waited for it: its outcome is
    /// this request's too.
    Share,
    /// The backoff after a failure runs: the last outcome stands.
    BackingOff,
}

/// The refresh policy: `auth.refresh_before` and
/// `auth.forced_refresh_interval`.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    refresh_before: Duration,
    forced_interval: Duration,
}

// === impl Gate ===

impl Gate {
    /// The policy of `refresh_before` and `forced_interval`.
    pub fn new(refresh_before: Duration, forced_interval: Duration) -> Self {
        Self {
            refresh_before,
            forced_interval,
        }
    }

    /// Whether a token expiring at `expires_at` can still be sent.
    pub fn usable(expires_at: Instant, now: Instant) -> bool {
        expires_at > now + MIN_VALIDITY
    }

    /// Whether `held` is within its refresh margin of expiry. Short-lived
    /// tokens (under twice `refresh_before`) are refreshed at half-life,
    /// not on every request.
    pub fn near_expiry(&self, held: &Held, now: Instant) -> bool {
        held.expires_at.saturating_duration_since(now) <= self.margin(held.lifetime)
    }

    /// How long before its expiry a token of `lifetime` is refreshed:
    /// `refresh_before`, or half its life when that is shorter.
    pub fn margin(&self, lifetime: Duration) -> Duration {
        self.refresh_before.min(lifetime / 2)
    }

    /// Whether to refresh `held`: the refused generation is still the
    /// current one, or it is near expiry.
    pub fn due(&self, held: &Held, refusal: Option<Refusal>, now: Instant) -> bool {
        refusal.is_some_and(|r| r.generation == held.generation) || self.near_expiry(held, now)
    }

    /// Whether a refusal may force a call, the last forced one (or
    /// attempt) having been at `last`: at most one per
    /// `forced_refresh_interval`, so a stream of 401s cannot drive the
    /// identity provider.
    pub fn may_force(&self, last: Option<Instant>, now: Instant) -> bool {
        last.is_none_or(|t| now.saturating_duration_since(t) >= self.forced_interval)
    }

    /// The decision for a request holding the keeper's lock: `held` is
    /// the token now, `refusal` what Azure DevOps said of the one the
    /// request sent, `waited` whether a call ended while the request
    /// waited for the lock. A forced call allowed now is recorded in
    /// `attempts` (it counts against the interval even when the
    /// request then shares another's outcome).
    pub fn decide(
        &self,
        held: &Held,
        refusal: Option<Refusal>,
        attempts: &mut Attempts,
        waited: bool,
        now: Instant,
    ) -> Decision {
        if !self.due(held, refusal, now) {
            return Decision::Use;
        }
        if let Some(r) = refusal
            && !self.near_expiry(held, now)
        {
            if !self.may_force(attempts.last_forced, now) {
                return if r.claims {
                    Decision::SignInAgain
                } else {
                    Decision::Throttled
                };
            }
            attempts.last_forced = Some(now);
        }
        if waited {
            return Decision::Share;
        }
        if attempts.retry_at.is_some_and(|at| now < at) {
            return Decision::BackingOff;
        }
        Decision::Refresh
    }
}

// === impl Attempts ===

impl Attempts {
    /// A call succeeded: no failure stands, the backoff starts over.
    pub fn succeeded(&mut self) {
        self.last_failure = None;
        self.retry_at = None;
        self.backoff.reset();
    }

    /// A call failed in a way worth retrying: the next (jittered)
    /// backoff step, 1 s doubling to 60 s, from `now`.
    pub fn back_off(&mut self, now: Instant) {
        let wait = self.backoff.fail();
        self.retry_at = Some(now + wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn held(now: Instant, left: u64, lifetime: u64, generation: u64) -> Held {
        Held {
            expires_at: now + secs(left),
            lifetime: secs(lifetime),
            generation,
        }
    }

    /// Every rule, as a table: (token left, lifetime, refusal, last
    /// forced ago, retry in, waited) → decision, forced recorded.
    #[test]
    fn decisions() {
        let gate = Gate::new(secs(300), secs(60));
        let refused = |claims| {
            Some(Refusal {
                generation: 1,
                claims,
            })
        };
        let stale = Some(Refusal {
            generation: 0,
            claims: false,
        });
        type Row = (
            u64,
            u64,
            Option<Refusal>,
            Option<u64>,
            Option<u64>,
            bool,
            Decision,
            bool,
        );
        let rows: &[Row] = &[
            // Fresh, nobody refused: use it.
            (3000, 3600, None, None, None, false, Decision::Use, false),
            // Within refresh_before: refresh.
            (299, 3600, None, None, None, false, Decision::Refresh, false),
            (300, 3600, None, None, None, false, Decision::Refresh, false),
            // Short-lived: at half-life, not before.
            (31, 60, None, None, None, false, Decision::Use, false),
            (30, 60, None, None, None, false, Decision::Refresh, false),
            // A refusal of an older generation changes nothing.
            (3000, 3600, stale, None, None, false, Decision::Use, false),
            // A refusal of the current one forces a call, recorded.
            (
                3000,
                3600,
                refused(false),
                None,
                None,
                false,
                Decision::Refresh,
                true,
            ),
            (
                3000,
                3600,
                refused(false),
                Some(61),
                None,
                false,
                Decision::Refresh,
                true,
            ),
            // ... but not within the interval of the last forced one.
            (
                3000,
                3600,
                refused(false),
                Some(59),
                None,
                false,
                Decision::Throttled,
                false,
            ),
            (
                3000,
                3600,
                refused(true),
                Some(59),
                None,
                false,
                Decision::SignInAgain,
                false,
            ),
            // Near expiry anyway: the interval does not hold it back.
            (
                100,
                3600,
                refused(true),
                Some(1),
                None,
                false,
                Decision::Refresh,
                false,
            ),
            // A call ended while waiting: share it (a forced one still counts).
            (100, 3600, None, None, None, true, Decision::Share, false),
            (
                3000,
                3600,
                refused(false),
                None,
                None,
                true,
                Decision::Share,
                true,
            ),
            // The backoff runs: the last outcome stands; over, refresh.
            (
                100,
                3600,
                None,
                None,
                Some(5),
                false,
                Decision::BackingOff,
                false,
            ),
            (
                100,
                3600,
                None,
                None,
                Some(0),
                false,
                Decision::Refresh,
                false,
            ),
        ];
        let start = crate::clock::real_instant() + secs(1000);
        for (i, &(left, lifetime, refusal, forced_ago, retry_in, waited, want, recorded)) in
            rows.iter().enumerate()
        {
            let now = start;
            let mut attempts = Attempts {
                last_forced: forced_ago.map(|ago| now - secs(ago)),
                retry_at: retry_in.map(|r| now + secs(r)),
                ..Attempts::default()
            };
            let before = attempts.last_forced;
            let got = gate.decide(
                &held(now, left, lifetime, 1),
                refusal,
                &mut attempts,
                waited,
                now,
            );
            assert_eq!(got, want, "row {i}");
            assert_eq!(
                attempts.last_forced != before,
                recorded,
                "row {i}: forced recorded"
            );
        }
    }

    #[test]
    fn a_token_is_not_sent_in_its_last_two_seconds() {
        let now = crate::clock::real_instant();
        assert!(Gate::usable(now + secs(3), now));
        assert!(!Gate::usable(now + secs(2), now));
        assert!(!Gate::usable(now, now + secs(1)));
    }

    #[test]
    fn backoff_grows_and_a_success_resets_it() {
        let now = crate::clock::real_instant();
        let mut a = Attempts::default();
        a.back_off(now);
        let first = a.retry_at.unwrap() - now;
        a.back_off(now);
        let second = a.retry_at.unwrap() - now;
        assert!(second > first, "{first:?} {second:?}");
        a.last_failure = Some(Failure::Transient { reason: "x".into() });
        a.succeeded();
        assert!(a.retry_at.is_none() && a.last_failure.is_none());
        a.back_off(now);
        assert!(a.retry_at.unwrap() - now <= first.max(Duration::from_millis(1200)));
    }
}
