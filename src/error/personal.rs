//! Why a personal proxy token was refused, or a `/.auth/tokens` call
//! failed, and what the client is told.

use http::{HeaderValue, StatusCode, header};

use crate::answer::Answer;

/// The challenge a refused token is answered with: git's credential
/// helper (or its prompt) answers it with the token as the password.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"ado-auth-proxy\", charset=\"UTF-8\"";

/// Why a personal token or a token request was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The presented token does not act for anyone (any more).
    #[error("personal token refused: {reason}")]
    Refused {
        /// Why, for the client (no value).
        reason: &'static str,
        /// Where a new one is made.
        tokens_url: String,
    },
    /// `/.auth/tokens` needs the browser session, not a token.
    #[error("a signed-in browser session is needed")]
    NeedsSession {
        /// Where to sign in.
        login_url: String,
    },
    /// A create request that cannot be served.
    #[error("invalid token request: {0}")]
    BadRequest(String),
    /// The user holds `auth.max_tokens_per_user` tokens already.
    #[error("{max} personal tokens held already")]
    TooMany {
        /// `auth.max_tokens_per_user`.
        max: usize,
    },
    /// Azure DevOps' PAT lifecycle API did not answer usefully (could
    /// not be reached, failed, or throttled): worth trying again.
    #[error("the PAT lifecycle API is unavailable: {reason}")]
    PatApiUnavailable {
        /// What happened, without secrets.
        reason: String,
        /// Seconds to wait, when the API said.
        retry_after: Option<u64>,
    },
    /// `DELETE /.auth/tokens/{id}` for a token the session does not have.
    #[error("no such token")]
    NotFound,
    /// A client's own Entra token (`auth.accept_client_tokens`) that
    /// does not pass.
    #[error("client token refused: {0}")]
    ClientTokenRefused(String),
}

// === impl TokenError ===

impl TokenError {
    pub(super) fn answer(&self) -> Answer {
        match self {
            Self::Refused { reason, tokens_url } => {
                let mut ans = Answer::new(
                    StatusCode::UNAUTHORIZED,
                    "proxy-token-refused",
                    "The proxy token was not accepted",
                    format!(
                        "{reason}. Sign in at {tokens_url} in a browser and create a new proxy \
                         token there; send it as the password of HTTP Basic (any user name; git's \
                         credential helper asks for it) or as Authorization: Bearer."
                    ),
                );
                ans.headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(BASIC_CHALLENGE),
                );
                ans.action = Some(("Create a proxy token", tokens_url.clone()));
                ans
            }
            Self::NeedsSession { login_url } => {
                let mut ans = Answer::new(
                    StatusCode::UNAUTHORIZED,
                    "sign-in-required",
                    "Sign-in required",
                    format!(
                        "Proxy tokens are managed from a signed-in browser: sign in at \
                         {login_url}, then open /.auth/tokens. A proxy token cannot create or \
                         list tokens."
                    ),
                );
                ans.login_url = Some(login_url.clone());
                ans.action = Some(("Sign in", login_url.clone()));
                ans
            }
            Self::BadRequest(why) => Answer::new(
                StatusCode::BAD_REQUEST,
                "token-request-invalid",
                "The token request cannot be served",
                format!("{why}."),
            ),
            Self::ClientTokenRefused(why) => {
                let mut ans = Answer::new(
                    StatusCode::UNAUTHORIZED,
                    "client-token-refused",
                    "Your Entra token was not accepted",
                    format!(
                        "The proxy accepts clients' own Entra access tokens for Azure DevOps, but \
                         not this one: {why}. Get a new one (az account get-access-token \
                         --resource 499b84ac-1321-427f-aa17-267ca6975798) with an account this \
                         proxy admits, or sign in in a browser."
                    ),
                );
                ans.headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"ado-auth-proxy\", error=\"invalid_token\"",
                    ),
                );
                ans
            }
            Self::NotFound => Answer::new(
                StatusCode::NOT_FOUND,
                "token-not-found",
                "No such token",
                "This sign-in has no token with that id (revoked already, expired, or created \
                 from another sign-in)."
                    .into(),
            ),
            Self::TooMany { max } => Answer::new(
                StatusCode::CONFLICT,
                "too-many-tokens",
                "You hold as many personal proxy tokens as you may",
                format!(
                    "You have {max} personal proxy tokens already, the most one user may hold (auth.max_tokens_per_user). Revoke the ones you no longer use at /.auth/tokens, then create this one."
                ),
            ),
            Self::PatApiUnavailable {
                reason,
                retry_after,
            } => {
                let ans = Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "pat-api-unavailable",
                    "Azure DevOps' PAT service is not answering",
                    format!(
                        "Azure DevOps' personal access token API could not serve this request ({reason}). Nothing was changed. Try again shortly; if it persists, an administrator can check that the proxy reaches upstream.hosts.vssps."
                    ),
                );
                ans.retry_after(retry_after.unwrap_or(5))
            }
        }
    }
}
