//! Package feeds stay on the proxy: Azure Artifacts answers with absolute
//! URLs (`https://pkgs.dev.azure.com/{org}/...`, or
//! `https://{org}.pkgs.visualstudio.com/...`) in the npm packument's
//! `dist.tarball`, the NuGet service index and registrations, the Python
//! simple index (PEP 503 HTML and PEP 691 JSON), the Cargo sparse index's
//! `config.json` (`dl`, `api`) and Maven metadata. A client that followed
//! them would go around the proxy, with no credential. So on package
//! paths (`/_packaging/`), text answers (JSON, HTML, XML) are rewritten
//! while they stream: every Azure DevOps URL becomes the proxy's
//! (through [`UrlMap`]), in bounded memory whatever the document's size.
//!
//! The rewritten body has another length and other bytes: `Content-Length`
//! goes (the body is chunked), a strong `ETag` becomes weak (the same
//! upstream version always rewrites to the same bytes, so `If-None-Match`
//! keeps working), and range support is not advertised.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use memchr::memmem;
use url::Url;

use super::rewrite::UrlMap;
use crate::body::Transform;

/// The longest URL rewritten; a longer one passes through as it is (and
/// bounds what is held back between chunks).
const MAX_URL: usize = 8 * 1024;

/// Whether a request's answer may be a package document to rewrite.
pub fn is_package_request(method: &Method, path: &str) -> bool {
    *method == Method::GET && path.contains("/_packaging/")
}

/// Whether this answer is one to rewrite: a complete (200) text
/// document that is not compressed.
pub fn rewritable(status: StatusCode, headers: &HeaderMap) -> bool {
    if status != StatusCode::OK {
        return false;
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return false;
    }
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ct = ct.to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.ends_with("json")
        || essence.ends_with("+json")
        || essence == "text/html"
        || essence.ends_with("xml")
        || essence == "text/plain"
}

/// Adjusts the headers of a rewritten answer: no length, a weak `ETag`,
/// no ranges.
pub fn prepare_headers(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    headers.remove("content-md5");
    if let Some(etag) = headers.get(header::ETAG)
        && !etag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, v);
        }
    }
}

/// Rewrites Azure DevOps URLs in a streamed document.
pub struct UrlStream {
    map: Arc<UrlMap>,
    /// Bytes held back from the last chunk: a URL that may go on.
    carry: Vec<u8>,
    finder: memmem::Finder<'static>,
}

impl UrlStream {
    /// A rewriter onto `map`'s public URL.
    pub fn new(map: Arc<UrlMap>) -> Self {
        Self {
            map,
            carry: Vec::new(),
            finder: memmem::Finder::new(b"http"),
        }
    }

    /// Rewrites `buf`; unless `last`, holds back a URL that reaches the
    /// end of `buf` (it may go on in the next chunk). Returns the output
    /// and where the held-back part starts.
    fn rewrite(&self, buf: &[u8], last: bool) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(buf.len() + 256);
        let mut copied = 0;
        let mut at = 0;
        while let Some(found) = self.finder.find(&buf[at..]) {
            let start = at + found;
            let end = match token_end(buf, start) {
                Some(end) => end,
                None if !last && buf.len() - start <= MAX_URL => {
                    out.extend_from_slice(&buf[copied..start]);
                    return (out, start);
                }
                None => buf.len(),
            };
            if end - start <= MAX_URL
                && let Some(new) = self.map_token(&buf[start..end])
            {
                out.extend_from_slice(&buf[copied..start]);
                out.extend_from_slice(&new);
                copied = end;
            }
            at = end.max(start + 1);
        }
        // "htt" at the very end may become "http" with the next chunk.
        let keep = if last {
            0
        } else {
            partial_prefix(&buf[copied..])
        };
        let upto = buf.len() - keep;
        out.extend_from_slice(&buf[copied..upto]);
        (out, upto)
    }

    /// The proxy's URL for an Azure DevOps URL (as written in the
    /// document: JSON may escape `/` as `\/`).
    fn map_token(&self, token: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(token).ok()?;
        if !text.contains("\\/") {
            return public_url_text(&self.map, text).map(String::into_bytes);
        }
        let public = public_url_text(&self.map, &text.replace("\\/", "/"))?;
        Some(public.replace('/', "\\/").into_bytes())
    }
}

/// The proxy's URL for the Azure DevOps URL `text`: its origin is
/// mapped and the rest (path, query, fragment) kept byte for byte, so
/// markers such as cargo's `{crate}` survive. An upstream configured
/// with a base path is matched on the whole URL instead.
pub fn public_url_text(map: &UrlMap, text: &str) -> Option<String> {
    let after_scheme = text
        .strip_prefix("https://")
        .map(|r| (8, r))
        .or_else(|| text.strip_prefix("http://").map(|r| (7, r)))?;
    let (scheme_len, rest) = after_scheme;
    let origin_end = scheme_len + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (origin, tail) = text.split_at(origin_end);
    let by_origin = Url::parse(&format!("{origin}/"))
        .ok()
        .and_then(|u| map.to_public(&u));
    match by_origin {
        Some(public) => {
            let public = public.trim_end_matches('/');
            let tail = if tail.is_empty() || tail.starts_with('/') {
                tail.to_string()
            } else {
                format!("/{tail}")
            };
            Some(format!("{public}{tail}"))
        }
        None => map.to_public(&Url::parse(text).ok()?),
    }
}

/// Cargo's sparse index `config.json`: `dl` and `api` rewritten, and
/// `auth-required` dropped, because the proxy supplies the credential
/// (cargo would otherwise refuse to go on without a token of its own).
/// `None` when it is not a JSON object.
pub fn cargo_config(map: &UrlMap, body: &[u8]) -> Option<Vec<u8>> {
    let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    doc.remove("auth-required");
    for key in ["dl", "api"] {
        if let Some(serde_json::Value::String(url)) = doc.get_mut(key)
            && let Some(public) = public_url_text(map, url)
        {
            *url = public;
        }
    }
    serde_json::to_vec(&doc).ok()
}

/// Whether `path` is a Cargo sparse index's `config.json` in a feed.
pub fn is_cargo_config(method: &Method, path: &str) -> bool {
    is_package_request(method, path)
        && path
            .to_ascii_lowercase()
            .ends_with("/cargo/index/config.json")
}

impl Transform for UrlStream {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        if self.carry.is_empty() && self.finder.find(&data).is_none() && partial_prefix(&data) == 0
        {
            // Nothing to rewrite: the chunk goes as it is.
            return data;
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(&data);
        let (out, held) = self.rewrite(&buf, false);
        self.carry = buf[held..].to_vec();
        Bytes::from(out)
    }

    fn finish(&mut self) -> Bytes {
        let buf = std::mem::take(&mut self.carry);
        Bytes::from(self.rewrite(&buf, true).0)
    }
}

/// Where the URL starting at `start` ends (exclusive), or `None` when it
/// reaches the end of `buf`. A URL ends at a quote, `<`, `>`, a backtick,
/// `)`, whitespace, a control byte, or a `\` that is not `\/`.
fn token_end(buf: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while i < buf.len() {
        match buf[i] {
            b'\\' => match buf.get(i + 1) {
                Some(b'/') => i += 2,
                Some(_) => return Some(i),
                None => return None,
            },
            b'"' | b'\'' | b'<' | b'>' | b'`' | b')' => return Some(i),
            b if b <= b' ' || b == 0x7f => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// How many bytes at the end of `buf` are a proper prefix of `http`.
fn partial_prefix(buf: &[u8]) -> usize {
    (1..=3)
        .rev()
        .find(|&n| buf.len() >= n && b"http".starts_with(&buf[buf.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map() -> Arc<UrlMap> {
        crate::proxy::rewrite::dev_azure_map()
    }

    /// Streams `doc` through the rewriter cut into `sizes`-long chunks.
    fn stream(doc: &[u8], size: usize) -> Vec<u8> {
        let mut s = UrlStream::new(map());
        let mut out = Vec::new();
        for chunk in doc.chunks(size.max(1)) {
            out.extend_from_slice(&s.chunk(Bytes::copy_from_slice(chunk)));
        }
        out.extend_from_slice(&s.finish());
        out
    }

    const PACKUMENT: &str = r#"{"name":"left-pad","versions":{"1.3.0":{"dist":{"tarball":"https://pkgs.dev.azure.com/contoso/_packaging/feed/npm/registry/left-pad/-/left-pad-1.3.0.tgz","integrity":"sha512-x"}}},"homepage":"https://github.com/x/y","readme":"see [docs](https://contoso.pkgs.visualstudio.com/_packaging/feed/npm/registry/)"}"#;

    #[test]
    fn azure_devops_urls_become_the_proxys_and_others_stay() {
        let out = String::from_utf8(stream(PACKUMENT.as_bytes(), 1 << 20)).unwrap();
        assert!(out.contains(r#""tarball":"http://localhost:8080/.hosts/pkgs/contoso/_packaging/feed/npm/registry/left-pad/-/left-pad-1.3.0.tgz""#), "{out}");
        assert!(out.contains("https://github.com/x/y"), "{out}");
        assert!(
            out.contains(
                "(http://localhost:8080/.hosts/pkgs/contoso/_packaging/feed/npm/registry/)"
            ),
            "{out}"
        );
    }

    #[test]
    fn escaped_slashes_html_and_fragments() {
        let json = r#"{"api":"https:\/\/pkgs.dev.azure.com\/contoso\/_packaging\/f\/Cargo\/api"}"#;
        assert_eq!(
            String::from_utf8(stream(json.as_bytes(), 7)).unwrap(),
            r#"{"api":"http:\/\/localhost:8080\/.hosts\/pkgs\/contoso\/_packaging\/f\/Cargo\/api"}"#
        );
        let html = "<a href='https://pkgs.dev.azure.com/contoso/_packaging/f/pypi/download/x/1/x-1.whl#sha256=ab'>x</a>";
        assert_eq!(
            String::from_utf8(stream(html.as_bytes(), 5)).unwrap(),
            "<a href='http://localhost:8080/.hosts/pkgs/contoso/_packaging/f/pypi/download/x/1/x-1.whl#sha256=ab'>x</a>"
        );
        // Not a URL of Azure DevOps, or not a URL at all.
        for text in [
            "http",
            "https",
            "httpx://dev.azure.com/",
            "see http://example.com/a",
            "htt",
        ] {
            assert_eq!(stream(text.as_bytes(), 2), text.as_bytes());
        }
    }

    #[test]
    fn paths_are_kept_byte_for_byte_and_cargo_config_loses_auth_required() {
        let doc = r#"{"dl":"https://pkgs.dev.azure.com/contoso/_packaging/f/Cargo/api/v1/crates/{crate}/{version}/download"}"#;
        assert_eq!(
            String::from_utf8(stream(doc.as_bytes(), 9)).unwrap(),
            r#"{"dl":"http://localhost:8080/.hosts/pkgs/contoso/_packaging/f/Cargo/api/v1/crates/{crate}/{version}/download"}"#
        );
        let config = br#"{"dl":"https://pkgs.dev.azure.com/contoso/_packaging/f/Cargo/api/v1/crates","api":"https://pkgs.dev.azure.com/contoso/_packaging/f/Cargo/","auth-required":true}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&cargo_config(&map(), config).unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "dl": "http://localhost:8080/.hosts/pkgs/contoso/_packaging/f/Cargo/api/v1/crates",
                "api": "http://localhost:8080/.hosts/pkgs/contoso/_packaging/f/Cargo/",
            })
        );
        assert_eq!(
            public_url_text(&map(), "https://contoso.visualstudio.com?x#y").as_deref(),
            Some("http://localhost:8080/contoso/?x#y")
        );
    }

    #[test]
    fn an_endless_url_passes_through_with_bounded_holding() {
        let mut s = UrlStream::new(map());
        let mut doc = b"\"https://dev.azure.com/".to_vec();
        doc.extend(std::iter::repeat_n(b'a', 100_000));
        let mut out = Vec::new();
        for chunk in doc.chunks(1000) {
            out.extend_from_slice(&s.chunk(Bytes::copy_from_slice(chunk)));
            assert!(s.carry.len() <= MAX_URL + 1000, "{}", s.carry.len());
        }
        out.extend_from_slice(&s.finish());
        assert_eq!(out, doc);
    }

    #[test]
    fn headers_of_a_rewritten_answer() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(10));
        h.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        prepare_headers(&mut h);
        assert_eq!(h[header::ETAG], "W/\"abc\"");
        assert!(!h.contains_key(header::CONTENT_LENGTH));
        assert!(!h.contains_key(header::ACCEPT_RANGES));
        let ok = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            rewritable(StatusCode::OK, &h)
        };
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("application/vnd.pypi.simple.v1+json"));
        assert!(ok("text/html"));
        assert!(ok("application/xml"));
        assert!(!ok("application/octet-stream"));
        assert!(!ok("application/x-tar"));
    }

    proptest! {
        /// However the document is cut into chunks, the output is the
        /// same as rewriting it whole.
        #[test]
        fn chunking_never_changes_the_output(
            cut in 1usize..64,
            pieces in prop::collection::vec(prop::sample::select(vec![
                "https://pkgs.dev.azure.com/contoso/_packaging/f/x.tgz",
                "https:\\/\\/dev.azure.com\\/contoso\\/_apis",
                "http", "htt", "h", "\"", "'", " ", "\\", "\\u0026", "<a>",
                "https://contoso.pkgs.visualstudio.com/_packaging/f/",
                "https://example.com/", "é", "?a=1&b=2", "#frag",
            ]), 0..24),
        ) {
            let doc = pieces.concat();
            let whole = stream(doc.as_bytes(), usize::MAX);
            prop_assert_eq!(stream(doc.as_bytes(), cut), whole);
        }
    }
}
