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
}

/// One client connection, as the upstream exchange sees it.
pub struct Downstream {
    /// The client's address.
    pub remote: SocketAddr,
    /// Its `X-Forwarded-For` entry, made once.
    pub forwarded_for: http::HeaderValue,
    slot: Mutex<Slot>,
    /// Where the own connection goes when the client leaves.
    idle: Option<Arc<Idle>>,
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
    /// Oldest first.
    conns: Mutex<VecDeque<(Own, Instant)>>,
    timeout: Duration,
}

// === impl Downstream ===

impl Downstream {
    /// A client connection from `remote`; its upstream connection goes to
    /// `idle` when it ends (nowhere without).
    pub fn new(remote: SocketAddr, idle: Option<Arc<Idle>>) -> Self {
        Self {
            remote,
            forwarded_for: super::headers::forwarded_for(remote),
            slot: Mutex::new(Slot::Empty),
            idle,
        }
    }

    /// Whether this client connection can have upstream connections of
    /// its own.
    pub fn keeps_connections(&self) -> bool {
        self.idle.is_some()
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
        self.idle.as_ref()?.checkout(upstream)
    }

    /// Keeps `sender` (to `upstream`) for the next request.
    pub fn put_back(&self, upstream: &Arc<str>, sender: SendRequest<CountedBody>) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Ready(Own {
            upstream: upstream.clone(),
            sender,
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
        if let (Slot::Ready(own), Some(idle)) = (slot, &self.idle) {
            idle.keep(own);
        }
    }
}

// === impl Idle ===

impl Idle {
    /// An empty list; connections idle longer than `timeout`
    /// (`upstream.pool_idle_timeout`) are closed.
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
        if conns.len() < MAX_IDLE {
            conns.push_back((own, Instant::now()));
        }
    }

    /// The most recently kept ready connection to `upstream`; expired
    /// ones (the oldest) are closed on the way.
    fn checkout(&self, upstream: &Arc<str>) -> Option<Own> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        while conns
            .front()
            .is_some_and(|(own, since)| own.sender.is_closed() || since.elapsed() >= self.timeout)
        {
            conns.pop_front();
        }
        let i = conns
            .iter()
            .rposition(|(own, _)| own.upstream == *upstream && own.sender.is_ready())?;
        conns.remove(i).map(|(own, _)| own)
    }
}
