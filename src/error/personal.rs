//! Why a personal proxy token was refused, or a `/.auth/tokens` call
//! failed, and what the client is told.

use http::{HeaderValue, header};

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
        use super::own::answer;
        match self {
            Self::Refused { reason, tokens_url } => {
                let mut ans = answer(
                    "proxy-token-refused",
                    &[("reason", reason), ("tokens_url", tokens_url)],
                );
                ans.headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(BASIC_CHALLENGE),
                );
                ans.action = Some(("Create a proxy token", tokens_url.clone()));
                ans
            }
            Self::NeedsSession { login_url } => {
                let mut ans = answer(
                    "sign-in-required/manage-tokens",
                    &[("login_url", login_url)],
                );
                ans.login_url = Some(login_url.clone());
                ans.action = Some(("Sign in", login_url.clone()));
                ans
            }
            Self::BadRequest(why) => answer("token-request-invalid", &[("why", why)]),
            Self::ClientTokenRefused(why) => {
                let mut ans = answer("client-token-refused", &[("why", why)]);
                ans.headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"ado-auth-proxy\", error=\"invalid_token\"",
                    ),
                );
                ans
            }
            Self::NotFound => answer("token-not-found", &[]),
            Self::TooMany { max } => answer("too-many-tokens", &[("max", &max.to_string())]),
            Self::PatApiUnavailable {
                reason,
                retry_after,
            } => answer("pat-api-unavailable", &[("reason", reason)])
                .retry_after(retry_after.unwrap_or(5)),
        }
    }
}
