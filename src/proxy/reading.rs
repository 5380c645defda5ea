//! Reading upstream answers the proxy must look into: which ones are
//! rewritten (discovery, package feeds, Cargo's config, LFS batches),
//! reading a body up to a limit, and whether it is compressed.

use bytes::{Bytes, BytesMut};
use http::{Method, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::rewrite::is_discovery_path;
use super::{lfs, packages, route};
use crate::error::Error;

/// Which answers are rewritten so clients stay on the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rewrite {
    /// Host discovery JSON (small, buffered).
    Discovery,
    /// A Cargo sparse index's `config.json` (small, buffered).
    CargoConfig,
    /// A git LFS batch answer (small, buffered).
    LfsBatch,
    /// Package feed documents (streamed).
    Packages,
    /// Nothing: the body streams as it is.
    None,
}

impl Rewrite {
    /// What a `method` request to `path` may need. A HEAD answer has no
    /// body to rewrite, and its Content-Length describes the GET body, so
    /// it passes untouched. A batch call wins over every other reading:
    /// only its rewrite removes the actions' `Authorization`.
    pub(super) fn of(method: &Method, path: &str, headers: &http::HeaderMap) -> Self {
        if lfs::is_batch(method, path, headers) {
            Self::LfsBatch
        } else if *method != Method::HEAD && is_discovery_path(path) {
            Self::Discovery
        } else if packages::is_cargo_config(method, path) {
            Self::CargoConfig
        } else if packages::is_package_request(method, path) {
            Self::Packages
        } else {
            Self::None
        }
    }
}

/// A body read up to a limit.
pub(super) enum Bounded {
    /// All of it.
    Whole(Bytes),
    /// More than the limit: what was read; the rest is still in the body.
    TooLarge(Bytes),
}

/// Reads an upstream body until its end or past `limit` bytes.
pub(super) async fn read_bounded(
    body: &mut Incoming,
    limit: usize,
    upstream: &route::Upstream,
) -> Result<Bounded, Error> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            upstream.failed(
                crate::metrics::UpstreamErrorKind::Protocol,
                format!("reading the response body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                return Ok(Bounded::TooLarge(buf.freeze()));
            }
        }
    }
    Ok(Bounded::Whole(buf.freeze()))
}

/// Whether a body is compressed (so its bytes cannot be read as text).
pub(super) fn is_encoded(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_call_is_one_on_any_path() {
        let mut lfs = http::HeaderMap::new();
        lfs.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/vnd.git-lfs+json"),
        );
        let none = http::HeaderMap::new();
        for (method, path, headers, want) in [
            (
                Method::POST,
                "/o/_apis/resourceAreas",
                &lfs,
                Rewrite::LfsBatch,
            ),
            (
                Method::POST,
                "/o/_apis/connectionData",
                &lfs,
                Rewrite::LfsBatch,
            ),
            (
                Method::GET,
                "/o/_apis/resourceAreas",
                &none,
                Rewrite::Discovery,
            ),
            (
                Method::POST,
                "/o/p/_git/r.git/info/lfs/objects/batch",
                &none,
                Rewrite::LfsBatch,
            ),
            (
                Method::GET,
                "/o/_packaging/f/npm/registry/x",
                &none,
                Rewrite::Packages,
            ),
        ] {
            assert_eq!(Rewrite::of(&method, path, headers), want, "{method} {path}");
        }
    }
}
