//! The requests in flight at once across the proxy listener
//! (`listen.max_requests`). `listen.max_connections` bounds connections,
//! but one HTTP/2 connection carries many streams and each may hold an
//! upstream connection of its own: this budget is what bounds the
//! upstream sockets (and file descriptors) clients can make the proxy
//! open. A leaf: an atomic count and its permits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How many requests may be in flight, and how many are.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    used: AtomicUsize,
}

/// One request's place in the budget, given back on drop.
#[derive(Debug)]
pub struct Permit(Arc<Budget>);

/// A request's place held by both its answer and its upload: when the
/// answer is done (sent, or the client gone) the upload is cut off, so a
/// body that never ends cannot keep the place, or its upstream socket.
#[derive(Debug)]
pub struct SharedPermit {
    _permit: Permit,
    cut: AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

// === impl Budget ===

impl Budget {
    /// A budget of `max` requests at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// A place for one more request, or `None` when `max` are in flight.
    pub fn try_take(self: &Arc<Self>) -> Option<Permit> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(self.clone()))
    }

    /// `listen.max_requests`.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl SharedPermit {
    /// Shares `permit` between an answer and an upload.
    pub fn new(permit: Permit) -> Arc<Self> {
        Arc::new(Self {
            _permit: permit,
            cut: AtomicBool::new(false),
            waker: futures_util::task::AtomicWaker::new(),
        })
    }

    /// The answer is done: the upload, if still going, stops.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether the upload must stop; wakes `cx` when it must.
    pub fn poll_cut(&self, cx: &std::task::Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.cut.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_stop_at_the_maximum_and_come_back_on_drop() {
        let b = Budget::new(2);
        let one = b.try_take().expect("first");
        let two = b.try_take().expect("second");
        assert!(b.try_take().is_none(), "a third over the budget");
        drop(one);
        let three = b.try_take().expect("a place was given back");
        assert!(b.try_take().is_none());
        drop((two, three));
        assert_eq!(b.used.load(Ordering::Acquire), 0);
    }

    #[test]
    fn concurrent_takers_never_exceed_the_budget() {
        let b = Budget::new(8);
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (b, peak) = (b.clone(), peak.clone());
                s.spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(p) = b.try_take() {
                            peak.fetch_max(b.used.load(Ordering::Acquire), Ordering::AcqRel);
                            drop(p);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Acquire) <= 8);
        assert_eq!(b.used.load(Ordering::Acquire), 0);
    }
}
