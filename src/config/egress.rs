//! Where outbound connections go: straight to their host, or through a
//! corporate egress proxy named by `upstream.egress_proxy` or, when that
//! key is absent, by the environment as curl reads it (`https_proxy`,
//! `HTTPS_PROXY`, `http_proxy` (never upper case), `all_proxy`,
//! `ALL_PROXY`, `no_proxy`, `NO_PROXY`; the lower-case name first). Read once, at load:
//! a value the proxy cannot use is a problem naming the key or variable,
//! not a surprise at the first request.

use std::path::Path;

use super::problem::Problem;
use super::{Secret, UpstreamConfig};

/// The environment variables that can name an egress proxy, lower-case
/// first (curl's order), for each role.
const HTTPS_VARS: &[&str] = &["https_proxy", "HTTPS_PROXY"];
/// curl reads `http_proxy` in lower case only: `HTTP_PROXY` is what a CGI
/// server sets from a request's `Proxy:` header ("httpoxy").
const HTTP_VARS: &[&str] = &["http_proxy"];
const ALL_VARS: &[&str] = &["all_proxy", "ALL_PROXY"];
const NO_VARS: &[&str] = &["no_proxy", "NO_PROXY"];

/// `upstream.egress_proxy` value that ignores the environment.
pub const DIRECT: &str = "none";

/// The proxy variables of the process environment, captured at load
/// (their values may carry a password: `Debug` shows only the names).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyEnvironment(Vec<(String, String)>);

impl std::fmt::Debug for ProxyEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// How outbound connections leave the pod.
#[derive(Debug, Clone, Default)]
pub struct EgressPlan {
    /// For `http://` destinations.
    pub http: Option<ProxyTarget>,
    /// For `https://` destinations.
    pub https: Option<ProxyTarget>,
    /// Destinations reached directly (curl's `NO_PROXY` syntax: host
    /// names matching their subdomains too, IP addresses, CIDR ranges,
    /// `*`), comma-separated.
    pub no_proxy: String,
}

/// One egress proxy (HTTP, tunnelling with CONNECT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (80 when the URL names none, as for any http:// URL).
    pub port: u16,
    /// Basic credentials.
    pub credentials: Option<ProxyCredentials>,
    /// Where it was named (`HTTPS_PROXY`, `upstream.egress_proxy`).
    pub from: String,
}

/// A user name and password for the egress proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: Secret,
}

// === impl ProxyEnvironment ===

impl ProxyEnvironment {
    /// The proxy variables among `vars`.
    pub fn capture<'a>(vars: impl IntoIterator<Item = &'a (String, String)>) -> Self {
        let wanted = |k: &str| {
            [HTTPS_VARS, HTTP_VARS, ALL_VARS, NO_VARS]
                .iter()
                .any(|names| names.contains(&k))
        };
        Self(
            vars.into_iter()
                .filter(|(k, _)| wanted(k))
                .cloned()
                .collect(),
        )
    }

    /// The first of `names` that is set and not empty, with its name.
    fn first(&self, names: &[&'static str]) -> Option<(&'static str, &str)> {
        names.iter().find_map(|name| {
            self.0
                .iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| (*name, v.trim()))
        })
    }
}

// === impl ProxyTarget ===

impl ProxyTarget {
    /// `host:port` as a `CONNECT` line or a URL authority writes it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `http://host:port`, without credentials: safe to log.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority())
    }
}

impl std::fmt::Display for EgressPlan {
    /// The start-up line's words: no credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let describe = |t: &ProxyTarget| {
            let auth = if t.credentials.is_some() {
                " with Basic credentials"
            } else {
                ""
            };
            format!("{} (from {}){auth}", t.url(), t.from)
        };
        match (&self.https, &self.http) {
            (None, None) => return f.write_str("none (direct connections)"),
            (Some(s), Some(h)) if s == h => write!(f, "{}", describe(s))?,
            (Some(s), None) => write!(f, "https: {}", describe(s))?,
            (None, Some(h)) => write!(f, "http: {}", describe(h))?,
            (Some(s), Some(h)) => write!(f, "https: {}; http: {}", describe(s), describe(h))?,
        }
        if !self.no_proxy.is_empty() {
            write!(f, "; direct to {}", self.no_proxy)?;
        }
        Ok(())
    }
}

/// The egress plan of `upstream`; `files` reads the credentials file (it
/// is a problem when missing or malformed).
pub fn egress_plan(upstream: &UpstreamConfig, files: bool) -> Result<EgressPlan, Vec<Problem>> {
    let mut problems = Vec::new();
    let env = &upstream.proxy_environment;
    let mut plan = EgressPlan::default();
    match upstream.egress_proxy.as_deref().map(str::trim) {
        Some(DIRECT) => {}
        Some(url) => from_key(url, upstream, &mut plan, &mut problems),
        None => from_environment(env, upstream, &mut plan, &mut problems),
    }
    for (i, entry) in upstream.no_proxy.iter().enumerate() {
        let port =
            entry.contains(':') && entry.parse::<std::net::IpAddr>().is_err() && !is_cidr(entry);
        if entry.trim().is_empty() || port || (entry.contains([',', '/', ' ']) && !is_cidr(entry)) {
            problems.push(Problem::new(
                format!("upstream.no_proxy[{i}]"),
                format!(
                    "\"{entry}\" is not a host name, IP address or CIDR range (one per entry, \
                     without a port or brackets, e.g. \"corp.example\", \"10.0.0.0/8\", \"::1\")"
                ),
            ));
        }
    }
    if let Some(path) = &upstream.egress_proxy_credentials_file {
        let key = "upstream.egress_proxy_credentials_file";
        if plan.http.is_none() && plan.https.is_none() {
            problems.push(Problem::new(
                key,
                "is set but no egress proxy is in use; set upstream.egress_proxy (or \
                 HTTPS_PROXY), or remove this key",
            ));
        } else if files {
            match read_credentials(path) {
                Ok(c) => {
                    for t in [&mut plan.http, &mut plan.https].into_iter().flatten() {
                        t.credentials = Some(c.clone());
                    }
                }
                Err(why) => problems.push(Problem::new(key, why).about_file()),
            }
        }
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// The plan of `upstream.egress_proxy = url`.
fn from_key(url: &str, upstream: &UpstreamConfig, plan: &mut EgressPlan, out: &mut Vec<Problem>) {
    let key = "upstream.egress_proxy";
    match parse_proxy_url(url, key) {
        Ok(target) if target.credentials.is_some() => out.push(Problem::new(
            key,
            "must not carry a user name or password; put \"user:password\" in a file named by \
             upstream.egress_proxy_credentials_file",
        )),
        Ok(target) => {
            plan.http = Some(target.clone());
            plan.https = Some(target);
        }
        Err(p) => out.push(p),
    }
    plan.no_proxy = upstream.no_proxy.join(",");
}

/// The plan of the proxy variables (curl's reading); `upstream.no_proxy`
/// replaces `NO_PROXY` when set.
fn from_environment(
    env: &ProxyEnvironment,
    upstream: &UpstreamConfig,
    plan: &mut EgressPlan,
    out: &mut Vec<Problem>,
) {
    let all = env.first(ALL_VARS);
    for (names, slot) in [(HTTPS_VARS, &mut plan.https), (HTTP_VARS, &mut plan.http)] {
        if let Some((name, value)) = env.first(names).or(all) {
            match parse_proxy_url(value, name) {
                Ok(target) => *slot = Some(target),
                Err(p) => out.push(p),
            }
        }
    }
    plan.no_proxy = if upstream.no_proxy.is_empty() {
        env.first(NO_VARS)
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    } else {
        upstream.no_proxy.join(",")
    };
}

fn is_cidr(entry: &str) -> bool {
    crate::config::Cidr::parse(entry).is_ok()
}

/// An egress proxy URL as curl takes it: `http://[user[:password]@]host[:port]`,
/// the scheme optional. Only plain HTTP proxies are supported (the
/// tunnel inside is TLS); `key` names the key or variable in problems.
fn parse_proxy_url(value: &str, key: &str) -> Result<ProxyTarget, Problem> {
    let fix = if key.starts_with("upstream.") {
        "write it as http://host:port"
    } else {
        "write it as http://host:port, or set upstream.egress_proxy (\"none\" ignores the \
         environment)"
    };
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let bad = |why: &str| Problem::new(key, format!("{why}; {fix}"));
    let url =
        url::Url::parse(&with_scheme).map_err(|e| bad(&format!("is not a proxy URL ({e})")))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(bad(
                "names a TLS (https://) proxy, which the proxy cannot use: it tunnels TLS \
                 through a plain HTTP proxy with CONNECT",
            ));
        }
        other => {
            return Err(bad(&format!(
                "uses the {other}:// scheme; only HTTP proxies (CONNECT) are supported"
            )));
        }
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err(bad("has no host")),
    };
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a path, query or fragment"));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
    };
    let credentials = if url.username().is_empty() {
        None
    } else {
        let user = decode(url.username()).map_err(|_| bad("has a user name that is not UTF-8"))?;
        let password = decode(url.password().unwrap_or(""))
            .map_err(|_| bad("has a password that is not UTF-8"))?;
        Some(ProxyCredentials {
            user,
            password: Secret::new(password),
        })
    };
    Ok(ProxyTarget {
        host,
        port: url.port().unwrap_or(80),
        credentials,
        from: key.to_string(),
    })
}

/// `user:password` on the file's first line.
fn read_credentials(path: &Path) -> Result<ProxyCredentials, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok(ProxyCredentials {
            user: user.to_string(),
            password: Secret::new(password),
        }),
        _ => Err(format!(
            "{} must hold \"user:password\" on its first line",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests;
