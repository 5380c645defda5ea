//! The admin listener: `/healthz` (alive), `/readyz` (serving and not
//! draining) and `/metrics` (Prometheus text format), on its own address so
//! it can be kept off the network clients use.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use crate::error::Refusal;
use crate::metrics::Metrics;
use crate::proxy::origin::Origins;
use crate::startup::StartupChecks;

/// Readiness shared between the listeners and the shutdown sequence.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    /// Whether the session store answers (true without one).
    store_down: AtomicBool,
    /// Once `/startupz` answered 200 it stays so (the kubelet stops asking).
    started: AtomicBool,
    /// Whether the identity has its credential (mode `service`: its first
    /// token); unset means it needs none to start.
    credential: std::sync::OnceLock<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// The start-up checks (the look at the organizations) still running.
    checks: StartupChecks,
}

/// Answers admin requests.
#[derive(Clone)]
pub struct Admin {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// The names the admin listener answers to (the proxy listener's
    /// rule, with `admin.allowed_hosts`): a page that rebinds its own name
    /// to the pod must not read `/metrics`.
    hosts: Arc<Origins>,
}

// === impl Health ===

impl Health {
    /// Marks the proxy ready (listening) or not (starting, draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Records whether the session store answers.
    pub fn set_store_up(&self, up: bool) {
        self.store_down.store(!up, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.store_down.load(Ordering::SeqCst)
    }

    /// The start-up checks `/startupz` waits for.
    pub fn startup_checks(&self) -> StartupChecks {
        self.checks.clone()
    }

    /// What tells `/startupz` that the identity has its credential.
    pub fn set_credential_check(&self, has: Arc<dyn Fn() -> bool + Send + Sync>) {
        let _ = self.credential.set(has);
    }

    /// Why the proxy has not finished starting; `None` once it has (then
    /// for good): listening, the store answering, the credential there.
    pub fn starting(&self) -> Option<&'static str> {
        if self.started.load(Ordering::SeqCst) {
            return None;
        }
        let why = if !self.ready.load(Ordering::SeqCst) {
            Some("not listening yet")
        } else if self.store_down.load(Ordering::SeqCst) {
            Some("the session store does not answer yet")
        } else if self.credential.get().is_some_and(|has| !has()) {
            Some(
                "the service identity has no token yet (the log and /readyz say why; a device-code \
                 identity needs `ado-auth-proxy login`)",
            )
        } else if self.checks.pending() {
            Some("the start-up check of the allowed organizations is still running")
        } else {
            None
        };
        if why.is_none() {
            self.started.store(true, Ordering::SeqCst);
        }
        why
    }
}

// === impl Admin ===

impl Admin {
    /// An admin service over shared health and metrics, answering to
    /// `hosts`.
    pub fn new(health: Arc<Health>, metrics: Arc<Metrics>, hosts: Origins) -> Self {
        Self {
            health,
            metrics,
            hosts: Arc::new(hosts),
        }
    }

    /// Serves one admin request.
    pub async fn serve<B>(&self, req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
        if let Err(refusal) = self.hosts.check_host(&req) {
            let status = match refusal {
                Refusal::BadHost(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::MISDIRECTED_REQUEST,
            };
            return Ok(text(
                status,
                format!(
                    "refused: {refusal}. The admin listener answers to IP addresses, localhost, \
                     the listen.public_url host and the names in admin.allowed_hosts.\n"
                ),
            ));
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"));
        }
        Ok(match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.health.is_ready() => text(StatusCode::OK, "ready\n"),
            "/readyz" if self.health.store_down.load(Ordering::SeqCst) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the session store is unreachable (cached sessions keep working; new \
                 sign-ins get 503)\n",
            ),
            "/readyz" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: starting or draining\n",
            ),
            "/startupz" => match self.health.starting() {
                None => text(StatusCode::OK, "started\n"),
                Some(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("starting: {why}\n"),
                ),
            },
            "/metrics" => {
                let mut resp = text(StatusCode::OK, self.metrics.render());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /healthz, /readyz, /startupz or /metrics\n",
            ),
        })
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
