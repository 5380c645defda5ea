//! The request as it is sent to Azure DevOps: checked by `[access]`,
//! upgraded or not, its headers prepared, its credential attached; and
//! the same request once more after a refused token was renewed.

use http::header::{self, HeaderValue};
use http::{Request, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use super::reading::Rewrite;
use super::{Inner, Via, headers, tunnel};
use crate::access::AccessRecord;
use crate::body::CountedBody;
use crate::error::Error;
use crate::identity::Credential;
use crate::request::{RequestCtx, X_REQUEST_ID};

/// A request ready for Azure DevOps (see [`Inner::prepare`]).
pub(super) struct Prepared {
    pub(super) request: Request<CountedBody>,
    pub(super) upgrade: Option<Box<(tunnel::Upgrade, tunnel::Place)>>,
    pub(super) rewrite: Rewrite,
    pub(super) bodyless: bool,
}

impl Inner {
    /// The request as it is sent to Azure DevOps (`uri`), with what its
    /// answer needs: an upgrade it asks for, the rewrite its answer gets,
    /// and whether it has a body (only one without can be sent again).
    pub(super) fn prepare(
        &self,
        mut req: Request<Incoming>,
        uri: http::Uri,
        via: Via<'_>,
        record: &mut AccessRecord,
        credential: &Credential,
    ) -> Result<Prepared, Error> {
        if let Some(a) = record.audit_mut() {
            (a.credential, a.user) = self.identity.audit_facts(credential);
        }
        if let Some(policy) = &self.policy {
            let rule = self.admit_access(policy, &req, credential);
            if let Some(a) = record.audit_mut() {
                a.rule = rule
                    .as_ref()
                    .map_or_else(|(r, _)| Some(r.clone()), Clone::clone);
            }
            rule.map_err(|(_, e)| e)?;
        }
        let upgrade = self.tunnels.requested(&mut req)?;
        let rewrite = Rewrite::of(req.method(), record.ctx().path(), req.headers());
        let bodyless = req.body().is_end_stream();
        let mut request = self.upstream_request(
            req,
            uri,
            &via.downstream.forwarded_for,
            record.ctx(),
            rewrite != Rewrite::None,
            credential,
        )?;
        if let Some(u) = &upgrade {
            u.0.prepare_upstream(&mut request);
        }
        if !bodyless {
            request.body_mut().hold(record.share_permit());
        }
        Ok(Prepared {
            request,
            upgrade,
            rewrite,
            bodyless,
        })
    }

    /// The request to send once more with the renewed `header`, after
    /// Azure DevOps refused the token it was sent with.
    pub(super) fn send_again(
        &self,
        mut again: Request<()>,
        header: HeaderValue,
        record: &mut AccessRecord,
    ) -> Request<CountedBody> {
        again.headers_mut().insert(header::AUTHORIZATION, header);
        if let Some(a) = record.audit_mut() {
            a.refreshed = true;
        }
        again.map(|()| CountedBody::empty(self.metrics.clone()))
    }

    /// The client's request, re-addressed to `uri` with the credential and
    /// forwarding headers; the body streams through untouched.
    fn upstream_request(
        &self,
        req: Request<Incoming>,
        uri: http::Uri,
        client_ip: &HeaderValue,
        ctx: &RequestCtx,
        identity_encoding: bool,
        credential: &Credential,
    ) -> Result<Request<CountedBody>, Error> {
        let (mut parts, body) = req.into_parts();
        // The name `origin` checked: the target's authority wins over
        // `Host` (there is at most one, and on HTTP/2 it equals it).
        let original_host = match parts.uri.authority() {
            Some(a) => HeaderValue::try_from(a.as_str()).ok(),
            None => parts.headers.get(header::HOST).cloned(),
        };
        headers::prepare_request(
            &mut parts.headers,
            client_ip,
            self.scheme,
            original_host,
            credential.header(),
        );
        // No cookie of the client's jar is Azure DevOps' (upstream
        // Set-Cookie is dropped), so only the configured ones go.
        crate::cookies::keep_only(&mut parts.headers, &self.forward_cookies);
        parts.headers.insert(X_REQUEST_ID, ctx.request_id.clone());
        if identity_encoding {
            // A document to rewrite must arrive uncompressed.
            parts.headers.remove(header::ACCEPT_ENCODING);
        }
        parts.version = Version::HTTP_11;
        parts.uri = uri;
        Ok(Request::from_parts(
            parts,
            CountedBody::new(body, self.metrics.clone()),
        ))
    }
}

/// Method, URI and headers of a prepared upstream request, to send again.
pub(super) fn clone_head<B>(req: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}
