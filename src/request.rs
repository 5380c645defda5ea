//! The request vocabulary every layer speaks: who is asking
//! ([`ClientKind`], which decides the language of an answer) and the
//! facts about one request ([`RequestCtx`]) that each step and the access
//! record read. Knows nothing of routing, credentials or upstreams.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request};

use crate::endpoint::Endpoint;
use crate::metrics::RouteClass;

/// Request id header, taken from the client when sane and always echoed.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Who is asking, which decides how refusals are worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A browser navigating (GET with `Accept` naming `text/html`).
    Browser,
    /// git over smart HTTP.
    Git,
    /// Any other program (SDKs, scripts, curl).
    Program,
}

/// Facts about one request, passed to each step and to the access log.
pub struct RequestCtx {
    /// Echoed in `X-Request-Id` and logged.
    pub request_id: HeaderValue,
    /// When the request arrived.
    pub start: Instant,
    /// The request method.
    pub method: Method,
    /// The request target; only its path is ever shown (the query string
    /// may carry secrets).
    uri: http::Uri,
    /// The proxy's own endpoint the path names (`/.auth/...`), served
    /// instead of forwarded.
    pub own: Option<Endpoint>,
    /// For metric labels (derived from `own` and the path).
    pub route: RouteClass,
    /// For error wording.
    pub client: ClientKind,
    /// The client accepts `application/problem+json`.
    pub wants_problem: bool,
    /// The upstream's label once routed.
    pub upstream: Option<Arc<str>>,
    /// Where the organization is in the path, once routed.
    organization: Option<std::ops::Range<usize>>,
    /// The `Origin` of an allowed CORS caller; its answer says so.
    pub cors: Option<HeaderValue>,
}

// === impl RequestCtx ===

impl RequestCtx {
    /// Reads what the pipeline needs to know from the request head.
    pub fn new<B>(req: &Request<B>) -> Self {
        let path = req.uri().path();
        let own = Endpoint::of(path);
        Self {
            request_id: request_id(req.headers()),
            start: crate::clock::real_instant(),
            method: req.method().clone(),
            route: match own {
                Some(_) => RouteClass::Auth,
                None => RouteClass::of_upstream_path(path),
            },
            own,
            client: ClientKind::of(req, path),
            wants_problem: req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/problem+json")),
            uri: req.uri().clone(),
            upstream: None,
            organization: None,
            cors: None,
        }
    }

    /// Records where the router found the organization in the path.
    pub fn set_organization(&mut self, span: Option<std::ops::Range<usize>>) {
        self.organization = span.filter(|s| self.uri.path().get(s.clone()).is_some());
    }

    /// The organization the request is for, as the client wrote it, once
    /// routed (on `/{org}/...` and `/.hosts/{name}/{org}/...` alike).
    pub fn organization(&self) -> Option<&str> {
        self.uri.path().get(self.organization.clone()?)
    }

    /// The request path, without the query string.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The request path and query: where a browser returns after
    /// sign-in. Never logged.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    /// The request id as text.
    pub fn request_id_str(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }
}

fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    let sane = |v: &&HeaderValue| {
        let b = v.as_bytes();
        (1..=128).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
    };
    match headers.get(X_REQUEST_ID).filter(sane) {
        Some(v) => v.clone(),
        None => new_request_id(),
    }
}

/// A UUIDv4-shaped id without a `getrandom` call per request: one random
/// seed per process, mixed with a counter (splitmix64), so ids are unique
/// across requests and, with overwhelming probability, across replicas.
fn new_request_id() -> HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<u128> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u128());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let hi = mix(n ^ (seed >> 64) as u64);
    let lo = mix(n.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ seed as u64);
    let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

// === impl ClientKind ===

impl ClientKind {
    fn of<B>(req: &Request<B>, path: &str) -> Self {
        let h = req.headers();
        let ua = h
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let git_path = path.ends_with("/info/refs")
            || path.ends_with("/git-upload-pack")
            || path.ends_with("/git-receive-pack");
        let git_agent = ua.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("git/"));
        if git_agent || git_path {
            return Self::Git;
        }
        let accepts_html = h
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(prefers_html);
        // A form_post sign-in answer and the sign-out button are a
        // browser posting a form.
        let navigating = (matches!(*req.method(), Method::GET | Method::HEAD)
            || (req.method() == Method::POST
                && (path == "/.auth/callback" || path == "/.auth/logout")))
            && !h.contains_key("x-requested-with");
        if accepts_html && navigating {
            Self::Browser
        } else {
            Self::Program
        }
    }
}

/// Whether an `Accept` value prefers HTML: `text/html` is listed with a
/// weight at least that of any JSON type. A JSON client that also lists
/// `text/html;q=0.1` is not a browser.
fn prefers_html(accept: &str) -> bool {
    let mut html = 0.0_f32;
    let mut json = 0.0_f32;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media == "text/html" || media == "application/xhtml+xml" {
            html = html.max(q);
        } else if media.ends_with("/json") || media.ends_with("+json") {
            json = json.max(q);
        }
    }
    html > 0.0 && html >= json
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_preference() {
        for (accept, browser) in [
            (
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                true,
            ),
            ("text/html", true),
            ("application/json", false),
            ("*/*", false),
            ("application/json, text/html;q=0.1", false),
            ("application/json;api-version=7.1", false),
            ("text/html;q=0.9, application/json;q=0.5", true),
            ("text/html;q=0", false),
        ] {
            assert_eq!(super::prefers_html(accept), browser, "{accept}");
        }
    }

    #[test]
    fn request_ids_are_distinct_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| super::new_request_id().to_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 10_000);
        let one = ids.iter().next().unwrap();
        let parsed = uuid::Uuid::parse_str(one).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
    }
}
