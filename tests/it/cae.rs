//! Continuous Access Evaluation through the real binary: Azure DevOps
//! revokes a token mid-lifetime with a claims challenge; the proxy gets a
//! token with the demanded claims (user: the refresh token; service:
//! client credentials) and sends a bodyless request again, once. The
//! in-process tests (providers.rs, service.rs) cover the sign-in round
//! and the no-loop rules with a moved clock; Chromium covers the browser.

use std::time::Duration;

use crate::support::fake_idp::{self, CAE_CLAIMS, CLIENT_ID, CLIENT_SECRET, FakeIdp, TENANT};
use crate::support::oidc::Browser;
use crate::support::process::ProxyProcess;
use crate::support::{PROJECTS, metrics};

/// The `nbf` demand of [`CAE_CLAIMS`], as the last token call asked it.
fn asked_nbf(idp: &FakeIdp) -> serde_json::Value {
    let last = idp.token_claims().pop().unwrap();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(
        v["access_token"]["xms_cc"]["values"],
        serde_json::json!(["cp1"]),
        "{last}"
    );
    v["access_token"]["nbf"]["value"].clone()
}

fn toml(ado: &str, idp: &FakeIdp, auth: &str) -> String {
    format!(
        "[upstream]\nurl = \"{ado}\"\n[auth]\n{auth}\ntenant = \"{TENANT}\"\n\
         client_id = \"{CLIENT_ID}\"\nauthority_host = \"{}\"\nforced_refresh_interval = \"1s\"\n\
         [session]\nstore = \"memory\"\n",
        idp.url()
    )
}

#[tokio::test]
async fn a_signed_in_users_revoked_token_is_replaced_with_the_claims() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let p = ProxyProcess::spawn(
        &toml(&ado.url(), &idp, "mode = \"user\"\nprovider = \"entra\""),
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    );
    let base = format!("http://{}", p.proxy);
    let b = Browser::new();
    assert_eq!(
        fake_idp::sign_in(&b, &base, Some(PROJECTS)).await.status(),
        302
    );
    let get = || async {
        b.http
            .get(format!("{base}{PROJECTS}"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
    };
    assert_eq!(get().await.status(), 200);

    idp.cae_revoke(CAE_CLAIMS, false);
    assert_eq!(get().await.status(), 200, "sent again: {}", p.logs());
    assert_eq!(asked_nbf(&idp), "1796000000");
    assert_eq!(idp.calls("refresh_token"), 1);

    // A body cannot be sent again: the caller reads why, and the next
    // request has the new token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    idp.cae_revoke(CAE_CLAIMS, false);
    let resp = b
        .http
        .post(format!("{base}{PROJECTS}"))
        .header("accept", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["adoAuthProxy"]["id"], "claims-challenge", "{v}");
    assert_eq!(get().await.status(), 200);
    assert_eq!(idp.calls("refresh_token"), 2);
    let m = metrics(p.admin).await;
    assert!(
        m.contains("ado_proxy_claims_challenges_total{outcome=\"refreshed\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn a_service_identitys_revoked_token_is_replaced_with_the_claims() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let p = ProxyProcess::spawn(
        &toml(
            &ado.url(),
            &idp,
            "mode = \"service\"\nsource = \"client-credentials\"",
        ),
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    );
    let get = || async {
        crate::support::client()
            .get(format!("http://{}{PROJECTS}", p.proxy))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(get().await, 200);
    assert_eq!(idp.calls("client_credentials"), 1);
    idp.cae_revoke(CAE_CLAIMS, false);
    assert_eq!(get().await, 200, "sent again: {}", p.logs());
    assert_eq!(idp.calls("client_credentials"), 2);
    assert_eq!(asked_nbf(&idp), "1796000000");
    let m = metrics(p.admin).await;
    assert!(
        m.contains("ado_proxy_claims_challenges_total{outcome=\"service_refreshed\"} 1"),
        "{m}"
    );
}
