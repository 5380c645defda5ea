//! The diagnosis step of the pipeline: a small upstream error read
//! (bounded), recognised with the identity's facts, and answered with the
//! catalog's explanation in the client's language, the upstream's status
//! and headers kept.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::response::Parts;
use hyper::body::Incoming;

use super::Inner;
use super::reading::{Bounded, is_encoded, read_bounded};
use super::route;
use crate::body::ProxyBody;
use crate::diagnose;
use crate::error::Error;
use crate::identity::Credential;
use crate::request::RequestCtx;
use http::Response;

impl Inner {
    /// Reads a small upstream error and, when it is a recognised failure,
    /// answers with the explanation in the client's language, keeping the
    /// upstream's status and headers (Retry-After, X-RateLimit-*,
    /// WWW-Authenticate, correlation ids). Anything else passes through.
    pub(super) async fn diagnose(
        &self,
        parts: Parts,
        mut body: Incoming,
        ctx: &RequestCtx,
        upstream: &route::Upstream,
        credential: &Credential,
    ) -> Result<Response<ProxyBody>, Error> {
        let encoded = is_encoded(&parts.headers);
        let mut buf = Bytes::new();
        if !encoded {
            match read_bounded(&mut body, diagnose::MAX_ERROR_BODY, upstream).await? {
                Bounded::Whole(b) => buf = b,
                Bounded::TooLarge(head) => {
                    return Ok(Response::from_parts(
                        parts,
                        ProxyBody::upstream(Some(head), body),
                    ));
                }
            }
        }
        let Some(finding) = self.recognise(&parts, &buf, ctx, credential) else {
            let body = if encoded {
                ProxyBody::upstream(None, body)
            } else {
                ProxyBody::full(buf)
            };
            return Ok(Response::from_parts(parts, body));
        };
        Ok(self.explain(finding, parts, ctx, credential))
    }

    /// The catalog case of an upstream answer whose body is `body` (empty
    /// when it could not be read), knowing what the identity knows of
    /// the request; `None` when it is no recognised failure.
    pub(super) fn recognise(
        &self,
        parts: &Parts,
        body: &[u8],
        ctx: &RequestCtx,
        credential: &Credential,
    ) -> Option<diagnose::Finding> {
        let reason = parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .and_then(|r| std::str::from_utf8(r.as_bytes()).ok());
        let answer = diagnose::Upstream {
            status: parts.status,
            headers: &parts.headers,
            body,
            reason,
        };
        diagnose::recognise_for(
            answer,
            ctx.path(),
            ctx.organization(),
            self.identity.sender(credential, ctx),
        )
    }

    /// The readable answer for `finding`, with the upstream's status
    /// (a success becomes the 401 it means) and headers.
    pub(super) fn explain(
        &self,
        finding: diagnose::Finding,
        mut parts: Parts,
        ctx: &RequestCtx,
        credential: &Credential,
    ) -> Response<ProxyBody> {
        self.metrics.upstream.denied(finding.entry.id);
        tracing::info!(
            request_id = %ctx.request_id_str(),
            status = parts.status.as_u16(),
            diagnosis = finding.entry.id,
            "upstream refused the request"
        );
        let mut answer = finding.into_answer();
        if parts.status.is_success() {
            // Now a 401, which must carry a challenge (RFC 9110 §15.5.2).
            parts.headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ado-auth-proxy\""),
            );
        }
        answer.headers = parts.headers;
        // A client sending its own credential keeps the 401 challenge.
        answer.proxy_credential = credential.supplied();
        answer.into_response(ctx).map(ProxyBody::full)
    }
}
