//! `/.auth/pats`: a signed-in Entra user lists, creates and revokes their
//! own Azure DevOps personal access tokens, for tools that must run where
//! the proxy is not, through Azure DevOps' PAT lifecycle API
//! (`https://vssps.dev.azure.com/{org}/_apis/tokens/pats`, api-version
//! 7.1-preview.1), called with the user's Entra token. That API refuses
//! other tokens, so with the other providers the page says so.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use url::Url;

use super::Login;
use super::endpoints::{html, json_response};
use crate::body::ProxyBody;
use crate::config::{Config, Provider};
use crate::endpoint::{Action, action};
use crate::error::{Error, Refusal, TokenError};
use crate::organization::{self, Allowlist};
use crate::page::escape;
use crate::request::{ClientKind, RequestCtx};
use crate::session::Session;

/// The API version the lifecycle API is called with.
const API_VERSION: &str = "7.1-preview.1";
/// Scopes a PAT may be given here: narrow ones only (a full-scope PAT is
/// what organization policies forbid first).
pub(super) const SCOPES: &[(&str, &str)] = &[
    ("vso.code", "Code (read)"),
    ("vso.code_write", "Code (read and write)"),
    ("vso.packaging", "Packaging (read)"),
    ("vso.packaging_write", "Packaging (read and write)"),
    ("vso.build", "Build (read)"),
    ("vso.build_execute", "Build (read and execute)"),
    ("vso.work", "Work items (read)"),
    ("vso.work_write", "Work items (read and write)"),
    ("vso.release", "Release (read)"),
];
/// The longest PAT lifetime offered, in days.
const MAX_DAYS: u64 = 90;

/// How the lifecycle API is reached.
pub(super) struct PatApi {
    http: reqwest::Client,
    vssps: Url,
    /// `upstream.allowed_organizations`: the API is asked only for these.
    organizations: Allowlist,
}

impl PatApi {
    /// For the Entra provider.
    pub(super) fn new(config: &Config) -> Option<Result<Self, String>> {
        if config.auth.provider != Some(Provider::Entra) {
            return None;
        }
        let build = || {
            let http = super::upstream_client(config)?;
            let vssps = config
                .upstream
                .hosts
                .get("vssps")
                .cloned()
                .unwrap_or_else(|| Url::parse("https://vssps.dev.azure.com/").expect("a URL"));
            Ok(Self {
                http,
                vssps,
                organizations: Allowlist::new(&config.upstream.allowed_organizations),
            })
        };
        Some(build())
    }

    /// The routing's organization rules, before any lookup or call for
    /// `org`: a real organization name, on the allowlist when one is set.
    fn admit(&self, org: &str) -> Result<(), Error> {
        if !organization::is_name(org) {
            return Err(TokenError::BadRequest(format!(
                "\"{}\" is not an organization name (letters, digits and hyphens)",
                org.chars().take(60).collect::<String>()
            ))
            .into());
        }
        Refusal::of_verdict(self.organizations.check(org), self.organizations.names())?;
        Ok(())
    }

    fn url(&self, org: &str) -> Url {
        let mut url = self.vssps.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty().extend([org, "_apis", "tokens", "pats"]);
        }
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        url
    }
}

/// A create request from the page or the JSON API.
struct Create {
    org: String,
    name: String,
    scopes: Vec<String>,
    days: u64,
}

impl Login {
    /// `/.auth/pats` and `/.auth/pats/{authorizationId}`.
    pub(super) async fn pats_endpoint(
        &self,
        req: Request<Incoming>,
        ctx: &RequestCtx,
        id: Option<&str>,
    ) -> Result<Response<ProxyBody>, Error> {
        let browser = ctx.client == ClientKind::Browser;
        let session = match self.session(req.headers()).await? {
            Ok(s) => s,
            Err(miss) if browser && req.method() == Method::GET => {
                return Err(self.needs_login(miss, ctx.path_and_query(), None));
            }
            Err(_) => {
                return Err(TokenError::NeedsSession {
                    login_url: self.login_url().to_string(),
                }
                .into());
            }
        };
        let Some(api) = &self.pats else {
            return Ok(html(StatusCode::NOT_FOUND, not_entra_page()));
        };
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let org = query
            .iter()
            .find(|(k, _)| k == "org")
            .map(|(_, v)| v.clone());
        match action(req.method(), id) {
            Action::List => self.list_pats(api, &session, org, browser).await,
            Action::Create => {
                let form = is_form(req.headers());
                let c = read_create(req, form).await?;
                self.create_pat(api, &session, c, form).await
            }
            Action::Revoke { id, form } => self.revoke_pat(api, &session, org, id, form).await,
            Action::NotAllowed(allowed) => Err(crate::error::LoginError::MethodNotAllowed {
                allowed: allowed.into(),
            }
            .into()),
        }
    }

    async fn list_pats(
        &self,
        api: &PatApi,
        session: &Arc<Session>,
        org: Option<String>,
        browser: bool,
    ) -> Result<Response<ProxyBody>, Error> {
        let org = org.filter(|o| organization::is_name(o));
        let listed = match &org {
            Some(o) => Some(
                self.pat_call(api, session, o, Method::GET, None, None)
                    .await?,
            ),
            None => None,
        };
        if browser {
            return Ok(html(
                StatusCode::OK,
                pats_page(org.as_deref(), listed.as_ref(), None),
            ));
        }
        Ok(json_response(
            StatusCode::OK,
            listed.unwrap_or_else(|| json!({"patTokens": []})),
        ))
    }

    async fn create_pat(
        &self,
        api: &PatApi,
        session: &Arc<Session>,
        c: Create,
        form: bool,
    ) -> Result<Response<ProxyBody>, Error> {
        let valid_to = crate::clock::real_wall() + Duration::from_secs(c.days * 86_400);
        let body = json!({
            "displayName": c.name,
            "scope": c.scopes.join(" "),
            "validTo": humantime::format_rfc3339_seconds(valid_to).to_string(),
            "allOrgs": false,
        });
        let result = self
            .pat_call(api, session, &c.org, Method::POST, None, Some(body))
            .await?;
        let error = result["patTokenError"].as_str().unwrap_or("none");
        if error != "none" {
            return Err(TokenError::BadRequest(pat_error(error, c.days)).into());
        }
        if form {
            let listed = self
                .pat_call(api, session, &c.org, Method::GET, None, None)
                .await?;
            return Ok(html(
                StatusCode::CREATED,
                pats_page(Some(&c.org), Some(&listed), Some(&result["patToken"])),
            ));
        }
        Ok(json_response(StatusCode::CREATED, result))
    }

    /// Revokes PAT `id`: 204 for the API, back to the page for a form.
    async fn revoke_pat(
        &self,
        api: &PatApi,
        session: &Arc<Session>,
        org: Option<String>,
        id: &str,
        form: bool,
    ) -> Result<Response<ProxyBody>, Error> {
        let org = org
            .filter(|o| organization::is_name(o))
            .ok_or_else(|| TokenError::BadRequest("name the organization: ?org=NAME".into()))?;
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(TokenError::NotFound.into());
        }
        self.pat_call(api, session, &org, Method::DELETE, Some(id), None)
            .await?;
        let mut resp = Response::new(ProxyBody::empty());
        if !form {
            *resp.status_mut() = StatusCode::NO_CONTENT;
            return Ok(resp);
        }
        *resp.status_mut() = StatusCode::SEE_OTHER;
        let org_q: String = url::form_urlencoded::byte_serialize(org.as_bytes()).collect();
        if let Ok(v) = http::HeaderValue::from_str(&format!("/.auth/pats?org={org_q}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    }

    /// One call to the lifecycle API for `org` with the user's token (of
    /// the organization's directory); its JSON answer.
    async fn pat_call(
        &self,
        api: &PatApi,
        session: &Arc<Session>,
        org: &str,
        method: Method,
        authorization_id: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        api.admit(org)?;
        let tokens = self.fresh(session, None, "/.auth/pats").await?;
        let header = match self.other_directory(session, Some(org), &tokens).await {
            Some((_, header, _)) => header,
            None => tokens.header,
        };
        let mut url = api.url(org);
        if let Some(id) = authorization_id {
            url.query_pairs_mut().append_pair("authorizationId", id);
        }
        let mut req = api
            .http
            .request(method, url)
            .header(header::AUTHORIZATION, header)
            .header(header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let unavailable =
            |reason: String, retry_after: Option<u64>| TokenError::PatApiUnavailable {
                reason,
                retry_after,
            };
        let resp = req.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "it did not answer in time"
            } else if e.is_connect() {
                "it could not be reached"
            } else {
                "the connection failed"
            };
            unavailable(what.into(), None)
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s.min(3600));
        let bytes = resp
            .bytes()
            .await
            .map_err(|_| unavailable("its answer broke off".into(), None))?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(
                unavailable(format!("it answered HTTP {}", status.as_u16()), retry_after).into(),
            );
        }
        if !status.is_success() {
            return Err(refusal(org, status, &bytes).into());
        }
        if bytes.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| unavailable("its answer was not JSON".into(), None).into())
    }
}

/// Why Azure DevOps' PAT lifecycle API refused a request for `org`
/// (`status`, its `body`): a PAT policy named as the catalog explains it,
/// the permissions the API needs for a 401 or 403, else its words.
fn refusal(org: &str, status: StatusCode, bytes: &[u8]) -> TokenError {
    let message = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).trim().to_string());
    let code = status.as_u16();
    if let Some(policy) = crate::diagnose::pat_policy(&message) {
        let vars = crate::diagnose::Vars {
            code: Some(policy.to_string()),
            org: Some(org.to_string()),
            ..crate::diagnose::Vars::default()
        };
        let entry = crate::diagnose::catalog::entry("pat-policy-refused");
        return TokenError::BadRequest(format!(
            "Azure DevOps refused the PAT request for organization {org} (HTTP {code}: \
             {policy}): {}",
            crate::diagnose::entry_text(entry, &vars)
        ));
    }
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(": {}", message.chars().take(300).collect::<String>())
    };
    if matches!(code, 401 | 403) {
        return TokenError::BadRequest(format!(
            "Azure DevOps refused the PAT request for organization {org} (HTTP {code}{said}): \
             the sign-in token was not accepted by the PAT lifecycle API. The proxy's app \
             registration needs the Azure DevOps delegated permissions vso.pats and \
             vso.pats_manage (required since June 2025; user_impersonation was enough before) \
             with admin consent, and your account needs access to the organization; sign out \
             and in again after the permissions change"
        ));
    }
    TokenError::BadRequest(format!(
        "Azure DevOps refused the PAT request for organization {org} (HTTP {code}{said}): the \
         organization may restrict PAT creation, your account may have no access to it, or \
         only Entra tokens are accepted"
    ))
}

/// What a `patTokenError` means and how to get past it (the
/// `SessionTokenError` values of the API's specification).
fn pat_error(error: &str, days: u64) -> String {
    let why = match error {
        "globalPatPolicyViolation" => {
            "your directory's policy forbids PATs for all organizations; this page only makes \
             organization-scoped ones, so the policy names this one too"
                .to_string()
        }
        "fullScopePatPolicyViolation" => {
            "your directory's policy forbids full-scoped PATs: pick specific scopes".to_string()
        }
        "failedToReadTenantPolicy" => {
            "Azure DevOps could not read your directory's PAT policies; try again later (if it \
             persists, the organization's Microsoft Entra connection is broken)"
                .to_string()
        }
        "disablePatCreationPolicyViolation" => {
            "the organization's \"Restrict personal access token (PAT) creation\" policy does \
             not allow you to create one: ask an organization administrator to add you to its \
             allowlist"
                .to_string()
        }
        "patLifespanPolicyViolation" => {
            format!("{days} days is longer than your directory's policy allows: pick fewer days")
        }
        "invalidScope" => "a scope is not valid".to_string(),
        "invalidValidTo" => "the expiry date is not accepted".to_string(),
        "invalidDisplayName" | "displayNameRequired" => "the name is not accepted".to_string(),
        "accessDenied" => {
            "Azure DevOps denied it (the organization may restrict PAT creation)".to_string()
        }
        "invalidClientType" | "invalidTokenType" | "invalidAudience" => {
            "the API accepts only Microsoft Entra tokens".to_string()
        }
        other => format!("Azure DevOps answered {other}"),
    };
    format!("The personal access token was not created: {why}")
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// A create request: the page's form (`org`, `name`, `scope` repeated,
/// `days`) or JSON (`org`, `display_name`, `scopes`, `expires_in_days`).
async fn read_create(req: Request<Incoming>, form: bool) -> Result<Create, Error> {
    let bad = |why: &str| Error::from(TokenError::BadRequest(why.to_string()));
    let bytes = Limited::new(req.into_body(), 16 * 1024)
        .collect()
        .await
        .map_err(|_| bad("the body is too large"))?
        .to_bytes();
    let (org, name, scopes, days) = if form {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(&bytes).into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let scopes = pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.clone())
            .collect();
        let days = get("days").and_then(|d| d.trim().parse().ok());
        (get("org"), get("name"), scopes, days)
    } else {
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| bad("the body is not JSON"))?;
        let scopes = v["scopes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        (
            v["org"].as_str().map(str::to_string),
            v["display_name"].as_str().map(str::to_string),
            scopes,
            v["expires_in_days"].as_u64(),
        )
    };
    let org = org
        .filter(|o| organization::is_name(o))
        .ok_or_else(|| bad("name a valid organization"))?;
    let name = name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty() && n.chars().count() <= 100 && !n.chars().any(char::is_control))
        .ok_or_else(|| bad("the name must be 1 to 100 characters"))?;
    let scopes: Vec<String> = scopes;
    if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.iter().any(|(k, _)| k == s)) {
        return Err(bad("pick one or more of the offered scopes"));
    }
    let days = days.unwrap_or(7);
    if days == 0 || days > MAX_DAYS {
        return Err(bad("the lifetime must be 1 to 90 days"));
    }
    Ok(Create {
        org,
        name,
        scopes,
        days,
    })
}

fn not_entra_page() -> String {
    crate::page::render(
        "Personal access tokens",
        &[
            "Azure DevOps' PAT lifecycle API accepts only Microsoft Entra tokens, and this proxy \
           signs users in with another provider. Create personal access tokens in Azure DevOps \
           itself (User settings > Personal access tokens), or use a proxy token from \
           /.auth/tokens with the proxy.",
        ],
        Some(("Proxy tokens", "/.auth/tokens")),
        &[],
    )
}

/// The page: an organization picker, its PATs with a revoke button each,
/// the new PAT once, and the create form.
fn pats_page(
    org: Option<&str>,
    listed: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
) -> String {
    let mut body = String::from(
        "<form method=\"get\" action=\"/.auth/pats\"><label>Organization <input name=\"org\" \
         required></label> <button class=\"button\" type=\"submit\">Show</button></form>\n",
    );
    if let Some(t) = new {
        body.push_str(&format!(
            "<h2>New personal access token: {}</h2>\n<p>Copy it now: it is not shown again.</p>\n\
             <p><code id=\"new-pat\">{}</code></p>\n",
            escape(t["displayName"].as_str().unwrap_or("")),
            escape(t["token"].as_str().unwrap_or("")),
        ));
    }
    let Some(org) = org else {
        return crate::page::wrap_html("Personal access tokens", &body);
    };
    let org_q: String = url::form_urlencoded::byte_serialize(org.as_bytes()).collect();
    body.push_str(&format!("<h2>Your PATs in {}</h2>\n", escape(org)));
    let tokens = listed
        .and_then(|l| l["patTokens"].as_array())
        .cloned()
        .unwrap_or_default();
    if tokens.is_empty() {
        body.push_str("<p>None.</p>\n");
    }
    for t in &tokens {
        body.push_str(&format!(
            "<p>{} <code>{}</code> until {} <form method=\"post\" action=\"/.auth/pats/{}?org={}\">\
             <button type=\"submit\">Revoke</button></form></p>\n",
            escape(t["displayName"].as_str().unwrap_or("")),
            escape(t["scope"].as_str().unwrap_or("")),
            escape(t["validTo"].as_str().unwrap_or("")),
            escape(t["authorizationId"].as_str().unwrap_or("")),
            escape(&org_q),
        ));
    }
    let checks: String = SCOPES
        .iter()
        .map(|(k, label)| {
            format!(
                "<label><input type=\"checkbox\" name=\"scope\" value=\"{k}\"> {}</label><br>\n",
                escape(label)
            )
        })
        .collect();
    body.push_str(&format!(
        "<h2>Create one for {}</h2>\n<form method=\"post\" action=\"/.auth/pats\">\n\
         <input type=\"hidden\" name=\"org\" value=\"{}\">\n<label>Name <input name=\"name\" \
         required maxlength=\"100\"></label><br>\n{checks}<label>Days <input name=\"days\" \
         type=\"number\" min=\"1\" max=\"{MAX_DAYS}\" value=\"7\"></label>\n<button \
         class=\"button\" type=\"submit\">Create</button>\n</form>\n<p>Prefer a proxy token \
         (/.auth/tokens) where the proxy runs: a PAT works without it, so keep it short-lived and \
         narrow.</p>\n",
        escape(org),
        escape(org),
    ));
    crate::page::wrap_html("Personal access tokens", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(status: u16, body: &str) -> String {
        match refusal(
            "contoso",
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        ) {
            TokenError::BadRequest(why) => why,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusal_names_the_policy_the_permissions_or_the_words() {
        let why = said(400, r#"{"message":"DisablePatCreationPolicyViolation"}"#);
        assert!(
            why.contains("HTTP 400: DisablePatCreationPolicyViolation") && why.contains("contoso"),
            "{why}"
        );
        let why = said(403, "");
        assert!(
            why.contains("HTTP 403)") && why.contains("vso.pats_manage"),
            "{why}"
        );
        let why = said(404, &format!("{}x", "y".repeat(400)));
        assert!(why.contains("may restrict PAT creation"), "{why}");
        assert!(!why.contains(&"y".repeat(301)), "the words are cut");
    }
}
