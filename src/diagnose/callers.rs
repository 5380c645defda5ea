//! Whose failure an answer explains. The same upstream answer means
//! different things for different credentials (TF400813 is an
//! organization policy for a legacy Azure DevOps OAuth app, consent or
//! Conditional Access for an Entra app, a missing membership for a
//! service principal): a catalog entry says which [`Caller`]s it
//! [`Applies`] to, and a [`Symptom`] lists its candidate entries, most
//! specific first.

use super::catalog::{Entry, entry};
use super::client_token::ClientToken;

/// Whose credential Azure DevOps refused, or who was signing in: the
/// explanation and the fix depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Mode `none`: the client's own credential passed through.
    Client,
    /// The proxy's personal access token (mode `pat`, or source `pat`).
    Pat,
    /// A user signed in through Microsoft Entra ID (mode `user`).
    EntraUser,
    /// A user signed in through the legacy Azure DevOps OAuth.
    LegacyUser,
    /// A user signed in through another OpenID Connect issuer.
    OidcUser,
    /// The account signed in with `ado-auth-proxy login` (source
    /// `device-code`).
    DeviceUser,
    /// A service principal: sources `client-credentials`,
    /// `workload-identity`, `federated`.
    ServicePrincipal,
    /// A managed identity: source `managed-identity`.
    ManagedIdentity,
}

/// A set of [`Caller`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applies(u8);

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

impl Caller {
    /// Every caller, for tests and the documentation.
    pub const ALL: [Caller; 8] = [
        Self::Client,
        Self::Pat,
        Self::EntraUser,
        Self::LegacyUser,
        Self::OidcUser,
        Self::DeviceUser,
        Self::ServicePrincipal,
        Self::ManagedIdentity,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// How the configuration names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "mode none",
            Self::Pat => "PAT",
            Self::EntraUser => "user: entra",
            Self::LegacyUser => "user: azure-devops",
            Self::OidcUser => "user: oidc",
            Self::DeviceUser => "service: device-code",
            Self::ServicePrincipal => "service: principal",
            Self::ManagedIdentity => "service: managed-identity",
        }
    }
}

impl Applies {
    /// `mode = "none"`.
    pub const CLIENT: Self = Self(1 << Caller::Client as u8);
    /// The proxy's PAT.
    pub const PAT: Self = Self(1 << Caller::Pat as u8);
    /// Users of the Entra provider.
    pub const ENTRA_USER: Self = Self(1 << Caller::EntraUser as u8);
    /// Users of the legacy Azure DevOps OAuth provider.
    pub const LEGACY_USER: Self = Self(1 << Caller::LegacyUser as u8);
    /// Users of an OIDC issuer.
    pub const OIDC_USER: Self = Self(1 << Caller::OidcUser as u8);
    /// Source `device-code`.
    pub const DEVICE_USER: Self = Self(1 << Caller::DeviceUser as u8);
    /// Service principals.
    pub const SERVICE_PRINCIPAL: Self = Self(1 << Caller::ServicePrincipal as u8);
    /// Managed identities.
    pub const MANAGED_IDENTITY: Self = Self(1 << Caller::ManagedIdentity as u8);
    /// Users who sign in in a browser, whatever the provider.
    pub const USERS: Self = Self::ENTRA_USER
        .with(Self::LEGACY_USER)
        .with(Self::OIDC_USER);
    /// Whoever signs in to Entra interactively (browser or device code).
    pub const ENTRA_SIGN_IN: Self = Self::ENTRA_USER.with(Self::DEVICE_USER);
    /// Every service source but the PAT.
    pub const SERVICE: Self = Self::DEVICE_USER
        .with(Self::SERVICE_PRINCIPAL)
        .with(Self::MANAGED_IDENTITY);
    /// Credentials that belong to a person (a user, a PAT's owner).
    pub const PEOPLE: Self = Self::USERS
        .with(Self::DEVICE_USER)
        .with(Self::CLIENT)
        .with(Self::PAT);
    /// Everyone.
    pub const ALL: Self = Self(u8::MAX);

    /// Both sets.
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether `caller` is in the set.
    pub fn has(self, caller: Caller) -> bool {
        self.0 & caller.bit() != 0
    }

    /// The set as the documentation writes it: `user: entra, PAT`.
    pub fn describe(self) -> String {
        if self == Self::ALL {
            return "all".to_string();
        }
        Caller::ALL
            .iter()
            .filter(|c| self.has(**c))
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
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
