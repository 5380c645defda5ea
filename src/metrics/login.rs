//! Mode `user`: sign-ins, token refreshes, sessions held, and the time of
//! calls to the identity provider (which service identities make too).

use prometheus::{HistogramOpts, IntGauge, Registry};

use super::family::{Counters, Histograms, labels};

labels! {
    /// A sign-in step.
    pub enum LoginOutcome {
        /// `/.auth/login` sent a browser to the provider.
        Started = "started",
        /// The callback created a session.
        Completed = "completed",
        /// The callback failed (see [`LoginFailure`]).
        Failed = "failed",
    }
}

labels! {
    /// Why a sign-in step failed.
    pub enum LoginFailure {
        /// Wrong method for the endpoint.
        Method = "method",
        /// `rd` is not a same-origin path.
        BadReturnPath = "bad_return_path",
        /// The provider's metadata could not be read.
        ProviderUnavailable = "provider_unavailable",
        /// The callback has no `state`.
        MissingState = "missing_state",
        /// `state` names no pending sign-in.
        UnknownState = "unknown_state",
        /// Older than `login_timeout`.
        Expired = "expired",
        /// The pre-auth cookie is another browser's or missing.
        WrongBrowser = "wrong_browser",
        /// The provider answered an error.
        ProviderError = "provider_error",
        /// Neither code nor error.
        MissingCode = "missing_code",
        /// `iss` of another issuer.
        WrongIssuer = "wrong_issuer",
        /// The ID token did not validate.
        IdTokenInvalid = "id_token_invalid",
        /// Redeeming the code failed.
        CodeRedemption = "code_redemption",
        /// Not on the allowlists.
        NotAllowed = "not_allowed",
        /// Without a group or app role `auth.allowed_groups` or
        /// `allowed_roles` requires.
        NotMember = "not_member",
        /// The groups could not be found out (Microsoft Graph failed).
        MembershipUnverified = "membership_unverified",
        /// `/.auth/me` without a session.
        NotSignedIn = "not_signed_in",
        /// An unreadable callback form.
        BadForm = "bad_form",
        /// Anything else (the session store, ...).
        Other = "other",
    }
}

labels! {
    /// How an access-token refresh ended.
    pub enum RefreshOutcome {
        /// A new token.
        Ok = "ok",
        /// Waited for another request's refresh.
        Shared = "shared",
        /// Another replica refreshed.
        Replica = "replica",
        /// A refused token not refreshed again within
        /// `auth.forced_refresh_interval`.
        Throttled = "throttled",
        /// The grant is dead: sign in again.
        Relogin = "relogin",
        /// The proxy's own registration or credential is refused.
        OperatorError = "operator_error",
        /// The provider is down or slow.
        TransientError = "transient_error",
        /// The user no longer has a required group or role: the session
        /// ends.
        NotMember = "not_member",
    }
}

labels! {
    /// Which call to the identity provider.
    pub enum Grant {
        /// Authorization code (sign-in).
        Code = "authorization_code",
        /// Refresh token.
        Refresh = "refresh_token",
        /// Metadata, keys or profile.
        Metadata = "metadata",
        /// Client credentials (service identities).
        ClientCredentials = "client_credentials",
        /// The managed identity endpoint.
        ManagedIdentity = "managed_identity",
        /// Device code polling.
        DeviceCode = "device_code",
        /// Microsoft Graph, asked for a user's groups.
        Graph = "graph",
    }
}

labels! {
    /// What came of a claims challenge (CAE) from Azure DevOps.
    pub enum ClaimsOutcome {
        /// A new token with the claims; the request was sent again if it
        /// had no body.
        Refreshed = "refreshed",
        /// Only a sign-in can satisfy the claims: browsers go there,
        /// programs get a 401 naming the cause.
        SignIn = "sign_in",
        /// The provider could not be asked (down, or the proxy's own
        /// credentials refused).
        Failed = "failed",
        /// Mode service: a new token with the claims.
        ServiceRefreshed = "service_refreshed",
        /// Mode service: no token with the claims.
        ServiceFailed = "service_failed",
    }
}

labels! {
    /// What is known of an organization's directory.
    pub enum DirectoryOutcome {
        /// An unauthenticated look named an Entra tenant.
        Tenant = "tenant",
        /// A Microsoft-account-backed organization (empty GUID).
        MicrosoftAccount = "microsoft_account",
        /// The answer named no directory.
        Undetermined = "undetermined",
        /// Azure DevOps could not be asked.
        Failed = "failed",
        /// A refusal named another directory than the one cached.
        Learned = "learned",
    }
}

labels! {
    /// What came of asking another directory for a user's token.
    pub enum TenantTokenOutcome {
        /// A token of the organization's directory.
        Issued = "issued",
        /// The directory refused (not a guest there, no consent).
        Refused = "refused",
        /// The directory is not in auth.allowed_tenants: not asked.
        NotAllowed = "not_allowed",
    }
}

labels! {
    /// What happened to a personal proxy token.
    pub enum TokenOutcome {
        /// Created at /.auth/tokens.
        Created = "created",
        /// Revoked by its owner.
        Revoked = "revoked",
        /// Accepted on a request.
        Accepted = "accepted",
        /// Refused on a request (unknown, expired, its sign-in ended).
        Refused = "refused",
    }
}

/// Provider call buckets: 5 ms to 30 s.
const PROVIDER_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Sign-ins and tokens.
pub struct LoginMetrics {
    logins: Counters<LoginOutcome>,
    failures: Counters<LoginFailure>,
    refreshes: Counters<RefreshOutcome>,
    claims: Counters<ClaimsOutcome>,
    directories: Counters<DirectoryOutcome>,
    tenant_tokens: Counters<TenantTokenOutcome>,
    personal_tokens: Counters<TokenOutcome>,
    provider_duration: Histograms<Grant>,
    /// Sessions held now.
    pub sessions_active: IntGauge,
}

// === impl LoginMetrics ===

impl LoginMetrics {
    /// Registers the sign-in families into `registry`.
    /// Drops the 0 series of what the running mode never does: sign-ins,
    /// refreshes and tokens of users without sessions (modes other than
    /// `user`), and token-endpoint timings without an identity provider.
    pub fn trim(&self, sessions: bool, provider: bool) {
        if !sessions {
            self.logins.clear();
            self.failures.clear();
            self.refreshes.clear();
            self.directories.clear();
            self.tenant_tokens.clear();
            self.personal_tokens.clear();
        }
        if !provider {
            self.provider_duration.clear();
        }
    }

    /// Registers the sign-in and session families into `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let sessions_active = IntGauge::new(
            "ado_proxy_sessions_active",
            "Signed-in sessions held by this process.",
        )?;
        registry.register(Box::new(sessions_active.clone()))?;
        Ok(Self {
            logins: Counters::register(
                registry,
                "ado_proxy_logins_total",
                "Sign-ins by outcome: started, completed, failed.",
                "outcome",
            )?,
            failures: Counters::register(
                registry,
                "ado_proxy_login_failures_total",
                "Failed sign-ins by reason.",
                "reason",
            )?,
            refreshes: Counters::register(
                registry,
                "ado_proxy_token_refreshes_total",
                "Access-token refreshes by outcome: ok, shared (waited for another \
                 request's refresh), replica (another replica refreshed), throttled (a refused \
                 token not refreshed again within auth.forced_refresh_interval), relogin, \
                 operator_error, transient_error.",
                "outcome",
            )?,
            claims: Counters::register(
                registry,
                "ado_proxy_claims_challenges_total",
                "Claims challenges (Continuous Access Evaluation) from Azure DevOps, by outcome: \
                 refreshed, sign_in, failed, service_refreshed, service_failed.",
                "outcome",
            )?,
            directories: Counters::register(
                registry,
                "ado_proxy_organization_directories_total",
                "Organizations' Entra directories, looked up without credentials as Git \
                 Credential Manager does or learned from a refusal, by outcome: tenant, \
                 microsoft_account, undetermined, failed, learned.",
                "outcome",
            )?,
            tenant_tokens: Counters::register(
                registry,
                "ado_proxy_tenant_tokens_total",
                "Users' tokens asked of an organization's directory other than the one they \
                 signed in to, by outcome: issued, refused, not_allowed.",
                "outcome",
            )?,
            personal_tokens: Counters::register(
                registry,
                "ado_proxy_personal_tokens_total",
                "Personal proxy tokens by outcome: created, revoked, accepted, refused.",
                "outcome",
            )?,
            provider_duration: Histograms::register(
                registry,
                HistogramOpts::new(
                    "ado_proxy_token_endpoint_duration_seconds",
                    "Time of calls to the identity provider, by grant (authorization_code, \
                     refresh_token, metadata, client_credentials, managed_identity, device_code).",
                )
                .buckets(PROVIDER_BUCKETS.to_vec()),
                "grant",
            )?,
            sessions_active,
        })
    }

    /// Counts a sign-in step.
    pub fn step(&self, outcome: LoginOutcome) {
        self.logins.inc(outcome);
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, reason: LoginFailure) {
        self.logins.inc(LoginOutcome::Failed);
        self.failures.inc(reason);
    }

    /// Counts a refresh outcome.
    pub fn refresh(&self, outcome: RefreshOutcome) {
        self.refreshes.inc(outcome);
    }

    /// Counts what came of a claims challenge.
    pub fn claims(&self, outcome: ClaimsOutcome) {
        self.claims.inc(outcome);
    }

    /// Counts what was found of an organization's directory.
    pub fn directory(&self, outcome: DirectoryOutcome) {
        self.directories.inc(outcome);
    }

    /// Counts a token asked of another directory.
    pub fn tenant_token(&self, outcome: TenantTokenOutcome) {
        self.tenant_tokens.inc(outcome);
    }

    /// Counts what happened to a personal proxy token.
    pub fn token(&self, outcome: TokenOutcome) {
        self.personal_tokens.inc(outcome);
    }

    /// Times a call to the identity provider.
    pub fn provider_call(&self, grant: Grant, seconds: f64) {
        self.provider_duration.observe(grant, seconds);
    }
}
