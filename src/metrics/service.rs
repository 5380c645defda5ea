//! Mode `service`: token acquisitions and background refresh failures of
//! the fixed identity, by source, and the time left on its token.

use std::sync::atomic::{AtomicI64, Ordering};

use std::sync::Mutex;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::family::labels;

labels! {
    /// How a token acquisition ended.
    pub enum Acquisition {
        /// A token.
        Ok = "ok",
        /// No token.
        Error = "error",
    }
}

/// The service identity's tokens.
pub struct Service {
    registry: Registry,
    acquisitions: IntCounterVec,
    refresh_failures: IntCounterVec,
    expiry: IntGauge,
    /// Unix time the token expires (0: none yet; -1: never).
    expires_at: AtomicI64,
    failing_since: IntGaugeVec,
    /// The labels of the one series `failing_since` has, if any.
    failing_labels: Mutex<Option<[&'static str; 2]>>,
}

// === impl Service ===

impl Service {
    /// Registers the service identity families into `registry`; the
    /// expiry gauge only once a token with an expiry exists.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let acquisitions = IntCounterVec::new(
            Opts::new(
                "ado_proxy_service_token_acquisitions_total",
                "Service identity token acquisitions, by source and outcome (ok, error).",
            ),
            &["source", "outcome"],
        )?;
        let refresh_failures = IntCounterVec::new(
            Opts::new(
                "ado_proxy_service_token_refresh_failures_total",
                "Background refreshes of the service token that failed, by source.",
            ),
            &["source"],
        )?;
        let expiry = IntGauge::new(
            "ado_proxy_service_token_expiry_seconds",
            "Seconds until the service identity's current token expires (negative: expired; \
             absent without mode service or for a PAT).",
        )?;
        let failing_since = IntGaugeVec::new(
            Opts::new(
                "ado_proxy_service_token_failing_since_timestamp_seconds",
                "Unix time since which the service identity's token acquisitions fail, with the \
                 identity provider's code (AADSTS<n> for the codes docs/errors.md explains, \
                 aadsts-other, oauth-error, unavailable) and whether retrying can help \
                 (retryable: true, false); no series while they succeed.",
            ),
            &["code", "retryable"],
        )?;
        registry.register(Box::new(acquisitions.clone()))?;
        registry.register(Box::new(refresh_failures.clone()))?;
        registry.register(Box::new(failing_since.clone()))?;
        Ok(Self {
            registry: registry.clone(),
            acquisitions,
            refresh_failures,
            expiry,
            expires_at: AtomicI64::new(0),
            failing_since,
            failing_labels: Mutex::new(None),
        })
    }

    /// Creates the series of `source` at 0, so alerts see them before
    /// the first failure.
    pub fn init_source(&self, source: &str) {
        for outcome in [Acquisition::Ok, Acquisition::Error] {
            self.acquisitions
                .with_label_values(&[source, outcome.as_str()]);
        }
        self.refresh_failures.with_label_values(&[source]);
    }

    /// Counts a token acquisition.
    pub fn acquired(&self, source: &str, outcome: Acquisition) {
        self.acquisitions
            .with_label_values(&[source, outcome.as_str()])
            .inc();
    }

    /// Counts a failed background refresh.
    pub fn refresh_failed(&self, source: &str) {
        self.refresh_failures.with_label_values(&[source]).inc();
    }

    /// Acquisitions fail with `code` (`retryable` or not) since `since`
    /// (unix seconds), or succeed (`None`): one series at most, so the
    /// labels stay bounded and an alert sees the current cause.
    pub fn failing(&self, now: Option<(&'static str, bool, i64)>) {
        let mut current = match self.failing_labels.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let next = now.map(|(code, retryable, since)| {
            ([code, if retryable { "true" } else { "false" }], since)
        });
        if let Some(old) = current.take()
            && next.is_none_or(|(labels, _)| labels != old)
        {
            let _ = self.failing_since.remove_label_values(&old);
        }
        if let Some((labels, since)) = next {
            self.failing_since.with_label_values(&labels).set(since);
            *current = Some(labels);
        }
    }

    /// Records when the token expires (unix seconds; `None` for tokens
    /// that do not expire). The first expiry registers the gauge.
    pub fn token_expires(&self, at: Option<i64>) {
        let before = self.expires_at.swap(at.unwrap_or(-1), Ordering::Relaxed);
        if before == 0 && at.is_some() {
            let _ = self.registry.register(Box::new(self.expiry.clone()));
        }
    }

    /// Updates the expiry gauge before a scrape.
    pub(super) fn before_scrape(&self) {
        let at = self.expires_at.load(Ordering::Relaxed);
        if at > 0 {
            let now = crate::clock::real_wall()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.expiry.set(at - now);
        }
    }
}
