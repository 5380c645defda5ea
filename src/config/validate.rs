//! Checks serde cannot express: combinations of keys, URL shapes, readable
//! and parseable files (PAT, TLS certificates and keys). Pure apart from
//! reading the named files; returns every problem.

use std::path::Path;
use std::time::Duration;

use url::Url;

mod auth;
mod store;

use super::Config;
use super::problem::Problem;

/// The smallest header limit hyper accepts.
const MIN_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Every problem with `config`; empty when it is usable.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    listen(config, &mut out);
    upstream(config, &mut out);
    auth::auth(config, &mut out);
    super::access::validate(config, &mut out);
    super::membership::validate(config, &mut out);
    if let Some(why) = log_level_problem(&config.log.level) {
        out.push(Problem::new("log.level", why));
    }
    out
}

/// Level names a log filter directive may end in.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Why `level` is no usable log filter. `tracing` reads a bare unknown
/// word as a target name (`inof` would log nothing of this proxy and say
/// nothing), so every directive must be a level or `target=level`.
fn log_level_problem(level: &str) -> Option<String> {
    let help = "use one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"off\", or \
                directives such as \"ado_auth_proxy=debug,info\"";
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
        return Some(format!("not a log filter ({e}); {help}"));
    }
    let is_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s.trim()));
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let tail = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !is_level(tail) {
            return Some(format!("`{directive}` names no level; {help}"));
        }
    }
    None
}

fn listen(config: &Config, out: &mut Vec<Problem>) {
    let l = &config.listen;
    listen_tls(l, out);
    if let Some(url) = &l.public_url {
        http_url("listen.public_url", url, out);
    }
    positive("listen.shutdown_grace", l.shutdown_grace, out);
    positive("listen.header_read_timeout", l.header_read_timeout, out);
    positive("listen.idle_timeout", l.idle_timeout, out);
    listen_limits(l, out);
    tunnels_and_cors(l, out);
    host_names("listen.allowed_hosts", &l.allowed_hosts, out);
    if l.shutdown_delay >= l.shutdown_grace {
        out.push(Problem::new(
            "listen.shutdown_delay",
            format!(
                "must be shorter than listen.shutdown_grace ({}), which it is counted in",
                humantime::format_duration(l.shutdown_grace)
            ),
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
    host_names("admin.allowed_hosts", &config.admin.allowed_hosts, out);
}

/// `listen.tls_cert_file` and `listen.tls_key_file`: both or neither,
/// readable, and a chain and key rustls accepts.
fn listen_tls(l: &super::ListenConfig, out: &mut Vec<Problem>) {
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
}

/// The listener's numeric limits, each within its range.
fn listen_limits(l: &super::ListenConfig, out: &mut Vec<Problem>) {
    if !(1..=1_000_000).contains(&l.max_connections) {
        out.push(Problem::new(
            "listen.max_connections",
            "must be between 1 and 1000000 (10000 is the default)",
        ));
    }
    if l.workers > super::MAX_WORKERS {
        out.push(Problem::new(
            "listen.workers",
            format!(
                "must be between 0 and {} (0, the default, starts one per core)",
                super::MAX_WORKERS
            ),
        ));
    }
    if !(1..=1_000_000).contains(&l.max_requests) {
        out.push(Problem::new(
            "listen.max_requests",
            "must be between 1 and 1000000 (1000 is the default)",
        ));
    }
    if !(1..=10_000).contains(&l.max_concurrent_streams) {
        out.push(Problem::new(
            "listen.max_concurrent_streams",
            "must be between 1 and 10000 (100 is the default)",
        ));
    }
    if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&l.max_header_bytes) {
        out.push(Problem::new(
            "listen.max_header_bytes",
            format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}"),
        ));
    }
}

/// `listen.max_tunnels`, `listen.tunnel_idle_timeout` and
/// `listen.cors_allowed_origins`.
fn tunnels_and_cors(l: &super::ListenConfig, out: &mut Vec<Problem>) {
    if !(1..=1_000_000).contains(&l.max_tunnels) {
        out.push(Problem::new(
            "listen.max_tunnels",
            "must be between 1 and 1000000 (1000 is the default)",
        ));
    }
    positive("listen.tunnel_idle_timeout", l.tunnel_idle_timeout, out);
    for (i, p) in l.tunnel_protocols.iter().enumerate() {
        let token = !p.is_empty()
            && p.len() <= 64
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
        if !token {
            out.push(Problem::new(
                format!("listen.tunnel_protocols[{i}]"),
                format!("\"{p}\" is not an upgrade protocol token: write e.g. \"websocket\""),
            ));
        }
    }
    for (i, origin) in l.cors_allowed_origins.iter().enumerate() {
        if let Err(why) = cors_origin(origin) {
            out.push(Problem::new(
                format!("listen.cors_allowed_origins[{i}]"),
                format!("\"{origin}\" {why}"),
            ));
        }
    }
}

/// Each of `hosts` (the list at `key`) must be a `name` or `name:port`.
fn host_names(key: &str, hosts: &[String], out: &mut Vec<Problem>) {
    for (i, host) in hosts.iter().enumerate() {
        if crate::host::HostName::parse(host).is_none() {
            out.push(Problem::new(
                format!("{key}[{i}]"),
                format!(
                    "\"{host}\" is not a host name: write a name such as \"ado-proxy.tools.svc\" \
                     or \"name:8080\", without scheme or path"
                ),
            ));
        }
    }
}

/// A CORS origin as a browser sends it: `scheme://host[:port]`.
fn cors_origin(origin: &str) -> Result<(), &'static str> {
    if origin == "*" || origin.eq_ignore_ascii_case("null") {
        return Err(
            "cannot be allowed: credentialed requests need a named origin such as \
                    \"https://app.example.com\"",
        );
    }
    let url = Url::parse(origin)
        .map_err(|_| "is not an origin: write scheme and host, e.g. \"https://app.example.com\"")?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("is not an origin: use http:// or https:// and a host");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("has a path, query or fragment: an origin is only scheme, host and port");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("holds a user name or password: an origin is only scheme, host and port");
    }
    Ok(())
}

fn upstream(config: &Config, out: &mut Vec<Problem>) {
    forward_cookies(config, out);
    if let Err(problems) = super::egress::egress_plan(&config.upstream, true) {
        out.extend(problems);
    }
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

/// A file that must hold a secret: readable and not empty.
pub(super) fn secret_file(key: &str, path: &Path, what: &str, out: &mut Vec<Problem>) {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => out.push(
            Problem::new(
                key,
                format!("{} is empty; write {what} into it", path.display()),
            )
            .about_file(),
        ),
        Ok(_) => {}
        Err(e) => {
            out.push(Problem::new(key, format!("cannot read {}: {e}", path.display())).about_file())
        }
    }
}

pub(super) fn positive(key: &str, d: Duration, out: &mut Vec<Problem>) {
    if d.is_zero() {
        out.push(Problem::new(key, "must be longer than zero, e.g. \"30s\""));
    }
}

pub(super) fn readable(key: &str, path: &Path, out: &mut Vec<Problem>) {
    if let Err(e) = std::fs::File::open(path) {
        out.push(Problem::new(key, format!("cannot read {}: {e}", path.display())).about_file());
    }
}

pub(super) fn http_url(key: &str, url: &Url, out: &mut Vec<Problem>) {
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

#[cfg(test)]
mod log_level_tests {
    use super::log_level_problem;

    #[test]
    fn log_levels_are_level_names_or_target_directives() {
        for ok in [
            "info",
            "DEBUG",
            "warn",
            "ado_auth_proxy=debug,info",
            "hyper=off, info",
            "off",
        ] {
            assert_eq!(log_level_problem(ok), None, "{ok}");
        }
        for bad in ["inof", "ado_auth_proxy=verbose", "info,dbug", "info=x"] {
            let why = log_level_problem(bad).expect(bad);
            assert!(
                why.contains("\"info\"") && why.contains("directives such as"),
                "{why}"
            );
        }
    }
}
