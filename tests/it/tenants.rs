//! An organization accepts only tokens its own directory issued. With a
//! multi-tenant Entra sign-in (`tenant = "organizations"`), the real
//! binary finds each organization's directory as Git Credential Manager
//! does (an unauthenticated HEAD), sends a guest a token of that
//! directory (redeemed once per session and directory), the home token
//! to a Microsoft-account organization, and a readable refusal where the
//! directory is not allowed. A refusal naming another directory teaches
//! it and the request is sent again with the right token.

use std::time::Duration;

use crate::support::fake_idp::{
    self, CLIENT_ID, CLIENT_SECRET, FakeIdp, MSA_TENANT, OTHER_TENANT, TENANT,
};
use crate::support::oidc::Browser;
use crate::support::process::ProxyProcess;
use crate::support::{PROJECTS, metrics};

/// A directory no configuration here allows.
const FOREIGN_TENANT: &str = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b";

async fn projects(b: &Browser, base: &str, org: &str) -> (u16, serde_json::Value) {
    let resp = b
        .http
        .get(format!("{base}/{org}/_apis/projects"))
        .header("accept", "application/problem+json")
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn each_organization_gets_a_token_of_its_own_directory() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado_tenants(
        &idp,
        &[
            ("contoso", TENANT),
            ("fabrikam", OTHER_TENANT),
            ("msaorg", MSA_TENANT),
            ("initech", FOREIGN_TENANT),
            ("quietco", OTHER_TENANT),
        ],
    )
    .await;
    let toml = format!(
        "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"user\"\nprovider = \"entra\"\n\
         tenant = \"organizations\"\nallowed_tenants = [\"{TENANT}\", \"{OTHER_TENANT}\"]\n\
         client_id = \"{CLIENT_ID}\"\nauthority_host = \"{}\"\n[session]\nstore = \"memory\"\n",
        ado.url(),
        idp.url()
    );
    let p = ProxyProcess::spawn(
        &toml,
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    );
    let base = format!("http://{}", p.proxy);
    let b = Browser::new();
    let resp = fake_idp::sign_in(&b, &base, Some(PROJECTS)).await;
    assert_eq!(resp.status(), 302, "signed in: {}", p.logs());
    assert_eq!(idp.token_tenants(), ["organizations"]);

    // The home directory's organization: the home token.
    let (status, body) = projects(&b, &base, "contoso").await;
    assert_eq!((status, body["tenant"].as_str()), (200, Some(TENANT)));
    // A guest in another directory: a token of that directory, once.
    for _ in 0..3 {
        let (status, body) = projects(&b, &base, "fabrikam").await;
        assert_eq!(
            (status, body["tenant"].as_str()),
            (200, Some(OTHER_TENANT)),
            "{}",
            p.logs()
        );
    }
    assert_eq!(idp.token_tenants(), ["organizations", OTHER_TENANT]);
    // A Microsoft-account organization: the home token.
    let (status, _) = projects(&b, &base, "msaorg").await;
    assert_eq!(status, 200);
    // A directory not in allowed_tenants is never asked; the refusal
    // names both directories and the setting.
    let (status, v) = projects(&b, &base, "initech").await;
    assert_eq!(status, 401);
    assert_eq!(
        v["type"], "urn:ado-auth-proxy:problem:wrong-directory",
        "{v}"
    );
    let admin = v["adminRemedy"].as_str().unwrap();
    assert!(
        admin.contains(FOREIGN_TENANT) && admin.contains("auth.allowed_tenants"),
        "{admin}"
    );
    assert!(v["detail"].as_str().unwrap().contains(TENANT), "{v}");
    assert_eq!(
        idp.token_tenants().len(),
        2,
        "no token asked of {FOREIGN_TENANT}"
    );

    // One unauthenticated look per organization, without credentials.
    let heads: Vec<_> = ado
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::HEAD)
        .collect();
    let mut looked: Vec<&str> = heads.iter().map(|r| r.uri.as_str()).collect();
    looked.sort();
    assert_eq!(looked, ["/contoso", "/fabrikam", "/initech", "/msaorg"]);
    assert!(
        heads
            .iter()
            .all(|r| r.headers.get("authorization").is_none())
    );

    // An organization whose look names no directory: the home token is
    // refused, the refusal names the directory, and the request is sent
    // again with a token of it.
    let (status, body) = projects(&b, &base, "quietco").await;
    assert_eq!(
        (status, body["tenant"].as_str()),
        (200, Some(OTHER_TENANT)),
        "{}",
        p.logs()
    );

    let m = metrics(p.admin).await;
    for line in [
        "ado_proxy_organization_directories_total{outcome=\"tenant\"} 3",
        "ado_proxy_organization_directories_total{outcome=\"microsoft_account\"} 1",
        "ado_proxy_organization_directories_total{outcome=\"undetermined\"} 1",
        "ado_proxy_organization_directories_total{outcome=\"learned\"} 1",
        "ado_proxy_tenant_tokens_total{outcome=\"issued\"} 1",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
    assert!(!p.logs().contains(CLIENT_SECRET));
}

/// Mode service: at start, each allowed organization's directory is
/// compared with the identity's, and a mismatch is logged with both.
#[tokio::test]
async fn a_service_identity_of_another_directory_is_named_at_start() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado_tenants(
        &idp,
        &[
            ("contoso", TENANT),
            ("fabrikam", OTHER_TENANT),
            ("msaorg", MSA_TENANT),
        ],
    )
    .await;
    let toml = format!(
        "[upstream]\nurl = \"{}\"\nallowed_organizations = [\"contoso\", \"fabrikam\", \"msaorg\"]\n\
         [auth]\nmode = \"service\"\nsource = \"client-credentials\"\ntenant = \"{TENANT}\"\n\
         client_id = \"{CLIENT_ID}\"\nauthority_host = \"{}\"\n",
        ado.url(),
        idp.url()
    );
    let p = ProxyProcess::spawn(
        &toml,
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    );
    let mut logs = String::new();
    for _ in 0..100 {
        logs = p.logs();
        if logs.contains("backed by Microsoft accounts") && logs.contains("another directory") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{logs}"))
            .to_string()
    };
    let other = line("belongs to another directory");
    assert!(
        other.contains("fabrikam") && other.contains(OTHER_TENANT),
        "{other}"
    );
    assert!(line("in the service identity's directory").contains("contoso"));
    assert!(line("backed by Microsoft accounts").contains("msaorg"));
    // The requests themselves then read why.
    let v = crate::support::problem(&format!("http://{}/fabrikam/_apis/projects", p.proxy)).await;
    assert_eq!(
        v["type"], "urn:ado-auth-proxy:problem:service-wrong-directory",
        "{v}"
    );
}
