//! The upstream side: time to response headers and failed exchanges per
//! host, answers recognised as denials, and Azure DevOps' rate limiting.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::BUCKETS;
use super::family::{Counters, labels};

labels! {
    /// Why an upstream exchange failed.
    pub enum UpstreamErrorKind {
        /// No TCP/TLS connection could be made.
        Connect = "connect",
        /// No response headers within `response_timeout`.
        Timeout = "timeout",
        /// The connection broke or the upstream spoke bad HTTP.
        Protocol = "protocol",
        /// The egress proxy answered CONNECT with 407.
        EgressAuth = "egress_auth",
        /// The egress proxy answered CONNECT with another refusal.
        EgressRefused = "egress_refused",
        /// The egress proxy could not be reached or broke the tunnel.
        EgressFailed = "egress_failed",
    }
}

labels! {
    /// How Azure DevOps limited a request.
    pub enum Throttle {
        /// A response with `X-RateLimit-Delay` or `Retry-After`.
        Delayed = "delayed",
        /// 429.
        Blocked = "blocked",
    }
}

/// One upstream host's time-to-headers series, created when first
/// observed.
#[derive(Debug)]
pub struct HostSeries {
    vec: HistogramVec,
    name: String,
    series: std::sync::OnceLock<Histogram>,
}

impl HostSeries {
    /// Observes one exchange's time to response headers.
    pub fn observe(&self, seconds: f64) {
        self.series
            .get_or_init(|| self.vec.with_label_values(&[&self.name]))
            .observe(seconds);
    }
}

/// Upstream exchanges.
pub struct Upstream {
    duration: HistogramVec,
    errors: IntCounterVec,
    denials: IntCounterVec,
    throttled: Counters<Throttle>,
    throttle_delay: Histogram,
}

// === impl Upstream ===

impl Upstream {
    /// Registers the upstream families into `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ado_proxy_upstream_duration_seconds",
                "Time until the upstream's response headers arrived, by upstream host.",
            )
            .buckets(BUCKETS.to_vec()),
            &["upstream"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "ado_proxy_upstream_errors_total",
                "Failed upstream exchanges, by host and kind.",
            ),
            &["upstream", "kind"],
        )?;
        let denials = IntCounterVec::new(
            Opts::new(
                "ado_proxy_upstream_denials_total",
                "Azure DevOps answers recognised as auth, policy, permission or throttling \
                 failures, by catalog id.",
            ),
            &["id"],
        )?;
        let throttle_delay = Histogram::with_opts(
            HistogramOpts::new(
                "ado_proxy_upstream_throttle_delay_seconds",
                "Delays Azure DevOps reported in X-RateLimit-Delay.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(denials.clone()))?;
        registry.register(Box::new(throttle_delay.clone()))?;
        let throttled = Counters::register(
            registry,
            "ado_proxy_upstream_throttled_total",
            "Azure DevOps rate limiting: delayed (a response with X-RateLimit-Delay or \
             Retry-After) and blocked (429).",
            "kind",
        )?;
        Ok(Self {
            duration,
            errors,
            denials,
            throttled,
            throttle_delay,
        })
    }

    /// The time-to-headers series of one upstream host, resolved once,
    /// at its first exchange: a host nobody uses has no series.
    pub fn host(&self, upstream: &str) -> HostSeries {
        HostSeries {
            vec: self.duration.clone(),
            name: upstream.to_string(),
            series: std::sync::OnceLock::new(),
        }
    }

    /// Counts a failed upstream exchange.
    pub fn failed(&self, upstream: &str, kind: UpstreamErrorKind) {
        self.errors
            .with_label_values(&[upstream, kind.as_str()])
            .inc();
    }

    /// Creates the denial series of every catalog case at 0, so alerts
    /// see them before the first denial. `diagnose` owns the ids.
    pub fn init_denials<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.denials.with_label_values(&[id]);
        }
    }

    /// Counts an upstream answer recognised as catalog case `id`.
    pub fn denied(&self, id: &str) {
        self.denials.with_label_values(&[id]).inc();
    }

    /// Counts rate limiting seen in an upstream answer's head.
    pub fn throttling(&self, status: u16, headers: &http::HeaderMap) {
        let delay = headers
            .get("x-ratelimit-delay")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(d) = delay {
            self.throttle_delay.observe(d);
        }
        if status == 429 {
            self.throttled.inc(Throttle::Blocked);
        } else if delay.is_some()
            || ((200..300).contains(&status) && headers.contains_key("retry-after"))
        {
            self.throttled.inc(Throttle::Delayed);
        }
    }
}
