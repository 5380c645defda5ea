//! Where the credential sent upstream comes from. Every mode sits behind
//! [`Identity::credential`]; later modes (user sessions, service
//! identities) add variants here without touching the forwarding code.

mod pat;

use http::HeaderValue;

use crate::config::{AuthConfig, AuthMode};

pub use pat::PatSource;

/// The configured identity.
pub enum Identity {
    /// Forward the client's own `Authorization` header untouched.
    PassThrough,
    /// A personal access token, sent as Basic auth.
    Pat(PatSource),
}

/// What to do with the `Authorization` header of one request.
pub enum Credential {
    /// Leave whatever the client sent.
    PassThrough,
    /// Replace it with this value (marked sensitive).
    Replace(HeaderValue),
}

/// Why no credential could be produced.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The PAT file could not be read, or holds no usable token.
    #[error("personal access token unavailable: {0}")]
    PatUnavailable(String),
}

// === impl Identity ===

impl Identity {
    /// Builds the identity for `[auth]`; reads a PAT file once to fail fast.
    pub fn from_config(auth: &AuthConfig) -> Result<Self, IdentityError> {
        match auth.mode {
            AuthMode::None => Ok(Self::PassThrough),
            AuthMode::Pat => Ok(Self::Pat(PatSource::from_config(auth)?)),
        }
    }

    /// The credential for the next upstream request.
    pub fn credential(&self) -> Result<Credential, IdentityError> {
        match self {
            Self::PassThrough => Ok(Credential::PassThrough),
            Self::Pat(pat) => Ok(Credential::Replace(pat.header()?)),
        }
    }
}
