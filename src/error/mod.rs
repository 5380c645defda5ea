//! The proxy's error type and the one place errors become responses.
//!
//! Variants are grouped by where the failure came from: the client's
//! request ([`Refusal`]), the upstream, the identity, a sign-in step
//! ([`LoginError`]). Each becomes an [`Answer`] here, and
//! [`into_response`] is the only place a failure becomes a response
//! (`crate::answer` picks the client's language).

mod login;
pub mod own;
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
            Self::Identity(e) => own::answer("no-credential", &[("error", &e.to_string())]),
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
            Self::NotRewritable { what, reason } => own::answer(
                "answer-not-rewritable",
                &[("what", what), ("reason", reason)],
            ),
            Self::Busy { max } => {
                own::answer("proxy-busy", &[("max", &max.to_string())]).retry_after(1)
            }
            Self::StoreUnavailable(e) => {
                own::answer("session-store-unavailable", &[("error", &e.to_string())])
                    .retry_after(5)
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
    let last = failure
        .map(|f| format!(" The last attempt: {}.", f.detail.trim_end_matches('.')))
        .unwrap_or_default();
    let key = match retryable {
        true => "service-token-unavailable",
        false => "service-token-unavailable/permanent",
    };
    let ans = own::answer(key, &[("source", source_name), ("last", &last)]);
    if retryable {
        ans.retry_after(retry_after)
    } else {
        ans
    }
}

/// An upgrade that cannot be tunnelled now.
fn tunnels_full_answer(max: usize, stopping: bool) -> Answer {
    match stopping {
        true => own::answer("tunnels-full/stopping", &[]),
        false => own::answer("tunnels-full", &[("max", &max.to_string())]),
    }
    .retry_after(1)
}

/// A refresh failed: the proxy's own credentials (`operator`) or the
/// provider being unavailable.
fn provider_failed_answer(operator: bool, detail: &str, retry_after: Option<u64>) -> Answer {
    let key = match operator {
        true => "provider-configuration",
        false => "provider-unavailable",
    };
    let ans = own::answer(key, &[("detail", detail)]);
    match retry_after {
        Some(secs) => ans.retry_after(secs),
        None => ans,
    }
}

fn upstream_answer(upstream: &str, target: &str, kind: UpstreamErrorKind, reason: &str) -> Answer {
    let key = match kind {
        UpstreamErrorKind::Connect => "upstream-unreachable",
        UpstreamErrorKind::Timeout => "upstream-timeout",
        UpstreamErrorKind::Protocol => "upstream-failed",
        UpstreamErrorKind::EgressAuth => "egress-proxy-credentials",
        UpstreamErrorKind::EgressRefused => "egress-proxy-refused",
        UpstreamErrorKind::EgressFailed => "egress-proxy-failed",
    };
    own::answer(
        key,
        &[
            ("upstream", upstream),
            ("target", target),
            ("reason", reason),
        ],
    )
}

fn needs_login_answer(
    login_url: &str,
    reason: Miss,
    clear_cookie: Option<&HeaderValue>,
    tokens_url: Option<&str>,
) -> Answer {
    let why = own::no_session(reason);
    let mut ans = match tokens_url {
        Some(tokens) => own::answer(
            "sign-in-required/tokens",
            &[
                ("why", why),
                ("login_url", login_url),
                ("tokens_url", tokens),
            ],
        ),
        None => own::answer(
            "sign-in-required",
            &[("why", why), ("login_url", login_url)],
        ),
    };
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
    use super::own::{OWN, answer, id_of};
    use http::StatusCode as S;

    /// Every id of the proxy's own answers (the catalog's are in
    /// `diagnose::CATALOG`), in the order of `own::OWN`.
    fn own_ids() -> Vec<&'static str> {
        let mut ids: Vec<&str> = Vec::new();
        for e in OWN {
            let id = id_of(e.key);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The error sources without their tests.
    fn sources() -> Vec<&'static str> {
        [
            include_str!("mod.rs"),
            include_str!("refusal.rs"),
            include_str!("personal.rs"),
            include_str!("login.rs"),
        ]
        .into_iter()
        .map(|src| src.split("#[cfg(test)]").next().unwrap_or(src))
        .collect()
    }

    /// The kebab-case literals of the error sources (with a variant
    /// after a `/`): the ids and keys they write.
    fn written() -> Vec<String> {
        let mut out = Vec::new();
        for code in sources() {
            for lit in code.split('"').skip(1).step_by(2) {
                let kebab = lit.contains('-')
                    && lit.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '/'
                    });
                // Cache-Control's value is no id.
                if kebab && lit != "no-store" && !out.iter().any(|o| o == lit) {
                    out.push(lit.to_string());
                }
            }
        }
        out
    }

    #[test]
    fn every_key_written_is_an_own_answer_apart_from_the_catalog() {
        for key in written() {
            assert!(
                OWN.iter().any(|e| e.key == key || id_of(e.key) == key),
                "{key} is not an entry or id of own::OWN"
            );
        }
        for id in own_ids() {
            assert!(
                crate::diagnose::CATALOG.iter().all(|e| e.id != id),
                "{id} is also a catalog entry"
            );
        }
        // And every entry is written somewhere.
        let written = written();
        for e in OWN {
            assert!(
                written.iter().any(|w| w == e.key),
                "{} is never written",
                e.key
            );
        }
    }

    #[test]
    fn every_literal_given_to_answer_is_an_exact_key() {
        let mut seen = 0;
        for code in sources() {
            for after in code.split("answer(").skip(1) {
                let Some(rest) = after.trim_start().strip_prefix('"') else {
                    continue;
                };
                let key = rest.split('"').next().unwrap_or_default();
                assert!(
                    OWN.iter().any(|e| e.key == key),
                    "answer({key:?}) names no entry (an id with variants needs one)"
                );
                seen += 1;
            }
        }
        assert!(seen > 20, "the scan found {seen} calls");
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
        assert_eq!(documented, own_ids());
    }

    #[test]
    fn keys_are_unique_and_an_ids_variants_stand_together() {
        for (i, e) in OWN.iter().enumerate() {
            assert!(OWN[..i].iter().all(|o| o.key != e.key), "{} twice", e.key);
            // One id's entries stand together: the ids' order is the
            // docs' table's.
            let id = id_of(e.key);
            let first = OWN.iter().position(|o| id_of(o.key) == id).unwrap();
            assert!(
                OWN[first..=i].iter().all(|o| id_of(o.key) == id),
                "{}: apart from the other entries of {id}",
                e.key
            );
        }
    }

    #[test]
    fn a_value_that_looks_like_a_placeholder_stays_as_it_is() {
        let a = answer("reserved-path", &[("path", "/.auth/{path}")]);
        assert!(a.cause.starts_with("/.auth/{path} belongs"), "{}", a.cause);
        assert_eq!(a.id, "reserved-path");
        let a = answer("tunnels-full/stopping", &[]);
        assert_eq!((a.id, a.status), ("tunnels-full", S::SERVICE_UNAVAILABLE));
        assert_eq!(
            answer("missing-code", &[]).sign_in.as_deref(),
            Some("/.auth/login")
        );
    }

    #[test]
    fn every_text_names_only_placeholders_it_is_given_somewhere() {
        // The names the call sites fill; a typo in a text shows here.
        const NAMES: &[&str] = &[
            "path",
            "name",
            "known",
            "allowed",
            "org",
            "first",
            "host",
            "why",
            "reason",
            "protocol",
            "tokens_url",
            "login_url",
            "max",
            "error",
            "what",
            "source",
            "last",
            "detail",
            "upstream",
            "target",
            "description",
        ];
        for e in OWN {
            let mut rest = e.text;
            while let Some(open) = rest.find('{') {
                let after = &rest[open + 1..];
                let close = after.find('}').expect("a closed placeholder");
                assert!(
                    NAMES.contains(&&after[..close]),
                    "{}: {{{}}}",
                    e.key,
                    &after[..close]
                );
                rest = &after[close + 1..];
            }
        }
    }
}
