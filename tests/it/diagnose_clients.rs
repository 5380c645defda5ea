//! The answers read by real clients: Azure DevOps' Python SDK raises an
//! error carrying the explanation, git prints it as `remote:` lines, and
//! headless Chromium renders the page.

use std::path::PathBuf;
use std::time::Duration;

use crate::diagnose::{fixture, pat_proxy, replay};
use crate::support;
use crate::support::upstream::{FakeUpstream, respond};

fn peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Resource locations the SDK discovers before calling `get_projects`.
const LOCATIONS: &str = r#"{"count":2,"value":[{"id":"e81700f7-3be2-46de-8624-2eb35882fcaa","area":"Location","resourceName":"ResourceAreas","routeTemplate":"_apis/{resource}/{areaId}","resourceVersion":1,"minVersion":"3.2","maxVersion":"7.1","releasedVersion":"7.1"},{"id":"603fe2ac-9723-48b9-88ad-09305aa6c6e1","area":"core","resourceName":"projects","routeTemplate":"_apis/{resource}/{*projectId}","resourceVersion":4,"minVersion":"1.0","maxVersion":"7.1","releasedVersion":"7.0"}]}"#;

/// What the SDK raised calling `get_projects` of organization `contoso`
/// through `proxy`: `{"type": ..., "message": ...}`.
async fn sdk_get_projects(
    python: &std::path::Path,
    proxy: &ado_auth_proxy::app::Running,
) -> serde_json::Value {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(peers().join("ado_sdk_call.py"))
        .arg(format!("http://{}/contoso", proxy.proxy_addr))
        .env("AZURE_DEVOPS_CACHE_DIR", cache.path());
    support::run_peer(cmd, Duration::from_secs(60)).await
}

/// A fake Azure DevOps that answers the SDK's discovery and then replays
/// the fixture `case` for the call itself.
async fn replaying_for_the_sdk(case: &str) -> FakeUpstream {
    let fx = fixture(case);
    FakeUpstream::recording(move |r| {
        if r.method == http::Method::OPTIONS {
            respond(200, &[("content-type", "application/json")], LOCATIONS)
        } else if r.uri.contains("ResourceAreas") {
            respond(
                200,
                &[("content-type", "application/json")],
                r#"{"count":0,"value":[]}"#,
            )
        } else {
            fx.response()
        }
    })
    .await
}

fn sdk_python() -> PathBuf {
    let python = peers().join(".venv/bin/python");
    assert!(
        python.exists(),
        "tests/peers/.venv is missing: run scripts/test.sh (it installs the azure-devops SDK there)"
    );
    python
}

#[tokio::test]
async fn the_python_sdk_raises_an_error_carrying_the_explanation() {
    let python = sdk_python();
    let upstream = replaying_for_the_sdk("permission-denied").await;
    let proxy = pat_proxy(&upstream).await;
    let v = sdk_get_projects(&python, &proxy).await;
    assert_eq!(v["type"], "AzureDevOpsServiceError", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("TF401027"), "{message}");
    assert!(
        message.contains("[ado-auth-proxy] You lack a permission for this action"),
        "{message}"
    );
    assert!(message.contains("Ask a project administrator"), "{message}");
}

/// Azure DevOps' 203 sign-in page is a success to every HTTP library;
/// through the proxy it is a 401 with the explanation: the SDK raises it
/// instead of parsing a page as data, and curl sees the status.
#[tokio::test]
async fn a_203_sign_in_page_is_a_401_to_the_sdk_and_to_curl() {
    let python = sdk_python();
    let upstream = replaying_for_the_sdk("token-not-accepted-203").await;
    let proxy = pat_proxy(&upstream).await;
    let v = sdk_get_projects(&python, &proxy).await;
    assert!(v["type"].is_string(), "the SDK raised: {v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains(
            "[ado-auth-proxy] Azure DevOps did not accept the proxy's personal access token"
        ),
        "{message}"
    );

    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "http://{}/contoso/_apis/projects?api-version=7.1",
            proxy.proxy_addr
        ))
        .output()
        .await
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
}

/// The proxy's own refusals speak the same language: the SDK shows why
/// the proxy refused instead of a bare status. (It retries 5xx answers
/// without reading them, so a refusal it reads is a 4xx.)
#[tokio::test]
async fn the_python_sdk_shows_the_proxys_own_refusal() {
    let python = peers().join(".venv/bin/python");
    let upstream = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
    let mut config = support::config(&upstream.url());
    config.upstream.allowed_organizations = vec!["fabrikam".into()];
    let proxy = support::start(config).await;
    let v = sdk_get_projects(&python, &proxy).await;
    assert_eq!(v["type"], "AzureDevOpsServiceError", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("[ado-auth-proxy] Organization not allowed"),
        "{message}"
    );
    assert!(
        message.contains("upstream.allowed_organizations"),
        "{message}"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn git_prints_the_explanation_as_remote_lines() {
    let upstream = replay(fixture("oauth-disabled")).await;
    let proxy = pat_proxy(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let dest = home.path().join("clone");
    let out = tokio::process::Command::new("git")
        .args([
            "clone",
            &format!("http://{}/contoso/proj/_git/r", proxy.proxy_addr),
        ])
        .arg(&dest)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for line in [
        "remote: ado-auth-proxy: Azure DevOps refused this identity",
        "remote: Azure DevOps said: TF400813: The user",
        "remote: Admin: Grant the account an access level in Organization settings > Users (https://dev.azure.com/contoso/_settings/users)",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("Username"),
        "git did not prompt:\n{stderr}"
    );
}

#[tokio::test]
async fn chromium_renders_the_page_a_person_can_read() {
    let upstream = replay(fixture("conditional-access")).await;
    let proxy = pat_proxy(&upstream).await;
    let url = format!("http://{}/contoso/_apis/projects", proxy.proxy_addr);
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(peers().join("render_page.mjs"))
        .env("PAGE_URL", &url);
    let v = support::run_peer(cmd, Duration::from_secs(120)).await;
    assert_eq!(v["status"], 403);
    assert_eq!(
        v["title"],
        "Blocked by your organization's Conditional Access policy"
    );
    let text = v["text"].as_str().unwrap();
    for visible in [
        "What happened",
        "Microsoft Entra Conditional Access refused this request (VS403463)",
        "What you can do",
        "Connect from an allowed network or a compliant device",
        "What an administrator can do",
        "cbf4682a-915d-42b3-ac36-a714328098e8",
    ] {
        assert!(
            text.contains(visible),
            "{visible:?} not visible in:\n{text}"
        );
    }
    // Self-contained: the page loaded nothing else.
    assert_eq!(v["requests"], 1, "{v}");
}
