//! The proxy's Prometheus metrics: one struct that owns every family,
//! registered into a registry passed in from outside (no global statics).
//! Labels are typed enums or names from the config, never raw paths.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// What kind of request this was, for labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum RouteClass {
    /// REST calls (`/_apis/`).
    Api,
    /// git smart HTTP (`/_git/`).
    Git,
    /// Anything else forwarded (web pages, downloads).
    Other,
    /// The proxy's own `/.auth/` endpoints.
    Auth,
}

/// Why an upstream exchange failed, for labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// No TCP/TLS connection could be made.
    Connect,
    /// No response headers within `response_timeout`.
    Timeout,
    /// The connection broke or the upstream spoke bad HTTP.
    Protocol,
}

/// Every metric family of the proxy.
pub struct Metrics {
    registry: Registry,
    /// `ado_proxy_requests_total`, resolved per (route, status class):
    /// the hot path never hashes label values.
    requests: [[IntCounter; STATUS_CLASSES]; ROUTES],
    /// Requests currently being served (until the response body ends).
    pub in_flight: IntGauge,
    /// Client connections open on the proxy listener.
    pub connections_open: IntGauge,
    /// Connections closed at once because `listen.max_connections` were
    /// open.
    pub connections_refused: IntCounter,
    request_duration: [Histogram; ROUTES],
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,
    /// Request body bytes received from clients.
    pub request_bytes: IntCounter,
    /// Response body bytes sent to clients.
    pub response_bytes: IntCounter,
    logins: IntCounterVec,
    login_failures: IntCounterVec,
    refreshes: IntCounterVec,
    /// Sessions held now.
    pub sessions_active: IntGauge,
    provider_duration: HistogramVec,
    denials: IntCounterVec,
    refusals: IntCounterVec,
    throttled: IntCounterVec,
    throttle_delay: Histogram,
    /// 1 while the session store answers, 0 while it does not.
    pub session_store_up: IntGauge,
    store_errors: IntCounterVec,
    unreadable: IntCounterVec,
    session_loads: IntCounterVec,
    service_acquisitions: IntCounterVec,
    service_refresh_failures: IntCounterVec,
    service_expiry: IntGauge,
    /// Unix time the service token expires (0: none or never).
    service_expires_at: std::sync::atomic::AtomicI64,
}

/// Label values of `ado_proxy_requests_refused_total`.
pub const REFUSAL_REASONS: [&str; 5] = ["bad_path", "host", "cross_site", "organization", "caller"];

/// Provider call buckets: 5 ms to 30 s.
const PROVIDER_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const ROUTES: usize = 4;
const STATUS_CLASSES: usize = 5;
const ALL_ROUTES: [RouteClass; ROUTES] = [
    RouteClass::Api,
    RouteClass::Git,
    RouteClass::Other,
    RouteClass::Auth,
];
const STATUS_LABELS: [&str; STATUS_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Latency buckets from 1 ms to 2 minutes (git pushes are slow).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

// === impl RouteClass ===

impl RouteClass {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Git => "git",
            Self::Other => "other",
            Self::Auth => "auth",
        }
    }

    /// Classifies a request path.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/.auth/") || path == "/.auth" {
            Self::Auth
        } else if path.contains("/_apis/") || path.ends_with("/_apis") {
            Self::Api
        } else if path.contains("/_git/") {
            Self::Git
        } else {
            Self::Other
        }
    }
}

impl UpstreamErrorKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
        }
    }
}

/// Index into [`STATUS_LABELS`].
fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

// === impl Metrics ===

impl Metrics {
    /// Creates the families and registers them (plus process metrics and
    /// build info) into `registry`.
    pub fn new(registry: Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "ado_proxy_requests_total",
                "Requests served, by route class and status class.",
            ),
            &["route", "status"],
        )?;
        let in_flight =
            IntGauge::new("ado_proxy_requests_in_flight", "Requests being served now.")?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "ado_proxy_request_duration_seconds",
                "Time from request to the end of the response body, by route class.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "ado_proxy_upstream_duration_seconds",
                "Time until the upstream's response headers arrived, by upstream host.",
            )
            .buckets(BUCKETS.to_vec()),
            &["upstream"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "ado_proxy_upstream_errors_total",
                "Failed upstream exchanges, by host and kind.",
            ),
            &["upstream", "kind"],
        )?;
        let request_bytes = IntCounter::new(
            "ado_proxy_request_body_bytes_total",
            "Request body bytes received from clients.",
        )?;
        let response_bytes = IntCounter::new(
            "ado_proxy_response_body_bytes_total",
            "Response body bytes sent to clients.",
        )?;
        let logins = IntCounterVec::new(
            Opts::new(
                "ado_proxy_logins_total",
                "Sign-ins by outcome: started, completed, failed.",
            ),
            &["outcome"],
        )?;
        let login_failures = IntCounterVec::new(
            Opts::new(
                "ado_proxy_login_failures_total",
                "Failed sign-ins by reason.",
            ),
            &["reason"],
        )?;
        let refreshes = IntCounterVec::new(
            Opts::new(
                "ado_proxy_token_refreshes_total",
                "Access-token refreshes by outcome: ok, shared (waited for another \
                 request's refresh), replica (another replica refreshed), throttled (a refused \
                 token not refreshed again within auth.forced_refresh_interval), relogin, operator_error, \
                 transient_error.",
            ),
            &["outcome"],
        )?;
        let sessions_active = IntGauge::new(
            "ado_proxy_sessions_active",
            "Signed-in sessions held by this process.",
        )?;
        let provider_duration = HistogramVec::new(
            HistogramOpts::new(
                "ado_proxy_token_endpoint_duration_seconds",
                "Time of calls to the identity provider, by grant (authorization_code, \
                 refresh_token, metadata).",
            )
            .buckets(PROVIDER_BUCKETS.to_vec()),
            &["grant"],
        )?;
        let denials = IntCounterVec::new(
            Opts::new(
                "ado_proxy_upstream_denials_total",
                "Azure DevOps answers recognised as auth, policy, permission or throttling \
                 failures, by catalog id.",
            ),
            &["id"],
        )?;
        let connections_open = IntGauge::new(
            "ado_proxy_connections_open",
            "Client connections open on the proxy listener.",
        )?;
        let connections_refused = IntCounter::new(
            "ado_proxy_connections_refused_total",
            "Connections answered 503 and closed because listen.max_connections were open.",
        )?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "ado_proxy_requests_refused_total",
                "Requests the proxy refused before attaching a credential, by reason: bad_path \
                 (dot segments, backslashes, odd escapes), host (Host not the proxy's: DNS \
                 rebinding), cross_site (a browser request from another site), organization \
                 (outside upstream.allowed_organizations), caller (auth.allowed_client_cidrs or \
                 the caller secret).",
            ),
            &["reason"],
        )?;
        for reason in REFUSAL_REASONS {
            refusals.with_label_values(&[reason]);
        }
        registry.register(Box::new(refusals.clone()))?;
        let throttled = IntCounterVec::new(
            Opts::new(
                "ado_proxy_upstream_throttled_total",
                "Azure DevOps rate limiting: delayed (a response with X-RateLimit-Delay or \
                 Retry-After) and blocked (429).",
            ),
            &["kind"],
        )?;
        let throttle_delay = Histogram::with_opts(
            HistogramOpts::new(
                "ado_proxy_upstream_throttle_delay_seconds",
                "Delays Azure DevOps reported in X-RateLimit-Delay.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("ado_proxy_build_info", "Build information; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(request_bytes.clone()))?;
        registry.register(Box::new(response_bytes.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(logins.clone()))?;
        let session_store_up = IntGauge::new(
            "ado_proxy_session_store_up",
            "1 while the session store answers, 0 while it is unreachable.",
        )?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "ado_proxy_session_store_errors_total",
                "Failed session store operations, by operation.",
            ),
            &["op"],
        )?;
        let unreadable = IntCounterVec::new(
            Opts::new(
                "ado_proxy_session_records_unreadable_total",
                "Stored records treated as absent, by reason (format, unknown_key, tampered, \
                 corrupt, future_version).",
            ),
            &["reason"],
        )?;
        let session_loads = IntCounterVec::new(
            Opts::new(
                "ado_proxy_session_loads_total",
                "Sessions looked up in the store because this process did not hold them, by \
                 outcome (loaded, migrated to the current key, absent).",
            ),
            &["outcome"],
        )?;
        let service_acquisitions = IntCounterVec::new(
            Opts::new(
                "ado_proxy_service_token_acquisitions_total",
                "Service identity token acquisitions, by source and outcome (ok, error).",
            ),
            &["source", "outcome"],
        )?;
        let service_refresh_failures = IntCounterVec::new(
            Opts::new(
                "ado_proxy_service_token_refresh_failures_total",
                "Background refreshes of the service token that failed, by source.",
            ),
            &["source"],
        )?;
        let service_expiry = IntGauge::new(
            "ado_proxy_service_token_expiry_seconds",
            "Seconds until the service identity's current token expires (negative: expired; \
             absent without mode service or for a PAT).",
        )?;
        registry.register(Box::new(service_acquisitions.clone()))?;
        registry.register(Box::new(service_refresh_failures.clone()))?;
        registry.register(Box::new(session_store_up.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(unreadable.clone()))?;
        registry.register(Box::new(session_loads.clone()))?;
        for op in ["get", "put", "update", "remove", "lease", "purge", "ping"] {
            store_errors.with_label_values(&[op]);
        }
        for outcome in ["loaded", "migrated", "absent"] {
            session_loads.with_label_values(&[outcome]);
        }
        registry.register(Box::new(login_failures.clone()))?;
        registry.register(Box::new(refreshes.clone()))?;
        registry.register(Box::new(sessions_active.clone()))?;
        registry.register(Box::new(provider_duration.clone()))?;
        registry.register(Box::new(denials.clone()))?;
        registry.register(Box::new(throttled.clone()))?;
        registry.register(Box::new(throttle_delay.clone()))?;
        for kind in ["delayed", "blocked"] {
            throttled.with_label_values(&[kind]);
        }
        for outcome in ["started", "completed", "failed"] {
            logins.with_label_values(&[outcome]);
        }
        for outcome in [
            "ok",
            "shared",
            "replica",
            "throttled",
            "relogin",
            "operator_error",
            "transient_error",
        ] {
            refreshes.with_label_values(&[outcome]);
        }
        // Every known label value from the start, so dashboards and alerts
        // see 0 instead of an absent series.
        for reason in [
            "method",
            "bad_return_path",
            "provider_unavailable",
            "missing_state",
            "unknown_state",
            "expired",
            "wrong_browser",
            "provider_error",
            "missing_code",
            "wrong_issuer",
            "id_token_invalid",
            "code_redemption",
            "not_allowed",
            "not_signed_in",
            "bad_form",
        ] {
            login_failures.with_label_values(&[reason]);
        }
        for reason in [
            "format",
            "unknown_key",
            "tampered",
            "corrupt",
            "future_version",
        ] {
            unreadable.with_label_values(&[reason]);
        }
        for grant in [
            "authorization_code",
            "refresh_token",
            "metadata",
            "client_credentials",
            "managed_identity",
            "device_code",
        ] {
            provider_duration.with_label_values(&[grant]);
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        // Resolve every (route, status) series now: they also show up as 0
        // in /metrics from the start, which alerting rules like.
        let by_route =
            ALL_ROUTES.map(|r| STATUS_LABELS.map(|s| requests.with_label_values(&[r.as_str(), s])));
        let duration_by_route =
            ALL_ROUTES.map(|r| request_duration.with_label_values(&[r.as_str()]));
        Ok(Self {
            registry,
            requests: by_route,
            in_flight,
            connections_open,
            connections_refused,
            request_duration: duration_by_route,
            upstream_duration,
            upstream_errors,
            request_bytes,
            response_bytes,
            logins,
            login_failures,
            refreshes,
            sessions_active,
            provider_duration,
            denials,
            refusals,
            throttled,
            throttle_delay,
            session_store_up,
            store_errors,
            unreadable,
            session_loads,
            service_acquisitions,
            service_refresh_failures,
            service_expiry,
            service_expires_at: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// Counts a request refused before forwarding; `reason` is one of
    /// [`REFUSAL_REASONS`].
    pub fn record_refusal(&self, reason: &'static str) {
        self.refusals.with_label_values(&[reason]).inc();
    }

    /// Creates the denial series of every catalog case at 0, so alerts
    /// see them before the first denial. `diagnose` owns the ids.
    pub fn init_denials<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.denials.with_label_values(&[id]);
        }
    }

    /// Counts an upstream answer recognised as catalog case `id`.
    pub fn record_denial(&self, id: &str) {
        self.denials.with_label_values(&[id]).inc();
    }

    /// Counts rate limiting seen in an upstream answer's head.
    pub fn record_throttling(&self, status: u16, headers: &http::HeaderMap) {
        let delay = headers
            .get("x-ratelimit-delay")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(d) = delay {
            self.throttle_delay.observe(d);
        }
        if status == 429 {
            self.throttled.with_label_values(&["blocked"]).inc();
        } else if delay.is_some()
            || ((200..300).contains(&status) && headers.contains_key("retry-after"))
        {
            self.throttled.with_label_values(&["delayed"]).inc();
        }
    }

    /// Counts a sign-in step (`started`, `completed`).
    pub fn record_login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    /// Counts a failed sign-in by a fixed reason slug.
    pub fn record_login_failure(&self, reason: &str) {
        self.logins.with_label_values(&["failed"]).inc();
        self.login_failures.with_label_values(&[reason]).inc();
    }

    /// Counts a failed session store operation.
    pub fn record_store_error(&self, op: &str) {
        self.store_errors.with_label_values(&[op]).inc();
    }

    /// Counts a stored record that could not be used.
    pub fn record_unreadable(&self, reason: &str) {
        self.unreadable.with_label_values(&[reason]).inc();
    }

    /// Counts a lookup in the store.
    pub fn record_session_load(&self, outcome: &str) {
        self.session_loads.with_label_values(&[outcome]).inc();
    }

    /// Creates the service token series of `source` at 0, so alerts see
    /// them before the first failure.
    pub fn init_service_source(&self, source: &str) {
        for outcome in ["ok", "error"] {
            self.service_acquisitions
                .with_label_values(&[source, outcome]);
        }
        self.service_refresh_failures.with_label_values(&[source]);
    }

    /// Counts a service token acquisition.
    pub fn record_service_acquisition(&self, source: &str, outcome: &str) {
        self.service_acquisitions
            .with_label_values(&[source, outcome])
            .inc();
    }

    /// Counts a failed background refresh of the service token.
    pub fn record_service_refresh_failure(&self, source: &str) {
        self.service_refresh_failures
            .with_label_values(&[source])
            .inc();
    }

    /// Records when the service token expires (unix seconds; `None` for
    /// tokens that do not expire). The first call registers the gauge.
    pub fn set_service_token_expiry(&self, at: Option<i64>) {
        use std::sync::atomic::Ordering;
        let before = self
            .service_expires_at
            .swap(at.unwrap_or(-1), Ordering::Relaxed);
        if before == 0 && at.is_some() {
            let _ = self
                .registry
                .register(Box::new(self.service_expiry.clone()));
        }
    }

    /// Counts a refresh outcome.
    pub fn record_refresh(&self, outcome: &str) {
        self.refreshes.with_label_values(&[outcome]).inc();
    }

    /// Times a call to the identity provider.
    pub fn observe_provider_call(&self, grant: &str, seconds: f64) {
        self.provider_duration
            .with_label_values(&[grant])
            .observe(seconds);
    }

    /// Records a finished request (called once, when its response ends).
    pub fn record_request(&self, route: RouteClass, status: u16, seconds: f64) {
        self.requests[route as usize][status_class(status)].inc();
        self.request_duration[route as usize].observe(seconds);
    }

    /// The time-to-headers series of one upstream host, to be resolved
    /// once when the routing table is built.
    pub fn upstream_duration(&self, upstream: &str) -> Histogram {
        // Its error series too, so they read 0 rather than absent.
        for kind in ["connect", "timeout", "protocol"] {
            self.upstream_errors.with_label_values(&[upstream, kind]);
        }
        self.upstream_duration.with_label_values(&[upstream])
    }

    /// Counts a failed upstream exchange.
    pub fn record_upstream_error(&self, upstream: &str, kind: UpstreamErrorKind) {
        self.upstream_errors
            .with_label_values(&[upstream, kind.as_str()])
            .inc();
    }

    /// The text exposition format of every registered family.
    pub fn render(&self) -> String {
        let at = self
            .service_expires_at
            .load(std::sync::atomic::Ordering::Relaxed);
        if at > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.service_expiry.set(at - now);
        }
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_series_are_indexed_by_discriminant() {
        // record_request indexes the resolved series by `route as usize`.
        for (i, route) in ALL_ROUTES.iter().enumerate() {
            assert_eq!(*route as usize, i, "{route:?}");
        }
        let m = Metrics::new(Registry::new()).unwrap();
        m.record_request(RouteClass::Auth, 503, 0.1);
        assert!(
            m.render()
                .contains("ado_proxy_requests_total{route=\"auth\",status=\"5xx\"} 1")
        );
    }

    #[test]
    fn route_classes() {
        let check = |path, want: RouteClass| assert_eq!(RouteClass::of_path(path), want, "{path}");
        check("/org/_apis/projects", RouteClass::Api);
        check("/.hosts/vsrm/org/_apis/release/releases", RouteClass::Api);
        check("/org/proj/_git/repo/info/refs", RouteClass::Git);
        check("/org/proj", RouteClass::Other);
        check("/.auth/login", RouteClass::Auth);
    }

    #[test]
    fn renders_typed_labels() {
        let m = Metrics::new(Registry::new()).unwrap();
        m.record_request(RouteClass::Git, 404, 0.01);
        m.record_upstream_error("vsrm", UpstreamErrorKind::Timeout);
        let text = m.render();
        assert!(
            text.contains("ado_proxy_requests_total{route=\"git\",status=\"4xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ado_proxy_upstream_errors_total{kind=\"timeout\",upstream=\"vsrm\"} 1"),
            "{text}"
        );
        assert!(text.contains("ado_proxy_build_info{version=\""), "{text}");
    }
}
