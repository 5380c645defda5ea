//! Upstream connections that follow client connections: a client
//! connection sends its requests on one HTTP/1.1 upstream connection of
//! its own (hyper's `client::conn`), with no pool checkout and no hand-off
//! to another task per request, as nginx's keep-alive upstreams do. When
//! the client leaves, its upstream connection waits in the serving
//! thread's idle list for the next client, so clients that open a
//! connection per request still reuse upstream connections (and their
//! TLS sessions).
//!
//! The shared pool ([`super::forward`]) still serves what this cannot: a
//! second request while the own connection is busy (an HTTP/2 client's
//! concurrent streams), upgrades, and a request whose own connection
//! closed before it was sent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use crate::body::CountedBody;

/// Idle upstream connections a serving thread keeps for future clients.
const MAX_IDLE: usize = 256;

/// An upstream connection and the upstream it goes to.
pub struct Own {
    /// The upstream's name ([`super::route::Upstream::name`]).
    upstream: Arc<str>,
    pub sender: SendRequest<CountedBody>,
    /// When its last exchange ended.
    pub used: Instant,
}

/// One client connection, as the upstream exchange sees it.
pub struct Downstream {
    /// The client's address.
    pub remote: SocketAddr,
    /// Its `X-Forwarded-For` entry, made once.
    pub forwarded_for: http::HeaderValue,
    slot: Mutex<Slot>,
    /// Where the own connection goes when the client leaves.
    idle: Arc<Idle>,
}

/// The client connection's own upstream connection.
enum Slot {
    /// None yet (or it closed).
    Empty,
    /// Between requests.
    Ready(Own),
    /// A request is on it.
    Busy,
}

/// What a request may use.
pub enum Take {
    /// The own connection, ready.
    Own(Own),
    /// No own connection: open one (or take an idle one) and keep it.
    Open,
    /// The own connection is busy or goes elsewhere: use the pool.
    Pool,
}

/// A serving thread's idle upstream connections.
pub struct Idle {
    /// Least recently used first.
    conns: Mutex<VecDeque<Own>>,
    timeout: Duration,
}

// === impl Downstream ===

impl Downstream {
    /// A client connection from `remote`; its upstream connection goes to
    /// `idle` when it ends.
    pub fn new(remote: SocketAddr, idle: Arc<Idle>) -> Self {
        Self {
            remote,
            forwarded_for: super::headers::forwarded_for(remote),
            slot: Mutex::new(Slot::Empty),
            idle,
        }
    }

    /// What a request to `upstream` may send on.
    pub fn take(&self, upstream: &Arc<str>) -> Take {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *slot, Slot::Busy) {
            Slot::Empty => Take::Open,
            Slot::Busy => Take::Pool,
            Slot::Ready(own) if own.sender.is_closed() => Take::Open,
            Slot::Ready(own) if own.upstream != *upstream || !own.sender.is_ready() => {
                // Another host's, or still finishing a response: keep it.
                *slot = Slot::Ready(own);
                Take::Pool
            }
            Slot::Ready(own) => Take::Own(own),
        }
    }

    /// A connection from the serving thread's idle list for `upstream`.
    pub fn idle_connection(&self, upstream: &Arc<str>) -> Option<Own> {
        self.idle.checkout(upstream)
    }

    /// Keeps `sender` (to `upstream`) for the next request.
    pub fn put_back(&self, upstream: &Arc<str>, sender: SendRequest<CountedBody>) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Ready(Own {
            upstream: upstream.clone(),
            sender,
            used: crate::clock::real_instant(),
        });
    }

    /// The request taken with [`Take::Open`] or [`Take::Own`] ended without
    /// a connection to keep.
    pub fn release(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*slot, Slot::Busy) {
            *slot = Slot::Empty;
        }
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        let slot = std::mem::replace(
            self.slot.get_mut().unwrap_or_else(|e| e.into_inner()),
            Slot::Empty,
        );
        if let Slot::Ready(own) = slot {
            self.idle.keep(own);
        }
    }
}

// === impl Idle ===

impl Idle {
    /// An empty list; connections idle longer than `timeout`
    /// (`upstream.pool_idle_timeout`) are not reused, and are closed when
    /// the list is next used (or by the upstream's own idle timeout).
    pub fn new(timeout: Duration) -> Self {
        Self {
            conns: Mutex::new(VecDeque::new()),
            timeout,
        }
    }

    fn keep(&self, own: Own) {
        if own.sender.is_closed() || !own.sender.is_ready() {
            // Closed, or a response never finished: not reusable.
            return;
        }
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        self.drop_stale(&mut conns);
        if conns.len() < MAX_IDLE {
            conns.push_back(own);
        }
    }

    /// Closes the oldest connections while they are closed or expired.
    fn drop_stale(&self, conns: &mut VecDeque<Own>) {
        while conns
            .front()
            .is_some_and(|own| own.sender.is_closed() || own.used.elapsed() >= self.timeout)
        {
            conns.pop_front();
        }
    }

    /// Closes every connection that expired or was closed, so a quiet
    /// thread does not hold upstream sockets until it is next used.
    pub fn sweep(&self) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|own| !own.sender.is_closed() && own.used.elapsed() < self.timeout);
    }

    /// How long a connection may wait here.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The most recently kept ready connection to `upstream`; expired
    /// ones (the oldest) are closed on the way.
    fn checkout(&self, upstream: &Arc<str>) -> Option<Own> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        self.drop_stale(&mut conns);
        let i = conns
            .iter()
            .rposition(|own| own.upstream == *upstream && own.sender.is_ready())?;
        conns.remove(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// A ready client connection over an in-memory pipe (nothing answers
    /// on the other end; it only has to be open).
    async fn sender() -> (SendRequest<CountedBody>, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(ours))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.ready().await.unwrap();
        (sender, theirs)
    }

    fn own(upstream: &Arc<str>, sender: SendRequest<CountedBody>) -> Own {
        Own {
            upstream: upstream.clone(),
            sender,
            used: crate::clock::real_instant(),
        }
    }

    #[tokio::test]
    async fn a_client_keeps_its_connection_and_hands_it_on() {
        let idle = Arc::new(Idle::new(Duration::from_secs(60)));
        let (main, other): (Arc<str>, Arc<str>) = ("default".into(), "vssps".into());
        let d = Downstream::new("127.0.0.1:1".parse().unwrap(), idle.clone());
        assert!(matches!(d.take(&main), Take::Open));
        // A second request while the first is out goes to the pool.
        assert!(matches!(d.take(&main), Take::Pool));
        let (s, _pipe) = sender().await;
        d.put_back(&main, s);
        assert!(matches!(d.take(&other), Take::Pool), "another host's");
        let Take::Own(o) = d.take(&main) else {
            panic!("the connection is ready")
        };
        d.put_back(&main, o.sender);
        drop(d);
        // The next client finds it, for the same upstream only.
        let next = Downstream::new("127.0.0.1:2".parse().unwrap(), idle.clone());
        assert!(next.idle_connection(&other).is_none());
        assert!(next.idle_connection(&main).is_some());
        assert!(next.idle_connection(&main).is_none(), "taken once");
    }

    #[tokio::test]
    async fn closed_and_expired_connections_are_not_handed_on() {
        let main: Arc<str> = "default".into();
        let idle = Idle::new(Duration::from_secs(60));
        let (s, pipe) = sender().await;
        idle.keep(own(&main, s));
        drop(pipe);
        // The connection notices its peer is gone.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(idle.checkout(&main).is_none(), "closed");

        let expired = Idle::new(Duration::ZERO);
        let (s, _pipe) = sender().await;
        expired.keep(own(&main, s));
        assert!(expired.checkout(&main).is_none(), "expired");
    }

    #[tokio::test]
    async fn a_sweep_closes_expired_connections() {
        use tokio::io::AsyncReadExt;
        let main: Arc<str> = "default".into();
        let idle = Idle::new(Duration::from_millis(50));
        let (s, mut pipe) = sender().await;
        idle.keep(own(&main, s));
        let (fresh, _fresh_pipe) = sender().await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        idle.keep(own(&main, fresh));
        idle.sweep();
        // The expired connection is closed: its peer reads the end.
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(2), pipe.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0))), "closed: {read:?}");
        // The fresh one stays.
        assert!(idle.checkout(&main).is_some());
    }

    #[tokio::test]
    async fn the_idle_list_is_bounded() {
        let main: Arc<str> = "default".into();
        let idle = Idle::new(Duration::from_secs(60));
        let mut pipes = Vec::new();
        for _ in 0..MAX_IDLE + 3 {
            let (s, pipe) = sender().await;
            pipes.push(pipe);
            idle.keep(own(&main, s));
        }
        let mut handed = 0;
        while idle.checkout(&main).is_some() {
            handed += 1;
        }
        assert_eq!(handed, MAX_IDLE);
    }
}
