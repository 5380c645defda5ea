//! Mode `service`: one fixed identity for every caller. The token is
//! acquired in the background and refreshed `refresh_before` its expiry
//! (with jitter, one call at a time, retries backing off 1s..60s), so
//! requests never wait for the identity provider in steady state. Only
//! the very first requests after start wait (bounded by
//! `provider_timeout`) for the first token.
//!
//! Sources: Entra client credentials (secret or certificate), Azure
//! Workload Identity (the projected token file is the client assertion,
//! re-read for every exchange), managed identity (IMDS or App Service's
//! `IDENTITY_ENDPOINT`), and a PAT (nothing to refresh).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use serde::Deserialize;
use tokio::sync::{Notify, watch};

use super::source::{AcquireError, Fetched, Source};
use crate::backoff::{self, Backoff, jitter_down};
use crate::clock::{Clock, unix};
use crate::config::{ServicePlan, SourcePlan};
use crate::diagnose::ServiceFailure;
use crate::error::Error;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::session::Sessions;

/// The service identity shared by all connections.
pub struct ServiceIdentity {
    source: Source,
    label: &'static str,
    /// The directory its tokens come from, when the config names it by id.
    configured_tenant: Option<String>,
    current: RwLock<Option<Token>>,
    /// Bumped on every acquisition attempt's end; requests waiting for
    /// the first token watch it.
    changed: watch::Sender<u64>,
    /// Wakes the refresher early: Azure DevOps refused the token (gated
    /// by `schedule`).
    wake: Notify,
    /// Wakes the refresher at once: a device-code sign-in through the
    /// browser replaced the identity.
    signed_in: Arc<Notify>,
    /// When the refresher calls next, and which refusals may hurry it.
    schedule: Mutex<Schedule>,
    /// Why acquisitions fail, since when; `None` after a success.
    failure: RwLock<Option<Arc<ServiceFailure>>>,
    /// One acquisition at a time (the refresher's or a claims round).
    acquiring: tokio::sync::Mutex<()>,
    /// When tokens are refreshed (`auth.refresh_before`,
    /// `auth.forced_refresh_interval`).
    gate: Gate,
    first_wait: Duration,
    metrics: Arc<Metrics>,
    clock: Clock,
}

/// The refresher's timetable, which requests read and may move forward
/// only by the rules of [`ServiceIdentity::refused`].
#[derive(Default)]
struct Schedule {
    /// The end of the last acquisition attempt.
    last_attempt: Option<Instant>,
    /// When the refresher will call next.
    next_attempt: Option<Instant>,
    /// The last attempt failed: the backoff runs and nothing shortens it.
    failing: bool,
    /// The token generation a refusal already woke the refresher for.
    forced_generation: u64,
    /// Generation of the current token (1 for the first).
    generation: u64,
    /// The token generation a claims challenge was answered for.
    claims_generation: u64,
    /// When a claims challenge was last answered.
    last_claims: Option<Instant>,
}

/// A token in use.
#[derive(Clone)]
struct Token {
    header: HeaderValue,
    expires_at: Option<Instant>,
    expires_wall: Option<SystemTime>,
    /// Non-secret claims of a JWT access token, for `/.auth/me`.
    claims: Option<Claims>,
}

/// What `/.auth/me` shows of the identity in use.
#[derive(Clone, Default, Deserialize, serde::Serialize)]
pub struct Claims {
    /// Application (client) id.
    #[serde(default)]
    pub appid: Option<String>,
    /// Object id of the service principal or managed identity.
    #[serde(default)]
    pub oid: Option<String>,
    /// Tenant.
    #[serde(default)]
    pub tid: Option<String>,
    /// `app` or `user`.
    #[serde(default)]
    pub idtyp: Option<String>,
    /// A user's name (device-code sign-ins).
    #[serde(default)]
    pub upn: Option<String>,
}

// === impl ServiceIdentity ===

impl ServiceIdentity {
    /// Builds the identity `plan` names (`device_store`: where source
    /// `device-code` finds its sign-in), keeping time by `clock`; no
    /// network is used.
    pub fn new(
        plan: &ServicePlan,
        device_store: Option<Arc<Sessions>>,
        metrics: Arc<Metrics>,
        clock: &Clock,
    ) -> Result<Self, String> {
        let source = Source::new(plan, device_store, &metrics)?;
        metrics.service.init_source(source_label(&plan.source));
        Ok(Self {
            source,
            label: source_label(&plan.source),
            configured_tenant: plan.configured_tenant.clone(),
            current: RwLock::new(None),
            changed: watch::channel(0).0,
            wake: Notify::new(),
            signed_in: Arc::new(Notify::new()),
            schedule: Mutex::new(Schedule::default()),
            failure: RwLock::new(None),
            acquiring: tokio::sync::Mutex::new(()),
            gate: Gate::new(plan.refresh_before, plan.forced_refresh_interval),
            first_wait: plan.provider_timeout,
            metrics,
            clock: clock.clone(),
        })
    }

    /// The source's name (`client-credentials`, ...).
    pub fn source(&self) -> &'static str {
        self.label
    }

    /// The `Authorization` value for a request: the current token while
    /// valid. Right after start, waits for the first acquisition.
    pub async fn header(&self) -> Result<HeaderValue, Error> {
        if let Some(h) = self.valid() {
            return Ok(h);
        }
        let mut rx = self.changed.subscribe();
        if *rx.borrow_and_update() == 0 {
            // Just started: wait for the first attempt only, so a proxy
            // that cannot get a token answers at once afterwards.
            let _ = tokio::time::timeout(self.first_wait, rx.changed()).await;
        }
        if let Some(h) = self.valid() {
            return Ok(h);
        }
        // The refresher keeps its own timetable (backoff included); a
        // request only learns when to come back.
        let next = self.lock_schedule().next_attempt;
        Err(Error::ServiceTokenUnavailable {
            source_name: self.label,
            retry_after: backoff::seconds_until(next, self.clock.now()),
            failure: self.failure(),
        })
    }

    fn lock_schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        match self.schedule.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Source `device-code`: the store holding the identity, and what
    /// wakes the refresher when a browser sign-in replaced it.
    pub fn device_store(&self) -> Option<(Arc<Sessions>, Arc<Notify>)> {
        match &self.source {
            Source::Device { store, .. } => Some((store.clone(), self.signed_in.clone())),
            _ => None,
        }
    }

    /// Azure DevOps refused `used`: get a new token now, unless that
    /// would let traffic drive the identity provider. At most one early
    /// call per token generation, none within `forced_refresh_interval` of
    /// the last attempt, none while a failure backoff runs.
    pub fn refused(&self, used: &HeaderValue) {
        let current = self.snapshot();
        let mut s = self.lock_schedule();
        let same_token = current.is_some_and(|t| t.header == *used);
        let recent = !self.gate.may_force(s.last_attempt, self.clock.now());
        if !same_token || s.failing || recent || s.forced_generation == s.generation {
            return;
        }
        s.forced_generation = s.generation;
        drop(s);
        tracing::info!(
            source = self.label,
            "Azure DevOps refused the service token; getting a new one"
        );
        self.wake.notify_one();
    }

    /// Whose credential the source is, for explaining a refusal.
    pub fn caller(&self) -> crate::diagnose::Caller {
        match self.label {
            "managed-identity" => crate::diagnose::Caller::ManagedIdentity,
            "device-code" => crate::diagnose::Caller::DeviceUser,
            "pat" => crate::diagnose::Caller::Pat,
            _ => crate::diagnose::Caller::ServicePrincipal,
        }
    }

    /// Source `pat`: the header worth trying once at start.
    pub fn pat_header(&self) -> Option<HeaderValue> {
        match &self.source {
            Source::Pat(pat) => pat.header().ok(),
            _ => None,
        }
    }

    /// The directory `auth.tenant` names, for sources that use it.
    pub fn configured_tenant(&self) -> Option<&str> {
        self.configured_tenant.as_deref()
    }

    /// The directory the current token was issued by (its `tid`).
    pub fn token_tenant(&self) -> Option<String> {
        self.snapshot()?.claims?.tid.map(|t| t.to_ascii_lowercase())
    }

    /// What `/.auth/me` shows: the source and the token's identity claims
    /// and expiry, never the token.
    pub fn describe(&self) -> serde_json::Value {
        let t = self.snapshot();
        let claims = t
            .as_ref()
            .and_then(|t| t.claims.clone())
            .unwrap_or_default();
        serde_json::json!({
            "mode": "service",
            "source": self.label,
            "appId": claims.appid,
            "objectId": claims.oid,
            "tenant": claims.tid,
            "identityType": claims.idtyp,
            "upn": claims.upn,
            "hasToken": t.is_some(),
            "accessTokenExpiresAt": t
                .and_then(|t| t.expires_wall)
                .map(|w| humantime::format_rfc3339_seconds(w).to_string()),
            "lastFailure": self.failure().map(|f| f.describe()),
        })
    }

    /// Why acquisitions fail now, if they do.
    pub fn failure(&self) -> Option<Arc<ServiceFailure>> {
        match self.failure.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Records how an acquisition ended: a failure keeps its first time
    /// while the code stays the same; a success clears it.
    fn record_outcome(&self, outcome: Option<&AcquireError>) {
        let next = outcome.map(|e| {
            let mut failure = ServiceFailure {
                said: e.said.as_deref().cloned(),
                retryable: e.retryable,
                detail: e.detail.clone(),
                since: self.clock.wall(),
            };
            if let Some(before) = self.failure()
                && before.code_label() == failure.code_label()
                && before.retryable == failure.retryable
            {
                failure.since = before.since;
            }
            Arc::new(failure)
        });
        self.metrics.service.failing(
            next.as_ref()
                .map(|f| (f.code_label(), f.retryable, unix(f.since) as i64)),
        );
        match self.failure.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
    }

    fn snapshot(&self) -> Option<Token> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether it holds a token valid now.
    pub fn has_token(&self) -> bool {
        self.valid().is_some()
    }

    fn valid(&self) -> Option<HeaderValue> {
        let t = self.snapshot()?;
        match t.expires_at {
            Some(at) if !Gate::usable(at, self.clock.now()) => None,
            _ => Some(t.header),
        }
    }

    /// The background refresher: acquires now, then again `refresh_before`
    /// the expiry (jittered), backing off on failure. Ends with `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        let mut said_waiting = false;
        loop {
            let result = self.acquire_once().await;
            let wait = self.after_attempt(result, &mut backoff, &mut said_waiting);
            self.changed.send_modify(|n| *n += 1);
            let pause = self.clock.sleep(wait);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    _ = self.signed_in.notified() => break,
                    // A refusal that passed `refused`'s rules; checked
                    // again, as a wake-up may have been stored earlier.
                    _ = self.wake.notified() => {
                        let s = self.lock_schedule();
                        let rested = self.gate.may_force(s.last_attempt, self.clock.now());
                        if !s.failing && rested {
                            break;
                        }
                    }
                    r = stop.wait_for(|s| *s) => {
                        drop(r);
                        return;
                    }
                }
            }
        }
    }

    /// Records an attempt's outcome (the failure, the logs, the
    /// timetable) and returns how long the refresher waits now.
    fn after_attempt(
        &self,
        result: Result<Duration, AcquireError>,
        backoff: &mut Backoff,
        said_waiting: &mut bool,
    ) -> Duration {
        let failing = matches!(&result, Err(e) if !e.soon);
        let wait = match result {
            Ok(next) => {
                self.record_outcome(None);
                backoff.reset();
                *said_waiting = false;
                next
            }
            Err(e) if e.soon => {
                self.record_outcome(Some(&e));
                // Said once, not every 2 s while nobody signs in.
                if !std::mem::replace(said_waiting, true) {
                    tracing::warn!(
                        source = self.label,
                        reason = %e.detail,
                        "waiting for the service identity"
                    );
                }
                Duration::from_secs(2)
            }
            Err(e) => {
                self.record_outcome(Some(&e));
                let wait = backoff.fail();
                if self.valid().is_some() {
                    tracing::warn!(source = self.label, error = %e.detail, retry_in = ?wait,
                        "service token refresh failed; the current token is used while valid");
                } else {
                    tracing::error!(source = self.label, error = %e.detail, retry_in = ?wait,
                        retryable = e.retryable,
                        "no service token: requests are answered with the reason until one is acquired");
                }
                self.metrics.service.refresh_failed(self.label);
                wait
            }
        };
        let mut s = self.lock_schedule();
        let now = self.clock.now();
        s.last_attempt = Some(now);
        s.next_attempt = Some(now + wait);
        s.failing = failing;
        wait
    }

    /// Azure DevOps refused `used` with a claims challenge (Continuous
    /// Access Evaluation): a new token asked for with `claims`, once per
    /// token generation and not again within `forced_refresh_interval`.
    /// The header to send the request again with, if there is one.
    pub async fn claims_challenge(&self, used: &HeaderValue, claims: &str) -> Option<HeaderValue> {
        use crate::metrics::ClaimsOutcome;
        let _one = self.acquiring.lock().await;
        if let Some(current) = self.valid()
            && current != *used
        {
            // Another request's round replaced the token meanwhile.
            return Some(current);
        }
        {
            let mut s = self.lock_schedule();
            let recent = !self.gate.may_force(s.last_claims, self.clock.now());
            if recent || s.claims_generation == s.generation {
                self.metrics.login.claims(ClaimsOutcome::ServiceFailed);
                return None;
            }
            s.claims_generation = s.generation;
            s.last_claims = Some(self.clock.now());
        }
        match self.acquire(Some(claims)).await {
            Ok(_) => {
                self.metrics.login.claims(ClaimsOutcome::ServiceRefreshed);
                tracing::info!(
                    source = self.label,
                    "Azure DevOps revoked the service token (claims challenge); got a new one"
                );
                self.valid()
            }
            Err(e) => {
                self.metrics.login.claims(ClaimsOutcome::ServiceFailed);
                tracing::warn!(source = self.label, error = %e.detail,
                    "Azure DevOps revoked the service token (claims challenge); no new token");
                None
            }
        }
    }

    /// One acquisition; the time until the next one.
    async fn acquire_once(&self) -> Result<Duration, AcquireError> {
        let _one = self.acquiring.lock().await;
        self.acquire(None).await
    }

    /// One acquisition (the caller holds `acquiring`), asking for
    /// `claims` when given; the time until the next one.
    async fn acquire(&self, claims: Option<&str>) -> Result<Duration, AcquireError> {
        let result = match self.source.fetch(claims).await {
            Ok(Fetched::Header(header)) => {
                self.store(Token {
                    header,
                    expires_at: None,
                    expires_wall: None,
                    claims: None,
                });
                self.metrics
                    .service
                    .acquired(self.label, crate::metrics::Acquisition::Ok);
                // Re-read now and then so a rotated PAT file is picked up.
                return Ok(Duration::from_secs(60));
            }
            Ok(Fetched::Token(acquired)) => Ok(acquired),
            Err(e) => Err(e),
        };
        let acquired = match result {
            Ok(a) => a,
            Err(e) => {
                self.metrics
                    .service
                    .acquired(self.label, crate::metrics::Acquisition::Error);
                return Err(e);
            }
        };
        let mut header = HeaderValue::try_from(format!("Bearer {}", acquired.token.expose()))
            .map_err(|_| AcquireError::new("the token cannot be sent in a header".into()))?;
        header.set_sensitive(true);
        let lifetime = acquired.lifetime.unwrap_or(Duration::from_secs(3600));
        self.store(Token {
            header,
            expires_at: Some(self.clock.now() + lifetime),
            expires_wall: Some(self.clock.wall() + lifetime),
            claims: claims_of(acquired.token.expose()),
        });
        self.metrics
            .service
            .acquired(self.label, crate::metrics::Acquisition::Ok);
        tracing::info!(source = self.label, expires_in = ?lifetime, "service token acquired");
        // Refresh `refresh_before` the expiry, at half-life for short
        // tokens, a little early at random so replicas spread out.
        Ok(jitter_down(
            lifetime.saturating_sub(self.gate.margin(lifetime)),
        ))
    }

    fn store(&self, token: Token) {
        self.metrics
            .service
            .token_expires(token.expires_wall.map(|w| unix(w) as i64));
        {
            let mut s = self.lock_schedule();
            let changed = self.snapshot().is_none_or(|old| old.header != token.header);
            if changed {
                s.generation += 1;
            }
        }
        match self.current.write() {
            Ok(mut g) => *g = Some(token),
            Err(p) => *p.into_inner() = Some(token),
        }
    }
}

/// The identity claims of a JWT access token (not verified: Azure DevOps
/// does that; these are only shown).
fn claims_of(token: &str) -> Option<Claims> {
    crate::assertion::jwt_payload(token)
}

/// The `source` label: the configured `auth.source`.
fn source_label(plan: &SourcePlan) -> &'static str {
    match plan {
        SourcePlan::ClientCredentials(_) => "client-credentials",
        SourcePlan::WorkloadIdentity { .. } => "workload-identity",
        SourcePlan::Federated { .. } => "federated",
        SourcePlan::ManagedIdentity => "managed-identity",
        SourcePlan::ManagedIdentityFederation => "managed-identity-federation",
        SourcePlan::DeviceCode { .. } => "device-code",
        SourcePlan::Pat => "pat",
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    #[test]
    fn claims_are_read_from_a_jwt_without_trusting_it() {
        let payload =
            URL_SAFE_NO_PAD.encode(br#"{"appid":"app","oid":"o","tid":"t","idtyp":"app"}"#);
        let c = claims_of(&format!("h.{payload}.s")).unwrap();
        assert_eq!(c.appid.as_deref(), Some("app"));
        assert!(claims_of("opaque-token").is_none());
    }
}
