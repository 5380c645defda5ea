//! A managed identity's token, from the endpoint on the node (IMDS) or
//! the app (App Service's `IDENTITY_ENDPOINT`): for Azure DevOps (mode
//! `service`), or for the token-exchange audience, as the assertion of
//! an app that trusts the identity (mode `service` and the sign-in app of
//! mode `user`).

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::idp::{Grant, IdpHttp};
use crate::clock::unix;
use crate::config::{ManagedPlan, Secret};
use crate::diagnose::ProviderSaid;

/// Where a managed identity's token comes from.
pub struct ManagedIdentity {
    http: IdpHttp,
    endpoint: Url,
    /// App Service's `IDENTITY_HEADER`; IMDS when absent.
    header: Option<Secret>,
    /// A user-assigned identity's client id.
    client_id: Option<String>,
    /// `resource`: Azure DevOps, or the token exchange audience.
    resource: String,
}

/// A token from the endpoint.
pub struct ManagedToken {
    /// The access token.
    pub token: Secret,
    /// Its lifetime, when the endpoint said.
    pub lifetime: Option<Duration>,
}

/// Why the endpoint gave no token: the message names the cause (never a
/// secret).
#[derive(Debug)]
pub struct ManagedError {
    /// What happened.
    pub detail: String,
    /// What the endpoint said, when it answered with an error body.
    pub said: Option<Box<ProviderSaid>>,
    /// Whether asking again can succeed without anyone changing anything.
    pub retryable: bool,
}

// === impl ManagedIdentity ===

impl ManagedIdentity {
    /// The identity `plan` names, asking for `resource`, over `http` (a
    /// local client: the endpoint is on the node or the app).
    pub fn new(http: IdpHttp, plan: &ManagedPlan, resource: &str) -> Self {
        Self {
            http,
            endpoint: plan.endpoint.clone(),
            header: plan.header.clone(),
            client_id: plan.client_id.clone(),
            resource: resource.to_string(),
        }
    }

    /// A managed identity token for `resource`: IMDS (`Metadata: true`,
    /// api-version 2018-02-01) or App Service (`X-IDENTITY-HEADER`,
    /// 2019-08-01).
    pub async fn fetch(&self) -> Result<ManagedToken, ManagedError> {
        let mut url = self.endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair(
                "api-version",
                if self.header.is_some() {
                    "2019-08-01"
                } else {
                    "2018-02-01"
                },
            );
            q.append_pair("resource", &self.resource);
            if let Some(id) = &self.client_id {
                q.append_pair("client_id", id);
            }
        }
        let mut req = self
            .http
            .client()
            .get(url)
            .header("accept", "application/json");
        req = match &self.header {
            Some(h) => req.header("X-IDENTITY-HEADER", h.expose()),
            None => req.header("Metadata", "true"),
        };
        let (status, body) = self
            .http
            .send(req, Grant::ManagedIdentity)
            .await
            .map_err(|e| ManagedError {
                detail: format!("managed identity endpoint: {e}"),
                said: None,
                retryable: true,
            })?;
        parse_managed(status, &body)
    }
}

/// Reads a managed identity answer; `expires_in` and `expires_on` may be
/// numbers or strings. A refusal is read whatever its shape (IMDS's OAuth
/// JSON, App Service's `statusCode`/`message`, an AADSTS code relayed
/// from Entra, text): a refusal the catalog explains is not retried as
/// it is; otherwise only a 5xx or 429 is.
fn parse_managed(status: u16, body: &[u8]) -> Result<ManagedToken, ManagedError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        access_token: String,
        #[serde(default, deserialize_with = "crate::oauth::idp::lenient_seconds")]
        expires_in: Option<u64>,
        #[serde(default, deserialize_with = "crate::oauth::idp::lenient_seconds")]
        expires_on: Option<u64>,
    }
    let raw = serde_json::from_slice::<Raw>(body)
        .ok()
        .filter(|r| status == 200 && !r.access_token.is_empty());
    let Some(raw) = raw else {
        return Err(managed_refusal(status, body));
    };
    // `expires_on` is the endpoint's clock: compare with the system's.
    let now = unix(crate::clock::real_wall());
    let lifetime = raw
        .expires_in
        .or_else(|| raw.expires_on.map(|on| on.saturating_sub(now)))
        .map(Duration::from_secs);
    Ok(ManagedToken {
        token: Secret::new(raw.access_token),
        lifetime,
    })
}

/// A managed identity endpoint's answer without a token, in words.
fn managed_refusal(status: u16, body: &[u8]) -> ManagedError {
    let Some(said) = crate::diagnose::read_provider_body(body) else {
        let what = if status == 200 {
            "no access_token"
        } else {
            "an unreadable body"
        };
        return ManagedError {
            detail: format!("managed identity endpoint: HTTP {status} with {what}"),
            // Nothing says it will not pass (a sidecar starting, a proxy's
            // page): retried, as before the reader knew any shape.
            retryable: true,
            said: None,
        };
    };
    let known = said.case();
    let what = if said.error.is_empty() {
        said.code()
    } else {
        said.error.clone()
    };
    let why: String = said.message().chars().take(300).collect();
    let hint = match known {
        None | Some(crate::diagnose::Case::IdentityMissing) => {
            " (is an identity assigned, and is managed_identity_client_id right for a \
             user-assigned one?)"
        }
        Some(_) => "",
    };
    ManagedError {
        detail: format!("managed identity endpoint: HTTP {status} {what} {why}{hint}"),
        retryable: known.is_none() && (status >= 500 || status == 429),
        said: Some(Box::new(said)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ADO_RESOURCE;

    #[test]
    fn managed_identity_answers_with_string_or_number_expiry() {
        let now = unix(crate::clock::real_wall());
        // IMDS: strings.
        let imds = format!(
            r#"{{"access_token":"eyJ0.x.y","expires_in":"3599","expires_on":"{}","resource":"{ADO_RESOURCE}","token_type":"Bearer"}}"#,
            now + 3599
        );
        let a = parse_managed(200, imds.as_bytes()).unwrap();
        assert_eq!(a.lifetime, Some(Duration::from_secs(3599)));
        // App Service: expires_on only, a number.
        let app = format!(
            r#"{{"access_token":"t","expires_on":{},"token_type":"Bearer"}}"#,
            now + 600
        );
        let a = parse_managed(200, app.as_bytes()).unwrap();
        let secs = a.lifetime.unwrap().as_secs();
        assert!((598..=600).contains(&secs), "{secs}");
        let err = parse_managed(
            400,
            br#"{"error":"invalid_request","error_description":"Identity not found"}"#,
        )
        .err()
        .unwrap();
        assert!(err.detail.contains("Identity not found"), "{}", err.detail);
        assert!(!err.retryable, "a refusal waits for the operator");
        assert_eq!(err.said.unwrap().message(), "Identity not found");
        assert!(parse_managed(500, b"<html>").err().unwrap().retryable);
    }
}
