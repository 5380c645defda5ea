//! The proxy's error type and the one place errors become responses.
//!
//! Variants are grouped by where the failure came from (the client's
//! request, the upstream, the identity); [`into_response`] picks the status
//! and writes a body the client can read: `application/problem+json`
//! (RFC 9457) for programs and browsers, `text/plain` for git, which prints
//! it as `remote:` lines.

use http::header::HeaderName;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::body::ProxyBody;
use crate::diagnose::{self, Finding, Vars};
use crate::metrics::UpstreamErrorKind;
use crate::oauth::GrantError;
use crate::oauth::idp::{Grant, IdpError};
use crate::request::{ClientKind, RequestCtx};
use crate::session::Failure;
use crate::session::Miss;

/// Everything that can stop a request from being forwarded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- the client's request ---
    /// `/.auth/...` is reserved for the proxy's own endpoints.
    #[error("path reserved for the proxy")]
    ReservedPath,
    /// `/.hosts/{name}` names no configured sibling host.
    #[error("unknown sibling host {name}")]
    UnknownHost {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// The organization is not in `upstream.allowed_organizations`.
    #[error("organization {org} not allowed")]
    OrganizationNotAllowed {
        /// The organization asked for (lowercased).
        org: String,
        /// The allowlist.
        allowed: Vec<String>,
    },
    /// An allowlist is set and the path names no organization.
    #[error("organization required")]
    OrganizationRequired {
        /// The allowlist.
        allowed: Vec<String>,
    },
    /// The upstream URI could not be built from the request.
    #[error("bad request target: {0}")]
    BadTarget(String),
    /// The `Host` is not a name the proxy answers to (DNS rebinding).
    #[error("host {host:?} not allowed")]
    HostNotAllowed {
        /// What the client sent (at most 100 characters).
        host: String,
    },
    /// A browser request from another site.
    #[error("cross-site request refused: {why}")]
    CrossSite {
        /// Which signal said so.
        why: &'static str,
    },
    /// The path could mean another path to Azure DevOps' front end (why,
    /// in words).
    #[error("path refused: {0:?}")]
    BadPath(&'static str),

    // --- the upstream ---
    /// The upstream could not be reached or did not answer in time.
    #[error("upstream {upstream} ({target}) {}: {reason}", kind.as_str())]
    Upstream {
        /// Which upstream (`default` or a sibling host name).
        upstream: String,
        /// Its base URL.
        target: String,
        /// Connect, timeout or protocol.
        kind: UpstreamErrorKind,
        /// What went wrong, without secrets.
        reason: String,
    },

    // --- the identity ---
    /// No credential could be produced for the upstream request.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Mode `user`: the request has no live session.
    #[error("sign-in required ({reason:?})")]
    NeedsLogin {
        /// Where to sign in (absolute, with `rd`).
        login_url: String,
        /// Why there is no session.
        reason: Miss,
        /// `Set-Cookie` removing a dead session cookie.
        clear_cookie: Option<HeaderValue>,
    },
    /// A sign-in step failed.
    #[error(transparent)]
    Login(Box<LoginError>),
    /// The identity provider could not refresh a token that has expired.
    #[error("identity provider: {detail}")]
    ProviderFailed {
        /// The proxy's own registration or credential is wrong.
        operator: bool,
        /// Seconds until the next refresh attempt.
        retry_after: Option<u64>,
        /// What the provider said (no secrets).
        detail: String,
    },
    /// The session store could not be reached for a session this process
    /// does not hold, or for a new sign-in.
    #[error("session store: {0}")]
    StoreUnavailable(#[from] crate::session::backend::StoreError),
    /// Mode `service` has no valid token (the provider has not answered).
    #[error("no service token from {source_name}")]
    ServiceTokenUnavailable {
        /// The configured source.
        source_name: &'static str,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The caller is not admitted (address or shared secret).
    #[error("caller refused: {reason}")]
    CallerRefused {
        /// Why, in words for the caller.
        reason: &'static str,
    },
}

/// Why no credential could be produced.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The PAT file could not be read, or holds no usable token.
    #[error("personal access token unavailable: {0}")]
    PatUnavailable(String),
    /// Mode `user` could not be set up.
    #[error("{0}")]
    Login(String),
}

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

/// What a client is told.
struct Answer {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A link that helps (text, href), shown on HTML pages.
    action: Option<(&'static str, String)>,
}

impl Answer {
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            slug,
            title,
            detail,
            headers: Vec::new(),
            action: None,
        }
    }

    fn sign_in_again(mut self) -> Self {
        self.action = Some(("Sign in again", "/.auth/login".to_string()));
        self
    }
}

impl From<LoginError> for Error {
    fn from(e: LoginError) -> Self {
        Self::Login(Box::new(e))
    }
}

// === impl LoginError ===

impl LoginError {
    /// The catalog case of a provider's refusal at sign-in, if known.
    fn finding(&self, status: StatusCode) -> Option<Finding> {
        let (error, codes, description, mut ids, vars) = match self {
            Self::Denied {
                error,
                description,
                vars,
            } => (
                error.as_str(),
                Vec::new(),
                description.as_str(),
                Vec::new(),
                vars,
            ),
            Self::Redeem(GrantError::Token(IdpError::Rejected { body, .. }), vars) => {
                let ids: Vec<(String, String)> = [
                    ("Correlation ID", &body.correlation_id),
                    ("Trace ID", &body.trace_id),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
                .collect();
                (
                    body.error.as_str(),
                    body.error_codes.clone(),
                    body.error_description.as_deref().unwrap_or(""),
                    ids,
                    vars,
                )
            }
            _ => return None,
        };
        let entry = diagnose::recognise_sign_in(error, &codes, description)?;
        if ids.is_empty() {
            ids = diagnose::ids_in_description(description);
        }
        // The provider's own words, without the trailing id lines.
        let message = description
            .split(['\r', '\n'])
            .next()
            .filter(|m| !m.is_empty())
            .unwrap_or(error);
        Some(Finding {
            entry,
            status,
            message: Some(message.chars().take(500).collect()),
            type_key: None,
            original: None,
            said_by: "The sign-in provider",
            retry_after: None,
            ids,
            vars: vars.clone(),
        })
    }

    /// A fixed label for metrics.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed { .. } => "method",
            Self::BadReturnPath => "bad_return_path",
            Self::Provider(_) => "provider_unavailable",
            Self::MissingState => "missing_state",
            Self::UnknownState => "unknown_state",
            Self::Expired => "expired",
            Self::NotThisBrowser => "wrong_browser",
            Self::Denied { .. } => "provider_error",
            Self::MissingCode => "missing_code",
            Self::WrongIssuer => "wrong_issuer",
            Self::Redeem(GrantError::IdToken(_), _) => "id_token_invalid",
            Self::Redeem(..) => "code_redemption",
            Self::NotAllowed { .. } => "not_allowed",
            Self::NotSignedIn => "not_signed_in",
            Self::BadForm => "bad_form",
        }
    }

    fn answer(&self) -> Answer {
        use StatusCode as S;
        let a = |status, title, detail: &str| {
            Answer::new(status, self.slug(), title, detail.to_string())
        };
        match self {
            Self::MethodNotAllowed { allowed } => {
                let mut ans = a(S::METHOD_NOT_ALLOWED, "Method not allowed", &format!("This endpoint accepts {allowed}."));
                if let Ok(v) = HeaderValue::try_from(allowed.as_str()) {
                    ans.headers.push((header::ALLOW, v));
                }
                ans
            }
            Self::BadReturnPath => a(S::BAD_REQUEST, "Return address refused",
                "After signing in, the proxy only returns to a path on itself (such as /contoso/_apis/projects), never to another site."),
            Self::Provider(detail) => a(S::BAD_GATEWAY, "The sign-in provider could not be reached",
                &format!("{detail}. Try again shortly; if it persists, an administrator should check auth.issuer_url or auth.authority_host.")),
            Self::MissingState | Self::UnknownState => a(S::BAD_REQUEST, "This sign-in link is not valid",
                "The sign-in answer does not match a sign-in this proxy started, or it was already used. Start again.").sign_in_again(),
            Self::Expired => a(S::BAD_REQUEST, "The sign-in took too long",
                "The sign-in was started too long ago and has expired. Start again.").sign_in_again(),
            Self::NotThisBrowser => a(S::BAD_REQUEST, "The sign-in was started elsewhere",
                "The sign-in answer arrived without the cookie of the browser that started it (started in another browser, or cookies are blocked). Start again in this browser and allow cookies for this site.").sign_in_again(),
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
                a(status, "Sign-in was not completed", &text).sign_in_again()
            }
            Self::WrongIssuer => a(S::BAD_REQUEST, "The sign-in answer came from another provider",
                "The answer names an issuer other than the one this sign-in was started with, which is how a mix-up attack looks. Start again.").sign_in_again(),
            Self::MissingCode => a(S::BAD_REQUEST, "The sign-in answer is incomplete",
                "The provider's answer carried no authorization code. Start again.").sign_in_again(),
            Self::Redeem(e, _) => redeem_answer(e, self.slug()),
            Self::NotAllowed { reason } => a(S::FORBIDDEN, "You may not use this proxy",
                &format!("You signed in successfully, but {reason}. Ask the proxy's administrator for access (auth.allowed_tenants, auth.allowed_users, auth.allowed_email_domains).")),
            Self::NotSignedIn => a(S::UNAUTHORIZED, "Not signed in",
                "There is no session for this request. Sign in at /.auth/login.").sign_in_again(),
            Self::BadForm => a(S::BAD_REQUEST, "Unreadable sign-in answer",
                "The provider's form could not be read.").sign_in_again(),
        }
    }
}

fn redeem_answer(e: &GrantError, slug: &'static str) -> Answer {
    use StatusCode as S;
    match e {
        GrantError::Token(idp) => match idp.classify(Grant::Code) {
            Failure::Relogin { .. } => Answer::new(S::BAD_REQUEST, slug, "The sign-in code was refused",
                format!("The provider refused the sign-in code ({idp}). A code works once and only with the browser session that asked for it. Start again.")).sign_in_again(),
            Failure::Operator { .. } => Answer::new(S::BAD_GATEWAY, slug, "The proxy's sign-in configuration is broken",
                format!("The provider refused the proxy's own credentials ({idp}). This is not your fault: an administrator must fix auth.client_id, the tenant, the redirect URI registration or the client secret/certificate.")),
            Failure::Transient { .. } => {
                let mut ans = Answer::new(S::SERVICE_UNAVAILABLE, slug, "The sign-in provider is not answering",
                    format!("Redeeming the sign-in code failed ({idp}). Try again in a moment.")).sign_in_again();
                ans.headers.push((header::RETRY_AFTER, HeaderValue::from_static("5")));
                ans
            }
        },
        GrantError::IdToken(crate::oauth::id_token::IdTokenError::Keys(idp)) => Answer::new(S::SERVICE_UNAVAILABLE, slug,
            "The sign-in provider is not answering", format!("Its signing keys could not be read ({idp}). Try again in a moment.")).sign_in_again(),
        GrantError::IdToken(e) => Answer::new(S::BAD_REQUEST, slug, "The sign-in answer could not be verified",
            format!("{e}. Start again; if it persists, the provider or the proxy's clock is misconfigured.")).sign_in_again(),
        GrantError::Metadata(idp) => Answer::new(S::BAD_GATEWAY, slug, "The sign-in provider answered badly",
            format!("Reading the provider's metadata or the user's profile failed ({idp}).")).sign_in_again(),
        GrantError::Local(detail) => Answer::new(S::INTERNAL_SERVER_ERROR, slug, "The proxy could not complete the sign-in",
            format!("{detail}.")),
    }
}

// === impl Error ===

impl Error {
    /// The `ado_proxy_requests_refused_total` reason, for a request
    /// refused before anything was forwarded.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        match self {
            Self::BadPath(_) | Self::BadTarget(_) => Some("bad_path"),
            Self::HostNotAllowed { .. } => Some("host"),
            Self::CrossSite { .. } => Some("cross_site"),
            Self::OrganizationNotAllowed { .. } | Self::OrganizationRequired { .. } => {
                Some("organization")
            }
            Self::CallerRefused { .. } => Some("caller"),
            _ => None,
        }
    }

    fn answer(&self, ctx: &RequestCtx) -> Answer {
        match self {
            Self::ReservedPath => Answer::new(
                StatusCode::NOT_FOUND,
                "reserved-path",
                "Not found",
                format!(
                    "{} belongs to the proxy's own endpoints and is not forwarded to Azure DevOps.",
                    ctx.path()
                ),
            ),
            Self::UnknownHost { name, known } => Answer::new(
                StatusCode::NOT_FOUND,
                "unknown-host",
                "Unknown Azure DevOps host",
                format!(
                    "/.hosts/{name}/ names no configured host. Known hosts: {}. Add it under [upstream.hosts] to reach it.",
                    known.join(", ")
                ),
            ),
            Self::OrganizationNotAllowed { org, allowed } => Answer::new(
                StatusCode::FORBIDDEN,
                "organization-not-allowed",
                "Organization not allowed",
                format!(
                    "This proxy only serves the organizations {}; \"{org}\" is not one of them. An operator can add it to upstream.allowed_organizations.",
                    allowed.join(", ")
                ),
            ),
            Self::OrganizationRequired { allowed } => Answer::new(
                StatusCode::FORBIDDEN,
                "organization-required",
                "Organization required",
                format!(
                    "This proxy only serves the organizations {}; start the path with one of them, e.g. /{}/_apis/projects.",
                    allowed.join(", "),
                    allowed.first().map(String::as_str).unwrap_or("contoso")
                ),
            ),
            Self::HostNotAllowed { host } => Answer::new(
                StatusCode::MISDIRECTED_REQUEST,
                "host-not-allowed",
                "This proxy does not answer to that name",
                format!(
                    "The request was addressed to \"{host}\", which is not a name of this proxy. It answers to the host of listen.public_url, localhost and IP addresses, and to the names in listen.allowed_hosts; an operator can add a name there (a Kubernetes Service name, a DNS alias). Any other name is refused because a web page can point its own name at the proxy (DNS rebinding) and would otherwise act with the proxy's credential."
                ),
            ),
            Self::CrossSite { why } => Answer::new(
                StatusCode::FORBIDDEN,
                "cross-site-request",
                "Requests from other sites are refused",
                format!(
                    "This request came from a web page of another site ({why}). The proxy attaches its own credential to what it forwards, so it only serves pages of its own origin and programs that are not browsers. Open the page from the proxy itself, or call it from a program."
                ),
            ),
            Self::BadPath(why) => Answer::new(
                StatusCode::BAD_REQUEST,
                "bad-path",
                "Path refused",
                format!(
                    "The proxy does not forward this path: {}. A path is only forwarded when Azure DevOps reads it exactly as the proxy does, so that it cannot leave the organization it names.",
                    why
                ),
            ),
            Self::BadTarget(reason) => Answer::new(
                StatusCode::BAD_REQUEST,
                "bad-target",
                "Bad request target",
                format!("The request path cannot be forwarded: {reason}."),
            ),
            Self::Upstream {
                upstream,
                target,
                kind,
                reason,
            } => Answer::new(
                match kind {
                    UpstreamErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                },
                match kind {
                    UpstreamErrorKind::Connect => "upstream-unreachable",
                    UpstreamErrorKind::Timeout => "upstream-timeout",
                    UpstreamErrorKind::Protocol => "upstream-failed",
                },
                match kind {
                    UpstreamErrorKind::Connect => "Azure DevOps could not be reached",
                    UpstreamErrorKind::Timeout => "Azure DevOps did not answer in time",
                    UpstreamErrorKind::Protocol => "The connection to Azure DevOps failed",
                },
                format!("Upstream {upstream} ({target}): {reason}."),
            ),
            Self::Identity(e) => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no-credential",
                "The proxy has no usable credential",
                format!("{e}. An operator must fix the [auth] configuration."),
            ),
            Self::NeedsLogin {
                login_url,
                reason,
                clear_cookie,
            } => {
                let why = match reason {
                    Miss::NoCookie => "You are not signed in.",
                    Miss::Unknown => {
                        "Your session is not known to the proxy (it restarted, or the cookie is not valid)."
                    }
                    Miss::Idle => "Your session ended after a period without use.",
                    Miss::Expired => "Your session has ended.",
                };
                let mut ans = Answer::new(
                    StatusCode::UNAUTHORIZED,
                    "sign-in-required",
                    "Sign-in required",
                    format!("{why} Sign in at {login_url} in a browser, then try again."),
                );
                if ctx.client == ClientKind::Git {
                    // git answers a 401 by prompting for a user name and
                    // hides the body; it prints a 403's text as `remote:`
                    // lines, which is how the user learns where to sign in.
                    ans.status = StatusCode::FORBIDDEN;
                } else {
                    ans.headers.push((
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"ado-auth-proxy\""),
                    ));
                }
                if let Some(c) = clear_cookie {
                    ans.headers.push((header::SET_COOKIE, c.clone()));
                }
                ans.action = Some(("Sign in", login_url.clone()));
                ans
            }
            Self::Login(e) => e.answer(),
            Self::ProviderFailed {
                operator: true,
                detail,
                retry_after,
            } => {
                let mut ans = Answer::new(
                    StatusCode::BAD_GATEWAY,
                    "provider-configuration",
                    "The proxy's sign-in configuration is broken",
                    format!(
                        "Your access token expired and the identity provider refused the proxy's own credentials ({detail}). This is not your fault: an administrator must fix the client secret or certificate, auth.client_id or the tenant. Your session is kept."
                    ),
                );
                if let Some(secs) = retry_after {
                    ans.headers
                        .push((header::RETRY_AFTER, HeaderValue::from(*secs)));
                }
                ans
            }
            Self::ProviderFailed {
                retry_after,
                detail,
                ..
            } => {
                let mut ans = Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "provider-unavailable",
                    "The identity provider is not answering",
                    format!(
                        "Your access token expired and refreshing it failed ({detail}). Your session is kept; try again shortly."
                    ),
                );
                if let Some(secs) = retry_after {
                    ans.headers
                        .push((header::RETRY_AFTER, HeaderValue::from(*secs)));
                }
                ans
            }
            Self::ServiceTokenUnavailable {
                source_name,
                retry_after,
            } => {
                let mut ans = Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service-token-unavailable",
                    "The proxy has no token for its service identity",
                    format!(
                        "The proxy acts as a fixed identity (auth.source = \"{source_name}\") and could not get a token for it from the identity provider. Try again shortly. An administrator can see why in the proxy's log (\"service token\") and in ado_proxy_service_token_refresh_failures_total; /.auth/me shows the identity in use."
                    ),
                );
                ans.headers
                    .push((header::RETRY_AFTER, HeaderValue::from(*retry_after)));
                ans
            }
            Self::CallerRefused { reason } => Answer::new(
                StatusCode::FORBIDDEN,
                "caller-not-allowed",
                "This proxy does not accept requests from you",
                format!(
                    "The proxy acts as a fixed identity, so it only serves callers it was told to trust: {reason}. If you should be allowed, ask the administrator to add your address to auth.allowed_client_cidrs or to give you the caller secret."
                ),
            ),
            Self::StoreUnavailable(e) => {
                let mut ans = Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "session-store-unavailable",
                    "The proxy cannot reach its session store",
                    format!(
                        "Signing in, or resuming a session this proxy instance has not seen yet, needs the session store, and it is not answering ({e}). Sessions already in use here keep working. Try again in a few seconds; if it persists, an administrator must check the store (session.store, session.redis_url, or the disk holding session.path). The admin /readyz endpoint reports not ready meanwhile."
                    ),
                );
                ans.headers
                    .push((header::RETRY_AFTER, HeaderValue::from_static("5")));
                ans
            }
        }
    }
}

/// Turns `err` into the response the client gets, and logs it once.
pub fn into_response(err: &Error, ctx: &RequestCtx) -> Response<ProxyBody> {
    // A browser without a session is sent to sign in, not shown an error.
    if let (
        Error::NeedsLogin {
            login_url,
            clear_cookie,
            ..
        },
        ClientKind::Browser,
    ) = (err, ctx.client)
    {
        let mut resp = Response::new(ProxyBody::empty());
        *resp.status_mut() = StatusCode::FOUND;
        if let Ok(v) = HeaderValue::try_from(login_url.as_str()) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        if let Some(c) = clear_cookie {
            resp.headers_mut().append(header::SET_COOKIE, c.clone());
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return resp;
    }
    let answer = err.answer(ctx);
    // A refresh refused for the proxy's own credential: the catalog case,
    // with the upstream-style Retry-After kept.
    if let Error::ProviderFailed {
        operator: true,
        detail,
        retry_after,
    } = err
    {
        let codes = diagnose::aadsts_codes(detail);
        if let Some(entry) = diagnose::recognise_sign_in("invalid_client", &codes, "") {
            tracing::warn!(request_id = %ctx.request_id_str(), error = %err, "request failed");
            let finding = Finding {
                entry,
                status: answer.status,
                message: Some(detail.clone()),
                type_key: None,
                original: None,
                said_by: "The sign-in provider",
                retry_after: retry_after.map(|r| r.to_string()),
                ids: Vec::new(),
                vars: Vars::default(),
            };
            let mut headers = http::HeaderMap::new();
            for (name, value) in answer.headers {
                headers.append(name, value);
            }
            return diagnose::render::response(&finding, ctx, answer.status, headers)
                .map(ProxyBody::full);
        }
    }
    if let Error::Login(login) = err
        && let Some(finding) = login.finding(answer.status)
    {
        tracing::info!(
            request_id = %ctx.request_id_str(),
            diagnosis = finding.entry.id,
            error = %err,
            "sign-in refused by the provider"
        );
        return diagnose::render::response(&finding, ctx, answer.status, http::HeaderMap::new())
            .map(ProxyBody::full);
    }
    if answer.status.is_server_error() {
        tracing::warn!(request_id = %ctx.request_id_str(), error = %err, "request failed");
    } else {
        tracing::debug!(request_id = %ctx.request_id_str(), error = %err, "request refused");
    }
    let (content_type, body) = match ctx.client {
        ClientKind::Git => (
            "text/plain; charset=utf-8",
            format!(
                "ado-auth-proxy: {}\n{}\nrequest id: {}\n",
                answer.title,
                answer.detail,
                ctx.request_id_str()
            ),
        ),
        ClientKind::Browser => (
            "text/html; charset=utf-8",
            crate::page::render(
                answer.title,
                &[&answer.detail],
                answer.action.as_ref().map(|(t, h)| (*t, h.as_str())),
                &[("Request id", ctx.request_id_str())],
            ),
        ),
        ClientKind::Program => {
            let mut problem = json!({
                "type": format!("urn:ado-auth-proxy:problem:{}", answer.slug),
                "title": answer.title,
                "status": answer.status.as_u16(),
                "detail": answer.detail,
                "requestId": ctx.request_id_str(),
            });
            if let Error::NeedsLogin { login_url, .. } = err {
                problem["loginUrl"] = json!(login_url);
            }
            ("application/problem+json", problem.to_string())
        }
    };
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = answer.status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in answer.headers {
        resp.headers_mut().append(name, value);
    }
    resp
}
