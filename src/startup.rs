//! The start-up checks still running: `/startupz` does not say started
//! until each has finished (whatever it found), so a Deployment's rollout
//! waits for the look at the organizations instead of taking traffic
//! before the log could say whether the credential works.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many start-up checks are still running; cheap to clone.
#[derive(Clone, Default)]
pub struct StartupChecks(Arc<AtomicUsize>);

/// One running check; finished when dropped (a panicking or cancelled
/// check never holds start-up forever).
pub struct Running(Arc<AtomicUsize>);

impl StartupChecks {
    /// Counts a check as running until the guard is dropped.
    pub fn begin(&self) -> Running {
        self.0.fetch_add(1, Ordering::SeqCst);
        Running(self.0.clone())
    }

    /// Whether any check is still running.
    pub fn pending(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_until_every_guard_is_gone() {
        let checks = StartupChecks::default();
        assert!(!checks.pending());
        let a = checks.begin();
        let b = checks.clone().begin();
        assert!(checks.pending());
        drop(a);
        assert!(checks.pending());
        drop(b);
        assert!(!checks.pending());
    }
}
