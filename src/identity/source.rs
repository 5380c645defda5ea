//! Where a service identity's token comes from: Entra client
//! credentials (secret, certificate or a federated workload identity
//! token), a managed identity endpoint (IMDS or App Service), the refresh
//! token `ado-auth-proxy login` stored (device code), or a PAT.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use url::Url;

use super::PatSource;
use crate::challenge::claims_request;
use crate::config::{ADO_RESOURCE, Secret, ServicePlan, SourcePlan};
use crate::diagnose::ProviderSaid;
use crate::gate::Failure;
use crate::metrics::Metrics;
use crate::oauth::client_auth::ClientAuth;
use crate::oauth::idp::{Grant, IdpError, IdpHttp, parse_token_response, said_of};
use crate::oauth::managed::{ManagedError, ManagedIdentity, ManagedToken};
use crate::session::Sessions;

/// A configured source.
pub(super) enum Source {
    Pat(PatSource),
    Entra {
        http: IdpHttp,
        token_endpoint: Url,
        client_id: String,
        auth: ClientAuth,
    },
    /// `ado-auth-proxy login` stored a refresh token in the session store.
    Device {
        http: IdpHttp,
        token_endpoint: Url,
        client_id: String,
        /// A confidential app's credential; none for a public client.
        auth: Option<ClientAuth>,
        store: Arc<Sessions>,
    },
    Managed(ManagedIdentity),
    /// A managed identity's token is the assertion of an Entra app that
    /// trusts it (the app may live in another tenant).
    ManagedFederation {
        managed: ManagedIdentity,
        /// The exchange at Entra: through the egress proxy, unlike the
        /// local managed identity endpoint.
        http: IdpHttp,
        token_endpoint: Url,
        client_id: String,
    },
}

/// A freshly acquired token.
pub(super) struct Acquired {
    pub token: Secret,
    pub lifetime: Option<Duration>,
}

/// Why an acquisition failed: the message names the cause (never a
/// secret).
#[derive(Debug)]
pub(super) struct AcquireError {
    pub detail: String,
    /// Worth asking again in a moment (waiting for `login`), not after
    /// the backoff.
    pub soon: bool,
    /// What the provider said, when it answered with an error body.
    pub said: Option<Box<ProviderSaid>>,
    /// Whether asking again can succeed without anyone changing
    /// anything (the provider was unavailable, not refusing).
    pub retryable: bool,
}

impl AcquireError {
    /// A failure before or around the provider's answer: retrying may
    /// help.
    pub fn new(detail: String) -> Self {
        Self {
            detail,
            soon: false,
            said: None,
            retryable: true,
        }
    }

    /// The provider's answer to a `grant` call, with its words.
    fn provider(e: &IdpError, grant: Grant, detail: String) -> Self {
        let said = match e {
            IdpError::Rejected { body, .. } => Some(Box::new(said_of(body))),
            _ => None,
        };
        Self {
            detail,
            soon: false,
            said,
            retryable: matches!(e.classify(grant), Failure::Transient { .. }),
        }
    }
}

impl From<ManagedError> for AcquireError {
    fn from(e: ManagedError) -> Self {
        Self {
            detail: e.detail,
            soon: false,
            said: e.said,
            retryable: e.retryable,
        }
    }
}

impl From<ManagedToken> for Acquired {
    fn from(t: ManagedToken) -> Self {
        Self {
            token: t.token,
            lifetime: t.lifetime,
        }
    }
}

/// What one fetch gave.
pub(super) enum Fetched {
    /// A PAT's `Authorization` value: nothing expires.
    Header(HeaderValue),
    /// An access token.
    Token(Acquired),
}

// === impl Source ===

impl Source {
    /// The source `plan` names; `device_store` holds the refresh token
    /// of source `device-code`. No network is used.
    pub fn new(
        plan: &ServicePlan,
        device_store: Option<Arc<Sessions>>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, String> {
        let http = || IdpHttp::new(&plan.calls, metrics.clone());
        let app = &plan.app;
        let entra = |auth_kind: ClientAuth| -> Result<Source, String> {
            Ok(Source::Entra {
                http: http()?,
                token_endpoint: app.endpoint("token")?,
                client_id: app.client_id.clone(),
                auth: auth_kind,
            })
        };
        let managed = |resource: &str| -> Result<ManagedIdentity, String> {
            // Local endpoints (IMDS, App Service): never the egress proxy.
            Ok(ManagedIdentity::new(
                IdpHttp::local(&plan.calls, metrics.clone())?,
                &plan.managed,
                resource,
            ))
        };
        Ok(match &plan.source {
            SourcePlan::Pat => {
                Source::Pat(PatSource::from_plan(&plan.pat).map_err(|e| e.to_string())?)
            }
            SourcePlan::ClientCredentials(credential) => entra(ClientAuth::load(credential)?)?,
            SourcePlan::WorkloadIdentity { token_file } | SourcePlan::Federated { token_file } => {
                entra(ClientAuth::Federated(token_file.clone()))?
            }
            SourcePlan::ManagedIdentity => Source::Managed(managed(ADO_RESOURCE)?),
            SourcePlan::ManagedIdentityFederation => Source::ManagedFederation {
                managed: managed(&plan.federated_audience)?,
                http: http()?,
                token_endpoint: app.endpoint("token")?,
                client_id: app.client_id.clone(),
            },
            SourcePlan::DeviceCode { .. } => Source::Device {
                http: http()?,
                token_endpoint: app.endpoint("token")?,
                client_id: app.client_id.clone(),
                auth: plan.credential.as_ref().map(ClientAuth::load).transpose()?,
                store: device_store
                    .ok_or("source device-code: no session store to read the sign-in from")?,
            },
        })
    }

    /// One token from the source; `claims` are those of a claims
    /// challenge (CAE) to satisfy. Entra sources always announce that the
    /// proxy handles claims challenges (`cp1`).
    pub async fn fetch(&self, claims: Option<&str>) -> Result<Fetched, AcquireError> {
        if claims.is_some() && matches!(self, Self::Pat(_) | Self::Managed(_)) {
            return Err(AcquireError::new(
                "Azure DevOps asked for a token with more claims (Continuous Access \
                 Evaluation), which this source cannot ask for"
                    .into(),
            ));
        }
        match self {
            Self::Pat(pat) => pat
                .header()
                .map(Fetched::Header)
                .map_err(|e| AcquireError::new(e.to_string())),
            Self::Entra {
                http,
                token_endpoint,
                client_id,
                auth,
            } => client_credentials(http, token_endpoint, client_id, auth, claims)
                .await
                .map(Fetched::Token),
            Self::Managed(m) => m
                .fetch()
                .await
                .map(|t| Fetched::Token(t.into()))
                .map_err(AcquireError::from),
            Self::ManagedFederation {
                managed,
                http,
                token_endpoint,
                client_id,
            } => {
                // The identity's token for the exchange audience is the
                // app's assertion, fetched fresh for each exchange.
                let assertion = managed.fetch().await.map_err(AcquireError::from)?;
                let auth = ClientAuth::Assertion(assertion.token);
                client_credentials(http, token_endpoint, client_id, &auth, claims)
                    .await
                    .map(Fetched::Token)
            }
            Self::Device {
                http,
                token_endpoint,
                client_id,
                auth,
                store,
            } => device_refresh(
                http,
                token_endpoint,
                client_id,
                (auth.as_ref(), claims),
                store,
            )
            .await
            .map(Fetched::Token),
        }
    }
}

async fn client_credentials(
    http: &IdpHttp,
    token_endpoint: &Url,
    client_id: &str,
    auth: &ClientAuth,
    claims: Option<&str>,
) -> Result<Acquired, AcquireError> {
    let mut form: Vec<(&str, String)> = vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", client_id.into()),
        ("scope", format!("{ADO_RESOURCE}/.default")),
        ("claims", claims_request(claims)),
    ];
    let mut with_secret = form.clone();
    let slot = auth
        .add_to(&mut with_secret, client_id, token_endpoint.as_str(), None)
        .map_err(AcquireError::new)?;
    let (status, body) =
        post_token(http, token_endpoint, &with_secret, Grant::ClientCredentials).await?;
    let mut parsed = parse_token_response(status, &body);
    let other = parsed
        .as_ref()
        .is_err_and(|e| e.is_invalid_client())
        .then(|| auth.other_secret(slot))
        .flatten();
    if let Some(other) = other {
        // The app's other secret slot.
        auth.add_to(&mut form, client_id, token_endpoint.as_str(), Some(other))
            .map_err(AcquireError::new)?;
        let (status, body) =
            post_token(http, token_endpoint, &form, Grant::ClientCredentials).await?;
        parsed = parse_token_response(status, &body);
    }
    let set =
        parsed.map_err(|e| AcquireError::provider(&e, Grant::ClientCredentials, explain(&e)))?;
    Ok(Acquired {
        token: set.access_token,
        lifetime: Some(set.expires_in),
    })
}

/// One token endpoint call: the status and the (bounded) body.
async fn post_token(
    http: &IdpHttp,
    token_endpoint: &Url,
    form: &[(&str, String)],
    grant: Grant,
) -> Result<(u16, bytes::Bytes), AcquireError> {
    let req = http
        .client()
        .post(token_endpoint.clone())
        .header("accept", "application/json")
        .form(form);
    http.send(req, grant)
        .await
        .map_err(|e| AcquireError::provider(&e, grant, e.to_string()))
}

/// A token for the identity `ado-auth-proxy login` stored: its refresh
/// token is redeemed and the rotated one written back.
async fn device_refresh(
    http: &IdpHttp,
    token_endpoint: &Url,
    client_id: &str,
    (auth, claims): (Option<&ClientAuth>, Option<&str>),
    store: &Sessions,
) -> Result<Acquired, AcquireError> {
    let soon = |detail: String| AcquireError {
        soon: true,
        ..AcquireError::new(detail)
    };
    let rec = store
        .get_service()
        .await
        .map_err(|e| soon(format!("session store: {e}")))?
        .ok_or_else(|| AcquireError {
            // Asked again every 2 s, so a sign-in is picked up at once;
            // but no client's retry helps until someone runs it.
            retryable: false,
            ..soon(
                "not signed in yet: run `ado-auth-proxy login --config <file>` (requests are \
                 served within seconds of it)"
                    .into(),
            )
        })?;
    let mut form: Vec<(&str, String)> = vec![
        ("grant_type", "refresh_token".into()),
        ("client_id", client_id.into()),
        ("refresh_token", rec.refresh_token.clone()),
        ("scope", super::device::DEVICE_SCOPE.into()),
        ("claims", claims_request(claims)),
    ];
    if let Some(auth) = auth {
        auth.add_to(&mut form, client_id, token_endpoint.as_str(), None)
            .map_err(AcquireError::new)?;
    }
    let (status, body) = post_token(http, token_endpoint, &form, Grant::Refresh).await?;
    let set = parse_token_response(status, &body).map_err(|e| {
        let relogin = matches!(
            e.classify(Grant::Refresh),
            crate::gate::Failure::Relogin { .. }
        );
        let detail = if relogin {
            format!(
                "{}: the device-code sign-in expired or was revoked; run `ado-auth-proxy login` again",
                explain(&e)
            )
        } else {
            explain(&e)
        };
        AcquireError::provider(&e, Grant::Refresh, detail)
    })?;
    if let Some(rotated) = &set.refresh_token {
        let next = crate::session::record::StoredService {
            refresh_token: rotated.expose().to_string(),
            generation: rec.generation + 1,
            ..rec
        };
        if let Err(e) = store.put_service(&next).await {
            tracing::warn!(error = %e, "the rotated refresh token could not be stored");
        }
    }
    Ok(Acquired {
        token: set.access_token,
        lifetime: Some(set.expires_in),
    })
}

/// The provider's refusal in words, with the AADSTS code.
fn explain(e: &IdpError) -> String {
    format!("token endpoint: {e}")
}
