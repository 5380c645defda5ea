//! The proxy's Prometheus metrics, registered into a registry passed in
//! from outside (no global statics). Each component's families live in
//! their own file and register themselves; labels are typed enums
//! ([`family::Label`]) or names from the config, never raw paths.

pub mod family;
mod login;
mod requests;
mod secrets;
mod service;
mod store;
mod tunnels;
mod upstream;

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

pub use login::{
    ClaimsOutcome, DirectoryOutcome, Grant, LoginFailure, LoginMetrics, LoginOutcome,
    RefreshOutcome, TenantTokenOutcome, TokenOutcome,
};
pub use requests::{Connections, RefusalReason, Requests, RouteClass};
pub use secrets::SecretAges;
pub use service::{Acquisition, Service};
pub use store::{LoadOutcome, Store, StoreOp, Unreadable};
pub use tunnels::{TunnelEnd, Tunnels};
pub use upstream::{HostSeries, Throttle, Upstream, UpstreamErrorKind};

/// Latency buckets from 1 ms to 2 minutes (git pushes are slow).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Every metric family of the proxy, by component.
pub struct Metrics {
    registry: Registry,
    /// Requests served and refused.
    pub requests: Requests,
    /// The proxy listener's connections.
    pub connections: Connections,
    /// Upstream exchanges.
    pub upstream: Upstream,
    /// Sign-ins, refreshes, provider calls.
    pub login: LoginMetrics,
    /// The session store.
    pub store: Store,
    /// The service identity's tokens.
    pub service: Service,
    /// Upgraded connections.
    pub tunnels: Tunnels,
    /// The age of the client secret files.
    pub secret_ages: SecretAges,
}

// === impl Metrics ===

impl Metrics {
    /// Registers every family (plus process metrics and build info) into
    /// `registry`.
    pub fn new(registry: Registry) -> prometheus::Result<Self> {
        let build_info = IntGaugeVec::new(
            Opts::new("ado_proxy_build_info", "Build information; always 1."),
            &["version", "revision"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("ADO_PROXY_BUILD_REVISION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            requests: Requests::register(&registry)?,
            connections: Connections::register(&registry)?,
            upstream: Upstream::register(&registry)?,
            login: LoginMetrics::register(&registry)?,
            store: Store::register(&registry)?,
            service: Service::register(&registry)?,
            tunnels: Tunnels::register(&registry)?,
            secret_ages: SecretAges::register(&registry)?,
            registry,
        })
    }

    /// The text exposition format of every registered family.
    pub fn render(&self) -> String {
        self.service.before_scrape();
        self.secret_ages.before_scrape();
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
    fn renders_typed_labels() {
        let m = Metrics::new(Registry::new()).unwrap();
        m.requests.finished(RouteClass::Git, 404, 0.01);
        m.requests.finished(RouteClass::Auth, 503, 0.1);
        m.upstream.failed("vsrm", UpstreamErrorKind::Timeout);
        let text = m.render();
        for line in [
            "ado_proxy_requests_total{code=\"404\",route=\"git\",status=\"4xx\"} 1",
            "ado_proxy_requests_total{code=\"503\",route=\"auth\",status=\"5xx\"} 1",
            "ado_proxy_upstream_errors_total{kind=\"timeout\",upstream=\"vsrm\"} 1",
            "ado_proxy_build_info{revision=\"",
            // Every value of a typed label exists from the start.
            "ado_proxy_login_failures_total{reason=\"other\"} 0",
            "ado_proxy_session_store_errors_total{op=\"ping\"} 0",
            "ado_proxy_token_endpoint_duration_seconds_count{grant=\"device_code\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }

    /// docs/operations.md has a row for every family, naming every value
    /// of its typed labels.
    #[test]
    fn the_operations_guide_names_every_family_and_label_value() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
                .unwrap();
        let m = Metrics::new(Registry::new()).unwrap();
        m.service.token_expires(Some(1));
        let mut missing = Vec::new();
        for family in m.registry.gather() {
            let name = family.name();
            if name.starts_with("process_") {
                continue;
            }
            let Some(row) = doc.lines().find(|l| l.starts_with(&format!("| `{name}` "))) else {
                missing.push(name.to_string());
                continue;
            };
            for metric in family.get_metric() {
                for pair in metric.get_label() {
                    // Values from the config, the catalog or the build.
                    if ["upstream", "id", "source", "version", "revision"].contains(&pair.name()) {
                        continue;
                    }
                    let value = format!("`{}`", pair.value());
                    if !row.contains(&value) {
                        missing.push(format!("{name}{{{}={value}}}", pair.name()));
                    }
                }
            }
        }
        missing.dedup();
        assert!(missing.is_empty(), "docs/operations.md lacks {missing:?}");
    }
}
