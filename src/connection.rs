//! One listener's connections, from accept to close: how many may be
//! open at once, how long one may take to send its first request or sit
//! idle between requests, and the graceful close at shutdown.
//!
//! hyper bounds the time to read an HTTP/1 request head once it has
//! started (`header_read_timeout`); it has no idle timeout, HTTP/2 has no
//! header timeout, and hyper-util's protocol detection has no timer at
//! all. So every connection is driven here: a connection with no request
//! in flight closes gracefully (HTTP/2 with GOAWAY) after `idle` (after
//! `first_request` before its first request), and is cut a second later
//! if it does not go.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// Time an idle connection gets to close after being asked to.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A listener's connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max: usize,
    /// Time a connection may sit with no request in flight.
    pub idle: Duration,
    /// Time from accept to the first request's head.
    pub first_request: Duration,
}

/// The open connections of one listener.
pub struct Connections {
    limits: Limits,
    permits: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    open: Option<IntGauge>,
    refused: Option<IntCounter>,
}

/// An admitted connection's place: its permit, its activity, and the
/// shutdown signal.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Option<IntGauge>,
    limits: Limits,
    stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
}

/// What a connection is doing, updated by its requests.
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `start` of the last request start or end.
    last_ms: AtomicU64,
}

/// A request in flight; dropping it ends the request.
pub struct InFlight(Arc<Activity>);

pin_project_lite::pin_project! {
    /// A response body that ends its request when it ends or is dropped.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        request: Option<InFlight>,
    }
}

// === impl Connections ===

impl Connections {
    /// The connections of a listener with `limits`; `open` and `refused`
    /// count them when given.
    pub fn new(limits: Limits, open: Option<IntGauge>, refused: Option<IntCounter>) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limits.max.min(Semaphore::MAX_PERMITS))),
            limits,
            stop: watch::channel(false).0,
            open,
            refused,
        })
    }

    /// A place for a newly accepted connection, or `None` at the limit
    /// (counted).
    pub fn admit(&self) -> Option<Slot> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            if let Some(c) = &self.refused {
                c.inc();
            }
            return None;
        };
        if let Some(g) = &self.open {
            g.inc();
        }
        Some(Slot {
            _permit: permit,
            open: self.open.clone(),
            limits: self.limits,
            stop: self.stop.subscribe(),
            activity: Arc::new(Activity::new()),
        })
    }

    /// Asks every connection to close gracefully and waits until all
    /// have, or `within` runs out; returns how many were still open.
    pub async fn drain(&self, within: Duration) -> usize {
        self.stop.send_replace(true);
        let cap = self.limits.max.min(Semaphore::MAX_PERMITS);
        let all = u32::try_from(cap).unwrap_or(u32::MAX);
        match tokio::time::timeout(within, self.permits.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => cap.saturating_sub(self.permits.available_permits()),
        }
    }
}

// === impl Slot ===

impl Slot {
    /// The activity the connection's requests report to.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Drives `conn` to its end, closing it with `graceful` when it is
    /// idle too long or the listener shuts down, and dropping it if an
    /// idle close does not finish within a second.
    pub async fn drive<F, E>(mut self, conn: F, graceful: impl Fn(Pin<&mut F>)) -> Result<(), E>
    where
        F: Future<Output = Result<(), E>>,
    {
        tokio::pin!(conn);
        let mut closing = false;
        let mut cut_at: Option<Instant> = None;
        loop {
            let check = cut_at.unwrap_or_else(|| self.activity.idle_deadline(&self.limits));
            tokio::select! {
                r = conn.as_mut() => return r,
                _ = self.stop.wait_for(|s| *s), if !closing => {
                    graceful(conn.as_mut());
                    closing = true;
                }
                _ = tokio::time::sleep_until(check) => {
                    if cut_at.is_some_and(|at| Instant::now() >= at) {
                        return Ok(());
                    }
                    if !closing && Instant::now() >= self.activity.idle_deadline(&self.limits) {
                        graceful(conn.as_mut());
                        closing = true;
                        cut_at = Some(Instant::now() + CLOSE_GRACE);
                    }
                }
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(g) = &self.open {
            g.dec();
        }
    }
}

// === impl Activity ===

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    /// A request starts; it ends when the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection counts as idle too long if nothing happens
    /// meanwhile (a request in flight pushes it a whole period on).
    fn idle_deadline(&self, limits: &Limits) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + limits.idle;
        }
        let limit = if self.requests.load(Ordering::Relaxed) == 0 {
            limits.first_request
        } else {
            limits.idle
        };
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + limit
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Tracked ===

impl<B> Tracked<B> {
    /// `inner`, ending `request` with it.
    pub fn new(inner: B, request: InFlight) -> Self {
        Self {
            inner,
            request: Some(request),
        }
    }
}

impl<B: Body> Body for Tracked<B>
where
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.request.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max: 2,
            idle: Duration::from_millis(300),
            first_request: Duration::from_millis(100),
        }
    }

    #[tokio::test]
    async fn admits_up_to_the_limit_and_counts_refusals() {
        let refused = IntCounter::new("r", "r").unwrap();
        let open = IntGauge::new("o", "o").unwrap();
        let c = Connections::new(limits(), Some(open.clone()), Some(refused.clone()));
        let a = c.admit().unwrap();
        let _b = c.admit().unwrap();
        assert!(c.admit().is_none());
        assert_eq!((open.get(), refused.get()), (2, 1));
        drop(a);
        assert_eq!(open.get(), 1);
        assert!(c.admit().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_deadlines_follow_the_requests() {
        let a = Arc::new(Activity::new());
        let l = limits();
        assert_eq!(a.idle_deadline(&l), a.start + l.first_request);
        let req = a.begin();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(a.idle_deadline(&l) > Instant::now(), "busy is never idle");
        drop(req);
        assert_eq!(a.idle_deadline(&l), Instant::now() + l.idle);
    }
}
