//! Why a sign-in step failed, and what the user is told.

use http::{HeaderValue, StatusCode, header};

use crate::answer::Answer;
use crate::diagnose::{Finding, Fixer, ProviderSaid, TokenPath, Vars};
use crate::gate::Failure;
use crate::metrics::LoginFailure;
use crate::oauth::GrantError;
use crate::oauth::idp::{Grant, IdpError};

/// Why a sign-in step failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong method for the endpoint.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods that are.
        allowed: String,
    },
    /// `rd` is not a same-origin path.
    #[error("return path refused")]
    BadReturnPath,
    /// The provider's metadata or authorize request could not be prepared.
    #[error("provider unavailable: {0}")]
    Provider(String),
    /// The callback has no `state`.
    #[error("callback without state")]
    MissingState,
    /// `state` names no pending sign-in (forged, or already used).
    #[error("unknown or used state")]
    UnknownState,
    /// The pending sign-in is older than `login_timeout`.
    #[error("sign-in expired")]
    Expired,
    /// The pre-auth cookie is missing or belongs to another browser.
    #[error("state not bound to this browser")]
    NotThisBrowser,
    /// The provider reported an error instead of a code.
    #[error("provider answered {error}")]
    Denied {
        /// `error`.
        error: String,
        /// `error_description` (untrusted text; escaped when shown).
        description: String,
        /// The proxy's redirect URI and admin-consent URL, for the answer.
        vars: Vars,
    },
    /// The callback's `iss` names another issuer (RFC 9207).
    #[error("authorization response from another issuer")]
    WrongIssuer,
    /// The callback has neither code nor error.
    #[error("callback without code")]
    MissingCode,
    /// Redeeming the code failed.
    #[error("{0}")]
    Redeem(GrantError, Vars),
    /// The user is not on the allowlists.
    #[error("user not allowed: {reason}")]
    NotAllowed {
        /// Which rule refused them.
        reason: String,
    },
    /// The user lacks a group or app role the proxy requires.
    #[error("not a member: {reason}")]
    NotMember {
        /// What they lack, in words.
        reason: String,
    },
    /// The user's groups could not be found out.
    #[error("membership unverified: {detail}")]
    MembershipUnverified {
        /// What failed.
        detail: String,
        /// The proxy's app was refused (a permission or scope is
        /// missing), not a passing failure.
        operator: bool,
        /// When to try again, for a passing failure.
        retry_after: Option<u64>,
    },
    /// `/.auth/me` without a session.
    #[error("not signed in")]
    NotSignedIn,
    /// A callback form that cannot be read.
    #[error("unreadable form")]
    BadForm,
}

// === impl LoginError ===

impl LoginError {
    /// The catalog case of a provider's refusal at sign-in, if known.
    pub(super) fn finding(&self, status: StatusCode) -> Option<Finding> {
        let (said, vars) = match self {
            Self::Denied {
                error,
                description,
                vars,
            } => (
                ProviderSaid {
                    error: error.clone(),
                    description: description.clone(),
                    ..ProviderSaid::default()
                },
                vars,
            ),
            Self::Redeem(GrantError::Token(IdpError::Rejected { body, .. }), vars) => {
                (crate::oauth::idp::said_of(body), vars)
            }
            _ => return None,
        };
        let mut finding = said.finding(TokenPath::SignIn, status, vars.clone())?;
        // The status follows who fixes it: a 5xx says the proxy is broken,
        // which is true only of its own registration or credential.
        if finding.status.is_server_error() && finding.entry.fixer != Fixer::Operator {
            finding.status = StatusCode::FORBIDDEN;
        }
        Some(finding)
    }

    /// The answer's id: the metric label's meaning, spelled as every
    /// answer id is.
    pub fn id(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::BadReturnPath => "bad-return-path",
            Self::Provider(_) => "sign-in-provider-unavailable",
            Self::MissingState => "missing-state",
            Self::UnknownState => "unknown-state",
            Self::Expired => "sign-in-timed-out",
            Self::NotThisBrowser => "wrong-browser",
            Self::Denied { .. } => "provider-error",
            Self::MissingCode => "missing-code",
            Self::WrongIssuer => "wrong-issuer",
            Self::Redeem(GrantError::IdToken(_), _) => "id-token-invalid",
            Self::Redeem(..) => "code-redemption-failed",
            Self::NotAllowed { .. } => "user-not-allowed",
            Self::NotMember { .. } => "membership-required",
            Self::MembershipUnverified { .. } => "membership-unverified",
            Self::NotSignedIn => "not-signed-in",
            Self::BadForm => "bad-form",
        }
    }

    /// A fixed label for metrics.
    pub fn slug(&self) -> LoginFailure {
        use LoginFailure as F;
        match self {
            Self::MethodNotAllowed { .. } => F::Method,
            Self::BadReturnPath => F::BadReturnPath,
            Self::Provider(_) => F::ProviderUnavailable,
            Self::MissingState => F::MissingState,
            Self::UnknownState => F::UnknownState,
            Self::Expired => F::Expired,
            Self::NotThisBrowser => F::WrongBrowser,
            Self::Denied { .. } => F::ProviderError,
            Self::MissingCode => F::MissingCode,
            Self::WrongIssuer => F::WrongIssuer,
            Self::Redeem(GrantError::IdToken(_), _) => F::IdTokenInvalid,
            Self::Redeem(..) => F::CodeRedemption,
            Self::NotAllowed { .. } => F::NotAllowed,
            Self::NotMember { .. } => F::NotMember,
            Self::MembershipUnverified { .. } => F::MembershipUnverified,
            Self::NotSignedIn => F::NotSignedIn,
            Self::BadForm => F::BadForm,
        }
    }

    pub(super) fn answer(&self) -> Answer {
        use super::own::answer;
        match self {
            Self::MethodNotAllowed { allowed } => {
                let mut ans = answer("method-not-allowed", &[("allowed", allowed)]);
                if let Ok(v) = HeaderValue::try_from(allowed.as_str()) {
                    ans.headers.insert(header::ALLOW, v);
                }
                ans
            }
            Self::Provider(detail) => answer("sign-in-provider-unavailable", &[("detail", detail)]),
            Self::Denied {
                error, description, ..
            } => {
                let key = match error.as_str() {
                    "access_denied" => "provider-error/access-denied",
                    _ => "provider-error",
                };
                let description = match description.is_empty() {
                    true => String::new(),
                    false => format!(": {description}"),
                };
                answer(key, &[("error", error), ("description", &description)])
            }
            Self::Redeem(e, _) => redeem_answer(e),
            Self::NotAllowed { reason } => answer("user-not-allowed", &[("reason", reason)]),
            Self::NotMember { reason } => answer("membership-required", &[("reason", reason)]),
            Self::MembershipUnverified {
                detail,
                operator,
                retry_after,
            } => {
                let key = match operator {
                    true => "membership-unverified/operator",
                    false => "membership-unverified",
                };
                let mut ans = answer(key, &[("detail", detail)]);
                if let Some(secs) = retry_after {
                    ans.headers
                        .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
                }
                ans
            }
            Self::BadReturnPath
            | Self::MissingState
            | Self::UnknownState
            | Self::Expired
            | Self::NotThisBrowser
            | Self::WrongIssuer
            | Self::MissingCode
            | Self::NotSignedIn
            | Self::BadForm => answer(self.id(), &[]),
        }
    }
}

/// Why redeeming the sign-in code failed, by cause.
fn redeem_answer(e: &GrantError) -> Answer {
    let (key, error) = match e {
        GrantError::Token(idp) => (
            match idp.classify(Grant::Code) {
                Failure::Relogin { .. } => "code-redemption-failed/refused",
                Failure::Operator { .. } => "code-redemption-failed/operator",
                Failure::Transient { .. } => "code-redemption-failed/transient",
            },
            idp.to_string(),
        ),
        GrantError::IdToken(crate::oauth::id_token::IdTokenError::Keys(idp)) => {
            ("id-token-invalid/keys", idp.to_string())
        }
        GrantError::IdToken(e) => ("id-token-invalid", e.to_string()),
        GrantError::Metadata(idp) => ("code-redemption-failed/metadata", idp.to_string()),
        GrantError::Local(detail) => ("code-redemption-failed/local", detail.clone()),
    };
    let ans = super::own::answer(key, &[("error", &error)]);
    match key {
        "code-redemption-failed/transient" => ans.retry_after(5),
        _ => ans,
    }
}
