//! Where a provider's endpoints and issuer come from: built from the
//! authority and tenant (Entra, legacy Azure DevOps OAuth) or read from
//! OpenID Connect discovery on first use, with a backoff after a failed
//! read so traffic cannot turn an outage into a stream of fetches.

use serde::Deserialize;
use url::Url;

use super::{Kind, ProviderClient};
use crate::oauth::GrantError;
use crate::oauth::id_token::Jwks;
use crate::oauth::idp::IdpError;

/// A failed discovery and when it may be fetched again.
pub(super) struct DiscoveryFailed {
    pub(super) error: Option<IdpError>,
    pub(super) retry_at: Option<std::time::Instant>,
    pub(super) backoff: crate::backoff::Backoff,
}

/// Endpoints and issuer.
pub struct Metadata {
    pub(super) issuer: ExpectedIssuerSpec,
    pub(super) authorization_endpoint: Url,
    pub(super) token_endpoint: Url,
    pub(super) jwks: Option<Jwks>,
    /// Where logout sends the browser, when the provider has one.
    pub end_session_endpoint: Option<Url>,
}

pub(super) enum ExpectedIssuerSpec {
    Exact(String),
    EntraTemplate(String),
    None,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: Url,
    #[serde(default)]
    end_session_endpoint: Option<Url>,
}

// === impl Metadata ===

impl Metadata {
    /// Whether `iss` from an authorization response (RFC 9207) names this
    /// provider. Multi-tenant Entra names the user's tenant, which only
    /// the ID token check can judge, so any issuer of that authority
    /// passes here.
    pub fn accepts_iss(&self, iss: &str) -> bool {
        match &self.issuer {
            ExpectedIssuerSpec::Exact(expected) => {
                iss.trim_end_matches('/') == expected.trim_end_matches('/')
            }
            ExpectedIssuerSpec::EntraTemplate(prefix) => iss.starts_with(prefix.as_str()),
            ExpectedIssuerSpec::None => true,
        }
    }
}

// === impl ProviderClient: metadata ===

impl ProviderClient {
    pub(super) fn static_metadata(&self) -> Metadata {
        match self.kind {
            Kind::AzureDevops => Metadata {
                issuer: ExpectedIssuerSpec::None,
                authorization_endpoint: self.join("oauth2/authorize"),
                token_endpoint: self.join("oauth2/token"),
                jwks: None,
                end_session_endpoint: None,
            },
            _ => {
                let tenant = self
                    .tenant
                    .clone()
                    .unwrap_or_else(|| "organizations".into());
                let prefix = format!("{}/", self.authority.as_str().trim_end_matches('/'));
                let issuer = if uuid::Uuid::parse_str(&tenant).is_ok() {
                    ExpectedIssuerSpec::Exact(format!("{prefix}{}/v2.0", tenant.to_lowercase()))
                } else {
                    ExpectedIssuerSpec::EntraTemplate(prefix)
                };
                Metadata {
                    issuer,
                    authorization_endpoint: self.join(&format!("{tenant}/oauth2/v2.0/authorize")),
                    token_endpoint: self.join(&format!("{tenant}/oauth2/v2.0/token")),
                    jwks: Some(Jwks::new(
                        self.join(&format!("{tenant}/discovery/v2.0/keys")),
                        self.clock.clone(),
                    )),
                    end_session_endpoint: Some(self.join(&format!("{tenant}/oauth2/v2.0/logout"))),
                }
            }
        }
    }

    /// Endpoints, reading OIDC discovery on first use. A failed read is
    /// the answer until its backoff (5 s doubling to 60 s) runs out.
    pub async fn metadata(&self) -> Result<&Metadata, GrantError> {
        self.metadata
            .get_or_try_init(|| async {
                if let Some(e) = self.discovery_backing_off() {
                    return Err(GrantError::Metadata(e));
                }
                let read = self.discover().await;
                self.note_discovery(read.as_ref().err());
                read
            })
            .await
    }

    /// The failure to answer with while its backoff runs.
    fn discovery_backing_off(&self) -> Option<IdpError> {
        let f = self.discovery_failed.lock().ok()?;
        let now = self.clock.now();
        f.retry_at
            .is_some_and(|at| now < at)
            .then(|| f.error.clone())
            .flatten()
    }

    fn note_discovery(&self, failed: Option<&GrantError>) {
        let Ok(mut f) = self.discovery_failed.lock() else {
            return;
        };
        match failed {
            Some(GrantError::Metadata(e)) => {
                let wait = f.backoff.fail();
                f.retry_at = Some(self.clock.now() + wait);
                f.error = Some(e.clone());
            }
            _ => {
                f.backoff.reset();
                f.retry_at = None;
                f.error = None;
            }
        }
    }

    async fn discover(&self) -> Result<Metadata, GrantError> {
        let issuer = self
            .issuer_url
            .clone()
            .ok_or_else(|| GrantError::Local("auth.issuer_url is not set".into()))?;
        let base = issuer.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
            .map_err(|e| GrantError::Local(e.to_string()))?;
        let d: Discovery = self
            .http
            .get_json(&url, None)
            .await
            .map_err(GrantError::Metadata)?;
        // OIDC Discovery §4.3: the document must name the issuer
        // it was fetched for.
        if d.issuer.trim_end_matches('/') != base {
            return Err(GrantError::Metadata(IdpError::Malformed(format!(
                "discovery names issuer {:?}, expected {base:?}",
                d.issuer
            ))));
        }
        Ok(Metadata {
            issuer: ExpectedIssuerSpec::Exact(d.issuer),
            authorization_endpoint: d.authorization_endpoint,
            token_endpoint: d.token_endpoint,
            jwks: Some(Jwks::new(d.jwks_uri, self.clock.clone())),
            end_session_endpoint: d.end_session_endpoint,
        })
    }
}
