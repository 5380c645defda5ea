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

use super::idp::{IdpError, IdpHttp};

/// A key set is not re-fetched more often than this for unknown `kid`s,
/// so forged tokens cannot make the proxy hammer the provider, while a
/// real key rotation is picked up within seconds.
pub const REFETCH_MIN: Duration = Duration::from_secs(5);
/// Keys are re-read at least this often.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 120;

/// The provider's signing keys.
pub struct Jwks {
    uri: Url,
    cached: RwLock<Option<(JwkSet, Instant)>>,
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
    /// Expiry, seconds since the epoch.
    pub exp: u64,
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
    /// Whether the provider verified `email` (OIDC; `true` or `"true"`).
    #[serde(default)]
    pub email_verified: Option<serde_json::Value>,
    /// Entra v1-style UPN.
    #[serde(default)]
    pub upn: Option<String>,
    /// The nonce sent at authorize.
    #[serde(default)]
    pub nonce: Option<String>,
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
    /// Keys at `uri`, fetched on first use.
    pub fn new(uri: Url) -> Self {
        Self {
            uri,
            cached: RwLock::new(None),
        }
    }

    async fn key_for(
        &self,
        http: &IdpHttp,
        kid: Option<&str>,
    ) -> Result<DecodingKey, IdTokenError> {
        if let Some(key) = self.lookup(kid, false).await? {
            return Ok(key);
        }
        let mut slot = self.cached.write().await;
        let stale = slot
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= REFETCH_MIN);
        if stale {
            let set: JwkSet = http
                .get_json(&self.uri, None)
                .await
                .map_err(IdTokenError::Keys)?;
            *slot = Some((set, Instant::now()));
        }
        drop(slot);
        self.lookup(kid, true)
            .await?
            .ok_or_else(|| IdTokenError::Invalid(format!("no signing key with kid {kid:?}")))
    }

    async fn lookup(
        &self,
        kid: Option<&str>,
        any_age: bool,
    ) -> Result<Option<DecodingKey>, IdTokenError> {
        let slot = self.cached.read().await;
        let Some((set, at)) = slot.as_ref() else {
            return Ok(None);
        };
        if !any_age && at.elapsed() > MAX_AGE {
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
