//! Waiting between token calls: jittered exponential backoff after
//! failures. Shared by the user
//! sessions' refresh and the service identity's refresher, so both hold
//! the identity provider to the same rules whatever the traffic.

use std::time::{Duration, Instant};

/// Exponential backoff: `first`, doubling, at most `max`, each wait
/// jittered ±20% so replicas do not retry in step. Only a success resets
/// it; no request shortens a wait.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

// === impl Backoff ===

impl Default for Backoff {
    /// The token-call backoff: 1 s, doubling, at most 60 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    /// A backoff from `first` up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            step: Duration::ZERO,
        }
    }

    /// After a failure: the (jittered) time to wait before the next call.
    pub fn fail(&mut self) -> Duration {
        self.step = (self.step * 2).clamp(self.first, self.max);
        jitter(self.step)
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.step = Duration::ZERO;
    }

    /// The current step (zero when the last call succeeded).
    pub fn step(&self) -> Duration {
        self.step
    }
}

/// Whole seconds from `now` until `at`, rounded up and at least 1: a
/// client that waits this long (`Retry-After`) finds the wait over.
pub fn seconds_until(at: Option<Instant>, now: Instant) -> u64 {
    at.map(|at| at.saturating_duration_since(now))
        .unwrap_or(Duration::from_secs(1))
        .as_millis()
        .div_ceil(1000)
        .max(1) as u64
}

/// `d` ± 20%.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.4 * rand_unit())
}

/// `d` minus up to 10%: refresh a little early, never late.
pub fn jitter_down(d: Duration) -> Duration {
    d.mul_f64(1.0 - 0.1 * rand_unit())
}

fn rand_unit() -> f64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        for want in [1, 2, 4, 8, 8] {
            let wait = b.fail();
            let want = Duration::from_secs(want);
            assert_eq!(b.step(), want);
            assert!(
                wait >= want.mul_f64(0.8) && wait <= want.mul_f64(1.2),
                "{wait:?}"
            );
        }
        b.reset();
        assert_eq!(b.step(), Duration::ZERO);
        b.fail();
        assert_eq!(b.step(), Duration::from_secs(1), "steps again from first");
    }

    #[test]
    fn jitter_stays_in_its_band() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(j >= Duration::from_secs(8) && j <= Duration::from_secs(12));
            let d = jitter_down(Duration::from_secs(100));
            assert!(d >= Duration::from_secs(90) && d <= Duration::from_secs(100));
        }
        let now = crate::clock::real_instant();
        assert_eq!(seconds_until(None, now), 1);
        assert_eq!(
            seconds_until(Some(now + Duration::from_millis(1500)), now),
            2
        );
        assert_eq!(seconds_until(Some(now), now + Duration::from_secs(5)), 1);
    }
}
