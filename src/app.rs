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
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
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
use crate::serve;
use crate::tls::{self, TlsError};

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
    raise_descriptor_limit(config.listen.max_requests);
    let running = start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutdown signal received; draining");
    running.shutdown();
    running.wait().await;
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft limit of open files to the hard one, as Go programs
/// and nginx's `worker_rlimit_nofile` do: container runtimes often start
/// processes at a soft 1024, fewer than `listen.max_requests` upstream
/// connections plus the clients' own need. Says so when even the hard
/// limit is short of that.
fn raise_descriptor_limit(max_requests: usize) {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let lim = getrlimit(Resource::Nofile);
        // An unlimited hard limit (`None`) is above the kernel's nr_open.
        let hard = lim.maximum.unwrap_or(1 << 20);
        let wanted = hard.min(1 << 20);
        let raised = lim.current.is_some_and(|soft| soft < wanted)
            && setrlimit(
                Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(wanted),
                    maximum: lim.maximum,
                },
            )
            .is_ok();
        if raised {
            tracing::debug!(limit = wanted, "raised the open-file limit");
        }
        let need = (max_requests as u64).saturating_mul(2).saturating_add(64);
        if hard < need {
            tracing::warn!(
                limit = hard,
                listen.max_requests = max_requests,
                "the open-file limit is below what listen.max_requests may use (two per \
                 request); lower listen.max_requests or raise the limit"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = max_requests;
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
    // The same warnings check-config prints.
    for w in crate::config::warnings(&config, true) {
        tracing::warn!(key = %w.key, "{}", w.message);
    }
    let bound = Bound::new(&config).await?;
    let metrics = metrics_for(&plan)?;
    let health = Arc::new(Health::default());
    let proxy = Proxy::new(&config, &plan, &bound.public_url, metrics.clone(), &clock)?;
    let shared = serve::Shared {
        proxy,
        tls: tls_acceptor(&config)?,
        http: Arc::new(serve::http_builder(&config)),
        connections: Connections::new(
            limits(&config),
            Some(metrics.connections.open.clone()),
            Some(metrics.connections.refused.clone()),
        ),
    };
    if let Some(check) = shared.proxy.credential_check() {
        health.set_credential_check(check);
    }
    let admin = admin_for(&config, &bound.public_url, health.clone(), metrics);

    let (shutdown, shutdown_rx) = watch::channel(false);
    let store_health = health.clone();
    shared.proxy.spawn_tasks(
        &shutdown_rx,
        Arc::new(move |up| store_health.set_store_up(up)),
        &health.startup_checks(),
    );
    let (stop_accepting, stop_rx) = watch::channel(false);
    let (stop_admin, admin_rx) = watch::channel(false);
    let workers = serve::Workers::start(bound.proxy, &shared, &stop_rx).map_err(|source| {
        StartError::Bind {
            key: "listen.workers",
            addr: bound.proxy_addr,
            source,
        }
    })?;
    let accept = (workers, shared.connections.clone());
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
        workers = serve::worker_count(&config),
        "listening"
    );
    log_what_runs(&config, &bound.public_url);

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

/// The admin listener's endpoints, reachable by the admin hosts only.
fn admin_for(
    config: &Config,
    public_url: &Url,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Admin {
    let hosts = crate::proxy::origin::Origins::new(
        public_url,
        &config.admin.allowed_hosts,
        "http",
        false,
        &[],
    );
    Admin::new(health, metrics, hosts)
}

/// The metrics of a proxy running `plan`: series that cannot move in
/// its mode are not exported at 0.
fn metrics_for(plan: &crate::config::AuthPlan) -> Result<Arc<Metrics>, StartError> {
    let metrics = Arc::new(Metrics::new(Registry::new())?);
    let sessions = matches!(plan, crate::config::AuthPlan::User { .. });
    if !sessions {
        // No session store to be down: the store alert must not fire on
        // every healthy pat, service or none sidecar.
        metrics.store.up.set(1);
        metrics.store.trim();
    }
    let provider = sessions
        || matches!(
            plan,
            crate::config::AuthPlan::Service(s) if !matches!(s, crate::config::SourcePlan::Pat)
        );
    metrics.login.trim(sessions, provider);
    Ok(metrics)
}

/// Both listeners, bound, and the URL clients use.
struct Bound {
    proxy: serve::Listeners,
    admin: TcpListener,
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    public_url: Url,
}

impl Bound {
    async fn new(config: &Config) -> Result<Self, StartError> {
        let proxy = serve::Listeners::bind(config.listen.address, serve::worker_count(config))
            .map_err(|source| StartError::Bind {
                key: "listen.address",
                addr: config.listen.address,
                source,
            })?;
        let admin = bind("admin.address", config.admin.address).await?;
        let proxy_addr = proxy.addr;
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

/// The admin listener's stop switch and its accept task.
type Listening<T> = (watch::Sender<bool>, tokio::task::JoinHandle<T>);

/// The proxy listener's stop switch, its serving threads and their
/// connections.
type Serving = (watch::Sender<bool>, (serve::Workers, Arc<Connections>));

/// Waits for the signal, then: not ready, `delay`, stop accepting, drain
/// the connections until `grace` is over, stop the admin listener.
async fn shutdown_sequence(
    mut signal: watch::Receiver<bool>,
    health: Arc<Health>,
    phases: Phases,
    (stop_accepting, (mut workers, connections)): Serving,
    (stop_admin, admin_task): Listening<()>,
) {
    // An error means the handle was dropped: shut down as well.
    let _ = signal.wait_for(|stop| *stop).await;
    let started = crate::clock::real_instant();
    health.set_ready(false);
    tokio::time::sleep(phases.delay).await;
    stop_accepting.send_replace(true);
    workers.stopped_accepting().await;
    let left = phases.grace.saturating_sub(started.elapsed());
    let open = connections.drain(left).await;
    if open > 0 {
        tracing::warn!(
            connections = open,
            "shutdown_grace ran out; closing remaining connections"
        );
    }
    workers.finish().await;
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

/// One line saying what runs: the build, the mode and where its
/// credential comes from, the session store, the allowlist; and in mode
/// `user` the redirect URI to register at the identity provider.
fn log_what_runs(config: &Config, public_url: &Url) {
    use crate::config::AuthMode;
    // The config's own spelling ("entra", "client-credentials").
    fn spelled<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_value(v)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "-".into())
    }
    let a = &config.auth;
    let (credential, store) = match a.mode {
        AuthMode::User => (
            a.provider.as_ref().map_or("-".into(), spelled),
            spelled(&config.session.store),
        ),
        AuthMode::Service => (a.source.as_ref().map_or("-".into(), spelled), "-".into()),
        AuthMode::Pat => ("pat".into(), "-".into()),
        AuthMode::None => ("none".into(), "-".into()),
    };
    let organizations = if config.upstream.allowed_organizations.is_empty() {
        "any".to_string()
    } else {
        config.upstream.allowed_organizations.join(",")
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        revision = env!("ADO_PROXY_BUILD_REVISION"),
        mode = %spelled(&a.mode),
        credential = %credential,
        session_store = %store,
        organizations = %organizations,
        egress_proxy = %config.upstream.egress,
        "ado-auth-proxy running"
    );
    if a.mode == AuthMode::User {
        tracing::info!(
            redirect_uri = %format!("{}/.auth/callback", public_url.as_str().trim_end_matches('/')),
            "register this redirect URI for the app at the identity provider (Entra: platform Web)"
        );
    }
}

/// `http(s)://{address}`, with `localhost` for an unspecified or loopback
/// address: the redirect URI Entra accepts over plain http is
/// `http://localhost:…` (not `http://127.0.0.1:…`), and it is the URL the
/// README tells users to open and register.
fn derive_public_url(addr: SocketAddr, tls: bool) -> Result<Url, StartError> {
    let scheme = if tls { "https" } else { "http" };
    let host = match addr.ip() {
        ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    Url::parse(&format!("{scheme}://{host}:{}", addr.port()))
        .map_err(|_| StartError::PublicUrl(addr))
}

/// Admin connections open at once: probes and scrapes, nothing more.
const ADMIN_MAX_CONNECTIONS: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_or_unspecified_listener_is_reached_as_localhost() {
        let url = |a: &str, tls| {
            derive_public_url(a.parse().unwrap(), tls)
                .unwrap()
                .to_string()
        };
        // The default listen.address: the redirect URI README registers.
        assert_eq!(url("127.0.0.1:8080", false), "http://localhost:8080/");
        assert_eq!(url("127.0.0.2:8080", false), "http://localhost:8080/");
        assert_eq!(url("[::1]:8443", true), "https://localhost:8443/");
        assert_eq!(url("0.0.0.0:8080", false), "http://localhost:8080/");
        assert_eq!(url("10.1.2.3:8080", false), "http://10.1.2.3:8080/");
        assert_eq!(url("[fd00::1]:8080", false), "http://[fd00::1]:8080/");
    }
}
