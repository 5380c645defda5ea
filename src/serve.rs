//! The proxy listener's serving threads: one per core (`listen.workers`),
//! each a single-threaded tokio runtime with its own `SO_REUSEPORT`
//! listener on the same address and its own pool of upstream connections.
//! A connection, its requests and its upstream exchanges stay on the
//! thread that accepted it: no request is handed between threads, and
//! the threads share only read-only state and the session cache.
//!
//! Measured in `scripts/bench.sh` (docs/benchmarks.md): against one
//! multi-thread runtime with a shared pool, this is most of the distance
//! between a hyper proxy and nginx.
//!
//! Background work (refreshes, the store, the admin listener, the
//! shutdown sequence) stays on the process's main runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::connection::{Connections, Slot, Tracked};
use crate::proxy::Proxy;

/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client over `listen.max_connections` reads before the
/// connection closes (plain HTTP only; a TLS client is just closed).
const OVER_LIMIT: &str = "The proxy is serving as many connections as listen.max_connections \
allows. Try again in a moment.\n";

/// The listener's sockets, one per serving thread, bound to one address.
pub struct Listeners {
    sockets: Vec<std::net::TcpListener>,
    /// The bound address (the port chosen when the configured one is 0).
    pub addr: SocketAddr,
}

// === impl Listeners ===

impl Listeners {
    /// Binds `workers` sockets to `addr` with `SO_REUSEPORT`, so the kernel
    /// spreads new connections over them. A plain bind first makes sure
    /// no one (another proxy on the same port included) listens there
    /// already: with `SO_REUSEPORT` alone, a second process of the same
    /// user would silently share the port.
    pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Self> {
        let addr = {
            let probe = socket_for(addr)?;
            probe.set_reuseaddr(true)?;
            probe.bind(addr)?;
            let probe = probe.listen(1)?;
            probe.local_addr()?
        };
        let mut sockets = Vec::with_capacity(workers);
        for _ in 0..workers.max(1) {
            let socket = socket_for(addr)?;
            socket.set_reuseaddr(true)?;
            #[cfg(unix)]
            socket.set_reuseport(true)?;
            socket.set_nodelay(true)?;
            socket.bind(addr)?;
            sockets.push(socket.listen(1024)?.into_std()?);
            #[cfg(not(unix))]
            break;
        }
        Ok(Self { sockets, addr })
    }
}

fn socket_for(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// `listen.workers`, with 0 meaning one per core the process may use.
pub fn worker_count(config: &Config) -> usize {
    match config.listen.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(crate::config::MAX_WORKERS)
}

/// What every serving thread shares.
pub struct Shared {
    /// The proxy; each thread gets its own upstream pool from it.
    pub proxy: Proxy,
    /// TLS, when the listener speaks it.
    pub tls: Option<TlsAcceptor>,
    /// HTTP/1.1 and HTTP/2 settings.
    pub http: Arc<auto::Builder<TokioExecutor>>,
    /// The listener's connections (limit, drain), across threads.
    pub connections: Arc<Connections>,
}

/// The running serving threads.
pub struct Workers {
    accepting: Vec<oneshot::Receiver<()>>,
    finished: Vec<oneshot::Receiver<()>>,
    finish: watch::Sender<bool>,
}

// === impl Workers ===

impl Workers {
    /// Starts one thread per socket; each accepts until `stop` is set.
    pub fn start(
        listeners: Listeners,
        shared: &Shared,
        stop: &watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let (finish, finish_rx) = watch::channel(false);
        let mut accepting = Vec::new();
        let mut finished = Vec::new();
        for (i, socket) in listeners.sockets.into_iter().enumerate() {
            let (accept_done, accepting_rx) = oneshot::channel();
            let (done, finished_rx) = oneshot::channel();
            let worker = Worker {
                proxy: shared.proxy.for_worker(),
                tls: shared.tls.clone(),
                http: shared.http.clone(),
                connections: shared.connections.clone(),
            };
            let (stop, mut finish) = (stop.clone(), finish_rx.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("serve-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        match TcpListener::from_std(socket) {
                            Ok(listener) => worker.accept_loop(listener, stop).await,
                            Err(e) => tracing::error!(error = %e, "serving thread has no listener"),
                        }
                        let _ = accept_done.send(());
                        // In-flight connections finish on this thread;
                        // the shutdown sequence says when to stop.
                        let _ = finish.wait_for(|f| *f).await;
                    });
                    drop(runtime);
                    let _ = done.send(());
                })?;
            accepting.push(accepting_rx);
            finished.push(finished_rx);
        }
        Ok(Self {
            accepting,
            finished,
            finish,
        })
    }

    /// Waits until every thread has stopped accepting.
    pub async fn stopped_accepting(&mut self) {
        for rx in &mut self.accepting {
            let _ = rx.await;
        }
    }

    /// Ends the threads (cutting what is still open) and waits for them.
    pub async fn finish(self) {
        self.finish.send_replace(true);
        for rx in self.finished {
            let _ = rx.await;
        }
    }
}

/// One serving thread's state.
struct Worker {
    proxy: Proxy,
    tls: Option<TlsAcceptor>,
    http: Arc<auto::Builder<TokioExecutor>>,
    connections: Arc<Connections>,
}

// === impl Worker ===

impl Worker {
    /// Accepts until told to stop.
    async fn accept_loop(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        tokio::spawn(self.proxy.clone().sweep_idle_connections());
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a little.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                // Told to stop, or the server is gone.
                _ = stop.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let Some(slot) = self.connections.admit() else {
                refuse_over_limit(stream, remote, self.tls.is_some());
                continue;
            };
            tokio::spawn(serve_connection(
                stream,
                remote,
                slot,
                self.proxy.clone(),
                self.http.clone(),
                self.tls.clone(),
            ));
        }
    }
}

/// Serves one accepted connection (after the TLS handshake, when the
/// listener speaks TLS) until it closes or is closed.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    slot: Slot,
    proxy: Proxy,
    http: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
) {
    let activity = slot.activity();
    let downstream = Arc::new(proxy.downstream(remote));
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let downstream = downstream.clone();
        let request = activity.begin();
        async move {
            let resp = proxy.serve(req, &downstream).await;
            Ok::<_, std::convert::Infallible>(resp.map(|b| Tracked::new(b, request)))
        }
    });
    let result = match tls {
        None => {
            let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
            slot.drive(conn, |c| c.graceful_shutdown()).await
        }
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let conn =
                        http.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                    slot.drive(conn, |c| c.graceful_shutdown()).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// Answers a connection over the limit with a readable 503 (plain HTTP)
/// or just closes it (TLS), without holding a task for long.
fn refuse_over_limit(mut stream: tokio::net::TcpStream, remote: SocketAddr, tls: bool) {
    tracing::warn!(%remote, "listen.max_connections reached; connection refused");
    if tls {
        return;
    }
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{OVER_LIMIT}",
            OVER_LIMIT.len()
        );
        let _ =
            tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
    });
}

/// The proxy listener's HTTP/1.1 and HTTP/2 settings.
pub fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.listen.header_read_timeout)
        .max_buf_size(config.listen.max_header_bytes)
        // One flattened write per response instead of writev: 6-8% less
        // CPU per small request in an A/B run of scripts/bench.sh's load;
        // the extra copy of large bodies is bounded by max_buf_size.
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.listen.max_header_bytes).unwrap_or(u32::MAX))
        // WebSockets over HTTP/2 (RFC 8441), tunnelled by proxy::tunnel.
        .enable_connect_protocol()
        // Each stream may hold an upstream connection (listen.max_requests
        // bounds them all).
        .max_concurrent_streams(config.listen.max_concurrent_streams)
        .keep_alive_interval(Duration::from_secs(30));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_is_refused_even_with_reuseport() {
        let first = Listeners::bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        assert_eq!(first.sockets.len(), 2);
        let second = Listeners::bind(first.addr, 2);
        assert_eq!(
            second.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::AddrInUse),
            "a second proxy must not silently share the port"
        );
    }

    #[tokio::test]
    async fn every_socket_listens_on_the_chosen_port() {
        let bound = Listeners::bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_ne!(bound.addr.port(), 0);
        for s in &bound.sockets {
            assert_eq!(s.local_addr().unwrap(), bound.addr);
        }
    }
}
