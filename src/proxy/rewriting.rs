//! The pipeline's rewriting steps: package documents streamed with their
//! Azure DevOps URLs onto the proxy, small discovery documents and git
//! LFS batch answers read whole and rewritten.

use http::Response;
use http::header::{self, HeaderValue};
use http::response::Parts;
use hyper::body::Incoming;

use bytes::Bytes;

use super::reading::{Bounded, Rewrite, is_encoded, read_bounded};
use super::rewrite::MAX_DISCOVERY_BYTES;
use super::{Inner, lfs, packages, route};
use crate::body::ProxyBody;
use crate::diagnose;
use crate::error::Error;
use crate::identity::Credential;
use crate::request::RequestCtx;

impl Inner {
    /// Streams a package document with every Azure DevOps URL in it
    /// rewritten onto the proxy; anything else passes as it is.
    pub(super) fn rewrite_packages(&self, parts: &mut Parts, body: Incoming) -> ProxyBody {
        if !packages::rewritable(parts.status, &parts.headers) {
            return ProxyBody::upstream(None, body);
        }
        packages::prepare_headers(&mut parts.headers);
        ProxyBody::transformed(body, Box::new(packages::UrlStream::new(self.urls.clone())))
    }

    /// Buffers a small JSON discovery document (or a Cargo index's
    /// `config.json`) and rewrites the host URLs
    /// in it; anything else (or anything large) streams through untouched.
    pub(super) async fn rewrite_discovery(
        &self,
        parts: &mut Parts,
        mut body: Incoming,
        upstream: &route::Upstream,
        kind: Rewrite,
    ) -> Result<ProxyBody, Error> {
        if !parts.status.is_success() || !is_json(&parts.headers) || is_encoded(&parts.headers) {
            return Ok(ProxyBody::upstream(None, body));
        }
        let buf = match read_bounded(&mut body, MAX_DISCOVERY_BYTES, upstream).await? {
            Bounded::Whole(b) => b,
            Bounded::TooLarge(head) => return Ok(ProxyBody::upstream(Some(head), body)),
        };
        let rewritten = match kind {
            Rewrite::CargoConfig => {
                packages::prepare_headers(&mut parts.headers);
                packages::cargo_config(&self.urls, &buf)
            }
            _ => self.urls.rewrite_json(&buf),
        };
        let out = rewritten.map(Bytes::from).unwrap_or(buf);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
        Ok(ProxyBody::full(out))
    }

    /// A git LFS batch answer with its actions on the proxy and without
    /// the upstream's or the proxy's `Authorization` (see `lfs`). A
    /// successful answer is rewritten or refused (502), never passed as
    /// it is: compressed, over 4 MiB or not JSON, it fails closed. A
    /// refusal diagnosis recognises (a 203 sign-in, an error) is
    /// explained in the proxy's own words only. An error answer that is
    /// JSON is rewritten as well; any other error passes as it is (git-lfs
    /// takes no action from one).
    pub(super) async fn lfs_batch(
        &self,
        mut parts: Parts,
        mut body: Incoming,
        ctx: &RequestCtx,
        upstream: &route::Upstream,
        credential: &Credential,
    ) -> Result<Response<ProxyBody>, Error> {
        let success = parts.status.is_success();
        let refuse = |reason: String| Error::NotRewritable {
            what: "git LFS batch answer",
            reason,
        };
        let buf = if is_encoded(&parts.headers) {
            None
        } else {
            match read_bounded(&mut body, MAX_DISCOVERY_BYTES, upstream).await? {
                Bounded::Whole(b) => Some(b),
                Bounded::TooLarge(head) if !success => {
                    return Ok(Response::from_parts(
                        parts,
                        ProxyBody::upstream(Some(head), body),
                    ));
                }
                Bounded::TooLarge(_) => {
                    return Err(refuse(format!(
                        "it is larger than {} MiB",
                        MAX_DISCOVERY_BYTES / (1024 * 1024)
                    )));
                }
            }
        };
        if diagnose::worth_inspecting(parts.status, &parts.headers, ctx.path())
            && let Some(mut finding) =
                self.recognise(&parts, buf.as_deref().unwrap_or_default(), ctx, credential)
        {
            // The upstream's JSON object would be quoted in Azure DevOps'
            // shape, actions and all.
            finding.original = None;
            return Ok(self.explain(finding, parts, ctx, credential));
        }
        let Some(buf) = buf else {
            if success {
                return Err(refuse("it arrived compressed".into()));
            }
            return Ok(Response::from_parts(parts, ProxyBody::upstream(None, body)));
        };
        let out = self
            .rewritten_batch(&parts, buf, credential)
            .map_err(refuse)?;
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
        Ok(Response::from_parts(parts, ProxyBody::full(out)))
    }

    /// A batch answer's body, read whole, rewritten; why not, for a
    /// success that cannot be (an error answer that is not JSON stays
    /// as it is).
    fn rewritten_batch(
        &self,
        parts: &Parts,
        buf: Bytes,
        credential: &Credential,
    ) -> Result<Bytes, String> {
        let success = parts.status.is_success();
        if success && !is_json(&parts.headers) {
            // Whatever its body parses as, a client would read it as
            // its type says.
            return Err("its Content-Type is not JSON".into());
        }
        Ok(
            match lfs::rewrite_batch(&self.urls, &buf, credential.header()) {
                lfs::Batch::Rewritten(out) => Bytes::from(out),
                lfs::Batch::Unchanged => buf,
                lfs::Batch::NotJson if success => return Err("it is not JSON".into()),
                lfs::Batch::NotJson => buf,
            },
        )
    }
}

/// Whether an answer's `Content-Type` is a JSON one.
fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
}
