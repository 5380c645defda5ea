//! Signing out (`/.auth/logout`, confirmed first for a browser's GET)
//! and `/.auth/me`.

use http::header;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::super::answers::{html, json_response, query_pairs, redirect_to};
use super::SignIn;
use crate::body::ProxyBody;
use crate::clock::unix;
use crate::error::{Error, LoginError};
use crate::request::{ClientKind, RequestCtx};

impl SignIn {
    /// `GET /.auth/logout` from a browser: the page that asks to confirm
    /// (a link or an image from another site must not sign anyone out).
    pub(in crate::login) fn confirm_logout(&self) -> Response<ProxyBody> {
        let mut choices = vec![("Sign out", "/.auth/logout")];
        if self.tokens_url.is_some() {
            choices.push((
                "Sign out and revoke my proxy tokens",
                "/.auth/logout?tokens=revoke",
            ));
        }
        html(
            StatusCode::OK,
            crate::page::confirm(
                "Sign out?",
                "Sign out of this proxy (and of the identity provider, where it supports \
                 it)? Your proxy tokens keep working unless you revoke them too.",
                &choices,
            ),
        )
    }

    /// `POST /.auth/logout` (same-origin, checked by `proxy::origin`):
    /// ends the session here and, for browsers,
    /// at the provider too when it has an end-session endpoint.
    pub(in crate::login) async fn logout(
        &self,
        req: &Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Result<Response<ProxyBody>, Error> {
        let revoke_tokens = self.tokens_url.is_some()
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
    pub(in crate::login) async fn me(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Error> {
        let session = self
            .session(req.headers())
            .await?
            .map_err(|_| Error::from(LoginError::NotSignedIn))?;
        let tokens = session.tokens();
        let u = &session.user;
        let expires = session.expires(self.lifetimes.idle, self.lifetimes.max);
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
