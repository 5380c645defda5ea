//! `/.auth/pats` through the real binary, against a fake of Azure DevOps'
//! PAT lifecycle API with the shapes and errors of its specification
//! (`specification/tokens/7.1/tokens.json`: `PagedPatTokens`,
//! `PatTokenResult` with `patTokenError`): a signed-in Entra user creates
//! an organization-scoped PAT, sees it listed, meets the directory's
//! lifespan policy, and revokes it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::support::fake_idp::{self, CLIENT_ID, CLIENT_SECRET, FakeIdp, TENANT};
use crate::support::oidc::Browser;
use crate::support::process::ProxyProcess;
use crate::support::upstream::{FakeUpstream, Recorded, respond};

/// The fake's PAT policy: at most this many days.
const POLICY_DAYS: u64 = 30;

/// A fake `vssps.dev.azure.com` serving `/{org}/_apis/tokens/pats` to live
/// tokens of the fake Entra.
async fn lifecycle_api(idp: &FakeIdp) -> FakeUpstream {
    let check = idp.checker();
    let pats: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    FakeUpstream::recording(move |r: &Recorded| {
        let json = |status: u16, v: serde_json::Value| {
            respond(
                status,
                &[("content-type", "application/json")],
                v.to_string(),
            )
        };
        let auth = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if check(auth).is_err() {
            return respond(
                401,
                &[(
                    "www-authenticate",
                    "Bearer authorization_uri=https://login.microsoftonline.com/common",
                )],
                "",
            );
        }
        let (path, query) = r.uri.split_once('?').unwrap_or((&r.uri, ""));
        let q: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        if path != "/contoso/_apis/tokens/pats"
            || q.get("api-version").map(String::as_str) != Some("7.1-preview.1")
        {
            return json(404, serde_json::json!({"message": "not found"}));
        }
        let mut pats = pats.lock().unwrap();
        match r.method.as_str() {
            "GET" => {
                let list: Vec<_> = pats
                    .iter()
                    .map(|p| {
                        let mut p = p.clone();
                        p["token"] = serde_json::Value::Null;
                        p
                    })
                    .collect();
                json(
                    200,
                    serde_json::json!({"patTokens": list, "continuationToken": ""}),
                )
            }
            "POST" => {
                let b: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                let error = |e: &str| {
                    json(
                        200,
                        serde_json::json!({"patToken": null, "patTokenError": e}),
                    )
                };
                if b["allOrgs"] != false {
                    return error("globalPatPolicyViolation");
                }
                let scope = b["scope"].as_str().unwrap_or_default();
                // The organization's "Restrict PAT creation" policy: the
                // bare policy name as the message, HTTP 400.
                if scope.contains("vso.work_write") {
                    return json(
                        400,
                        serde_json::json!({
                            "$id": "1", "innerException": null,
                            "message": "DisablePatCreationPolicyViolation",
                            "typeName": "Microsoft.VisualStudio.Services.Common.VssServiceException, Microsoft.VisualStudio.Services.Common",
                            "typeKey": "VssServiceException", "errorCode": 0, "eventId": 3000,
                        }),
                    );
                }
                // A token without the API's delegated permissions.
                if scope.contains("vso.build_execute") {
                    return respond(403, &[], "");
                }
                let valid_to = humantime::parse_rfc3339(b["validTo"].as_str().unwrap()).unwrap();
                if valid_to > SystemTime::now() + Duration::from_secs(POLICY_DAYS * 86_400) {
                    return error("patLifespanPolicyViolation");
                }
                let n = pats.len();
                let pat = serde_json::json!({
                    "displayName": b["displayName"], "scope": b["scope"],
                    "validTo": b["validTo"], "validFrom": "2026-11-27T00:00:00Z",
                    "authorizationId": format!("00000000-0000-4000-8000-00000000000{n}"),
                    "targetAccounts": ["11111111-2222-3333-4444-555555555555"],
                    "token": format!("fakepat{n}secretvalue"),
                });
                pats.push(pat.clone());
                json(
                    200,
                    serde_json::json!({"patToken": pat, "patTokenError": "none"}),
                )
            }
            "DELETE" => {
                let id = q.get("authorizationId").cloned().unwrap_or_default();
                pats.retain(|p| p["authorizationId"] != id.as_str());
                respond(200, &[], "")
            }
            _ => json(405, serde_json::json!({"message": "method"})),
        }
    })
    .await
}

/// The binary in mode user (Entra) with `vssps` at the fake API.
fn proxy(ado: &FakeUpstream, vssps: &FakeUpstream, idp: &FakeIdp) -> ProxyProcess {
    proxy_at(ado, &vssps.url(), idp, "")
}

/// [`proxy`] with `vssps` at any URL and `upstream_extra` in `[upstream]`.
fn proxy_at(ado: &FakeUpstream, vssps: &str, idp: &FakeIdp, upstream_extra: &str) -> ProxyProcess {
    let toml = format!(
        "[upstream]\nurl = \"{}\"\n{upstream_extra}\n[upstream.hosts]\nvssps = \"{}/\"\n[auth]\nmode = \"user\"\n\
         provider = \"entra\"\ntenant = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\n\
         authority_host = \"{}\"\n[session]\nstore = \"memory\"\n",
        ado.url(),
        vssps.trim_end_matches('/'),
        idp.url()
    );
    ProxyProcess::spawn(
        &toml,
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    )
}

#[tokio::test]
async fn a_signed_in_user_manages_their_azure_devops_pats() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let vssps = lifecycle_api(&idp).await;
    let p = proxy(&ado, &vssps, &idp);
    let base = format!("http://{}", p.proxy);
    let b = Browser::new();
    assert_eq!(fake_idp::sign_in(&b, &base, None).await.status(), 302);
    let create = |days: u64, scopes: serde_json::Value| {
        let req = b.http.post(format!("{base}/.auth/pats")).json(&serde_json::json!({
            "org": "contoso", "display_name": "release tool", "scopes": scopes, "expires_in_days": days,
        }));
        async move { req.send().await.unwrap() }
    };

    let resp = create(7, serde_json::json!(["vso.code", "vso.packaging"])).await;
    assert_eq!(resp.status(), 201, "{}", p.logs());
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["patToken"]["token"], "fakepat0secretvalue");
    let sent = vssps
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["scope"], "vso.code vso.packaging");
    assert_eq!(body["allOrgs"], false, "never a global PAT");
    assert!(
        sent.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer "),
        "the user's Entra token"
    );

    let list: serde_json::Value = b
        .http
        .get(format!("{base}/.auth/pats?org=contoso"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["patTokens"][0]["displayName"], "release tool");
    assert!(
        list["patTokens"][0]["token"].is_null(),
        "never the value again"
    );

    // The directory's lifespan policy, explained.
    let resp = create(60, serde_json::json!(["vso.code"])).await;
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("longer than your directory's policy allows"),
        "{v}"
    );
    // The organization's creation policy, named and explained.
    let resp = create(7, serde_json::json!(["vso.work_write"])).await;
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("DisablePatCreationPolicyViolation"), "{v}");
    assert!(
        m.contains("Restrict personal access token (PAT) creation"),
        "{v}"
    );
    assert!(m.contains("allowlist"), "{v}");
    // A 403 names the delegated permissions the API needs.
    let resp = create(7, serde_json::json!(["vso.build_execute"])).await;
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("vso.pats") && m.contains("vso.pats_manage"),
        "{v}"
    );
    // Scopes outside the offered list never reach Azure DevOps.
    let before = vssps.requests().len();
    assert_eq!(
        create(7, serde_json::json!(["app_token"])).await.status(),
        400
    );
    assert_eq!(vssps.requests().len(), before);

    let id = list["patTokens"][0]["authorizationId"].as_str().unwrap();
    let del = b
        .http
        .delete(format!("{base}/.auth/pats/{id}?org=contoso"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let list: serde_json::Value = b
        .http
        .get(format!("{base}/.auth/pats?org=contoso"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["patTokens"].as_array().unwrap().len(), 0);
    assert!(
        !p.logs().contains("fakepat0secretvalue"),
        "no PAT in the logs"
    );
}

/// Headless Chromium: sign in, create a PAT with the page's form, see it
/// once, revoke it.
#[tokio::test]
async fn chromium_creates_sees_once_and_revokes_a_pat() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let vssps = lifecycle_api(&idp).await;
    let p = proxy(&ado, &vssps, &idp);
    let page = format!("http://{}/.auth/pats?org=contoso", p.proxy);
    let mut peer = crate::support::peer::Peer::start(
        "pats_page.mjs",
        &[("PAGE_URL", &page), ("PAT_NAME", "<deploy> bot")],
    );
    let created = peer.next().await;
    assert_eq!(created["pat"], "fakepat0secretvalue", "{created}");
    assert!(
        created["text"].as_str().unwrap().contains("<deploy> bot"),
        "{created}"
    );
    let revoked = peer.next().await;
    let text = revoked["text"].as_str().unwrap();
    assert!(
        text.contains("None.") && !text.contains("fakepat0secretvalue"),
        "{text}"
    );
    assert!(vssps.requests().iter().any(|r| r.method == "DELETE"));
}

#[tokio::test]
async fn pats_follow_the_organization_rules_and_an_unreachable_api_is_a_503() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let vssps = lifecycle_api(&idp).await;
    let p = proxy_at(
        &ado,
        &vssps.url(),
        &idp,
        "allowed_organizations = [\"contoso\"]",
    );
    let base = format!("http://{}", p.proxy);
    let b = Browser::new();
    assert_eq!(fake_idp::sign_in(&b, &base, None).await.status(), 302);
    let create =
        |org: &str| {
            let req = b.http.post(format!("{base}/.auth/pats")).json(&serde_json::json!({
            "org": org, "display_name": "tool", "scopes": ["vso.code"], "expires_in_days": 7,
        }));
            async move { req.send().await.unwrap() }
        };
    for (org, status) in [
        ("fabrikam", 403),
        ("FABRIKAM", 403),
        ("..", 400),
        (".", 400),
        ("contoso/..", 400),
        ("a.b", 400),
        ("", 400),
    ] {
        let resp = create(org).await;
        assert_eq!(resp.status(), status, "create for {org:?}");
        let v: serde_json::Value = resp.json().await.unwrap();
        if status == 403 {
            assert_eq!(v["adoAuthProxy"]["id"], "organization-not-allowed", "{v}");
        }
    }
    for url in [
        format!("{base}/.auth/pats?org=fabrikam"),
        format!("{base}/.auth/pats/00000000-0000-0000-0000-000000000001?org=fabrikam"),
    ] {
        let resp = if url.contains("/pats/") {
            b.http.delete(&url).send().await.unwrap()
        } else {
            b.http
                .get(&url)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap()
        };
        assert_eq!(resp.status(), 403, "{url}");
    }
    assert!(
        vssps.requests().is_empty(),
        "no call for another organization: {:?}",
        vssps.requests().iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    // The allowed one still works.
    assert_eq!(create("contoso").await.status(), 201, "{}", p.logs());
    drop(p);

    // Azure DevOps' PAT API unreachable, or failing: try again, not a 400.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}")
    };
    let failing = FakeUpstream::recording(|_| {
        respond(
            500,
            &[("content-type", "application/json")],
            "{\"message\":\"boom\"}",
        )
    })
    .await;
    let throttled = FakeUpstream::recording(|_| respond(429, &[("retry-after", "17")], "")).await;
    for (vssps, retry) in [(closed, "5"), (failing.url(), "5"), (throttled.url(), "17")] {
        let p = proxy_at(&ado, &vssps, &idp, "");
        let base = format!("http://{}", p.proxy);
        let b = Browser::new();
        assert_eq!(fake_idp::sign_in(&b, &base, None).await.status(), 302);
        let resp = b
            .http
            .get(format!("{base}/.auth/pats?org=contoso"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{vssps}");
        assert_eq!(resp.headers()["retry-after"], retry, "{vssps}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["adoAuthProxy"]["id"], "pat-api-unavailable", "{v}");
    }
}

#[tokio::test]
async fn a_read_only_proxy_lists_pats_but_makes_none() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let vssps = lifecycle_api(&idp).await;
    // Ends [upstream] early: [access] is its own table.
    let p = proxy_at(&ado, &vssps.url(), &idp, "[access]\nread_only = true");
    let base = format!("http://{}", p.proxy);
    let b = Browser::new();
    assert_eq!(fake_idp::sign_in(&b, &base, None).await.status(), 302);
    let resp = b
        .http
        .post(format!("{base}/.auth/pats"))
        .header("accept", "application/problem+json")
        .json(&serde_json::json!({
            "org": "contoso", "display_name": "x", "scopes": ["vso.code_write"], "expires_in_days": 7,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "{}", p.logs());
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("access-rule-refused") && text.contains("/.auth/pats"),
        "{text}"
    );
    assert!(
        vssps.requests().iter().all(|r| r.method != "POST"),
        "a PAT was asked for"
    );
    let list = b
        .http
        .get(format!("{base}/.auth/pats?org=contoso"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
}
