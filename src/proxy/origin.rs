//! Who may address the proxy, checked before anything else (and so before
//! a credential is attached): the `Host` a client used (DNS rebinding
//! makes an attacker's name point at the proxy) and whether a browser
//! request comes from another site (`Sec-Fetch-Site`, `Origin`).
//!
//! Programs (no `Origin`, no `Sec-Fetch-*`) are unaffected. In mode
//! `user`, a top-level GET navigation from another site is allowed, as
//! the `SameSite=Lax` session cookie is: a link in an e-mail opens the
//! page. `/.auth/callback` is exempt: the identity provider posts to it
//! from its own site, and state, PKCE and the pre-auth cookie protect it.
//! An `Origin` listed in `listen.cors_allowed_origins` is admitted as a
//! CORS caller (`cors.rs` answers its preflights and marks the answers).

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Version, header};
use url::Url;

use crate::error::Refusal;
use crate::host::HostName;

/// The `Sec-Fetch-*` request headers (Fetch Metadata).
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

/// The admission rules of one proxy.
#[derive(Debug)]
pub struct Origins {
    /// The `public_url` host.
    public: Option<HostName>,
    /// `scheme://host[:port]` of `public_url`.
    public_origin: String,
    /// `listen.allowed_hosts`.
    allowed: Vec<HostName>,
    /// How clients reach the listener, for same-origin `Origin` values.
    scheme: &'static str,
    /// Mode `user`: cross-site top-level GET navigations are allowed.
    navigations: bool,
    /// `listen.cors_allowed_origins`, as browsers write an `Origin`.
    cors: Vec<String>,
}

/// How a request was admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Same origin, a program, or an allowed navigation.
    Admitted,
    /// From a page of an allowed CORS origin (this `Origin`).
    Cors(HeaderValue),
    /// A CORS preflight from an allowed origin: the proxy answers it.
    Preflight(HeaderValue),
}

// === impl Origins ===

impl Origins {
    /// The rules for a proxy reached at `public_url` (scheme `scheme` on
    /// the listener itself) and also under `allowed_hosts`, serving CORS
    /// to `cors_origins` (both validated at load).
    pub fn new(
        public_url: &Url,
        allowed_hosts: &[String],
        scheme: &'static str,
        navigations: bool,
        cors_origins: &[String],
    ) -> Self {
        Self {
            public: public_url.host_str().and_then(HostName::parse),
            public_origin: public_url.origin().ascii_serialization(),
            allowed: allowed_hosts
                .iter()
                .filter_map(|h| HostName::parse(h))
                .collect(),
            scheme,
            navigations,
            cors: cors_origins
                .iter()
                .filter_map(|o| Url::parse(o).ok())
                .map(|u| u.origin().ascii_serialization())
                .collect(),
        }
    }

    /// Admits the request or says why not.
    pub fn admit<B>(&self, req: &Request<B>) -> Result<Admission, Refusal> {
        let host = self.check_host(req)?;
        let own = crate::endpoint::Endpoint::of(req.uri().path());
        if own == Some(crate::endpoint::Endpoint::Callback) {
            return Ok(Admission::Admitted);
        }
        // `/.auth/` makes and revokes credentials: a CORS origin gets no
        // grant there (an XSS in an allowed app would otherwise mint
        // durable tokens), only the proxy's own pages and programs.
        if own.is_none()
            && let Some(origin) = self.cors_origin(req.headers())
        {
            return Ok(if super::cors::is_preflight(req.method(), req.headers()) {
                Admission::Preflight(origin)
            } else {
                Admission::Cors(origin)
            });
        }
        self.check_site(req.method(), req.headers(), host)
            .map(|()| Admission::Admitted)
    }

    /// The request's `Origin` when it is an allowed CORS origin.
    fn cors_origin(&self, h: &HeaderMap) -> Option<HeaderValue> {
        if self.cors.is_empty() {
            return None;
        }
        let origin = h.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.cors
            .iter()
            .any(|o| o.eq_ignore_ascii_case(text))
            .then(|| origin.clone())
    }

    /// The `Host` (or HTTP/2 `:authority`, or an absolute-form target)
    /// must be a name this proxy answers to. Returns it as sent.
    pub fn check_host<'r, B>(&self, req: &'r Request<B>) -> Result<Option<&'r str>, Refusal> {
        let Some(sent) = addressed_to(req)? else {
            return Ok(None);
        };
        // A rebinding attack needs a name the attacker controls; an
        // address literal or a loopback name cannot be one. The common
        // cases are decided without allocating.
        let name = bare_name(sent);
        let quick = name.eq_ignore_ascii_case("localhost")
            || self
                .public
                .as_ref()
                .is_some_and(|p| name.eq_ignore_ascii_case(&p.name))
            || name.parse::<std::net::Ipv4Addr>().is_ok();
        let ok = quick
            || HostName::parse(sent).is_some_and(|h| {
                h.is_ip
                    || h.is_localhost()
                    || self.public.as_ref().is_some_and(|p| p.name == h.name)
                    || self.allowed.iter().any(|a| h.matches(a))
            });
        if ok {
            Ok(Some(sent))
        } else {
            Err(Refusal::HostNotAllowed {
                host: sent.chars().take(100).collect(),
            })
        }
    }

    /// A browser's request must come from the proxy's own origin.
    fn check_site(
        &self,
        method: &Method,
        h: &HeaderMap,
        host: Option<&str>,
    ) -> Result<(), Refusal> {
        let get = |name: &HeaderName| h.get(name).map(|v| v.as_bytes());
        // Looked at only for a request from elsewhere (and programs send
        // neither header): two lookups for nearly every request.
        let navigation = || {
            self.navigations
                && matches!(*method, Method::GET | Method::HEAD)
                && get(&SEC_FETCH_MODE) == Some(b"navigate")
                && get(&SEC_FETCH_DEST).is_none_or(|d| d == b"document")
        };
        if let Some(site) = get(&SEC_FETCH_SITE)
            && !matches!(site, b"same-origin" | b"none")
            && !navigation()
        {
            return Err(Refusal::CrossSite {
                why: "the browser says it comes from another site (Sec-Fetch-Site)",
            });
        }
        if let Some(origin) = get(&header::ORIGIN) {
            let same = origin == self.public_origin.as_bytes()
                || host.is_some_and(|host| {
                    origin
                        .strip_prefix(self.scheme.as_bytes())
                        .and_then(|o| o.strip_prefix(b"://"))
                        == Some(host.as_bytes())
                });
            if !same && !navigation() {
                return Err(Refusal::CrossSite {
                    why: "its Origin is not the proxy's own",
                });
            }
        }
        Ok(())
    }
}

/// The name a request is addressed to, read as the protocol defines it:
/// the target's authority (HTTP/2 `:authority`, an HTTP/1.1
/// absolute-form target, which wins over `Host`, RFC 9112 §3.2.2), else
/// the one `Host`. Refused: two `Host` headers (which would one reader
/// take?), an HTTP/2 `host` naming another authority than `:authority`
/// (RFC 9113 §8.3.1), and no name at all where the protocol requires one
/// (HTTP/1.1 and later; an HTTP/1.0 client has no browser to rebind).
fn addressed_to<B>(req: &Request<B>) -> Result<Option<&str>, Refusal> {
    let mut all = req.headers().get_all(header::HOST).iter();
    let host = all.next();
    if all.next().is_some() {
        return Err(Refusal::BadHost("it has more than one Host header"));
    }
    let host = host
        .map(|v| {
            v.to_str().map_err(|_| Refusal::HostNotAllowed {
                host: String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(100)
                    .collect(),
            })
        })
        .transpose()?;
    let later = req.version() >= Version::HTTP_11;
    match (req.uri().authority(), host) {
        (Some(a), Some(h))
            if req.version() >= Version::HTTP_2 && !a.as_str().eq_ignore_ascii_case(h) =>
        {
            Err(Refusal::BadHost(
                "its host header names another host than its :authority",
            ))
        }
        (Some(a), _) => Ok(Some(a.as_str())),
        (None, Some(h)) if h.is_empty() && later => {
            Err(Refusal::BadHost("its Host header is empty"))
        }
        (None, Some(h)) => Ok(Some(h)),
        (None, None) if later => Err(Refusal::BadHost(
            "it names no host (HTTP/1.1 requires a Host header)",
        )),
        (None, None) => Ok(None),
    }
}

/// The name of `host[:port]` without the port and a trailing dot; an
/// IPv6 literal keeps its brackets (and so takes the slow path).
fn bare_name(host: &str) -> &str {
    let name = match host.rsplit_once(':') {
        Some((n, port)) if !n.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    name.strip_suffix('.').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(navigations: bool) -> Origins {
        Origins::new(
            &Url::parse("https://proxy.example.com").unwrap(),
            &["svc.tools:8080".into()],
            "http",
            navigations,
            &["https://app.tools.example".into()],
        )
    }

    fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn check(o: &Origins, r: Request<()>) -> Result<(), &'static str> {
        o.admit(&r).map(|_| ()).map_err(|e| match e {
            Refusal::HostNotAllowed { .. } => "host",
            Refusal::CrossSite { .. } => "site",
            Refusal::BadHost(_) => "bad",
            _ => "other",
        })
    }

    #[test]
    fn hosts() {
        let o = origins(false);
        for (host, want) in [
            ("proxy.example.com", Ok(())),
            ("PROXY.example.com:443", Ok(())),
            ("localhost:8080", Ok(())),
            ("localhost", Ok(())),
            ("127.0.0.1:8080", Ok(())),
            ("[::1]:8080", Ok(())),
            ("10.1.2.3:8080", Ok(())),
            ("svc.tools:8080", Ok(())),
            ("svc.tools:9999", Err("host")),
            ("evil.example", Err("host")),
            ("evil.example:8080", Err("host")),
            ("localhost.evil.example", Err("host")),
            ("proxy.example.com.evil.example", Err("host")),
            ("a b", Err("host")),
        ] {
            assert_eq!(
                check(&o, req("GET", "/o/x", &[("host", host)])),
                want,
                "{host}"
            );
        }
        let http10 = |headers: &[(&str, &str)]| {
            let mut r = req("GET", "/o/x", headers);
            *r.version_mut() = Version::HTTP_10;
            r
        };
        assert_eq!(check(&o, http10(&[])), Ok(()), "HTTP/1.0 without Host");
        assert_eq!(
            check(&o, req("GET", "/o/x", &[])),
            Err("bad"),
            "HTTP/1.1 without Host"
        );
        assert_eq!(check(&o, req("GET", "/o/x", &[("host", "")])), Err("bad"));
        assert_eq!(
            check(
                &o,
                req(
                    "GET",
                    "/o/x",
                    &[("host", "localhost"), ("host", "evil.example")]
                )
            ),
            Err("bad"),
            "two Host headers"
        );
        let h2 = |target: &str, headers: &[(&str, &str)]| {
            let mut r = req("GET", target, headers);
            *r.version_mut() = Version::HTTP_2;
            r
        };
        assert_eq!(check(&o, h2("http://localhost/o/x", &[])), Ok(()));
        assert_eq!(
            check(&o, h2("http://localhost/o/x", &[("host", "LOCALHOST")])),
            Ok(())
        );
        assert_eq!(
            check(&o, h2("http://localhost/o/x", &[("host", "evil.example")])),
            Err("bad"),
            "an HTTP/2 host that is not the :authority"
        );
        assert_eq!(
            check(&o, h2("/o/x", &[])),
            Err("bad"),
            "HTTP/2 naming no host"
        );
        assert_eq!(
            check(
                &o,
                req("GET", "http://evil.example/o/x", &[("host", "localhost")])
            ),
            Err("host"),
            "the absolute-form target wins over Host"
        );
    }

    #[test]
    fn browsers_from_other_sites() {
        let h = ("host", "localhost:8080");
        for navigations in [false, true] {
            let o = origins(navigations);
            // Programs and same-origin requests.
            assert_eq!(check(&o, req("POST", "/o/x", &[h])), Ok(()));
            assert_eq!(
                check(
                    &o,
                    req("POST", "/o/x", &[h, ("origin", "http://localhost:8080")])
                ),
                Ok(())
            );
            assert_eq!(
                check(
                    &o,
                    req(
                        "POST",
                        "/o/x",
                        &[h, ("origin", "https://proxy.example.com")]
                    )
                ),
                Ok(())
            );
            assert_eq!(
                check(
                    &o,
                    req("GET", "/o/x", &[h, ("sec-fetch-site", "same-origin")])
                ),
                Ok(())
            );
            assert_eq!(
                check(&o, req("GET", "/o/x", &[h, ("sec-fetch-site", "none")])),
                Ok(())
            );
            // Cross-site and same-site requests that are not navigations.
            for bad in [
                vec![("origin", "https://evil.example")],
                vec![("origin", "null")],
                vec![("origin", "http://localhost:9999")],
                vec![("sec-fetch-site", "cross-site")],
                vec![("sec-fetch-site", "same-site")],
                vec![
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-mode", "no-cors"),
                ],
            ] {
                let mut headers = vec![h];
                headers.extend(bad.iter().copied());
                assert_eq!(
                    check(&o, req("POST", "/o/x", &headers)),
                    Err("site"),
                    "{bad:?}"
                );
                assert_eq!(
                    check(&o, req("GET", "/o/x", &headers)),
                    Err("site"),
                    "{bad:?}"
                );
            }
            // A cross-site form post as a navigation is still refused.
            let post_nav = [
                h,
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("origin", "https://evil.example"),
            ];
            assert_eq!(check(&o, req("POST", "/o/x", &post_nav)), Err("site"));
            // The provider's form_post answer.
            assert_eq!(check(&o, req("POST", "/.auth/callback", &post_nav)), Ok(()));
            // A link followed from another site: mode user only.
            let link = [
                h,
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ];
            let want = if navigations { Ok(()) } else { Err("site") };
            assert_eq!(check(&o, req("GET", "/o/x", &link)), want);
            let framed = [
                h,
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "iframe"),
            ];
            assert_eq!(check(&o, req("GET", "/o/x", &framed)), Err("site"));
        }
    }

    #[test]
    fn listed_origins_are_cors_callers_and_their_preflights_are_ours() {
        let o = origins(false);
        let admit = |method: &str, headers: &[(&str, &str)]| {
            o.admit(&req(method, "/contoso/_apis/projects", headers))
        };
        let app = HeaderValue::from_static("https://app.tools.example");
        assert_eq!(
            admit(
                "POST",
                &[
                    ("host", "proxy.example.com"),
                    ("origin", "https://app.tools.example"),
                    ("sec-fetch-site", "cross-site"),
                ]
            )
            .ok(),
            Some(Admission::Cors(app.clone()))
        );
        assert_eq!(
            admit(
                "OPTIONS",
                &[
                    ("host", "proxy.example.com"),
                    ("origin", "https://app.tools.example"),
                    ("access-control-request-method", "GET"),
                ]
            )
            .ok(),
            Some(Admission::Preflight(app))
        );
        // Near misses stay cross-site.
        for origin in [
            "https://app.tools.example.evil.com",
            "http://app.tools.example",
            "https://app.tools.example:8443",
            "null",
        ] {
            assert!(
                matches!(
                    admit("GET", &[("host", "proxy.example.com"), ("origin", origin)]),
                    Err(Refusal::CrossSite { .. })
                ),
                "{origin}"
            );
        }
        // `/.auth/` is the proxy's own: no grant, no preflight, and a
        // listed origin is as foreign there as any other.
        for path in [
            "/.auth/tokens",
            "/.auth/pats",
            "/.auth/logout",
            "/.auth/me",
            "/.auth",
        ] {
            for method in ["OPTIONS", "POST", "GET"] {
                let r = req(
                    method,
                    path,
                    &[
                        ("host", "proxy.example.com"),
                        ("origin", "https://app.tools.example"),
                        ("access-control-request-method", "POST"),
                    ],
                );
                assert!(
                    matches!(o.admit(&r), Err(Refusal::CrossSite { .. })),
                    "{method} {path}"
                );
            }
        }
        // The Host rule still comes first.
        assert!(matches!(
            admit(
                "GET",
                &[
                    ("host", "evil.example"),
                    ("origin", "https://app.tools.example")
                ]
            ),
            Err(Refusal::HostNotAllowed { .. })
        ));
    }
}
