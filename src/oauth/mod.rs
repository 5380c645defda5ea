//! Talking to identity providers, for sign-in and service identities
//! alike: the provider HTTP client and the token/error shapes (`idp`), ID
//! token validation (`id_token`), groups and roles in tokens
//! (`group_claims`), managed identities' tokens (`managed`), and why a grant failed.

pub mod client_auth;
pub mod group_claims;
pub mod id_token;
pub(crate) mod idp;
pub mod managed;

use self::id_token::IdTokenError;
use self::idp::IdpError;

/// Why a sign-in could not complete.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The token endpoint said no, or was unreachable.
    #[error("token endpoint: {0}")]
    Token(IdpError),
    /// Discovery or profile could not be read.
    #[error("provider metadata: {0}")]
    Metadata(IdpError),
    /// The ID token was not acceptable.
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    /// The proxy could not build its own request (e.g. sign an assertion).
    #[error("{0}")]
    Local(String),
}
