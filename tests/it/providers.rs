//! Entra ID and legacy Azure DevOps OAuth specifics, against in-process
//! fakes of both (`support::fake_idp`): certificate client assertions,
//! refresh-token rotation, and every refresh failure handled by its cause.

use std::time::Duration;

use ado_auth_proxy::config::{Config, Provider, Secret};
use url::Url;

use crate::support::fake_idp::{
    self, CAE_CLAIMS, CLIENT_ID, CLIENT_SECRET, FakeIdp, LEGACY_SECRET, MFA_CLAIMS, Mode, Setup,
    TENANT,
};
use crate::support::oidc::Browser;
use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, PROJECTS, metrics};

/// The shared setup with tokens refreshed 1 s before they expire.
async fn setup(access_ttl: Duration, tweak: impl FnOnce(&mut Config, &str)) -> Setup {
    Setup::start(access_ttl, |c, idp| {
        c.auth.refresh_before = Duration::from_secs(1);
        tweak(c, idp);
    })
    .await
}

/// `GET /.auth/me` as JSON.
async fn me(s: &Setup, b: &Browser) -> serde_json::Value {
    b.http
        .get(format!("{}/.auth/me", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn api(s: &Setup, b: &Browser) -> reqwest::Response {
    b.http
        .get(format!("{}{PROJECTS}", s.url))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

async fn page(s: &Setup, b: &Browser) -> reqwest::Response {
    b.navigate(&format!("{}{PROJECTS}", s.url)).await
}

#[tokio::test]
async fn entra_sign_in_with_a_certificate_and_refresh_token_rotation() {
    let keys = fake_idp::keys();
    let s = setup(Duration::from_secs(3), |c, _| {
        c.auth.client_secret = None;
        c.auth.client_certificate_file = Some(keys.client_cert.clone());
        c.auth.client_key_file = Some(keys.client_key.clone());
    })
    .await;
    let b = s.signed_in().await;

    // Endpoints come from authority and tenant; the scopes are Azure DevOps'.
    let q = &s.idp.authorize_queries()[0];
    assert_eq!(
        q["scope"],
        "499b84ac-1321-427f-aa17-267ca6975798/.default offline_access openid profile email"
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], CLIENT_ID);

    let who = me(&s, &b).await;
    assert_eq!(who["objectId"], "00000000-1111-2222-3333-444444444444");
    assert_eq!(who["tenant"], TENANT);
    assert_eq!(who["upn"], "dana@contoso.com");
    assert_eq!(who["name"], "Dana Scully");
    assert_eq!(who["provider"], "entra");

    // 3 s tokens over 7 s: several refreshes, each with the newest token.
    for _ in 0..14 {
        let resp = api(&s, &b).await;
        assert_eq!(resp.status(), 200);
        s.advance(Duration::from_millis(500));
    }
    let (issued, redeemed) = s.idp.refresh_history();
    assert!(redeemed.len() >= 2, "{redeemed:?}");
    for (i, rt) in redeemed.iter().enumerate() {
        assert_eq!(rt, &issued[i], "refresh {i} used the newest refresh token");
    }
    // Every token call carried a verified private_key_jwt assertion.
    assert_eq!(
        s.idp.assertions_verified(),
        s.idp.calls("authorization_code") + s.idp.calls("refresh_token")
    );
    assert_eq!(s.idp.calls("authorization_code"), 1);
}

#[tokio::test]
async fn a_revoked_grant_ends_the_session() {
    let s = setup(Duration::from_secs(3), |_, _| {}).await;
    let b = s.signed_in().await;
    assert_eq!(api(&s, &b).await.status(), 200);
    s.idp.set_mode(Mode::Revoked);
    s.advance(Duration::from_millis(2200));

    // Browsers sign in again; programs get 401; the session is gone.
    let resp = page(&s, &b).await;
    assert_eq!(resp.status(), 302);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/.auth/login?rd=")
    );
    assert_eq!(api(&s, &b).await.status(), 401);
    assert_eq!(
        b.http
            .get(format!("{}/.auth/me", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        s.idp.calls("refresh_token"),
        1,
        "a dead grant is not retried"
    );
    let m = metrics(s.proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_token_refreshes_total{outcome=\"relogin\"} 1"),
        "{m}"
    );
    assert!(m.contains("ado_proxy_sessions_active 0"), "{m}");
}

#[tokio::test]
async fn mfa_required_on_refresh_passes_the_claims_challenge_to_the_next_sign_in() {
    let s = setup(Duration::from_secs(3), |_, _| {}).await;
    let b = s.signed_in().await;
    s.idp.set_mode(Mode::Mfa);
    s.advance(Duration::from_millis(2200));
    let resp = page(&s, &b).await;
    assert_eq!(resp.status(), 302);
    let login = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(login.contains("claims="), "{login}");
    s.idp.set_mode(Mode::Normal);
    let resp = b.navigate(&login).await;
    let authorize = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    // The challenge's claims, with the cp1 capability merged in.
    let claims: serde_json::Value =
        serde_json::from_str(&support::query_param(&authorize, "claims").unwrap()).unwrap();
    let mut want: serde_json::Value = serde_json::from_str(MFA_CLAIMS).unwrap();
    want["access_token"]["xms_cc"] = serde_json::json!({"values": ["cp1"]});
    assert_eq!(claims, want);
}

#[tokio::test]
async fn a_rejected_client_secret_is_an_operator_error_and_keeps_the_session() {
    let s = setup(Duration::from_secs(3), |_, _| {}).await;
    let b = s.signed_in().await;
    s.idp.set_mode(Mode::InvalidClient);
    s.advance(Duration::from_millis(3200));
    let resp = api(&s, &b).await;
    assert_eq!(resp.status(), 502);
    // The first backoff step: 1 s ± 20% jitter, rounded up.
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Azure DevOps' JSON shape, for the SDKs, with the catalog's case.
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["adoAuthProxy"]["id"], "client-credential-invalid");
    assert_eq!(body["adoAuthProxy"]["fixer"], "operator");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("operator error, not yours") && message.contains("7000222"),
        "{message}"
    );
    // Entra's ids, which Microsoft support asks for, as facts.
    let ids = &body["adoAuthProxy"]["correlation"];
    assert_eq!(
        ids["Correlation ID"], "aaaa0000-bb11-2222-33cc-444444dddddd",
        "{body}"
    );
    assert_eq!(
        ids["Trace ID"], "0000aaaa-11bb-cccc-dd33-eeeeee333333",
        "{body}"
    );
    assert_eq!(ids["Timestamp"], "2026-11-22 04:00:00Z", "{body}");

    // Once the operator fixes it, the same session works after the
    // backoff (waiting as Retry-After said): no new sign-in.
    s.idp.set_mode(Mode::Normal);
    s.advance(Duration::from_millis(retry_after * 1000 + 100));
    assert_eq!(api(&s, &b).await.status(), 200);
    assert_eq!(s.idp.calls("authorization_code"), 1);
}

#[tokio::test]
async fn a_provider_outage_keeps_serving_valid_tokens_then_answers_503_with_retry_after() {
    let s = setup(Duration::from_secs(6), |c, _| {
        c.auth.refresh_before = Duration::from_secs(3)
    })
    .await;
    let b = s.signed_in().await;
    s.idp.set_mode(Mode::Down);
    s.advance(Duration::from_millis(3300));
    // Due for refresh, refresh fails, the token still has ~2.7 s: served.
    assert_eq!(api(&s, &b).await.status(), 200);
    assert_eq!(
        api(&s, &b).await.status(),
        200,
        "backoff: no second call yet"
    );
    assert_eq!(s.idp.calls("refresh_token"), 1);

    s.advance(Duration::from_millis(3000));
    let resp = api(&s, &b).await;
    assert_eq!(resp.status(), 503);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: serde_json::Value = resp.json().await.unwrap();
    // Azure DevOps' error shape, which its SDKs read.
    assert_eq!(body["adoAuthProxy"]["id"], "provider-unavailable", "{body}");
    assert_eq!(body["adoAuthProxy"]["retryAfter"], retry.to_string());

    s.idp.set_mode(Mode::Normal);
    s.advance(Duration::from_secs(retry));
    assert_eq!(
        api(&s, &b).await.status(),
        200,
        "recovers without a new sign-in"
    );
    assert_eq!(s.idp.calls("authorization_code"), 1);
}

#[tokio::test]
async fn a_declined_consent_gets_a_readable_page_and_no_session() {
    let s = setup(Duration::from_secs(60), |_, _| {}).await;
    s.idp.set_mode(Mode::Deny);
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("set-cookie").is_none());
    let html = resp.text().await.unwrap();
    assert!(html.contains("AADSTS65004"), "{html}");
    assert!(html.contains("Sign in again"));
}

#[tokio::test]
async fn multi_tenant_sign_in_admits_only_allowed_tenants() {
    let other = "bbbbbbbb-0000-0000-0000-000000000000";
    let s = setup(Duration::from_secs(60), |c, _| {
        c.auth.tenant = Some("organizations".into());
        c.auth.allowed_tenants = vec![TENANT.into()];
    })
    .await;
    assert_eq!(
        s.sign_in().await.1.status(),
        302,
        "the allowed tenant signs in"
    );
    s.idp.set_user(|u| u.tid = other.into());
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains(other));
}

#[tokio::test]
async fn names_from_any_directory_do_not_match_the_user_allowlist() {
    // Any tenant admitted: its administrators can give anyone any user
    // name or email, so only the object id identifies a user.
    let other = "bbbbbbbb-0000-0000-0000-000000000000";
    let s = setup(Duration::from_secs(60), |c, _| {
        c.auth.tenant = Some("organizations".into());
        c.auth.allowed_tenants = vec!["*".into()];
        c.auth.allowed_users = vec!["dana@contoso.com".into(), "oid-of-erin".into()];
    })
    .await;
    s.idp.set_user(|u| {
        u.tid = other.into();
        u.upn = "dana@contoso.com".into();
    });
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 403, "dana's UPN from another directory");
    s.idp.set_user(|u| u.oid = "oid-of-erin".into());
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 302, "an object id identifies");
    // The same UPN in a listed tenant is trusted.
    let s = setup(Duration::from_secs(60), |c, _| {
        c.auth.tenant = Some("organizations".into());
        c.auth.allowed_tenants = vec![TENANT.into()];
        c.auth.allowed_users = vec!["dana@contoso.com".into()];
    })
    .await;
    assert_eq!(s.sign_in().await.1.status(), 302);
}

#[tokio::test]
async fn entra_emails_match_the_allowlists_only_with_a_verified_domain_owner() {
    // nOAuth: Entra's `email` is the `mail` attribute, which a
    // directory's administrators set to any address, and Entra sends no
    // `email_verified`. Only `xms_edov: true` makes it count.
    let mallory = |email: &str, extra: &[(&str, serde_json::Value)]| {
        let mut claims = serde_json::Map::new();
        claims.insert("email".into(), email.into());
        for (k, v) in extra {
            claims.insert((*k).into(), v.clone());
        }
        move |u: &mut crate::support::fake_idp::User| {
            u.oid = "0000aaaa-0000-4000-8000-00000000000e".into();
            u.upn = "mallory@fabrikam.onmicrosoft.com".into();
            u.extra = claims;
        }
    };
    let s = setup(Duration::from_secs(60), |c, _| {
        c.auth.allowed_email_domains = vec!["contoso.com".into()];
    })
    .await;
    for (what, extra) in [
        ("no xms_edov", vec![]),
        ("xms_edov false", vec![("xms_edov", false.into())]),
        ("xms_edov \"false\"", vec![("xms_edov", "false".into())]),
        (
            "email_verified, which Entra never sends",
            vec![("email_verified", true.into())],
        ),
    ] {
        s.idp.set_user(mallory("mallory@contoso.com", &extra));
        let (_, resp) = s.sign_in().await;
        assert_eq!(resp.status(), 403, "{what}");
        assert!(resp.headers().get("set-cookie").is_none(), "{what}");
    }
    s.idp
        .set_user(mallory("mallory@contoso.com", &[("xms_edov", true.into())]));
    let (b, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 302, "a verified domain owner's address");
    assert_eq!(me(&s, &b).await["email"], "mallory@contoso.com");
    // A UPN of the domain is the account's own name (and an address
    // nobody vouched for is not shown as the user's).
    s.idp.set_user(|u| {
        u.upn = "dana@contoso.com".into();
        u.extra = serde_json::Map::from_iter([("email".into(), "dana@evil.example".into())]);
    });
    let (b, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 302, "a UPN of the domain");
    let who = me(&s, &b).await;
    assert_eq!(who["upn"], "dana@contoso.com");
    assert_eq!(who["email"], serde_json::Value::Null, "{who}");

    // allowed_users: the UPN or the object id, not an unvouched email.
    let s = setup(Duration::from_secs(60), |c, _| {
        c.auth.allowed_users = vec![
            "dana@contoso.com".into(),
            "0000bbbb-0000-4000-8000-00000000000b".into(),
        ];
    })
    .await;
    s.idp.set_user(mallory("dana@contoso.com", &[]));
    assert_eq!(s.sign_in().await.1.status(), 403, "dana's address as mail");
    s.idp
        .set_user(|u| u.oid = "0000bbbb-0000-4000-8000-00000000000b".into());
    assert_eq!(s.sign_in().await.1.status(), 302, "an object id");
    s.idp.set_user(|u| {
        u.oid = "0000cccc-0000-4000-8000-00000000000c".into();
        u.upn = "dana@contoso.com".into();
        u.extra = serde_json::Map::new();
    });
    assert_eq!(s.sign_in().await.1.status(), 302, "the UPN");
}

#[tokio::test]
async fn a_wrong_client_secret_at_sign_in_blames_the_operator() {
    let s = setup(Duration::from_secs(60), |c, _| {
        c.auth.client_secret = Some(Secret::new("wrong"))
    })
    .await;
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 502);
    let html = resp.text().await.unwrap();
    assert!(html.contains("an operator error, not yours"), "{html}");
    assert!(html.contains("AADSTS7000215"), "{html}");
    assert!(
        html.contains("aaaa0000-bb11-2222-33cc-444444dddddd"),
        "Entra's correlation id: {html}"
    );
}

async fn legacy(access_ttl: Duration, secret: &str) -> Setup {
    let secret = secret.to_string();
    setup(access_ttl, move |c, idp| {
        c.auth.provider = Some(Provider::AzureDevops);
        c.auth.tenant = None;
        c.auth.client_id = Some("9f6c7bd9-0a8e-4d1e-9a43-6e5f3f2c1b0a".into());
        c.auth.client_secret = Some(Secret::new(secret));
        c.auth.authority_host = Some(Url::parse(idp).unwrap());
    })
    .await
}

#[tokio::test]
async fn legacy_azure_devops_oauth_signs_in_and_refreshes_with_the_assertion_grant() {
    let s = legacy(Duration::from_secs(3), LEGACY_SECRET).await;
    let b = s.signed_in().await;
    let q = &s.idp.authorize_queries()[0];
    assert_eq!(q["response_type"], "Assertion");
    assert_eq!(q["redirect_uri"], format!("{}/.auth/callback", s.url));
    assert!(
        !q.contains_key("code_challenge"),
        "legacy OAuth has no PKCE"
    );

    let who = me(&s, &b).await;
    assert_eq!(who["name"], "Dana Scully");
    assert_eq!(who["email"], "dana@contoso.com");
    assert_eq!(who["provider"], "azure-devops");

    // String expires_in ("3") is honoured: refreshes happen, each with
    // the newest (single-use) refresh token.
    for _ in 0..10 {
        assert_eq!(api(&s, &b).await.status(), 200);
        s.advance(Duration::from_millis(500));
    }
    let (issued, redeemed) = s.idp.refresh_history();
    assert!(s.idp.calls("legacy_refresh") >= 2);
    for (i, rt) in redeemed.iter().enumerate() {
        assert_eq!(rt, &issued[i]);
    }
    // The token goes upstream as Bearer, never as "jwt-bearer".
    let last = s.ado.requests().pop().unwrap();
    assert!(
        last.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer legacy-at.")
    );
}

#[tokio::test]
async fn legacy_errors_in_pascal_case_are_understood() {
    // The "App Secret" instead of the "Client Secret": invalid_client.
    let s = legacy(Duration::from_secs(60), "app-secret").await;
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 502);
    let html = resp.text().await.unwrap();
    assert!(html.contains("invalid_client"), "{html}");

    // A dead refresh token ({"Error":"invalid_request",...}) ends the session.
    let s = legacy(Duration::from_secs(3), LEGACY_SECRET).await;
    let b = s.signed_in().await;
    s.idp.set_mode(Mode::Revoked);
    s.advance(Duration::from_millis(2200));
    assert_eq!(api(&s, &b).await.status(), 401);
}

/// Microsoft retires the legacy flow in 2026 without saying how its token
/// endpoint will answer then: a 404 or 410, or a notice that it is
/// retired, is named as the retirement (the operator's to fix, by moving
/// to Entra), at a refresh and at sign-in; sessions are kept meanwhile.
#[tokio::test]
async fn a_retired_legacy_oauth_is_named_at_refresh_and_at_sign_in() {
    let s = legacy(Duration::from_secs(3), LEGACY_SECRET).await;
    let b = s.signed_in().await;
    s.idp.set_mode(Mode::Raw(
        410,
        "<html><body><h1>410 Gone</h1></body></html>",
    ));
    s.advance(Duration::from_millis(3200));
    let resp = api(&s, &b).await;
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["adoAuthProxy"]["id"], "legacy-oauth-retired", "{body}");
    assert_eq!(body["adoAuthProxy"]["fixer"], "operator");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("has been retired") && message.contains("HTTP 410"),
        "{message}"
    );
    assert!(s.idp.calls("legacy_raw") >= 1);
    let m = metrics(s.proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_token_refreshes_total{outcome=\"operator_error\"} 1"),
        "{m}"
    );

    // A notice in the page, at sign-in: its words, and the way out.
    s.idp.set_mode(Mode::Raw(
        400,
        "<html><body><p>Azure DevOps OAuth has been retired. Use Microsoft Entra ID.</p></body></html>",
    ));
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 502);
    let html = resp.text().await.unwrap();
    for want in [
        "has been retired",
        "Azure DevOps OAuth has been retired.",
        "auth.provider",
    ] {
        assert!(html.contains(want), "{want}: {html}");
    }

    // The session was kept: if the endpoint answers again, it goes on
    // without a new sign-in (its refresh token was never redeemed).
    s.idp.set_mode(Mode::Normal);
    s.advance(Duration::from_secs(60));
    assert_eq!(api(&s, &b).await.status(), 200);
    assert_eq!(s.idp.calls("legacy_code"), 1);
}

#[tokio::test]
async fn no_token_secret_or_cookie_value_reaches_the_logs() {
    use crate::support::process::ProxyProcess;
    let idp = FakeIdp::start(Duration::from_secs(3)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("sessions.db");
    let toml = format!(
        r#"
[upstream]
url = "{ado}"
[auth]
mode = "user"
provider = "entra"
tenant = "{TENANT}"
client_id = "{CLIENT_ID}"
authority_host = "{idp}"
refresh_before = "1s"
[session]
path = "{db}"
[log]
level = "trace,hyper=debug,hyper_util=debug,reqwest=debug,h2=info"
"#,
        ado = ado.url(),
        idp = idp.url(),
        db = db.display(),
    );
    let proxy = ProxyProcess::spawn(
        &toml,
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    );
    let base = format!("http://{}", proxy.proxy);

    // Sign in, keeping every secret value that passes by.
    let b = Browser::new();
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.to_string()];
    let resp = b
        .navigate(&format!(
            "{base}/.auth/login?rd=%2Fcontoso%2F_apis%2Fprojects"
        ))
        .await;
    let cookie_value = |resp: &reqwest::Response| -> Vec<String> {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| {
                v.to_str()
                    .ok()?
                    .split(';')
                    .next()?
                    .split_once('=')
                    .map(|(_, v)| v.to_string())
            })
            .filter(|v| !v.is_empty())
            .collect()
    };
    secrets.extend(cookie_value(&resp));
    let authorize = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    for key in ["state", "nonce", "code_challenge"] {
        secrets.extend(support::query_param(&authorize, key));
    }
    let resp = b.navigate(authorize.as_str()).await;
    let callback = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    secrets.extend(support::query_param(&callback, "code"));
    let resp = b.navigate(callback.as_str()).await;
    assert_eq!(resp.status(), 302);
    secrets.extend(cookie_value(&resp));

    // Traffic across refreshes, then a refresh that ends the session.
    for _ in 0..6 {
        let resp = b
            .http
            .get(format!("{base}/contoso/_apis/projects"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    idp.set_mode(Mode::Revoked);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = b
        .http
        .get(format!("{base}/contoso/_apis/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    for r in ado.requests() {
        if let Some(v) = r.headers.get("authorization") {
            secrets.push(
                v.to_str()
                    .unwrap()
                    .trim_start_matches("Bearer ")
                    .to_string(),
            );
        }
    }
    let (issued, _) = idp.refresh_history();
    secrets.extend(issued);
    assert!(secrets.len() >= 12, "collected {secrets:?}");

    // The child's stderr is read by a thread: the last lines may still be
    // on their way when the answer arrives.
    let mut logs = proxy.logs();
    for _ in 0..100 {
        if logs.contains("refresh refused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        logs = proxy.logs();
    }
    assert!(logs.contains("signed in"), "the logs are captured: {logs}");
    assert!(logs.contains("refresh refused"), "{logs}");
    // The embedded session database holds sealed records only.
    let stored = std::fs::read(&db).unwrap();
    assert!(stored.len() > 1000, "the database was written");
    for secret in &secrets {
        assert!(secret.len() >= 8, "{secret:?}");
        assert!(
            !logs.contains(secret.as_str()),
            "{secret} leaked into the logs"
        );
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in the session database in the clear"
        );
    }
}

#[tokio::test]
async fn response_mode_form_post_is_accepted_with_and_without_the_lax_cookie() {
    let s = setup(Duration::from_secs(60), |c, _| {
        c.auth.response_mode = ado_auth_proxy::config::ResponseMode::FormPost;
    })
    .await;
    let form_of = |html: &str| -> Vec<(String, String)> {
        ["code", "state"]
            .iter()
            .map(|name| {
                let marker = format!("name=\"{name}\" value=\"");
                let start = html.find(&marker).unwrap() + marker.len();
                let end = html[start..].find('"').unwrap() + start;
                (name.to_string(), html[start..end].to_string())
            })
            .collect()
    };
    let start = |b: &Browser| {
        let b = b.http.clone();
        let url = s.url.clone();
        async move {
            let resp = b.get(format!("{url}/.auth/login")).send().await.unwrap();
            let authorize = resp.headers()["location"].to_str().unwrap().to_string();
            assert!(authorize.contains("response_mode=form_post"), "{authorize}");
            b.get(authorize).send().await.unwrap().text().await.unwrap()
        }
    };
    let callback = format!("{}/.auth/callback", s.url);

    // A same-site post carries the pre-auth cookie: signed in at once.
    let b = Browser::new();
    let html = start(&b).await;
    let resp = b
        .http
        .post(&callback)
        .form(&form_of(&html))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    assert_eq!(resp.headers()["location"], "/");

    // A cross-site post arrives without SameSite=Lax cookies: the proxy
    // bounces it to a top-level GET, which carries them.
    let b = Browser::new();
    let html = start(&b).await;
    let resp = support::client()
        .post(&callback)
        .form(&form_of(&html))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let again = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(again.starts_with("/.auth/callback?code="), "{again}");
    let resp = b.navigate(&format!("{}{again}", s.url)).await;
    assert_eq!(resp.status(), 302);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("ado_proxy_session=")
    );

    // A refused form_post answer is a page for the browser, not JSON.
    let resp = b
        .http
        .post(&callback)
        .header("accept", "text/html,application/xhtml+xml")
        .form(&[("code", "c"), ("state", "forged")])
        .send()
        .await
        .unwrap();
    // No pre-auth cookie belongs to that state: bounced to a GET, which
    // is refused with a page.
    assert_eq!(resp.status(), 303);
    let again = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = b.navigate(&format!("{}{again}", s.url)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
}

#[tokio::test]
async fn id_tokens_that_fail_validation_are_refused() {
    use crate::support::fake_idp::IdTokenFlaw;
    let s = setup(Duration::from_secs(60), |_, _| {}).await;
    for flaw in [
        IdTokenFlaw::WrongAudience,
        IdTokenFlaw::WrongIssuer,
        IdTokenFlaw::Expired,
        IdTokenFlaw::WrongNonce,
        IdTokenFlaw::ForeignKey,
    ] {
        s.idp.set_id_token_flaw(flaw);
        let (_, resp) = s.sign_in().await;
        assert_eq!(resp.status(), 400, "{flaw:?}");
        assert!(resp.headers().get("set-cookie").is_none(), "{flaw:?}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("could not be verified"), "{flaw:?}: {html}");
    }
    s.idp.set_id_token_flaw(IdTokenFlaw::None);
    assert_eq!(s.sign_in().await.1.status(), 302);
    let m = metrics(s.proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_login_failures_total{reason=\"id_token_invalid\"} 5"),
        "{m}"
    );
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_but_not_on_every_unknown_kid() {
    let s = setup(Duration::from_secs(60), |_, _| {}).await;
    assert_eq!(s.sign_in().await.1.status(), 302);
    assert_eq!(s.idp.jwks_fetches(), 1, "fetched on first use");
    assert_eq!(s.sign_in().await.1.status(), 302);
    assert_eq!(s.idp.jwks_fetches(), 1, "then cached");

    s.idp.set_kid("rotated-key");
    // Right after a fetch, an unknown kid does not trigger another one
    // (forged tokens cannot make the proxy hammer the provider)...
    assert_eq!(s.sign_in().await.1.status(), 400);
    assert_eq!(s.idp.jwks_fetches(), 1);
    // ...a little later it does, and the rotated key is accepted.
    tokio::time::sleep(ado_auth_proxy::oauth::id_token::REFETCH_MIN).await;
    assert_eq!(s.sign_in().await.1.status(), 302);
    assert_eq!(s.idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn sign_in_refusals_name_the_cause_and_the_fix() {
    use crate::support::fake_idp::Mode::{AuthorizeError, RedeemError};
    let s = setup(Duration::from_secs(60), |_, _| {}).await;
    let callback = format!("{}/.auth/callback", s.url);
    let cases = [
        (
            AuthorizeError("access_denied", 65004),
            403,
            "You declined the permissions",
            "accept the permissions",
        ),
        (
            AuthorizeError("consent_required", 65001),
            400,
            "An administrator must approve this app",
            "/v2.0/adminconsent?client_id=4b7c5e8a",
        ),
        (
            AuthorizeError("access_denied", 90094),
            403,
            "An administrator must approve this app",
            "adminconsent",
        ),
        (
            AuthorizeError("interaction_required", 50076),
            400,
            "Multi-factor authentication is required",
            "multi-factor prompt",
        ),
        (
            AuthorizeError("access_denied", 53003),
            403,
            "Sign-in blocked by Conditional Access",
            "compliant device",
        ),
        (
            AuthorizeError("unauthorized_client", 700016),
            400,
            "not registered in this directory",
            "auth.client_id",
        ),
        (
            AuthorizeError("invalid_request", 50011),
            400,
            "callback URL is not registered",
            callback.as_str(),
        ),
        (
            AuthorizeError("access_denied", 50020),
            403,
            "Your account is not in this directory",
            "work account",
        ),
        (
            AuthorizeError("access_denied", 50105),
            403,
            "You are not assigned to this app",
            "assign you",
        ),
        (
            RedeemError(401, "invalid_client", 7000222),
            502,
            "client secret or certificate is wrong or expired",
            "auth.client_secret_file",
        ),
        (
            RedeemError(400, "invalid_grant", 54005),
            400,
            "This sign-in was already used",
            "Sign in again",
        ),
        (
            RedeemError(400, "invalid_request", 50011),
            502,
            "callback URL is not registered",
            callback.as_str(),
        ),
    ];
    for (mode, status, title, fix) in cases {
        s.idp.set_mode(mode);
        let (_, resp) = s.sign_in().await;
        assert_eq!(resp.status(), status, "{mode:?}");
        assert!(resp.headers().get("set-cookie").is_none(), "{mode:?}");
        let html = resp.text().await.unwrap();
        let text = html.replace("&#39;", "'").replace("&amp;", "&");
        assert!(text.contains(title), "{mode:?}: {html}");
        assert!(text.contains(fix), "{mode:?} lacks {fix:?}: {html}");
        assert!(
            text.contains("aaaa0000-bb11-2222-33cc-444444dddddd"),
            "{mode:?}: correlation id"
        );
    }
}

#[tokio::test]
async fn a_token_from_another_directory_is_explained_with_both_tenants() {
    let org_tenant = "bbbbbbbb-1111-2222-3333-cccccccccccc";
    let idp = FakeIdp::start(Duration::from_secs(60)).await;
    // An organization of another directory refuses every token.
    let ado = FakeUpstream::recording(move |_| {
        respond(
            401,
            &[
                (
                    "www-authenticate",
                    &format!(
                        "Bearer authorization_uri=https://login.microsoftonline.com/{org_tenant}"
                    ),
                ),
                ("x-vss-resourcetenant", org_tenant),
            ],
            "",
        )
    })
    .await;
    let c = fake_idp::entra_config(&ado.url(), &idp);
    let proxy = support::start(c).await;
    let s = Setup {
        url: format!("http://{}", proxy.proxy_addr),
        idp,
        ado,
        proxy,
    };
    let b = s.signed_in().await;
    let resp = api(&s, &b).await;
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["adoAuthProxy"]["id"], "wrong-directory");
    let cause = body["adoAuthProxy"]["cause"].as_str().unwrap();
    assert!(
        cause.contains(org_tenant) && cause.contains(TENANT),
        "{cause}"
    );
    // The proxy refreshed once and retried before explaining.
    assert_eq!(s.idp.calls("refresh_token"), 1);
    assert_eq!(s.ado.requests().len(), 2);
}

#[tokio::test]
async fn a_refused_token_is_not_resent_unchanged_when_refresh_fails() {
    let idp = FakeIdp::start(Duration::from_secs(60)).await;
    let ado = FakeUpstream::recording(|_| respond(401, &[], "")).await;
    let proxy = support::start(fake_idp::entra_config(&ado.url(), &idp)).await;
    let s = Setup {
        url: format!("http://{}", proxy.proxy_addr),
        idp,
        ado,
        proxy,
    };
    let b = s.signed_in().await;
    s.idp.set_mode(Mode::Down);
    let resp = api(&s, &b).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        s.idp.calls("refresh_token"),
        1,
        "one forced refresh was tried"
    );
    assert_eq!(
        s.ado.requests().len(),
        1,
        "the same token was not sent twice"
    );
}

#[tokio::test]
async fn a_claims_challenge_gets_a_token_with_the_claims_and_the_request_again() {
    let s = setup(Duration::from_secs(3600), |_, _| {}).await;
    let b = s.signed_in().await;
    // The proxy announces that it handles claims challenges (cp1): on the
    // authorize request and on its token calls.
    let cp1 = |c: &str| {
        let v: serde_json::Value = serde_json::from_str(c).unwrap();
        v["access_token"]["xms_cc"]["values"] == serde_json::json!(["cp1"])
    };
    assert!(cp1(&s.idp.authorize_queries()[0]["claims"]));
    assert!(
        s.idp.token_claims().iter().all(|c| cp1(c)),
        "{:?}",
        s.idp.token_claims()
    );
    assert_eq!(api(&s, &b).await.status(), 200);

    // Azure DevOps revokes the token mid-lifetime: the proxy redeems the
    // refresh token with the claims and sends the GET again.
    s.idp.cae_revoke(CAE_CLAIMS, false);
    let resp = api(&s, &b).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let last = s.idp.token_claims().pop().unwrap();
    let asked: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(
        asked["access_token"]["nbf"]["value"], "1796000000",
        "{last}"
    );
    assert!(cp1(&last), "the capability stays announced: {last}");
    assert_eq!(s.idp.calls("refresh_token"), 1);

    // A request with a body cannot be sent again: it gets the
    // explanation, and the next request has the new token.
    s.advance(Duration::from_secs(120));
    s.idp.cae_revoke(CAE_CLAIMS, false);
    let resp = b
        .http
        .post(format!("{}{PROJECTS}", s.url))
        .header("accept", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["adoAuthProxy"]["id"], "claims-challenge", "{body}");
    assert_eq!(
        api(&s, &b).await.status(),
        200,
        "the claims round already ran"
    );
    assert_eq!(s.idp.calls("refresh_token"), 2);

    // The fresh token challenged again at once: no loop, a sign-in.
    s.idp.cae_revoke(CAE_CLAIMS, false);
    let resp = api(&s, &b).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        s.idp.calls("refresh_token"),
        2,
        "no second round within the interval"
    );
    let m = metrics(s.proxy.admin_addr).await;
    for line in [
        "ado_proxy_claims_challenges_total{outcome=\"refreshed\"} 2",
        "ado_proxy_claims_challenges_total{outcome=\"sign_in\"} 1",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
}

#[tokio::test]
async fn a_claims_challenge_that_needs_the_user_sends_the_browser_to_sign_in_with_the_claims() {
    let s = setup(Duration::from_secs(3600), |_, _| {}).await;
    let b = s.signed_in().await;
    s.idp.cae_revoke(CAE_CLAIMS, true);
    let resp = page(&s, &b).await;
    assert_eq!(resp.status(), 302);
    let login = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        login.contains("/.auth/login?") && login.contains("claims="),
        "{login}"
    );
    let resp = b.navigate(&login).await;
    let authorize = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let claims: serde_json::Value =
        serde_json::from_str(&support::query_param(&authorize, "claims").unwrap()).unwrap();
    assert_eq!(
        claims["access_token"]["nbf"]["value"], "1796000000",
        "{claims}"
    );
    assert_eq!(
        claims["access_token"]["xms_cc"]["values"],
        serde_json::json!(["cp1"])
    );
    let m = metrics(s.proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_claims_challenges_total{outcome=\"sign_in\"} 1"),
        "{m}"
    );
}

/// Headless Chromium: a signed-in browser whose token Azure DevOps
/// revokes (CAE, and only the user can satisfy the claims) goes through
/// sign-in with the claims and lands back on its page.
#[tokio::test]
async fn chromium_signs_in_again_with_the_claims_of_a_challenge() {
    let s = setup(Duration::from_secs(3600), |_, _| {}).await;
    let page = format!("{}{PROJECTS}", s.url);
    let mut peer = crate::support::peer::Peer::start("browser_visits.mjs", &[("PAGE_URL", &page)]);
    let first = peer.next().await;
    assert_eq!(first["status"], 200, "{first}");
    assert_eq!(first["url"], page);
    assert_eq!(s.idp.authorize_queries().len(), 1);

    s.idp.cae_revoke(CAE_CLAIMS, true);
    peer.go_on().await;
    let second = peer.next().await;
    assert_eq!(second["status"], 200, "{second}");
    assert_eq!(second["url"], page, "back on the page it asked for");
    let queries = s.idp.authorize_queries();
    assert_eq!(queries.len(), 2, "signed in again");
    let claims: serde_json::Value = serde_json::from_str(&queries[1]["claims"]).unwrap();
    assert_eq!(
        claims["access_token"]["nbf"]["value"], "1796000000",
        "{claims}"
    );
    // The page was served with the new session's token.
    let used = s.ado.requests().last().unwrap().headers["authorization"].clone();
    assert!(s.idp.checker()(used.to_str().unwrap()).is_ok());
}

/// Two secret files, or one directory holding both (a mounted Kubernetes
/// Secret): the same rotation.
#[tokio::test]
async fn a_refused_legacy_secret_falls_back_to_the_other_slot_and_its_age_is_reported() {
    for as_directory in [false, true] {
        legacy_secret_rotation(as_directory).await;
    }
}

async fn legacy_secret_rotation(as_directory: bool) {
    let secrets = tempfile::tempdir().unwrap();
    // By name, "a-current" is the first slot in a directory.
    let (current, next) = (
        secrets.path().join("a-current"),
        secrets.path().join("b-next"),
    );
    // The secret in use has expired; the new one is in the other slot.
    std::fs::write(&current, "an-expired-client-secret").unwrap();
    std::fs::write(&next, LEGACY_SECRET).unwrap();
    let (file, next_file) = if as_directory {
        (secrets.path().to_path_buf(), None)
    } else {
        (current.clone(), Some(next.clone()))
    };
    let s = setup(Duration::from_secs(3), move |c, idp| {
        c.auth.provider = Some(Provider::AzureDevops);
        c.auth.tenant = None;
        c.auth.client_id = Some("9f6c7bd9-0a8e-4d1e-9a43-6e5f3f2c1b0a".into());
        c.auth.client_secret = None;
        c.auth.client_secret_file = Some(file);
        c.auth.client_secret_next_file = next_file;
        c.auth.authority_host = Some(Url::parse(idp).unwrap());
    })
    .await;
    let b = s.signed_in().await;
    assert_eq!(api(&s, &b).await.status(), 200);
    assert_eq!(
        s.idp.calls("legacy_invalid_client"),
        1,
        "the expired secret, once"
    );
    assert_eq!(s.idp.calls("legacy_code"), 1, "then the other slot");
    // Refreshes use the slot that works, at once.
    s.advance(Duration::from_millis(2500));
    assert_eq!(api(&s, &b).await.status(), 200);
    assert_eq!(s.idp.calls("legacy_refresh"), 1);
    assert_eq!(
        s.idp.calls("legacy_invalid_client"),
        1,
        "no second try of the old one"
    );
    let m = metrics(s.proxy.admin_addr).await;
    for slot in ["current", "next"] {
        let age = support::metric_value(
            &m,
            &format!("ado_proxy_client_secret_age_seconds{{slot=\"{slot}\"}}"),
        );
        assert!((0.0..600.0).contains(&age), "{slot}: {age}\n{m}");
    }
}

/// With the legacy provider there are no proxy tokens (its refresh
/// tokens are single-use), git keeps the readable 403, and the PAT page
/// says the lifecycle API takes only Entra tokens. With Entra and
/// `personal_tokens = false`, git gets the same 403.
#[tokio::test]
async fn without_proxy_tokens_git_reads_a_403_and_the_pat_page_says_why() {
    let s = legacy(Duration::from_secs(3600), LEGACY_SECRET).await;
    let b = s.signed_in().await;
    let resp = b.navigate(&format!("{}/.auth/pats", s.url)).await;
    assert_eq!(resp.status(), 404);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("accepts only Microsoft Entra tokens"),
        "{text}"
    );
    let tokens = b.navigate(&format!("{}/.auth/tokens", s.url)).await;
    assert_eq!(
        tokens.status(),
        404,
        "no proxy tokens with the legacy provider"
    );

    let off = setup(Duration::from_secs(3600), |c, _| {
        c.auth.personal_tokens = Some(false)
    })
    .await;
    for url in [&s.url, &off.url] {
        let resp = crate::support::client()
            .get(format!(
                "{url}/contoso/proj/_git/r/info/refs?service=git-upload-pack"
            ))
            .header("user-agent", "git/2.47.3")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{url}");
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("Sign in at") && !body.contains("/.auth/tokens"),
            "{body}"
        );
    }
}
