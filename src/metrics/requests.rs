//! The client side: requests served, their duration and bytes, requests
//! refused before forwarding, and the listener's connections.

use std::sync::OnceLock;

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

/// The status codes counted by their own `code` label value: those the
/// proxy and Azure DevOps answer with. Any other is `other` (with its
/// class), so the series stay bounded whatever an upstream sends.
const CODES: [u16; 40] = [
    100, 101, 200, 201, 202, 203, 204, 206, 207, 300, 301, 302, 303, 304, 307, 308, 400, 401, 403,
    404, 405, 406, 408, 409, 410, 411, 412, 413, 414, 415, 416, 421, 422, 428, 429, 431, 500, 502,
    503, 504,
];
/// `CODES`, one slot per code plus `other` per status class.
const SLOTS: usize = CODES.len() + 5;

/// Requests served.
pub struct Requests {
    /// `ado_proxy_requests_total`, per (route, code): each series is
    /// created at its first request and then reached by index, so the hot
    /// path hashes no label values and no series exists at 0.
    served: IntCounterVec,
    series: [[OnceLock<IntCounter>; SLOTS]; ROUTES],
    duration: HistogramVec,
    /// Per route, created at its first request.
    durations: [OnceLock<Histogram>; ROUTES],
    /// Requests currently being served (until the response body ends).
    pub in_flight: IntGauge,
    /// Request body bytes received from clients.
    pub request_bytes: IntCounter,
    /// Response body bytes sent to clients.
    pub response_bytes: IntCounter,
    refused: Counters<RefusalReason>,
    /// `ado_proxy_access_refused_total`, per rule.
    access_refused: IntCounterVec,
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
    /// Classifies a path forwarded upstream (own endpoints are
    /// [`Self::Auth`], told by `endpoint::Endpoint`).
    pub fn of_upstream_path(path: &str) -> Self {
        if path.contains("/_apis/") || path.ends_with("/_apis") {
            Self::Api
        } else if path.contains("/_git/") {
            Self::Git
        } else {
            Self::Other
        }
    }
}

const STATUS_LABELS: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `status`'s slot: its index in [`CODES`], or its class's `other` after
/// them.
fn slot(status: u16) -> usize {
    CODES
        .binary_search(&status)
        .unwrap_or_else(|_| CODES.len() + status_class(status))
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
                "Requests served, by route class, status class (status: 2xx, ...) and status \
                 code (code: 200, ...; other for codes outside the usual set).",
            ),
            &["route", "status", "code"],
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
        let access_refused = IntCounterVec::new(
            Opts::new(
                "ado_proxy_access_refused_total",
                "Requests [access] refused, by rule: a rule's name, read-only \
                 (access.read_only) or default (access.default = deny).",
            ),
            &["rule"],
        )?;
        registry.register(Box::new(access_refused.clone()))?;
        Ok(Self {
            access_refused,
            served,
            series: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            duration,
            durations: std::array::from_fn(|_| OnceLock::new()),
            in_flight,
            request_bytes,
            response_bytes,
            refused,
        })
    }

    /// Records a finished request (called once, when its response ends).
    pub fn finished(&self, route: RouteClass, status: u16, seconds: f64) {
        let slot = slot(status);
        self.series[route as usize][slot]
            .get_or_init(|| {
                let class = status_class(status);
                let code = CODES.get(slot).map_or("other".to_string(), u16::to_string);
                self.served
                    .with_label_values(&[route.as_str(), STATUS_LABELS[class], &code])
            })
            .inc();
        self.durations[route as usize]
            .get_or_init(|| self.duration.with_label_values(&[route.as_str()]))
            .observe(seconds);
    }

    /// Counts a request refused before forwarding.
    pub fn refused(&self, reason: RefusalReason) {
        self.refused.inc(reason);
    }

    /// Creates the series of the access rules `rules` at 0.
    pub fn init_access(&self, rules: &[&str]) {
        for rule in rules {
            self.access_refused.with_label_values(&[rule]);
        }
    }

    /// Counts a request `[access]` refused by `rule` (a configured name).
    pub fn access_refused(&self, rule: &str) {
        self.access_refused.with_label_values(&[rule]).inc();
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
    fn codes_are_exact_bounded_and_only_there_once_seen() {
        assert!(CODES.is_sorted(), "slot() binary-searches CODES");
        let registry = Registry::new();
        let r = Requests::register(&registry).unwrap();
        let render = || {
            use prometheus::Encoder as _;
            let mut buf = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&registry.gather(), &mut buf)
                .unwrap();
            String::from_utf8(buf).unwrap()
        };
        assert!(
            !render().contains("ado_proxy_requests_total{"),
            "no series before a request"
        );
        r.finished(RouteClass::Api, 203, 0.1);
        r.finished(RouteClass::Api, 203, 0.1);
        r.finished(RouteClass::Git, 401, 0.1);
        r.finished(RouteClass::Other, 418, 0.1);
        let text = render();
        for line in [
            "ado_proxy_requests_total{code=\"203\",route=\"api\",status=\"2xx\"} 2",
            "ado_proxy_requests_total{code=\"401\",route=\"git\",status=\"4xx\"} 1",
            "ado_proxy_requests_total{code=\"other\",route=\"other\",status=\"4xx\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // Whatever codes an upstream sends, the series stay bounded.
        for code in 100..=999 {
            r.finished(RouteClass::Api, code, 0.1);
        }
        let series = render()
            .lines()
            .filter(|l| l.starts_with("ado_proxy_requests_total{") && l.contains("route=\"api\""))
            .count();
        assert_eq!(series, SLOTS);
    }

    #[test]
    fn route_classes() {
        let check =
            |path, want: RouteClass| assert_eq!(RouteClass::of_upstream_path(path), want, "{path}");
        check("/org/_apis/projects", RouteClass::Api);
        check("/.hosts/vsrm/org/_apis/release/releases", RouteClass::Api);
        check("/org/proj/_git/repo/info/refs", RouteClass::Git);
        check("/org/proj", RouteClass::Other);
    }
}
