//! The proxy's time: token expiries, refresh margins, backoffs, session
//! ages and store TTLs all read one [`Clock`], so tests move it forward
//! instead of sleeping until a token comes due.
//!
//! Times another party checks (assertion `iat`/`exp`, ID token
//! validation) and plain waits (timeouts, polling deadlines) use the
//! system clock: moving our clock cannot change theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// The system's monotonic time, for real waiting and measuring: the
/// deadline of a real call, a duration for the metrics or the log, an
/// idle connection. Never for token, session or backoff time, which is
/// the [`Clock`]'s.
#[allow(clippy::disallowed_methods, reason = "the one real-time source")]
pub fn real_instant() -> Instant {
    Instant::now()
}

/// The system's wall-clock time, for times another party checks (an
/// assertion's `iat`/`exp`, a file's age, a managed identity's
/// `expires_on`, a PAT's `validTo`): moving the proxy's clock cannot
/// change theirs.
#[allow(clippy::disallowed_methods, reason = "the one real-time source")]
pub fn real_wall() -> SystemTime {
    SystemTime::now()
}

/// The system clock plus an offset only tests set. Clones share it.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// How far this clock is ahead of the system's, in milliseconds.
    ahead_ms: AtomicU64,
    /// Bumped on every move, so [`Clock::sleep`] wakes up.
    moved: watch::Sender<u64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                ahead_ms: AtomicU64::new(0),
                moved: watch::channel(0).0,
            }),
        }
    }
}

// === impl Clock ===

impl Clock {
    fn ahead(&self) -> Duration {
        Duration::from_millis(self.inner.ahead_ms.load(Ordering::Relaxed))
    }

    /// Now, as a monotonic instant.
    pub fn now(&self) -> Instant {
        real_instant() + self.ahead()
    }

    /// Now, as wall-clock time.
    pub fn wall(&self) -> SystemTime {
        real_wall() + self.ahead()
    }

    /// Milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        unix_ms(self.wall())
    }

    /// The expiry (ms since the epoch) of something stored now for `ttl`.
    pub fn expiry_ms(&self, ttl: Duration) -> u64 {
        self.now_ms().saturating_add(ttl.as_millis() as u64)
    }

    /// How long ago `then` was (zero for a time in the future).
    pub fn since(&self, then: Instant) -> Duration {
        self.now().saturating_duration_since(then)
    }

    /// Waits until `by` has passed on this clock: the system's time, or
    /// a move forward, whichever comes first.
    pub async fn sleep(&self, by: Duration) {
        let until = self.now() + by;
        let mut moved = self.inner.moved.subscribe();
        loop {
            let left = until.saturating_duration_since(self.now());
            if left.is_zero() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                r = moved.changed() => {
                    if r.is_err() {
                        tokio::time::sleep(left).await;
                    }
                }
            }
        }
    }

    /// Moves this clock `by` into the future (tests only).
    pub fn advance(&self, by: Duration) {
        self.inner
            .ahead_ms
            .fetch_add(by.as_millis() as u64, Ordering::Relaxed);
        self.inner.moved.send_modify(|n| *n += 1);
    }
}

/// Milliseconds since the epoch of `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the epoch of `t`.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_both_times_and_is_shared_by_clones() {
        let clock = Clock::default();
        let other = clock.clone();
        let (i0, w0) = (clock.now(), clock.wall());
        other.advance(Duration::from_secs(3600));
        assert!(clock.now() >= i0 + Duration::from_secs(3600));
        assert!(clock.wall() >= w0 + Duration::from_secs(3600));
        assert!(clock.since(i0) >= Duration::from_secs(3600));
        assert_eq!(
            clock.since(clock.now() + Duration::from_secs(5)),
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn a_sleep_ends_when_the_clock_is_moved_past_it() {
        let clock = Clock::default();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(600)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        clock.advance(Duration::from_secs(300));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished(), "half way is not there yet");
        clock.advance(Duration::from_secs(300));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke on the move")
            .unwrap();
    }
}
