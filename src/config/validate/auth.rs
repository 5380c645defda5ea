//! `[auth]`: what each mode, source and provider needs, and who may call.

use super::super::problem::Problem;
use super::super::{AuthConfig, AuthMode, Config, Provider, ServiceSource};
use super::store::store;
use super::{http_url, positive, readable, secret_file};

pub(super) fn auth(config: &Config, out: &mut Vec<Problem>) {
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
        if let Err(e) = super::super::Cidr::parse(c) {
            out.push(Problem::new("auth.allowed_client_cidrs", e));
        }
    }
    if let Some(path) = &a.caller_secret_file {
        caller_secret_files(a, path, out);
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
    if a.client_credential == Some(crate::config::ClientCredential::ManagedIdentityFederation) {
        out.push(Problem::new(
            "auth.client_credential",
            "\"managed-identity-federation\" proves the sign-in app of mode \"user\"; in mode \
             \"service\" set source = \"managed-identity-federation\" instead",
        ));
    }
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
             \"workload-identity\", \"federated\", \"managed-identity\", \
             \"managed-identity-federation\", \"device-code\" or \"pat\"",
        ));
        return;
    };
    match source {
        ServiceSource::Pat => pat(a, out),
        ServiceSource::ClientCredentials => {
            needs_app(a, "", "", out);
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
        ServiceSource::WorkloadIdentity
        | ServiceSource::Federated
        | ServiceSource::ManagedIdentity
        | ServiceSource::ManagedIdentityFederation => secretless(a, source, out),
        ServiceSource::DeviceCode => {
            needs_app(
                a,
                " (a public client: \"Allow public client flows\")",
                "",
                out,
            );
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

/// The sources without a secret: a federated token file (workload
/// identity, any OIDC issuer) or a managed identity (alone, or as an
/// app's federated credential).
fn secretless(a: &AuthConfig, source: ServiceSource, out: &mut Vec<Problem>) {
    match source {
        ServiceSource::WorkloadIdentity => {
            needs_app(a, " (or AZURE_CLIENT_ID)", " (or AZURE_TENANT_ID)", out);
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
        ServiceSource::Federated => {
            needs_app(a, "", "", out);
            match &a.federated_token_file {
                None => out.push(Problem::new(
                    "auth.federated_token_file",
                    "missing: source \"federated\" needs the file an OpenID Connect issuer \
                     writes its token to (for example a GitHub Actions step, or another \
                     cloud's projected service-account token)",
                )),
                Some(path) => readable("auth.federated_token_file", path, out),
            }
        }
        ServiceSource::ManagedIdentity => managed_identity(a, out),
        ServiceSource::ManagedIdentityFederation => {
            needs_app(
                a,
                " (the app that trusts the managed identity)",
                " (the app's directory, where the organization is)",
                out,
            );
            managed_identity(a, out);
            federated_audience(a, out);
        }
        _ => {}
    }
}

/// Where a managed identity's token comes from.
fn managed_identity(a: &AuthConfig, out: &mut Vec<Problem>) {
    if let Some(url) = &a.managed_identity_endpoint {
        http_url("auth.managed_identity_endpoint", url, out);
    }
}

/// An Entra app's id and a tenant that can issue app-only tokens; the
/// hints name the environment variables that also set them.
fn needs_app(a: &AuthConfig, id_env: &str, tenant_env: &str, out: &mut Vec<Problem>) {
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
        Some(t) if matches!(t, "common" | "organizations" | "consumers") => out.push(Problem::new(
            "auth.tenant",
            format!("\"{t}\" cannot issue app-only tokens; set the tenant GUID or domain"),
        )),
        _ => {}
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
    positive(
        "auth.organization_tenant_ttl",
        a.organization_tenant_ttl,
        out,
    );
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

/// `auth.client_secret_file` (a file, or a directory holding both
/// slots) and `auth.client_secret_next_file`.
fn secret_files(a: &AuthConfig, out: &mut Vec<Problem>) {
    if let Some(path) = &a.client_secret_next_file {
        if a.client_secret_file.is_none() {
            out.push(Problem::new(
                "auth.client_secret_next_file",
                "is the second slot of auth.client_secret_file: set auth.client_secret_file too",
            ));
        }
        secret_file(
            "auth.client_secret_next_file",
            path,
            "the second client secret",
            out,
        );
    }
    if let Some(path) = &a.client_secret_file {
        match super::super::secret_slots::secret_slots(path) {
            Ok(None) => secret_file("auth.client_secret_file", path, "the client secret", out),
            Ok(Some(slots)) => {
                if a.client_secret_next_file.is_some() {
                    out.push(Problem::new(
                        "auth.client_secret_next_file",
                        "auth.client_secret_file is a directory whose files are both slots: \
                         remove auth.client_secret_next_file",
                    ));
                }
                for slot in &slots {
                    secret_file("auth.client_secret_file", slot, "a client secret", out);
                }
            }
            Err(e) => out.push(Problem::new("auth.client_secret_file", e).about_file()),
        }
    }
}

/// `auth.caller_secret_file`: a file, or a directory of named files,
/// each holding a long secret.
fn caller_secret_files(a: &AuthConfig, path: &std::path::Path, out: &mut Vec<Problem>) {
    let key = "auth.caller_secret_file";
    let files = match crate::config::secret_slots::caller_secrets(path) {
        Ok(files) => files,
        Err(e) => return out.push(Problem::new(key, e).about_file()),
    };
    // The proxy's own secrets must never admit a caller.
    let own: Vec<std::path::PathBuf> = [
        &a.pat_file,
        &a.client_secret_file,
        &a.client_secret_next_file,
        &a.client_key_file,
        &a.federated_token_file,
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| std::fs::canonicalize(p).ok())
    .collect();
    for (name, file) in &files {
        if std::fs::canonicalize(file).is_ok_and(|real| own.contains(&real)) {
            out.push(Problem::new(
                key,
                format!(
                    "{name} in {} is one of the proxy's own secret files (the PAT, the app's \
                     secret, key or token): keep caller secrets in a file or directory of their \
                     own",
                    path.display()
                ),
            ));
        }
    }
    for (_, file) in files {
        match std::fs::read_to_string(&file) {
            Ok(s) if s.trim().len() < crate::config::MIN_CALLER_SECRET => out.push(
                Problem::new(
                    key,
                    format!(
                        "{} holds fewer than 16 characters; use a long random value (e.g. \
                         `ado-auth-proxy keygen`)",
                        file.display()
                    ),
                )
                .about_file(),
            ),
            Ok(_) => {}
            Err(e) => out.push(
                Problem::new(key, format!("cannot read {}: {e}", file.display())).about_file(),
            ),
        }
    }
}

/// The proxy's own credential at the provider: a secret, or for Entra a
/// certificate; exactly one.
fn client_credential(a: &AuthConfig, provider: Provider, out: &mut Vec<Problem>) {
    use crate::config::ClientCredential as C;
    let secret = a.client_secret_file.is_some() || a.client_secret.is_some();
    let cert = a.client_certificate_file.is_some() || a.client_key_file.is_some();
    let inferred = a.client_credential.is_none() && !secret && !cert;
    match a.client_credential {
        Some(C::ManagedIdentityFederation) => {
            return managed_federation_credential(a, provider, secret || cert, out);
        }
        Some(C::Federated | C::WorkloadIdentity) => {
            return federated_credential(a, provider, secret || cert, out);
        }
        None if inferred && a.federated_token_file.is_some() => {
            return federated_credential(a, provider, false, out);
        }
        Some(C::Secret) if !secret => out.push(Problem::new(
            "auth.client_credential",
            "\"secret\" needs auth.client_secret_file (or ADO_AUTH_PROXY_AUTH__CLIENT_SECRET)",
        )),
        Some(C::Certificate) if !cert => out.push(Problem::new(
            "auth.client_credential",
            "\"certificate\" needs auth.client_certificate_file and auth.client_key_file",
        )),
        _ => {}
    }
    if a.client_secret_file.is_some() && a.client_secret.is_some() {
        out.push(Problem::new(
            "auth.client_secret_file",
            "both auth.client_secret_file and ADO_AUTH_PROXY_AUTH__CLIENT_SECRET are set; keep one",
        ));
    }
    secret_files(a, out);
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
    certificate_files(a, out);
    if !secret && !cert && provider != Provider::Oidc {
        out.push(Problem::new(
            "auth.client_secret_file",
            match provider {
                Provider::Entra => {
                    "missing: the proxy needs its own credential at Entra; set \
                     auth.client_secret_file (or ADO_AUTH_PROXY_AUTH__CLIENT_SECRET), \
                     auth.client_certificate_file with auth.client_key_file, or \
                     auth.federated_token_file (workload identity, no secret)"
                }
                _ => {
                    "missing: set it to a file holding the app's \"Client Secret\" from \
                     app.vsaex.visualstudio.com (or set ADO_AUTH_PROXY_AUTH__CLIENT_SECRET)"
                }
            },
        ));
    }
}

/// The certificate and its key: both, and loadable.
fn certificate_files(a: &AuthConfig, out: &mut Vec<Problem>) {
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
}

/// The sign-in app proven by a managed identity's token: Entra only, the
/// identity's endpoint and the exchange audience, nothing else beside it.
fn managed_federation_credential(
    a: &AuthConfig,
    provider: Provider,
    other: bool,
    out: &mut Vec<Problem>,
) {
    if provider != Provider::Entra {
        out.push(Problem::new(
            "auth.client_credential",
            "a managed identity's token proves only an Entra app: \"managed-identity-federation\" \
             needs provider \"entra\"",
        ));
        return;
    }
    if other {
        out.push(Problem::new(
            "auth.client_credential",
            "\"managed-identity-federation\" is chosen, but a client secret or certificate is \
             configured too; keep one",
        ));
    }
    managed_identity(a, out);
    federated_audience(a, out);
}

/// `auth.federated_audience`: one word.
fn federated_audience(a: &AuthConfig, out: &mut Vec<Problem>) {
    let audience = a.federated_audience.trim();
    if audience.is_empty() || audience.chars().any(char::is_whitespace) {
        out.push(Problem::new(
            "auth.federated_audience",
            format!(
                "{audience:?} is not an audience: use the one the app's federated credential \
                 names (default \"{}\")",
                crate::config::DEFAULT_FEDERATED_AUDIENCE
            ),
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

/// The sign-in app's federated credential: Entra only, a readable token
/// file, and nothing else configured beside it.
fn federated_credential(a: &AuthConfig, provider: Provider, other: bool, out: &mut Vec<Problem>) {
    if provider != Provider::Entra {
        out.push(Problem::new(
            "auth.client_credential",
            "a federated credential is supported for provider \"entra\" only",
        ));
        return;
    }
    if other {
        out.push(Problem::new(
            "auth.client_credential",
            "a federated credential is chosen, but a client secret or certificate is configured \
             too; keep one",
        ));
    }
    match &a.federated_token_file {
        None => out.push(Problem::new(
            "auth.federated_token_file",
            "missing: set it, or AZURE_FEDERATED_TOKEN_FILE (the Azure Workload Identity webhook \
             sets it), to the token file that proves the app",
        )),
        Some(path) => super::readable("auth.federated_token_file", path, out),
    }
}
