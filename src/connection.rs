//! One listener's connections, from accept to close: how many may be
//! open at once, how long one may take to send its first request or sit
//! idle between requests, and the graceful close at shutdown.
//!
//! hyper bounds the time to read an HTTP/1 request head once it has
//! started (`header_read_timeout`); it has no idle timeout, HTTP/2 has no
//! header timeout, and hyper-util's protocol detection has no timer at
//! all. So every connection gets a watchdog task: when the connection has
//! had no request in flight for `idle` (`first_request` before its first
//! request), or the listener shuts down, it orders a graceful close
//! (HTTP/2 with GOAWAY), and cuts the connection a second later if an
//! idle close did not finish. The request path only bumps two counters;
//! the connection's own task checks one flag per poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// Time an idle connection gets to close after being asked to.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The watchdog's orders to the connection's task.
const CARRY_ON: u8 = 0;
const CLOSE: u8 = 1;
const CUT: u8 = 2;

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

/// What a connection is doing, shared by its task, its requests and its
/// watchdog.
pub struct Activity {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// `CARRY_ON`, `CLOSE` or `CUT`, set by the watchdog.
    order: AtomicU8,
    /// The connection's task, woken when an order is given.
    task: AtomicWaker,
    /// Told when the connection has ended, so the watchdog ends too.
    ended: Notify,
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

    /// Drives `conn` to its end under a watchdog that orders `graceful`
    /// when the connection is idle too long or the listener shuts down,
    /// and drops it if an idle close does not finish within a second.
    pub async fn drive<F, E>(self, conn: F, graceful: impl Fn(Pin<&mut F>)) -> Result<(), E>
    where
        F: Future<Output = Result<(), E>>,
    {
        let activity = self.activity.clone();
        tokio::spawn(watchdog(activity.clone(), self.limits, self.stop.clone()));
        let mut conn = std::pin::pin!(conn);
        let mut asked = false;
        let result = std::future::poll_fn(|cx| {
            activity.task.register(cx.waker());
            match activity.order.load(Ordering::Acquire) {
                CARRY_ON => {}
                CUT => return Poll::Ready(Ok(())),
                _ if !asked => {
                    asked = true;
                    graceful(conn.as_mut());
                }
                _ => {}
            }
            conn.as_mut().poll(cx)
        })
        .await;
        activity.ended.notify_one();
        drop(self);
        result
    }
}

/// Watches one connection: ends with it, orders a graceful close when it
/// has been quiet too long or the listener stops, and a cut when an idle
/// close takes longer than [`CLOSE_GRACE`]. Checks four times per limit,
/// so a quiet connection closes within 1.25 limits of its last request.
async fn watchdog(activity: Arc<Activity>, limits: Limits, mut stop: watch::Receiver<bool>) {
    let mut seen = 0;
    let mut quiet_since = Instant::now();
    loop {
        let limit = if seen == 0 {
            limits.first_request
        } else {
            limits.idle
        };
        let tick = (limit / 4).max(Duration::from_millis(10));
        let stopping = tokio::select! {
            _ = activity.ended.notified() => return,
            // Shutdown, or the listener is gone.
            r = stop.wait_for(|s| *s) => {
                drop(r);
                true
            }
            _ = tokio::time::sleep(tick) => false,
        };
        if stopping {
            activity.give(CLOSE);
            activity.ended.notified().await;
            return;
        }
        let requests = activity.requests.load(Ordering::Relaxed);
        if requests != seen || activity.in_flight.load(Ordering::Acquire) > 0 {
            seen = requests;
            quiet_since = Instant::now();
            continue;
        }
        if quiet_since.elapsed() >= limit {
            activity.give(CLOSE);
            tokio::select! {
                _ = activity.ended.notified() => return,
                _ = tokio::time::sleep(CLOSE_GRACE) => activity.give(CUT),
            }
            activity.ended.notified().await;
            return;
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
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            order: AtomicU8::new(CARRY_ON),
            task: AtomicWaker::new(),
            ended: Notify::new(),
        }
    }

    /// A request starts; it ends when the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn give(&self, order: u8) {
        self.order.fetch_max(order, Ordering::AcqRel);
        self.task.wake();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
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
    async fn the_watchdog_closes_quiet_connections_only() {
        let l = limits();
        let a = Arc::new(Activity::new());
        let (_tx, rx) = watch::channel(false);
        let dog = tokio::spawn(watchdog(a.clone(), l, rx));
        // A request in flight for a long time is never idle.
        let req = a.begin();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(a.order.load(Ordering::Acquire), CARRY_ON);
        drop(req);
        tokio::time::sleep(l.idle / 2).await;
        assert_eq!(a.order.load(Ordering::Acquire), CARRY_ON);
        tokio::time::sleep(l.idle).await;
        assert_eq!(a.order.load(Ordering::Acquire), CLOSE, "closed when quiet");
        tokio::time::sleep(CLOSE_GRACE * 2).await;
        assert_eq!(
            a.order.load(Ordering::Acquire),
            CUT,
            "cut when it does not go"
        );
        a.ended.notify_one();
        dog.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_asks_every_connection_to_close() {
        let a = Arc::new(Activity::new());
        let (tx, rx) = watch::channel(false);
        let dog = tokio::spawn(watchdog(a.clone(), limits(), rx));
        let _req = a.begin();
        tx.send_replace(true);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(a.order.load(Ordering::Acquire), CLOSE);
        a.ended.notify_one();
        dog.await.unwrap();
    }
}
