//! Mode `service` as its components read it: the source and every
//! parameter it needs from `[auth]`, interpreted once, here.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::plan::{AppCredential, SourcePlan, credential};
use super::user_plan::CallsPlan;
use super::{AuthConfig, Config, Secret};

/// Azure Instance Metadata Service: the managed identity endpoint on
/// Azure VMs and AKS nodes.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// A PAT: `auth.pat_file` (re-read when it changes), else `auth.pat`.
#[derive(Debug, Clone)]
pub struct PatSourcePlan {
    /// `auth.pat_file`.
    pub file: Option<PathBuf>,
    /// `auth.pat`.
    pub value: Option<Secret>,
}

impl PatSourcePlan {
    /// The PAT `[auth]` names.
    pub fn of(auth: &AuthConfig) -> Self {
        Self {
            file: auth.pat_file.clone(),
            value: auth.pat.clone(),
        }
    }
}

/// The app at Microsoft Entra: its directory's endpoints and its id.
#[derive(Debug, Clone)]
pub struct EntraApp {
    /// `auth.authority_host`, or Entra's.
    pub authority: Url,
    /// `auth.tenant`, trimmed.
    pub tenant: String,
    /// `auth.client_id`.
    pub client_id: String,
}

impl EntraApp {
    /// The app `[auth]` names.
    pub fn of(auth: &AuthConfig) -> Self {
        Self {
            authority: auth.effective_authority(),
            tenant: auth
                .tenant
                .as_deref()
                .unwrap_or_default()
                .trim()
                .to_string(),
            client_id: auth.client_id.clone().unwrap_or_default(),
        }
    }

    /// The directory's OAuth endpoint `name` (`token`, `devicecode`).
    pub fn endpoint(&self, name: &str) -> Result<Url, String> {
        self.authority
            .join(&format!("{}/oauth2/v2.0/{name}", self.tenant))
            .map_err(|e| format!("auth.authority_host: {e}"))
    }
}

/// A managed identity's endpoint (IMDS, or App Service's).
#[derive(Debug, Clone)]
pub struct ManagedPlan {
    /// `auth.managed_identity_endpoint`, or IMDS.
    pub endpoint: Url,
    /// `auth.managed_identity_header` (App Service's secret).
    pub header: Option<Secret>,
    /// `auth.managed_identity_client_id` (a user-assigned identity).
    pub client_id: Option<String>,
}

/// Mode `service`: the source and what it needs.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// Where the token comes from.
    pub source: SourcePlan,
    /// The proxy's own calls.
    pub calls: CallsPlan,
    /// The app at Entra (every source but the PAT and a managed
    /// identity alone).
    pub app: EntraApp,
    /// The app's own credential, for the device-code refresh.
    pub credential: Option<AppCredential>,
    /// A managed identity (alone, or as the app's assertion).
    pub managed: ManagedPlan,
    /// `auth.federated_audience`, trimmed: the managed identity's token
    /// audience when it is the app's assertion.
    pub federated_audience: String,
    /// The PAT of source `pat`.
    pub pat: PatSourcePlan,
    /// `auth.refresh_before`.
    pub refresh_before: Duration,
    /// `auth.forced_refresh_interval`.
    pub forced_refresh_interval: Duration,
    /// `auth.provider_timeout`: how long the first token may take.
    pub provider_timeout: Duration,
    /// `auth.tenant` when it is a tenant id: the directory tokens are
    /// expected from.
    pub configured_tenant: Option<String>,
}

/// Where a managed identity's token comes from: `auth.managed_identity_*`.
pub(super) fn managed_plan(a: &AuthConfig) -> ManagedPlan {
    ManagedPlan {
        endpoint: a
            .managed_identity_endpoint
            .clone()
            .unwrap_or_else(|| Url::parse(IMDS_ENDPOINT).expect("a valid URL")),
        header: a.managed_identity_header.clone(),
        client_id: a.managed_identity_client_id.clone(),
    }
}

/// Mode `service` of a valid `config`, getting its token from `source`.
pub fn service_plan(config: &Config, source: &SourcePlan) -> ServicePlan {
    let a = &config.auth;
    ServicePlan {
        source: source.clone(),
        calls: CallsPlan::of(config),
        app: EntraApp::of(a),
        credential: credential(a),
        managed: managed_plan(a),
        federated_audience: a.federated_audience.trim().to_string(),
        pat: PatSourcePlan::of(a),
        refresh_before: a.refresh_before,
        forced_refresh_interval: a.forced_refresh_interval,
        provider_timeout: a.provider_timeout,
        configured_tenant: match source {
            SourcePlan::Pat | SourcePlan::ManagedIdentity => None,
            _ => a
                .tenant
                .as_deref()
                .and_then(|t| uuid::Uuid::parse_str(t.trim()).ok())
                .map(|t| t.to_string()),
        },
    }
}
