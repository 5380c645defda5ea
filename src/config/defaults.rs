//! The default of every configuration section: what an empty file means,
//! and the values that default by provider.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            tls_cert_file: None,
            tls_key_file: None,
            shutdown_grace: Duration::from_secs(25),
            shutdown_delay: Duration::from_secs(5),
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_connections: 10_000,
            max_requests: 1_000,
            max_concurrent_streams: 100,
            max_tunnels: 1_000,
            workers: 0,
            tunnel_idle_timeout: Duration::from_secs(300),
            tunnel_protocols: vec!["websocket".into()],
            cors_allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 9090)),
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        let mut hosts: BTreeMap<String, Url> = DEFAULT_SIBLING_HOSTS
            .iter()
            .map(|n| {
                let url = parse_static_url(&format!("https://{n}.dev.azure.com"));
                (n.to_string(), url)
            })
            .collect();
        hosts.insert(
            APP_VSSPS.to_string(),
            parse_static_url("https://app.vssps.visualstudio.com"),
        );
        Self {
            url: parse_static_url("https://dev.azure.com"),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(120),
            pool_idle_timeout: Duration::from_secs(90),
            allowed_organizations: Vec::new(),
            deployment_hosts: true,
            ca_file: None,
            hosts,
            forward_cookies: Vec::new(),
            egress_proxy: None,
            egress_proxy_credentials_file: None,
            no_proxy: Vec::new(),
            proxy_environment: Default::default(),
            egress: Default::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_string(),
            audit: false,
            audit_names: true,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            pat_file: None,
            check_pat_at_start: true,
            pat: None,
            provider: None,
            tenant: None,
            client_id: None,
            client_secret_file: None,
            client_secret_next_file: None,
            client_secret: None,
            client_certificate_file: None,
            client_key_file: None,
            client_credential: None,
            authority_host: None,
            issuer_url: None,
            scopes: None,
            response_mode: ResponseMode::Query,
            allowed_tenants: Vec::new(),
            allowed_users: Vec::new(),
            allowed_email_domains: Vec::new(),
            allowed_groups: Vec::new(),
            allowed_roles: Vec::new(),
            graph_url: parse_static_url("https://graph.microsoft.com"),
            refresh_before: Duration::from_secs(5 * 60),
            forced_refresh_interval: Duration::from_secs(5),
            login_timeout: Duration::from_secs(10 * 60),
            organization_tenant_ttl: Duration::from_secs(60 * 60),
            personal_tokens: None,
            accept_client_tokens: false,
            max_token_lifetime: Duration::from_secs(90 * 86_400),
            max_tokens_per_user: 50,
            provider_timeout: Duration::from_secs(15),
            source: None,
            federated_token_file: None,
            federated_audience: DEFAULT_FEDERATED_AUDIENCE.to_string(),
            managed_identity_endpoint: None,
            managed_identity_header: None,
            managed_identity_client_id: None,
            allow_browser_login: false,
            allow_remote_callers: false,
            allowed_client_cidrs: Vec::new(),
            caller_secret_file: None,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: "ado_proxy_session".to_string(),
            idle_timeout: Duration::from_secs(8 * 3600),
            max_lifetime: Duration::from_secs(7 * 24 * 3600),
            store: StoreKind::Embedded,
            path: PathBuf::from("./data/sessions.db"),
            encryption_keys_file: None,
            redis_url: None,
            redis_password_file: None,
            redis_sentinels: Vec::new(),
            redis_sentinel_master: None,
            redis_sentinel_password_file: None,
            redis_ca_file: None,
            redis_client_certificate_file: None,
            redis_client_key_file: None,
            key_prefix: "ado-auth-proxy:".to_string(),
            redis_connect_timeout: Duration::from_secs(5),
            redis_command_timeout: Duration::from_secs(2),
            revalidate_interval: Duration::from_secs(30),
        }
    }
}

impl AuthConfig {
    /// The scopes to request: configured, or the provider's default.
    pub fn effective_scopes(&self) -> Vec<String> {
        if let Some(s) = &self.scopes {
            return s.clone();
        }
        let list: &[&str] = match self.provider {
            Some(Provider::Entra) | None => &[
                "499b84ac-1321-427f-aa17-267ca6975798/.default",
                "offline_access",
                "openid",
                "profile",
                "email",
            ],
            Some(Provider::AzureDevops) => &["vso.profile", "vso.code_write", "vso.work_write"],
            Some(Provider::Oidc) => &["openid", "offline_access", "profile", "email"],
        };
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Whether personal proxy tokens are on: mode `user` with Entra,
    /// unless `personal_tokens = false`.
    pub fn personal_tokens_on(&self) -> bool {
        self.mode == AuthMode::User
            && self.provider == Some(Provider::Entra)
            && self.personal_tokens != Some(false)
    }

    /// The authority host: configured, or the provider's default.
    pub fn effective_authority(&self) -> Url {
        if let Some(u) = &self.authority_host {
            return u.clone();
        }
        match self.provider {
            Some(Provider::AzureDevops) => parse_static_url("https://app.vssps.visualstudio.com"),
            _ => parse_static_url("https://login.microsoftonline.com"),
        }
    }
}
