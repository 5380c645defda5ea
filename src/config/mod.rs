//! Typed configuration: the sections of the TOML file, their defaults, and
//! the loading and validation entry points.
//!
//! Values are typed (`SocketAddr`, `Url`, `Duration`, enums) so serde rejects
//! malformed input; [`load`] adds the checks serde cannot express and reports
//! every problem at once, naming the key. Unknown keys are found by
//! comparing the input with the serialized defaults (see `load.rs`), not by
//! `deny_unknown_fields`, so one typo does not hide the other problems of
//! its section.

mod access;
mod cidr;
mod defaults;
mod egress;
mod env;
mod load;
mod membership;
mod plan;
mod problem;
mod secret;
mod secret_slots;
mod service_plan;
mod user_plan;
mod validate;
mod warnings;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

pub use access::{
    AccessConfig, AccessPlan, AccessRule, GitOp, METHODS, RuleAction, RulePlan, access_plan,
    validate as validate_access,
};
pub use cidr::Cidr;
pub use egress::{EgressPlan, ProxyCredentials, ProxyEnvironment, ProxyTarget, egress_plan};
pub use env::{ENV_PREFIX, EnvProvider, ignored as ignored_env};
pub use load::{figment_for, load, load_checking, load_file, load_file_checking};
pub use membership::{MAX_GROUPS, MembershipPlan, group_id, membership_plan, role_value};
pub use plan::{AppCredential, AuthPlan, RedisTarget, SourcePlan, StorePlan, credential, plan};
pub use problem::{Problem, Problems};
pub use secret::Secret;
pub use secret_slots::{MIN_CALLER_SECRET, caller_secrets};
pub use service_plan::{
    EntraApp, IMDS_ENDPOINT, ManagedPlan, PatSourcePlan, ServicePlan, service_plan,
};
pub use user_plan::{
    AllowPlan, CallsPlan, ClientTokensPlan, DirectoriesPlan, NameTrust, PatApiPlan, PersonalPlan,
    ProviderPlan, UserPlan, user_plan,
};
pub use validate::validate;
pub use warnings::{warnings, world_readable};

/// The whole configuration, one field per TOML section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `[listen]`: the proxy listener that clients talk to.
    pub listen: ListenConfig,
    /// `[admin]`: health, readiness and metrics.
    pub admin: AdminConfig,
    /// `[upstream]`: where requests go.
    pub upstream: UpstreamConfig,
    /// `[log]`: log format and verbosity.
    pub log: LogConfig,
    /// `[auth]`: where the credential sent upstream comes from.
    pub auth: AuthConfig,
    /// `[session]`: the signed-in users' sessions (mode `user`).
    pub session: SessionConfig,
    /// `[access]`: which requests are forwarded at all.
    pub access: AccessConfig,
}

/// Most serving threads `listen.workers` may ask for.
pub const MAX_WORKERS: usize = 256;

/// `[listen]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenConfig {
    /// Address the proxy listens on. Port 0 picks a free port.
    pub address: SocketAddr,
    /// The URL clients use to reach the proxy; upstream URLs in `Location`
    /// headers and discovery documents are rewritten onto it. Defaults to
    /// `http(s)://{address}` (`localhost` when the address is loopback or
    /// unspecified).
    pub public_url: Option<Url>,
    /// PEM certificate chain; with `tls_key_file`, the listener speaks TLS
    /// (ALPN `h2` and `http/1.1`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Time from SIGTERM until the process exits at the latest; in-flight
    /// requests may finish within it.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Time after SIGTERM during which the listener keeps accepting while
    /// `/readyz` already says not ready, so load balancers stop sending
    /// traffic first. Counted inside `shutdown_grace`.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// Largest request header block accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// A client must send its whole header block within this time (also
    /// on the admin listener).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1.1 keep-alive, HTTP/2 with GOAWAY; also on the admin
    /// listener).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections served at once; a connection beyond it is answered
    /// `503` and closed (counted in `ado_proxy_connections_refused_total`).
    pub max_connections: usize,
    /// Requests in flight at once across all connections (HTTP/2 streams
    /// count one each; each may hold an upstream connection); a request
    /// beyond it is answered `503` naming this key.
    pub max_requests: usize,
    /// HTTP/2 streams one client connection may have open at once (its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`): also the most upstream
    /// connections one client connection can use.
    pub max_concurrent_streams: u32,
    /// Serving threads, each with its own listening socket
    /// (`SO_REUSEPORT`) and upstream connections; 0 means one per core the
    /// process may use (its CPU quota counted).
    pub workers: usize,
    /// WebSocket and other upgraded connections tunnelled at once; an
    /// upgrade beyond it is refused with 503 naming this key.
    pub max_tunnels: usize,
    /// A tunnel with no byte in either direction for this long is closed.
    #[serde(with = "humantime_serde")]
    pub tunnel_idle_timeout: Duration,
    /// Upgrade protocols tunnelled (`Upgrade:` tokens, or the HTTP/2
    /// extended CONNECT `:protocol`); any other upgrade is not tunnelled
    /// (HTTP/1.1: served as a plain request; HTTP/2: refused).
    pub tunnel_protocols: Vec<String>,
    /// Origins (`https://app.example.com`) of single-page apps that may
    /// call the proxy from the browser with credentials (CORS). Empty:
    /// every other origin's request is refused as cross-site.
    pub cors_allowed_origins: Vec<String>,
    /// Host names (optionally `name:port`) clients may use besides the
    /// `public_url` host, `localhost` and IP addresses, e.g. a Kubernetes
    /// Service name. Any other `Host` is refused with 421 before a
    /// credential is attached (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

/// `[admin]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub address: SocketAddr,
    /// Host names (optionally `name:port`) the admin listener answers to
    /// besides the `public_url` host, `localhost` and IP addresses; any
    /// other `Host` gets 421 (a rebinding page would read `/metrics`).
    pub allowed_hosts: Vec<String>,
}

/// `[upstream]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    /// Base URL of Azure DevOps; `/{org}/...` is forwarded below it.
    pub url: Url,
    /// Time allowed to open a TCP (and TLS) connection upstream.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive. A body
    /// that keeps streaming afterwards is never cut.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// With `allowed_organizations` set, whether deployment-wide hosts
    /// (`app_vssps`: profiles, accounts, no organization in their paths)
    /// stay reachable; `false` refuses them like a path without an
    /// organization.
    pub deployment_hosts: bool,
    /// Idle pooled upstream connections are closed after this.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// When non-empty, only these organizations (first path segment,
    /// case-insensitive) may be reached; others get 403.
    pub allowed_organizations: Vec<String>,
    /// Extra PEM CA certificates trusted for upstream TLS, on top of the
    /// built-in web PKI roots (corporate TLS inspection, test servers).
    pub ca_file: Option<PathBuf>,
    /// Azure DevOps' sibling hosts, reachable as `/.hosts/{name}/...`.
    pub hosts: BTreeMap<String, Url>,
    /// Cookies of the client that are forwarded upstream (by name). None
    /// by default: the proxy drops upstream `Set-Cookie`, so every cookie
    /// a client holds belongs to another application on the same host.
    pub forward_cookies: Vec<String>,
    /// An HTTP egress proxy (`http://host:port`) for every outbound
    /// connection but managed identity's, tunnelling with CONNECT;
    /// `"none"` connects directly whatever the environment says. Unset:
    /// `HTTPS_PROXY`, `http_proxy` (lower case only), `ALL_PROXY` and
    /// `NO_PROXY` (either case), as curl reads them.
    pub egress_proxy: Option<String>,
    /// File holding `user:password` for the egress proxy's Basic
    /// authentication (read at start).
    pub egress_proxy_credentials_file: Option<PathBuf>,
    /// Hosts reached directly, not through the egress proxy: host names
    /// (their subdomains too), IP addresses, CIDR ranges, `*`. Replaces
    /// `NO_PROXY` when set.
    pub no_proxy: Vec<String>,
    /// The proxy variables of the environment, captured at load.
    #[serde(skip)]
    pub proxy_environment: ProxyEnvironment,
    /// The egress decision of the keys above and the environment, made
    /// at load (the credentials file read once).
    #[serde(skip)]
    pub egress: EgressPlan,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, or `ado_auth_proxy=debug,info`.
    pub level: String,
    /// One audit line (target `audit`) per forwarded or refused request,
    /// whatever `level` says: who, with which credential, what, and the
    /// answer; never a token, cookie or query string.
    pub audit: bool,
    /// Audit lines carry the user's UPN beside the object id.
    pub audit_names: bool,
}

/// How the sign-in app proves itself (`auth.client_credential`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCredential {
    /// `client_secret_file` or the secret in the environment.
    Secret,
    /// `client_certificate_file` and `client_key_file`.
    Certificate,
    /// Any OpenID Connect token in `federated_token_file`.
    Federated,
    /// Azure Workload Identity's projected token (`federated_token_file`,
    /// from `AZURE_FEDERATED_TOKEN_FILE`).
    WorkloadIdentity,
    /// A managed identity's token as the assertion (not in mode `user`
    /// yet).
    ManagedIdentityFederation,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Where the credential sent upstream comes from.
    pub mode: AuthMode,
    /// File holding a personal access token (mode `pat`); re-read when it
    /// changes, so a rotated secret needs no restart.
    pub pat_file: Option<PathBuf>,
    /// The personal access token itself. Only accepted from the
    /// environment (`ADO_AUTH_PROXY_AUTH__PAT`), never from the file.
    pub pat: Option<Secret>,
    /// Mode `pat` (and source `pat`): at start, try the token once against each of
    /// `upstream.allowed_organizations` and log whether it works.
    pub check_pat_at_start: bool,
    /// Mode `user`: who signs users in.
    pub provider: Option<Provider>,
    /// `entra`: the directory: a tenant GUID (best), a verified domain,
    /// `organizations` or `common`.
    pub tenant: Option<String>,
    /// The application (client) id registered with the provider.
    pub client_id: Option<String>,
    /// File holding the client secret (for `azure-devops`: the app's
    /// "Client Secret", a JWT).
    pub client_secret_file: Option<PathBuf>,
    /// A second client secret file, for rotation: the app's other secret
    /// slot. When the provider refuses one secret as invalid, the proxy
    /// tries the other and keeps using whichever works.
    pub client_secret_next_file: Option<PathBuf>,
    /// The client secret itself; only from the environment
    /// (`ADO_AUTH_PROXY_AUTH__CLIENT_SECRET`).
    pub client_secret: Option<Secret>,
    /// `entra`: PEM certificate registered on the app; with
    /// `client_key_file` the proxy authenticates with a signed client
    /// assertion (`private_key_jwt`) instead of a secret.
    pub client_certificate_file: Option<PathBuf>,
    /// `entra`: PEM RSA private key of `client_certificate_file`.
    pub client_key_file: Option<PathBuf>,
    /// Mode `user`: how the sign-in app proves itself at every token
    /// call: `secret`, `certificate`, or `federated` / `workload-identity`
    /// (the token in `federated_token_file`, re-read per call, is the
    /// client assertion; no secret in the cluster). Inferred when unset:
    /// a secret, else a certificate, else the federated token file.
    pub client_credential: Option<ClientCredential>,
    /// `entra`: `https://login.microsoftonline.com` (sovereign clouds
    /// differ); `azure-devops`: `https://app.vssps.visualstudio.com`.
    pub authority_host: Option<Url>,
    /// `oidc`: the issuer; `/.well-known/openid-configuration` below it is
    /// read on first use.
    pub issuer_url: Option<Url>,
    /// Scopes to request; the default depends on the provider.
    pub scopes: Option<Vec<String>>,
    /// How the provider returns the code: `query` or `form_post`.
    pub response_mode: ResponseMode,
    /// Tenants (GUIDs) whose users may sign in. Default: the configured
    /// tenant when it is a GUID or domain; `["*"]` allows any.
    pub allowed_tenants: Vec<String>,
    /// When non-empty, only these users (UPN, email or object id,
    /// case-insensitive) may sign in; an email only when the provider
    /// vouches for it (docs/providers.md lists the claims per provider).
    pub allowed_users: Vec<String>,
    /// When non-empty, only users whose UPN, or email the provider
    /// vouches for, ends in `@` one of these domains may sign in.
    pub allowed_email_domains: Vec<String>,
    /// Entra: when non-empty, only members (transitively) of one of these
    /// groups (object ids) may use the proxy; checked at sign-in and at
    /// every refresh.
    pub allowed_groups: Vec<String>,
    /// Entra: when non-empty, only users holding one of these app roles
    /// (the `roles` claim) may use the proxy.
    pub allowed_roles: Vec<String>,
    /// Microsoft Graph, asked for a user's groups when their token has
    /// too many to carry (sovereign clouds, tests).
    pub graph_url: Url,
    /// An access token this close to expiry is refreshed before use.
    #[serde(with = "humantime_serde")]
    pub refresh_before: Duration,
    /// Least time between two token refreshes forced by Azure DevOps
    /// refusing a token that had not expired (also at most one per
    /// token). Requests refused meanwhile get Azure DevOps' answer.
    #[serde(with = "humantime_serde")]
    pub forced_refresh_interval: Duration,
    /// Time a user has to finish signing in at the provider.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Mode `user`: signed-in users may create personal proxy tokens at
    /// `/.auth/tokens` for git and other programs. Unset: on with the
    /// Entra provider (whose refresh tokens a token's session may use
    /// beside the browser's), off with the others.
    pub personal_tokens: Option<bool>,
    /// Mode `user`, Entra: a request carrying its own Entra access token
    /// for Azure DevOps (signed by an admitted tenant, not expired, its
    /// user on the allowlists) is forwarded with it, without a session.
    pub accept_client_tokens: bool,
    /// The longest lifetime of a personal proxy token.
    #[serde(with = "humantime_serde")]
    pub max_token_lifetime: Duration,
    /// Personal proxy tokens one user may hold at once (each is a copy of
    /// the user's refresh token); one more is refused naming this key.
    pub max_tokens_per_user: usize,
    /// Mode `user`, Entra, tenant `organizations` or `common`: how long
    /// an organization's directory, once discovered, is believed.
    #[serde(with = "humantime_serde")]
    pub organization_tenant_ttl: Duration,
    /// Time allowed for one call to the provider (token, keys, discovery).
    #[serde(with = "humantime_serde")]
    pub provider_timeout: Duration,
    /// Mode `service`: where the token comes from.
    pub source: Option<ServiceSource>,
    /// Workload identity and source `federated`: the OpenID Connect
    /// token presented as the client assertion, re-read for every
    /// exchange. Workload identity defaults it to
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub federated_token_file: Option<PathBuf>,
    /// Source `managed-identity-federation`: the audience of the managed
    /// identity's token, as the app's federated credential names it.
    pub federated_audience: String,
    /// Managed identity: the token endpoint. Defaults to
    /// `IDENTITY_ENDPOINT` (App Service), else Azure IMDS.
    pub managed_identity_endpoint: Option<Url>,
    /// Managed identity: App Service's `IDENTITY_HEADER` (environment
    /// only).
    pub managed_identity_header: Option<Secret>,
    /// Managed identity: the client id of a user-assigned identity.
    pub managed_identity_client_id: Option<String>,
    /// Source `device-code`: an operator may also sign the service
    /// identity in through the browser at `/.auth/login` (only accounts in
    /// `allowed_users`).
    pub allow_browser_login: bool,
    /// Mode `service` (and `pat`) on a non-loopback address: set to true
    /// to accept callers from the network at all.
    pub allow_remote_callers: bool,
    /// Callers allowed (CIDRs or addresses, e.g. `["10.0.0.0/8"]`); when
    /// set, every other caller (loopback included) is refused.
    pub allowed_client_cidrs: Vec<String>,
    /// A file holding a shared secret every caller must send in the
    /// `X-Ado-Proxy-Caller-Secret` header.
    pub caller_secret_file: Option<PathBuf>,
}

/// How the proxy authenticates upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Pass the client's own `Authorization` header through.
    None,
    /// Send a personal access token as `Basic base64(":" + pat)`.
    Pat,
    /// Sign users in through a provider; each session's token is sent.
    User,
    /// Act as one fixed identity (a service principal, a managed
    /// identity, a device-code sign-in or a PAT) for every caller.
    Service,
}

/// Where mode `service` gets its token (`auth.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceSource {
    /// An Entra app with a client secret or certificate.
    ClientCredentials,
    /// Azure Workload Identity: the projected Kubernetes token is the
    /// client assertion.
    WorkloadIdentity,
    /// Any OpenID Connect token file (GitHub Actions, another cloud's
    /// workload identity, SPIFFE) as the client assertion of an Entra
    /// app that trusts its issuer (a federated identity credential).
    Federated,
    /// Azure IMDS or App Service's identity endpoint.
    ManagedIdentity,
    /// A managed identity's token as the client assertion of an Entra app,
    /// possibly in another tenant (the app trusts the identity).
    ManagedIdentityFederation,
    /// A user signed in once with `ado-auth-proxy login` (device code).
    DeviceCode,
    /// A personal access token (`pat_file` or `ADO_AUTH_PROXY_AUTH__PAT`).
    Pat,
}

/// Who signs users in (mode `user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Microsoft Entra ID (v2 endpoints): the recommended model.
    Entra,
    /// Legacy Azure DevOps OAuth (`app.vssps.visualstudio.com`).
    AzureDevops,
    /// Any OpenID Connect issuer, by discovery.
    Oidc,
}

/// How the authorization response reaches `/.auth/callback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// `GET /.auth/callback?code=...`.
    Query,
    /// `POST /.auth/callback` with a form body.
    FormPost,
}

/// `[session]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Name of the session cookie; prefixed `__Host-` when `public_url` is
    /// https.
    pub cookie_name: String,
    /// A session unused for this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however active.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Where sessions are kept: `embedded` (a file database, the
    /// default), `redis` (shared by replicas) or `memory` (lost on
    /// restart).
    pub store: StoreKind,
    /// The embedded database file.
    pub path: PathBuf,
    /// Keys that seal stored sessions, one base64 key per line; the first
    /// seals, all open. Created beside the embedded database when unset;
    /// required for `redis`.
    pub encryption_keys_file: Option<PathBuf>,
    /// `redis://[user:password@]host:port/db` or `rediss://...` (TLS).
    pub redis_url: Option<Secret>,
    /// A file holding the Redis password, instead of writing it into
    /// `redis_url`.
    pub redis_password_file: Option<PathBuf>,
    /// Sentinels (`host:port`) that name the master, instead of
    /// `redis_url`: a failover is followed.
    pub redis_sentinels: Vec<String>,
    /// The master's name the sentinels monitor.
    pub redis_sentinel_master: Option<String>,
    /// A file holding the sentinels' own password, when they ask for one.
    pub redis_sentinel_password_file: Option<PathBuf>,
    /// PEM CA certificates that sign the Redis server's certificate
    /// (`rediss://` with a private CA), instead of the system's roots.
    pub redis_ca_file: Option<PathBuf>,
    /// The proxy's client certificate (PEM), for a Redis server that
    /// demands one (`rediss://`).
    pub redis_client_certificate_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub redis_client_key_file: Option<PathBuf>,
    /// Prefix of every Redis key the proxy writes.
    pub key_prefix: String,
    /// Time to connect to Redis.
    #[serde(with = "humantime_serde")]
    pub redis_connect_timeout: Duration,
    /// Time for one Redis command.
    #[serde(with = "humantime_serde")]
    pub redis_command_timeout: Duration,
    /// With Redis, how often a replica re-reads a cached session, so a
    /// sign-out on another replica takes effect here within this time.
    #[serde(with = "humantime_serde")]
    pub revalidate_interval: Duration,
}

/// `session.store`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// A database file inside the process (redb).
    Embedded,
    /// A Redis server shared by replicas.
    Redis,
    /// Process memory only.
    Memory,
}

/// Azure DevOps' resource id in Entra.
pub const ADO_RESOURCE: &str = "499b84ac-1321-427f-aa17-267ca6975798";

/// The audience Entra expects of a federated credential's token in the
/// public cloud (`api://AzureADTokenExchangeUSGov` and
/// `api://AzureADTokenExchangeChina` in the national clouds).
pub const DEFAULT_FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

// === impl defaults ===

/// Default sibling hosts: `name` → `https://{name}.dev.azure.com`, plus
/// `app_vssps` (profile, accounts, legacy OAuth).
pub const DEFAULT_SIBLING_HOSTS: &[&str] = &[
    "vssps",
    "vsrm",
    "feeds",
    "pkgs",
    "almsearch",
    "analytics",
    "vsaex",
    "extmgmt",
    "auditservice",
    "advsec",
    "vstmr",
];

/// The sibling host whose paths are deployment-wide, not per organization.
pub const APP_VSSPS: &str = "app_vssps";

fn parse_static_url(s: &str) -> Url {
    // Only called with the literals below, which are valid URLs.
    Url::parse(s).unwrap_or_else(|e| panic!("built-in URL {s}: {e}"))
}

// === impl Config ===

impl Config {
    /// The effective configuration as TOML, secrets redacted
    /// (what `check-config` prints).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

impl ListenConfig {
    /// Whether the listener speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert_file.is_some() && self.tls_key_file.is_some()
    }
}
