//! Keeps clients on the proxy: upstream URLs in `Location` headers and in
//! Azure DevOps' discovery documents are rewritten to `public_url`.
//!
//! A URL is mapped when it points at a configured upstream (by scheme, host,
//! port and path prefix) or at one of Azure DevOps' canonical hosts:
//! `dev.azure.com`, `{name}.dev.azure.com`, `app.vssps.visualstudio.com`,
//! and the legacy `{org}.visualstudio.com` / `{org}.{name}.visualstudio.com`.

use std::collections::HashSet;

use serde_json::Value;
use url::Url;

use super::route::{MAIN, Router};
use crate::config::APP_VSSPS;

/// Largest discovery document that is buffered for rewriting; a larger one
/// streams through unchanged.
pub const MAX_DISCOVERY_BYTES: usize = 4 * 1024 * 1024;

/// Upstream URL → proxy URL.
pub struct UrlMap {
    /// `public_url` without a trailing slash.
    public: String,
    /// (`/.hosts/{name}` or "", upstream base URL), longest path first.
    bases: Vec<(String, Url)>,
    /// Names of configured sibling hosts.
    names: HashSet<String>,
}

// === impl UrlMap ===

impl UrlMap {
    /// Builds the map for `router`'s upstreams and the proxy's `public` URL.
    pub fn new(public: &Url, router: &Router) -> Self {
        let mut bases: Vec<(String, Url)> = router
            .upstreams()
            .map(|u| {
                let prefix = if &*u.name == MAIN {
                    String::new()
                } else {
                    format!("/.hosts/{}", u.name)
                };
                (prefix, u.base.clone())
            })
            .collect();
        bases.sort_by_key(|(_, url)| std::cmp::Reverse(url.path().len()));
        Self {
            public: public.as_str().trim_end_matches('/').to_string(),
            bases,
            names: router
                .upstreams()
                .filter(|u| &*u.name != MAIN)
                .map(|u| u.name.to_string())
                .collect(),
        }
    }

    /// The proxy URL for `url`, or `None` when it is not an upstream URL.
    pub fn to_public(&self, url: &Url) -> Option<String> {
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let (prefix, path) = self.configured(url).or_else(|| self.canonical(url))?;
        let mut out = String::with_capacity(self.public.len() + prefix.len() + path.len() + 32);
        out.push_str(&self.public);
        out.push_str(&prefix);
        out.push_str(&path);
        if let Some(q) = url.query() {
            out.push('?');
            out.push_str(q);
        }
        if let Some(f) = url.fragment() {
            out.push('#');
            out.push_str(f);
        }
        Some(out)
    }

    /// Rewrites a `Location`-style value; relative values are resolved
    /// against `request_url` first so a sibling host's `/x` keeps its host.
    pub fn rewrite_location(&self, value: &str, request_url: &Url) -> Option<String> {
        let absolute = request_url.join(value).ok()?;
        self.to_public(&absolute)
    }

    fn configured(&self, url: &Url) -> Option<(String, String)> {
        self.bases.iter().find_map(|(prefix, base)| {
            let same_origin = base.scheme() == url.scheme()
                && base.host_str().map(str::to_ascii_lowercase)
                    == url.host_str().map(str::to_ascii_lowercase)
                && base.port_or_known_default() == url.port_or_known_default();
            if !same_origin {
                return None;
            }
            let base_path = base.path().trim_end_matches('/');
            let rest = url.path().strip_prefix(base_path)?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            let rest = if rest.is_empty() { "/" } else { rest };
            Some((prefix.clone(), rest.to_string()))
        })
    }

    /// Whether `url`'s host is a configured upstream's, on any scheme or
    /// port.
    pub fn is_upstream_host(&self, url: &Url) -> bool {
        url.host_str().is_some_and(|host| {
            self.bases.iter().any(|(_, base)| {
                base.host_str()
                    .is_some_and(|b| b.eq_ignore_ascii_case(host))
            })
        })
    }

    fn canonical(&self, url: &Url) -> Option<(String, String)> {
        let host = url.host_str()?.to_ascii_lowercase();
        let path = url.path().to_string();
        if host == "dev.azure.com" {
            return Some((String::new(), path));
        }
        if host == "app.vssps.visualstudio.com" {
            return self.sibling(APP_VSSPS, path);
        }
        if let Some(name) = host.strip_suffix(".dev.azure.com") {
            return self.sibling(name, path);
        }
        let labels: Vec<&str> = host.strip_suffix(".visualstudio.com")?.split('.').collect();
        let path = path.trim_start_matches('/');
        match labels.as_slice() {
            [org] => Some((String::new(), format!("/{org}/{path}"))),
            [org, name] if self.names.contains(*name) => {
                Some((format!("/.hosts/{name}"), format!("/{org}/{path}")))
            }
            _ => None,
        }
    }

    fn sibling(&self, name: &str, path: String) -> Option<(String, String)> {
        self.names
            .contains(name)
            .then(|| (format!("/.hosts/{name}"), path))
    }

    /// Rewrites every upstream URL found in a JSON document; `None` when
    /// the body is not JSON or nothing changed.
    pub fn rewrite_json(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut doc: Value = serde_json::from_slice(body).ok()?;
        if self.rewrite_value(&mut doc) == 0 {
            return None;
        }
        serde_json::to_vec(&doc).ok()
    }

    fn rewrite_value(&self, v: &mut Value) -> usize {
        match v {
            Value::String(s) if s.starts_with("http") => {
                match Url::parse(s).ok().and_then(|u| self.to_public(&u)) {
                    Some(new) => {
                        *s = new;
                        1
                    }
                    None => 0,
                }
            }
            Value::Array(items) => items.iter_mut().map(|i| self.rewrite_value(i)).sum(),
            Value::Object(map) => map.values_mut().map(|i| self.rewrite_value(i)).sum(),
            _ => 0,
        }
    }
}

/// Whether `path` is a discovery endpoint whose JSON names hosts:
/// `_apis/resourceAreas[/{id}]`, `_apis/connectionData`,
/// `_apis/ServiceDefinitions/LocationService2[/...]`.
pub fn is_discovery_path(path: &str) -> bool {
    // Called for every request: no allocation, ASCII case-insensitive.
    const APIS: &[u8] = b"/_apis/";
    let bytes = path.as_bytes();
    let Some(i) = bytes
        .windows(APIS.len())
        .position(|w| w.eq_ignore_ascii_case(APIS))
    else {
        return false;
    };
    let api = path[i + APIS.len()..].trim_end_matches('/');
    let starts = |prefix: &str| {
        api.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    api.eq_ignore_ascii_case("resourceareas")
        || starts("resourceareas/")
        || api.eq_ignore_ascii_case("connectiondata")
        || starts("servicedefinitions/locationservice2")
}

/// The map of a proxy at `http://localhost:8080` in front of
/// `https://dev.azure.com` with the default sibling hosts (unit tests of
/// the rewriters).
#[cfg(test)]
pub(super) fn dev_azure_map() -> std::sync::Arc<UrlMap> {
    let config = crate::config::UpstreamConfig {
        url: Url::parse("https://dev.azure.com").unwrap(),
        ..Default::default()
    };
    let metrics = crate::metrics::Metrics::new(prometheus::Registry::new()).unwrap();
    let router = Router::new(&config, &metrics);
    std::sync::Arc::new(UrlMap::new(
        &Url::parse("http://localhost:8080").unwrap(),
        &router,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;

    fn map() -> UrlMap {
        let mut config = UpstreamConfig {
            url: Url::parse("http://127.0.0.1:7000/").unwrap(),
            ..Default::default()
        };
        config.hosts.insert(
            "vsrm".into(),
            Url::parse("http://127.0.0.1:7001/rm/").unwrap(),
        );
        let metrics = crate::metrics::Metrics::new(prometheus::Registry::new()).unwrap();
        let router = Router::new(&config, &metrics);
        UrlMap::new(&Url::parse("http://localhost:8080").unwrap(), &router)
    }

    fn check(input: &str, want: Option<&str>) {
        let got = map().to_public(&Url::parse(input).unwrap());
        assert_eq!(got.as_deref(), want, "{input}");
    }

    #[test]
    fn maps_upstream_urls_to_the_proxy() {
        check(
            "http://127.0.0.1:7000/org/_apis/x?a=1",
            Some("http://localhost:8080/org/_apis/x?a=1"),
        );
        check(
            "http://127.0.0.1:7001/rm/org/_apis/release",
            Some("http://localhost:8080/.hosts/vsrm/org/_apis/release"),
        );
        check("http://127.0.0.1:7001/other", None);
        check(
            "https://dev.azure.com/org/proj/_git/repo",
            Some("http://localhost:8080/org/proj/_git/repo"),
        );
        check(
            "https://vssps.dev.azure.com/org/",
            Some("http://localhost:8080/.hosts/vssps/org/"),
        );
        check(
            "https://VSRM.dev.azure.com/org/",
            Some("http://localhost:8080/.hosts/vsrm/org/"),
        );
        check(
            "https://app.vssps.visualstudio.com/_apis/profile",
            Some("http://localhost:8080/.hosts/app_vssps/_apis/profile"),
        );
        check(
            "https://contoso.visualstudio.com/_apis/projects",
            Some("http://localhost:8080/contoso/_apis/projects"),
        );
        check(
            "https://contoso.visualstudio.com/",
            Some("http://localhost:8080/contoso/"),
        );
        check(
            "https://contoso.vsrm.visualstudio.com/_apis/x",
            Some("http://localhost:8080/.hosts/vsrm/contoso/_apis/x"),
        );
        check("https://contoso.unknown.visualstudio.com/x", None);
        check("https://unknownhost.dev.azure.com/org", None);
        check("https://login.microsoftonline.com/common", None);
        check("https://example.com/dev.azure.com", None);
    }

    #[test]
    fn relative_locations_keep_their_host() {
        let m = map();
        let req = Url::parse("http://127.0.0.1:7001/rm/org/_apis/a").unwrap();
        assert_eq!(
            m.rewrite_location("/rm/org/_apis/b", &req).as_deref(),
            Some("http://localhost:8080/.hosts/vsrm/org/_apis/b")
        );
    }

    #[test]
    fn rewrites_discovery_json() {
        let body = br#"{"count":2,"value":[{"id":"efc2f575","name":"Release","locationUrl":"https://vsrm.dev.azure.com/org/"},{"id":"x","locationUrl":"https://example.com/"}]}"#;
        let out = String::from_utf8(map().rewrite_json(body).unwrap()).unwrap();
        assert!(
            out.contains(r#""locationUrl":"http://localhost:8080/.hosts/vsrm/org/""#),
            "{out}"
        );
        assert!(
            out.contains(r#""locationUrl":"https://example.com/""#),
            "{out}"
        );
        assert!(map().rewrite_json(b"not json").is_none());
    }

    #[test]
    fn discovery_paths() {
        for p in [
            "/org/_apis/resourceAreas",
            "/org/_apis/ResourceAreas/efc2f575-36ef",
            "/org/_apis/connectionData",
            "/org/_apis/ServiceDefinitions/LocationService2/951917AC",
            "/_apis/resourceareas/79134C72",
        ] {
            assert!(is_discovery_path(p), "{p}");
        }
        for p in [
            "/org/_apis/projects",
            "/org/_git/resourceAreas",
            "/org/_apis/resourceAreasX",
        ] {
            assert!(!is_discovery_path(p), "{p}");
        }
    }
}
