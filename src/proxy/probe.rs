//! A look at start: a credential that never changes by itself (the PAT)
//! is tried once against each allowed organization, so a token that
//! cannot work (revoked, expired, for other organizations, a global token
//! after its retirement on 2026-12-01, an organization that restricts
//! personal access tokens) is in the log before the first user trips
//! over it. A service identity's directory is compared with each
//! organization's (an unauthenticated look, as Git Credential Manager
//! does), since an organization refuses tokens of other directories.
//! Nothing is retried; `/startupz` waits until each look has finished
//! (`_running`, dropped at the end), and a summary line says what it found.

use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderValue};
use http::{Request, StatusCode};

use super::Inner;
use super::headers::FED_AUTH_REDIRECT;
use crate::body::CountedBody;

/// Tries `credential` on `GET /{org}/_apis/connectionData` of every
/// allowed organization and logs what it found, once.
pub(super) async fn credential_reaches_organizations(
    inner: Arc<Inner>,
    credential: HeaderValue,
    _running: crate::startup::Running,
) {
    let (mut works, mut refused, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
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
        match inner.forwarder.send(req, target.upstream, None).await {
            Ok(resp)
                if resp.status().is_success()
                    && resp.status() != StatusCode::NON_AUTHORITATIVE_INFORMATION =>
            {
                works.push(org.to_string());
                tracing::info!(organization = %org, "the personal access token works for this organization");
            }
            Ok(resp) => {
                refused.push(org.to_string());
                tracing::error!(
                organization = %org,
                status = resp.status().as_u16(),
                "the personal access token does not work for this organization: requests to it \
                 will be refused. Global tokens (\"all accessible organizations\") stopped \
                 working on 2026-12-01, the likely cause if it worked before; otherwise it is \
                 revoked, expired (expired tokens can no longer be extended: create or \
                 regenerate one), created for other organizations, or the organization \
                 restricts personal access tokens. Write a token scoped to this organization to \
                 auth.pat_file, or use mode \"service\" with an Entra identity"
                )
            }
            Err(e) => {
                unknown.push(org.to_string());
                tracing::warn!(
                    organization = %org,
                    error = %e,
                    "could not check the personal access token against this organization"
                )
            }
        }
    }
    tracing::info!(
        works = %works.join(","),
        refused = %refused.join(","),
        unreachable = %unknown.join(","),
        "start-up check of the allowed organizations done (personal access token)"
    );
}

/// Looks at every allowed organization without credentials and logs
/// those whose directory is not `tenant`, the service identity's: Azure
/// DevOps will refuse its tokens there.
pub(super) async fn directories_match(
    inner: Arc<Inner>,
    tenant: String,
    _running: crate::startup::Running,
) {
    use crate::challenge::Directory;
    let (mut same, mut other) = (Vec::new(), Vec::new());
    for org in inner.router.allowed_organizations() {
        let Ok(path) = format!("/{org}").parse::<http::Uri>() else {
            continue;
        };
        let Ok(target) = inner.router.route(&path) else {
            continue;
        };
        let Ok(req) = Request::head(target.uri).body(CountedBody::empty(inner.metrics.clone()))
        else {
            continue;
        };
        let resp = match inner.forwarder.send(req, target.upstream, None).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::warn!(organization = %org, error = %e, "could not look up the organization's directory");
                continue;
            }
        };
        match crate::challenge::directory(resp.headers()) {
            Some(Directory::Tenant(t)) if t == tenant => {
                same.push(org.to_string());
                tracing::info!(organization = %org, tenant = %t, "the organization is in the service identity's directory");
            }
            Some(Directory::Tenant(t)) => {
                other.push(org.to_string());
                tracing::error!(
                organization = %org,
                organization_tenant = %t,
                identity_tenant = %tenant,
                "the organization belongs to another directory than the service identity's: Azure \
                 DevOps will refuse its tokens. Set auth.tenant to the organization's directory \
                 (a multi-tenant app consented there), or for a managed identity use source \
                 \"managed-identity-federation\""
                )
            }
            Some(Directory::MicrosoftAccount) => {
                other.push(org.to_string());
                tracing::error!(
                organization = %org,
                "the organization is backed by Microsoft accounts, not an Entra directory: service \
                 principals and managed identities cannot be added to it. Connect it to a \
                 directory, or use a personal access token"
                )
            }
            None => tracing::info!(organization = %org, "the organization named no directory"),
        }
    }
    tracing::info!(
        same_directory = %same.join(","),
        other_directory = %other.join(","),
        "start-up check of the allowed organizations done (the service identity's directory)"
    );
}
