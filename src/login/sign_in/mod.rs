//! Signing users in and out: `/.auth/login`, `/.auth/callback`,
//! `/.auth/logout` and `/.auth/me`, the browser's session cookie and
//! what a request without a usable session is told. What a completed
//! sign-in becomes is a value ([`AfterSignIn`]).

use std::sync::Arc;
use std::time::Duration;

use http::header;
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use url::Url;

mod callback;
mod logout;

use super::answers::{query_pairs, redirect_to};
use super::cookies::{self, CookieJar};
use super::membership::Membership;
use super::provider::ProviderClient;
use super::{Allowlist, Lifetimes, redirect};
use crate::body::ProxyBody;
use crate::config::Provider as ProviderKind;
use crate::error::{Error, LoginError};
use crate::metrics::Metrics;
use crate::request::{ClientKind, RequestCtx};
use crate::session::{Miss, Session, Sessions};

/// What a completed sign-in becomes.
pub(super) enum AfterSignIn {
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

/// Signs browsers in and out and finds their sessions.
pub(super) struct SignIn {
    provider: Arc<ProviderClient>,
    store: Arc<Sessions>,
    jar: CookieJar,
    /// Who may sign in.
    allow: Arc<Allowlist>,
    /// Which groups and roles they need, when any.
    membership: Option<Arc<Membership>>,
    after: AfterSignIn,
    public_url: Url,
    /// Where personal proxy tokens are made, when they are on.
    tokens_url: Option<String>,
    /// `auth.login_timeout`: how long a sign-in may take.
    login_timeout: Duration,
    lifetimes: Lifetimes,
    metrics: Arc<Metrics>,
}

/// What [`SignIn`] is built from.
pub(super) struct SignInParts {
    pub provider: Arc<ProviderClient>,
    pub store: Arc<Sessions>,
    pub jar: CookieJar,
    pub allow: Arc<Allowlist>,
    pub membership: Option<Arc<Membership>>,
    pub after: AfterSignIn,
    pub public_url: Url,
    pub tokens_url: Option<String>,
    pub login_timeout: Duration,
    pub lifetimes: Lifetimes,
    pub metrics: Arc<Metrics>,
}

impl SignIn {
    /// Signs in with `parts.provider`, keeping sessions in `parts.store`.
    pub(super) fn new(parts: SignInParts) -> Self {
        let SignInParts {
            provider,
            store,
            jar,
            allow,
            membership,
            after,
            public_url,
            tokens_url,
            login_timeout,
            lifetimes,
            metrics,
        } = parts;
        Self {
            provider,
            store,
            jar,
            allow,
            membership,
            after,
            public_url,
            tokens_url,
            login_timeout,
            lifetimes,
            metrics,
        }
    }

    /// Who signs users in.
    pub(super) fn provider_kind(&self) -> ProviderKind {
        self.provider.kind()
    }

    /// `/.auth/login` on the public URL: where a browser starts signing in.
    pub(super) fn login_url(&self) -> Url {
        let base = self.public_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/.auth/login")).unwrap_or_else(|_| self.public_url.clone())
    }

    /// What sign-in answers fill into the catalog texts.
    pub(super) fn vars(&self) -> crate::diagnose::Vars {
        crate::diagnose::Vars {
            org: None,
            redirect_uri: Some(self.provider.redirect_uri().to_string()),
            admin_consent_url: self.provider.admin_consent_url(),
            sign_in_url: Some(self.login_url().to_string()),
            ..crate::diagnose::Vars::default()
        }
    }

    /// The session named by the request's cookie, if it is alive. The
    /// outer error is the store failing for a session not cached here.
    pub(super) async fn session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Result<Arc<Session>, Miss>, Error> {
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
        if let Some(ended) = self.lifetimes.ended(&session) {
            super::end_session(&self.store, &session);
            *miss = ended;
            return None;
        }
        session.touch();
        // Record the use now and then, so idleness survives restarts and
        // is seen by other replicas.
        if session.seen_save_due(self.lifetimes.idle / 4) {
            let (store, s) = (self.store.clone(), session.clone());
            tokio::spawn(async move {
                let _ = store.save(&s).await;
            });
        }
        Some(session)
    }

    /// The answer for a request without a usable session: sign in (and
    /// come back to `return_to`), asking for the `claims` of a claims
    /// challenge when there is one.
    pub(super) fn needs_login(&self, miss: Miss, return_to: &str, claims: Option<&str>) -> Error {
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
            tokens_url: self.tokens_url.clone(),
        }
    }

    /// The signed-in browser behind a request to a page of its own
    /// (`/.auth/tokens`, `/.auth/pats`): a browser's GET without one is
    /// sent to sign in and back to `return_to`, anything else is told a
    /// browser session is needed.
    pub(super) async fn browser_session(
        &self,
        req: &Request<Incoming>,
        ctx: &RequestCtx,
        return_to: &str,
    ) -> Result<Arc<Session>, Error> {
        match self.session(req.headers()).await? {
            Ok(s) => Ok(s),
            Err(miss) if ctx.client == ClientKind::Browser && req.method() == Method::GET => {
                Err(self.needs_login(miss, return_to, None))
            }
            Err(_) => Err(crate::error::TokenError::NeedsSession {
                login_url: self.login_url().to_string(),
            }
            .into()),
        }
    }

    /// `GET /.auth/login?rd=<path>`: remembers the sign-in and sends the
    /// browser to the provider.
    pub(super) async fn start(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Error> {
        let query = query_pairs(req.uri().query());
        let return_to = match query.iter().find(|(k, _)| k == "rd") {
            Some((_, rd)) => redirect::safe_return_path(rd)
                .ok_or_else(|| Error::from(LoginError::BadReturnPath))?
                .to_string(),
            None => "/".to_string(),
        };
        let claims = query
            .iter()
            .find(|(k, _)| k == "claims")
            .map(|(_, v)| v.as_str())
            .filter(|c| c.len() <= 4096);
        // Needs the network only for OIDC discovery, once.
        let authorize = self
            .provider
            .authorize(claims)
            .await
            .map_err(|e| Error::from(LoginError::Provider(e.to_string())))?;
        let pending = Pending {
            pkce_verifier: authorize.pkce_verifier,
            nonce: authorize.nonce,
            return_to: fit_in_cookie(return_to),
            created_ms: self.store.clock().now_ms(),
        };
        // The pending sign-in travels sealed in the browser's own cookie:
        // nothing is stored, so starting a sign-in costs the server
        // nothing and no flood of starts can crowd out a real user.
        let sealed = self.store.seal_pending(&authorize.state, &pending);
        self.metrics
            .login
            .step(crate::metrics::LoginOutcome::Started);
        let mut resp = redirect_to(authorize.url.as_str());
        // A browser keeps a few sign-ins in progress (tabs); the oldest
        // beyond that go. Browsers list older cookies first.
        let others = self.jar.pending_in(req.headers());
        let excess = (others.len() + 1).saturating_sub(cookies::MAX_PENDING_COOKIES);
        for (name, _) in others.iter().take(excess) {
            if let Some(c) = self.jar.clear(name) {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
        }
        let name = self.jar.pending(&authorize.state);
        // Kept a minute longer than the sign-in is valid, so a late
        // callback is told it took too long rather than that it is
        // unknown.
        let keep = self.login_timeout.as_secs() + 60;
        if let Some(c) = self.jar.set(&name, &sealed, keep) {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        Ok(resp)
    }
}

/// The longest return path kept in the pre-auth cookie (which holds about
/// 4 KiB); a longer deep link returns to its path without the query, or
/// to `/`.
const MAX_RETURN_IN_COOKIE: usize = 1536;

fn fit_in_cookie(return_to: String) -> String {
    if return_to.len() <= MAX_RETURN_IN_COOKIE {
        return return_to;
    }
    match return_to.split_once('?') {
        Some((path, _)) if path.len() <= MAX_RETURN_IN_COOKIE => path.to_string(),
        _ => "/".to_string(),
    }
}
