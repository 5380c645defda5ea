//! `[access]` through the proxy: a rule refusing git push with real git
//! (fetch still works, git prints the rule), read-only forwarding reads
//! and refusing writes before they reach Azure DevOps, hostile spellings
//! of a refused path over a raw socket, and `check-config` naming a bad
//! rule.

use ado_auth_proxy::config::{AccessRule, GitOp, RuleAction};
use base64::Engine;

use crate::git::{git, git_ok};
use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, git_backend, metric_value, metrics, pat_proxy, raw_http, status_of};

/// The PAT `support::pat_proxy` sends.
const PAT: &str = "the-proxy-pat-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_refuses_git_push_with_its_name_and_fetch_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, work) = (tmp.path().join("root"), tmp.path().join("work"));
    std::fs::create_dir_all(&root).unwrap();
    git_ok(&root, &["init", "-q", "--bare", "-b", "main", "repo"]).await;
    git_ok(tmp.path(), &["init", "-q", "-b", "main", "seed"]).await;
    let seed = tmp.path().join("seed");
    for (k, v) in [("user.email", "t@example.com"), ("user.name", "T")] {
        git_ok(&seed, &["config", k, v]).await;
    }
    std::fs::write(seed.join("a.txt"), "one\n").unwrap();
    git_ok(&seed, &["add", "."]).await;
    git_ok(&seed, &["commit", "-q", "-m", "one"]).await;
    let bare = root.join("repo");
    git_ok(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]).await;

    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{PAT}"))
    );
    let server_root = root.clone();
    let up = FakeUpstream::raw(move |req| {
        git_backend::serve(server_root.clone(), expected.clone(), req)
    })
    .await;
    let (proxy, _dir) = pat_proxy(&up, |c| {
        c.access.rules = vec![AccessRule {
            git: Some(vec![GitOp::Push]),
            ..AccessRule::named("no-push", RuleAction::Deny)
        }];
    })
    .await;
    let remote = format!("http://{}/contoso/proj/_git/repo", proxy.proxy_addr);
    let before = metrics(proxy.admin_addr).await;
    assert_eq!(
        metric_value(&before, "ado_proxy_access_refused_total{rule=\"no-push\"}"),
        0.0,
        "every rule's series exists at 0"
    );

    git_ok(
        tmp.path(),
        &["clone", "-q", &remote, work.to_str().unwrap()],
    )
    .await;
    for (k, v) in [("user.email", "t@example.com"), ("user.name", "T")] {
        git_ok(&work, &["config", k, v]).await;
    }
    std::fs::write(work.join("b.txt"), "two\n").unwrap();
    git_ok(&work, &["add", "."]).await;
    git_ok(&work, &["commit", "-q", "-m", "two"]).await;
    let pushed = git(&work, &["push", "origin", "main"]).await;
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert!(!pushed.status.success(), "the push passed: {stderr}");
    assert!(
        stderr.contains("no-push"),
        "git does not show the rule:\n{stderr}"
    );
    // Nothing reached the repository.
    let log = git(&bare, &["log", "--oneline", "main"]).await;
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 1);
    let after = metrics(proxy.admin_addr).await;
    assert!(metric_value(&after, "ado_proxy_access_refused_total{rule=\"no-push\"}") >= 1.0);
    // Fetching is still allowed.
    git_ok(&work, &["fetch", "-q", "origin"]).await;
}

#[tokio::test]
async fn read_only_forwards_reads_and_refuses_writes_before_azure_devops_sees_them() {
    let up =
        FakeUpstream::recording(|_| respond(200, &[("content-type", "application/json")], "{}"))
            .await;
    let (proxy, _dir) = pat_proxy(&up, |c| c.access.read_only = true).await;
    let base = format!("http://{}", proxy.proxy_addr);
    let http = support::client();
    for (method, path) in [
        ("GET", "/contoso/_apis/projects"),
        ("POST", "/contoso/proj/_apis/wit/wiql?api-version=7.1"),
        ("POST", "/contoso/_apis/wit/workitemsbatch?api-version=7.1"),
    ] {
        let resp = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method} {path}");
    }
    let seen = up.requests().len();
    for (method, path) in [
        ("PATCH", "/contoso/_apis/wit/workitems/1?api-version=7.1"),
        (
            "POST",
            "/contoso/proj/_apis/wit/workitems/$Task?api-version=7.1",
        ),
        ("DELETE", "/contoso/_apis/git/repositories/r"),
        (
            "GET",
            "/contoso/proj/_git/r/info/refs?service=git-receive-pack",
        ),
    ] {
        let resp = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("accept", "application/problem+json")
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{method} {path}");
        // git's request gets text git prints; the others problem details.
        let text = resp.text().await.unwrap();
        assert!(text.contains("access.read_only"), "{text}");
        if !path.contains("/info/refs") {
            assert!(
                text.contains("\"urn:ado-auth-proxy:problem:access-rule-refused\""),
                "{text}"
            );
        }
    }
    // A reading POST that asks Azure DevOps to act as another method is
    // judged as that method.
    let overridden = http
        .post(format!("{base}/contoso/proj/_apis/wit/wiql"))
        .header("X-HTTP-Method-Override", "delete")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(overridden.status(), 403);
    assert_eq!(
        up.requests().len(),
        seen,
        "a refused write reached Azure DevOps"
    );
    let m = metrics(proxy.admin_addr).await;
    assert_eq!(
        metric_value(&m, "ado_proxy_access_refused_total{rule=\"read-only\"}"),
        5.0
    );
}

#[tokio::test]
async fn a_refused_path_stays_refused_in_every_spelling_azure_devops_reads_alike() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
    let (proxy, _dir) = pat_proxy(&up, |c| {
        c.access.rules = vec![AccessRule {
            methods: Some(vec!["PATCH".into(), "POST".into()]),
            paths: Some(vec!["/*/*/_apis/wit/**".into()]),
            ..AccessRule::named("no-work-item-writes", RuleAction::Deny)
        }];
    })
    .await;
    // Azure DevOps reads a method in any case.
    let lower = raw_http(
        proxy.proxy_addr,
        "patch /contoso/proj/_apis/wit/workitems/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
    )
    .await;
    assert_eq!(status_of(&lower), 403, "{lower}");
    for path in [
        "/contoso/proj/_apis/wit/workitems/1",
        "/contoso/proj/_APIS/WIT/workitems/1",
        "/contoso/proj/_apis/wi%74/workitems/1",
        "/contoso/proj/_apis/wit%2e/workitems/1",
        "/contoso/proj/_apis/wit;x=1/workitems/1",
        "/contoso//proj/_apis/wit/workitems/1",
        "/.hosts/vsrm/contoso/proj/_apis/wit/x",
    ] {
        let resp = raw_http(
            proxy.proxy_addr,
            &format!("PATCH {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]"),
        )
        .await;
        assert_eq!(status_of(&resp), 403, "{path}: {resp}");
        assert!(resp.contains("no-work-item-writes"), "{path}: {resp}");
    }
    assert!(
        up.requests()
            .iter()
            .all(|r| !r.method.as_str().eq_ignore_ascii_case("PATCH")),
        "a refused write reached Azure DevOps: {:?}",
        up.requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>()
    );
    let get = raw_http(
        proxy.proxy_addr,
        "GET /contoso/proj/_apis/wit/workitems/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&get), 200, "{get}");
}

#[test]
fn check_config_names_each_bad_rule() {
    let dir = tempfile::tempdir().unwrap();
    let pat = dir.path().join("pat");
    std::fs::write(&pat, "x").unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        format!(
            "[auth]\nmode = \"pat\"\npat_file = \"{}\"\n\
             [[access.rules]]\nname = \"no-wit\"\naction = \"deny\"\npaths = [\"/*/_apis/wit*\"]\n\
             [[access.rules]]\nname = \"verbs\"\naction = \"deny\"\nmethods = [\"FETCH\"]\n\
             [[access.rules]]\nname = \"people\"\naction = \"allow\"\nusers = [\"dana@contoso.com\"]\n",
            pat.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(support::process::binary())
        .args(["check-config", "--config", file.to_str().unwrap()])
        .env_remove("ADO_AUTH_PROXY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "access.rules[0]: rule \"no-wit\": bad path glob",
        "access.rules[1]: rule \"verbs\": unknown method \"FETCH\"",
        "access.rules[2]: rule \"people\": users, groups and roles name signed-in users",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
}
