//! A look at start: a credential that never changes by itself (the PAT)
//! is tried once against each allowed organization, so a token that
//! cannot work (revoked, expired, for other organizations, a global token
//! after its retirement on 2026-12-01, an organization that restricts
//! personal access tokens) is in the log before the first user trips
//! over it. Nothing is retried and nothing blocks start-up.

use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderValue};
use http::{Request, StatusCode};

use super::Inner;
use super::headers::FED_AUTH_REDIRECT;
use crate::body::CountedBody;

/// Tries `credential` on `GET /{org}/_apis/connectionData` of every
/// allowed organization and logs what it found, once.
pub(super) async fn credential_reaches_organizations(inner: Arc<Inner>, credential: HeaderValue) {
    for org in inner.router.allowed_organizations() {
        let Ok(path) = format!("/{org}/_apis/connectionData").parse::<http::Uri>() else {
            continue;
        };
        let Ok(target) = inner.router.route(&path) else {
            continue;
        };
        let Ok(req) = Request::get(target.uri)
            .header(AUTHORIZATION, credential.clone())
            .header(FED_AUTH_REDIRECT, "Suppress")
            .body(CountedBody::empty(inner.metrics.clone()))
        else {
            continue;
        };
        match inner.forwarder.send(req, target.upstream).await {
            Ok(resp)
                if resp.status().is_success()
                    && resp.status() != StatusCode::NON_AUTHORITATIVE_INFORMATION =>
            {
                tracing::info!(organization = %org, "the personal access token works for this organization");
            }
            Ok(resp) => tracing::error!(
                organization = %org,
                status = resp.status().as_u16(),
                "the personal access token does not work for this organization: requests to it \
                 will be refused. It may be revoked, expired, created for other organizations, \
                 a global token (these stop working on 2026-12-01), or the organization may \
                 restrict personal access tokens. Write a token scoped to this organization to \
                 auth.pat_file, or use mode \"service\""
            ),
            Err(e) => tracing::warn!(
                organization = %org,
                error = %e,
                "could not check the personal access token against this organization"
            ),
        }
    }
}
