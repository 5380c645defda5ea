//! Where the credential sent upstream comes from: the one seam between
//! the pipeline and the modes (`none`, `pat`, `user`, `service`). The
//! pipeline asks [`Identity`] for a credential, tells it what Azure DevOps
//! answered, gives a diagnosis the facts it knows (`sender`) and hands it
//! `/.auth/`; it never learns which mode is configured. `app` starts its background tasks.

pub mod device;
mod pat;
mod service;
mod source;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::watch;
use url::Url;

use crate::body::ProxyBody;
use crate::clock::Clock;
use crate::config::Provider;
use crate::config::{AuthPlan, Config, SourcePlan, StorePlan};
use crate::diagnose::{Caller, Sender};
use crate::error::{Error, Refusal};
use crate::login::{Login, UserCredential};
use crate::metrics::Metrics;
use crate::request::{ClientKind, RequestCtx};
use crate::session::Sessions;

pub use pat::PatSource;
pub use service::ServiceIdentity;

/// The configured identity.
pub enum Identity {
    /// Forward the client's own `Authorization` header untouched.
    PassThrough,
    /// A personal access token, sent as Basic auth.
    Pat(PatSource),
    /// Signed-in users, each with their own session and token.
    User(Arc<Login>),
    /// One fixed identity, refreshed in the background; with
    /// `allow_browser_login`, the sign-in endpoints that replace it.
    Service(Arc<ServiceIdentity>, Option<Arc<Login>>),
}

/// What to do with the `Authorization` header of one request.
pub enum Credential {
    /// Leave whatever the client sent; its `Authorization` (marked
    /// sensitive) is kept only to tell what kind of token a refusal was
    /// for.
    PassThrough(Option<HeaderValue>),
    /// Replace it with this value (marked sensitive).
    Replace(HeaderValue),
    /// The service identity's token: a claims challenge may renew it.
    Service(HeaderValue),
    /// A client's own verified Entra token, passed as it is: whose it is,
    /// and when it expires (a tunnel opened with it ends then).
    Client(Box<crate::login::ClientHolder>),
    /// A user's bearer token; a 401 from Azure DevOps may refresh it once.
    /// Boxed: it is held across the upstream exchange, and every
    /// request's future would otherwise carry its size.
    User(Box<UserCredential>),
}

pub use crate::error::IdentityError;

/// The session store `store` names, kept by `clock`.
fn open_store(
    config: &Config,
    store: &StorePlan,
    metrics: &Arc<Metrics>,
    clock: &Clock,
) -> Result<Arc<Sessions>, IdentityError> {
    Sessions::open(&config.session, store, metrics.clone(), clock)
        .map(Arc::new)
        .map_err(IdentityError::Login)
}

// === impl Identity ===

impl Identity {
    /// Builds the identity `plan` names, with `[auth]`'s settings; reads a
    /// PAT file once to fail fast. `public_url` is where users' browsers
    /// reach the proxy.
    pub fn from_config(
        config: &Config,
        plan: &AuthPlan,
        public_url: &Url,
        metrics: Arc<Metrics>,
        clock: &Clock,
    ) -> Result<Self, IdentityError> {
        match plan {
            AuthPlan::PassThrough => Ok(Self::PassThrough),
            AuthPlan::Pat => Ok(Self::Pat(PatSource::from_plan(
                &crate::config::PatSourcePlan::of(&config.auth),
            )?)),
            AuthPlan::User { plan, store } => {
                let sessions = open_store(config, store, &metrics, clock)?;
                Login::new(plan, sessions, public_url, metrics)
                    .map(|l| Self::User(Arc::new(l)))
                    .map_err(IdentityError::Login)
            }
            AuthPlan::Service(source) => {
                let device_store = match source {
                    SourcePlan::DeviceCode { store } => {
                        Some(open_store(config, store, &metrics, clock)?)
                    }
                    _ => None,
                };
                let plan = crate::config::service_plan(config, source);
                let service = Arc::new(
                    ServiceIdentity::new(&plan, device_store, metrics.clone(), clock)
                        .map_err(IdentityError::Login)?,
                );
                let login = match (config.auth.allow_browser_login, service.device_store()) {
                    (true, Some((store, wake))) => {
                        // The operator's browser sign-in, through the app.
                        let sign_in = crate::config::user_plan(config, Provider::Entra);
                        let login = Login::for_service(&sign_in, public_url, metrics, store, wake)
                            .map_err(IdentityError::Login)?;
                        Some(Arc::new(login))
                    }
                    _ => None,
                };
                Ok(Self::Service(service, login))
            }
        }
    }

    /// What an audit line says of `credential`: its kind
    /// (`session`, `proxy-token:<id>`, `client-token`,
    /// `service:<source>`, `pat`, `passthrough`) and, for a user, the
    /// object id, tenant and UPN. Never the token.
    #[allow(clippy::type_complexity)]
    pub fn audit_facts(
        &self,
        credential: &Credential,
    ) -> (
        Option<String>,
        Option<(Option<String>, Option<String>, Option<String>)>,
    ) {
        let kind = match (self, credential) {
            (_, Credential::User(u)) => {
                let user = &u.session.user;
                let who = (
                    user.object_id.clone(),
                    user.tenant.clone(),
                    user.upn.clone(),
                );
                let kind = match &u.session.token {
                    Some(t) => format!("proxy-token:{}", t.id),
                    None => "session".to_string(),
                };
                return (Some(kind), Some(who));
            }
            (_, Credential::Client(holder)) => {
                let user = &holder.user;
                let who = (
                    user.object_id.clone(),
                    user.tenant.clone(),
                    user.upn.clone(),
                );
                return (Some("client-token".to_string()), Some(who));
            }
            (Self::Service(service, _), _) => format!("service:{}", service.source()),
            (Self::Pat(_), _) => "pat".to_string(),
            (Self::PassThrough, _) => "passthrough".to_string(),
            (Self::User(_), _) => "-".to_string(),
        };
        (Some(kind), None)
    }

    /// A credential worth trying once at start: one that never changes
    /// by itself (the PAT), so a broken one shows in the log at once.
    pub fn startup_check(&self) -> Option<HeaderValue> {
        match self {
            Self::Pat(pat) => pat.header().ok(),
            Self::Service(service, _) => service.pat_header(),
            _ => None,
        }
    }

    /// Mode `service`: the directory the identity's tokens come from,
    /// when the config names it; organizations of another directory
    /// refuse them.
    pub fn service_tenant(&self) -> Option<&str> {
        match self {
            Self::Service(service, _) => service.configured_tenant(),
            _ => None,
        }
    }

    /// The sign-in state that serves `/.auth/`, if users sign in.
    /// For a tunnel opened with `credential`: a future that resolves
    /// when that credential ends (a user's session or proxy token
    /// expiring, revoked or signed out), `None` when it does not end
    /// while the process runs (a PAT, the service identity, the client's
    /// own credential).
    pub fn credential_end(
        &self,
        credential: &Credential,
    ) -> Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> {
        match (self.login(), credential) {
            (Some(login), Credential::User(user)) => {
                Some(Box::pin(login.clone().session_ended(user.session.clone())))
            }
            // A client's own token: at its expiry.
            (_, Credential::Client(holder)) => {
                let left = holder
                    .until
                    .duration_since(crate::clock::real_wall())
                    .unwrap_or_default();
                Some(Box::pin(tokio::time::sleep(left)))
            }
            _ => None,
        }
    }

    /// Mode `service`: what tells whether the identity holds a token
    /// (the start-up probe waits for the first); `None` for the others.
    pub fn credential_check(&self) -> Option<Arc<dyn Fn() -> bool + Send + Sync>> {
        match self {
            Self::Service(service, _) => {
                let service = service.clone();
                Some(Arc::new(move || service.has_token()))
            }
            _ => None,
        }
    }

    fn login(&self) -> Option<&Arc<Login>> {
        match self {
            Self::User(login) | Self::Service(_, Some(login)) => Some(login),
            _ => None,
        }
    }

    /// Starts what runs beside the requests until `stop`: the service
    /// identity's refresher, the sessions' housekeeping (which reports
    /// whether the session store answers to `store_up`).
    pub fn spawn_tasks(
        &self,
        stop: &watch::Receiver<bool>,
        store_up: Arc<dyn Fn(bool) + Send + Sync>,
    ) {
        if let Self::Service(service, _) = self {
            tokio::spawn(service.clone().run(stop.clone()));
        }
        if let Some(login) = self.login() {
            // A shared store is reachable once it has answered.
            store_up(!login.sessions().shared());
            tokio::spawn(crate::login::housekeeping(
                login.clone(),
                store_up,
                stop.clone(),
            ));
        }
    }

    /// Serves `/.auth/...`.
    pub async fn serve_auth(
        &self,
        req: Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Result<Response<ProxyBody>, Error> {
        if let Self::Service(service, _) = self
            && ctx.own == Some(crate::endpoint::Endpoint::Me)
        {
            return Ok(crate::login::json_response(
                StatusCode::OK,
                service.describe(),
            ));
        }
        match self.login() {
            Some(login) => Box::pin(login.handle(req, ctx)).await,
            None => Err(Refusal::ReservedPath.into()),
        }
    }

    /// The credential for the next upstream request `ctx` (its
    /// organization decides the directory; its path and query are where
    /// a browser returns after sign-in).
    pub async fn credential(
        &self,
        headers: &HeaderMap,
        ctx: &RequestCtx,
    ) -> Result<Credential, Error> {
        let (return_to, org) = (ctx.path_and_query(), ctx.organization());
        match self {
            Self::PassThrough => Ok(Credential::PassThrough(
                headers.get(http::header::AUTHORIZATION).map(|v| {
                    let mut v = v.clone();
                    v.set_sensitive(true);
                    v
                }),
            )),
            Self::Pat(pat) => Ok(Credential::Replace(pat.header()?)),
            // Boxed: the sign-in future (refresh, provider call) is large
            // and would otherwise inflate every request's future, PAT or not.
            Self::User(login) => match Box::pin(login.credential(headers, return_to, org)).await {
                Ok(user) => Ok(Credential::User(Box::new(user))),
                // No session: a client's own valid Entra token passes as
                // it is, when that is allowed.
                Err(e @ Error::NeedsLogin { .. }) => {
                    match Box::pin(login.client_token(headers)).await? {
                        Some(holder) => Ok(Credential::Client(Box::new(holder))),
                        None => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            Self::Service(s, _) => Ok(Credential::Service(Box::pin(s.header()).await?)),
        }
    }

    /// Hears what Azure DevOps answered to a request sent with `used`.
    /// A 401 to a user's token refreshes it once (shared with concurrent
    /// requests): the new header comes back when `replayable` (the
    /// request can be sent again) and it differs from the refused one. A
    /// 401 to the service identity wakes its refresher, within its limits.
    pub async fn after_upstream(
        &self,
        (status, headers): (StatusCode, &HeaderMap),
        used: &Credential,
        replayable: bool,
        ctx: &RequestCtx,
    ) -> Result<Option<HeaderValue>, Error> {
        let (return_to, org) = (ctx.path_and_query(), ctx.organization());
        if status != StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        // Continuous Access Evaluation: the token was revoked before it
        // expired, and the new one must carry these claims.
        let claims = crate::challenge::insufficient_claims(headers);
        match (self, used) {
            // A claims challenge gets its round even when the request
            // cannot be sent again: the next one finds the new token.
            (Self::User(login), Credential::User(user)) if replayable || claims.is_some() => {
                let header = Box::pin(login.after_rejection(
                    user,
                    claims.as_deref(),
                    return_to,
                    (org, headers),
                ))
                .await?;
                // No new token (the provider is backing off): sending the
                // refused one again would only be refused again.
                Ok((replayable && header != user.header).then_some(header))
            }
            (Self::Service(service, _), Credential::Service(header)) => {
                if let Some(claims) = &claims {
                    let renewed = Box::pin(service.claims_challenge(header, claims)).await;
                    return Ok(renewed.filter(|_| replayable));
                }
                service.refused(header);
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// What the identity knows of a request sent with `used`, for the
    /// diagnosis of Azure DevOps' answer: whose credential it was, its
    /// kind (a client's own), the directory of the token the proxy sent,
    /// and where to sign in again.
    pub fn sender(&self, used: &Credential, ctx: &RequestCtx) -> Sender {
        let mut sender = Sender::new(self.caller(used));
        sender.token = used.client_token();
        match (self, used) {
            (Self::User(login), _) => {
                if let Credential::User(user) = used {
                    // A token of the organization's directory, or the
                    // user's own.
                    sender.token_tenant = user
                        .tenant
                        .clone()
                        .or_else(|| user.session.user.tenant.clone());
                }
                let mut url = login.login_url();
                // A browser returns to the page; git URLs are no page.
                if ctx.client != ClientKind::Git {
                    url.query_pairs_mut()
                        .append_pair("rd", ctx.path_and_query());
                }
                sender.sign_in_url = Some(url.to_string());
            }
            (Self::Service(service, _), Credential::Service(_)) => {
                sender.token_tenant = service.token_tenant();
            }
            _ => {}
        }
        sender
    }

    /// Whose credential `used` is, which decides how a refusal of it is
    /// explained.
    pub fn caller(&self, used: &Credential) -> Caller {
        match (self, used) {
            (_, Credential::PassThrough(_) | Credential::Client(_)) | (Self::PassThrough, _) => {
                Caller::Client
            }
            (Self::Pat(_), _) => Caller::Pat,
            (Self::User(login), _) => match login.provider_kind() {
                Provider::Entra => Caller::EntraUser,
                Provider::AzureDevops => Caller::LegacyUser,
                Provider::Oidc => Caller::OidcUser,
            },
            // A browser sign-in replaces a device-code identity.
            (Self::Service(service, _), _) => service.caller(),
        }
    }
}

// === impl Credential ===

impl Credential {
    /// Whether the proxy supplied the credential (rather than passing the
    /// client's own through).
    pub fn supplied(&self) -> bool {
        !matches!(self, Self::PassThrough(_) | Self::Client(_))
    }

    /// Whether a 401 may refresh it, so a bodyless request is worth
    /// keeping for one replay.
    pub fn refreshable(&self) -> bool {
        matches!(self, Self::User(_) | Self::Service(_))
    }

    /// The `Authorization` value to send, if the proxy sets one.
    pub fn header(&self) -> Option<&HeaderValue> {
        match self {
            Self::PassThrough(_) | Self::Client(_) => None,
            Self::Replace(v) | Self::Service(v) => Some(v),
            Self::User(u) => Some(&u.header),
        }
    }

    /// The kind of the client's own token, when it sent one and the
    /// proxy passed it on (unverified: only to explain a refusal).
    pub fn client_token(&self) -> crate::diagnose::ClientToken {
        match self {
            Self::PassThrough(v) => {
                crate::diagnose::ClientToken::of(v.as_ref().map(HeaderValue::as_bytes))
            }
            Self::Client(_) => crate::diagnose::ClientToken::Entra,
            _ => crate::diagnose::ClientToken::None,
        }
    }
}
