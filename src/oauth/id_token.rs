//! ID token validation: signature against the provider's keys (fetched
//! lazily, cached, re-fetched when a token names an unknown `kid`),
//! issuer, audience, expiry and nonce.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::RwLock;
use url::Url;

use super::group_claims::RawGroupClaims;
use super::idp::{IdpError, IdpHttp};
use crate::backoff::Backoff;
use crate::clock::Clock;

/// A key set is not re-fetched more often than this for unknown `kid`s,
/// so forged tokens cannot make the proxy hammer the provider, while a
/// real key rotation is picked up within seconds. It is also the first
/// wait after a failed fetch.
pub const REFETCH_MIN: Duration = Duration::from_secs(5);
/// Failed fetches back off from [`REFETCH_MIN`], doubling, up to this:
/// while the provider's key endpoint fails, requests (forged tokens
/// included) get the remembered failure instead of a fetch each.
pub const FAILED_MAX: Duration = Duration::from_secs(60);
/// Keys are re-read at least this often.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 120;

/// The provider's signing keys at one address.
pub struct Jwks {
    uri: Url,
    /// When fetches may happen (the proxy's clock, so tests move it).
    clock: Clock,
    state: RwLock<KeyState>,
}

/// What is known about the key set: the last one fetched, and when the
/// next fetch may happen.
struct KeyState {
    /// The last set fetched, and when.
    set: Option<(JwkSet, Instant)>,
    /// No fetch before this: [`REFETCH_MIN`] after a success, the
    /// backoff after a failure.
    next_fetch: Option<Instant>,
    /// Only a successful fetch resets it.
    backoff: Backoff,
    /// Why the last fetch failed, until one succeeds: the answer while
    /// the backoff runs.
    failure: Option<IdpError>,
}

/// What an Entra access token says about its holder.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessClaims {
    /// Issuer (`https://sts.windows.net/{tid}/` or `…/{tid}/v2.0`).
    pub iss: String,
    /// Tenant.
    #[serde(default)]
    pub tid: Option<String>,
    /// Object id of the user or service principal.
    #[serde(default)]
    pub oid: Option<String>,
    /// A user's UPN (v1 tokens).
    #[serde(default)]
    pub upn: Option<String>,
    /// A user's name (v1 tokens without `upn`).
    #[serde(default)]
    pub unique_name: Option<String>,
    /// A user's name (v2 tokens).
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// The user's `mail` attribute (optional claim), anybody's to set
    /// unless `xms_edov` says the domain's owner is verified.
    #[serde(default)]
    pub email: Option<String>,
    /// Entra: whether the email's domain owner is verified (optional
    /// claim).
    #[serde(default)]
    pub xms_edov: Option<serde_json::Value>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Groups and app roles.
    #[serde(flatten)]
    pub membership: RawGroupClaims,
}

/// What the ID token says about the user.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Entra: object id.
    #[serde(default)]
    pub oid: Option<String>,
    /// Entra: tenant id.
    #[serde(default)]
    pub tid: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// UPN or user name.
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the provider verified `email` (OIDC; see [`claim_is_true`]).
    #[serde(default)]
    pub email_verified: Option<serde_json::Value>,
    /// Entra: whether the email's domain owner is verified (the optional
    /// claim `xms_edov`; Entra sends no `email_verified`).
    #[serde(default)]
    pub xms_edov: Option<serde_json::Value>,
    /// Entra v1-style UPN.
    #[serde(default)]
    pub upn: Option<String>,
    /// The nonce sent at authorize.
    #[serde(default)]
    pub nonce: Option<String>,
    /// Entra: groups and app roles.
    #[serde(flatten)]
    pub membership: RawGroupClaims,
}

/// Which issuer the token must name.
pub enum ExpectedIssuer {
    /// Exactly this (OIDC discovery, or an Entra tenant GUID).
    Exact(String),
    /// Entra multi-tenant: `{prefix}{tid}/v2.0`, with `tid` checked by the
    /// allowlist afterwards.
    EntraTemplate {
        /// `https://login.microsoftonline.com/`.
        prefix: String,
    },
}

/// Why an ID token was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    /// Malformed, badly signed, expired, wrong issuer or audience.
    #[error("ID token invalid: {0}")]
    Invalid(String),
    /// The keys could not be fetched.
    #[error("the provider's signing keys could not be fetched: {0}")]
    Keys(IdpError),
}

// === impl Jwks ===

impl Jwks {
    /// Keys at `uri`, fetched on first use; fetches are spaced by
    /// `clock`.
    pub fn new(uri: Url, clock: Clock) -> Self {
        Self {
            uri,
            clock,
            state: RwLock::new(KeyState {
                set: None,
                next_fetch: None,
                backoff: Backoff::new(REFETCH_MIN, FAILED_MAX),
                failure: None,
            }),
        }
    }

    /// The key named `kid`: from the cached set, else from a fetch when
    /// one is due (never more than one per [`REFETCH_MIN`], nor during a
    /// failure's backoff, however many tokens ask).
    async fn key_for(
        &self,
        http: &IdpHttp,
        kid: Option<&str>,
    ) -> Result<DecodingKey, IdTokenError> {
        if let Some(key) = self.lookup(&*self.state.read().await, kid)? {
            return Ok(key);
        }
        let mut state = self.state.write().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.lookup(&state, kid)? {
            return Ok(key);
        }
        if state.next_fetch.is_none_or(|at| self.clock.now() >= at) {
            self.fetch(http, &mut state).await;
            if let Some(key) = self.lookup(&state, kid)? {
                return Ok(key);
            }
        }
        match &state.failure {
            Some(e) => Err(IdTokenError::Keys(e.clone())),
            None => Err(IdTokenError::Invalid(format!(
                "no signing key with kid {kid:?}"
            ))),
        }
    }

    /// One fetch; its outcome decides when the next may happen.
    async fn fetch(&self, http: &IdpHttp, state: &mut KeyState) {
        let result = http.get_json::<JwkSet>(&self.uri, None).await;
        let now = self.clock.now();
        match result {
            Ok(set) => {
                state.set = Some((set, now));
                state.backoff.reset();
                state.failure = None;
                state.next_fetch = Some(now + REFETCH_MIN);
            }
            Err(e) => {
                let wait = state.backoff.fail();
                tracing::warn!(
                    keys = %self.uri,
                    error = %e,
                    retry_in_s = wait.as_secs(),
                    "could not fetch the provider's signing keys; not asking again before the \
                     backoff runs out"
                );
                state.next_fetch = Some(now + wait);
                state.failure = Some(e);
            }
        }
    }

    /// The key named `kid` in a set fetched less than [`MAX_AGE`] ago.
    fn lookup(
        &self,
        state: &KeyState,
        kid: Option<&str>,
    ) -> Result<Option<DecodingKey>, IdTokenError> {
        let Some((set, at)) = state.set.as_ref() else {
            return Ok(None);
        };
        if self.clock.since(*at) > MAX_AGE {
            return Ok(None);
        }
        let jwk = match kid {
            Some(kid) => set.find(kid),
            None if set.keys.len() == 1 => set.keys.first(),
            None => None,
        };
        match jwk {
            Some(jwk) => DecodingKey::from_jwk(jwk)
                .map(Some)
                .map_err(|e| IdTokenError::Invalid(format!("unusable signing key: {e}"))),
            None => Ok(None),
        }
    }

    /// Validates an access token someone else obtained (a client's own
    /// Entra token for Azure DevOps): signature by these keys, one of
    /// `audiences`, expiry. The issuer and tenant are the caller's to
    /// judge from the claims.
    pub async fn verify_access(
        &self,
        http: &IdpHttp,
        token: &str,
        audiences: &[&str],
    ) -> Result<AccessClaims, IdTokenError> {
        let header = asymmetric_header(token)?;
        let key = self.key_for(http, header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map(|d| d.claims)
            .map_err(|e| IdTokenError::Invalid(e.to_string()))
    }

    /// Validates `token` and returns its claims.
    pub async fn verify(
        &self,
        http: &IdpHttp,
        token: &str,
        client_id: &str,
        issuer: &ExpectedIssuer,
        nonce: Option<&str>,
    ) -> Result<IdClaims, IdTokenError> {
        let header = asymmetric_header(token)?;
        let key = self.key_for(http, header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(&[client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        // The issuer is checked below, where multi-tenant Entra is handled.
        let data = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .map_err(|e| IdTokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let issuer_ok = match issuer {
            ExpectedIssuer::Exact(iss) => claims.iss == *iss,
            ExpectedIssuer::EntraTemplate { prefix } => claims
                .tid
                .as_deref()
                .is_some_and(|tid| claims.iss == format!("{prefix}{tid}/v2.0")),
        };
        if !issuer_ok {
            return Err(IdTokenError::Invalid(format!(
                "issuer {:?} is not the configured provider",
                claims.iss
            )));
        }
        if let Some(expected) = nonce {
            let got = claims.nonce.as_deref().unwrap_or("");
            if !bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(IdTokenError::Invalid("nonce does not match".into()));
            }
        }
        Ok(claims)
    }
}

/// Whether a yes/no claim says yes: `true`, `"true"`, `1` or `"1"`
/// (providers differ in how they write it). Absent or anything else is
/// no: a claim that is not there vouches for nothing.
pub fn claim_is_true(value: Option<&serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// A token's header, refused unless it names an asymmetric algorithm:
/// never let a token pick HS256 or none.
fn asymmetric_header(token: &str) -> Result<jsonwebtoken::Header, IdTokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| IdTokenError::Invalid(e.to_string()))?;
    if !matches!(
        header.alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    ) {
        return Err(IdTokenError::Invalid(format!(
            "signing algorithm {:?} not accepted",
            header.alg
        )));
    }
    Ok(header)
}
