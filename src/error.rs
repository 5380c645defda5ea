//! The proxy's error type and the one place errors become responses.
//!
//! Variants are grouped by where the failure came from (the client's
//! request, the upstream, the identity); [`into_response`] picks the status
//! and writes a body the client can read: `application/problem+json`
//! (RFC 9457) for programs and browsers, `text/plain` for git, which prints
//! it as `remote:` lines.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::identity::IdentityError;
use crate::metrics::UpstreamErrorKind;
use crate::proxy::body::ProxyBody;
use crate::proxy::route::Upstream;
use crate::proxy::{ClientKind, RequestCtx};

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
}

/// What a client is told.
struct Answer {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
}

// === impl Error ===

impl Error {
    /// An upstream failure of `kind` at `upstream`.
    pub fn upstream(upstream: &Upstream, kind: UpstreamErrorKind, reason: String) -> Self {
        Self::Upstream {
            upstream: upstream.name.to_string(),
            target: upstream.prefix().to_string(),
            kind,
            reason,
        }
    }

    fn answer(&self, ctx: &RequestCtx) -> Answer {
        match self {
            Self::ReservedPath => Answer {
                status: StatusCode::NOT_FOUND,
                slug: "reserved-path",
                title: "Not found",
                detail: format!(
                    "{} belongs to the proxy's own endpoints and is not forwarded to Azure DevOps.",
                    ctx.path()
                ),
            },
            Self::UnknownHost { name, known } => Answer {
                status: StatusCode::NOT_FOUND,
                slug: "unknown-host",
                title: "Unknown Azure DevOps host",
                detail: format!(
                    "/.hosts/{name}/ names no configured host. Known hosts: {}. Add it under [upstream.hosts] to reach it.",
                    known.join(", ")
                ),
            },
            Self::OrganizationNotAllowed { org, allowed } => Answer {
                status: StatusCode::FORBIDDEN,
                slug: "organization-not-allowed",
                title: "Organization not allowed",
                detail: format!(
                    "This proxy only serves the organizations {}; \"{org}\" is not one of them. An operator can add it to upstream.allowed_organizations.",
                    allowed.join(", ")
                ),
            },
            Self::OrganizationRequired { allowed } => Answer {
                status: StatusCode::FORBIDDEN,
                slug: "organization-required",
                title: "Organization required",
                detail: format!(
                    "This proxy only serves the organizations {}; start the path with one of them, e.g. /{}/_apis/projects.",
                    allowed.join(", "),
                    allowed.first().map(String::as_str).unwrap_or("contoso")
                ),
            },
            Self::BadTarget(reason) => Answer {
                status: StatusCode::BAD_REQUEST,
                slug: "bad-target",
                title: "Bad request target",
                detail: format!("The request path cannot be forwarded: {reason}."),
            },
            Self::Upstream {
                upstream,
                target,
                kind,
                reason,
            } => Answer {
                status: match kind {
                    UpstreamErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                },
                slug: match kind {
                    UpstreamErrorKind::Connect => "upstream-unreachable",
                    UpstreamErrorKind::Timeout => "upstream-timeout",
                    UpstreamErrorKind::Protocol => "upstream-failed",
                },
                title: match kind {
                    UpstreamErrorKind::Connect => "Azure DevOps could not be reached",
                    UpstreamErrorKind::Timeout => "Azure DevOps did not answer in time",
                    UpstreamErrorKind::Protocol => "The connection to Azure DevOps failed",
                },
                detail: format!("Upstream {upstream} ({target}): {reason}."),
            },
            Self::Identity(e) => Answer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                slug: "no-credential",
                title: "The proxy has no usable credential",
                detail: format!("{e}. An operator must fix the [auth] configuration."),
            },
        }
    }
}

/// Turns `err` into the response the client gets, and logs it once.
pub fn into_response(err: &Error, ctx: &RequestCtx) -> Response<ProxyBody> {
    let answer = err.answer(ctx);
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
        ClientKind::Browser | ClientKind::Program => (
            "application/problem+json",
            json!({
                "type": format!("urn:ado-auth-proxy:problem:{}", answer.slug),
                "title": answer.title,
                "status": answer.status.as_u16(),
                "detail": answer.detail,
                "requestId": ctx.request_id_str(),
            })
            .to_string(),
        ),
    };
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = answer.status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
