//! Mode `user` as its components read it: `[auth]`, `[session]` and
//! `[upstream]` interpreted once, here, into one typed plan per
//! component (the provider, who may sign in, personal tokens, clients'
//! tokens, other directories, the PAT API, the proxy's own calls), so no
//! component reads the configuration itself.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::plan::{AppCredential, credential};
use super::{Config, EgressPlan, Provider, ResponseMode};

/// How the proxy's own HTTP calls are made (to the identity provider,
/// to Azure DevOps' directory lookup and PAT API): the upstream's CA
/// roots, the egress proxy, and time limits.
#[derive(Debug, Clone)]
pub struct CallsPlan {
    /// `upstream.ca_file`.
    pub ca_file: Option<PathBuf>,
    /// The egress proxy (`upstream.egress_proxy`, the environment).
    pub egress: EgressPlan,
    /// `upstream.connect_timeout`.
    pub connect_timeout: Duration,
    /// `auth.provider_timeout`: one whole call.
    pub timeout: Duration,
}

impl CallsPlan {
    /// The proxy's own calls in `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            ca_file: config.upstream.ca_file.clone(),
            egress: config.upstream.egress.clone(),
            connect_timeout: config.upstream.connect_timeout,
            timeout: config.auth.provider_timeout,
        }
    }
}

/// The sign-in provider: who it is and how the app appears to it.
#[derive(Debug, Clone)]
pub struct ProviderPlan {
    /// Entra, legacy Azure DevOps OAuth or OIDC.
    pub kind: Provider,
    /// `auth.client_id`.
    pub client_id: String,
    /// The app's credential; `None` for a public client (OIDC, PKCE).
    pub credential: Option<AppCredential>,
    /// `auth.authority_host`, or the provider's default.
    pub authority: Url,
    /// `auth.scopes`, or the provider's default.
    pub scopes: Vec<String>,
    /// `auth.response_mode`.
    pub response_mode: ResponseMode,
    /// `auth.tenant`, trimmed.
    pub tenant: Option<String>,
    /// `auth.issuer_url` (OIDC).
    pub issuer_url: Option<Url>,
}

/// Which of a user's names the allowlists may match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameTrust {
    /// UPN and the verified email (a tenant this proxy admits by name,
    /// legacy OAuth).
    UpnAndEmail,
    /// Only the (verified) email: OIDC.
    Email,
    /// Only the object id: Entra users of any tenant.
    ObjectIdOnly,
}

/// Who may sign in: `auth.allowed_tenants`, `allowed_users` and
/// `allowed_email_domains`, lowercase.
#[derive(Debug, Clone)]
pub struct AllowPlan {
    /// The directories admitted (`*` for any); `auth.tenant` when none
    /// is listed.
    pub tenants: Vec<String>,
    /// The directory is not checked: any (`*`), a domain tenant (its
    /// authority issues only its own tokens), or not Entra.
    pub any_tenant: bool,
    /// Which names the user lists match.
    pub names: NameTrust,
    /// `auth.allowed_users`.
    pub users: Vec<String>,
    /// `auth.allowed_email_domains`, without a leading `@`.
    pub domains: Vec<String>,
}

/// Personal proxy tokens (`auth.personal_tokens`).
#[derive(Debug, Clone, Copy)]
pub struct PersonalPlan {
    /// `auth.max_token_lifetime`.
    pub max_lifetime: Duration,
    /// `auth.max_tokens_per_user`.
    pub per_user: usize,
}

/// Clients' own Entra tokens (`auth.accept_client_tokens`).
#[derive(Debug, Clone)]
pub struct ClientTokensPlan {
    /// Where the directories' signing keys are.
    pub authority: Url,
}

/// Organizations of other directories (multi-tenant Entra).
#[derive(Debug, Clone)]
pub struct DirectoriesPlan {
    /// Azure DevOps, asked for an organization's directory.
    pub upstream: Url,
    /// `auth.organization_tenant_ttl`.
    pub ttl: Duration,
    /// `auth.allowed_tenants`, lowercase (`*` for any).
    pub allowed: Vec<String>,
}

/// Azure DevOps' PAT lifecycle API (Entra).
#[derive(Debug, Clone)]
pub struct PatApiPlan {
    /// `upstream.hosts.vssps`, or Azure DevOps'.
    pub vssps: Url,
    /// `upstream.allowed_organizations`.
    pub organizations: Vec<String>,
}

/// Mode `user` (or the service identity's browser sign-in), per
/// component.
#[derive(Debug, Clone)]
pub struct UserPlan {
    /// The sign-in provider.
    pub provider: ProviderPlan,
    /// Who may sign in.
    pub allow: AllowPlan,
    /// The proxy's own calls.
    pub calls: CallsPlan,
    /// `auth.refresh_before`.
    pub refresh_before: Duration,
    /// `auth.forced_refresh_interval`.
    pub forced_refresh_interval: Duration,
    /// `auth.login_timeout`.
    pub login_timeout: Duration,
    /// `session.idle_timeout`.
    pub idle_timeout: Duration,
    /// `session.max_lifetime`.
    pub max_lifetime: Duration,
    /// `session.cookie_name`.
    pub cookie_name: String,
    /// Personal proxy tokens, when on.
    pub personal: Option<PersonalPlan>,
    /// Clients' own tokens, when accepted.
    pub client_tokens: Option<ClientTokensPlan>,
    /// Other directories, for a multi-tenant Entra sign-in.
    pub directories: Option<DirectoriesPlan>,
    /// The PAT lifecycle API, for Entra.
    pub pats: Option<PatApiPlan>,
    /// Entra groups and app roles, when any key names them.
    pub membership: Option<super::MembershipPlan>,
}

/// Mode `user` of a valid `config`, signing in through `kind` (Entra for
/// the service identity's browser sign-in).
pub fn user_plan(config: &Config, kind: Provider) -> UserPlan {
    let a = &config.auth;
    let lower =
        |v: &[String]| -> Vec<String> { v.iter().map(|s| s.trim().to_ascii_lowercase()).collect() };
    let tenant = a.tenant.as_deref().map(str::trim);
    let entra = kind == Provider::Entra;
    let multi_tenant = entra && matches!(tenant, Some("organizations" | "common"));
    UserPlan {
        provider: ProviderPlan {
            kind,
            client_id: a.client_id.clone().unwrap_or_default(),
            credential: credential(a),
            authority: a.effective_authority(),
            scopes: a.effective_scopes(),
            response_mode: a.response_mode,
            tenant: tenant.map(str::to_string),
            issuer_url: a.issuer_url.clone(),
        },
        allow: allow_plan(config, kind),
        calls: CallsPlan::of(config),
        refresh_before: a.refresh_before,
        forced_refresh_interval: a.forced_refresh_interval,
        login_timeout: a.login_timeout,
        idle_timeout: config.session.idle_timeout,
        max_lifetime: config.session.max_lifetime,
        cookie_name: config.session.cookie_name.clone(),
        personal: a.personal_tokens_on().then_some(PersonalPlan {
            max_lifetime: a.max_token_lifetime,
            per_user: a.max_tokens_per_user,
        }),
        client_tokens: (entra && a.accept_client_tokens).then(|| ClientTokensPlan {
            authority: a.effective_authority(),
        }),
        directories: multi_tenant.then(|| DirectoriesPlan {
            upstream: config.upstream.url.clone(),
            ttl: a.organization_tenant_ttl,
            allowed: lower(&a.allowed_tenants),
        }),
        pats: (entra && a.provider == Some(Provider::Entra)).then(|| PatApiPlan {
            vssps: config
                .upstream
                .hosts
                .get("vssps")
                .cloned()
                .unwrap_or_else(|| Url::parse("https://vssps.dev.azure.com/").expect("a URL")),
            organizations: config.upstream.allowed_organizations.clone(),
        }),
        membership: super::membership_plan(config),
    }
}

/// Who may sign in through `kind`.
pub(super) fn allow_plan(config: &Config, kind: Provider) -> AllowPlan {
    let a = &config.auth;
    let lower =
        |v: &[String]| -> Vec<String> { v.iter().map(|s| s.trim().to_ascii_lowercase()).collect() };
    let mut tenants = lower(&a.allowed_tenants);
    if tenants.is_empty()
        && let Some(t) = &a.tenant
    {
        tenants.push(t.trim().to_ascii_lowercase());
    }
    // A domain tenant cannot be compared with the `tid` GUID offline;
    // Entra only issues tokens of that tenant at its authority, so the
    // tenant check is the authority itself. (`common` and
    // `organizations` are refused without allowed_tenants at load.)
    let domain_tenant = a.allowed_tenants.is_empty()
        && a.tenant.as_deref().map(str::trim).is_some_and(|t| {
            uuid::Uuid::parse_str(t).is_err()
                && !["common", "organizations", "consumers"]
                    .iter()
                    .any(|m| t.eq_ignore_ascii_case(m))
        });
    let star = tenants.iter().any(|t| t == "*");
    let entra = kind == Provider::Entra;
    AllowPlan {
        any_tenant: star || domain_tenant || !entra,
        names: match kind {
            Provider::Entra if star => NameTrust::ObjectIdOnly,
            Provider::Oidc => NameTrust::Email,
            _ => NameTrust::UpnAndEmail,
        },
        tenants,
        users: lower(&a.allowed_users),
        domains: lower(&a.allowed_email_domains)
            .into_iter()
            .map(|d| d.trim_start_matches('@').to_string())
            .collect(),
    }
}
