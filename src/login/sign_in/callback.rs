//! `/.auth/callback`: the provider's answer checked against the pending
//! sign-in, the code redeemed, the user checked (allowlists, groups and
//! roles), and what the sign-in becomes (a session, or the service
//! identity).

use std::sync::Arc;
use std::time::Duration;

use http::header;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::super::answers::{html, query_pairs, read_form, redirect_to};
use super::super::provider::random_token;
use super::{AfterSignIn, Pending, SignIn};
use crate::body::ProxyBody;
use crate::error::{Error, LoginError};
use crate::session::{Issued, Member, Session, SessionKey};

impl SignIn {
    /// `GET|POST /.auth/callback`: checks the answer against the pending
    /// sign-in, redeems the code, checks the user, creates the session.
    pub(in crate::login) async fn callback(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Error> {
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
        let (tokens, user, groups) = self
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
        let member = match &self.membership {
            Some(m) => {
                let rt = tokens.refresh_token.as_ref().map(|t| t.expose());
                m.find(&groups, rt).await.map_err(|denied| {
                    tracing::info!(
                        upn = user.upn.as_deref().unwrap_or("-"),
                        why = ?denied,
                        "sign-in refused: groups or roles"
                    );
                    denied.into_error()
                })?
            }
            None => Member::default(),
        };
        let used = self.jar.clear(&cookie);
        let mut resp = match &self.after {
            AfterSignIn::ServiceIdentity(signed_in) => {
                self.become_service(tokens, user, signed_in).await?
            }
            AfterSignIn::Session => {
                self.start_session(headers, (tokens, user, member), &pending)
                    .await?
            }
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
        (tokens, user, member): (
            crate::oauth::idp::TokenSet,
            crate::session::UserInfo,
            Member,
        ),
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
                member,
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
            .set(&self.jar.session, &id, self.lifetimes.max.as_secs())
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
}
