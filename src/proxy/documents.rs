//! Upstream answers a browser could render as a document (HTML, SVG,
//! XML and friends: a repository item, an attachment, a build artifact, a
//! wiki page) would otherwise run on the proxy's origin, beside
//! `/.auth/tokens` and `/.auth/pats`, and could mint credentials. Each
//! such answer gets `Content-Security-Policy: sandbox` (without
//! `allow-same-origin`): the browser gives it an opaque origin, no
//! scripts, no forms, no cookies of the proxy. The proxy's own pages are
//! not sandboxed (`page::mark_own`).

use http::header::{self, HeaderMap, HeaderValue};

const SANDBOX: HeaderValue = HeaderValue::from_static("sandbox");

/// Sandboxes `headers`' answer when a browser could render it as a
/// document. A second policy header adds to any the upstream sent (a
/// browser enforces every policy), so the upstream's own stays intact.
pub fn sandbox(headers: &mut HeaderMap) {
    if renderable(headers) {
        headers.append(header::CONTENT_SECURITY_POLICY, SANDBOX);
    }
}

/// Whether a browser may render the answer as a document: a document
/// type, or no type a browser would trust (it then sniffs, and HTML is
/// what it finds).
fn renderable(headers: &HeaderMap) -> bool {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(ct), None) = (types.next(), types.next()) else {
        // None, or several: a browser may pick any of them.
        return true;
    };
    let Ok(ct) = ct.to_str() else {
        return true;
    };
    // Browsers read a comma-separated value by the Fetch rule (the last
    // valid type wins): any listed document type counts.
    ct.split(',').any(is_document)
}

/// Whether one media type (parameters allowed) is a document, or none a
/// browser would trust.
fn is_document(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.is_empty() || !essence.contains('/') {
        return true;
    }
    let is = |t: &str| essence.eq_ignore_ascii_case(t);
    let ends = |s: &str| {
        essence.len() >= s.len() && essence[essence.len() - s.len()..].eq_ignore_ascii_case(s)
    };
    // The common answers of REST and git calls are decided first.
    if is("application/json") || is("application/x-git-upload-pack-result") {
        return false;
    }
    is("text/html")
        || is("application/xhtml+xml")
        || is("image/svg+xml")
        || is("text/xml")
        || is("application/xml")
        || is("text/xsl")
        || is("application/xslt+xml")
        || is("multipart/x-mixed-replace")
        || is("application/pdf")
        || ends("+xml")
        || is("*/*")
        || is("unknown/unknown")
        || is("application/unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(types: &[&str], want: bool) {
        let mut h = HeaderMap::new();
        for t in types {
            h.append(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        sandbox(&mut h);
        let got = h.get_all(header::CONTENT_SECURITY_POLICY).iter().count() == 1;
        assert_eq!(got, want, "{types:?}");
    }

    #[test]
    fn documents_are_sandboxed_and_data_is_not() {
        for t in [
            "text/html",
            "text/html; charset=utf-8",
            "TEXT/HTML",
            "application/xhtml+xml",
            "image/svg+xml",
            "Image/SVG+XML; charset=x",
            "text/xml",
            "application/xml",
            "application/rss+xml",
            "application/atom+xml",
            "application/mathml+xml",
            "text/xsl",
            "multipart/x-mixed-replace; boundary=x",
            "application/pdf",
            "",
            "html",
            ";",
            "*/*",
        ] {
            check(&[t], true);
        }
        check(&[], true);
        check(&["application/json", "text/html"], true);
        check(&["application/json, text/html"], true);
        check(&["text/plain, image/svg+xml; charset=x"], true);
        for t in [
            "application/json",
            "application/json; charset=utf-8; api-version=7.1",
            "application/octet-stream",
            "application/zip",
            "text/plain",
            "image/png",
            "application/x-git-upload-pack-result",
            "application/vnd.git-lfs+json",
            "text/css",
            "application/javascript",
        ] {
            check(&[t], false);
        }
    }

    #[test]
    fn the_upstreams_own_policy_is_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'"),
        );
        sandbox(&mut h);
        let policies: Vec<_> = h.get_all(header::CONTENT_SECURITY_POLICY).iter().collect();
        assert_eq!(policies, ["default-src 'self'", "sandbox"]);
    }
}
