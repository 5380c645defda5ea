//! Routing: which upstream a request path goes to, and the organization
//! allowlist.
//!
//! `/{org}/...` goes to `[upstream] url`; `/.hosts/{name}/...` goes to the
//! sibling host `name`; `/.auth/...` belongs to the proxy and is never
//! forwarded.

use crate::organization::Allowlist;
use std::collections::HashMap;
use std::sync::Arc;

use crate::metrics::HostSeries;
use http::Uri;
use url::Url;

use super::path;
use crate::config::{APP_VSSPS, UpstreamConfig};
use crate::error::{Error, Refusal};
use crate::metrics::{Metrics, UpstreamErrorKind};

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
    /// Time to response headers, this host's series (resolved at its
    /// first exchange).
    pub duration: HostSeries,
    /// The `Host` header for it: the name, and the port when it is not
    /// the scheme's default (as hyper's pooled client writes it).
    pub host: http::HeaderValue,
    /// Whether it chose HTTP/2 when offered (ALPN): its requests then
    /// share the pool's multiplexed connection instead of connections of
    /// their own (see forward.rs).
    pub speaks_h2: std::sync::atomic::AtomicBool,
    /// Scheme and authority, when the base URL has no path: the client's
    /// path and query then go upstream as they are, with no copy.
    origin: Option<(http::uri::Scheme, http::uri::Authority)>,
}

/// Maps request paths to upstream URLs.
#[derive(Debug)]
pub struct Router {
    main: Upstream,
    hosts: HashMap<String, Upstream>,
    /// `upstream.allowed_organizations`.
    allowed: Allowlist,
}

/// Where one request goes.
pub struct Target<'a> {
    /// The upstream host.
    pub upstream: &'a Upstream,
    /// The full upstream URI, query included.
    pub uri: Uri,
    /// Where the organization is in the request path (byte range), when
    /// the upstream is organization-scoped and the path names one.
    pub organization: Option<std::ops::Range<usize>>,
}

/// The scheme and authority of `base` when it has no path.
fn origin_of(base: &Url) -> Option<(http::uri::Scheme, http::uri::Authority)> {
    if base.path() != "/" || base.query().is_some() {
        return None;
    }
    let uri: Uri = base.as_str().parse().ok()?;
    Some((uri.scheme()?.clone(), uri.authority()?.clone()))
}

/// `host[:port]` of `base`, the port only when not the default.
fn host_header(base: &Url) -> http::HeaderValue {
    let host = base.host_str().unwrap_or_default();
    let value = match base.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    // A URL's host and port are always a valid header value.
    http::HeaderValue::try_from(value).unwrap_or(http::HeaderValue::from_static("localhost"))
}

// === impl Upstream ===

impl Upstream {
    fn new(name: &str, base: &Url, org_scoped: bool, metrics: &Metrics) -> Self {
        Self {
            name: Arc::from(name),
            base: base.clone(),
            prefix: base.as_str().trim_end_matches('/').to_string(),
            org_scoped,
            duration: metrics.upstream.host(name),
            host: host_header(base),
            speaks_h2: std::sync::atomic::AtomicBool::new(false),
            origin: origin_of(base),
        }
    }

    /// The upstream URI for `uri` when what is forwarded (`rest`) is
    /// its whole path and the base URL has none: the client's path and
    /// query, shared rather than copied.
    fn same_path(&self, uri: &Uri, rest: &str) -> Option<Uri> {
        let (scheme, authority) = self.origin.as_ref()?;
        let pq = uri.path_and_query()?;
        if !std::ptr::eq(rest, pq.path()) {
            return None;
        }
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(pq.clone());
        Uri::from_parts(parts).ok()
    }

    /// A failure of `kind` talking to this host.
    pub fn failed(&self, kind: UpstreamErrorKind, reason: String) -> Error {
        Error::Upstream {
            upstream: self.name.to_string(),
            target: self.prefix.clone(),
            kind,
            reason,
        }
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
                // A deployment-wide host has no organization to check; with
                // an allowlist and deployment_hosts = false it is refused.
                let scoped = name != APP_VSSPS
                    || (!config.deployment_hosts && !config.allowed_organizations.is_empty());
                let upstream = Upstream::new(name, url, scoped, metrics);
                (name.clone(), upstream)
            })
            .collect();
        Self {
            main: Upstream::new(MAIN, &config.url, true, metrics),
            hosts,
            allowed: Allowlist::new(&config.allowed_organizations),
        }
    }

    /// `upstream.allowed_organizations`, lowercased.
    pub fn allowed_organizations(&self) -> &[String] {
        self.allowed.names()
    }

    /// The main upstream and every sibling host.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        std::iter::once(&self.main).chain(self.hosts.values())
    }

    /// Chooses the upstream for `uri` and checks the allowlist. The
    /// decision is made on the path as Azure DevOps will read it (see
    /// [`super::path`]); a path that could be read two ways is refused.
    pub fn route(&self, uri: &Uri) -> Result<Target<'_>, Refusal> {
        let path = uri.path();
        // Only origin-form paths are appended to an upstream base URL: the
        // asterisk form (`OPTIONS *`) and authority form (`CONNECT`) would
        // otherwise splice text into the upstream's authority.
        if !path.starts_with('/') {
            return Err(Refusal::BadTarget(format!(
                "only paths starting with / are forwarded, not {path:?}"
            )));
        }
        if crate::endpoint::Endpoint::of(path).is_some() {
            return Err(Refusal::ReservedPath);
        }
        let seen = path::check(path).map_err(|w| Refusal::BadPath(w.explain()))?;
        let (upstream, rest, seen_rest) = match path.strip_prefix("/.hosts/") {
            Some(after) => {
                let (name, rest) = match after.find('/') {
                    Some(i) => (&after[..i], &after[i..]),
                    None => (after, "/"),
                };
                path::check_route_segment(name).map_err(|w| Refusal::BadPath(w.explain()))?;
                let upstream = self.hosts.get(name).ok_or_else(|| Refusal::UnknownHost {
                    name: name.to_string(),
                    known: self.known_hosts(),
                })?;
                // Decoding cannot add or remove the `/` after the name:
                // the name holds no escaped separator.
                let seen_rest = seen
                    .strip_prefix("/.hosts/")
                    .and_then(|s| s.find('/').map(|i| &s[i..]))
                    .unwrap_or("/");
                (upstream, rest, seen_rest)
            }
            None => (&self.main, path, &*seen),
        };
        let mut organization = None;
        if upstream.org_scoped {
            let (at, org_raw) = org_segment(rest);
            path::check_route_segment(org_raw).map_err(|w| Refusal::BadPath(w.explain()))?;
            self.check_organization(seen_rest)?;
            if !org_raw.is_empty() && !org_raw.starts_with('_') {
                // `rest` is a suffix of `path`.
                let start = path.len() - rest.len() + at;
                organization = Some(start..start + org_raw.len());
            }
        }
        if let Some(uri) = upstream.same_path(uri, rest) {
            return Ok(Target {
                upstream,
                uri,
                organization,
            });
        }
        let mut target = String::with_capacity(upstream.prefix.len() + rest.len() + 64);
        target.push_str(&upstream.prefix);
        target.push_str(rest);
        if let Some(q) = uri.query() {
            target.push('?');
            target.push_str(q);
        }
        let uri = Uri::try_from(target).map_err(|e| Refusal::BadTarget(e.to_string()))?;
        Ok(Target {
            upstream,
            uri,
            organization,
        })
    }

    /// `seen` is the decoded path below the upstream's base.
    fn check_organization(&self, seen: &str) -> Result<(), Refusal> {
        if self.allowed.names().is_empty() {
            return Ok(());
        }
        let (_, first) = org_segment(seen);
        Refusal::of_verdict(self.allowed.check(first), self.allowed.names())
    }

    fn known_hosts(&self) -> Vec<String> {
        let mut names: Vec<String> = self.hosts.keys().cloned().collect();
        names.sort();
        names
    }
}

/// SignalR's prefix: Azure DevOps serves its hubs (live pipeline logs,
/// pull request updates) at `/_signalr/{org}/_apis/...` on dev.azure.com.
const SIGNALR: &str = "_signalr";

/// Where the organization is in a path below an organization-scoped
/// base: the first segment, or the second after `_signalr`. Returns its
/// byte offset in `path` and the segment (empty when there is none).
fn org_segment(path: &str) -> (usize, &str) {
    let lead = path.len() - path.trim_start_matches('/').len();
    let mut segments = path[lead..].split('/');
    let first = segments.next().unwrap_or("");
    if first.eq_ignore_ascii_case(SIGNALR) {
        return (lead + first.len() + 1, segments.next().unwrap_or_default());
    }
    (lead, first)
}

#[cfg(test)]
mod tests_support {
    use super::*;

    pub(super) fn router(allowed: &[&str]) -> Router {
        let config = UpstreamConfig {
            url: Url::parse("http://127.0.0.1:9/base/").unwrap(),
            allowed_organizations: allowed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Router::new(&config, &Metrics::new(prometheus::Registry::new()).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::router;

    #[test]
    fn a_base_without_path_shares_the_clients_path_and_query() {
        let config = UpstreamConfig {
            url: Url::parse("https://dev.azure.com:443/").unwrap(),
            ..Default::default()
        };
        let r = Router::new(&config, &Metrics::new(prometheus::Registry::new()).unwrap());
        for (path, expected) in [
            ("/org/_apis/x", "https://dev.azure.com/org/_apis/x"),
            (
                "/org/_apis/x?a=1&b=%20",
                "https://dev.azure.com/org/_apis/x?a=1&b=%20",
            ),
            (
                "/org/a%2Bb/_git/r",
                "https://dev.azure.com/org/a%2Bb/_git/r",
            ),
            ("/", "https://dev.azure.com/"),
        ] {
            let uri: Uri = path.parse().unwrap();
            let target = r.route(&uri).unwrap();
            assert_eq!(target.uri.to_string(), expected);
            assert!(
                r.main.same_path(&uri, uri.path()).is_some(),
                "{path} is copied"
            );
            if path.len() > 1 {
                assert_eq!(r.route(&uri).unwrap().organization, Some(1..4));
            }
        }
        // A sibling host's path is rewritten, so it is built.
        let uri: Uri = "/.hosts/vssps/org/_apis/x".parse().unwrap();
        let t = r.route(&uri).unwrap();
        assert_eq!(t.uri.to_string(), "https://vssps.dev.azure.com/org/_apis/x");
    }
    use super::*;

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
    fn paths_that_leave_the_organization_are_refused() {
        let r = router(&["contoso"]);
        for path in [
            "/contoso/../fabrikam/_apis/projects",
            "/contoso/%2e%2e/fabrikam/_apis/projects",
            "/contoso/.%2E/fabrikam/_apis/projects",
            "/contoso/..%2ffabrikam/_apis/projects",
            "/contoso/..%5cfabrikam/_apis/projects",
            "/contoso\\..\\fabrikam/_apis/projects",
            "/contoso/_apis/../../fabrikam/_apis/projects",
            "/.hosts/vsrm/contoso/../../x",
            "/.hosts/vsrm/contoso/%2e%2e/fabrikam/x",
            "/contoso%2f..%2ffabrikam/_apis",
            "/contoso%2ffabrikam/_apis",
            "/.hosts/vsrm%2f../x",
        ] {
            let Ok(uri) = path.parse::<Uri>() else {
                continue; // http refuses it before the proxy sees it
            };
            match r.route(&uri) {
                Err(Refusal::BadPath(_)) => {}
                other => panic!("{path}: {:?}", other.map(|t| t.uri)),
            }
        }
        // An encoded slash inside a package name is data, not a route.
        check(
            &r,
            "/contoso/_packaging/f/npm/registry/@scope%2Fname",
            Ok("http://127.0.0.1:9/base/contoso/_packaging/f/npm/registry/@scope%2Fname"),
        );
    }

    /// The organization is found once, by the router, on both path forms.
    #[test]
    fn the_organization_is_known_on_sibling_hosts_too() {
        let r = router(&[]);
        for (path, want) in [
            ("/contoso/_apis/projects", Some("contoso")),
            (
                "/.hosts/vsrm/Contoso/_apis/release/releases",
                Some("Contoso"),
            ),
            ("/.hosts/vsrm//fabrikam/_apis/x", Some("fabrikam")),
            ("/_apis/connectionData", None),
            ("/.hosts/vssps/_apis/profile/profiles/me", None),
        ] {
            let uri: Uri = path.parse().unwrap();
            let span = r.route(&uri).unwrap().organization;
            assert_eq!(span.map(|s| &path[s]), want, "{path}");
        }
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
        // SignalR hubs name the organization second.
        check(
            &r,
            "/_signalr/contoso/_apis/0f2b/signalr/connect?transport=webSockets",
            Ok(
                "http://127.0.0.1:9/base/_signalr/contoso/_apis/0f2b/signalr/connect?transport=webSockets",
            ),
        );
        check(
            &r,
            "/_signalr/fabrikam/_apis/0f2b/signalr/negotiate",
            Err("OrganizationNotAllowed"),
        );
        check(&r, "/_signalr/_apis/x", Err("OrganizationRequired"));
        check(&r, "/_signalr", Err("OrganizationRequired"));
        check(
            &r,
            "/_signalr/%66abrikam/_apis/x",
            Err("OrganizationNotAllowed"),
        );
        // The organization is read from the decoded path.
        check(
            &r,
            "/%66abrikam/_apis/projects",
            Err("OrganizationNotAllowed"),
        );
        check(
            &r,
            "/%2566abrikam/_apis/projects",
            Err("OrganizationNotAllowed"),
        );
        check(&r, "/", Err("OrganizationRequired"));
        // Deployment-wide host: no organization in the path.
        check(
            &r,
            "/.hosts/app_vssps/_apis/profile/profiles/me",
            Ok("https://app.vssps.visualstudio.com/_apis/profile/profiles/me"),
        );
        // ... unless deployment-wide hosts are switched off.
        let strict = Router::new(
            &UpstreamConfig {
                url: Url::parse("http://127.0.0.1:9/base/").unwrap(),
                allowed_organizations: vec!["contoso".into()],
                deployment_hosts: false,
                ..Default::default()
            },
            &Metrics::new(prometheus::Registry::new()).unwrap(),
        );
        check(
            &strict,
            "/.hosts/app_vssps/_apis/profile/profiles/me",
            Err("OrganizationRequired"),
        );
        check(
            &strict,
            "/.hosts/app_vssps/fabrikam/_apis/x",
            Err("OrganizationNotAllowed"),
        );
    }
}

/// Property: whatever the path, a forwarded request stays inside the
/// allowed organization as a front end that decodes, turns `\` into `/`
/// and collapses dot segments would read it.
#[cfg(test)]
mod properties;
