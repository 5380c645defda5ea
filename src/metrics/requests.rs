//! The client side: requests served, their duration and bytes, requests
//! refused before forwarding, and the listener's connections.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::BUCKETS;
use super::family::{Counters, Label, labels};

labels! {
    /// What kind of request this was.
    #[repr(usize)]
    pub enum RouteClass {
        /// REST calls (`/_apis/`).
        Api = "api",
        /// git smart HTTP (`/_git/`).
        Git = "git",
        /// Anything else forwarded (web pages, downloads).
        Other = "other",
        /// The proxy's own `/.auth/` endpoints.
        Auth = "auth",
    }
}

labels! {
    /// Why a request was refused before a credential was attached.
    pub enum RefusalReason {
        /// Dot segments, backslashes, odd escapes.
        BadPath = "bad_path",
        /// `Host` not one of the proxy's names (DNS rebinding).
        Host = "host",
        /// A browser request from another site.
        CrossSite = "cross_site",
        /// Outside `upstream.allowed_organizations`.
        Organization = "organization",
        /// Not an admitted caller of a fixed-identity proxy.
        Caller = "caller",
        /// `listen.max_requests` requests were in flight.
        Busy = "busy",
    }
}

const ROUTES: usize = RouteClass::ALL.len();
const STATUS_CLASSES: usize = 5;
const STATUS_LABELS: [&str; STATUS_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Requests served.
pub struct Requests {
    /// `ado_proxy_requests_total`, resolved per (route, status class):
    /// the hot path never hashes label values.
    served: [[IntCounter; STATUS_CLASSES]; ROUTES],
    duration: [Histogram; ROUTES],
    /// Requests currently being served (until the response body ends).
    pub in_flight: IntGauge,
    /// Request body bytes received from clients.
    pub request_bytes: IntCounter,
    /// Response body bytes sent to clients.
    pub response_bytes: IntCounter,
    refused: Counters<RefusalReason>,
}

/// The proxy listener's connections.
pub struct Connections {
    /// Client connections open now.
    pub open: IntGauge,
    /// Connections closed at once because `listen.max_connections` were
    /// open.
    pub refused: IntCounter,
}

// === impl RouteClass ===

impl RouteClass {
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

// === impl Requests ===

impl Requests {
    /// Registers the request families into `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let served = IntCounterVec::new(
            Opts::new(
                "ado_proxy_requests_total",
                "Requests served, by route class and status class.",
            ),
            &["route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ado_proxy_request_duration_seconds",
                "Time from request to the end of the response body, by route class.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )?;
        let in_flight =
            IntGauge::new("ado_proxy_requests_in_flight", "Requests being served now.")?;
        let request_bytes = IntCounter::new(
            "ado_proxy_request_body_bytes_total",
            "Request body bytes received from clients.",
        )?;
        let response_bytes = IntCounter::new(
            "ado_proxy_response_body_bytes_total",
            "Response body bytes sent to clients.",
        )?;
        registry.register(Box::new(served.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(request_bytes.clone()))?;
        registry.register(Box::new(response_bytes.clone()))?;
        let refused = Counters::register(
            registry,
            "ado_proxy_requests_refused_total",
            "Requests the proxy refused before attaching a credential, by reason: bad_path \
             (dot segments, backslashes, odd escapes), host (Host not the proxy's: DNS \
             rebinding), cross_site (a browser request from another site), organization \
             (outside upstream.allowed_organizations), caller (auth.allowed_client_cidrs or \
             the caller secret), busy (listen.max_requests requests in flight).",
            "reason",
        )?;
        // Every (route, status) series resolved now: also 0 in /metrics
        // from the start, which alerting rules like.
        let routes: [RouteClass; ROUTES] = [
            RouteClass::Api,
            RouteClass::Git,
            RouteClass::Other,
            RouteClass::Auth,
        ];
        Ok(Self {
            served: routes
                .map(|r| STATUS_LABELS.map(|s| served.with_label_values(&[r.as_str(), s]))),
            duration: routes.map(|r| duration.with_label_values(&[r.as_str()])),
            in_flight,
            request_bytes,
            response_bytes,
            refused,
        })
    }

    /// Records a finished request (called once, when its response ends).
    pub fn finished(&self, route: RouteClass, status: u16, seconds: f64) {
        self.served[route as usize][status_class(status)].inc();
        self.duration[route as usize].observe(seconds);
    }

    /// Counts a request refused before forwarding.
    pub fn refused(&self, reason: RefusalReason) {
        self.refused.inc(reason);
    }
}

// === impl Connections ===

impl Connections {
    /// Registers the connection families into `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGauge::new(
            "ado_proxy_connections_open",
            "Client connections open on the proxy listener.",
        )?;
        let refused = IntCounter::new(
            "ado_proxy_connections_refused_total",
            "Connections answered 503 and closed because listen.max_connections were open.",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Self { open, refused })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_series_are_indexed_by_discriminant() {
        // `finished` indexes the resolved series by `route as usize`.
        for (i, route) in RouteClass::ALL.iter().enumerate() {
            assert_eq!(*route as usize, i, "{route:?}");
        }
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
}
