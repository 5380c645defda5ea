//! The same Azure DevOps answer means different things for different
//! credentials: TF400813 is the organization's OAuth policy for a legacy
//! Azure DevOps OAuth app, consent or Conditional Access for an Entra
//! app, a missing membership for a service principal. Every recorded
//! answer (`tests/fixtures/upstream/`) is replayed to the real binary in
//! each mode, and what each mode's callers read is compared with
//! `tests/golden/diagnose/modes/{mode}.txt` (`UPDATE_GOLDEN=1` rewrites).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::diagnose::fixture;
use crate::support::fake_idp::{self, CLIENT_ID, CLIENT_SECRET, FakeIdp, LEGACY_SECRET, TENANT};
use crate::support::oidc::Browser;
use crate::support::process::ProxyProcess;
use crate::support::upstream::{FakeUpstream, Recorded, respond};
use crate::support::{PROJECTS, client};

/// Every recorded answer, by file name: those every client language is
/// checked with, and one from an organization of another directory.
fn fixtures() -> Vec<&'static str> {
    let mut all = crate::diagnose::CASES.to_vec();
    all.insert(2, "wrong-directory");
    all
}

/// A fake Azure DevOps answering `/contoso/_apis/case/{fixture}` with
/// that recorded answer, and anything else with 200.
async fn replaying() -> FakeUpstream {
    let all: HashMap<&str, crate::diagnose::Fixture> =
        fixtures().into_iter().map(|n| (n, fixture(n))).collect();
    FakeUpstream::recording(move |r: &Recorded| {
        match r
            .uri
            .strip_prefix("/contoso/_apis/case/")
            .and_then(|n| all.get(n))
        {
            Some(fx) => fx.response(),
            None => respond(200, &[("content-type", "application/json")], "{}"),
        }
    })
    .await
}

/// A fake managed-identity endpoint (IMDS shape) issuing a JWT-shaped
/// token of the fake tenant.
async fn identity_endpoint() -> FakeUpstream {
    FakeUpstream::recording(|_r: &Recorded| {
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            format!(r#"{{"tid":"{TENANT}","oid":"mi-object","idtyp":"app"}}"#),
        );
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        respond(
            200,
            &[("content-type", "application/json")],
            format!(
                r#"{{"access_token":"eyJhbGciOiJub25lIn0.{payload}.","expires_on":"{expires}","resource":"499b84ac-1321-427f-aa17-267ca6975798","token_type":"Bearer"}}"#
            ),
        )
    })
    .await
}

/// What a caller reads for one answer: status, id, fixer, title and
/// both remedies, from the problem+json form.
async fn explain(http: &reqwest::Client, base: &str, case: &str, bearer: Option<&str>) -> String {
    let mut req = http
        .get(format!("{base}/contoso/_apis/case/{case}"))
        .header("accept", "application/problem+json");
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.unwrap();
    let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
    format!(
        "{case}: {status} {} ({})\n  {}\n  remedy: {}\n  admin: {}\n",
        text("type").trim_start_matches("urn:ado-auth-proxy:problem:"),
        text("fixer"),
        text("title"),
        text("remedy"),
        text("adminRemedy"),
    )
    .replace(base, "http://127.0.0.1:PORT")
}

fn golden(mode: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/golden/diagnose/modes/{mode}.txt"));
    crate::support::golden(&path, actual);
}

/// Asks about every fixture through `proxy` and compares with the mode's
/// golden file.
async fn check_mode(
    mode: &str,
    proxy: &ProxyProcess,
    http: &reqwest::Client,
    bearer: Option<&str>,
) {
    let base = format!("http://{}", proxy.proxy);
    let mut all = String::new();
    for case in fixtures() {
        all.push_str(&explain(http, &base, case, bearer).await);
    }
    golden(mode, &all);
    assert!(
        !proxy.logs().contains(CLIENT_SECRET) && !proxy.logs().contains("eyJhbGciOiJub25lIn0"),
        "no secret or token in the logs"
    );
}

fn toml(upstream: &FakeUpstream, auth: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth]\ncheck_pat_at_start = false\n{auth}\n\
         [session]\nstore = \"memory\"\n",
        upstream.url()
    )
}

#[tokio::test]
async fn each_mode_explains_the_same_answer_in_its_own_terms() {
    let ado = replaying().await;
    let idp = FakeIdp::start(std::time::Duration::from_secs(3600)).await;
    let authority = idp.url();

    // Mode none: the client's own token.
    let p = ProxyProcess::spawn(&toml(&ado, "mode = \"none\""), &[]);
    check_mode("none", &p, &client(), Some("a-client-token")).await;
    // The same, with an Entra token and a legacy Azure DevOps OAuth token
    // (unsigned look-alikes: the proxy only reads their issuer to explain).
    let jwt = |claims: serde_json::Value| {
        use base64::Engine;
        let b = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            b(r#"{"alg":"RS256","typ":"JWT"}"#.into()),
            b(claims.to_string())
        )
    };
    let entra = jwt(serde_json::json!({
        "iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        "aud": "499b84ac-1321-427f-aa17-267ca6975798",
    }));
    check_mode("none-entra", &p, &client(), Some(&entra)).await;
    let legacy = jwt(serde_json::json!({
        "iss": "app.vstoken.visualstudio.com",
        "aud": "app.vstoken.visualstudio.com|vso:4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a",
    }));
    check_mode("none-legacy", &p, &client(), Some(&legacy)).await;

    // Mode pat: the proxy's PAT.
    let p = ProxyProcess::spawn(
        &toml(&ado, "mode = \"pat\""),
        &[("ADO_AUTH_PROXY_AUTH__PAT", "a-personal-access-token")],
    );
    check_mode("pat", &p, &client(), None).await;

    // Mode user, Entra and the legacy Azure DevOps OAuth: a signed-in
    // browser.
    for (mode, auth, secret) in [
        (
            "user-entra",
            format!(
                "mode = \"user\"\nprovider = \"entra\"\ntenant = \"{TENANT}\"\n\
                 client_id = \"{CLIENT_ID}\"\nauthority_host = \"{authority}\""
            ),
            CLIENT_SECRET,
        ),
        (
            "user-azure-devops",
            format!(
                "mode = \"user\"\nprovider = \"azure-devops\"\n\
                 client_id = \"9f6c7bd9-0a8e-4d1e-9a43-6e5f3f2c1b0a\"\n\
                 authority_host = \"{authority}\""
            ),
            LEGACY_SECRET,
        ),
    ] {
        let p = ProxyProcess::spawn(
            &toml(&ado, &auth),
            &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", secret)],
        );
        let b = Browser::new();
        let base = format!("http://{}", p.proxy);
        let resp = fake_idp::sign_in(&b, &base, Some(PROJECTS)).await;
        assert_eq!(resp.status(), 302, "{mode}: signed in: {}", p.logs());
        check_mode(mode, &p, &b.http, None).await;
    }

    // Mode service: a service principal, then a managed identity.
    let p = ProxyProcess::spawn(
        &toml(
            &ado,
            &format!(
                "mode = \"service\"\nsource = \"client-credentials\"\ntenant = \"{TENANT}\"\n\
                 client_id = \"{CLIENT_ID}\"\nauthority_host = \"{authority}\""
            ),
        ),
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    );
    check_mode("service-principal", &p, &client(), None).await;

    let imds = identity_endpoint().await;
    let p = ProxyProcess::spawn(
        &toml(
            &ado,
            &format!(
                "mode = \"service\"\nsource = \"managed-identity\"\n\
                 managed_identity_endpoint = \"{}/msi/token\"",
                imds.url()
            ),
        ),
        &[],
    );
    check_mode("service-managed-identity", &p, &client(), None).await;
}
