//! Where the credential sent upstream comes from. Every mode sits behind
//! [`Identity::credential`]; the forwarding code does not know which one
//! is configured.

pub mod device;
mod pat;
pub mod service;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use url::Url;

use crate::config::{AuthMode, Config};
use crate::error::Error;
use crate::login::{Login, UserCredential};
use crate::metrics::Metrics;

pub use pat::PatSource;
pub use service::ServiceIdentity;

/// The configured identity.
pub enum Identity {
    /// Forward the client's own `Authorization` header untouched.
    PassThrough,
    /// A personal access token, sent as Basic auth.
    Pat(PatSource),
    /// Signed-in users, each with their own session and token.
    User(Arc<Login>),
    /// One fixed identity, refreshed in the background; with
    /// `allow_browser_login`, the sign-in endpoints that replace it.
    Service(Arc<ServiceIdentity>, Option<Arc<Login>>),
}

/// What to do with the `Authorization` header of one request.
pub enum Credential {
    /// Leave whatever the client sent.
    PassThrough,
    /// Replace it with this value (marked sensitive).
    Replace(HeaderValue),
    /// A user's bearer token; a 401 from Azure DevOps may refresh it once.
    User(UserCredential),
}

pub use crate::error::IdentityError;

// === impl Identity ===

impl Identity {
    /// Builds the identity for `[auth]`; reads a PAT file once to fail
    /// fast. `public_url` is where users' browsers reach the proxy.
    pub fn from_config(
        config: &Config,
        public_url: &Url,
        metrics: Arc<Metrics>,
    ) -> Result<Self, IdentityError> {
        match config.auth.mode {
            AuthMode::None => Ok(Self::PassThrough),
            AuthMode::Pat => Ok(Self::Pat(PatSource::from_config(&config.auth)?)),
            AuthMode::User => Login::new(config, public_url, metrics)
                .map(|l| Self::User(Arc::new(l)))
                .map_err(IdentityError::Login),
            AuthMode::Service => {
                let service = Arc::new(
                    ServiceIdentity::new(config, metrics.clone()).map_err(IdentityError::Login)?,
                );
                let login = match (config.auth.allow_browser_login, service.device_store()) {
                    (true, Some((store, wake))) => Some(Arc::new(
                        Login::for_service(config, public_url, metrics, store, wake)
                            .map_err(IdentityError::Login)?,
                    )),
                    _ => None,
                };
                Ok(Self::Service(service, login))
            }
        }
    }

    /// Mode `user`'s sign-in state, which serves `/.auth/`.
    pub fn login(&self) -> Option<&Arc<Login>> {
        match self {
            Self::User(login) | Self::Service(_, Some(login)) => Some(login),
            _ => None,
        }
    }

    /// Mode `service`'s identity, refreshed by a background task.
    pub fn service(&self) -> Option<&Arc<ServiceIdentity>> {
        match self {
            Self::Service(s, _) => Some(s),
            _ => None,
        }
    }

    /// The credential for the next upstream request. `return_to` is the
    /// request's path and query, where a browser returns after sign-in.
    pub async fn credential(
        &self,
        headers: &HeaderMap,
        return_to: &str,
    ) -> Result<Credential, Error> {
        match self {
            Self::PassThrough => Ok(Credential::PassThrough),
            Self::Pat(pat) => Ok(Credential::Replace(pat.header()?)),
            // Boxed: the sign-in future (refresh, provider call) is large
            // and would otherwise inflate every request's future, PAT or not.
            Self::User(login) => Ok(Credential::User(
                Box::pin(login.credential(headers, return_to)).await?,
            )),
            Self::Service(s, _) => Ok(Credential::Replace(Box::pin(s.header()).await?)),
        }
    }
}

// === impl Credential ===

impl Credential {
    /// The `Authorization` value to send, if the proxy sets one.
    pub fn header(&self) -> Option<&HeaderValue> {
        match self {
            Self::PassThrough => None,
            Self::Replace(v) => Some(v),
            Self::User(u) => Some(&u.header),
        }
    }
}
