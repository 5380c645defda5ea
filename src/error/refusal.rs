//! The proxy refusing a request before anything is forwarded: its path,
//! its host, where it came from, or who sent it.

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
    /// `[access]` refuses the request.
    #[error("refused by access rule {rule}: {why}")]
    Access {
        /// The rule, `read-only` or `default`.
        rule: String,
        /// What was refused, in words.
        why: String,
        /// `access.read_only` refused it.
        read_only: bool,
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
            // Counted by rule, in ado_proxy_access_refused_total.
            Self::ReservedPath
            | Self::UnknownHost { .. }
            | Self::UpgradeNotAllowed { .. }
            | Self::Access { .. } => None,
        }
    }

    /// What the client is told.
    pub(super) fn answer(&self, ctx: &RequestCtx) -> Answer {
        use super::own::answer;
        match self {
            Self::ReservedPath => answer("reserved-path", &[("path", ctx.path())]),
            Self::UnknownHost { name, known } => answer(
                "unknown-host",
                &[("name", name), ("known", &known.join(", "))],
            ),
            Self::OrganizationNotAllowed { org, allowed } => answer(
                "organization-not-allowed",
                &[("org", org), ("allowed", &allowed.join(", "))],
            ),
            Self::OrganizationRequired { allowed } => answer(
                "organization-required",
                &[
                    ("allowed", &allowed.join(", ")),
                    ("first", allowed.first().map_or("contoso", String::as_str)),
                ],
            ),
            Self::HostNotAllowed { host } => answer("host-not-allowed", &[("host", host)]),
            Self::BadHost(why) => answer("bad-host", &[("why", why)]),
            Self::CrossSite { why } => answer("cross-site-request", &[("why", why)]),
            Self::BadPath(why) => answer("bad-path", &[("why", why)]),
            Self::BadTarget(reason) => answer("bad-target", &[("reason", reason)]),
            Self::UpgradeNotAllowed { protocol } => {
                answer("upgrade-not-allowed", &[("protocol", protocol)])
            }
            Self::CallerRefused { reason } => answer("caller-not-allowed", &[("reason", reason)]),
            Self::Access {
                why,
                read_only: true,
                ..
            } => answer("access-rule-refused/read-only", &[("why", why)]),
            Self::Access { why, .. } => answer("access-rule-refused", &[("why", why)]),
        }
    }
}
