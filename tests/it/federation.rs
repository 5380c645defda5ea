//! Service identities without a secret, through the real binary: any
//! OpenID Connect token file as a federated credential (source
//! `federated`, e.g. a GitHub Actions or another cloud's token), and a
//! managed identity as the federated credential of an app in another
//! tenant (source `managed-identity-federation`), which is how a managed
//! identity reaches an organization of another directory.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::support::fake_idp::{self, CLIENT_ID, FakeIdp, OTHER_TENANT, TENANT};
use crate::support::process::ProxyProcess;
use crate::support::upstream::{FakeUpstream, Recorded, respond};
use crate::support::{PROJECTS, client};

/// A JWT-shaped token as GitHub Actions issues them, expiring `exp_in`
/// seconds from now (negative: already expired).
fn github_token(exp_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "iss": "https://token.actions.githubusercontent.com",
        "sub": "repo:contoso/tools:ref:refs/heads/main",
        "aud": "api://AzureADTokenExchange",
        "iat": now - 60,
        "exp": now + exp_in,
    });
    format!(
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImdoIn0.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

async fn get(p: &ProxyProcess, path: &str) -> reqwest::Response {
    client()
        .get(format!("http://{}{path}", p.proxy))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

fn toml(ado: &FakeUpstream, auth: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"service\"\n{auth}\n",
        ado.url()
    )
}

#[tokio::test]
async fn any_oidc_token_file_is_a_federated_credential() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("github-oidc-token");
    let token = github_token(600);
    std::fs::write(&file, format!("{token}\n")).unwrap();
    idp.set_federated_token(&token);
    let auth = format!(
        "source = \"federated\"\ntenant = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\n\
         federated_token_file = \"{}\"\nauthority_host = \"{}\"",
        file.display(),
        idp.url()
    );
    let p = ProxyProcess::spawn(&toml(&ado, &auth), &[]);
    assert_eq!(get(&p, PROJECTS).await.status(), 200, "{}", p.logs());
    assert_eq!(idp.federated_seen(), std::slice::from_ref(&token));
    let me: serde_json::Value = get(&p, "/.auth/me").await.json().await.unwrap();
    assert_eq!(me["source"], "federated");
    assert_eq!(me["appId"], CLIENT_ID);
    drop(p);

    // An expired token is never sent: the log and the answer say which
    // file must be renewed.
    std::fs::write(&file, github_token(-30)).unwrap();
    let p = ProxyProcess::spawn(&toml(&ado, &auth), &[]);
    let resp = get(&p, PROJECTS).await;
    assert_eq!(resp.status(), 503);
    let logs = p.logs();
    assert!(
        logs.contains("auth.federated_token_file: the token in") && logs.contains("expired at"),
        "{logs}"
    );
    assert_eq!(idp.federated_seen().len(), 1, "not sent to Entra");
    assert!(!logs.contains(&token[40..]), "no token in the logs");
}

/// A fake IMDS: a user-assigned identity's token for the token-exchange
/// audience only.
async fn imds() -> FakeUpstream {
    FakeUpstream::recording(|r: &Recorded| {
        let q: std::collections::HashMap<String, String> = r
            .uri
            .split_once('?')
            .map(|(_, q)| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let ok = r.headers.get("metadata").is_some_and(|v| v == "true")
            && q.get("resource").map(String::as_str) == Some("api://AzureADTokenExchange")
            && q.get("client_id").map(String::as_str) == Some("mi-client-id");
        if !ok {
            return respond(
                400,
                &[("content-type", "application/json")],
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            );
        }
        respond(
            200,
            &[("content-type", "application/json")],
            r#"{"access_token":"mi-exchange-token","expires_in":"86399","resource":"api://AzureADTokenExchange","token_type":"Bearer"}"#,
        )
    })
    .await
}

#[tokio::test]
async fn a_managed_identity_reaches_an_organization_of_another_tenant_through_an_app() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    // contoso belongs to the other directory: only its tokens work.
    let ado = fake_idp::fake_ado_tenants(&idp, &[("contoso", OTHER_TENANT)]).await;
    idp.set_federated_token("mi-exchange-token");
    let endpoint = imds().await;
    let auth = format!(
        "source = \"managed-identity-federation\"\ntenant = \"{OTHER_TENANT}\"\n\
         client_id = \"{CLIENT_ID}\"\nmanaged_identity_client_id = \"mi-client-id\"\n\
         managed_identity_endpoint = \"{}/metadata/identity/oauth2/token\"\n\
         authority_host = \"{}\"",
        endpoint.url(),
        idp.url()
    );
    let p = ProxyProcess::spawn(&toml(&ado, &auth), &[]);
    let resp = get(&p, PROJECTS).await;
    assert_eq!(resp.status(), 200, "{}", p.logs());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["tenant"], OTHER_TENANT, "a token of the app's tenant");
    assert_eq!(idp.token_tenants(), [OTHER_TENANT]);
    assert_eq!(idp.federated_seen(), ["mi-exchange-token"]);
    let me: serde_json::Value = get(&p, "/.auth/me").await.json().await.unwrap();
    assert_eq!(me["source"], "managed-identity-federation");
    assert_eq!(me["tenant"], OTHER_TENANT);

    // The same identity without the app (plain managed-identity source,
    // its home tenant) is refused by that organization: the answer names
    // the organization's tenant and the way out.
    let home = FakeUpstream::recording(|_r: &Recorded| {
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"tid":"{TENANT}","idtyp":"app"}}"#));
        respond(
            200,
            &[("content-type", "application/json")],
            format!(
                r#"{{"access_token":"eyJhbGciOiJub25lIn0.{payload}.","expires_in":"3600","token_type":"Bearer"}}"#
            ),
        )
    })
    .await;
    let plain = format!(
        "source = \"managed-identity\"\nmanaged_identity_endpoint = \"{}/msi\"",
        home.url()
    );
    let p = ProxyProcess::spawn(&toml(&ado, &plain), &[]);
    let v = crate::support::problem(&format!("http://{}{PROJECTS}", p.proxy)).await;
    assert_eq!(
        v["type"], "urn:ado-auth-proxy:problem:service-wrong-directory",
        "{v}"
    );
    let admin = v["adminRemedy"].as_str().unwrap();
    assert!(
        admin.contains(OTHER_TENANT) && admin.contains("managed-identity-federation"),
        "{admin}"
    );
}

/// Mode `user` with no secret in the cluster: the workload identity's
/// token file is the sign-in app's assertion for the code redemption and
/// for every refresh, re-read each time (the kubelet rotates it).
#[tokio::test]
async fn a_sign_in_app_without_a_secret_uses_the_workload_identity_token_at_every_call() {
    let idp = FakeIdp::start(Duration::from_secs(3)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    let first = github_token(600);
    std::fs::write(&file, &first).unwrap();
    idp.set_federated_token(&first);
    let toml = format!(
        "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"user\"\nprovider = \"entra\"\n\
         tenant = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\nauthority_host = \"{}\"\n\
         client_credential = \"workload-identity\"\nfederated_token_file = \"{}\"\n\
         [session]\nstore = \"memory\"\n",
        ado.url(),
        idp.url(),
        file.display()
    );
    let p = ProxyProcess::spawn(&toml, &[]);
    let b = crate::support::oidc::Browser::new();
    let base = format!("http://{}", p.proxy);
    assert_eq!(
        fake_idp::sign_in(&b, &base, Some(PROJECTS)).await.status(),
        302,
        "{}",
        p.logs()
    );
    assert_eq!(
        idp.federated_seen(),
        std::slice::from_ref(&first),
        "the code redemption"
    );

    // The file is rotated; the next refresh presents the new token.
    let second = github_token(900);
    std::fs::write(&file, &second).unwrap();
    idp.set_federated_token(&second);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resp = b
        .http
        .get(format!("{base}{PROJECTS}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", p.logs());
    assert_eq!(idp.federated_seen().last(), Some(&second), "the refresh");
    assert!(
        !p.logs().contains(&second[40..]),
        "no assertion in the logs"
    );
}

/// Mode `user` whose sign-in app trusts a managed identity: the
/// identity's token for the exchange audience, fetched from IMDS for
/// each call, is the assertion of the code redemption and of every
/// refresh.
#[tokio::test]
async fn a_sign_in_app_proven_by_a_managed_identity_asks_imds_at_every_token_call() {
    let idp = FakeIdp::start(Duration::from_secs(3)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    idp.set_federated_token("mi-exchange-token");
    let endpoint = imds().await;
    let toml = format!(
        "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"user\"\nprovider = \"entra\"\n\
         tenant = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\nauthority_host = \"{}\"\n\
         client_credential = \"managed-identity-federation\"\n\
         managed_identity_client_id = \"mi-client-id\"\n\
         managed_identity_endpoint = \"{}/metadata/identity/oauth2/token\"\n\
         [session]\nstore = \"memory\"\n",
        ado.url(),
        idp.url(),
        endpoint.url(),
    );
    let p = ProxyProcess::spawn(&toml, &[]);
    let b = crate::support::oidc::Browser::new();
    let base = format!("http://{}", p.proxy);
    assert_eq!(
        fake_idp::sign_in(&b, &base, Some(PROJECTS)).await.status(),
        302,
        "{}",
        p.logs()
    );
    assert_eq!(
        idp.federated_seen(),
        ["mi-exchange-token"],
        "the code redemption"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resp = b
        .http
        .get(format!("{base}{PROJECTS}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", p.logs());
    assert_eq!(idp.federated_seen().len(), 2, "the refresh");
    assert_eq!(endpoint.requests().len(), 2, "IMDS asked for each call");
    assert!(
        !p.logs().contains("mi-exchange-token"),
        "no assertion in the logs"
    );

    // The identity's endpoint refuses: the sign-in says so, naming it.
    let refusing = FakeUpstream::recording(|_r: &Recorded| {
        respond(
            400,
            &[("content-type", "application/json")],
            r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
        )
    })
    .await;
    let toml = toml.replace(&endpoint.url(), &refusing.url());
    let p = ProxyProcess::spawn(&toml, &[]);
    let resp = fake_idp::sign_in(&b, &format!("http://{}", p.proxy), None).await;
    assert_eq!(resp.status(), 500);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("managed identity assertion") && page.contains("Identity not found"),
        "{page}"
    );
}
