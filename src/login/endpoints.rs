//! The `/.auth/` endpoints. They are answered here and never forwarded.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::provider::random_token;
use super::{AfterSignIn, Login, Pending, cookies, redirect};
use crate::body::ProxyBody;
use crate::clock::unix;
use crate::endpoint::Endpoint;
use crate::error::{Error, LoginError};
use crate::request::{ClientKind, RequestCtx};
use crate::session::{Issued, Session, SessionKey};

/// Largest form body accepted at the callback.
const MAX_FORM_BYTES: usize = 64 * 1024;

impl Login {
    /// Serves one `/.auth/...` request.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Result<Response<ProxyBody>, Error> {
        let method = req.method().clone();
        let Some(endpoint) = ctx.own.clone() else {
            return Err(crate::error::Refusal::ReservedPath.into());
        };
        let allowed: &[Method] = match &endpoint {
            Endpoint::Tokens(id) => {
                return Box::pin(self.tokens_endpoint(req, ctx, id.as_deref())).await;
            }
            Endpoint::Pats(id) => {
                return Box::pin(self.pats_endpoint(req, ctx, id.as_deref())).await;
            }
            Endpoint::Login | Endpoint::Me => &[Method::GET],
            Endpoint::Callback => &[Method::GET, Method::POST],
            // GET only asks for confirmation: a link or an image from
            // another site must not sign anyone out.
            Endpoint::Logout if ctx.client == ClientKind::Browser => &[Method::GET, Method::POST],
            Endpoint::Logout => &[Method::POST],
            Endpoint::Reserved => return Err(crate::error::Refusal::ReservedPath.into()),
        };
        if !allowed.contains(&method) {
            return Err(Error::from(LoginError::MethodNotAllowed {
                allowed: allowed
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }));
        }
        match endpoint {
            Endpoint::Login => self.start(&req).await,
            Endpoint::Callback => self.callback(req).await,
            Endpoint::Logout if method == Method::GET => {
                let mut choices = vec![("Sign out", "/.auth/logout")];
                if self.personal.is_some() {
                    choices.push((
                        "Sign out and revoke my proxy tokens",
                        "/.auth/logout?tokens=revoke",
                    ));
                }
                Ok(html(
                    StatusCode::OK,
                    crate::page::confirm(
                        "Sign out?",
                        "Sign out of this proxy (and of the identity provider, where it supports \
                         it)? Your proxy tokens keep working unless you revoke them too.",
                        &choices,
                    ),
                ))
            }
            Endpoint::Logout => self.logout(&req, ctx).await,
            _ => self.me(&req).await,
        }
    }

    /// `GET /.auth/login?rd=<path>`: remembers the sign-in and sends the
    /// browser to the provider.
    async fn start(&self, req: &Request<Incoming>) -> Result<Response<ProxyBody>, Error> {
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

    /// `GET|POST /.auth/callback`: checks the answer against the pending
    /// sign-in, redeems the code, checks the user, creates the session.
    async fn callback(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Error> {
        let (parts, body) = req.into_parts();
        let params = if parts.method == Method::POST {
            let form = read_form(body).await?;
            let has_cookie = form
                .iter()
                .find(|(k, _)| k == "state")
                .is_some_and(|(_, state)| {
                    crate::cookies::values(&parts.headers, &self.jar.pending(state))
                        .next()
                        .is_some()
                });
            if !has_cookie {
                // A cross-site form_post does not carry SameSite=Lax
                // cookies; a top-level GET to ourselves does.
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form.iter())
                    .finish();
                let location = format!("/.auth/callback?{query}");
                let mut resp = redirect_to(&location);
                *resp.status_mut() = StatusCode::SEE_OTHER;
                return Ok(resp);
            }
            form
        } else {
            query_pairs(parts.uri.query())
        };
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let result = self.complete(&parts.headers, get).await;
        match &result {
            Ok(_) => self
                .metrics
                .login
                .step(crate::metrics::LoginOutcome::Completed),
            Err(Error::Login(e)) => self.metrics.login.failed(e.slug()),
            Err(_) => self
                .metrics
                .login
                .failed(crate::metrics::LoginFailure::Other),
        }
        result
    }

    async fn complete<'a>(
        &self,
        headers: &http::HeaderMap,
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Response<ProxyBody>, Error> {
        let state = get("state").ok_or(Error::from(LoginError::MissingState))?;
        let (pending, cookie) = self.pending_for(headers, state)?;
        // RFC 9207: an answer naming another issuer is a mix-up attack.
        if let Some(iss) = get("iss") {
            let ok = self
                .provider
                .metadata()
                .await
                .map(|m| m.accepts_iss(iss))
                .unwrap_or(false);
            if !ok {
                return Err(Error::from(LoginError::WrongIssuer));
            }
        }
        if let Some(error) = get("error") {
            return Err(Error::from(LoginError::Denied {
                error: error.chars().take(200).collect(),
                description: get("error_description")
                    .map(|d| d.chars().take(2000).collect())
                    .unwrap_or_default(),
                vars: self.vars(),
            }));
        }
        let code = get("code").ok_or(Error::from(LoginError::MissingCode))?;
        let (tokens, user) = self
            .provider
            .redeem(
                code,
                pending.pkce_verifier.as_deref(),
                pending.nonce.as_deref(),
            )
            .await
            .map_err(|e| Error::from(LoginError::Redeem(e, self.vars())))?;
        if let Some(reason) = self.allow.refuse(&user) {
            tracing::info!(
                upn = user.upn.as_deref().unwrap_or("-"),
                tenant = user.tenant.as_deref().unwrap_or("-"),
                %reason,
                "sign-in refused by the allowlist"
            );
            return Err(Error::from(LoginError::NotAllowed { reason }));
        }
        let used = self.jar.clear(&cookie);
        let mut resp = match &self.after {
            AfterSignIn::ServiceIdentity(signed_in) => {
                self.become_service(tokens, user, signed_in).await?
            }
            AfterSignIn::Session => self.start_session(headers, tokens, user, &pending).await?,
        };
        resp.headers_mut()
            .extend(used.map(|c| (header::SET_COOKIE, c)));
        Ok(resp)
    }

    /// The pending sign-in of `state`, from the pre-auth cookie only the
    /// browser that started it holds (it opens only for this state, and
    /// is cleared once used), and that cookie's name.
    fn pending_for(
        &self,
        headers: &http::HeaderMap,
        state: &str,
    ) -> Result<(Pending, String), Error> {
        let cookie = self.jar.pending(state);
        let sealed = crate::cookies::values(headers, &cookie)
            .next()
            .ok_or_else(|| {
                // Other sign-ins of this browser, but none with this state: a
                // forged or mistyped answer. None at all: another browser.
                Error::from(if self.jar.pending_in(headers).is_empty() {
                    LoginError::NotThisBrowser
                } else {
                    LoginError::UnknownState
                })
            })?;
        let pending: Pending = self
            .store
            .open_pending(state, &sealed)
            .ok_or(Error::from(LoginError::UnknownState))?;
        let age = Duration::from_millis(
            self.store
                .clock()
                .now_ms()
                .saturating_sub(pending.created_ms),
        );
        if age >= self.login_timeout {
            return Err(Error::from(LoginError::Expired));
        }
        Ok((pending, cookie))
    }

    /// A new session for the signed-in user, replacing the browser's old
    /// one; the redirect back with its cookie.
    async fn start_session(
        &self,
        headers: &http::HeaderMap,
        tokens: crate::oauth::idp::TokenSet,
        user: crate::session::UserInfo,
        pending: &Pending,
    ) -> Result<Response<ProxyBody>, Error> {
        let id = random_token();
        let key = SessionKey::of(&id);
        let session = Session::new(
            key,
            self.store.store_key(&id),
            user,
            Issued {
                access_token: tokens.access_token,
                expires_in: tokens.expires_in,
                refresh_token: tokens.refresh_token,
                id_token: tokens.id_token,
            },
            self.store.clock(),
        )
        .ok_or_else(|| {
            Error::from(LoginError::Provider(
                "the access token cannot be sent in a header".into(),
            ))
        })?;
        let session = Arc::new(session);
        self.store.create(session.clone()).await?;
        // A browser signing in again replaces its old session.
        let olds: Vec<String> = crate::cookies::values(headers, &self.jar.session).collect();
        if let Ok(found) = self.store.lookup_many(&olds).await {
            for s in found.into_iter().flatten() {
                if s.until.is_none() {
                    self.store.remove(&s).await;
                }
            }
        }
        tracing::info!(
            session = ?key,
            upn = session.user.upn.as_deref().unwrap_or("-"),
            "signed in"
        );
        let mut resp = redirect_to(&pending.return_to);
        if let Some(c) = self
            .jar
            .set(&self.jar.session, &id, self.max_lifetime.as_secs())
        {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        Ok(resp)
    }

    /// Mode `service`: the operator's sign-in becomes the proxy's identity.
    async fn become_service(
        &self,
        tokens: crate::oauth::idp::TokenSet,
        user: crate::session::UserInfo,
        signed_in: &tokio::sync::Notify,
    ) -> Result<Response<ProxyBody>, Error> {
        let refresh_token = tokens.refresh_token.ok_or_else(|| {
            Error::from(LoginError::Provider(
                "the provider issued no refresh token (request offline_access)".into(),
            ))
        })?;
        let generation = self
            .store
            .get_service()
            .await?
            .map(|r| r.generation + 1)
            .unwrap_or(1);
        let who = user
            .upn
            .clone()
            .or(user.email.clone())
            .unwrap_or_else(|| "the signed-in account".into());
        self.store
            .put_service(&crate::session::record::StoredService {
                v: crate::session::record::RECORD_VERSION,
                refresh_token: refresh_token.expose().to_string(),
                upn: Some(who.clone()),
                signed_in_ms: self.store.clock().now_ms(),
                generation,
            })
            .await?;
        signed_in.notify_one();
        tracing::info!(upn = %who, "the service identity was signed in through the browser");
        Ok(html(
            StatusCode::OK,
            crate::page::render(
                "Service identity signed in",
                &[&format!(
                    "This proxy now acts as {who} for every caller. Signing in again replaces it."
                )],
                None,
                &[],
            ),
        ))
    }

    /// `POST /.auth/logout` (same-origin, checked by `proxy::origin`):
    /// ends the session here and, for browsers,
    /// at the provider too when it has an end-session endpoint.
    async fn logout(
        &self,
        req: &Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Result<Response<ProxyBody>, Error> {
        let revoke_tokens = self.personal.is_some()
            && query_pairs(req.uri().query())
                .iter()
                .any(|(k, v)| k == "tokens" && v == "revoke");
        // Every value at once (one store read). A session this process
        // holds ends here now and in the store when it answers again; one
        // the store cannot be asked about (down, or restoring after a data
        // loss) is a 503: "signed out" with the cookie cleared would leave
        // it alive on the replica that holds it.
        if revoke_tokens {
            // Tokens are revoked from their owner's list: not while a
            // store that lost its data has it incomplete (503, try again).
            self.store.lists_ready().await?;
        }
        let id_token = self.end_sessions_of(req.headers(), revoke_tokens).await?;
        let end_session = self.end_session_url(id_token.as_ref()).await;
        let mut resp = if ctx.client == ClientKind::Browser {
            match &end_session {
                Some(url) => redirect_to(url.as_str()),
                None => html(
                    StatusCode::OK,
                    crate::page::render(
                        "Signed out",
                        &["You are signed out of this proxy."],
                        Some(("Sign in again", "/.auth/login")),
                        &[],
                    ),
                ),
            }
        } else {
            json_response(StatusCode::OK, json!({ "signedOut": true }))
        };
        if let Some(c) = self.jar.clear(&self.jar.session) {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        Ok(resp)
    }

    /// Ends every session the request's cookies name (revoking their
    /// proxy tokens too when asked): those held here first, whatever the
    /// store says. The ID token of the last one ended, as the logout hint.
    async fn end_sessions_of(
        &self,
        headers: &http::HeaderMap,
        revoke_tokens: bool,
    ) -> Result<Option<crate::config::Secret>, Error> {
        let mut id_token = None;
        // The sessions held here end first, whatever the store says.
        let values: Vec<String> = crate::cookies::values(headers, &self.jar.session).collect();
        let (held, others) = self.store.split_held(values);
        let mut ended = 0;
        for group in [held, others] {
            let found = match self.store.lookup_many(&group).await {
                Ok(found) => found,
                // The session this browser uses here is over; a value
                // no replica's store can be asked about now (a stale
                // cookie, most likely) does not undo that.
                Err(_) if ended > 0 => break,
                Err(e) => return Err(e.into()),
            };
            for s in found.into_iter().flatten() {
                if s.until.is_some() {
                    continue;
                }
                id_token = s.id_token.clone();
                tracing::info!(session = ?s.key, "signed out");
                self.store.remove(&s).await;
                ended += 1;
                if revoke_tokens {
                    // A failed revocation leaves the tokens; the page
                    // still lists them.
                    if let Ok(n) = self.store.revoke_tokens(&s.user, None).await {
                        tracing::info!(revoked = n, "personal proxy tokens revoked at sign-out");
                    }
                }
            }
        }
        Ok(id_token)
    }

    /// Where the browser signs out at the provider too, when it has an
    /// end-session endpoint.
    async fn end_session_url(&self, id_token: Option<&crate::config::Secret>) -> Option<url::Url> {
        self.provider.metadata().await.ok().and_then(|m| {
            let mut url = m.end_session_endpoint.clone()?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("client_id", self.provider.client_id());
                if let Some(t) = id_token {
                    q.append_pair("id_token_hint", t.expose());
                }
            }
            Some(url)
        })
    }

    /// `GET /.auth/me`: who is signed in, never a token.
    async fn me(&self, req: &Request<Incoming>) -> Result<Response<ProxyBody>, Error> {
        let session = self
            .session(req.headers())
            .await?
            .map_err(|_| Error::from(LoginError::NotSignedIn))?;
        let tokens = session.tokens();
        let u = &session.user;
        let expires = session.expires(self.idle_timeout, self.max_lifetime);
        Ok(json_response(
            StatusCode::OK,
            json!({
                "provider": provider_name(self.provider.kind()),
                "name": u.name,
                "upn": u.upn,
                "email": u.email,
                "objectId": u.object_id,
                "tenant": u.tenant,
                "accessTokenExpiresAt": rfc3339(tokens.expires_at_wall),
                "sessionCreatedAt": rfc3339(session.created),
                "sessionExpiresAt": rfc3339(expires),
                "sessionExpiresAtUnix": unix(expires),
            }),
        ))
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

fn provider_name(kind: crate::config::Provider) -> &'static str {
    match kind {
        crate::config::Provider::Entra => "entra",
        crate::config::Provider::AzureDevops => "azure-devops",
        crate::config::Provider::Oidc => "oidc",
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

async fn read_form(body: Incoming) -> Result<Vec<(String, String)>, Error> {
    let bytes = Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|_| Error::from(LoginError::BadForm))?
        .to_bytes();
    Ok(url::form_urlencoded::parse(&bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// A JSON answer that is never cached.
pub(crate) fn json_response(status: StatusCode, value: serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::page::mark_own(resp.headers_mut());
    resp
}

pub(super) fn html(status: StatusCode, page: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::from(page)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::page::mark_own(resp.headers_mut());
    resp
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn redirect_to(location: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::try_from(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
