//! Wiring: binds the listeners, builds the shared state, serves
//! connections (TLS when configured, HTTP/1.1 and HTTP/2), and runs the
//! graceful shutdown sequence.
//!
//! Shutdown: `/readyz` turns not-ready at once; the listener keeps
//! accepting for `shutdown_delay` (so load balancers stop sending traffic);
//! then it stops accepting, in-flight requests finish until
//! `shutdown_grace` (counted from the signal) runs out, and the process
//! exits.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use url::Url;

use crate::admin::{Admin, Health};
use crate::clock::Clock;
use crate::config::Config;
use crate::connection::{Connections, Limits, Tracked};
use crate::metrics::Metrics;
use crate::proxy::{BuildError, Proxy};
use crate::tls::{self, TlsError};

/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address could not be bound.
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        /// The config key.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The proxy pipeline could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Metrics registration failed (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The configuration breaks a rule (a config built in code, not
    /// loaded, is checked here).
    #[error("{0}")]
    Config(crate::config::Problems),
    /// The public URL derived from the bound address is invalid.
    #[error("listen.public_url: cannot derive it from {0}; set it explicitly")]
    PublicUrl(SocketAddr),
}

/// A started proxy.
pub struct Running {
    /// Where the proxy listener is bound.
    pub proxy_addr: SocketAddr,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    /// The URL clients use.
    pub public_url: Url,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

// === impl Running ===

impl Running {
    /// Starts the shutdown sequence (what SIGTERM does).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until the shutdown sequence has finished.
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
    }
}

/// Runs until SIGTERM or SIGINT, then drains and returns.
pub async fn run(config: Config) -> Result<(), StartError> {
    let running = start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutdown signal received; draining");
    running.shutdown();
    running.wait().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds both listeners and starts serving; returns at once.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, Clock::default()).await
}

/// [`start`], keeping the time of tokens, backoffs and sessions by
/// `clock` (tests move it forward instead of waiting).
pub async fn start_with(config: Config, clock: Clock) -> Result<Running, StartError> {
    let plan = crate::config::plan(&config).map_err(StartError::Config)?;
    let bound = Bound::new(&config).await?;
    let metrics = Arc::new(Metrics::new(Registry::new())?);
    let health = Arc::new(Health::default());
    let proxy = Proxy::new(&config, &plan, &bound.public_url, metrics.clone(), &clock)?;
    let tls = tls_acceptor(&config)?;
    let http = Arc::new(http_builder(&config));
    let connections = Connections::new(
        limits(&config),
        Some(metrics.connections.open.clone()),
        Some(metrics.connections.refused.clone()),
    );
    let admin = Admin::new(health.clone(), metrics);

    let (shutdown, shutdown_rx) = watch::channel(false);
    let store_health = health.clone();
    proxy.spawn_tasks(
        &shutdown_rx,
        Arc::new(move |up| store_health.set_store_up(up)),
    );
    let (stop_accepting, stop_rx) = watch::channel(false);
    let (stop_admin, admin_rx) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(
        bound.proxy,
        tls,
        proxy,
        http,
        connections,
        stop_rx,
    ));
    let admin_limits = Limits {
        max: ADMIN_MAX_CONNECTIONS,
        ..limits(&config)
    };
    let admin_task = tokio::spawn(admin_loop(bound.admin, admin, admin_limits, admin_rx));

    health.set_ready(true);
    tracing::info!(
        proxy = %bound.proxy_addr,
        admin = %bound.admin_addr,
        public_url = %bound.public_url,
        upstream = %config.upstream.url,
        auth = ?config.auth.mode,
        "listening"
    );

    let task = tokio::spawn(shutdown_sequence(
        shutdown_rx,
        health,
        Phases {
            delay: config.listen.shutdown_delay,
            grace: config.listen.shutdown_grace,
        },
        (stop_accepting, accept),
        (stop_admin, admin_task),
    ));

    Ok(Running {
        proxy_addr: bound.proxy_addr,
        admin_addr: bound.admin_addr,
        public_url: bound.public_url,
        shutdown,
        task,
    })
}

/// Both listeners, bound, and the URL clients use.
struct Bound {
    proxy: TcpListener,
    admin: TcpListener,
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    public_url: Url,
}

impl Bound {
    async fn new(config: &Config) -> Result<Self, StartError> {
        let proxy = bind("listen.address", config.listen.address).await?;
        let admin = bind("admin.address", config.admin.address).await?;
        let proxy_addr = local_addr("listen.address", &proxy, config.listen.address)?;
        let admin_addr = local_addr("admin.address", &admin, config.admin.address)?;
        let public_url = match &config.listen.public_url {
            Some(url) => url.clone(),
            None => derive_public_url(proxy_addr, config.listen.tls())?,
        };
        Ok(Self {
            proxy,
            admin,
            proxy_addr,
            admin_addr,
            public_url,
        })
    }
}

/// The TLS acceptor when `[listen]` names a certificate and key.
fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, StartError> {
    Ok(
        match (&config.listen.tls_cert_file, &config.listen.tls_key_file) {
            (Some(cert), Some(key)) => {
                Some(TlsAcceptor::from(Arc::new(tls::server_config(cert, key)?)))
            }
            _ => None,
        },
    )
}

/// The proxy listener's connection limits.
fn limits(config: &Config) -> Limits {
    Limits {
        max: config.listen.max_connections,
        idle: config.listen.idle_timeout,
        first_request: config.listen.header_read_timeout,
    }
}

/// The timing of a shutdown.
struct Phases {
    /// Not ready, still serving: load balancers notice.
    delay: Duration,
    /// From the signal until open connections are cut.
    grace: Duration,
}

/// A listener's stop switch and its accept task.
type Listening<T> = (watch::Sender<bool>, tokio::task::JoinHandle<T>);

/// Waits for the signal, then: not ready, `delay`, stop accepting, drain
/// the connections until `grace` is over, stop the admin listener.
async fn shutdown_sequence(
    mut signal: watch::Receiver<bool>,
    health: Arc<Health>,
    phases: Phases,
    (stop_accepting, accept): Listening<Arc<Connections>>,
    (stop_admin, admin_task): Listening<()>,
) {
    // An error means the handle was dropped: shut down as well.
    let _ = signal.wait_for(|stop| *stop).await;
    let started = Instant::now();
    health.set_ready(false);
    tokio::time::sleep(phases.delay).await;
    stop_accepting.send_replace(true);
    if let Ok(connections) = accept.await {
        let left = phases.grace.saturating_sub(started.elapsed());
        let open = connections.drain(left).await;
        if open > 0 {
            tracing::warn!(
                connections = open,
                "shutdown_grace ran out; closing remaining connections"
            );
        }
    }
    stop_admin.send_replace(true);
    let _ = admin_task.await;
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

fn local_addr(
    key: &'static str,
    l: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    l.local_addr()
        .map_err(|source| StartError::Bind { key, addr, source })
}

/// `http(s)://{address}`, with `localhost` for an unspecified address.
fn derive_public_url(addr: SocketAddr, tls: bool) -> Result<Url, StartError> {
    let scheme = if tls { "https" } else { "http" };
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "localhost".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    Url::parse(&format!("{scheme}://{host}:{}", addr.port()))
        .map_err(|_| StartError::PublicUrl(addr))
}

fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
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
        .keep_alive_interval(Duration::from_secs(30));
    builder
}

/// Admin connections open at once: probes and scrapes, nothing more.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// What a client over `listen.max_connections` reads before the
/// connection closes (plain HTTP only; a TLS client is just closed).
const OVER_LIMIT: &str = "The proxy is serving as many connections as listen.max_connections \
allows. Try again in a moment.\n";

/// Accepts until told to stop; returns the listener's connections, to
/// drain.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Proxy,
    http: Arc<auto::Builder<TokioExecutor>>,
    connections: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
) -> Arc<Connections> {
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
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let Some(slot) = connections.admit() else {
            refuse_over_limit(stream, remote, tls.is_some());
            continue;
        };
        let proxy = proxy.clone();
        let http = http.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let activity = slot.activity();
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                let request = activity.begin();
                async move {
                    let resp = proxy.serve(req, remote).await;
                    Ok::<_, std::convert::Infallible>(resp.map(|b| Tracked::new(b, request)))
                }
            });
            let result = match tls {
                None => {
                    let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    slot.drive(conn, |c| c.graceful_shutdown()).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            let conn = http
                                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
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
        });
    }
    connections
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

async fn admin_loop(
    listener: TcpListener,
    admin: Admin,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.first_request);
    let connections = Connections::new(limits, None, None);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // Over the limit: closed at once; probes retry.
        let Some(slot) = connections.admit() else {
            continue;
        };
        let admin = admin.clone();
        let activity = slot.activity();
        let conn = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| {
                let admin = admin.clone();
                let request = activity.begin();
                async move {
                    let resp = admin.serve(req).await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|b| Tracked::new(b, request)))
                }
            }),
        );
        tokio::spawn(async move {
            let _ = slot.drive(conn, |c| c.graceful_shutdown()).await;
        });
    }
}
