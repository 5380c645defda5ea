//! Checks serde cannot express: combinations of keys, URL shapes, readable
//! and parseable files (PAT, TLS certificates and keys). Pure apart from
//! reading the named files; returns every problem.

use std::path::Path;
use std::time::Duration;

use url::Url;

use super::load::Problem;
use super::{AuthConfig, AuthMode, Config, Provider, ServiceSource, SessionConfig, StoreKind};

/// The smallest header limit hyper accepts.
const MIN_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Every problem with `config`; empty when it is usable.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    listen(config, &mut out);
    upstream(config, &mut out);
    auth(config, &mut out);
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        out.push(Problem::new(
            "log.level",
            format!("not a log filter ({e}); write e.g. \"info\", \"debug\" or \"ado_auth_proxy=debug,info\""),
        ));
    }
    out
}

fn listen(config: &Config, out: &mut Vec<Problem>) {
    let l = &config.listen;
    match (&l.tls_cert_file, &l.tls_key_file) {
        (Some(_), None) => out.push(Problem::new(
            "listen.tls_key_file",
            "missing: listen.tls_cert_file is set, so the private key file is needed too",
        )),
        (None, Some(_)) => out.push(Problem::new(
            "listen.tls_cert_file",
            "missing: listen.tls_key_file is set, so the certificate chain file is needed too",
        )),
        (Some(c), Some(k)) => {
            let before = out.len();
            readable("listen.tls_cert_file", c, out);
            readable("listen.tls_key_file", k, out);
            if out.len() == before
                && let Err(e) = crate::tls::server_config(c, k)
            {
                out.push(Problem::new(e.key, e.message));
            }
        }
        (None, None) => {}
    }
    if let Some(url) = &l.public_url {
        http_url("listen.public_url", url, out);
    }
    positive("listen.shutdown_grace", l.shutdown_grace, out);
    positive("listen.header_read_timeout", l.header_read_timeout, out);
    positive("listen.idle_timeout", l.idle_timeout, out);
    if !(1..=1_000_000).contains(&l.max_connections) {
        out.push(Problem::new(
            "listen.max_connections",
            "must be between 1 and 1000000 (10000 is the default)",
        ));
    }
    for (i, host) in l.allowed_hosts.iter().enumerate() {
        if crate::host::HostName::parse(host).is_none() {
            out.push(Problem::new(
                format!("listen.allowed_hosts[{i}]"),
                format!(
                    "\"{host}\" is not a host name: write a name such as \"ado-proxy.tools.svc\" \
                     or \"name:8080\", without scheme or path"
                ),
            ));
        }
    }
    if l.shutdown_delay >= l.shutdown_grace {
        out.push(Problem::new(
            "listen.shutdown_delay",
            format!(
                "must be shorter than listen.shutdown_grace ({}), which it is counted in",
                humantime::format_duration(l.shutdown_grace)
            ),
        ));
    }
    if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&l.max_header_bytes) {
        out.push(Problem::new(
            "listen.max_header_bytes",
            format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}"),
        ));
    }
    if l.address == config.admin.address && l.address.port() != 0 {
        out.push(Problem::new(
            "admin.address",
            format!(
                "is the same as listen.address ({}); give the admin listener its own port",
                l.address
            ),
        ));
    }
}

fn upstream(config: &Config, out: &mut Vec<Problem>) {
    forward_cookies(config, out);
    let u = &config.upstream;
    http_url("upstream.url", &u.url, out);
    positive("upstream.connect_timeout", u.connect_timeout, out);
    positive("upstream.response_timeout", u.response_timeout, out);
    if let Some(ca) = &u.ca_file
        && let Err(e) = crate::tls::client_config(Some(ca))
    {
        out.push(Problem::new(e.key, e.message));
    }
    for (name, url) in &u.hosts {
        let key = format!("upstream.hosts.{name}");
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid_name {
            out.push(Problem::new(
                key.clone(),
                "host names may use only a-z, 0-9, '_' and '-' (they appear in /.hosts/{name}/ paths)",
            ));
        }
        http_url(&key, url, out);
    }
    for (i, org) in u.allowed_organizations.iter().enumerate() {
        let bad = org.is_empty()
            || org
                .chars()
                .any(|c| c == '/' || c == '?' || c == '#' || c.is_whitespace());
        if bad {
            out.push(Problem::new(
                format!("upstream.allowed_organizations[{i}]"),
                format!(
                    "\"{org}\" is not an organization name (write just the name, e.g. \"contoso\")"
                ),
            ));
        }
    }
}

/// `upstream.forward_cookies`: cookie names, never the proxy's own.
fn forward_cookies(config: &Config, out: &mut Vec<Problem>) {
    let own = &config.session.cookie_name;
    for (i, name) in config.upstream.forward_cookies.iter().enumerate() {
        let key = format!("upstream.forward_cookies[{i}]");
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !token {
            out.push(Problem::new(
                key,
                format!("\"{name}\" is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
            ));
        } else if name.trim_start_matches("__Host-").starts_with(own.as_str()) {
            out.push(Problem::new(
                key,
                format!(
                    "\"{name}\" is the proxy's own cookie (session.cookie_name = \"{own}\"); it \
                     never leaves the proxy"
                ),
            ));
        }
    }
}

fn auth(config: &Config, out: &mut Vec<Problem>) {
    let a = &config.auth;
    if matches!(a.mode, AuthMode::Pat | AuthMode::Service) {
        callers(config, out);
    }
    match a.mode {
        AuthMode::Service => service(config, out),
        AuthMode::Pat => pat(a, out),
        AuthMode::User => user(config, out),
        AuthMode::None => {
            if a.pat_file.is_some() || a.pat.is_some() {
                out.push(Problem::new(
                    "auth.mode",
                    "a personal access token is configured but mode is \"none\", so it would be \
                     ignored; set mode = \"pat\" or remove the token",
                ));
            }
        }
    }
}

/// A fixed identity on a network address: anyone who reaches it acts as
/// that identity, so it must be asked for, with a way to tell callers
/// apart.
fn callers(config: &Config, out: &mut Vec<Problem>) {
    let a = &config.auth;
    for c in &a.allowed_client_cidrs {
        if let Err(e) = super::Cidr::parse(c) {
            out.push(Problem::new("auth.allowed_client_cidrs", e));
        }
    }
    if let Some(path) = &a.caller_secret_file {
        match std::fs::read_to_string(path) {
            Ok(s) if s.trim().len() < 16 => out.push(Problem::new(
                "auth.caller_secret_file",
                format!(
                    "{} holds fewer than 16 characters; use a long random value (e.g. \
                     `ado-auth-proxy keygen`)",
                    path.display()
                ),
            )),
            Ok(_) => {}
            Err(e) => out.push(Problem::new(
                "auth.caller_secret_file",
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }
    let ip = config.listen.address.ip();
    if ip.is_loopback() {
        return;
    }
    let addr = config.listen.address;
    if !a.allow_remote_callers {
        out.push(Problem::new(
            "auth.allow_remote_callers",
            format!(
                "listen.address {addr} is reachable from the network, and anyone who reaches a \
                 mode \"{}\" proxy acts as its identity; bind 127.0.0.1 (a sidecar's callers \
                 share its network namespace), or set allow_remote_callers = true together with \
                 allowed_client_cidrs or caller_secret_file",
                if a.mode == AuthMode::Pat {
                    "pat"
                } else {
                    "service"
                }
            ),
        ));
    } else if a.allowed_client_cidrs.is_empty() && a.caller_secret_file.is_none() {
        out.push(Problem::new(
            "auth.allowed_client_cidrs",
            format!(
                "allow_remote_callers = true on {addr} needs a way to tell callers apart: set \
                 allowed_client_cidrs (e.g. [\"10.0.0.0/8\"]) or caller_secret_file, or both"
            ),
        ));
    }
}

/// Mode `service`: the source and what it needs.
fn service(config: &Config, out: &mut Vec<Problem>) {
    let a = &config.auth;
    if a.allow_browser_login && a.source != Some(ServiceSource::DeviceCode) {
        out.push(Problem::new(
            "auth.allow_browser_login",
            "only used with source = \"device-code\"",
        ));
    }
    let Some(source) = a.source else {
        out.push(Problem::new(
            "auth.source",
            "missing: mode \"service\" needs a source: \"client-credentials\", \
             \"workload-identity\", \"managed-identity\", \"device-code\" or \"pat\"",
        ));
        return;
    };
    let needs_app = |id_env: &str, tenant_env: &str, out: &mut Vec<Problem>| {
        if a.client_id.as_deref().is_none_or(|c| c.trim().is_empty()) {
            out.push(Problem::new(
                "auth.client_id",
                format!("missing: set the Entra application (client) id{id_env}"),
            ));
        }
        match a.tenant.as_deref().map(str::trim) {
            None | Some("") => out.push(Problem::new(
                "auth.tenant",
                format!("missing: set the directory (tenant) id{tenant_env}"),
            )),
            Some(t) if matches!(t, "common" | "organizations" | "consumers") => {
                out.push(Problem::new(
                    "auth.tenant",
                    format!("\"{t}\" cannot issue app-only tokens; set the tenant GUID or domain"),
                ))
            }
            _ => {}
        }
    };
    match source {
        ServiceSource::Pat => pat(a, out),
        ServiceSource::ClientCredentials => {
            needs_app("", "", out);
            let secret = a.client_secret_file.is_some() || a.client_secret.is_some();
            let cert = a.client_certificate_file.is_some() || a.client_key_file.is_some();
            if !secret && !cert {
                out.push(Problem::new(
                    "auth.client_secret_file",
                    "missing: source \"client-credentials\" needs auth.client_secret_file (or \
                     ADO_AUTH_PROXY_AUTH__CLIENT_SECRET), or auth.client_certificate_file with \
                     auth.client_key_file",
                ));
            } else {
                client_credential(a, Provider::Entra, out);
            }
        }
        ServiceSource::WorkloadIdentity => {
            needs_app(" (or AZURE_CLIENT_ID)", " (or AZURE_TENANT_ID)", out);
            match &a.federated_token_file {
                None => out.push(Problem::new(
                    "auth.federated_token_file",
                    "missing: set it, or AZURE_FEDERATED_TOKEN_FILE (the Azure Workload Identity \
                     webhook sets it when the pod's service account is annotated with \
                     azure.workload.identity/client-id and the pod labelled \
                     azure.workload.identity/use: \"true\")",
                )),
                Some(path) => readable("auth.federated_token_file", path, out),
            }
        }
        ServiceSource::ManagedIdentity => {
            if let Some(url) = &a.managed_identity_endpoint {
                http_url("auth.managed_identity_endpoint", url, out);
            }
        }
        ServiceSource::DeviceCode => {
            needs_app(" (a public client: \"Allow public client flows\")", "", out);
            store(&config.session, out);
            if a.allow_browser_login && a.allowed_users.is_empty() {
                out.push(Problem::new(
                    "auth.allowed_users",
                    "allow_browser_login = true lets whoever signs in at /.auth/login become the \
                     proxy's identity; list the accounts allowed to (UPN, email or object id)",
                ));
            }
            if a.allow_browser_login {
                multi_tenant_needs_allowlist(a, out);
            }
        }
    }
}

fn pat(a: &AuthConfig, out: &mut Vec<Problem>) {
    match (&a.pat_file, &a.pat) {
        (None, None) => out.push(Problem::new(
            "auth.pat_file",
            "missing: mode \"pat\" needs a personal access token; set auth.pat_file to a file \
                 holding it, or set ADO_AUTH_PROXY_AUTH__PAT",
        )),
        (Some(_), Some(_)) => out.push(Problem::new(
            "auth.pat_file",
            "both auth.pat_file and ADO_AUTH_PROXY_AUTH__PAT are set; keep one",
        )),
        (Some(path), None) => secret_file("auth.pat_file", path, "the personal access token", out),
        (None, Some(pat)) if pat.expose().trim().is_empty() => out.push(Problem::new(
            "auth.pat",
            "ADO_AUTH_PROXY_AUTH__PAT is empty",
        )),
        (None, Some(_)) => {}
    }
}

fn user(config: &Config, out: &mut Vec<Problem>) {
    let a = &config.auth;
    let Some(provider) = a.provider else {
        out.push(Problem::new(
            "auth.provider",
            "missing: mode \"user\" needs a provider: \"entra\", \"azure-devops\" or \"oidc\"",
        ));
        return;
    };
    if a.client_id.as_deref().is_none_or(|c| c.trim().is_empty()) {
        out.push(Problem::new(
            "auth.client_id",
            "missing: set it to the application (client) id registered with the provider",
        ));
    }
    client_credential(a, provider, out);
    match provider {
        Provider::Entra => entra(a, out),
        Provider::Oidc => {
            if a.issuer_url.is_none() {
                out.push(Problem::new(
                    "auth.issuer_url",
                    "missing: provider \"oidc\" needs the issuer URL, e.g. \"https://idp.example.com\"",
                ));
            }
        }
        Provider::AzureDevops => {}
    }
    for (key, url) in [
        ("auth.issuer_url", &a.issuer_url),
        ("auth.authority_host", &a.authority_host),
    ] {
        if let Some(url) = url {
            http_url(key, url, out);
        }
    }
    if a.effective_scopes().is_empty() {
        out.push(Problem::new("auth.scopes", "must not be empty"));
    }
    positive("auth.login_timeout", a.login_timeout, out);
    positive("auth.provider_timeout", a.provider_timeout, out);
    let s = &config.session;
    positive("session.idle_timeout", s.idle_timeout, out);
    positive("session.max_lifetime", s.max_lifetime, out);
    let name_ok = !s.cookie_name.is_empty()
        && s.cookie_name.len() <= 64
        && s.cookie_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !s.cookie_name.starts_with("__");
    if !name_ok {
        out.push(Problem::new(
            "session.cookie_name",
            "use 1 to 64 letters, digits, '_', '-' or '.', not starting with \"__\" (the proxy adds \
             the __Host- prefix itself when public_url is https)",
        ));
    }
    store(s, out);
}

/// `[session]` store settings: the backend's own keys and the key file.
fn store(s: &SessionConfig, out: &mut Vec<Problem>) {
    if let Some(path) = &s.encryption_keys_file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Err(e) = crate::seal::parse_keys(&text) {
                    out.push(Problem::new(
                        "session.encryption_keys_file",
                        format!("{}: {e}", path.display()),
                    ));
                }
            }
            Err(e) => out.push(Problem::new(
                "session.encryption_keys_file",
                format!(
                    "cannot read {}: {e}; create it with `ado-auth-proxy keygen > {}` (mode 0600)",
                    path.display(),
                    path.display()
                ),
            )),
        }
    }
    match s.store {
        StoreKind::Embedded => {
            if s.path.as_os_str().is_empty() {
                out.push(Problem::new(
                    "session.path",
                    "must name the database file, e.g. \"./data/sessions.db\"",
                ));
            } else if s.path.is_dir() {
                out.push(Problem::new(
                    "session.path",
                    format!(
                        "{} is a directory; name the database file inside it, e.g. \"{}\"",
                        s.path.display(),
                        s.path.join("sessions.db").display()
                    ),
                ));
            }
        }
        StoreKind::Redis => {
            match &s.redis_url {
                None => out.push(Problem::new(
                    "session.redis_url",
                    "missing: store \"redis\" needs the server, e.g. \"redis://redis:6379/0\" \
                     (or ADO_AUTH_PROXY_SESSION__REDIS_URL, to keep a password out of the file)",
                )),
                Some(url) => {
                    if let Err(why) = redis_url(url.expose()) {
                        out.push(Problem::new("session.redis_url", why));
                    }
                }
            }
            if s.encryption_keys_file.is_none() {
                out.push(Problem::new(
                    "session.encryption_keys_file",
                    "missing: store \"redis\" needs a key file shared by every replica; create \
                     one with `ado-auth-proxy keygen > keys` and mount it on all of them",
                ));
            }
            if let Some(path) = &s.redis_password_file {
                secret_file(
                    "session.redis_password_file",
                    path,
                    "the Redis password",
                    out,
                );
            }
            if let Some(path) = &s.redis_ca_file {
                readable("session.redis_ca_file", path, out);
                let tls = s
                    .redis_url
                    .as_ref()
                    .is_some_and(|u| u.expose().trim_start().starts_with("rediss://"));
                if !tls {
                    out.push(Problem::new(
                        "session.redis_ca_file",
                        "only used with TLS: write session.redis_url as rediss://...",
                    ));
                }
            }
            positive(
                "session.redis_connect_timeout",
                s.redis_connect_timeout,
                out,
            );
            positive(
                "session.redis_command_timeout",
                s.redis_command_timeout,
                out,
            );
            positive("session.revalidate_interval", s.revalidate_interval, out);
            if s.key_prefix.len() > 128 {
                out.push(Problem::new(
                    "session.key_prefix",
                    "longer than 128 characters; use a short name such as \"ado-auth-proxy:\"",
                ));
            }
        }
        StoreKind::Memory => {}
    }
}

/// Why a Redis URL is unusable (never echoing its password).
fn redis_url(raw: &str) -> Result<(), String> {
    let url = Url::parse(raw.trim()).map_err(|e| {
        format!("not a URL ({e}); write e.g. \"redis://redis:6379/0\" or \"rediss://...\" for TLS")
    })?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "scheme \"{}\" is not supported; use redis:// or rediss:// (TLS)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("names no host; write e.g. \"redis://redis:6379/0\"".into());
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!(
            "the path must be a database number such as /0, not /{db}"
        ));
    }
    Ok(())
}

/// The proxy's own credential at the provider: a secret, or for Entra a
/// certificate; exactly one.
fn client_credential(a: &AuthConfig, provider: Provider, out: &mut Vec<Problem>) {
    let secret = a.client_secret_file.is_some() || a.client_secret.is_some();
    let cert = a.client_certificate_file.is_some() || a.client_key_file.is_some();
    if a.client_secret_file.is_some() && a.client_secret.is_some() {
        out.push(Problem::new(
            "auth.client_secret_file",
            "both auth.client_secret_file and ADO_AUTH_PROXY_AUTH__CLIENT_SECRET are set; keep one",
        ));
    }
    if let Some(path) = &a.client_secret_file {
        secret_file("auth.client_secret_file", path, "the client secret", out);
    }
    if cert && provider != Provider::Entra {
        out.push(Problem::new(
            "auth.client_certificate_file",
            "certificate credentials are supported for provider \"entra\" only; use \
             auth.client_secret_file",
        ));
        return;
    }
    if secret && cert {
        out.push(Problem::new(
            "auth.client_certificate_file",
            "both a client secret and a certificate are configured; keep one (Microsoft recommends \
             the certificate)",
        ));
    }
    match (&a.client_certificate_file, &a.client_key_file) {
        (Some(_), None) => out.push(Problem::new(
            "auth.client_key_file",
            "missing: auth.client_certificate_file is set, so its private key file is needed too",
        )),
        (None, Some(_)) => out.push(Problem::new(
            "auth.client_certificate_file",
            "missing: auth.client_key_file is set, so the certificate file is needed too",
        )),
        (Some(c), Some(k)) => {
            if let Err(e) = crate::assertion::Signer::load(c, k) {
                out.push(Problem::new(e.key, e.message));
            }
        }
        (None, None) => {}
    }
    if !secret && !cert && provider != Provider::Oidc {
        out.push(Problem::new(
            "auth.client_secret_file",
            match provider {
                Provider::Entra => {
                    "missing: the proxy needs its own credential at Entra; set \
                     auth.client_secret_file (or ADO_AUTH_PROXY_AUTH__CLIENT_SECRET), or \
                     auth.client_certificate_file with auth.client_key_file"
                }
                _ => {
                    "missing: set it to a file holding the app's \"Client Secret\" from \
                     app.vsaex.visualstudio.com (or set ADO_AUTH_PROXY_AUTH__CLIENT_SECRET)"
                }
            },
        ));
    }
}

fn entra(a: &AuthConfig, out: &mut Vec<Problem>) {
    let Some(tenant) = a.tenant.as_deref().map(str::trim) else {
        out.push(Problem::new(
            "auth.tenant",
            "missing: provider \"entra\" needs the directory: the tenant GUID (best), a verified \
             domain such as \"contoso.onmicrosoft.com\", or \"organizations\"",
        ));
        return;
    };
    let chars_ok = !tenant.is_empty()
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !chars_ok {
        out.push(Problem::new(
            "auth.tenant",
            format!("\"{tenant}\" is not a tenant GUID, domain, \"organizations\" or \"common\""),
        ));
    }
    let lower = tenant.to_ascii_lowercase();
    if lower == "consumers" {
        out.push(Problem::new(
            "auth.tenant",
            "\"consumers\" (personal Microsoft accounts) cannot get Azure DevOps tokens from an \
             Entra app; use the organization's tenant, or provider \"azure-devops\" for MSA users",
        ));
    }
    multi_tenant_needs_allowlist(a, out);
}

/// Signing users in at `common` or `organizations` admits every
/// directory: the admitted ones must be listed.
fn multi_tenant_needs_allowlist(a: &AuthConfig, out: &mut Vec<Problem>) {
    let tenant = a.tenant.as_deref().map(str::trim).unwrap_or_default();
    let multi = ["common", "organizations"]
        .iter()
        .any(|m| tenant.eq_ignore_ascii_case(m));
    if multi && a.allowed_tenants.is_empty() {
        out.push(Problem::new(
            "auth.allowed_tenants",
            format!(
                "tenant \"{tenant}\" lets users of any directory sign in; list the tenant GUIDs \
                 allowed, e.g. [\"72f988bf-86f1-41af-91ab-2d7cd011db47\"], or [\"*\"] to allow any \
                 (then only object ids in allowed_users can match: user names and emails of \
                 another directory are whatever its administrators made them)"
            ),
        ));
    }
}

/// A file that must hold a secret: readable and not empty.
fn secret_file(key: &str, path: &Path, what: &str, out: &mut Vec<Problem>) {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => out.push(Problem::new(
            key,
            format!("{} is empty; write {what} into it", path.display()),
        )),
        Ok(_) => {}
        Err(e) => out.push(Problem::new(
            key,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

fn positive(key: &str, d: Duration, out: &mut Vec<Problem>) {
    if d.is_zero() {
        out.push(Problem::new(key, "must be longer than zero, e.g. \"30s\""));
    }
}

fn readable(key: &str, path: &Path, out: &mut Vec<Problem>) {
    if let Err(e) = std::fs::File::open(path) {
        out.push(Problem::new(
            key,
            format!("cannot read {}: {e}", path.display()),
        ));
    }
}

fn http_url(key: &str, url: &Url, out: &mut Vec<Problem>) {
    if !matches!(url.scheme(), "http" | "https") {
        out.push(Problem::new(
            key,
            format!("\"{url}\" must start with https:// (or http://)"),
        ));
    } else if url.host_str().is_none_or(str::is_empty) {
        out.push(Problem::new(key, format!("\"{url}\" has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        out.push(Problem::new(
            key,
            format!("\"{url}\" must not have a query or fragment"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        out.push(Problem::new(
            key,
            "must not carry credentials; use the [auth] section",
        ));
    }
}
