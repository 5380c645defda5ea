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

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use url::Url;

use super::PatSource;
use crate::assertion::{ASSERTION_TYPE, Signer};
use crate::backoff::{self, Backoff, jitter_down};
use crate::config::{ADO_RESOURCE, Config, Secret, ServiceSource};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::oauth::idp::{Grant, IdpError, IdpHttp, parse_token_response};
use crate::session::Sessions;

/// Azure IMDS' token endpoint.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// A token this close to expiry is not sent any more.
const MIN_VALIDITY: Duration = Duration::from_secs(2);

/// The service identity shared by all connections.
pub struct ServiceIdentity {
    source: Source,
    label: &'static str,
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
    refresh_before: Duration,
    /// `auth.forced_refresh_interval`.
    forced_interval: Duration,
    first_wait: Duration,
    metrics: Arc<Metrics>,
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

enum Source {
    Pat(PatSource),
    Entra {
        http: IdpHttp,
        token_endpoint: Url,
        client_id: String,
        auth: ClientAuth,
    },
    /// `ado-auth-proxy login` stored a refresh token in the session store.
    Device {
        http: IdpHttp,
        token_endpoint: Url,
        client_id: String,
        /// A confidential app's credential; none for a public client.
        auth: Option<ClientAuth>,
        store: Arc<Sessions>,
    },
    Managed {
        http: IdpHttp,
        endpoint: Url,
        /// App Service's `IDENTITY_HEADER`; IMDS when absent.
        header: Option<Secret>,
        client_id: Option<String>,
    },
}

enum ClientAuth {
    SecretFile(PathBuf),
    Secret(Secret),
    Certificate(Signer),
    /// Workload identity: the file's content is the assertion.
    Federated(PathBuf),
}

/// A freshly acquired token.
struct Acquired {
    token: Secret,
    lifetime: Option<Duration>,
}

/// Why an acquisition failed: the message names the cause (never a
/// secret).
struct AcquireError {
    detail: String,
    /// Worth asking again in a moment (waiting for `login`), not after
    /// the backoff.
    soon: bool,
}

impl AcquireError {
    fn new(detail: String) -> Self {
        Self {
            detail,
            soon: false,
        }
    }
}

// === impl ServiceIdentity ===

impl ServiceIdentity {
    /// Builds the identity from `[auth]`; no network is used.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, String> {
        let auth = &config.auth;
        let source_kind = auth
            .source
            .ok_or("auth.source: missing: mode \"service\" needs a source")?;
        let http = || IdpHttp::new(auth, &config.upstream, metrics.clone());
        let entra = |auth_kind: ClientAuth| -> Result<Source, String> {
            let tenant = auth.tenant.as_deref().unwrap_or_default().trim();
            let base = auth.effective_authority();
            let token_endpoint = base
                .join(&format!("{tenant}/oauth2/v2.0/token"))
                .map_err(|e| format!("auth.authority_host: {e}"))?;
            Ok(Source::Entra {
                http: http()?,
                token_endpoint,
                client_id: auth.client_id.clone().unwrap_or_default(),
                auth: auth_kind,
            })
        };
        let source = match source_kind {
            ServiceSource::Pat => {
                Source::Pat(PatSource::from_config(auth).map_err(|e| e.to_string())?)
            }
            ServiceSource::ClientCredentials => {
                entra(client_auth(auth)?.ok_or("auth.client_secret_file: missing")?)?
            }
            ServiceSource::WorkloadIdentity => {
                let file = auth
                    .federated_token_file
                    .clone()
                    .ok_or("auth.federated_token_file: missing")?;
                entra(ClientAuth::Federated(file))?
            }
            ServiceSource::ManagedIdentity => Source::Managed {
                http: http()?,
                endpoint: auth
                    .managed_identity_endpoint
                    .clone()
                    .unwrap_or_else(|| Url::parse(IMDS_ENDPOINT).expect("a valid URL")),
                header: auth.managed_identity_header.clone(),
                client_id: auth.managed_identity_client_id.clone(),
            },
            ServiceSource::DeviceCode => Source::Device {
                http: http()?,
                token_endpoint: super::device::endpoint(config, "token")?,
                client_id: auth.client_id.clone().unwrap_or_default(),
                auth: client_auth(auth)?,
                store: Arc::new(Sessions::open(&config.session, metrics.clone())?),
            },
        };
        metrics.service.init_source(source_label(source_kind));
        Ok(Self {
            source,
            label: source_label(source_kind),
            current: RwLock::new(None),
            changed: watch::channel(0).0,
            wake: Notify::new(),
            signed_in: Arc::new(Notify::new()),
            schedule: Mutex::new(Schedule::default()),
            refresh_before: auth.refresh_before,
            forced_interval: auth.forced_refresh_interval,
            first_wait: auth.provider_timeout,
            metrics,
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
            retry_after: backoff::seconds_until(next),
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
        let recent = s
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.forced_interval);
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
        })
    }

    fn snapshot(&self) -> Option<Token> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn valid(&self) -> Option<HeaderValue> {
        let t = self.snapshot()?;
        match t.expires_at {
            Some(at) if at <= Instant::now() + MIN_VALIDITY => None,
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
            let failing = matches!(&result, Err(e) if !e.soon);
            let wait = match result {
                Ok(next) => {
                    backoff.reset();
                    said_waiting = false;
                    next
                }
                Err(e) if e.soon => {
                    // Said once, not every 2 s while nobody signs in.
                    if !std::mem::replace(&mut said_waiting, true) {
                        tracing::warn!(
                            source = self.label,
                            reason = %e.detail,
                            "waiting for the service identity"
                        );
                    }
                    Duration::from_secs(2)
                }
                Err(e) => {
                    let wait = backoff.fail();
                    let still_valid = self.valid().is_some();
                    if still_valid {
                        tracing::warn!(source = self.label, error = %e.detail, retry_in = ?wait,
                            "service token refresh failed; the current token is used while valid");
                    } else {
                        tracing::error!(source = self.label, error = %e.detail, retry_in = ?wait,
                            "no service token: requests get 503 until the identity provider answers");
                    }
                    self.metrics.service.refresh_failed(self.label);
                    wait
                }
            };
            {
                let mut s = self.lock_schedule();
                let now = Instant::now();
                s.last_attempt = Some(now);
                s.next_attempt = Some(now + wait);
                s.failing = failing;
            }
            self.changed.send_modify(|n| *n += 1);
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = self.signed_in.notified() => break,
                    // A refusal that passed `refused`'s rules; checked
                    // again, as a wake-up may have been stored earlier.
                    _ = self.wake.notified() => {
                        let s = self.lock_schedule();
                        let rested = s
                            .last_attempt
                            .is_none_or(|t| t.elapsed() >= self.forced_interval);
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

    /// One acquisition; the time until the next one.
    async fn acquire_once(&self) -> Result<Duration, AcquireError> {
        let result = match &self.source {
            Source::Pat(pat) => {
                let header = pat.header().map_err(|e| AcquireError::new(e.to_string()))?;
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
            Source::Entra {
                http,
                token_endpoint,
                client_id,
                auth,
            } => {
                self.client_credentials(http, token_endpoint, client_id, auth)
                    .await
            }
            Source::Managed {
                http,
                endpoint,
                header,
                client_id,
            } => managed(http, endpoint, header.as_ref(), client_id.as_deref()).await,
            Source::Device {
                http,
                token_endpoint,
                client_id,
                auth,
                store,
            } => device_refresh(http, token_endpoint, client_id, auth.as_ref(), store).await,
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
            expires_at: Some(Instant::now() + lifetime),
            expires_wall: Some(SystemTime::now() + lifetime),
            claims: claims_of(acquired.token.expose()),
        });
        self.metrics
            .service
            .acquired(self.label, crate::metrics::Acquisition::Ok);
        tracing::info!(source = self.label, expires_in = ?lifetime, "service token acquired");
        // Refresh `refresh_before` the expiry, at half-life for short
        // tokens, a little early at random so replicas spread out.
        let margin = self.refresh_before.min(lifetime / 2);
        Ok(jitter_down(lifetime.saturating_sub(margin)))
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

    async fn client_credentials(
        &self,
        http: &IdpHttp,
        token_endpoint: &Url,
        client_id: &str,
        auth: &ClientAuth,
    ) -> Result<Acquired, AcquireError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", client_id.into()),
            ("scope", format!("{ADO_RESOURCE}/.default")),
        ];
        add_client_auth(&mut form, auth, client_id, token_endpoint)?;
        let (status, body) =
            post_token(http, token_endpoint, &form, Grant::ClientCredentials).await?;
        let set =
            parse_token_response(status, &body).map_err(|e| AcquireError::new(explain(&e)))?;
        Ok(Acquired {
            token: set.access_token,
            lifetime: Some(set.expires_in),
        })
    }
}

/// One token endpoint call: the status and the (bounded) body.
async fn post_token(
    http: &IdpHttp,
    token_endpoint: &Url,
    form: &[(&str, String)],
    grant: Grant,
) -> Result<(u16, bytes::Bytes), AcquireError> {
    let req = http
        .client()
        .post(token_endpoint.clone())
        .header("accept", "application/json")
        .form(form);
    http.send(req, grant)
        .await
        .map_err(|e| AcquireError::new(e.to_string()))
}

/// Authenticates the proxy's app at the token endpoint: a secret (file
/// re-read each time), a certificate assertion, or a federated token.
fn add_client_auth(
    form: &mut Vec<(&str, String)>,
    auth: &ClientAuth,
    client_id: &str,
    token_endpoint: &Url,
) -> Result<(), AcquireError> {
    let local = AcquireError::new;
    match auth {
        ClientAuth::Secret(s) => form.push(("client_secret", s.expose().into())),
        ClientAuth::SecretFile(path) => {
            let secret = std::fs::read_to_string(path).map_err(|e| {
                local(format!(
                    "auth.client_secret_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            form.push(("client_secret", secret.trim().into()));
        }
        ClientAuth::Certificate(signer) => {
            let assertion = signer
                .sign(client_id, token_endpoint.as_str())
                .map_err(|e| local(format!("signing the client assertion: {e}")))?;
            form.push(("client_assertion_type", ASSERTION_TYPE.into()));
            form.push(("client_assertion", assertion));
        }
        ClientAuth::Federated(path) => {
            // Re-read every time: the kubelet rotates it.
            let assertion = std::fs::read_to_string(path).map_err(|e| {
                local(format!(
                    "auth.federated_token_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            form.push(("client_assertion_type", ASSERTION_TYPE.into()));
            form.push(("client_assertion", assertion.trim().into()));
        }
    }
    Ok(())
}

/// A token for the identity `ado-auth-proxy login` stored: its refresh
/// token is redeemed and the rotated one written back.
async fn device_refresh(
    http: &IdpHttp,
    token_endpoint: &Url,
    client_id: &str,
    auth: Option<&ClientAuth>,
    store: &Sessions,
) -> Result<Acquired, AcquireError> {
    let soon = |detail: String| AcquireError { detail, soon: true };
    let rec = store
        .get_service()
        .await
        .map_err(|e| soon(format!("session store: {e}")))?
        .ok_or_else(|| {
            soon("not signed in yet: run `ado-auth-proxy login --config <file>`".into())
        })?;
    let mut form: Vec<(&str, String)> = vec![
        ("grant_type", "refresh_token".into()),
        ("client_id", client_id.into()),
        ("refresh_token", rec.refresh_token.clone()),
        ("scope", super::device::DEVICE_SCOPE.into()),
    ];
    if let Some(auth) = auth {
        add_client_auth(&mut form, auth, client_id, token_endpoint)?;
    }
    let (status, body) = post_token(http, token_endpoint, &form, Grant::Refresh).await?;
    let set = parse_token_response(status, &body).map_err(|e| {
        let relogin = matches!(
            e.classify(Grant::Refresh),
            crate::session::Failure::Relogin { .. }
        );
        AcquireError::new(if relogin {
            format!(
                "{}: the device-code sign-in expired or was revoked; run `ado-auth-proxy login` again",
                explain(&e)
            )
        } else {
            explain(&e)
        })
    })?;
    if let Some(rotated) = &set.refresh_token {
        let next = crate::session::record::StoredService {
            refresh_token: rotated.expose().to_string(),
            generation: rec.generation + 1,
            ..rec
        };
        if let Err(e) = store.put_service(&next).await {
            tracing::warn!(error = %e, "the rotated refresh token could not be stored");
        }
    }
    Ok(Acquired {
        token: set.access_token,
        lifetime: Some(set.expires_in),
    })
}

/// A managed identity token: IMDS (`Metadata: true`, api-version
/// 2018-02-01) or App Service (`X-IDENTITY-HEADER`, 2019-08-01).
async fn managed(
    http: &IdpHttp,
    endpoint: &Url,
    header: Option<&Secret>,
    client_id: Option<&str>,
) -> Result<Acquired, AcquireError> {
    let mut url = endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair(
            "api-version",
            if header.is_some() {
                "2019-08-01"
            } else {
                "2018-02-01"
            },
        );
        q.append_pair("resource", ADO_RESOURCE);
        if let Some(id) = client_id {
            q.append_pair("client_id", id);
        }
    }
    let mut req = http.client().get(url).header("accept", "application/json");
    req = match header {
        Some(h) => req.header("X-IDENTITY-HEADER", h.expose()),
        None => req.header("Metadata", "true"),
    };
    let (status, body) = http
        .send(req, Grant::ManagedIdentity)
        .await
        .map_err(|e| AcquireError::new(format!("managed identity endpoint: {e}")))?;
    parse_managed(status, &body).map_err(AcquireError::new)
}

/// Reads a managed identity answer; `expires_in` and `expires_on` may be
/// numbers or strings.
fn parse_managed(status: u16, body: &[u8]) -> Result<Acquired, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        access_token: String,
        #[serde(default, deserialize_with = "crate::oauth::idp::lenient_seconds")]
        expires_in: Option<u64>,
        #[serde(default, deserialize_with = "crate::oauth::idp::lenient_seconds")]
        expires_on: Option<u64>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
    }
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|_| format!("managed identity endpoint: HTTP {status} with an unreadable body"))?;
    if status != 200 || raw.access_token.is_empty() {
        let what = raw.error.unwrap_or_else(|| "no access_token".into());
        let why = raw
            .error_description
            .map(|d| d.chars().take(300).collect::<String>())
            .unwrap_or_default();
        return Err(format!(
            "managed identity endpoint: HTTP {status} {what} {why} (is an identity assigned, and \
             is managed_identity_client_id right for a user-assigned one?)"
        ));
    }
    let now = unix(SystemTime::now());
    let lifetime = raw
        .expires_in
        .or_else(|| raw.expires_on.map(|on| on.saturating_sub(now)))
        .map(Duration::from_secs);
    Ok(Acquired {
        token: Secret::new(raw.access_token),
        lifetime,
    })
}

/// The provider's refusal in words, with the AADSTS code.
fn explain(e: &IdpError) -> String {
    format!("token endpoint: {e}")
}

/// The identity claims of a JWT access token (not verified: Azure DevOps
/// does that; these are only shown).
fn claims_of(token: &str) -> Option<Claims> {
    jwt_payload(token)
}

/// The payload of a JWT, unverified (for showing who a token names).
pub(crate) fn jwt_payload<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The app's configured credential, if any.
fn client_auth(auth: &crate::config::AuthConfig) -> Result<Option<ClientAuth>, String> {
    Ok(
        match (
            &auth.client_certificate_file,
            &auth.client_key_file,
            &auth.client_secret_file,
            &auth.client_secret,
        ) {
            (Some(c), Some(k), _, _) => Some(ClientAuth::Certificate(
                Signer::load(c, k).map_err(|e| format!("{}: {}", e.key, e.message))?,
            )),
            (_, _, Some(f), _) => Some(ClientAuth::SecretFile(f.clone())),
            (_, _, None, Some(s)) => Some(ClientAuth::Secret(s.clone())),
            _ => None,
        },
    )
}

fn source_label(s: ServiceSource) -> &'static str {
    match s {
        ServiceSource::ClientCredentials => "client-credentials",
        ServiceSource::WorkloadIdentity => "workload-identity",
        ServiceSource::ManagedIdentity => "managed-identity",
        ServiceSource::DeviceCode => "device-code",
        ServiceSource::Pat => "pat",
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_identity_answers_with_string_or_number_expiry() {
        let now = unix(SystemTime::now());
        // IMDS: strings.
        let imds = format!(
            r#"{{"access_token":"eyJ0.x.y","expires_in":"3599","expires_on":"{}","resource":"{ADO_RESOURCE}","token_type":"Bearer"}}"#,
            now + 3599
        );
        let a = parse_managed(200, imds.as_bytes()).unwrap();
        assert_eq!(a.lifetime, Some(Duration::from_secs(3599)));
        // App Service: expires_on only, a number.
        let app = format!(
            r#"{{"access_token":"t","expires_on":{},"token_type":"Bearer"}}"#,
            now + 600
        );
        let a = parse_managed(200, app.as_bytes()).unwrap();
        let secs = a.lifetime.unwrap().as_secs();
        assert!((598..=600).contains(&secs), "{secs}");
        let err = parse_managed(
            400,
            br#"{"error":"invalid_request","error_description":"Identity not found"}"#,
        )
        .err()
        .unwrap();
        assert!(err.contains("Identity not found"), "{err}");
        assert!(parse_managed(500, b"<html>").is_err());
    }

    #[test]
    fn claims_are_read_from_a_jwt_without_trusting_it() {
        let payload =
            URL_SAFE_NO_PAD.encode(br#"{"appid":"app","oid":"o","tid":"t","idtyp":"app"}"#);
        let c = claims_of(&format!("h.{payload}.s")).unwrap();
        assert_eq!(c.appid.as_deref(), Some("app"));
        assert!(claims_of("opaque-token").is_none());
    }
}
