//! User sign-in (mode `user`): the `/.auth/` endpoints, the session a
//! sign-in creates, and the bearer token each request is sent with.
//!
//! [`Login`] is a façade over components that own their state:
//! `sign_in.rs` ([`SignIn`]: login, callback, logout, cookies, the
//! allowlist), `refresh.rs` ([`Refresher`]: one token call per session),
//! `tenants.rs` (tokens of other directories), `personal.rs` (personal
//! proxy tokens), `pats.rs` (Azure DevOps' PAT lifecycle API),
//! `client_tokens.rs` (clients' own Entra tokens) and `membership.rs`
//! (Entra groups and app roles). `endpoints.rs` hands each `/.auth/`
//! request to its component; `provider.rs` speaks to Entra, legacy Azure
//! DevOps OAuth or any OIDC issuer; `housekeeping.rs` sweeps.

mod allowlist;
mod answers;
mod client_tokens;
pub mod cookies;
mod endpoints;
mod housekeeping;
mod membership;
mod pats;
mod personal;
pub mod provider;
pub mod redirect;
mod refresh;
mod sign_in;
mod tenants;
#[cfg(test)]
mod tests;

pub(crate) use answers::json_response;
pub use housekeeping::housekeeping;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use url::Url;

use self::allowlist::Allowlist;
use self::client_tokens::ClientTokens;
use self::cookies::CookieJar;
use self::membership::{Membership, Standing};
use self::pats::PatApi;
use self::personal::PersonalTokens;
use self::provider::ProviderClient;
use self::refresh::{Refresher, Stale};
use self::sign_in::{AfterSignIn, SignIn, SignInParts};
use self::tenants::OrgDirectories;
use crate::config::{CallsPlan, Provider as ProviderKind, UserPlan};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::oauth::idp::IdpHttp;

use crate::session::{Miss, Session, Sessions, Tokens};

/// Everything mode `user` needs, shared by all connections: a façade
/// over the components that do the work.
pub struct Login {
    sign_in: SignIn,
    refresher: Refresher,
    store: Arc<Sessions>,
    /// Multi-tenant Entra: each organization's directory.
    directories: Option<OrgDirectories>,
    /// Personal proxy tokens, when on.
    personal: Option<PersonalTokens>,
    /// Clients' own Entra tokens, when accepted.
    client_tokens: Option<ClientTokens>,
    /// Entra: Azure DevOps' PAT lifecycle API, for `/.auth/pats`.
    pats: Option<PatApi>,
    /// Entra groups and app roles, when any are read.
    membership: Option<Arc<Membership>>,
    lifetimes: Lifetimes,
}

/// How long sessions live: `session.idle_timeout` and
/// `session.max_lifetime`.
#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    idle: Duration,
    max: Duration,
}

impl Lifetimes {
    /// Why `session` is over, if it is.
    fn ended(&self, session: &Session) -> Option<Miss> {
        session.ended(self.idle, self.max)
    }
}

/// Ends a session: here at once, in the store in the background.
fn end_session(store: &Arc<Sessions>, session: &Arc<Session>) {
    store.forget(&session.key);
    let (store, s) = (store.clone(), session.clone());
    tokio::spawn(async move { store.remove(&s).await });
}

/// The bearer for one request, with what a retry after a 401 needs.
pub struct UserCredential {
    /// `Bearer <token>`, sensitive.
    pub header: HeaderValue,
    /// The session it came from.
    pub session: Arc<Session>,
    /// The token generation used.
    pub generation: u64,
    /// The directory that issued it, when it is not the one the user
    /// signed in to (an organization of another directory).
    pub tenant: Option<String>,
    /// The user's groups and roles, as found with the token.
    pub member: Arc<crate::session::Member>,
}

/// Who holds a client's own token that passed, and until when.
pub struct ClientHolder {
    /// When the token expires.
    pub until: SystemTime,
    /// Whom it names (object id, tenant, UPN), for the audit trail.
    pub user: Arc<crate::session::UserInfo>,
}

// === impl Login ===

/// How often an open tunnel's credential is checked (and, with a shared
/// store, its record re-read): a revocation on any replica ends the
/// tunnel within about this long.
const TUNNEL_CHECK_INTERVAL: Duration = Duration::from_secs(5);

impl Login {
    /// Resolves when `session` ends for a tunnel opened with it: at its
    /// hard end (a token's expiry, the session's `max_lifetime`), or once
    /// it is signed out or revoked here or, re-read from a shared store,
    /// on another replica.
    pub async fn session_ended(self: Arc<Self>, session: Arc<Session>) {
        let hard_end = session.hard_end(self.lifetimes.max);
        loop {
            let left = hard_end
                .duration_since(session.clock().wall())
                .unwrap_or_default();
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(TUNNEL_CHECK_INTERVAL)).await;
            if !self.store.holds(&session) {
                return;
            }
            if self.store.shared()
                && matches!(
                    self.store.reload(&session).await,
                    Ok(crate::session::Reloaded::Gone)
                )
            {
                self.store.forget(&session.key);
                return;
            }
        }
    }

    /// Builds mode `user` from its plan, keeping sessions in `store`; no
    /// network is used.
    pub fn new(
        plan: &UserPlan,
        store: Arc<Sessions>,
        public_url: &Url,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        Self::with_store(plan, public_url, metrics, store, AfterSignIn::Session)
    }

    /// Mode `service` with `allow_browser_login`: a sign-in at
    /// `/.auth/login` becomes the service identity (stored in `store`,
    /// then `signed_in` is notified) instead of a session.
    pub fn for_service(
        plan: &UserPlan,
        public_url: &Url,
        metrics: Arc<Metrics>,
        store: Arc<Sessions>,
        signed_in: Arc<tokio::sync::Notify>,
    ) -> Result<Self, String> {
        Self::with_store(
            plan,
            public_url,
            metrics,
            store,
            AfterSignIn::ServiceIdentity(signed_in),
        )
    }

    fn with_store(
        plan: &UserPlan,
        public_url: &Url,
        metrics: Arc<Metrics>,
        store: Arc<Sessions>,
        after: AfterSignIn,
    ) -> Result<Self, String> {
        let kind = plan.provider.kind;
        let base = public_url.as_str().trim_end_matches('/');
        let callback = Url::parse(&format!("{base}/.auth/callback"))
            .map_err(|e| format!("listen.public_url: cannot build the callback URL: {e}"))?;
        let provider = Arc::new(ProviderClient::new(
            &plan.provider,
            callback,
            (
                IdpHttp::new(&plan.calls, metrics.clone())?,
                IdpHttp::local(&plan.calls, metrics.clone())?,
            ),
            store.clock(),
        )?);
        if kind == ProviderKind::AzureDevops {
            // Its secrets expire 60 days after they are created.
            metrics.secret_ages.watch(provider.secret_files());
        }
        let allow = Arc::new(Allowlist::new(&plan.allow));
        let gate = crate::gate::Gate::new(plan.refresh_before, plan.forced_refresh_interval);
        let lifetimes = Lifetimes {
            idle: plan.idle_timeout,
            max: plan.max_lifetime,
        };
        // Sessions' own features; the service identity has none.
        let sessions = matches!(after, AfterSignIn::Session);
        let personal = plan.personal.filter(|_| sessions).map(|p| {
            let keeping = personal::Keeping {
                store: store.clone(),
                allow: allow.clone(),
                lifetimes,
                metrics: metrics.clone(),
            };
            PersonalTokens::new(p, base, keeping)
        });
        let membership = match (&plan.membership, sessions) {
            (Some(p), true) => Some(Arc::new(Membership::new(
                p.clone(),
                provider.clone(),
                IdpHttp::new(&plan.calls, metrics.clone())?,
            ))),
            _ => None,
        };
        let client_tokens = match (&plan.client_tokens, sessions) {
            (Some(p), true) => Some(ClientTokens::new(
                p,
                IdpHttp::new(&plan.calls, metrics.clone())?,
                (allow.clone(), membership.clone()),
                store.clock(),
            )),
            _ => None,
        };
        let pats = match (&plan.pats, sessions) {
            (Some(p), true) => Some(PatApi::new(p, &plan.calls)?),
            _ => None,
        };
        let directories = match &plan.directories {
            Some(p) => Some(OrgDirectories::new(
                p,
                &plan.calls,
                (provider.clone(), gate),
                store.clock(),
                metrics.clone(),
            )?),
            None => None,
        };
        Ok(Self {
            directories,
            pats,
            refresher: Refresher::new(
                (provider.clone(), membership.clone()),
                store.clone(),
                gate,
                plan.calls.timeout,
                metrics.clone(),
            ),
            sign_in: SignIn::new(SignInParts {
                provider,
                store: store.clone(),
                jar: CookieJar::new(&plan.cookie_name, public_url.scheme() == "https"),
                allow,
                membership: membership.clone(),
                after,
                public_url: public_url.clone(),
                tokens_url: personal.as_ref().map(|p| p.url().to_string()),
                login_timeout: plan.login_timeout,
                lifetimes,
                metrics,
            }),
            personal,
            client_tokens,
            membership,
            store,
            lifetimes,
        })
    }

    /// The session store.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.store
    }

    /// The bearer for a forwarded request to `org`, refreshed when due:
    /// a token of the organization's directory when that is another than
    /// the user's.
    pub async fn credential(
        &self,
        headers: &HeaderMap,
        return_to: &str,
        org: Option<&str>,
    ) -> Result<UserCredential, Error> {
        let session = match self.sign_in.session(headers).await? {
            Ok(s) => s,
            Err(miss) => match self.token_session(headers).await? {
                Some(s) => s,
                None => return Err(self.sign_in.needs_login(miss, return_to, None)),
            },
        };
        let tokens = self.fresh(&session, None, return_to).await?;
        if let Some((tenant, header, generation)) =
            self.other_directory(&session, org, &tokens).await
        {
            return Ok(UserCredential {
                header,
                session,
                generation,
                tenant: Some(tenant),
                member: tokens.member,
            });
        }
        Ok(UserCredential {
            header: tokens.header,
            session,
            generation: tokens.generation,
            tenant: None,
            member: tokens.member,
        })
    }

    /// `tokens` when the groups and roles found with them still admit
    /// the user. Found against another configuration (or never), they
    /// are found again with a refresh first.
    async fn admitted(
        &self,
        membership: &Membership,
        session: &Arc<Session>,
        tokens: Tokens,
        return_to: &str,
    ) -> Result<Tokens, Error> {
        let tokens = match membership.standing(&tokens.member) {
            Standing::Admitted => return Ok(tokens),
            Standing::Stale => {
                let again = refresh::Refused {
                    generation: tokens.generation,
                    claims: None,
                };
                self.refreshed(session, Some(again), return_to).await?
            }
            Standing::Refused(_) => tokens,
        };
        match membership.standing(&tokens.member) {
            Standing::Admitted => Ok(tokens),
            Standing::Refused(reason) => {
                end_session(&self.store, session);
                Err(membership::Denied::NotMember(reason).into_error())
            }
            // Without a refresh token only a new sign-in finds them.
            Standing::Stale if tokens.refresh_token.is_none() => {
                end_session(&self.store, session);
                Err(self.sign_in.needs_login(Miss::Expired, return_to, None))
            }
            Standing::Stale => Err(Error::from(
                crate::error::LoginError::MembershipUnverified {
                    detail:
                        "your groups and roles have not been checked since this proxy's settings \
                         changed, and checking them again did not succeed yet"
                            .into(),
                    operator: false,
                    retry_after: Some(5),
                },
            )),
        }
    }

    /// The session a personal proxy token in `headers` acts for, when
    /// tokens are on and one is presented.
    async fn token_session(&self, headers: &HeaderMap) -> Result<Option<Arc<Session>>, Error> {
        match &self.personal {
            Some(personal) => personal.session_of(headers).await,
            None => Ok(None),
        }
    }

    /// `session`'s tokens for a request: [`Self::refreshed`], and, when
    /// groups or roles are required, admitted by what was found with them
    /// (whichever replica found it).
    async fn fresh(
        &self,
        session: &Arc<Session>,
        forced: Option<refresh::Refused<'_>>,
        return_to: &str,
    ) -> Result<Tokens, Error> {
        let tokens = self.refreshed(session, forced, return_to).await?;
        match &self.membership {
            Some(membership) => self.admitted(membership, session, tokens, return_to).await,
            None => Ok(tokens),
        }
    }

    /// `session`'s tokens, refreshed when due (or when Azure DevOps
    /// refused generation `forced`); a session that must sign in again is
    /// sent to sign in and back to `return_to`, or, for a personal
    /// token, told its sign-in ended.
    async fn refreshed(
        &self,
        session: &Arc<Session>,
        forced: Option<refresh::Refused<'_>>,
        return_to: &str,
    ) -> Result<Tokens, Error> {
        self.refresher
            .fresh(session, forced)
            .await
            .map_err(|stale| match (stale, &self.personal) {
                (Stale::Failed(e), _) => e,
                (Stale::SignInAgain { .. }, Some(personal)) if session.until.is_some() => {
                    personal.sign_in_ended()
                }
                (Stale::SignInAgain { miss, claims }, _) => {
                    self.sign_in.needs_login(miss, return_to, claims.as_deref())
                }
            })
    }

    /// The token of `org`'s directory for `session`, when it is not the
    /// home directory and may be asked (see `tenants.rs`).
    async fn other_directory(
        &self,
        session: &Session,
        org: Option<&str>,
        tokens: &Tokens,
    ) -> Option<(String, HeaderValue, u64)> {
        self.directories
            .as_ref()?
            .other_directory(session, org, tokens)
            .await
    }

    /// The user's bearer for a call of the proxy's own about `org` (the
    /// PAT lifecycle API): refreshed when due, of the organization's
    /// directory.
    async fn bearer_of(
        &self,
        session: &Arc<Session>,
        org: &str,
        return_to: &str,
    ) -> Result<HeaderValue, Error> {
        let tokens = self.fresh(session, None, return_to).await?;
        Ok(
            match self.other_directory(session, Some(org), &tokens).await {
                Some((_, header, _)) => header,
                None => tokens.header,
            },
        )
    }

    /// After Azure DevOps refused a token the proxy believed valid (its
    /// answer's `headers`, for a request to `org`): one forced refresh
    /// (shared with concurrent requests), asking for the `claims` of a
    /// claims challenge (CAE) when there was one, then the new bearer. A
    /// refusal naming another directory than the token's gets a token of
    /// that directory instead, when it may be asked.
    pub async fn after_rejection(
        &self,
        used: &UserCredential,
        claims: Option<&str>,
        return_to: &str,
        (org, headers): (Option<&str>, &HeaderMap),
    ) -> Result<HeaderValue, Error> {
        let (named, dirs) = match (&self.directories, org) {
            (Some(dirs), Some(org)) => (dirs.learn(org, headers), Some(dirs)),
            (dirs, _) => (None, dirs.as_ref()),
        };
        let tokens = used.session.tokens();
        let home = used
            .session
            .user
            .tenant
            .as_deref()
            .map(str::to_ascii_lowercase);
        let sent_from = used.tenant.clone().or(home);
        if let (Some(crate::challenge::Directory::Tenant(wanted)), Some(dirs)) = (named, dirs)
            && sent_from.as_ref() != Some(&wanted)
        {
            // The organization wants another directory's token: a new
            // one of the same directory would be refused too.
            let other = dirs
                .tenant_token(&used.session, &wanted, &tokens, None, claims)
                .await;
            return Ok(other.map_or_else(|| used.header.clone(), |(_, header, _)| header));
        }
        if let (Some(tenant), Some(dirs)) = (&used.tenant, dirs) {
            // Refused although from the organization's directory: renew
            // it once.
            let renewed = dirs
                .tenant_token(
                    &used.session,
                    tenant,
                    &tokens,
                    Some(used.generation),
                    claims,
                )
                .await;
            return Ok(renewed.map_or_else(|| used.header.clone(), |(_, header, _)| header));
        }
        let refused = refresh::Refused {
            generation: used.generation,
            claims,
        };
        let tokens = self.fresh(&used.session, Some(refused), return_to).await?;
        Ok(tokens.header)
    }

    /// A client's own Entra token in `headers` that may be forwarded as
    /// it is (`auth.accept_client_tokens`), and whose it is; an error says
    /// why a bad one is not.
    pub async fn client_token(&self, headers: &HeaderMap) -> Result<Option<ClientHolder>, Error> {
        let Some(client_tokens) = &self.client_tokens else {
            return Ok(None);
        };
        Ok(client_tokens
            .passes(headers)
            .await?
            .map(|(exp, user)| ClientHolder {
                until: UNIX_EPOCH + Duration::from_secs(exp),
                user,
            }))
    }

    /// Who signs users in.
    pub fn provider_kind(&self) -> ProviderKind {
        self.sign_in.provider_kind()
    }

    /// `/.auth/login` on the public URL: where a browser starts signing in.
    pub fn login_url(&self) -> Url {
        self.sign_in.login_url()
    }

    /// Housekeeping, run periodically: forgets ended sessions here and
    /// expired records and abandoned sign-ins in the store, which are
    /// otherwise only noticed when used.
    pub async fn sweep(&self) {
        let lifetimes = self.lifetimes;
        self.store
            .sweep(&|s: &Session| lifetimes.ended(s).is_some())
            .await;
    }

    /// What sign-in answers fill into the catalog texts.
    pub fn vars(&self) -> crate::diagnose::Vars {
        self.sign_in.vars()
    }
}

/// An HTTP client for the proxy's own calls to Azure DevOps (looking up
/// an organization's directory, the PAT lifecycle API): the upstream's CA
/// roots, the egress proxy, no redirects, the provider's time limit.
fn upstream_client(calls: &CallsPlan) -> Result<reqwest::Client, String> {
    let tls = crate::tls::client_config(calls.ca_file.as_deref())
        .map_err(|e| format!("{}: {}", e.key, e.message))?;
    crate::egress::Egress::new(&calls.egress)
        .configure(reqwest::Client::builder())
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(calls.connect_timeout)
        .timeout(calls.timeout)
        .user_agent(concat!("ado-auth-proxy/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("upstream: cannot build an HTTP client: {e}"))
}
