//! What an upstream answer says before knowing whose credential it
//! refused: a [`Symptom`] lists its candidate catalog entries, most
//! specific first, and picks the one that applies to the caller.

use super::callers::Caller;
use super::catalog::{Entry, entry};
use super::client_token::ClientToken;

/// What Azure DevOps' answer says, before knowing whose credential it
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symptom {
    /// 203, a sign-in page, or a 401 without a more specific code.
    NotAccepted,
    /// A 401 with a CAE claims challenge.
    ClaimsChallenge,
    /// TF400813 "is not authorized to access this resource".
    AccessRefused,
    /// TF401444: never signed in / not materialised.
    FirstSignIn,
    /// VS30063: not a member.
    NotMember,
    /// VS403463.
    ConditionalAccess,
    /// "Personal Access Token used has expired".
    PatExpired,
    /// TF401019, VS800075, TF200016.
    NotFound,
    /// A PAT policy's name as the message (`FullScopePatPolicyViolation`).
    PatPolicy,
    /// Azure Artifacts: "lacks permission to complete this action. You
    /// need to have '<permission>'".
    FeedPermission,
    /// Azure Artifacts: "The feed with ID '<feed>' doesn't exist".
    FeedNotFound,
    /// Any other 403.
    PermissionDenied,
    /// 429 or TF400733.
    Throttled,
    /// A 401 from an organization of another directory than the
    /// credential's (found by the identity, from `X-VSS-ResourceTenant`).
    WrongDirectory,
}

const NOT_ACCEPTED: &[&str] = &[
    "token-not-accepted",
    "pat-not-accepted",
    "client-token-not-accepted",
    "service-token-not-accepted",
];

impl Symptom {
    /// Every symptom, for tests.
    pub const ALL: [Symptom; 14] = [
        Self::NotAccepted,
        Self::ClaimsChallenge,
        Self::AccessRefused,
        Self::FirstSignIn,
        Self::NotMember,
        Self::ConditionalAccess,
        Self::PatExpired,
        Self::PatPolicy,
        Self::FeedPermission,
        Self::FeedNotFound,
        Self::NotFound,
        Self::PermissionDenied,
        Self::Throttled,
        Self::WrongDirectory,
    ];

    /// Its entries, most specific first; for every caller one applies.
    pub fn candidates(self) -> &'static [&'static str] {
        match self {
            Self::NotAccepted => NOT_ACCEPTED,
            Self::ClaimsChallenge => &[
                "claims-challenge",
                "service-claims-challenge",
                "pat-not-accepted",
                "client-token-not-accepted",
            ],
            Self::AccessRefused => &[
                "oauth-disabled",
                "entra-access-refused",
                "identity-not-in-organization",
                "access-refused",
            ],
            Self::FirstSignIn => &["first-sign-in-required", "identity-not-in-organization"],
            Self::NotMember => &["not-a-member", "identity-not-in-organization"],
            Self::ConditionalAccess => &["conditional-access"],
            Self::PatExpired => &[
                "pat-expired",
                "client-token-not-accepted",
                "token-not-accepted",
                "service-token-not-accepted",
            ],
            Self::PatPolicy => &["pat-policy-refused"],
            Self::FeedPermission => &["feed-permission-missing"],
            Self::FeedNotFound => &["feed-not-found"],
            Self::NotFound => &["not-found-or-no-permission"],
            Self::PermissionDenied => &["permission-denied"],
            Self::Throttled => &["throttled"],
            Self::WrongDirectory => &[
                "wrong-directory",
                "service-wrong-directory",
                "pat-not-accepted",
                "client-token-not-accepted",
            ],
        }
    }

    /// The entry explaining this symptom to `caller`, whose own token (in
    /// mode `none`) is of kind `token`: TF400813 "not authorized" is the
    /// OAuth policy for a legacy Azure DevOps OAuth token (or one that
    /// cannot be told), never for an Entra token.
    pub fn entry_for_token(self, caller: Caller, token: ClientToken) -> &'static Entry {
        match (self, caller, token) {
            (
                Self::AccessRefused,
                Caller::Client,
                ClientToken::LegacyOAuth | ClientToken::Unknown,
            ) => entry("client-oauth-policy"),
            (Self::AccessRefused, Caller::Client, ClientToken::Entra) => {
                entry("client-entra-access-refused")
            }
            _ => self.entry_for(caller),
        }
    }

    /// The entry explaining this symptom to `caller`.
    pub fn entry_for(self, caller: Caller) -> &'static Entry {
        let candidates = self.candidates();
        candidates
            .iter()
            .map(|id| entry(id))
            .find(|e| e.applies.has(caller))
            .unwrap_or_else(|| entry(candidates[0]))
    }
}
