//! Header surgery on the way up and down: hop-by-hop stripping,
//! `X-Forwarded-*`, the Azure DevOps redirect suppression, the credential,
//! and upstream cookies.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Azure DevOps answers 401 instead of a sign-in redirect or 203 page when
/// it sees this header with `Suppress`.
pub const FED_AUTH_REDIRECT: HeaderName = HeaderName::from_static("x-tfs-fedauthredirect");
const SUPPRESS: HeaderValue = HeaderValue::from_static("Suppress");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// The h2c upgrade's settings (RFC 7540 §3.2.1): connection-specific.
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every
/// header it names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade` and `HTTP2-Settings`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Runs twice per request: allocate only when there is something to do.
    // `close` and `keep-alive`, the usual tokens, are removed below anyway.
    let names_more = |v: &HeaderValue| {
        v.to_str().map_or(true, |v| {
            v.split(',').any(|n| {
                let n = n.trim();
                !n.is_empty()
                    && !n.eq_ignore_ascii_case("close")
                    && !n.eq_ignore_ascii_case("keep-alive")
            })
        })
    };
    if headers.get_all(header::CONNECTION).iter().any(names_more) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        KEEP_ALIVE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HTTP2_SETTINGS,
    ] {
        headers.remove(name);
    }
    remove_prefixed(headers, "proxy-");
}

/// Removes every header whose (lowercase) name starts with `prefix`;
/// allocates only when there is one.
pub fn remove_prefixed(headers: &mut HeaderMap, prefix: &str) {
    if headers.keys().any(|k| k.as_str().starts_with(prefix)) {
        let named: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with(prefix))
            .cloned()
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
}

/// A client address as an `X-Forwarded-For` entry, made once per
/// connection.
pub fn forwarded_for(client: SocketAddr) -> HeaderValue {
    HeaderValue::try_from(client.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Prepares a client's request headers for the upstream; `client_ip` is
/// the client's [`forwarded_for`].
pub fn prepare_request(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    scheme: &'static str,
    original_host: Option<HeaderValue>,
    credential: Option<&HeaderValue>,
) {
    strip_hop_by_hop(headers);
    // The client library sets Host from the upstream URI.
    headers.remove(header::HOST);

    let appended = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) => HeaderValue::from_bytes(&[prev, b", ", client_ip.as_bytes()].concat()).ok(),
        None => Some(client_ip.clone()),
    };
    match appended {
        Some(v) => {
            headers.insert(X_FORWARDED_FOR, v);
        }
        // The client's list was not a header value we can extend.
        None => {
            headers.insert(X_FORWARDED_FOR, client_ip.clone());
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    match original_host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    headers.insert(FED_AUTH_REDIRECT, SUPPRESS);
    if let Some(value) = credential {
        headers.insert(header::AUTHORIZATION, value.clone());
    }
}

/// Prepares the upstream's response headers for the client: hop-by-hop
/// headers and every upstream `Set-Cookie` (Azure DevOps' own session
/// cookies such as `VstsSession`, meaningless behind the proxy) go.
pub fn prepare_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(header::SET_COOKIE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Custom-Hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-keep", "yes"),
            ("accept", "application/json"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "x-keep"]);
    }

    #[test]
    fn a_connection_header_naming_only_close_or_keep_alive_still_goes() {
        for value in ["close", "Keep-Alive", "keep-alive, close", " , close"] {
            let mut h = HeaderMap::new();
            h.insert(header::CONNECTION, HeaderValue::from_static(value));
            h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
            h.insert("x-keep", HeaderValue::from_static("yes"));
            strip_hop_by_hop(&mut h);
            let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, ["x-keep"], "{value}");
        }
        // A named header among them is still removed.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, X-Hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn request_gets_forwarding_headers_and_credential() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("localhost:8080"));
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer client"),
        );
        prepare_request(
            &mut h,
            &forwarded_for("127.0.0.1:5555".parse().unwrap()),
            "http",
            Some(HeaderValue::from_static("localhost:8080")),
            Some(&HeaderValue::from_static("Basic abc")),
        );
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "localhost:8080");
        assert_eq!(h[FED_AUTH_REDIRECT], "Suppress");
        assert_eq!(h[header::AUTHORIZATION], "Basic abc");
        assert!(h.get(header::HOST).is_none());
        h.remove(X_FORWARDED_FOR);
        prepare_request(
            &mut h,
            &forwarded_for("[2001:db8::1]:5555".parse().unwrap()),
            "http",
            None,
            None,
        );
        assert_eq!(h[X_FORWARDED_FOR], "2001:db8::1");
    }
}
