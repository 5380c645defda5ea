//! CORS for single-page apps on other origins (`listen.cors_allowed_origins`,
//! off by default). A page of a listed origin may call the proxy with
//! credentials: the proxy answers its preflights itself (nothing goes
//! upstream) and marks every answer to it, the proxy's own refusals
//! included, as readable by that origin. Every other origin stays refused
//! by the cross-site rule (`origin.rs`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::body::ProxyBody;

const ACCESS_CONTROL_REQUEST_METHOD: HeaderName =
    HeaderName::from_static("access-control-request-method");

/// How long a browser may cache a preflight answer (seconds).
const MAX_AGE: HeaderValue = HeaderValue::from_static("600");

/// Response headers a page may read besides the CORS-safelisted ones: the
/// proxy's request id, throttling, and Azure DevOps' correlation ids.
const EXPOSE: HeaderValue = HeaderValue::from_static(
    "X-Request-Id, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, \
     X-RateLimit-Resource, X-RateLimit-Delay, ActivityId, X-TFS-Session, X-VSS-E2EID, \
     X-MSEdge-Ref, WWW-Authenticate, Location",
);

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &http::Method, headers: &HeaderMap) -> bool {
    *method == http::Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The proxy's own answer to a preflight from the allowed `origin`: the
/// method and headers it asks for are allowed (the credential is the
/// proxy's to attach; what Azure DevOps accepts is decided there).
pub fn preflight(origin: &HeaderValue, request: &HeaderMap) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    allow(h, origin);
    if let Some(method) = request.get(ACCESS_CONTROL_REQUEST_METHOD) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
    }
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    h.append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    resp
}

/// Marks an answer as readable by the allowed `origin`, replacing any
/// CORS headers the upstream sent (they name Azure DevOps' own origins).
pub fn decorate(headers: &mut HeaderMap, origin: &HeaderValue) {
    super::headers::remove_prefixed(headers, "access-control-");
    allow(headers, origin);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE);
}

fn allow(headers: &mut HeaderMap, origin: &HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_allows_what_was_asked_for_that_origin_only() {
        let mut asked = HeaderMap::new();
        asked.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PATCH"),
        );
        asked.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("content-type, x-tfs-fedauthredirect"),
        );
        assert!(is_preflight(&http::Method::OPTIONS, &asked));
        assert!(!is_preflight(&http::Method::GET, &asked));
        assert!(!is_preflight(&http::Method::OPTIONS, &HeaderMap::new()));
        let origin = HeaderValue::from_static("https://app.tools.example");
        let resp = preflight(&origin, &asked);
        assert_eq!(resp.status(), 204);
        let h = resp.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.tools.example"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "PATCH");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, x-tfs-fedauthredirect"
        );
    }

    #[test]
    fn answers_lose_the_upstreams_cors_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://dev.azure.com"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET"),
        );
        decorate(
            &mut h,
            &HeaderValue::from_static("https://app.tools.example"),
        );
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.tools.example"
        );
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS));
        assert!(
            h[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("X-Request-Id")
        );
        assert_eq!(h[header::VARY], "Origin");
    }
}
