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
            Self::NotSignedIn => F::NotSignedIn,
            Self::BadForm => F::BadForm,
        }
    }

    pub(super) fn answer(&self) -> Answer {
        use StatusCode as S;
        let a =
            |status, title, detail: &str| Answer::new(status, self.id(), title, detail.to_string());
        match self {
            Self::MethodNotAllowed { allowed } => {
                let mut ans = a(S::METHOD_NOT_ALLOWED, "Method not allowed", &format!("This endpoint accepts {allowed}."));
                if let Ok(v) = HeaderValue::try_from(allowed.as_str()) {
                    ans.headers.insert(header::ALLOW, v);
                }
                ans
            }
            Self::BadReturnPath => a(S::BAD_REQUEST, "Return address refused",
                "After signing in, the proxy only returns to a path on itself (such as /contoso/_apis/projects), never to another site."),
            Self::Provider(detail) => a(S::BAD_GATEWAY, "The sign-in provider could not be reached",
                &format!("{detail}. Try again shortly; if it persists, an administrator should check auth.issuer_url or auth.authority_host.")),
            Self::MissingState | Self::UnknownState => a(S::BAD_REQUEST, "This sign-in link is not valid",
                "The sign-in answer does not match a sign-in this proxy started, or it was already used. Start again.").sign_in_again("/.auth/login"),
            Self::Expired => a(S::BAD_REQUEST, "The sign-in took too long",
                "The sign-in was started too long ago and has expired. Start again.").sign_in_again("/.auth/login"),
            Self::NotThisBrowser => a(S::BAD_REQUEST, "The sign-in was started elsewhere",
                "The sign-in answer arrived without the cookie of the browser that started it (started in another browser, or cookies are blocked). Start again in this browser and allow cookies for this site.").sign_in_again("/.auth/login"),
            Self::Denied {
                error, description, ..
            } => {
                let status = if error == "access_denied" { S::FORBIDDEN } else { S::BAD_REQUEST };
                let mut text = format!("The sign-in provider answered \"{error}\"");
                if !description.is_empty() {
                    text.push_str(&format!(": {description}"));
                }
                text.push('.');
                if error == "access_denied" {
                    text.push_str(" If you declined, sign in again and accept; if an administrator must approve the app, ask them.");
                }
                a(status, "Sign-in was not completed", &text).sign_in_again("/.auth/login")
            }
            Self::WrongIssuer => a(S::BAD_REQUEST, "The sign-in answer came from another provider",
                "The answer names an issuer other than the one this sign-in was started with, which is how a mix-up attack looks. Start again.").sign_in_again("/.auth/login"),
            Self::MissingCode => a(S::BAD_REQUEST, "The sign-in answer is incomplete",
                "The provider's answer carried no authorization code. Start again.").sign_in_again("/.auth/login"),
            Self::Redeem(e, _) => redeem_answer(e, self.id()),
            Self::NotAllowed { reason } => a(S::FORBIDDEN, "You may not use this proxy",
                &format!("You signed in successfully, but {reason}. Ask the proxy's administrator for access (auth.allowed_tenants, auth.allowed_users, auth.allowed_email_domains).")),
            Self::NotSignedIn => a(S::UNAUTHORIZED, "Not signed in",
                "There is no session for this request. Sign in at /.auth/login.").sign_in_again("/.auth/login"),
            Self::BadForm => a(S::BAD_REQUEST, "Unreadable sign-in answer",
                "The provider's form could not be read.").sign_in_again("/.auth/login"),
        }
    }
}

fn redeem_answer(e: &GrantError, slug: &'static str) -> Answer {
    use StatusCode as S;
    match e {
        GrantError::Token(idp) => match idp.classify(Grant::Code) {
            Failure::Relogin { .. } => Answer::new(S::BAD_REQUEST, slug, "The sign-in code was refused",
                format!("The provider refused the sign-in code ({idp}). A code works once and only with the browser session that asked for it. Start again.")).sign_in_again("/.auth/login"),
            Failure::Operator { .. } => Answer::new(S::BAD_GATEWAY, slug, "The proxy's sign-in configuration is broken",
                format!("The provider refused the proxy's own credentials ({idp}). This is not your fault: an administrator must fix auth.client_id, the tenant, the redirect URI registration or the client secret/certificate.")),
            Failure::Transient { .. } => {
                let ans = Answer::new(S::SERVICE_UNAVAILABLE, slug, "The sign-in provider is not answering",
                    format!("Redeeming the sign-in code failed ({idp}). Try again in a moment.")).sign_in_again("/.auth/login");
                ans.retry_after(5)
            }
        },
        GrantError::IdToken(crate::oauth::id_token::IdTokenError::Keys(idp)) => Answer::new(S::SERVICE_UNAVAILABLE, slug,
            "The sign-in provider is not answering", format!("Its signing keys could not be read ({idp}). Try again in a moment.")).sign_in_again("/.auth/login"),
        GrantError::IdToken(e) => Answer::new(S::BAD_REQUEST, slug, "The sign-in answer could not be verified",
            format!("{e}. Start again; if it persists, the provider or the proxy's clock is misconfigured.")).sign_in_again("/.auth/login"),
        GrantError::Metadata(idp) => Answer::new(S::BAD_GATEWAY, slug, "The sign-in provider answered badly",
            format!("Reading the provider's metadata or the user's profile failed ({idp}).")).sign_in_again("/.auth/login"),
        GrantError::Local(detail) => Answer::new(S::INTERNAL_SERVER_ERROR, slug, "The proxy could not complete the sign-in",
            format!("{detail}.")),
    }
}
