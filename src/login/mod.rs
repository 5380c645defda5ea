//! User sign-in (mode `user`): the `/.auth/` endpoints, the session a
//! sign-in creates, and the bearer token each request is sent with.
//!
//! `endpoints.rs` serves `/.auth/login`, `/.auth/callback`,
//! `/.auth/logout` and `/.auth/me`; `refresh.rs` keeps a session's access
//! token fresh with one token call at a time; `provider.rs` speaks to
//! Entra, legacy Azure DevOps OAuth or any OIDC issuer; `tenants.rs`
//! gets tokens of other directories for their organizations.

mod allowlist;
mod client_tokens;
pub mod cookies;
mod endpoints;
mod pats;
mod personal;
pub mod provider;
pub mod redirect;
mod refresh;
mod tenants;

pub(crate) use endpoints::json_response;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use url::Url;

use self::allowlist::Allowlist;
use self::cookies::CookieJar;
use self::provider::ProviderClient;
use crate::clock::Clock;
use crate::config::{Config, Provider as ProviderKind, StorePlan};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::oauth::idp::IdpHttp;

use crate::session::{Miss, Session, Sessions};

/// Everything mode `user` needs, shared by all connections.
pub struct Login {
    provider: ProviderClient,
    store: Arc<Sessions>,
    /// Multi-tenant Entra: each organization's directory.
    directories: Option<tenants::OrgDirectories>,
    /// Personal proxy tokens, when on.
    personal: Option<personal::PersonalTokens>,
    /// Clients' own Entra tokens, when accepted.
    client_tokens: Option<client_tokens::ClientTokens>,
    /// Entra: Azure DevOps' PAT lifecycle API, for `/.auth/pats`.
    pats: Option<pats::PatApi>,
    /// What a completed sign-in becomes.
    after: AfterSignIn,
    jar: CookieJar,
    public_url: Url,
    allow: Allowlist,
    /// When tokens are refreshed (`auth.refresh_before`,
    /// `auth.forced_refresh_interval`).
    gate: crate::gate::Gate,
    login_timeout: Duration,
    provider_timeout: Duration,
    idle_timeout: Duration,
    max_lifetime: Duration,
    metrics: Arc<Metrics>,
}

/// What a completed sign-in becomes.
enum AfterSignIn {
    /// A session of the user (mode `user`).
    Session,
    /// The service identity (mode `service` with `allow_browser_login`):
    /// stored, then the identity is told.
    ServiceIdentity(Arc<tokio::sync::Notify>),
}

/// A sign-in between `/.auth/login` and `/.auth/callback`, sealed into
/// the starting browser's pre-auth cookie (bound to its `state`), so any
/// replica can finish it and the server stores nothing.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pending {
    pkce_verifier: Option<String>,
    nonce: Option<String>,
    return_to: String,
    /// Start, ms since the epoch.
    created_ms: u64,
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
}

/// How often ended sessions and abandoned sign-ins are forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the session store is asked whether it answers.
const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Session housekeeping until `stop`: sweeps ended sessions and expired
/// store entries, and tells `store_up` whether the store answers (for
/// `/readyz`; the check writes back what the store missed when it answers
/// again).
pub async fn housekeeping(
    login: Arc<Login>,
    store_up: Arc<dyn Fn(bool) + Send + Sync>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut sweep =
        tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_INTERVAL, SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(STORE_CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sweep_now = tokio::select! {
            _ = sweep.tick() => true,
            _ = check.tick() => false,
            // Shutdown, or the server is gone.
            r = stop.wait_for(|s| *s) => {
                drop(r);
                return;
            }
        };
        if sweep_now {
            login.sweep().await;
        } else {
            store_up(login.sessions().check().await);
        }
    }
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
        let hard_end = session.hard_end(self.max_lifetime);
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

    /// Builds mode `user` from the config, keeping time by `clock`; no
    /// network is used.
    pub fn new(
        config: &Config,
        provider: ProviderKind,
        store: &StorePlan,
        public_url: &Url,
        metrics: Arc<Metrics>,
        clock: &Clock,
    ) -> Result<Self, String> {
        let store = Arc::new(Sessions::open(
            &config.session,
            store,
            metrics.clone(),
            clock,
        )?);
        Self::with_store(
            config,
            provider,
            public_url,
            metrics,
            store,
            AfterSignIn::Session,
        )
    }

    /// Mode `service` with `allow_browser_login`: a sign-in at
    /// `/.auth/login` becomes the service identity (stored in `store`,
    /// then `signed_in` is notified) instead of a session.
    pub fn for_service(
        config: &Config,
        public_url: &Url,
        metrics: Arc<Metrics>,
        store: Arc<Sessions>,
        signed_in: Arc<tokio::sync::Notify>,
    ) -> Result<Self, String> {
        Self::with_store(
            config,
            ProviderKind::Entra,
            public_url,
            metrics,
            store,
            AfterSignIn::ServiceIdentity(signed_in),
        )
    }

    fn with_store(
        config: &Config,
        kind: ProviderKind,
        public_url: &Url,
        metrics: Arc<Metrics>,
        store: Arc<Sessions>,
        after: AfterSignIn,
    ) -> Result<Self, String> {
        let auth = &config.auth;
        let http = IdpHttp::new(auth, &config.upstream, metrics.clone())?;
        let base = public_url.as_str().trim_end_matches('/');
        let callback = Url::parse(&format!("{base}/.auth/callback"))
            .map_err(|e| format!("listen.public_url: cannot build the callback URL: {e}"))?;
        let provider = ProviderClient::new(auth, kind, callback, http, store.clock())?;
        if kind == ProviderKind::AzureDevops {
            // Its secrets expire 60 days after they are created.
            metrics.secret_ages.watch(provider.secret_files());
        }
        let secure = public_url.scheme() == "https";
        let allow = Allowlist::new(config, kind);
        let directories = match kind {
            ProviderKind::Entra => {
                tenants::OrgDirectories::new(config, store.clock(), metrics.clone()).transpose()?
            }
            _ => None,
        };
        Ok(Self {
            provider,
            directories,
            // Sessions' own features; the service identity has none.
            personal: match after {
                AfterSignIn::Session => personal::PersonalTokens::new(config),
                AfterSignIn::ServiceIdentity(_) => None,
            },
            pats: match (kind, &after) {
                (ProviderKind::Entra, AfterSignIn::Session) => {
                    pats::PatApi::new(config).transpose()?
                }
                _ => None,
            },
            client_tokens: match (kind, &after) {
                (ProviderKind::Entra, AfterSignIn::Session) => client_tokens::ClientTokens::new(
                    config,
                    IdpHttp::new(auth, &config.upstream, metrics.clone())?,
                    &allow,
                    store.clock(),
                ),
                _ => None,
            },
            store,
            after,
            jar: CookieJar::new(&config.session.cookie_name, secure),
            public_url: public_url.clone(),
            allow,
            gate: crate::gate::Gate::new(auth.refresh_before, auth.forced_refresh_interval),
            login_timeout: auth.login_timeout,
            provider_timeout: auth.provider_timeout,
            idle_timeout: config.session.idle_timeout,
            max_lifetime: config.session.max_lifetime,
            metrics,
        })
    }

    /// The session store.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.store
    }

    /// The session named by the request's cookie, if it is alive. The
    /// outer error is the store failing for a session not cached here.
    async fn session(&self, headers: &HeaderMap) -> Result<Result<Arc<Session>, Miss>, Error> {
        let mut miss = Miss::NoCookie;
        // The values this process holds first (no store read, so a store
        // that is down or restoring does not stop a session held here),
        // then every other value at once: one store read.
        let values: Vec<String> = crate::cookies::values(headers, &self.jar.session).collect();
        let (held, others) = self.store.split_held(values);
        for group in [held, others] {
            for found in self.store.lookup_many(&group).await? {
                if let Some(session) = self.live_cookie_session(found, &mut miss) {
                    return Ok(Ok(session));
                }
            }
        }
        Ok(Err(miss))
    }

    /// `found` when it is a live browser session (its use noted); else
    /// why not, in `miss`.
    fn live_cookie_session(
        &self,
        found: Option<Arc<Session>>,
        miss: &mut Miss,
    ) -> Option<Arc<Session>> {
        let Some(session) = found else {
            *miss = Miss::Unknown;
            return None;
        };
        if session.until.is_some() {
            // A personal token's session is no cookie.
            *miss = Miss::Unknown;
            return None;
        }
        if let Some(ended) = session.ended(self.idle_timeout, self.max_lifetime) {
            self.end_session(&session);
            *miss = ended;
            return None;
        }
        session.touch();
        // Record the use now and then, so idleness survives restarts and
        // is seen by other replicas.
        if session.seen_save_due(self.idle_timeout / 4) {
            let (store, s) = (self.store.clone(), session.clone());
            tokio::spawn(async move {
                let _ = store.save(&s).await;
            });
        }
        Some(session)
    }

    /// Ends a session: here at once, in the store in the background.
    fn end_session(&self, session: &Arc<Session>) {
        self.store.forget(&session.key);
        let (store, s) = (self.store.clone(), session.clone());
        tokio::spawn(async move { store.remove(&s).await });
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
        let session = match self.session(headers).await? {
            Ok(s) => s,
            Err(miss) => match self.token_session(headers).await? {
                Some(s) => s,
                None => return Err(self.needs_login(miss, return_to, None)),
            },
        };
        let tokens = self
            .fresh(&session, None, return_to)
            .await
            .map_err(|e| self.for_token(&session, e))?;
        if let Some((tenant, header, generation)) =
            self.other_directory(&session, org, &tokens).await
        {
            return Ok(UserCredential {
                header,
                session,
                generation,
                tenant: Some(tenant),
            });
        }
        Ok(UserCredential {
            header: tokens.header,
            session,
            generation: tokens.generation,
            tenant: None,
        })
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
        let named = match (&self.directories, org) {
            (Some(dirs), Some(org)) => dirs.learn(org, headers),
            _ => None,
        };
        let tokens = used.session.tokens();
        let home = used
            .session
            .user
            .tenant
            .as_deref()
            .map(str::to_ascii_lowercase);
        let sent_from = used.tenant.clone().or(home);
        if let Some(crate::challenge::Directory::Tenant(wanted)) = named
            && sent_from.as_ref() != Some(&wanted)
        {
            // The organization wants another directory's token: a new
            // one of the same directory would be refused too.
            let other = self
                .tenant_token(&used.session, &wanted, &tokens, None, claims)
                .await;
            return Ok(other.map_or_else(|| used.header.clone(), |(_, header, _)| header));
        }
        if let Some(tenant) = &used.tenant {
            // Refused although from the organization's directory: renew
            // it once.
            let renewed = self
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
        let tokens = self
            .fresh(&used.session, Some(refused), return_to)
            .await
            .map_err(|e| self.for_token(&used.session, e))?;
        Ok(tokens.header)
    }

    /// The answer for a request without a usable session.
    fn needs_login(&self, miss: Miss, return_to: &str, claims: Option<&str>) -> Error {
        let mut url = self.login_url();
        {
            let mut q = url.query_pairs_mut();
            if redirect::safe_return_path(return_to).is_some() {
                q.append_pair("rd", return_to);
            }
            if let Some(c) = claims {
                q.append_pair("claims", c);
            }
        }
        let clear = match miss {
            Miss::NoCookie => None,
            _ => self.jar.clear(&self.jar.session),
        };
        Error::NeedsLogin {
            login_url: url.to_string(),
            reason: miss,
            clear_cookie: clear,
            tokens_url: self.tokens_url(),
        }
    }

    /// A client's own Entra token in `headers` that may be forwarded as
    /// it is (`auth.accept_client_tokens`); an error says why a bad one
    /// is not.
    pub async fn client_token(&self, headers: &HeaderMap) -> Result<Option<SystemTime>, Error> {
        Ok(self
            .client_token_passes(headers)
            .await?
            .map(|exp| UNIX_EPOCH + Duration::from_secs(exp)))
    }

    /// Who signs users in.
    pub fn provider_kind(&self) -> ProviderKind {
        self.provider.kind()
    }

    /// `/.auth/login` on the public URL: where a browser starts signing in.
    pub fn login_url(&self) -> Url {
        let base = self.public_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/.auth/login")).unwrap_or_else(|_| self.public_url.clone())
    }

    /// Housekeeping, run periodically: forgets ended sessions here and
    /// expired records and abandoned sign-ins in the store, which are
    /// otherwise only noticed when used.
    pub async fn sweep(&self) {
        let (idle, max) = (self.idle_timeout, self.max_lifetime);
        self.store
            .sweep(&|s: &Session| s.ended(idle, max).is_some())
            .await;
    }

    /// What sign-in answers fill into the catalog texts.
    pub fn vars(&self) -> crate::diagnose::Vars {
        crate::diagnose::Vars {
            org: None,
            redirect_uri: Some(self.provider.redirect_uri().to_string()),
            admin_consent_url: self.provider.admin_consent_url(),
            sign_in_url: Some(self.login_url().to_string()),
            ..crate::diagnose::Vars::default()
        }
    }
}

/// An HTTP client for the proxy's own calls to Azure DevOps (looking up
/// an organization's directory, the PAT lifecycle API): the upstream's CA
/// roots, the egress proxy, no redirects, the provider's time limit.
fn upstream_client(config: &Config) -> Result<reqwest::Client, String> {
    let tls = crate::tls::client_config(config.upstream.ca_file.as_deref())
        .map_err(|e| format!("{}: {}", e.key, e.message))?;
    crate::egress::Egress::new(&config.upstream.egress)
        .configure(reqwest::Client::builder())
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.upstream.connect_timeout)
        .timeout(config.auth.provider_timeout)
        .user_agent(concat!("ado-auth-proxy/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("upstream: cannot build an HTTP client: {e}"))
}
