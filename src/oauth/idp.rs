//! Talking to the identity provider: one HTTP client (rustls on ring, no
//! redirects followed, bounded time), the token responses and errors of
//! every provider in one shape, and the classification of failures.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::{CallsPlan, Secret};
use crate::egress::Egress;
use crate::metrics::Metrics;

/// Largest provider response read (token responses are a few KiB).
const MAX_BODY: usize = 1024 * 1024;

/// The HTTP client for provider calls.
#[derive(Clone)]
pub struct IdpHttp {
    client: reqwest::Client,
    /// Whether calls go through the egress proxy, to say so when they fail.
    egress: Arc<Egress>,
    metrics: Arc<Metrics>,
}

/// Tokens from a successful grant, in one shape for every provider.
pub struct TokenSet {
    /// The access token sent to Azure DevOps.
    pub access_token: Secret,
    /// Its lifetime from now.
    pub expires_in: Duration,
    /// A new refresh token, if the provider sent one.
    pub refresh_token: Option<Secret>,
    /// The ID token (OpenID Connect providers).
    pub id_token: Option<Secret>,
}

/// The error body of a token endpoint: RFC 6749 fields, Entra's extras,
/// and the legacy Azure DevOps PascalCase names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenErrorBody {
    /// `error` (or legacy `Error`).
    #[serde(alias = "Error")]
    pub error: String,
    /// `error_description` (or legacy `ErrorDescription`).
    #[serde(default, alias = "ErrorDescription")]
    pub error_description: Option<String>,
    /// Entra's AADSTS numbers.
    #[serde(default)]
    pub error_codes: Vec<u64>,
    /// Entra's sub-classification (`basic_action`, `consent_required`).
    #[serde(default)]
    pub suberror: Option<String>,
    /// A claims challenge to pass back on the next `/authorize`.
    #[serde(default)]
    pub claims: Option<String>,
    /// Entra's correlation id, for the administrator.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// Entra's trace id.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// When Entra answered (`2026-11-22 04:00:00Z`).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// `error_uri`.
    #[serde(default)]
    pub error_uri: Option<String>,
}

/// Why a provider call failed.
#[derive(Debug, Clone)]
pub enum IdpError {
    /// The provider answered with an OAuth error.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The parsed body.
        body: Box<TokenErrorBody>,
    },
    /// The provider answered, but not with anything usable.
    Status {
        /// HTTP status.
        status: u16,
    },
    /// A success answer that cannot be read.
    Malformed(String),
    /// No answer (connect failure, timeout, broken connection).
    Transport(String),
}

use crate::gate::Failure;

/// Which grant a call was, for metrics and classification.
pub use crate::metrics::Grant;

// === impl IdpHttp ===

impl IdpHttp {
    /// A client trusting the web PKI roots plus `upstream.ca_file`,
    /// through the egress proxy where the plan says so.
    pub fn new(calls: &CallsPlan, metrics: Arc<Metrics>) -> Result<Self, String> {
        Self::with_egress(calls, metrics, Egress::new(&calls.egress))
    }

    /// [`IdpHttp::new`] that never uses the egress proxy: for managed
    /// identity, whose endpoint is local to the node (IMDS) or the app.
    pub fn local(calls: &CallsPlan, metrics: Arc<Metrics>) -> Result<Self, String> {
        Self::with_egress(calls, metrics, Egress::direct())
    }

    fn with_egress(
        calls: &CallsPlan,
        metrics: Arc<Metrics>,
        egress: Arc<Egress>,
    ) -> Result<Self, String> {
        let tls = crate::tls::client_config(calls.ca_file.as_deref())
            .map_err(|e| format!("{}: {}", e.key, e.message))?;
        let client = egress
            .configure(reqwest::Client::builder())
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(calls.connect_timeout.min(calls.timeout))
            .timeout(calls.timeout)
            .user_agent(concat!("ado-auth-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the provider HTTP client: {e}"))?;
        Ok(Self {
            client,
            egress,
            metrics,
        })
    }

    /// Sends `req`, reads the (bounded) body, and times the call.
    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
        grant: Grant,
    ) -> Result<(u16, bytes::Bytes), IdpError> {
        let started = crate::clock::real_instant();
        let result = async {
            let mut resp = req
                .send()
                .await
                .map_err(|e| IdpError::Transport(self.describe(&e)))?;
            let status = resp.status().as_u16();
            let too_large =
                || IdpError::Malformed(format!("response larger than {MAX_BODY} bytes"));
            if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
                return Err(too_large());
            }
            // Chunk by chunk: a body without Content-Length (chunked, or
            // read to close) is cut at the limit too.
            let mut body = bytes::BytesMut::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| IdpError::Transport(self.describe(&e)))?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, body.freeze()))
        }
        .await;
        self.metrics
            .login
            .provider_call(grant, started.elapsed().as_secs_f64());
        result
    }

    /// [`describe`], naming the egress proxy the call went through.
    fn describe(&self, e: &reqwest::Error) -> String {
        let mut what = describe(e);
        let via = e
            .url()
            .and_then(|u| u.as_str().parse::<http::Uri>().ok())
            .and_then(|u| self.egress.target(&u).map(|t| (t.url(), t.from.clone())));
        if let Some((proxy, from)) = via {
            what.push_str(&format!(" (through the egress proxy {proxy} from {from})"));
        }
        what
    }

    /// The underlying client, for building requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GETs a JSON document.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &url::Url,
        bearer: Option<&str>,
    ) -> Result<T, IdpError> {
        let mut req = self
            .client
            .get(url.clone())
            .header("accept", "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let (status, body) = self.send(req, Grant::Metadata).await?;
        if !(200..300).contains(&status) {
            return Err(IdpError::Status { status });
        }
        serde_json::from_slice(&body).map_err(|e| IdpError::Malformed(format!("{url}: {e}")))
    }
}

/// Error text without the URL's query (which may hold a code).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if let Some(tunnel) = tunnel_failure(e) {
        tunnel
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    match e.url() {
        Some(u) => format!(
            "{kind}: {}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.path()
        ),
        None => kind.to_string(),
    }
}

/// What the egress proxy said when reqwest's tunnel through it failed
/// (hyper-util's tunnel errors read "tunnel error: ...").
fn tunnel_failure(e: &reqwest::Error) -> Option<&'static str> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(what) = s.to_string().strip_prefix("tunnel error: ") {
            return Some(match what {
                "proxy authorization required" => {
                    "the egress proxy asks for credentials (407 to CONNECT; set \
                     upstream.egress_proxy_credentials_file)"
                }
                "unsuccessful" => {
                    "the egress proxy refused the tunnel (no 200 to CONNECT: its rules may not \
                     allow this host; upstream.no_proxy names hosts reached directly)"
                }
                _ => "the egress proxy failed the tunnel",
            });
        }
        source = s.source();
    }
    None
}

// === token responses ===

/// A token endpoint's success body. `expires_in` may be a number (Entra
/// v2, RFC 6749) or a string (legacy Azure DevOps OAuth).
#[derive(Deserialize)]
struct RawTokens {
    access_token: String,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// A number of seconds sent as a number, a float or a string.
pub fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        Some(N::Num(n)) => Some(n),
        Some(N::Float(f)) if f >= 0.0 => Some(f as u64),
        Some(N::Text(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Lifetime assumed when a provider gives none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Reads a token endpoint answer: tokens on 200, the error body otherwise.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenSet, IdpError> {
    if status == 200 {
        let raw: RawTokens = serde_json::from_slice(body)
            .map_err(|e| IdpError::Malformed(format!("token response: {e}")))?;
        if raw.access_token.is_empty() {
            return Err(IdpError::Malformed("empty access_token".into()));
        }
        return Ok(TokenSet {
            access_token: Secret::new(raw.access_token),
            expires_in: raw
                .expires_in
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_LIFETIME),
            refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
            id_token: raw.id_token.map(Secret::new),
        });
    }
    let read = serde_json::from_slice::<TokenErrorBody>(body)
        .ok()
        .filter(|b| !b.error.is_empty())
        .or_else(|| lenient_error(body));
    match read {
        Some(body) => Err(IdpError::Rejected {
            status,
            body: Box::new(body),
        }),
        None => Err(IdpError::Status { status }),
    }
}

/// An error body that is not Entra's clean JSON (cut, wrapped, text with
/// an `AADSTS<n>` line), read by the catalog's lenient reader.
fn lenient_error(body: &[u8]) -> Option<TokenErrorBody> {
    crate::diagnose::read_provider_body(body).map(|said| body_of(&said))
}

/// The refusal `said` describes, as the token call's error.
pub fn rejected(status: u16, said: &crate::diagnose::ProviderSaid) -> IdpError {
    IdpError::Rejected {
        status,
        body: Box::new(body_of(said)),
    }
}

fn body_of(said: &crate::diagnose::ProviderSaid) -> TokenErrorBody {
    let id = |label: &str| {
        said.ids
            .iter()
            .find(|(k, _)| k == label)
            .map(|(_, v)| v.clone())
    };
    TokenErrorBody {
        error: said.error.clone(),
        error_description: Some(said.description.clone()).filter(|d| !d.is_empty()),
        error_codes: said.all_codes(),
        suberror: said.suberror.clone(),
        claims: None,
        correlation_id: id("Correlation ID"),
        trace_id: id("Trace ID"),
        timestamp: id("Timestamp"),
        error_uri: None,
    }
}

/// Entra's (or any OAuth provider's) error body as the catalog reads it.
pub fn said_of(body: &TokenErrorBody) -> crate::diagnose::ProviderSaid {
    let ids = [
        ("Trace ID", &body.trace_id),
        ("Correlation ID", &body.correlation_id),
        ("Timestamp", &body.timestamp),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
    .collect();
    crate::diagnose::ProviderSaid {
        error: body.error.clone(),
        codes: body.error_codes.clone(),
        description: body.error_description.clone().unwrap_or_default(),
        suberror: body.suberror.clone(),
        ids,
    }
}

// === impl IdpError ===

impl fmt::Display for IdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected { status, body } => {
                write!(f, "HTTP {status}")?;
                if !body.error.is_empty() {
                    write!(f, " {}", body.error)?;
                }
                if let Some(code) = said_of(body).all_codes().first() {
                    write!(f, " (AADSTS{code})")?;
                }
                if let Some(s) = &body.suberror {
                    write!(f, " suberror {s}")?;
                }
                if let Some(c) = &body.correlation_id {
                    write!(f, " correlation id {c}")?;
                }
                Ok(())
            }
            Self::Status { status } => write!(f, "HTTP {status} without an OAuth error body"),
            Self::Malformed(m) => write!(f, "unreadable answer: {m}"),
            Self::Transport(m) => write!(f, "{m}"),
        }
    }
}

/// AADSTS codes that mean the proxy's registration or credential is
/// wrong (bad or expired secret/certificate, app not in the tenant,
/// redirect URI mismatch, ...; Microsoft's "Microsoft Entra
/// authentication and authorization error codes"), whatever `error` says.
const OPERATOR_CODES: &[u64] = &[
    7000215, 7000222, 7000218, 700016, 700011, 50011, 70004, 70011, 28002, 28003, 700022, 90009,
    9002313, 900144, 700025, 500011, 700005, 70021, 700211, 700213, 7002137, 7002138, 700024,
    700027, 650057,
];

impl IdpError {
    /// What this failure means for the session, classified by `error`,
    /// `error_codes` and `suberror` together: Entra answers very
    /// different failures with the same `error` (`invalid_grant` for a
    /// revoked grant and for MFA being required).
    pub fn classify(&self, grant: Grant) -> Failure {
        match self {
            Self::Rejected { status, body } => classify_rejection(*status, body, grant),
            Self::Status { status } if *status >= 500 || *status == 429 => Failure::Transient {
                reason: self.to_string(),
            },
            Self::Status { .. } | Self::Malformed(_) => Failure::Transient {
                reason: self.to_string(),
            },
            Self::Transport(_) => Failure::Transient {
                reason: self.to_string(),
            },
        }
    }
}

impl IdpError {
    /// Whether the provider refused the client's own credential
    /// (`invalid_client`: a wrong or expired secret).
    pub fn is_invalid_client(&self) -> bool {
        matches!(self, Self::Rejected { body, .. } if body.error == "invalid_client")
    }
}

fn classify_rejection(status: u16, body: &TokenErrorBody, grant: Grant) -> Failure {
    let reason = IdpError::Rejected {
        status,
        body: Box::new(body.clone()),
    }
    .to_string();
    let said = said_of(body);
    // Codes in the description count as much as `error_codes`.
    let codes = said.all_codes();
    // A code the catalog explains is never "try again later", whatever
    // the status it came with.
    let explained = said.case().is_some();
    // A replayed code (54005) arrives as invalid_grant with 70002 beside it.
    if codes.contains(&54005) {
        return Failure::Relogin {
            reason,
            claims: None,
        };
    }
    // No managed identity behind the app's assertion: the operator's to
    // assign, whatever status the page came with.
    if codes.iter().any(|c| OPERATOR_CODES.contains(c))
        || said.case() == Some(crate::diagnose::Case::IdentityMissing)
    {
        return Failure::Operator {
            reason,
            said: Some(Box::new(said)),
        };
    }
    match body.error.as_str() {
        // Nothing but another provider helps.
        crate::diagnose::LEGACY_RETIRED => Failure::Operator {
            reason,
            said: Some(Box::new(said)),
        },
        "invalid_client" | "unauthorized_client" | "invalid_scope" | "unsupported_grant_type" => {
            Failure::Operator {
                reason,
                said: Some(Box::new(said)),
            }
        }
        // Legacy Azure DevOps answers a dead refresh token this way.
        "invalid_request" if grant == Grant::Refresh => Failure::Relogin {
            reason,
            claims: None,
        },
        "invalid_request" => Failure::Operator {
            reason,
            said: Some(Box::new(said)),
        },
        "temporarily_unavailable" | "server_error" | "slow_down" if !explained => {
            Failure::Transient { reason }
        }
        _ if (status >= 500 || status == 429) && !explained => Failure::Transient { reason },
        // invalid_grant, interaction_required, consent_required,
        // login_required and anything unknown: the grant is no good.
        _ => Failure::Relogin {
            reason,
            claims: body.claims.clone().filter(|c| !c.is_empty()),
        },
    }
}

#[cfg(test)]
mod tests;
