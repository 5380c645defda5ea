//! Entra groups and app roles (`auth.allowed_groups`, `allowed_roles`,
//! and the groups and roles rules name): what a user has, found at
//! sign-in and again at every refresh, from the ID token's claims, or
//! from Microsoft Graph when the token has too many groups to carry.
//!
//! Graph is asked with a token redeemed from the user's refresh token
//! for Graph's `User.Read` (the least a user needs to check their own
//! groups), with `checkMemberGroups` on the groups the proxy asks about
//! only, 20 per call. What comes back is filtered to those groups.

use std::sync::Arc;

use serde::Deserialize;

use super::provider::ProviderClient;
use crate::config::MembershipPlan;
use crate::error::LoginError;
use crate::gate::Failure;
use crate::oauth::group_claims::GroupClaims;
use crate::oauth::idp::{Grant, IdpError, IdpHttp};
use crate::session::Member;

/// Microsoft Graph checks at most this many groups per call.
const GRAPH_BATCH: usize = 20;

/// What the proxy reads of users' groups and roles, and requires.
pub(super) struct Membership {
    plan: MembershipPlan,
    provider: Arc<ProviderClient>,
    http: IdpHttp,
}

/// Why someone was not admitted.
#[derive(Debug, Clone)]
pub(super) enum Denied {
    /// They lack a required group or role: what, in words.
    NotMember(String),
    /// It could not be found out.
    Unverified(Failure),
}

/// What a stored finding is worth now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// It meets the requirement.
    Admitted,
    /// It does not: why, in words.
    Refused(String),
    /// It was found against another configuration, or never: find it
    /// again before it counts.
    Stale,
}

/// `checkMemberGroups`' answer.
#[derive(Deserialize)]
struct GraphIds {
    value: Vec<String>,
}

impl Denied {
    /// The error a request is answered with.
    pub(super) fn into_error(self) -> crate::error::Error {
        crate::error::Error::from(match self {
            Self::NotMember(reason) => LoginError::NotMember { reason },
            Self::Unverified(Failure::Operator { reason, .. }) => {
                LoginError::MembershipUnverified {
                    detail: reason,
                    operator: true,
                    retry_after: None,
                }
            }
            Self::Unverified(Failure::Transient { reason } | Failure::Relogin { reason, .. }) => {
                LoginError::MembershipUnverified {
                    detail: reason,
                    operator: false,
                    retry_after: Some(5),
                }
            }
        })
    }
}

impl Membership {
    /// Reads groups and roles as `plan` says, asking Graph over `http`
    /// with tokens from `provider`.
    pub(super) fn new(plan: MembershipPlan, provider: Arc<ProviderClient>, http: IdpHttp) -> Self {
        Self {
            plan,
            provider,
            http,
        }
    }

    /// A signed-in user's groups and roles from their token's `claims`;
    /// on overage from Graph, with a token redeemed from
    /// `refresh_token`. Refused when they lack what is required.
    pub(super) async fn find(
        &self,
        claims: &GroupClaims,
        refresh_token: Option<&str>,
    ) -> Result<Member, Denied> {
        let groups = match (&claims.groups, claims.overage) {
            _ if self.plan.groups.is_empty() => Vec::new(),
            (Some(list), _) => self.asked_about(list),
            (None, true) => {
                let rt = refresh_token.ok_or_else(|| {
                    Denied::Unverified(Failure::Operator {
                        reason: "the token has too many groups to carry, and without a refresh \
                                 token (offline_access) Microsoft Graph cannot be asked"
                            .into(),
                        said: None,
                    })
                })?;
                self.ask_graph(rt).await?
            }
            (None, false) => Vec::new(),
        };
        let member = self.member(groups, claims);
        match self.shortfall(&member) {
            None => Ok(member),
            Some(why) => Err(Denied::NotMember(self.explained(why, claims))),
        }
    }

    /// A client's own token: only its claims count (there is no refresh
    /// token to ask Graph with).
    pub(super) fn of_client(&self, claims: &GroupClaims) -> Result<Member, String> {
        let groups = claims
            .groups
            .as_deref()
            .map(|list| self.asked_about(list))
            .unwrap_or_default();
        let member = self.member(groups, claims);
        match self.shortfall(&member) {
            None => Ok(member),
            Some(why) if claims.overage && !self.plan.allowed_groups.is_empty() => Err(format!(
                "{why}: the token has too many groups to carry them, and a client's own token \
                 cannot be checked with Microsoft Graph; sign in through the proxy instead"
            )),
            Some(why) => Err(self.explained(why, claims)),
        }
    }

    /// What a finding stored with a session is worth under this plan.
    pub(super) fn standing(&self, member: &Member) -> Standing {
        if member.checked != self.plan.fingerprint {
            return Standing::Stale;
        }
        match self.shortfall(member) {
            None => Standing::Admitted,
            Some(why) => Standing::Refused(why),
        }
    }

    /// What was found: `groups` read from the token or Graph (unknown
    /// when the token carried no groups claim and no overage marker).
    fn member(&self, groups: Vec<String>, claims: &GroupClaims) -> Member {
        Member {
            groups_unknown: !self.plan.groups.is_empty()
                && claims.groups.is_none()
                && !claims.overage,
            groups,
            roles: claims
                .roles
                .iter()
                .filter(|r| self.plan.roles.contains(r))
                .cloned()
                .collect(),
            checked: self.plan.fingerprint,
        }
    }

    /// Of `list`, the groups the proxy asks about, each once.
    fn asked_about(&self, list: &[String]) -> Vec<String> {
        // The plan's groups are each there once.
        self.plan
            .groups
            .iter()
            .filter(|g| list.contains(g))
            .cloned()
            .collect()
    }

    /// What `member` lacks of the requirement, in words.
    fn shortfall(&self, member: &Member) -> Option<String> {
        let p = &self.plan;
        if !p.allowed_groups.is_empty()
            && !member.groups.iter().any(|g| p.allowed_groups.contains(g))
        {
            return Some(format!(
                "this proxy admits only members of the groups {}, and you are in none of them",
                p.allowed_groups.join(", ")
            ));
        }
        if !p.allowed_roles.is_empty() && !member.roles.iter().any(|r| p.allowed_roles.contains(r))
        {
            return Some(format!(
                "this proxy admits only holders of the app roles {}, and you hold none of them",
                p.allowed_roles.join(", ")
            ));
        }
        None
    }

    /// `why`, with what the token lacked when it carried no group claim
    /// at all (the app registration does not emit them).
    fn explained(&self, why: String, claims: &GroupClaims) -> String {
        if claims.groups.is_none() && !claims.overage && !self.plan.allowed_groups.is_empty() {
            return format!(
                "{why} (your sign-in carried no groups claim: the proxy's app registration must \
                 emit group claims, groupMembershipClaims, see docs/providers.md)"
            );
        }
        why
    }

    /// The asked-about groups Graph says the user is in (transitively).
    async fn ask_graph(&self, refresh_token: &str) -> Result<Vec<String>, Denied> {
        let scope = format!("{}/User.Read", self.plan.graph_url);
        let token = self
            .provider
            .token_for(refresh_token, &scope)
            .await
            .map_err(|e| {
                let why = |reason| format!("no Microsoft Graph token for {scope}: {reason}");
                Denied::Unverified(match e.classify(Grant::Refresh) {
                    // The user's grant is fine for Azure DevOps; only the
                    // app's consent for Graph is missing.
                    Failure::Relogin { reason, .. } | Failure::Operator { reason, .. } => {
                        Failure::Operator {
                            reason: why(reason),
                            said: None,
                        }
                    }
                    Failure::Transient { reason } => Failure::Transient {
                        reason: why(reason),
                    },
                })
            })?;
        let url = format!("{}/v1.0/me/checkMemberGroups", self.plan.graph_url);
        let mut found = Vec::new();
        for batch in self.plan.groups.chunks(GRAPH_BATCH) {
            let req = self
                .http
                .client()
                .post(&url)
                .bearer_auth(token.access_token.expose())
                .header("accept", "application/json")
                .json(&serde_json::json!({ "groupIds": batch }));
            let (status, body) = self
                .http
                .send(req, Grant::Graph)
                .await
                .map_err(|e| Denied::Unverified(graph_failure(&e)))?;
            if status != 200 {
                return Err(Denied::Unverified(graph_failure(&IdpError::Status {
                    status,
                })));
            }
            let ids: GraphIds = serde_json::from_slice(&body).map_err(|e| {
                Denied::Unverified(Failure::Transient {
                    reason: format!("Microsoft Graph's checkMemberGroups answer: {e}"),
                })
            })?;
            let said: Vec<String> = ids.value.iter().map(|g| g.to_ascii_lowercase()).collect();
            found.extend(batch.iter().filter(|g| said.contains(g)).cloned());
        }
        Ok(found)
    }
}

/// A failed Graph call: the proxy's app refused (401, 403) is the
/// operator's to fix; anything else passes.
fn graph_failure(e: &IdpError) -> Failure {
    match e {
        IdpError::Status { status: 401 | 403 } => Failure::Operator {
            reason: "Microsoft Graph refused checkMemberGroups (the app needs the delegated \
                     permission User.Read)"
                .into(),
            said: None,
        },
        other => Failure::Transient {
            reason: format!("Microsoft Graph: {other}"),
        },
    }
}

#[cfg(test)]
mod tests;
