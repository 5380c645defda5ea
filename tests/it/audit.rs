//! `log.audit` through the real binary: one JSON line per forwarded or
//! refused request, written whatever the level says, naming the
//! credential, the caller, the user and the `[access]` rule, and never a
//! token, secret or query string.

use std::time::Duration;

use crate::personal_tokens::{create, signed_in, spawn, toml, with_bearer};
use crate::support::client;
use crate::support::fake_idp::{self, FakeIdp};
use crate::support::process::ProxyProcess;
use crate::support::upstream::{FakeUpstream, respond};

/// The JSON audit lines in `logs`.
fn audit_lines(logs: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect()
}

/// Waits until `p` has written `n` audit lines.
async fn wait_for(p: &ProxyProcess, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..50 {
        let lines = audit_lines(&p.logs());
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} audit lines in\n{}", p.logs());
}

#[tokio::test]
async fn a_pat_proxy_audits_every_request_whatever_the_level_and_no_secret() {
    let up = FakeUpstream::recording(|_| {
        respond(
            200,
            &[("activityid", "5a5e5f2c-0000-4000-8000-000000000001")],
            "{}",
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // One caller secret per caller, as a mounted Kubernetes Secret lays
    // them out: the audit line names the one that matched.
    let (pat, secret) = (dir.path().join("pat"), dir.path().join("callers"));
    std::fs::write(&pat, "audit-test-pat-value-0123").unwrap();
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("dashboard"), "caller-secret-value-4567").unwrap();
    std::fs::write(secret.join("ci"), "another-caller-secret-890").unwrap();
    std::fs::write(secret.join("..data"), "hidden-not-a-secret-00000").unwrap();
    let p = ProxyProcess::spawn(
        &format!(
            "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"pat\"\npat_file = \"{}\"\n\
             caller_secret_file = \"{}\"\n[log]\nformat = \"json\"\nlevel = \"warn,ado_auth_proxy::app=info\"\naudit = true\n\
             [[access.rules]]\nname = \"no-wit-writes\"\naction = \"deny\"\nmethods = [\"PATCH\"]\n\
             paths = [\"/**/_apis/wit/**\"]\n",
            up.url(),
            pat.display(),
            secret.display()
        ),
        &[],
    );
    let base = format!("http://{}", p.proxy);
    let http = client();
    let ok = http
        .get(format!("{base}/contoso/_apis/projects?sig=query-secret-89"))
        .header("x-ado-proxy-caller-secret", "caller-secret-value-4567")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = http
        .patch(format!("{base}/contoso/proj/_apis/wit/workitems/1"))
        .header("x-ado-proxy-caller-secret", "caller-secret-value-4567")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let hidden = http
        .get(format!("{base}/contoso/_apis/projects"))
        .header("x-ado-proxy-caller-secret", "hidden-not-a-secret-00000")
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 403, "a hidden file is no caller secret");
    let lines = wait_for(&p, 2).await;
    let (first, second) = (&lines[0], &lines[1]);
    assert_eq!(first["credential"], "pat", "{first}");
    assert_eq!(first["caller_secret"], "dashboard", "{first}");
    assert_eq!(second["caller_secret"], "dashboard", "{second}");
    assert_eq!(first["caller"], "127.0.0.1", "{first}");
    assert_eq!(first["organization"], "contoso", "{first}");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/contoso/_apis/projects");
    assert_eq!(first["status"], 200);
    assert_eq!(first["activity_id"], "5a5e5f2c-0000-4000-8000-000000000001");
    assert_eq!(first["rule"], "-");
    assert_eq!(
        (second["status"].as_u64(), second["rule"].as_str()),
        (Some(403), Some("no-wit-writes")),
        "{second}"
    );
    let logs = p.logs();
    // The level is warn (and info for start-up): no access line, yet
    // every audit line.
    assert!(!logs.contains("\"message\":\"request\""), "{logs}");
    for secret in [
        "audit-test-pat-value-0123",
        "caller-secret-value-4567",
        "another-caller-secret-890",
        "query-secret-89",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn a_user_is_audited_by_object_id_and_by_name_unless_names_are_off() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let root = tempfile::tempdir().unwrap();
    let ado = crate::personal_tokens::ado(&idp, root.path().to_path_buf()).await;
    for names in [true, false] {
        let p = spawn(&toml(
            &ado,
            &idp,
            &format!(
                "store = \"memory\"\n[log]\nformat = \"json\"\naudit = true\naudit_names = {names}\n"
            ),
        ));
        let b = signed_in(&p).await;
        let (id, token) = create(&p, &b, "ci").await;
        assert_eq!(with_bearer(&p, &token).await.status(), 200, "{}", p.logs());
        let by_cookie = b
            .http
            .get(format!("http://{}/contoso/_apis/projects", p.proxy))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(by_cookie.status(), 200);
        let lines = wait_for(&p, 2).await;
        let token_line = lines
            .iter()
            .find(|l| l["credential"] == format!("proxy-token:{id}"))
            .unwrap_or_else(|| panic!("no proxy-token line in {lines:?}"));
        let session_line = lines
            .iter()
            .find(|l| l["credential"] == "session")
            .unwrap_or_else(|| panic!("no session line in {lines:?}"));
        for l in [token_line, session_line] {
            assert_eq!(l["user_tenant"], fake_idp::TENANT, "{l}");
            assert_ne!(l["user_oid"], "-", "{l}");
            if names {
                assert_ne!(l["user"], "-", "{l}");
            } else {
                assert_eq!(l["user"], "-", "{l}");
            }
        }
        // The sign-in itself (/.auth/) is the proxy's own: no audit line.
        assert!(
            lines
                .iter()
                .all(|l| !l["path"].as_str().unwrap_or("").starts_with("/.auth/"))
        );
        assert!(!p.logs().contains(&token), "the token is in the logs");
    }
}

/// A request whose token Azure DevOps refused is audited once, marked
/// refreshed; a client's own token is audited with the user it names.
#[tokio::test]
async fn refreshes_and_clients_own_tokens_are_audited_with_their_user() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let root = tempfile::tempdir().unwrap();
    let ado = crate::personal_tokens::ado(&idp, root.path().to_path_buf()).await;
    let config = toml(
        &ado,
        &idp,
        "store = \"memory\"\n[log]\nformat = \"json\"\naudit = true\n",
    )
    .replace("[session]", "accept_client_tokens = true\n[session]");
    let p = spawn(&config);
    let b = signed_in(&p).await;
    idp.revoke_access_tokens();
    let resp = b
        .http
        .get(format!("http://{}/contoso/_apis/projects", p.proxy))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", p.logs());
    let lines = wait_for(&p, 1).await;
    assert_eq!(
        lines.len(),
        1,
        "one line per request, retry or not: {lines:?}"
    );
    assert_eq!(lines[0]["refreshed"], true, "{}", lines[0]);
    assert_eq!(lines[0]["credential"], "session");

    let token = crate::client_tokens::token(|_| {}, &fake_idp::keys().signing_key, "fake-key");
    let _ = client()
        .get(format!("http://{}/contoso/_apis/projects", p.proxy))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let lines = wait_for(&p, 2).await;
    let line = &lines[1];
    assert_eq!(line["credential"], "client-token", "{line}");
    assert_eq!(
        line["user_oid"], "6a1b2c3d-0000-4000-8000-000000000001",
        "{line}"
    );
    assert_eq!(line["user_tenant"], fake_idp::TENANT, "{line}");
    assert_eq!(line["refreshed"], false, "{line}");
    assert!(!p.logs().contains(&token[40..]), "no token in the logs");
}
