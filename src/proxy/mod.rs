//! The per-request pipeline: classify the request, route it, attach the
//! credential, forward it, and fix up the response (headers, `Location`,
//! discovery documents). Every failure goes to [`crate::error::into_response`].

mod affinity;
pub mod callers;
mod checks;
mod cors;
mod documents;
mod explain;
pub mod forward;
pub mod headers;
mod lfs;
pub mod origin;
mod packages;
pub mod path;
mod policy;
mod prepared;
mod probe;
mod reading;
pub mod rewrite;
mod rewriting;
pub mod route;
mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::response::Parts;
use http::{Request, Response, StatusCode, Version};

use hyper::body::Incoming;
use url::Url;

pub use self::affinity::Downstream;
use self::forward::Forwarder;
use self::prepared::{Prepared, clone_head};
use self::reading::Rewrite;
use self::rewrite::UrlMap;
use self::route::Router;
use crate::access::AccessRecord;
use crate::body::{CountedBody, ProxyBody};
use crate::clock::Clock;
use crate::config::{AuthPlan, Config};
use crate::diagnose;
use crate::error::{self, Error};
use crate::identity::{Identity, IdentityError};
use crate::metrics::Metrics;
use crate::request::{RequestCtx, X_REQUEST_ID};
use crate::tls::TlsError;

/// The proxy service, cheap to clone into each connection.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
    /// This serving thread's upstream pool (see [`Proxy::for_worker`]).
    forwarder: Arc<Forwarder>,
}

struct Inner {
    /// Host and cross-site checks, before anything else.
    origins: origin::Origins,
    router: Router,
    urls: Arc<UrlMap>,
    forwarder: Forwarder,
    identity: Identity,
    /// Who may call a fixed-identity proxy, when restricted.
    callers: Option<callers::Callers>,
    /// `upstream.forward_cookies`: the only cookies forwarded.
    forward_cookies: Vec<String>,
    metrics: Arc<Metrics>,
    /// `http` or `https`: how clients reach the listener.
    scheme: &'static str,
    /// Upgraded connections (WebSockets).
    tunnels: tunnel::Tunnels,
    /// `auth.check_pat_at_start`.
    check_at_start: bool,
    /// `[access]`, when it checks anything.
    policy: Option<policy::Policy>,
    /// `log.audit`: whether audit lines carry names (`log.audit_names`).
    audit: Option<bool>,
    /// `listen.max_requests`, shared by every serving thread.
    budget: Arc<crate::budget::Budget>,
}

/// Why the proxy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A TLS file for the upstream client is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The identity could not be set up.
    #[error("auth: {0}")]
    Identity(#[from] IdentityError),
    /// The caller rules are unusable.
    #[error("{0}")]
    Callers(String),
}

// === impl Proxy ===

impl Proxy {
    /// Builds the pipeline. `public_url` is where clients reach the
    /// proxy; `clock` is the time tokens and sessions are kept by.
    pub fn new(
        config: &Config,
        plan: &AuthPlan,
        public_url: &Url,
        metrics: Arc<Metrics>,
        clock: &Clock,
    ) -> Result<Self, BuildError> {
        metrics
            .upstream
            .init_denials(diagnose::catalog::CATALOG.iter().map(|e| e.id));
        let router = Router::new(&config.upstream, &metrics);
        let scheme = if config.listen.tls() { "https" } else { "http" };
        let origins = origin::Origins::new(
            public_url,
            &config.listen.allowed_hosts,
            scheme,
            matches!(plan, AuthPlan::User { .. }),
            &config.listen.cors_allowed_origins,
        );
        let urls = Arc::new(UrlMap::new(public_url, &router));
        let policy = {
            let names = match plan {
                AuthPlan::User { plan, .. } => plan.allow.names,
                _ => crate::config::NameTrust::UpnAndEmail,
            };
            let policy = policy::Policy::new(crate::config::access_plan(config), names);
            if let Some(p) = &policy {
                metrics.requests.init_access(&p.rule_names());
            }
            policy
        };
        let forwarder = Forwarder::new(&config.upstream)?;
        Ok(Self {
            forwarder: Arc::new(forwarder.with_own_pool()),
            inner: Arc::new(Inner {
                forwarder,
                identity: Identity::from_config(config, plan, public_url, metrics.clone(), clock)?,
                callers: match plan {
                    AuthPlan::Pat | AuthPlan::Service(_) => {
                        callers::Callers::from_config(&config.auth).map_err(BuildError::Callers)?
                    }
                    AuthPlan::PassThrough | AuthPlan::User { .. } => None,
                },
                forward_cookies: config.upstream.forward_cookies.clone(),
                origins,
                router,
                urls,
                tunnels: tunnel::Tunnels::new(
                    config.listen.max_tunnels,
                    config.listen.tunnel_idle_timeout,
                    &config.listen.tunnel_protocols,
                    metrics.clone(),
                ),
                metrics,
                scheme,
                check_at_start: config.auth.check_pat_at_start,
                policy,
                audit: config.log.audit.then_some(config.log.audit_names),
                budget: crate::budget::Budget::new(config.listen.max_requests),
            }),
        })
    }

    /// The same proxy with a pool of upstream connections of its own, for
    /// one serving thread: its requests never wait on another thread's
    /// connections.
    pub fn for_worker(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            forwarder: Arc::new(self.inner.forwarder.with_own_pool()),
        }
    }

    /// Closes this serving thread's idle upstream connections once they
    /// expire (`upstream.pool_idle_timeout`), checking that often; runs
    /// until the thread's runtime ends.
    pub async fn sweep_idle_connections(self) {
        let idle = self.forwarder.idle().clone();
        let every = idle.timeout().max(std::time::Duration::from_secs(1));
        loop {
            tokio::time::sleep(every).await;
            idle.sweep();
        }
    }

    /// A client connection from `remote`, as its requests reach Azure
    /// DevOps (with an upstream connection of its own).
    pub fn downstream(&self, remote: SocketAddr) -> Downstream {
        self.forwarder.downstream(remote)
    }

    /// Mode `service`: whether the identity holds a token (see
    /// [`Identity::credential_check`]).
    pub fn credential_check(&self) -> Option<Arc<dyn Fn() -> bool + Send + Sync>> {
        self.inner.identity.credential_check()
    }

    /// Starts the identity's background tasks (see
    /// [`Identity::spawn_tasks`]), and closes the tunnels once `stop` is
    /// set.
    pub fn spawn_tasks(
        &self,
        stop: &tokio::sync::watch::Receiver<bool>,
        store_up: Arc<dyn Fn(bool) + Send + Sync>,
        checks: &crate::startup::StartupChecks,
    ) {
        self.inner.identity.spawn_tasks(stop, store_up);
        if let Some(credential) = self
            .inner
            .identity
            .startup_check()
            .filter(|_| self.inner.check_at_start)
        {
            tokio::spawn(probe::credential_reaches_organizations(
                self.inner.clone(),
                credential,
                checks.begin(),
            ));
        }
        if let Some(tenant) = self.inner.identity.service_tenant() {
            tokio::spawn(probe::directories_match(
                self.inner.clone(),
                tenant.to_string(),
                checks.begin(),
            ));
        }
        let inner = self.inner.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            // An error means the server is gone: close them as well.
            let _ = stop.wait_for(|s| *s).await;
            inner.tunnels.close_all();
        });
    }

    /// Serves one request of `downstream`. Never fails: errors become
    /// responses. Dropping the future (client gone) cancels the upstream
    /// request.
    pub async fn serve(
        &self,
        req: Request<Incoming>,
        downstream: &Downstream,
    ) -> Response<ProxyBody> {
        let mut record = AccessRecord::start(self.inner.metrics.clone(), RequestCtx::new(&req));
        if let Some(names) = self.inner.audit {
            record.audit(downstream.remote.ip(), names);
        }
        let via = Via {
            forwarder: &self.forwarder,
            downstream,
        };
        let admitted = match self.inner.budget.try_take() {
            Some(permit) => {
                record.hold(permit);
                Ok(())
            }
            None => Err(Error::Busy {
                max: self.inner.budget.max(),
            }),
        };
        let served = match admitted {
            Ok(()) => self.inner.pipeline(req, via, &mut record).await,
            Err(e) => Err(e),
        };
        let mut resp = match served {
            Ok(resp) => resp,
            Err(e) => {
                if let Error::Upstream { upstream, kind, .. } = &e {
                    self.inner.metrics.upstream.failed(upstream, *kind);
                }
                if let Some(reason) = e.refusal_reason() {
                    self.inner.metrics.requests.refused(reason);
                }
                error::into_response(&e, record.ctx())
            }
        };
        resp.headers_mut()
            .insert(X_REQUEST_ID, record.ctx().request_id.clone());
        if let Some(origin) = &record.ctx().cors {
            cors::decorate(resp.headers_mut(), origin);
        }
        record.status = resp.status().as_u16();
        resp.map(|b| b.with_access_record(record))
    }
}

/// How one request reaches Azure DevOps: the serving thread's pool, and
/// the client connection it came on.
#[derive(Clone, Copy)]
struct Via<'a> {
    forwarder: &'a Forwarder,
    downstream: &'a Downstream,
}

impl<'a> Via<'a> {
    fn send(
        self,
        req: Request<CountedBody>,
        upstream: &'a route::Upstream,
    ) -> impl Future<Output = Result<Response<Incoming>, Error>> + 'a {
        self.forwarder.send(req, upstream, Some(self.downstream))
    }
}

impl Inner {
    /// The whole pipeline of one request: the origin and caller checks,
    /// `/.auth/`, the route, the credential, the exchange with Azure
    /// DevOps (and the identity's reaction to a 401), then the response's
    /// headers, `Location`, diagnosis or discovery rewrite.
    async fn pipeline(
        &self,
        mut req: Request<Incoming>,
        via: Via<'_>,
        record: &mut AccessRecord,
    ) -> Result<Response<ProxyBody>, Error> {
        if let Some(preflight) = self.admit(&mut req, via.downstream.remote, record)? {
            return Ok(preflight);
        }
        if record.ctx().own.is_some() {
            return Box::pin(self.identity.serve_auth(req, record.ctx())).await;
        }
        let target = self.router.route(req.uri())?;
        let upstream = target.upstream;
        record.ctx_mut().upstream = Some(upstream.name.clone());
        record.ctx_mut().set_organization(target.organization);
        let credential = self
            .identity
            .credential(req.headers(), record.ctx())
            .await?;
        let Prepared {
            request: upstream_req,
            upgrade,
            rewrite,
            bodyless,
        } = self.prepare(req, target.uri, via, record, &credential)?;
        let request_url = upstream_req.uri().clone();
        // A user's token may be refused although it looked valid (revoked,
        // policy change): such a request can be refreshed and sent again
        // once, if it has no body to replay.
        let retry = (credential.refreshable() && bodyless).then(|| clone_head(&upstream_req));
        let sent = crate::clock::real_instant();
        let mut resp = via.send(upstream_req, upstream).await?;
        let renewed = self
            .identity
            .after_upstream(
                (resp.status(), resp.headers()),
                &credential,
                retry.is_some(),
                record.ctx(),
            )
            .await?;
        if let (Some(header), Some(again)) = (renewed, retry) {
            drop(resp);
            let again = self.send_again(again, header, record);
            resp = via.send(again, upstream).await?;
        }
        upstream.duration.observe(sent.elapsed().as_secs_f64());
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(upgrade) = upgrade
        {
            let (upgrade, place) = *upgrade;
            let ended = self.identity.credential_end(&credential);
            return Ok(self.switch(resp, upgrade, place, ended, record.ctx()));
        }

        let (mut parts, body) = resp.into_parts();
        self.response_head(&mut parts, &request_url, record);
        if rewrite == Rewrite::LfsBatch {
            // Before diagnosis, not after: diagnosis passes what it does
            // not recognise as it is, and a batch answer must never pass
            // unrewritten (a 203, or HTML on an `/_apis/` path, would).
            return Box::pin(self.lfs_batch(parts, body, record.ctx(), upstream, &credential))
                .await;
        }
        if diagnose::worth_inspecting(parts.status, &parts.headers, record.ctx().path()) {
            return Box::pin(self.diagnose(parts, body, record.ctx(), upstream, &credential)).await;
        }
        let body = match rewrite {
            Rewrite::Discovery | Rewrite::CargoConfig => {
                self.rewrite_discovery(&mut parts, body, upstream, rewrite)
                    .await?
            }
            Rewrite::Packages => self.rewrite_packages(&mut parts, body),
            // Batch answers were answered above.
            Rewrite::LfsBatch | Rewrite::None => ProxyBody::upstream(None, body),
        };
        Ok(Response::from_parts(parts, body))
    }

    /// The upstream's response head as the client gets it: its own HTTP
    /// version, no hop-by-hop headers, `Location` on the proxy; the
    /// upstream's ids and throttling noted.
    fn response_head(&self, parts: &mut Parts, request_url: &http::Uri, record: &mut AccessRecord) {
        // The client's connection has its own version (hyper picks it).
        parts.version = Version::default();
        record.upstream_ids(&parts.headers);
        headers::prepare_response(&mut parts.headers);
        documents::sandbox(&mut parts.headers);
        self.rewrite_locations(parts, request_url);
        self.metrics
            .upstream
            .throttling(parts.status.as_u16(), &parts.headers);
    }

    /// Relays Azure DevOps' 101 and starts the tunnel between the two
    /// switched connections.
    fn switch(
        &self,
        mut resp: Response<Incoming>,
        upgrade: tunnel::Upgrade,
        place: tunnel::Place,
        ended: Option<tunnel::CredentialEnd>,
        ctx: &RequestCtx,
    ) -> Response<ProxyBody> {
        let upstream_side = hyper::upgrade::on(&mut resp);
        let (mut parts, _) = resp.into_parts();
        parts.version = Version::default();
        let protocol = parts.headers.get(header::UPGRADE).cloned();
        headers::prepare_response(&mut parts.headers);
        upgrade.prepare_answer(&mut parts.status, &mut parts.headers, protocol);
        self.tunnels.spawn(
            place,
            upgrade.client,
            upstream_side,
            ctx.request_id_str().to_string(),
            ended,
        );
        Response::from_parts(parts, ProxyBody::empty())
    }

    fn rewrite_locations(&self, parts: &mut Parts, request_url: &http::Uri) {
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(value) = parts.headers.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let Ok(base) = Url::parse(&request_url.to_string()) else {
                return;
            };
            let rewritten = self
                .urls
                .rewrite_location(value, &base)
                .and_then(|s| HeaderValue::try_from(s).ok());
            if let Some(v) = rewritten {
                parts.headers.insert(name, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The per-request future is moved around by the runtime; the
    /// sign-in and diagnosis paths are boxed so it stays small.
    #[test]
    fn the_request_future_stays_small() {
        fn future_size<F, Fut>(_: F) -> usize
        where
            F: FnOnce(super::Proxy, http::Request<hyper::body::Incoming>) -> Fut,
        {
            std::mem::size_of::<Fut>()
        }
        let size = future_size(|p, r| async move {
            let d = p.downstream(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
            p.serve(r, &d).await
        });
        assert!(size <= 4096, "serve() future is {size} bytes");
    }
}
