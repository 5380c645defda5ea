use figment::Figment;
use figment::providers::{Format, Toml};

use super::*;
use crate::config::{AuthMode, EnvProvider, LogFormat};

fn figment(toml: &str, env: &[(&str, &str)]) -> Figment {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Figment::new()
        .merge(Toml::string(toml))
        .merge(EnvProvider::new(env))
}

/// Loads and returns the problems as `key: message` strings.
fn problems(toml: &str, env: &[(&str, &str)]) -> Vec<String> {
    match load(&figment(toml, env)) {
        Ok(_) => Vec::new(),
        Err(p) => {
            p.0.iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect()
        }
    }
}

/// Asserts that loading `toml` with `env` reports a problem naming `key`
/// whose message contains `word`.
fn check_names(toml: &str, env: &[(&str, &str)], key: &str, word: &str) {
    let found = problems(toml, env);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(&format!("{key}: ")) && p.contains(word)),
        "config {toml:?}: expected a problem naming `{key}` with {word:?}, got {found:?}"
    );
}

/// Each case: the config, then the key that must be named and a word of
/// the message.
#[test]
fn each_mistake_names_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[listen]\nadress = \"127.0.0.1:1\"",
            "listen.adress",
            "did you mean `address`",
        ),
        ("[listn]\naddress = \"127.0.0.1:1\"", "listn", "unknown key"),
        (
            "[listen]\naddress = \"nope\"",
            "listen.address",
            "127.0.0.1:8080",
        ),
        (
            "[listen]\nshutdown_grace = \"30 parsecs\"",
            "listen.shutdown_grace",
            "duration",
        ),
        (
            "[listen]\nshutdown_grace = 30",
            "listen.shutdown_grace",
            "duration",
        ),
        (
            "[upstream]\nurl = \"dev.azure.com\"",
            "upstream.url",
            "absolute URL",
        ),
        (
            "[upstream]\nurl = \"ftp://dev.azure.com\"",
            "upstream.url",
            "https://",
        ),
        (
            "[upstream.hosts]\nvsrm = \"not a url\"",
            "upstream.hosts.vsrm",
            "URL",
        ),
        (
            "[upstream.hosts]\n\"Bad Name\" = \"https://x.example\"",
            "upstream.hosts.Bad Name",
            "a-z",
        ),
        (
            "[upstream]\nallowed_organizations = [\"a/b\"]",
            "upstream.allowed_organizations[0]",
            "organization",
        ),
        (
            "[log]\nformat = \"xml\"",
            "log.format",
            "\"text\", \"json\"",
        ),
        ("[log]\nlevel = \"info,=[\"", "log.level", "filter"),
        ("[auth]\nmode = \"oauth\"", "auth.mode", "\"none\", \"pat\""),
        ("[auth]\nmode = \"pat\"", "auth.pat_file", "missing"),
        (
            "[auth]\nmode = \"pat\"\npat_file = \"/nonexistent/pat\"",
            "auth.pat_file",
            "cannot read",
        ),
        (
            "[auth]\npat = \"abc\"",
            "auth.pat",
            "may not be written in the config file",
        ),
        (
            "[listen]\ntls_cert_file = \"/etc/hostname\"",
            "listen.tls_key_file",
            "missing",
        ),
        (
            "[listen]\nshutdown_delay = \"30s\"",
            "listen.shutdown_delay",
            "shorter",
        ),
        (
            "[listen]\nmax_header_bytes = 10",
            "listen.max_header_bytes",
            "between",
        ),
        (
            "[admin]\naddress = \"127.0.0.1:8080\"",
            "admin.address",
            "own port",
        ),
        (
            "[upstream]\nconnect_timeout = \"0s\"",
            "upstream.connect_timeout",
            "longer than zero",
        ),
        (
            "listen = 5",
            "listen",
            "expected a table ([section]), found a number",
        ),
        (
            "[listen]\nmax_connections = \"many\"",
            "listen.max_connections",
            "expected a whole number (0 or more), found a string",
        ),
        (
            "[listen]\nmax_connections = -3",
            "listen.max_connections",
            "expected a whole number (0 or more)",
        ),
        (
            "[log]\nlevel = \"inof\"",
            "log.level",
            "`inof` names no level; use one of \"trace\"",
        ),
        (
            "[listen]\nallowed_hosts = [\"http://x.example/\"]",
            "listen.allowed_hosts[0]",
            "without scheme",
        ),
        (
            "[listen]\nmax_connections = 0",
            "listen.max_connections",
            "between 1",
        ),
        (
            "[listen]\nworkers = 1000",
            "listen.workers",
            "between 0 and 256",
        ),
        (
            "[listen]\nmax_tunnels = 0",
            "listen.max_tunnels",
            "between 1",
        ),
        (
            "[listen]\ntunnel_idle_timeout = \"0s\"",
            "listen.tunnel_idle_timeout",
            "longer than zero",
        ),
        (
            "[listen]\ncors_allowed_origins = [\"*\"]",
            "listen.cors_allowed_origins[0]",
            "named origin",
        ),
        (
            "[listen]\ncors_allowed_origins = [\"https://ok.example\", \"https://app.example/path\"]",
            "listen.cors_allowed_origins[1]",
            "only scheme, host and port",
        ),
        (
            "[listen]\ncors_allowed_origins = [\"app.example\"]",
            "listen.cors_allowed_origins[0]",
            "is not an origin",
        ),
        (
            "[listen]\nidle_timeout = \"0s\"",
            "listen.idle_timeout",
            "longer than zero",
        ),
        (
            "[upstream]\nforward_cookies = [\"a b\"]",
            "upstream.forward_cookies[0]",
            "not a cookie name",
        ),
        (
            "[upstream]\nforward_cookies = [\"ok\", \"ado_proxy_session\"]",
            "upstream.forward_cookies[1]",
            "the proxy's own cookie",
        ),
        (
            "[upstream]\nforward_cookies = [\"__Host-ado_proxy_session_login_x\"]",
            "upstream.forward_cookies[0]",
            "the proxy's own cookie",
        ),
        (
            "[auth]\nmode = \"service\"\nsource = \"device-code\"\nclient_id = \"c\"\n\
             tenant = \"organizations\"\nallow_browser_login = true\nallowed_users = [\"a@b.c\"]\n\
             [session]\nstore = \"memory\"",
            "auth.allowed_tenants",
            "any directory",
        ),
    ];
    for (toml, key, word) in cases {
        check_names(toml, &[], key, word);
    }
}

#[test]
fn every_problem_is_listed_at_once() {
    let toml = "[listen]\nadress = \"x\"\nshutdown_grace = \"soon\"\n[upstream]\nurl = \"nope\"\n[log]\nformat = \"xml\"\n[auth]\nmode = \"pat\"";
    let found = problems(toml, &[]);
    for key in [
        "listen.adress",
        "listen.shutdown_grace",
        "upstream.url",
        "log.format",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(key)),
            "{key} missing from {found:?}"
        );
    }
}

#[test]
fn defaults_load_and_env_overrides_the_file() {
    let config = load(&figment(
        "[listen]\naddress = \"127.0.0.1:1111\"",
        &[
            ("ADO_AUTH_PROXY_LISTEN__ADDRESS", "127.0.0.1:2222"),
            (
                "ADO_AUTH_PROXY_UPSTREAM__HOSTS__VSRM",
                "http://127.0.0.1:3333",
            ),
            (
                "ADO_AUTH_PROXY_UPSTREAM__ALLOWED_ORGANIZATIONS",
                "[\"contoso\", \"fabrikam\"]",
            ),
            ("ADO_AUTH_PROXY_LOG__FORMAT", "json"),
            ("ADO_AUTH_PROXY_AUTH__MODE", "pat"),
            ("ADO_AUTH_PROXY_AUTH__PAT", "s3cr3t"),
            ("UNRELATED", "x"),
        ],
    ))
    .expect("valid");
    assert_eq!(config.listen.address.port(), 2222);
    assert_eq!(
        config.upstream.hosts["vsrm"].as_str(),
        "http://127.0.0.1:3333/"
    );
    assert_eq!(
        config.upstream.hosts["vssps"].as_str(),
        "https://vssps.dev.azure.com/"
    );
    assert_eq!(
        config.upstream.allowed_organizations,
        ["contoso", "fabrikam"]
    );
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.auth.mode, AuthMode::Pat);
    assert_eq!(config.auth.pat.as_ref().map(|p| p.expose()), Some("s3cr3t"));
    assert_eq!(config.listen.shutdown_grace.as_secs(), 25);
}

#[test]
fn env_mistakes_name_the_variable() {
    let err = load(&figment(
        "",
        &[("ADO_AUTH_PROXY_LISTEN__SHUTDOWN_GRACE", "later")],
    ))
    .unwrap_err();
    let p = &err.0[0];
    assert_eq!(p.key, "listen.shutdown_grace");
    assert_eq!(
        p.origin.as_deref(),
        Some("environment variable ADO_AUTH_PROXY_LISTEN__SHUTDOWN_GRACE")
    );
}

#[test]
fn redacted_output_hides_the_pat() {
    let config = load(&figment(
        "[auth]\nmode = \"pat\"",
        &[("ADO_AUTH_PROXY_AUTH__PAT", "s3cr3t-value")],
    ))
    .unwrap();
    let out = config.to_redacted_toml();
    assert!(!out.contains("s3cr3t-value"), "{out}");
    assert!(out.contains("pat = \"[redacted]\""), "{out}");
}

#[test]
fn typo_suggestions() {
    let known: Vec<String> = ["address", "public_url", "shutdown_grace"]
        .map(String::from)
        .into();
    assert_eq!(closest("adress", known.iter()), Some("address"));
    assert_eq!(
        closest("shutdown_grase", known.iter()),
        Some("shutdown_grace")
    );
    assert_eq!(closest("zzz", known.iter()), None);
}

const ENTRA: &str = "[auth]\nmode = \"user\"\nprovider = \"entra\"\nclient_id = \"4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a\"\n";
const SECRET_ENV: (&str, &str) = ("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", "s3cr3t");

/// (config, environment, key that must be named, a word of the message)
type Case = (
    String,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

#[test]
fn user_mode_mistakes_name_their_keys() {
    let tenant = "tenant = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\n";
    let cases: Vec<Case> = vec![
        ("[auth]\nmode = \"user\"".into(), &[], "auth.provider", "\"entra\", \"azure-devops\" or \"oidc\""),
        (ENTRA.replace("entra", "google"), &[], "auth.provider", "unknown value"),
        (ENTRA.into(), &[SECRET_ENV], "auth.tenant", "tenant GUID"),
        (format!("{ENTRA}{tenant}"), &[], "auth.client_secret_file", "missing"),
        (format!("{ENTRA}tenant = \"common\""), &[SECRET_ENV], "auth.allowed_tenants", "any directory"),
        (format!("{ENTRA}tenant = \"consumers\""), &[SECRET_ENV], "auth.tenant", "personal Microsoft accounts"),
        (format!("{ENTRA}tenant = \"a b\""), &[SECRET_ENV], "auth.tenant", "not a tenant"),
        (format!("{ENTRA}{tenant}client_secret = \"x\""), &[], "auth.client_secret", "may not be written"),
        (format!("{ENTRA}{tenant}client_secret_file = \"/nonexistent/secret\""), &[], "auth.client_secret_file", "cannot read"),
        (format!("{ENTRA}{tenant}client_certificate_file = \"/etc/hostname\""), &[], "auth.client_key_file", "missing"),
        (
            format!("{ENTRA}{tenant}client_certificate_file = \"/etc/hostname\"\nclient_key_file = \"/etc/hostname\""),
            &[],
            "auth.client_certificate_file",
            "PEM certificate",
        ),
        (
            format!("{ENTRA}{tenant}client_certificate_file = \"/etc/hostname\"\nclient_key_file = \"/etc/hostname\""),
            &[SECRET_ENV],
            "auth.client_certificate_file",
            "keep one",
        ),
        (format!("{ENTRA}{tenant}refresh_before = \"soon\""), &[SECRET_ENV], "auth.refresh_before", "duration"),
        (format!("{ENTRA}{tenant}scopes = \"openid\""), &[SECRET_ENV], "auth.scopes", "list of strings"),
        (format!("{ENTRA}{tenant}authority_host = \"login.example\""), &[SECRET_ENV], "auth.authority_host", "absolute URL"),
        ("[auth]\nmode = \"user\"\nprovider = \"oidc\"\nclient_id = \"x\"".into(), &[], "auth.issuer_url", "missing"),
        ("[auth]\nmode = \"user\"\nprovider = \"azure-devops\"\nclient_id = \"x\"".into(), &[], "auth.client_secret_file", "Client Secret"),
        (
            "[auth]\nmode = \"user\"\nprovider = \"azure-devops\"\nclient_id = \"x\"\nclient_certificate_file = \"/a\"\nclient_key_file = \"/b\"".into(),
            &[SECRET_ENV],
            "auth.client_certificate_file",
            "\"entra\" only",
        ),
        (format!("{ENTRA}{tenant}[session]\ncookie_name = \"__Host-x\""), &[SECRET_ENV], "session.cookie_name", "__Host-"),
        (format!("{ENTRA}{tenant}[session]\ncookie_name = \"a;b\""), &[SECRET_ENV], "session.cookie_name", "letters"),
        (format!("{ENTRA}{tenant}[session]\nidle_timeout = \"0s\""), &[SECRET_ENV], "session.idle_timeout", "longer than zero"),
        (format!("{ENTRA}{tenant}[session]\nmax_lifetime = \"forever\""), &[SECRET_ENV], "session.max_lifetime", "duration"),
        (format!("{ENTRA}{tenant}[session]\nstore = \"postgres\""), &[SECRET_ENV], "session.store", "unknown value"),
        (format!("{ENTRA}{tenant}[session]\nstore = \"redis\""), &[SECRET_ENV], "session.redis_url", "redis://"),
        (format!("{ENTRA}{tenant}[session]\nstore = \"redis\"\nredis_url = \"redis://r:6379\""), &[SECRET_ENV], "session.encryption_keys_file", "keygen"),
        (format!("{ENTRA}{tenant}[session]\nstore = \"redis\"\nredis_url = \"http://r:6379\""), &[SECRET_ENV], "session.redis_url", "rediss://"),
        (format!("{ENTRA}{tenant}[session]\nstore = \"redis\"\nredis_url = \"redis://r:6379/cache\""), &[SECRET_ENV], "session.redis_url", "database number"),
        (format!("{ENTRA}{tenant}[session]\nstore = \"redis\"\nredis_url = \"redis://:pw@r:6379/0\"\nredis_command_timeout = \"0s\""), &[SECRET_ENV], "session.redis_command_timeout", "longer than zero"),
        (format!("{ENTRA}{tenant}[session]\nencryption_keys_file = \"/nonexistent/keys\""), &[SECRET_ENV], "session.encryption_keys_file", "ado-auth-proxy keygen"),
        (format!("{ENTRA}{tenant}[session]\nencryption_keys_file = \"/etc/hostname\""), &[SECRET_ENV], "session.encryption_keys_file", "base64"),
        (format!("{ENTRA}{tenant}[session]\npath = \"/tmp\""), &[SECRET_ENV], "session.path", "directory"),
        (format!("{ENTRA}{tenant}[session]\nstore = \"redis\"\nredis_url = \"redis://r:6379\"\nredis_ca_file = \"/etc/hostname\""), &[SECRET_ENV], "session.redis_ca_file", "rediss://"),
    ];
    for (toml, env, key, word) in &cases {
        check_names(toml, env, key, word);
    }
}

#[test]
fn user_mode_configs_that_load() {
    let tenant = "tenant = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\n";
    let ok: Vec<String> = vec![
        format!("{ENTRA}{tenant}"),
        format!("{ENTRA}tenant = \"contoso.onmicrosoft.com\""),
        format!("{ENTRA}tenant = \"organizations\"\nallowed_tenants = [\"*\"]"),
        "[auth]\nmode = \"user\"\nprovider = \"azure-devops\"\nclient_id = \"x\"".into(),
        // A public OIDC client (PKCE only) needs no secret.
        "[auth]\nmode = \"user\"\nprovider = \"oidc\"\nclient_id = \"x\"\nissuer_url = \"https://idp.example\"".into(),
    ];
    for toml in &ok {
        let config = load(&figment(toml, &[SECRET_ENV])).unwrap_or_else(|e| panic!("{toml}: {e}"));
        assert_eq!(config.auth.mode, AuthMode::User);
        let out = config.to_redacted_toml();
        assert!(!out.contains("s3cr3t"), "{out}");
    }
    let config = load(&figment(&format!("{ENTRA}{tenant}"), &[SECRET_ENV])).unwrap();
    assert_eq!(
        config.auth.effective_scopes(),
        [
            "499b84ac-1321-427f-aa17-267ca6975798/.default",
            "offline_access",
            "openid",
            "profile",
            "email"
        ]
    );
    assert_eq!(
        config.auth.effective_authority().as_str(),
        "https://login.microsoftonline.com/"
    );
    assert_eq!(config.session.cookie_name, "ado_proxy_session");
    assert_eq!(config.session.idle_timeout.as_secs(), 8 * 3600);
    assert_eq!(config.session.max_lifetime.as_secs(), 7 * 24 * 3600);
    assert_eq!(config.auth.refresh_before.as_secs(), 300);
    assert_eq!(config.session.store, crate::config::StoreKind::Embedded);
    assert_eq!(
        config.session.path,
        std::path::PathBuf::from("./data/sessions.db")
    );
    // A Redis password never shows in the effective config.
    let redis = format!(
        "{ENTRA}{tenant}[session]\nstore = \"redis\"\nredis_url = \"rediss://u:hunter22@r:6380/2\"\nencryption_keys_file = \"/dev/null\""
    );
    let found = problems(&redis, &[SECRET_ENV]);
    assert!(
        found
            .iter()
            .all(|p| !p.contains("hunter22") && !p.starts_with("session.redis_url")),
        "{found:?}"
    );
}

const SERVICE: &str = "[auth]\nmode = \"service\"\n";

#[test]
fn service_mode_mistakes_name_their_keys() {
    let tenant = "tenant = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"x\"\n";
    let cases: Vec<Case> = vec![
        (SERVICE.into(), &[], "auth.source", "\"workload-identity\""),
        (
            format!("{SERVICE}source = \"magic\""),
            &[],
            "auth.source",
            "unknown value",
        ),
        (
            format!("{SERVICE}source = \"client-credentials\""),
            &[],
            "auth.client_id",
            "missing",
        ),
        (
            format!("{SERVICE}source = \"client-credentials\""),
            &[],
            "auth.tenant",
            "missing",
        ),
        (
            format!("{SERVICE}source = \"client-credentials\"\n{tenant}"),
            &[],
            "auth.client_secret_file",
            "client_certificate_file",
        ),
        (
            format!(
                "{SERVICE}source = \"client-credentials\"\nclient_id = \"x\"\ntenant = \"common\""
            ),
            &[SECRET_ENV],
            "auth.tenant",
            "app-only",
        ),
        (
            format!("{SERVICE}source = \"workload-identity\""),
            &[],
            "auth.federated_token_file",
            "AZURE_FEDERATED_TOKEN_FILE",
        ),
        (
            format!("{SERVICE}source = \"workload-identity\""),
            &[],
            "auth.client_id",
            "AZURE_CLIENT_ID",
        ),
        (
            format!(
                "{SERVICE}source = \"workload-identity\"\n{tenant}federated_token_file = \"/nonexistent/token\""
            ),
            &[],
            "auth.federated_token_file",
            "cannot read",
        ),
        (
            format!("{SERVICE}source = \"federated\"\n{tenant}"),
            &[],
            "auth.federated_token_file",
            "OpenID Connect issuer",
        ),
        (
            format!("{SERVICE}source = \"federated\""),
            &[],
            "auth.tenant",
            "missing",
        ),
        (
            format!("{SERVICE}source = \"managed-identity-federation\""),
            &[],
            "auth.client_id",
            "trusts the managed identity",
        ),
        (
            format!(
                "{SERVICE}source = \"managed-identity-federation\"\n{tenant}federated_audience = \"api://a b\""
            ),
            &[],
            "auth.federated_audience",
            "api://AzureADTokenExchange",
        ),
        (
            format!("{SERVICE}source = \"managed-identity\"\nmanaged_identity_header = \"x\""),
            &[],
            "auth.managed_identity_header",
            "IDENTITY_HEADER",
        ),
        (
            format!("{SERVICE}source = \"pat\""),
            &[],
            "auth.pat_file",
            "missing",
        ),
        (
            format!("{SERVICE}source = \"device-code\""),
            &[],
            "auth.client_id",
            "public client",
        ),
        (
            format!("{SERVICE}source = \"device-code\"\n{tenant}[session]\nstore = \"redis\""),
            &[],
            "session.redis_url",
            "missing",
        ),
        // A fixed identity on the network needs to be asked for...
        (
            format!("[listen]\naddress = \"0.0.0.0:8080\"\n{SERVICE}source = \"managed-identity\""),
            &[],
            "auth.allow_remote_callers",
            "127.0.0.1",
        ),
        (
            "[listen]\naddress = \"0.0.0.0:8080\"\n[auth]\nmode = \"pat\"\npat_file = \"/etc/hostname\""
                .to_string(),
            &[],
            "auth.allow_remote_callers",
            "anyone",
        ),
        // ...with a way to tell callers apart.
        (
            format!(
                "[listen]\naddress = \"0.0.0.0:8080\"\n{SERVICE}source = \"managed-identity\"\nallow_remote_callers = true"
            ),
            &[],
            "auth.allowed_client_cidrs",
            "caller_secret_file",
        ),
        (
            format!(
                "{SERVICE}source = \"managed-identity\"\nallowed_client_cidrs = [\"10.0.0.0/40\"]"
            ),
            &[],
            "auth.allowed_client_cidrs",
            "prefix",
        ),
        (
            format!(
                "{SERVICE}source = \"managed-identity\"\ncaller_secret_file = \"/etc/hostname\""
            ),
            &[],
            "auth.caller_secret_file",
            "16 characters",
        ),
    ];
    for (toml, env, key, word) in &cases {
        check_names(toml, env, key, word);
    }
}

#[test]
fn service_mode_configs_that_load() {
    let ok = [
        format!("{SERVICE}source = \"managed-identity\""),
        format!(
            "[listen]\naddress = \"0.0.0.0:8080\"\n{SERVICE}source = \"managed-identity\"\n\
             allow_remote_callers = true\nallowed_client_cidrs = [\"10.0.0.0/8\", \"fd00::/8\"]"
        ),
        format!(
            "{SERVICE}source = \"client-credentials\"\nclient_id = \"x\"\ntenant = \"contoso.onmicrosoft.com\""
        ),
        format!(
            "{SERVICE}source = \"managed-identity-federation\"\nclient_id = \"x\"\n\
             tenant = \"0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0\"\nmanaged_identity_client_id = \"y\""
        ),
    ];
    for toml in &ok {
        let config = load(&figment(toml, &[SECRET_ENV])).unwrap_or_else(|e| panic!("{toml}: {e}"));
        assert_eq!(config.auth.mode, AuthMode::Service);
    }
}

#[test]
fn a_secret_that_looks_like_a_number_is_text() {
    let config = load(&figment(
        "[auth]\nmode = \"pat\"",
        &[("ADO_AUTH_PROXY_AUTH__PAT", "1234567890123")],
    ))
    .unwrap();
    assert_eq!(config.auth.pat.unwrap().expose(), "1234567890123");
}

/// Every message of every problem, with its origin, as one text.
fn all_text(toml: &str, env: &[(&str, &str)]) -> String {
    match load(&figment(toml, env)) {
        Ok(_) => String::new(),
        Err(p) => p.to_string(),
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::config::secret::SECRET_KEYS;

    /// A value in any TOML shape, as written in a file or a variable.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9:/._-]{0,20}".prop_map(|s| format!("\"{s}\"")),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            Just("[\"a\", 1]".to_string()),
            Just("{ x = 1 }".to_string()),
            "[0-9]{1,4}(s|m|h|d|ms|parsecs)".prop_map(|s| format!("\"{s}\"")),
            Just("\"http://x\"".to_string()),
            Just("\"127.0.0.1:0\"".to_string()),
        ]
    }

    fn known_key() -> impl Strategy<Value = (String, String)> {
        let schema = serde_json::to_value(Config::default()).unwrap();
        let mut keys = Vec::new();
        for (section, fields) in schema.as_object().unwrap() {
            for field in fields.as_object().unwrap().keys() {
                keys.push((section.clone(), field.clone()));
            }
            keys.push((section.clone(), "typo_key".into()));
        }
        prop::sample::select(keys)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Arbitrary keys and values in the file and the environment:
        /// loading answers (a config or problems) and never panics.
        #[test]
        fn loading_never_panics(
            entries in prop::collection::vec((known_key(), value()), 0..8),
            env in prop::collection::vec((known_key(), "[ -~]{0,16}"), 0..4),
        ) {
            let mut toml = String::new();
            for ((section, key), v) in &entries {
                toml.push_str(&format!("[{section}]\n{key} = {v}\n"));
            }
            let env: Vec<(String, String)> = env
                .iter()
                .map(|((s, k), v)| (format!("ADO_AUTH_PROXY_{}__{}", s.to_uppercase(), k.to_uppercase()), v.clone()))
                .collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let _ = all_text(&toml, &env);
        }

        /// The value of a secret key appears in no message, whatever its
        /// shape and wherever it was written.
        #[test]
        fn no_message_shows_a_secret(
            key in prop::sample::select(SECRET_KEYS),
            secret in "[0-9]{8,20}|[a-z0-9]{8,20}|true|false|\\[[0-9]{8,12}\\]|redis://u:[a-z]{8,12}@h:99999/x",
        ) {
            let (section, field) = key.split_once('.').unwrap();
            let var = format!("ADO_AUTH_PROXY_{}__{}", section.to_uppercase(), field.to_uppercase());
            let bare = secret.trim_matches(|c| c == '[' || c == ']');
            let needle = bare.rsplit(':').next().unwrap_or(bare).split('@').next().unwrap();
            for (toml, env) in [
                (format!("[auth]\nmode = \"pat\"\n[{section}]\n{field} = {secret}\n"), None),
                (format!("[{section}]\n{field} = \"{secret}\"\n"), None),
                ("[auth]\nmode = \"pat\"\n".to_string(), Some((var.as_str(), secret.as_str()))),
            ] {
                let env: Vec<(&str, &str)> = env.into_iter().collect();
                let text = all_text(&toml, &env);
                if needle.len() >= 6 {
                    prop_assert!(!text.contains(needle), "{}: {}", key, text);
                }
            }
        }
    }
}

/// docs/configuration.md lists every key of the configuration.
#[test]
fn the_configuration_reference_names_every_key() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let schema = serde_json::to_value(Config::default()).unwrap();
    let mut missing = Vec::new();
    for (section, fields) in schema.as_object().unwrap() {
        for key in fields.as_object().unwrap().keys() {
            let full = format!("`{section}.{key}`");
            if !doc.contains(&full) {
                missing.push(full);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {missing:?}"
    );
}

/// `auth.client_secret_file` may be a directory (a mounted Kubernetes
/// Secret): its one or two files are the app's two secret slots.
#[test]
fn a_secret_directory_holds_the_two_slots() {
    const LEGACY: &str = "[auth]\nmode = \"user\"\nprovider = \"azure-devops\"\nclient_id = \"9f6c7bd9-0a8e-4d1e-9a43-6e5f3f2c1b0a\"\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret-b"), "second").unwrap();
    std::fs::write(dir.path().join("secret-a"), "first").unwrap();
    std::fs::create_dir(dir.path().join("..2026_11_27")).unwrap();
    let toml = format!(
        "{LEGACY}client_secret_file = \"{}\"\n",
        dir.path().display()
    );
    let config = load(&figment(&toml, &[])).unwrap_or_else(|e| panic!("{e}"));
    match crate::config::credential(&config.auth) {
        Some(crate::config::AppCredential::SecretFile(first, Some(next))) => {
            assert_eq!(first, dir.path().join("secret-a"));
            assert_eq!(next, dir.path().join("secret-b"));
        }
        _ => panic!("two slots"),
    }
    // A second slot named twice, a third file, an empty directory.
    check_names(
        &format!("{toml}client_secret_next_file = \"/etc/hostname\"\n"),
        &[],
        "auth.client_secret_next_file",
        "both slots",
    );
    std::fs::write(dir.path().join("secret-c"), "third").unwrap();
    check_names(&toml, &[], "auth.client_secret_file", "two secret slots");
    let empty = tempfile::tempdir().unwrap();
    check_names(
        &format!(
            "{LEGACY}client_secret_file = \"{}\"\n",
            empty.path().display()
        ),
        &[],
        "auth.client_secret_file",
        "holds no secret file",
    );
}

/// Every bad value of a section is reported, not only the first.
#[test]
fn every_bad_value_of_a_section_is_reported_at_once() {
    let toml = "[listen]\nmax_connections = \"many\"\nmax_tunnels = true\nworkers = -1\n\
                [upstream]\nconnect_timeout = 5\n";
    let problems = load(&figment(toml, &[])).unwrap_err().0;
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for want in [
        "listen.max_connections",
        "listen.max_tunnels",
        "listen.workers",
        "upstream.connect_timeout",
    ] {
        assert!(keys.contains(&want), "{want} in {keys:?}");
    }
}

/// The chart's `values.schema.json` describes `config:` key for key, from
/// the config types (the default config serialized), so a misspelt key
/// (`auth: {mdoe: pat}`) fails at `helm install`, not at pod start.
/// `UPDATE_CHART_SCHEMA=1 cargo test --lib chart_schema` rewrites it.
#[test]
fn the_chart_schema_describes_every_config_key() {
    use serde_json::{Map, Value, json};
    fn schema_of(path: &str, v: &Value) -> Value {
        match v {
            Value::Object(_) if FREE_FORM_TABLES.contains(&path) => json!({
                "type": "object",
                "additionalProperties": {"type": "string"}
            }),
            Value::Object(m) => {
                let props: Map<String, Value> = m
                    .iter()
                    .map(|(k, v)| {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        (k.clone(), schema_of(&p, v))
                    })
                    .collect();
                json!({"type": "object", "additionalProperties": false, "properties": props})
            }
            Value::Bool(_) => json!({"type": "boolean"}),
            Value::Number(_) => json!({"type": "number"}),
            Value::String(_) => json!({"type": "string"}),
            Value::Array(_) => json!({"type": "array"}),
            // Unset by default (an optional key): any TOML value.
            Value::Null => json!({}),
        }
    }
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let mut want = schema_of("", &defaults);
    want["description"] = json!(
        "The proxy's TOML config, section by section (docs/configuration.md); \
         check-config validates the values."
    );
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/helm/ado-auth-proxy/values.schema.json"
    );
    let mut chart: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    if std::env::var("UPDATE_CHART_SCHEMA").is_ok() {
        chart["properties"]["config"] = want.clone();
        std::fs::write(path, serde_json::to_string_pretty(&chart).unwrap() + "\n").unwrap();
    }
    assert_eq!(
        chart["properties"]["config"], want,
        "values.schema.json's config differs from the config types; run \
         UPDATE_CHART_SCHEMA=1 cargo test --lib the_chart_schema"
    );
}

/// Mode `user` proves its app with a federated token file when asked,
/// or when it has nothing else; every wrong combination names the key.
#[test]
fn a_sign_in_app_may_prove_itself_with_a_federated_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ.e30.x").unwrap();
    let base = "[auth]\nmode = \"user\"\nprovider = \"entra\"\ntenant = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"c\"\n";
    let with = |extra: &str| format!("{base}{extra}");
    let file = format!("federated_token_file = \"{}\"\n", token.display());
    for config in [
        with(&format!(
            "client_credential = \"workload-identity\"\n{file}"
        )),
        with(&file),
    ] {
        let c = load(&figment(&config, &[])).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(crate::config::credential(&c.auth), Some(crate::config::AppCredential::Federated(f)) if f == token),
            "{config}"
        );
    }
    check_names(
        &with("client_credential = \"federated\"\n"),
        &[],
        "auth.federated_token_file",
        "missing",
    );
    // A managed identity's token: the identity's endpoint, its audience.
    let c = load(&figment(
        &with("client_credential = \"managed-identity-federation\"\n"),
        &[],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        crate::config::credential(&c.auth),
        Some(crate::config::AppCredential::ManagedIdentity { audience, .. })
            if audience == "api://AzureADTokenExchange"
    ));
    check_names(
        &with(
            "client_credential = \"managed-identity-federation\"\nfederated_audience = \"a b\"\n",
        ),
        &[],
        "auth.federated_audience",
        "is not an audience",
    );
    check_names(
        &with("client_credential = \"managed-identity-federation\"\n"),
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", "s")],
        "auth.client_credential",
        "keep one",
    );
    check_names(
        &with("client_credential = \"secret\"\n"),
        &[],
        "auth.client_credential",
        "needs auth.client_secret_file",
    );
    check_names(
        &with(&format!("client_credential = \"federated\"\n{file}")),
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", "s")],
        "auth.client_credential",
        "keep one",
    );
    // A secret wins over a token file that merely exists (the webhook
    // sets AZURE_FEDERATED_TOKEN_FILE for every pod).
    let c = load(&figment(
        &with(&file),
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", "s")],
    ))
    .unwrap();
    assert!(matches!(
        crate::config::credential(&c.auth),
        Some(crate::config::AppCredential::Secret(_))
    ));
}

/// A caller secret directory that holds the proxy's own PAT (one mounted
/// Secret with keys `pat` and `caller-secret`, pointed at as a
/// directory) is refused: the PAT would admit callers.
#[test]
fn a_caller_secret_directory_holding_the_pat_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pat"), "patpatpatpatpatpatpatpatpatpat52").unwrap();
    std::fs::write(dir.path().join("caller-secret"), "0123456789abcdef0123").unwrap();
    let toml = format!(
        "[listen]\naddress = \"0.0.0.0:8080\"\n[auth]\nmode = \"pat\"\npat_file = \"{}\"\n\
         allow_remote_callers = true\ncaller_secret_file = \"{}\"",
        dir.path().join("pat").display(),
        dir.path().display()
    );
    let found = problems(&toml, &[]);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("auth.caller_secret_file")),
        "the PAT's own directory is accepted as the caller secret directory: {found:?}"
    );
}

/// `client_credential = "managed-identity-federation"` in mode service is
/// refused at load, pointing at the source of that name.
#[test]
fn managed_identity_federation_as_client_credential_in_mode_service_is_refused_at_load() {
    for source in ["managed-identity", "device-code"] {
        let toml = format!(
            "{SERVICE}source = \"{source}\"\nclient_id = \"x\"\n\
             tenant = \"0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0\"\n\
             client_credential = \"managed-identity-federation\""
        );
        let found = problems(&toml, &[]);
        assert!(
            found.iter().any(|p| p.contains("client_credential")),
            "source {source}: loads without a word: {found:?}"
        );
    }
}

#[test]
fn redis_client_certificates_come_in_pairs_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, keys) = (dir.path().join("c.pem"), dir.path().join("keys"));
    std::fs::write(&cert, "pem").unwrap();
    std::fs::write(&keys, crate::seal::generate_key().unwrap()).unwrap();
    let base = |url: &str, extra: &str| {
        format!(
            "{ENTRA}tenant = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\n[session]\nstore = \"redis\"\n\
             redis_url = \"{url}\"\nencryption_keys_file = \"{}\"\n{extra}",
            keys.display()
        )
    };
    let only_cert = format!("redis_client_certificate_file = \"{}\"\n", cert.display());
    let found = problems(&base("rediss://r:6380", &only_cert), &[SECRET_ENV]);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("session.redis_client_key_file: missing")),
        "{found:?}"
    );
    let both = format!(
        "{only_cert}redis_client_key_file = \"{}\"\n",
        cert.display()
    );
    let found = problems(&base("redis://r:6379", &both), &[SECRET_ENV]);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("session.redis_client_certificate_file: only used with TLS")),
        "{found:?}"
    );
    assert!(
        problems(&base("rediss://r:6380", &both), &[SECRET_ENV])
            .iter()
            .all(|p| !p.contains("client")),
    );
}
