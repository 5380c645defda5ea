//! The proxy refusing a request before anything is forwarded: its path,
//! its host, where it came from, or who sent it.

use http::StatusCode;

use crate::answer::Answer;
use crate::metrics::RefusalReason;
use crate::request::RequestCtx;

/// Why the request itself is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
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
    /// The request's host is ambiguous or missing (why, in words).
    #[error("bad host: {0}")]
    BadHost(&'static str),
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
    /// An HTTP/2 extended CONNECT for a protocol outside
    /// `listen.tunnel_protocols`.
    #[error("upgrade to {protocol:?} not allowed")]
    UpgradeNotAllowed {
        /// The `:protocol` asked for (at most 64 characters).
        protocol: String,
    },
    /// The caller is not admitted (address or shared secret).
    #[error("caller refused: {reason}")]
    CallerRefused {
        /// Why, in words for the caller.
        reason: &'static str,
    },
}

// === impl Refusal ===

impl Refusal {
    /// The refusal `verdict` of `upstream.allowed_organizations`
    /// (`allowed`) means, if any.
    pub fn of_verdict(
        verdict: crate::organization::Verdict,
        allowed: &[String],
    ) -> Result<(), Self> {
        use crate::organization::Verdict;
        match verdict {
            Verdict::Allowed => Ok(()),
            Verdict::Required => Err(Self::OrganizationRequired {
                allowed: allowed.to_vec(),
            }),
            Verdict::NotAllowed(org) => Err(Self::OrganizationNotAllowed {
                org,
                allowed: allowed.to_vec(),
            }),
        }
    }

    /// The `ado_proxy_requests_refused_total` reason, for a request
    /// refused before anything was forwarded.
    pub fn reason(&self) -> Option<RefusalReason> {
        match self {
            Self::BadPath(_) | Self::BadTarget(_) => Some(RefusalReason::BadPath),
            Self::HostNotAllowed { .. } | Self::BadHost(_) => Some(RefusalReason::Host),
            Self::CrossSite { .. } => Some(RefusalReason::CrossSite),
            Self::OrganizationNotAllowed { .. } | Self::OrganizationRequired { .. } => {
                Some(RefusalReason::Organization)
            }
            Self::CallerRefused { .. } => Some(RefusalReason::Caller),
            Self::ReservedPath | Self::UnknownHost { .. } | Self::UpgradeNotAllowed { .. } => None,
        }
    }

    /// What the client is told.
    pub(super) fn answer(&self, ctx: &RequestCtx) -> Answer {
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
            Self::BadHost(why) => Answer::new(
                StatusCode::BAD_REQUEST,
                "bad-host",
                "Bad Host header",
                format!(
                    "The proxy cannot tell which host this request is addressed to: {why}. Send exactly one Host header (over HTTP/2, none or one equal to :authority) naming the proxy."
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
            Self::UpgradeNotAllowed { protocol } => Answer::new(
                StatusCode::BAD_REQUEST,
                "upgrade-not-allowed",
                "This proxy does not tunnel that protocol",
                format!(
                    "The request asks to tunnel \"{protocol}\", which is not in listen.tunnel_protocols. The proxy only tunnels the protocols an operator listed there (WebSockets by default), because a tunnel carries the proxy's credential past every later check."
                ),
            ),
            Self::CallerRefused { reason } => Answer::new(
                StatusCode::FORBIDDEN,
                "caller-not-allowed",
                "This proxy does not accept requests from you",
                format!(
                    "The proxy acts as a fixed identity, so it only serves callers it was told to trust: {reason}. If you should be allowed, ask the administrator to add your address to auth.allowed_client_cidrs or to give you the caller secret."
                ),
            ),
        }
    }
}
