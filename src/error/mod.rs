//! The proxy's error type and the one place errors become responses.
//!
//! Variants are grouped by where the failure came from: the client's
//! request ([`Refusal`]), the upstream, the identity, a sign-in step
//! ([`LoginError`]). Each becomes an [`Answer`] here, and
//! [`into_response`] is the only place a failure becomes a response
//! (`crate::answer` picks the client's language).

mod login;
mod personal;
mod refusal;

pub use login::LoginError;

pub use personal::{BASIC_CHALLENGE, TokenError};
pub use refusal::Refusal;

use http::{HeaderValue, Response, StatusCode, header};

use crate::answer::Answer;
use crate::body::ProxyBody;
use crate::diagnose::{self, TokenPath, Vars};
use crate::metrics::UpstreamErrorKind;
use crate::request::{ClientKind, RequestCtx};
use crate::session::Miss;

/// Everything that can stop a request from being forwarded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is refused (path, host, origin, caller).
    #[error(transparent)]
    Refused(#[from] Refusal),

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

    /// An upgrade (WebSocket) while `listen.max_tunnels` tunnels are
    /// open, or after shutdown began.
    #[error("no room for another tunnel")]
    TunnelsFull {
        /// `listen.max_tunnels`.
        max: usize,
        /// The proxy is shutting down.
        stopping: bool,
    },

    /// An upstream answer the proxy must rewrite before a client may see
    /// it could not be rewritten (it fails closed).
    #[error("{what} not rewritable: {reason}")]
    NotRewritable {
        /// Which answer.
        what: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// `listen.max_requests` requests are in flight already.
    #[error("{max} requests in flight")]
    Busy {
        /// `listen.max_requests`.
        max: usize,
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
        /// Where programs get a personal proxy token, when they may.
        tokens_url: Option<String>,
    },
    /// A sign-in step failed.
    #[error(transparent)]
    Login(Box<LoginError>),
    /// A personal proxy token was refused, or a token request failed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The identity provider could not refresh a token that has expired.
    #[error("identity provider: {detail}")]
    ProviderFailed {
        /// The proxy's own registration or credential is wrong.
        operator: bool,
        /// Seconds until the next refresh attempt.
        retry_after: Option<u64>,
        /// What the provider said (no secrets).
        detail: String,
        /// Its error body, when it refused with one.
        said: Option<Box<diagnose::ProviderSaid>>,
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
        /// Why the last acquisitions failed, if they did.
        failure: Option<std::sync::Arc<diagnose::ServiceFailure>>,
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

impl From<LoginError> for Error {
    fn from(e: LoginError) -> Self {
        Self::Login(Box::new(e))
    }
}

// === impl Error ===

impl Error {
    /// The `ado_proxy_requests_refused_total` reason, for a request
    /// refused before anything was forwarded.
    pub fn refusal_reason(&self) -> Option<crate::metrics::RefusalReason> {
        match self {
            Self::Refused(r) => r.reason(),
            Self::Busy { .. } => Some(crate::metrics::RefusalReason::Busy),
            _ => None,
        }
    }

    /// The catalog's answer, when the failure is a case it knows: a
    /// provider's refusal at sign-in, or of the proxy's own credential
    /// at a refresh (with its `Retry-After` kept).
    fn diagnosed(&self) -> Option<Answer> {
        match self {
            Self::ProviderFailed {
                operator: true,
                detail,
                retry_after,
                said,
            } => {
                let said = match said {
                    Some(said) => (**said).clone(),
                    // No error body: the codes in the proxy's account.
                    None => diagnose::ProviderSaid {
                        error: "invalid_client".into(),
                        description: detail.clone(),
                        ..diagnose::ProviderSaid::default()
                    },
                };
                let finding =
                    said.finding(TokenPath::SignIn, StatusCode::BAD_GATEWAY, Vars::default())?;
                let answer = finding.into_answer();
                Some(match retry_after {
                    Some(secs) => answer.retry_after(*secs),
                    None => answer,
                })
            }
            Self::Login(login) => {
                let status = login.answer().status;
                Some(login.finding(status)?.into_answer())
            }
            // Callers of a service-mode proxy act as its identity: they
            // are told the provider's code, the cause and who fixes it.
            Self::ServiceTokenUnavailable {
                failure: Some(failure),
                retry_after,
                ..
            } => {
                let answer = failure.finding()?.into_answer();
                Some(if failure.retryable {
                    answer.retry_after(*retry_after)
                } else {
                    answer
                })
            }
            _ => None,
        }
    }

    fn answer(&self, ctx: &RequestCtx) -> Answer {
        match self {
            Self::Refused(r) => r.answer(ctx),
            Self::Upstream {
                upstream,
                target,
                kind,
                reason,
            } => upstream_answer(upstream, target, *kind, reason),
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
                tokens_url,
            } => needs_login_answer(
                login_url,
                *reason,
                clear_cookie.as_ref(),
                tokens_url.as_deref(),
            ),
            Self::Login(e) => e.answer(),
            Self::Token(e) => e.answer(),
            Self::ProviderFailed {
                operator,
                detail,
                retry_after,
                ..
            } => provider_failed_answer(*operator, detail, *retry_after),
            Self::ServiceTokenUnavailable {
                source_name,
                retry_after,
                failure,
            } => service_token_answer(source_name, *retry_after, failure.as_deref()),
            Self::TunnelsFull { max, stopping } => tunnels_full_answer(*max, *stopping),
            Self::NotRewritable { what, reason } => Answer::new(
                StatusCode::BAD_GATEWAY,
                "answer-not-rewritable",
                "Azure DevOps' answer could not be passed on safely",
                format!(
                    "Azure DevOps answered this request with a {what} that the proxy must rewrite before passing it on (it carries URLs and credentials meant for the proxy), and {reason}, so it was not passed on. The answer's size grows with the objects asked for at once: ask for fewer (git-lfs 3.3 and later: git config lfs.transfer.batchSize 50) and try again."
                ),
            ),
            Self::Busy { max } => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "proxy-busy",
                "The proxy is serving as many requests as it may",
                format!(
                    "{max} requests are in flight through this proxy (listen.max_requests), so this one was not forwarded. Try again in a moment; if it happens under normal load, an administrator can raise listen.max_requests (each request in flight may hold one upstream connection, so keep it within the process's file-descriptor limit) or run more replicas."
                ),
            )
            .retry_after(1),
            Self::StoreUnavailable(e) => {
                let ans = Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "session-store-unavailable",
                    "The proxy cannot reach its session store",
                    format!(
                        "Signing in, or resuming a session this proxy instance has not seen yet, needs the session store, and it is not answering ({e}). Sessions already in use here keep working. Try again in a few seconds; if it persists, an administrator must check the store (session.store, session.redis_url, or the disk holding session.path). The admin /readyz endpoint reports not ready meanwhile."
                    ),
                );
                ans.retry_after(5)
            }
        }
    }
}

/// No service token, and no provider's refusal to explain: the provider
/// was unreachable or gave no usable answer (503 and `Retry-After`), or
/// a refusal without an OAuth body that only an operator can fix (502).
fn service_token_answer(
    source_name: &str,
    retry_after: u64,
    failure: Option<&diagnose::ServiceFailure>,
) -> Answer {
    let retryable = failure.is_none_or(|f| f.retryable);
    let (status, next) = if retryable {
        (StatusCode::SERVICE_UNAVAILABLE, "Try again shortly.")
    } else {
        (
            StatusCode::BAD_GATEWAY,
            "Retrying does not help until an operator fixes it.",
        )
    };
    let last = failure
        .map(|f| format!(" The last attempt: {}.", f.detail.trim_end_matches('.')))
        .unwrap_or_default();
    let ans = Answer::new(
        status,
        "service-token-unavailable",
        "The proxy has no token for its service identity",
        format!(
            "The proxy acts as a fixed identity (auth.source = \"{source_name}\") and could not get a token for it from the identity provider.{last} {next} An administrator can see more in the proxy's log (\"service token\"), in /.auth/me (lastFailure) and in ado_proxy_service_token_failing_since_timestamp_seconds."
        ),
    );
    if retryable {
        ans.retry_after(retry_after)
    } else {
        ans
    }
}

/// An upgrade that cannot be tunnelled now.
fn tunnels_full_answer(max: usize, stopping: bool) -> Answer {
    let cause = if stopping {
        "The proxy is shutting down and opens no new WebSocket or upgraded connection; connect \
         again and another instance will serve you."
            .to_string()
    } else {
        format!(
            "The proxy already carries {max} WebSocket or upgraded connections, as many as \
             listen.max_tunnels allows. Try again shortly; an operator can raise \
             listen.max_tunnels."
        )
    };
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "tunnels-full",
        "No room for another WebSocket",
        cause,
    )
    .retry_after(1)
}

/// A refresh failed: the proxy's own credentials (`operator`) or the
/// provider being unavailable.
fn provider_failed_answer(operator: bool, detail: &str, retry_after: Option<u64>) -> Answer {
    let ans = if operator {
        Answer::new(
            StatusCode::BAD_GATEWAY,
            "provider-configuration",
            "The proxy's sign-in configuration is broken",
            format!(
                "Your access token expired and the identity provider refused the proxy's own credentials ({detail}). This is not your fault: an administrator must fix the client secret or certificate, auth.client_id or the tenant. Your session is kept."
            ),
        )
    } else {
        Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider-unavailable",
            "The identity provider is not answering",
            format!(
                "Your access token expired and refreshing it failed ({detail}). Your session is kept; try again shortly."
            ),
        )
    };
    match retry_after {
        Some(secs) => ans.retry_after(secs),
        None => ans,
    }
}

fn upstream_answer(upstream: &str, target: &str, kind: UpstreamErrorKind, reason: &str) -> Answer {
    let (status, id, title) = match kind {
        UpstreamErrorKind::Connect => (
            StatusCode::BAD_GATEWAY,
            "upstream-unreachable",
            "Azure DevOps could not be reached",
        ),
        UpstreamErrorKind::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream-timeout",
            "Azure DevOps did not answer in time",
        ),
        UpstreamErrorKind::Protocol => (
            StatusCode::BAD_GATEWAY,
            "upstream-failed",
            "The connection to Azure DevOps failed",
        ),
        UpstreamErrorKind::EgressAuth => (
            StatusCode::BAD_GATEWAY,
            "egress-proxy-credentials",
            "The egress proxy asks for credentials",
        ),
        UpstreamErrorKind::EgressRefused => (
            StatusCode::BAD_GATEWAY,
            "egress-proxy-refused",
            "The egress proxy refused the connection",
        ),
        UpstreamErrorKind::EgressFailed => (
            StatusCode::BAD_GATEWAY,
            "egress-proxy-failed",
            "The egress proxy could not be used",
        ),
    };
    let fix = match kind {
        UpstreamErrorKind::EgressAuth => {
            " The proxy needs a user and password for it: put \"user:password\" in the file \
             named by upstream.egress_proxy_credentials_file (or write them in HTTPS_PROXY as \
             http://user:password@host:port). If they are there already, the egress proxy did \
             not accept them."
        }
        UpstreamErrorKind::EgressRefused => {
            " Its rules do not let this proxy reach that host: ask the egress proxy's operators \
             to allow it, or, if the host is reachable directly, name it in upstream.no_proxy \
             (or NO_PROXY)."
        }
        UpstreamErrorKind::EgressFailed => {
            " Check the egress proxy's address (upstream.egress_proxy or HTTPS_PROXY; the \
             proxy logs the one in use at start-up) and that it is running."
        }
        _ => "",
    };
    Answer::new(
        status,
        id,
        title,
        format!("Upstream {upstream} ({target}): {reason}.{fix}"),
    )
}

fn needs_login_answer(
    login_url: &str,
    reason: Miss,
    clear_cookie: Option<&HeaderValue>,
    tokens_url: Option<&str>,
) -> Answer {
    let why = match reason {
        Miss::NoCookie => "You are not signed in.",
        Miss::Unknown => {
            "Your session is not known to the proxy (it restarted, or the cookie is not valid)."
        }
        Miss::Idle => "Your session ended after a period without use.",
        Miss::Expired => "Your session has ended.",
    };
    let detail = match tokens_url {
        Some(tokens) => format!(
            "{why} Programs (git, curl, package managers) use a personal proxy token: sign in at \
             {login_url} in a browser, create one at {tokens}, and send it as the password of \
             HTTP Basic (any user name; git's credential helper asks for it) or as \
             Authorization: Bearer."
        ),
        None => format!("{why} Sign in at {login_url} in a browser, then try again."),
    };
    let mut ans = Answer::new(
        StatusCode::UNAUTHORIZED,
        "sign-in-required",
        "Sign-in required",
        detail,
    );
    match tokens_url {
        // git answers a Basic challenge with its credential helper or a
        // prompt, where the token goes.
        Some(_) => {
            ans.headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BASIC_CHALLENGE),
            );
            ans.headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ado-auth-proxy\""),
            );
        }
        None => {
            // The proxy signs requests in: git gets a 403 it prints.
            ans.proxy_credential = true;
            ans.headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ado-auth-proxy\""),
            );
        }
    }
    if let Some(c) = clear_cookie {
        ans.headers.append(header::SET_COOKIE, c.clone());
    }
    ans.login_url = Some(login_url.to_string());
    ans.action = Some(("Sign in", login_url.to_string()));
    ans
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
        return redirect_to_sign_in(login_url, clear_cookie.as_ref());
    }
    let answer = match err.diagnosed() {
        Some(answer) => {
            tracing::info!(
                request_id = %ctx.request_id_str(),
                diagnosis = answer.id,
                error = %err,
                "refused by the sign-in provider"
            );
            answer
        }
        None => err.answer(ctx),
    };
    if answer.status.is_server_error() {
        tracing::warn!(request_id = %ctx.request_id_str(), error = %err, "request failed");
    } else {
        tracing::debug!(request_id = %ctx.request_id_str(), error = %err, "request refused");
    }
    answer.into_response(ctx).map(ProxyBody::full)
}

fn redirect_to_sign_in(login_url: &str, clear_cookie: Option<&HeaderValue>) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::try_from(login_url) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = clear_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod ids {
    /// Every id of the proxy's own answers (the catalog's are in
    /// `diagnose::CATALOG`), in the order of docs/errors.md's table.
    const OWN_IDS: &[&str] = &[
        "reserved-path",
        "unknown-host",
        "organization-not-allowed",
        "organization-required",
        "host-not-allowed",
        "bad-host",
        "cross-site-request",
        "bad-path",
        "bad-target",
        "upgrade-not-allowed",
        "caller-not-allowed",
        "proxy-token-refused",
        "sign-in-required",
        "token-request-invalid",
        "client-token-refused",
        "token-not-found",
        "too-many-tokens",
        "pat-api-unavailable",
        "no-credential",
        "answer-not-rewritable",
        "proxy-busy",
        "session-store-unavailable",
        "service-token-unavailable",
        "tunnels-full",
        "provider-configuration",
        "provider-unavailable",
        "upstream-unreachable",
        "upstream-timeout",
        "upstream-failed",
        "egress-proxy-credentials",
        "egress-proxy-refused",
        "egress-proxy-failed",
        "method-not-allowed",
        "bad-return-path",
        "sign-in-provider-unavailable",
        "missing-state",
        "unknown-state",
        "sign-in-timed-out",
        "wrong-browser",
        "provider-error",
        "missing-code",
        "wrong-issuer",
        "id-token-invalid",
        "code-redemption-failed",
        "user-not-allowed",
        "not-signed-in",
        "bad-form",
    ];

    /// The kebab-case literals of the error sources: the ids they write.
    fn written() -> Vec<String> {
        let sources = [
            include_str!("mod.rs"),
            include_str!("refusal.rs"),
            include_str!("personal.rs"),
            include_str!("login.rs"),
        ];
        let mut out = Vec::new();
        for src in sources {
            let code = src.split("#[cfg(test)]").next().unwrap_or(src);
            for lit in code.split('"').skip(1).step_by(2) {
                let kebab = lit.contains('-')
                    && lit
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                // Cache-Control's value is no id.
                if kebab && lit != "no-store" && !out.iter().any(|o| o == lit) {
                    out.push(lit.to_string());
                }
            }
        }
        out
    }

    #[test]
    fn every_id_written_is_listed_once_and_apart_from_the_catalog() {
        for id in written() {
            assert!(OWN_IDS.contains(&id.as_str()), "{id} is not in OWN_IDS");
        }
        for (i, id) in OWN_IDS.iter().enumerate() {
            assert!(!OWN_IDS[..i].contains(id), "{id} twice");
            assert!(
                crate::diagnose::CATALOG.iter().all(|e| e.id != *id),
                "{id} is also a catalog entry"
            );
        }
    }

    #[test]
    fn every_own_id_is_documented_in_order() {
        let doc = include_str!("../../docs/errors.md");
        let table = doc
            .split("## The proxy's own answers")
            .nth(1)
            .expect("docs/errors.md has the own answers' section");
        let documented: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        assert_eq!(documented, OWN_IDS);
    }
}
