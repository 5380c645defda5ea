//! Routing: which upstream a request path goes to, and the organization
//! allowlist.
//!
//! `/{org}/...` goes to `[upstream] url`; `/.hosts/{name}/...` goes to the
//! sibling host `name`; `/.auth/...` belongs to the proxy and is never
//! forwarded.

use std::collections::HashMap;
use std::sync::Arc;

use http::Uri;
use prometheus::Histogram;
use url::Url;

use crate::config::{APP_VSSPS, UpstreamConfig};
use crate::error::Error;
use crate::metrics::Metrics;

/// Label of the main upstream (`[upstream] url`).
pub const MAIN: &str = "default";

/// One upstream host.
#[derive(Debug)]
pub struct Upstream {
    /// `default`, or the sibling host's name (used in metrics and errors).
    pub name: Arc<str>,
    /// Its base URL as configured.
    pub base: Url,
    /// The base URL without a trailing slash; paths are appended to it.
    prefix: String,
    /// Whether the first path segment names an organization.
    org_scoped: bool,
    /// Time to response headers, this host's series (resolved once).
    pub duration: Histogram,
}

/// Maps request paths to upstream URLs.
#[derive(Debug)]
pub struct Router {
    main: Upstream,
    hosts: HashMap<String, Upstream>,
    /// Lowercased; empty means every organization is allowed.
    allowed: Vec<String>,
}

/// Where one request goes.
pub struct Target<'a> {
    /// The upstream host.
    pub upstream: &'a Upstream,
    /// The full upstream URI, query included.
    pub uri: Uri,
}

// === impl Upstream ===

impl Upstream {
    fn new(name: &str, base: &Url, org_scoped: bool, metrics: &Metrics) -> Self {
        Self {
            name: Arc::from(name),
            base: base.clone(),
            prefix: base.as_str().trim_end_matches('/').to_string(),
            org_scoped,
            duration: metrics.upstream_duration(name),
        }
    }

    /// The base URL as text, without a trailing slash.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

// === impl Router ===

impl Router {
    /// Builds the routing table from `[upstream]`; each host's metric
    /// series are resolved here, once.
    pub fn new(config: &UpstreamConfig, metrics: &Metrics) -> Self {
        let hosts = config
            .hosts
            .iter()
            .map(|(name, url)| {
                let upstream = Upstream::new(name, url, name != APP_VSSPS, metrics);
                (name.clone(), upstream)
            })
            .collect();
        Self {
            main: Upstream::new(MAIN, &config.url, true, metrics),
            hosts,
            allowed: config
                .allowed_organizations
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The main upstream and every sibling host.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        std::iter::once(&self.main).chain(self.hosts.values())
    }

    /// Chooses the upstream for `uri` and checks the allowlist.
    pub fn route(&self, uri: &Uri) -> Result<Target<'_>, Error> {
        let path = uri.path();
        // Only origin-form paths are appended to an upstream base URL: the
        // asterisk form (`OPTIONS *`) and authority form (`CONNECT`) would
        // otherwise splice text into the upstream's authority.
        if !path.starts_with('/') {
            return Err(Error::BadTarget(format!(
                "only paths starting with / are forwarded, not {path:?}"
            )));
        }
        if path == "/.auth" || path.starts_with("/.auth/") {
            return Err(Error::ReservedPath);
        }
        let (upstream, rest) = match path.strip_prefix("/.hosts/") {
            Some(after) => {
                let (name, rest) = match after.find('/') {
                    Some(i) => (&after[..i], &after[i..]),
                    None => (after, "/"),
                };
                let upstream = self.hosts.get(name).ok_or_else(|| Error::UnknownHost {
                    name: name.to_string(),
                    known: self.known_hosts(),
                })?;
                (upstream, rest)
            }
            None => (&self.main, path),
        };
        if upstream.org_scoped {
            self.check_organization(rest)?;
        }
        let mut target = String::with_capacity(upstream.prefix.len() + rest.len() + 64);
        target.push_str(&upstream.prefix);
        target.push_str(rest);
        if let Some(q) = uri.query() {
            target.push('?');
            target.push_str(q);
        }
        let uri = Uri::try_from(target).map_err(|e| Error::BadTarget(e.to_string()))?;
        Ok(Target { upstream, uri })
    }

    fn check_organization(&self, rest: &str) -> Result<(), Error> {
        if self.allowed.is_empty() {
            return Ok(());
        }
        let first = rest.trim_start_matches('/').split('/').next().unwrap_or("");
        if first.is_empty() || first.starts_with('_') {
            return Err(Error::OrganizationRequired {
                allowed: self.allowed.clone(),
            });
        }
        let decoded = percent_decode(first).to_ascii_lowercase();
        if self.allowed.contains(&decoded) {
            Ok(())
        } else {
            Err(Error::OrganizationNotAllowed {
                org: decoded,
                allowed: self.allowed.clone(),
            })
        }
    }

    fn known_hosts(&self) -> Vec<String> {
        let mut names: Vec<String> = self.hosts.keys().cloned().collect();
        names.sort();
        names
    }
}

/// Decodes `%XX` escapes (so `%43ontoso` cannot dodge the allowlist).
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(allowed: &[&str]) -> Router {
        let config = UpstreamConfig {
            url: Url::parse("http://127.0.0.1:9/base/").unwrap(),
            allowed_organizations: allowed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Router::new(&config, &Metrics::new(prometheus::Registry::new()).unwrap())
    }

    fn check(r: &Router, path: &str, want: Result<&str, &str>) {
        let uri: Uri = path.parse().unwrap();
        match (r.route(&uri), want) {
            (Ok(t), Ok(w)) => assert_eq!(t.uri.to_string(), w, "{path}"),
            (Err(e), Err(kind)) => assert!(format!("{e:?}").starts_with(kind), "{path}: {e:?}"),
            (got, want) => panic!("{path}: got {:?}, want {want:?}", got.map(|t| t.uri)),
        }
    }

    #[test]
    fn routes() {
        let r = router(&[]);
        check(
            &r,
            "/org/_apis/projects?api-version=7.1",
            Ok("http://127.0.0.1:9/base/org/_apis/projects?api-version=7.1"),
        );
        check(
            &r,
            "/.hosts/vsrm/org/_apis/release/releases",
            Ok("https://vsrm.dev.azure.com/org/_apis/release/releases"),
        );
        check(
            &r,
            "/.hosts/app_vssps/_apis/profile/profiles/me",
            Ok("https://app.vssps.visualstudio.com/_apis/profile/profiles/me"),
        );
        check(&r, "/.hosts/vsrm", Ok("https://vsrm.dev.azure.com/"));
        check(&r, "/.hosts/nope/x", Err("UnknownHost"));
        check(&r, "/.auth/login", Err("ReservedPath"));
        check(&r, "/.auth", Err("ReservedPath"));
        check(&r, "*", Err("BadTarget"));
        check(&r, "dev.azure.com:443", Err("BadTarget"));
        // Text after the base URL is always path, never authority.
        check(
            &r,
            "/@evil.example/x",
            Ok("http://127.0.0.1:9/base/@evil.example/x"),
        );
    }

    #[test]
    fn allowlist() {
        let r = router(&["Contoso"]);
        check(
            &r,
            "/contoso/_apis/projects",
            Ok("http://127.0.0.1:9/base/contoso/_apis/projects"),
        );
        check(
            &r,
            "/CONTOSO/p/_git/r",
            Ok("http://127.0.0.1:9/base/CONTOSO/p/_git/r"),
        );
        check(
            &r,
            "/%43ontoso/x",
            Ok("http://127.0.0.1:9/base/%43ontoso/x"),
        );
        check(
            &r,
            "/fabrikam/_apis/projects",
            Err("OrganizationNotAllowed"),
        );
        check(
            &r,
            "/.hosts/vsrm/fabrikam/_apis/x",
            Err("OrganizationNotAllowed"),
        );
        check(&r, "/_apis/resourceAreas", Err("OrganizationRequired"));
        check(&r, "/", Err("OrganizationRequired"));
        // Deployment-wide host: no organization in the path.
        check(
            &r,
            "/.hosts/app_vssps/_apis/profile/profiles/me",
            Ok("https://app.vssps.visualstudio.com/_apis/profile/profiles/me"),
        );
    }
}
