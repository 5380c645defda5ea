//! Personal proxy tokens for command-line clients: a signed-in user
//! creates, lists and revokes them at `/.auth/tokens` (an HTML page, and
//! a JSON API at the same path); git, curl and package clients present
//! one as `Authorization: Bearer adp_…` or as the password of HTTP Basic
//! (any user name), and the proxy sends the owner's Azure DevOps token.
//! Only a browser session manages tokens: a token cannot make more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use dashmap::DashMap;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::answers::{html, json_response};
use super::{Allowlist, Lifetimes};
use crate::body::ProxyBody;
use crate::config::PersonalPlan;
use crate::endpoint::{Action, action};
use crate::error::{Error, TokenError};
use crate::metrics::{Metrics, TokenOutcome};
use crate::page::escape;
use crate::request::{ClientKind, RequestCtx};
use crate::session::personal::{TOKEN_PREFIX, TokenInfo};
use crate::session::{Session, Sessions};

/// The longest token request body.
const MAX_BODY: usize = 16 * 1024;
/// The longest token name.
const MAX_NAME: usize = 100;
/// A token's use is written to its list entry at most this often.
const USE_NOTE_INTERVAL: Duration = Duration::from_secs(300);

/// `auth.personal_tokens`: the tokens' sessions and the page that
/// manages them.
pub(super) struct PersonalTokens {
    /// `auth.max_token_lifetime`.
    max: Duration,
    /// `auth.max_tokens_per_user`.
    per_user: usize,
    /// When each token session's use was last written.
    noted: DashMap<[u8; 32], Instant>,
    /// `/.auth/tokens` on the public URL.
    url: String,
    store: Arc<Sessions>,
    /// A token's owner must still pass it.
    allow: Arc<Allowlist>,
    lifetimes: Lifetimes,
    metrics: Arc<Metrics>,
}

/// The default lifetime of a new token, in days.
const DEFAULT_DAYS: u64 = 30;

/// What personal tokens are kept by and checked against.
pub(super) struct Keeping {
    pub store: Arc<Sessions>,
    pub allow: Arc<Allowlist>,
    pub lifetimes: Lifetimes,
    pub metrics: Arc<Metrics>,
}

impl PersonalTokens {
    /// Tokens as `plan` sets them; `base` is the public URL without its
    /// final slash.
    pub(super) fn new(plan: PersonalPlan, base: &str, keeping: Keeping) -> Self {
        Self {
            max: plan.max_lifetime,
            per_user: plan.per_user,
            noted: DashMap::new(),
            url: format!("{base}/.auth/tokens"),
            store: keeping.store,
            allow: keeping.allow,
            lifetimes: keeping.lifetimes,
            metrics: keeping.metrics,
        }
    }

    /// Where tokens are made, on the public URL.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    fn refused(&self, reason: &'static str) -> Error {
        self.metrics.login.token(TokenOutcome::Refused);
        Error::from(TokenError::Refused {
            reason,
            tokens_url: self.url.clone(),
        })
    }

    /// The session a personal token in `headers` acts for; `None` when
    /// the request presents none (or tokens are off).
    pub(super) async fn session_of(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<Session>>, Error> {
        let Some(value) = presented(headers) else {
            return Ok(None);
        };
        let Some(session) = self.store.lookup(&value).await? else {
            return Err(self.refused("The proxy token is not known: revoked, expired or mistyped"));
        };
        if session.until.is_none() {
            // A browser session's id is no token.
            return Err(self.refused("The proxy token is not known: revoked, expired or mistyped"));
        }
        if self.lifetimes.ended(&session).is_some() {
            super::end_session(&self.store, &session);
            return Err(self.refused("The proxy token has expired"));
        }
        if self.allow.refuse(&session.user).is_some() {
            return Err(self.refused("The proxy token's owner may no longer use this proxy"));
        }
        session.touch();
        let due = self
            .noted
            .get(&session.store_key)
            .is_none_or(|t| t.elapsed() >= USE_NOTE_INTERVAL);
        if due {
            self.noted
                .insert(session.store_key, crate::clock::real_instant());
            let (store, s) = (self.store.clone(), session.clone());
            tokio::spawn(async move {
                let _ = store.token_used(&s).await;
            });
        }
        self.metrics.login.token(TokenOutcome::Accepted);
        Ok(Some(session))
    }

    /// A token session's sign-in ended (its refresh token is gone): the
    /// client reads that instead of being sent to sign in.
    pub(super) fn sign_in_ended(&self) -> Error {
        self.refused(
            "The sign-in behind this proxy token has ended (its refresh token was revoked or \
             expired)",
        )
    }

    /// `/.auth/tokens` and `/.auth/tokens/{id}` for the signed-in
    /// browser `session`.
    pub(super) async fn answer(
        &self,
        req: Request<Incoming>,
        ctx: &RequestCtx,
        id: Option<&str>,
        session: &Session,
    ) -> Result<Response<ProxyBody>, Error> {
        let browser = ctx.client == ClientKind::Browser;
        match action(req.method(), id) {
            Action::List => self.list_answer(session, browser).await,
            Action::Create => {
                let form = is_form(req.headers());
                let (name, days) = read_request(req, form).await?;
                self.create_answer(session, &name, days, form).await
            }
            // The page's forms revoke one, or all.
            Action::Revoke { id, form } => self.revoke_answer(session, id, form).await,
            Action::NotAllowed(allowed) => Err(crate::error::LoginError::MethodNotAllowed {
                allowed: allowed.into(),
            }
            .into()),
        }
    }

    /// Revokes token `id` (`all` from the page's form): 204 for the API,
    /// back to the page for a form.
    async fn revoke_answer(
        &self,
        session: &Session,
        id: &str,
        form: bool,
    ) -> Result<Response<ProxyBody>, Error> {
        let which = (!(form && id == "all")).then_some(id);
        let n = self.store.revoke_tokens(&session.user, which).await?;
        if n == 0 && which.is_some() {
            return Err(TokenError::NotFound.into());
        }
        for _ in 0..n {
            self.metrics.login.token(TokenOutcome::Revoked);
        }
        let mut resp = Response::new(ProxyBody::empty());
        if form {
            *resp.status_mut() = StatusCode::SEE_OTHER;
            resp.headers_mut().insert(
                header::LOCATION,
                http::HeaderValue::from_static("/.auth/tokens"),
            );
        } else {
            *resp.status_mut() = StatusCode::NO_CONTENT;
        }
        Ok(resp)
    }

    async fn list_answer(
        &self,
        session: &Session,
        browser: bool,
    ) -> Result<Response<ProxyBody>, Error> {
        let tokens = self.store.list_tokens(&session.user).await?;
        if browser {
            return Ok(html(StatusCode::OK, tokens_page(&tokens, None)));
        }
        let list: Vec<serde_json::Value> = tokens.iter().map(describe).collect();
        Ok(json_response(StatusCode::OK, json!({ "tokens": list })))
    }

    async fn create_answer(
        &self,
        session: &Session,
        name: &str,
        days: Option<u64>,
        form: bool,
    ) -> Result<Response<ProxyBody>, Error> {
        let max = self.max;
        let max_days = (max.as_secs() / 86_400).max(1);
        let days = days.unwrap_or(DEFAULT_DAYS.min(max_days));
        if days == 0 || days > max_days {
            return Err(TokenError::BadRequest(format!(
                "expires_in_days must be 1 to {max_days} (auth.max_token_lifetime)"
            ))
            .into());
        }
        let lifetime = Duration::from_secs(days * 86_400).min(max);
        let Some((value, info)) = self
            .store
            .create_token(session, name, lifetime, self.per_user)
            .await?
        else {
            return Err(TokenError::TooMany { max: self.per_user }.into());
        };
        self.metrics.login.token(TokenOutcome::Created);
        tracing::info!(token_id = %info.id, name = %info.name, "personal proxy token created");
        if form {
            let tokens = self.store.list_tokens(&session.user).await?;
            let mut resp = html(
                StatusCode::CREATED,
                tokens_page(&tokens, Some((&info, &value))),
            );
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            return Ok(resp);
        }
        let mut v = describe(&info);
        v["token"] = json!(value);
        Ok(json_response(StatusCode::CREATED, v))
    }
}

/// A personal token in `Authorization`: `Bearer adp_…`, or the password
/// of `Basic` (any user name).
pub(super) fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':')?.1.to_string()
    } else {
        return None;
    };
    // The proxy makes them as the prefix and 256 random bits, base64url.
    let body = token.strip_prefix(TOKEN_PREFIX)?;
    let well_formed = (40..=64).contains(&body.len())
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(token)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// The name and lifetime (days) of a create request: JSON
/// `{"name", "expires_in_days"}`, or the page's form.
async fn read_request(req: Request<Incoming>, form: bool) -> Result<(String, Option<u64>), Error> {
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !form && !json_body {
        return Err(TokenError::BadRequest(
            "send Content-Type: application/json with {\"name\": \"...\", \"expires_in_days\": N}"
                .into(),
        )
        .into());
    }
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| TokenError::BadRequest(format!("the body is over {MAX_BODY} bytes")))?
        .to_bytes();
    let (name, days) = if form {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let days = match get("expires_in_days").filter(|d| !d.trim().is_empty()) {
            Some(d) => Some(d.trim().parse::<u64>().map_err(|_| {
                TokenError::BadRequest("expires_in_days must be a whole number of days".into())
            })?),
            None => None,
        };
        (get("name").unwrap_or_default(), days)
    } else {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| TokenError::BadRequest(format!("the body is not JSON: {e}")))?;
        let days = match v.get("expires_in_days") {
            None | Some(serde_json::Value::Null) => None,
            Some(d) => Some(d.as_u64().ok_or_else(|| {
                TokenError::BadRequest("expires_in_days must be a whole number of days".into())
            })?),
        };
        let name = v.get("name").and_then(|n| n.as_str()).unwrap_or_default();
        (name.to_string(), days)
    };
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(TokenError::BadRequest(format!(
            "name must be 1 to {MAX_NAME} characters, without control characters"
        ))
        .into());
    }
    Ok((name, days))
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A token as the JSON API shows it (never the value).
fn describe(t: &TokenInfo) -> serde_json::Value {
    json!({
        "id": t.id,
        "name": t.name,
        "created_at": rfc3339_ms(t.created_ms),
        "expires_at": rfc3339_ms(t.expires_ms),
        "last_used_at": t.last_used_ms.map(rfc3339_ms),
    })
}

/// The page: the new token once (with how to use it), the list with a
/// revoke button each, and the create form.
fn tokens_page(tokens: &[TokenInfo], new: Option<(&TokenInfo, &str)>) -> String {
    let mut body = String::new();
    if let Some((info, value)) = new {
        body.push_str(&format!(
            "<h2>New token: {name}</h2>\n<p>Copy it now: it is not shown again.</p>\n\
             <p><code id=\"new-token\">{value}</code></p>\n\
             <p>git: use it as the password (any user name), e.g. with \
             <code>git config --global credential.helper store</code>. curl: \
             <code>-H \"Authorization: Bearer {value}\"</code>.</p>\n",
            name = escape(&info.name),
            value = escape(value),
        ));
    }
    body.push_str("<h2>Your proxy tokens</h2>\n");
    if tokens.is_empty() {
        body.push_str("<p>None yet.</p>\n");
    } else {
        body.push_str("<table>\n<tr><th>Name</th><th>Created</th><th>Expires</th><th>Last used</th><th></th></tr>\n");
        for t in tokens {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" \
                 action=\"/.auth/tokens/{}\"><button type=\"submit\">Revoke</button></form></td></tr>\n",
                escape(&t.name),
                rfc3339_ms(t.created_ms),
                rfc3339_ms(t.expires_ms),
                t.last_used_ms.map(rfc3339_ms).unwrap_or_else(|| "never".into()),
                escape(&t.id),
            ));
        }
        body.push_str(
            "</table>\n<form method=\"post\" action=\"/.auth/tokens/all\"><button \
             type=\"submit\">Revoke all</button></form>\n",
        );
    }
    body.push_str(
        "<h2>Create a token</h2>\n<form method=\"post\" action=\"/.auth/tokens\">\n\
         <label>Name <input name=\"name\" maxlength=\"100\" required></label>\n\
         <label>Days <input name=\"expires_in_days\" type=\"number\" min=\"1\" value=\"30\"></label>\n\
         <button class=\"button\" type=\"submit\">Create</button>\n</form>\n\
         <p>A token acts as you for git, scripts and package clients: send it as the password \
         of HTTP Basic or as <code>Authorization: Bearer</code>. Revoke it when it leaks.</p>\n",
    );
    crate::page::wrap_html("Proxy tokens", &body)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    proptest! {
        /// A made token is found in Bearer and in Basic with any user
        /// name; nothing else panics, and only well-formed values count.
        #[test]
        fn tokens_are_read_from_bearer_and_basic(
            user in "[^:\\x00-\\x1f]{0,20}",
            body in "[A-Za-z0-9_-]{43}",
            junk in "\\PC{0,80}",
        ) {
            let token = format!("{TOKEN_PREFIX}{body}");
            prop_assert_eq!(presented(&with(&format!("Bearer {token}"))), Some(token.clone()));
            prop_assert_eq!(presented(&with(&format!("bearer  {token} "))), Some(token.clone()));
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
            prop_assert_eq!(presented(&with(&format!("Basic {basic}"))), Some(token.clone()));
            let found = presented(&with(&junk));
            prop_assert!(found.as_ref().is_none_or(|t| t.starts_with(TOKEN_PREFIX) && t.len() >= 44));
            let basic_junk = base64::engine::general_purpose::STANDARD.encode(&junk);
            let _ = presented(&with(&format!("Basic {basic_junk}")));
        }
    }

    #[test]
    fn other_credentials_are_no_tokens() {
        for v in [
            "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig",
            "Basic OnBhdA==",
            "Negotiate adp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "Bearer adp_short",
            "Bearer adp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/A",
        ] {
            assert_eq!(presented(&with(v)), None, "{v}");
        }
    }
}
