//! `/.auth/pats`: a signed-in Entra user lists, creates and revokes their
//! own Azure DevOps personal access tokens, for tools that must run where
//! the proxy is not, through Azure DevOps' PAT lifecycle API
//! (`https://vssps.dev.azure.com/{org}/_apis/tokens/pats`, api-version
//! 7.1-preview.1), called with the user's Entra token. That API refuses
//! other tokens, so with the other providers the page says so.

mod page;
mod said;

pub(super) use page::not_entra_page;

use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use url::Url;

use self::page::pats_page;
use self::said::{pat_error, refusal};
use super::answers::{html, json_response};
use crate::body::ProxyBody;
use crate::config::{CallsPlan, PatApiPlan};
use crate::endpoint::{Action, action};
use crate::error::{Error, Refusal, TokenError};
use crate::organization::{self, Allowlist};
use crate::request::{ClientKind, RequestCtx};

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
    /// The API as `plan` names it, called as `calls` says.
    pub(super) fn new(plan: &PatApiPlan, calls: &CallsPlan) -> Result<Self, String> {
        Ok(Self {
            http: super::upstream_client(calls)?,
            vssps: plan.vssps.clone(),
            organizations: Allowlist::new(&plan.organizations),
        })
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

/// One request to `/.auth/pats`, read and checked, before any call.
pub(super) struct PatRequest {
    what: What,
    /// The client is a browser: the page, not JSON.
    browser: bool,
}

enum What {
    /// List the PATs of an organization (none named: the empty page).
    List(Option<String>),
    Create {
        create: Create,
        form: bool,
    },
    Revoke {
        org: String,
        id: String,
        form: bool,
    },
}

/// The user's bearer for the organization a request names.
pub(super) type Bearer = http::HeaderValue;

impl PatRequest {
    /// The organization the lifecycle API is called for, if any: the
    /// caller brings a bearer for it.
    pub(super) fn org(&self) -> Option<&str> {
        match &self.what {
            What::List(org) => org.as_deref(),
            What::Create { create, .. } => Some(&create.org),
            What::Revoke { org, .. } => Some(org),
        }
    }
}

impl PatApi {
    /// Reads `/.auth/pats` (`id`: `/.auth/pats/{authorizationId}`): what
    /// is asked, checked before any lookup or call, the organization
    /// admitted by the routing's rules.
    pub(super) async fn read(
        &self,
        req: Request<Incoming>,
        ctx: &RequestCtx,
        id: Option<&str>,
    ) -> Result<PatRequest, Error> {
        let browser = ctx.client == ClientKind::Browser;
        let org = req
            .uri()
            .query()
            .and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "org")
                    .map(|(_, v)| v.into_owned())
            })
            .filter(|o| organization::is_name(o));
        let what = match action(req.method(), id) {
            Action::List => What::List(org),
            Action::Create => {
                let form = is_form(req.headers());
                What::Create {
                    create: read_create(req, form).await?,
                    form,
                }
            }
            Action::Revoke { id, form } => {
                let org = org.ok_or_else(|| {
                    TokenError::BadRequest("name the organization: ?org=NAME".into())
                })?;
                if uuid::Uuid::parse_str(id).is_err() {
                    return Err(TokenError::NotFound.into());
                }
                What::Revoke {
                    org,
                    id: id.to_string(),
                    form,
                }
            }
            Action::NotAllowed(allowed) => {
                return Err(crate::error::LoginError::MethodNotAllowed {
                    allowed: allowed.into(),
                }
                .into());
            }
        };
        let read = PatRequest { what, browser };
        if let Some(org) = read.org() {
            self.admit(org)?;
        }
        Ok(read)
    }

    /// Answers `req`, calling the lifecycle API with `bearer` (the
    /// user's token for the request's organization).
    pub(super) async fn answer(
        &self,
        req: PatRequest,
        bearer: Option<Bearer>,
    ) -> Result<Response<ProxyBody>, Error> {
        let header = || {
            bearer.clone().ok_or_else(|| {
                Error::from(TokenError::BadRequest(
                    "name the organization: ?org=NAME".into(),
                ))
            })
        };
        match req.what {
            What::List(org) => {
                let listed = match &org {
                    Some(o) => Some(self.call(o, header()?, Method::GET, None, None).await?),
                    None => None,
                };
                if req.browser {
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
            What::Create { create, form } => self.create(create, header()?, form).await,
            What::Revoke { org, id, form } => {
                self.call(&org, header()?, Method::DELETE, Some(&id), None)
                    .await?;
                Ok(revoked(&org, form))
            }
        }
    }

    async fn create(
        &self,
        c: Create,
        bearer: Bearer,
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
            .call(&c.org, bearer.clone(), Method::POST, None, Some(body))
            .await?;
        let error = result["patTokenError"].as_str().unwrap_or("none");
        if error != "none" {
            return Err(TokenError::BadRequest(pat_error(error, c.days)).into());
        }
        if form {
            let listed = self.call(&c.org, bearer, Method::GET, None, None).await?;
            return Ok(html(
                StatusCode::CREATED,
                pats_page(Some(&c.org), Some(&listed), Some(&result["patToken"])),
            ));
        }
        Ok(json_response(StatusCode::CREATED, result))
    }

    /// One call to the lifecycle API for `org` with the user's token (of
    /// the organization's directory); its JSON answer.
    async fn call(
        &self,
        org: &str,
        bearer: Bearer,
        method: Method,
        authorization_id: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        let mut url = self.url(org);
        if let Some(id) = authorization_id {
            url.query_pairs_mut().append_pair("authorizationId", id);
        }
        let mut req = self
            .http
            .request(method, url)
            .header(header::AUTHORIZATION, bearer)
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

/// After a revocation: 204 for the API, back to the page for a form.
fn revoked(org: &str, form: bool) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    if !form {
        *resp.status_mut() = StatusCode::NO_CONTENT;
        return resp;
    }
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let org_q: String = url::form_urlencoded::byte_serialize(org.as_bytes()).collect();
    if let Ok(v) = http::HeaderValue::from_str(&format!("/.auth/pats?org={org_q}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_goes_back_to_the_page_of_its_organization() {
        let page = revoked("contoso", true);
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert_eq!(page.headers()[header::LOCATION], "/.auth/pats?org=contoso");
        assert_eq!(revoked("contoso", false).status(), StatusCode::NO_CONTENT);
    }

    #[test]
    fn a_request_names_the_organization_it_needs_a_bearer_for() {
        let list = |org: Option<&str>| PatRequest {
            what: What::List(org.map(str::to_string)),
            browser: false,
        };
        assert_eq!(list(None).org(), None);
        assert_eq!(list(Some("contoso")).org(), Some("contoso"));
        let revoke = PatRequest {
            what: What::Revoke {
                org: "fabrikam".into(),
                id: "x".into(),
                form: false,
            },
            browser: true,
        };
        assert_eq!(revoke.org(), Some("fabrikam"));
    }

    #[tokio::test]
    async fn an_organization_off_the_allowlist_is_never_called() {
        let mut c = crate::config::Config::default();
        c.auth.provider = Some(crate::config::Provider::Entra);
        c.upstream.allowed_organizations = vec!["contoso".into()];
        let plan = crate::config::user_plan(&c, crate::config::Provider::Entra);
        let api = PatApi::new(plan.pats.as_ref().unwrap(), &plan.calls).unwrap();
        assert!(api.admit("contoso").is_ok());
        assert!(api.admit("fabrikam").is_err());
        assert!(api.admit("../x").is_err());
        let asked = PatRequest {
            what: What::List(Some("contoso".into())),
            browser: false,
        };
        // No bearer, no call: refused before the network.
        assert!(api.answer(asked, None).await.is_err());
    }
}
