//! The end of every request: one access-log line and the request metrics,
//! written exactly once when the response body ends, fails or is dropped
//! (a client that disconnects early still gets its line).

use std::sync::Arc;

use http::HeaderMap;

use crate::metrics::Metrics;
use crate::request::RequestCtx;

/// Status logged when the client went away before any response was sent
/// (nginx's convention).
const CLIENT_CLOSED: u16 = 499;

/// A request's bookkeeping, finished on drop.
pub struct AccessRecord {
    metrics: Arc<Metrics>,
    ctx: RequestCtx,
    /// Status sent to the client.
    pub status: u16,
    bytes: u64,
    /// Whether the whole response body was sent.
    pub complete: bool,
    e2eid: Option<String>,
    activity_id: Option<String>,
    /// The request's place in `listen.max_requests`, kept until its
    /// response ends.
    permit: Option<Held>,
    /// What its audit line says, with `log.audit`.
    audit: Option<Box<Audit>>,
}

/// What an audit line says beyond the access line (`log.audit`).
#[derive(Debug, Default)]
pub struct Audit {
    /// The UPN is written too (`log.audit_names`).
    names: bool,
    /// The caller's address.
    caller: Option<std::net::IpAddr>,
    /// The name of the caller secret that matched, when one was asked
    /// for (modes pat, service).
    pub caller_secret: Option<String>,
    /// `session`, `proxy-token:<id>`, `client-token`, `service:<source>`,
    /// `pat` or `passthrough`; unset when none was attached.
    pub credential: Option<String>,
    /// The acting user's object id, tenant and UPN.
    pub user: Option<(Option<String>, Option<String>, Option<String>)>,
    /// The `[access]` rule that allowed or refused it.
    pub rule: Option<String>,
    /// Its token was refreshed after Azure DevOps refused it, and the
    /// request sent again.
    pub refreshed: bool,
}

/// How a request holds its place in the budget.
#[derive(Debug)]
enum Held {
    /// Alone: the answer is all there is.
    Own(crate::budget::Permit),
    /// With its upload, which is cut off when the answer is done.
    Shared(std::sync::Arc<crate::budget::SharedPermit>),
}

// === impl AccessRecord ===

impl AccessRecord {
    /// Starts the bookkeeping; counts the request as in flight.
    pub fn start(metrics: Arc<Metrics>, ctx: RequestCtx) -> Self {
        metrics.requests.in_flight.inc();
        Self {
            metrics,
            ctx,
            status: CLIENT_CLOSED,
            bytes: 0,
            complete: false,
            e2eid: None,
            activity_id: None,
            permit: None,
            audit: None,
        }
    }

    /// Writes an audit line for this request when it ends (`log.audit`):
    /// it came from `caller`; `names` adds the user's UPN.
    pub fn audit(&mut self, caller: std::net::IpAddr, names: bool) {
        self.audit = Some(Box::new(Audit {
            names,
            caller: Some(caller),
            ..Audit::default()
        }));
    }

    /// What the audit line will say, when there is one.
    pub fn audit_mut(&mut self) -> Option<&mut Audit> {
        self.audit.as_deref_mut()
    }

    /// Keeps the request's place in the budget until its response ends
    /// (and, through [`share_permit`](Self::share_permit), its upload).
    pub fn hold(&mut self, permit: crate::budget::Permit) {
        self.permit = Some(Held::Own(permit));
    }

    /// The request's place in the budget, to be held by its upload too:
    /// an upstream socket busy with a body that never ends counts against
    /// `listen.max_requests` after the answer is gone. Shared only for
    /// requests with a body, so a `GET` costs no allocation for it.
    pub fn share_permit(&mut self) -> Option<std::sync::Arc<crate::budget::SharedPermit>> {
        let shared = match self.permit.take()? {
            Held::Own(p) => crate::budget::SharedPermit::new(p),
            Held::Shared(p) => p,
        };
        self.permit = Some(Held::Shared(shared.clone()));
        Some(shared)
    }

    /// The request's context.
    pub fn ctx(&self) -> &RequestCtx {
        &self.ctx
    }

    /// The request's context, mutably.
    pub fn ctx_mut(&mut self) -> &mut RequestCtx {
        &mut self.ctx
    }

    /// Notes Azure DevOps' correlation ids from the upstream response.
    pub fn upstream_ids(&mut self, headers: &HeaderMap) {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        self.e2eid = get("x-vss-e2eid");
        self.activity_id = get("activityid");
    }

    /// Counts body bytes sent to the client.
    pub fn count(&mut self, n: u64) {
        self.bytes += n;
        self.metrics.requests.response_bytes.inc_by(n);
    }
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        if let Some(Held::Shared(p)) = &self.permit {
            p.cut();
        }
        let elapsed = self.ctx.start.elapsed();
        self.metrics.requests.in_flight.dec();
        self.metrics
            .requests
            .finished(self.ctx.route, self.status, elapsed.as_secs_f64());
        tracing::info!(
            target: "access",
            method = %self.ctx.method,
            path = %self.ctx.path(),
            status = self.status,
            duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            bytes = self.bytes,
            complete = self.complete,
            request_id = %self.ctx.request_id_str(),
            upstream = self.ctx.upstream.as_deref().unwrap_or("-"),
            e2eid = self.e2eid.as_deref().unwrap_or("-"),
            activity_id = self.activity_id.as_deref().unwrap_or("-"),
            "request"
        );
        if let Some(a) = self.audit.as_deref()
            && self.ctx.own.is_none()
        {
            self.write_audit(a);
        }
    }
}

impl AccessRecord {
    /// The audit line: who, with which credential, from where, what, and
    /// the answer. The path without its query; never a token or cookie.
    fn write_audit(&self, a: &Audit) {
        let (oid, tenant, upn) = a.user.clone().unwrap_or_default();
        let upn = upn.filter(|_| a.names);
        tracing::info!(
            target: "audit",
            request_id = %self.ctx.request_id_str(),
            user_oid = oid.as_deref().unwrap_or("-"),
            user_tenant = tenant.as_deref().unwrap_or("-"),
            user = upn.as_deref().unwrap_or("-"),
            credential = a.credential.as_deref().unwrap_or("-"),
            caller = %a.caller.map_or_else(|| "-".to_string(), |c| c.to_string()),
            caller_secret = a.caller_secret.as_deref().unwrap_or("-"),
            organization = self.ctx.organization().unwrap_or("-"),
            method = %self.ctx.method,
            path = %self.ctx.path(),
            status = self.status,
            activity_id = self.activity_id.as_deref().unwrap_or("-"),
            rule = a.rule.as_deref().unwrap_or("-"),
            refreshed = a.refreshed,
            "audit"
        );
    }
}
