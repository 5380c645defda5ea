//! Whose failure an answer explains. The same upstream answer means
//! different things for different credentials (TF400813 is an
//! organization policy for a legacy Azure DevOps OAuth app, consent or
//! Conditional Access for an Entra app, a missing membership for a
//! service principal): a catalog entry says which [`Caller`]s it
//! [`Applies`] to.

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
