//! A real `git push` and `git clone` of a 100 MiB repository through the
//! proxy (PAT mode) to the real `git http-backend` behind the fake
//! upstream, and git's view of a refused request.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use tokio::process::Command;

use crate::support::upstream::FakeUpstream;
use crate::support::{self, git_backend};

const REPO_BYTES: usize = 100 * 1024 * 1024;
const PAT: &str = "git-test-pat";

/// Runs git in `dir` with no credential helper and no prompt.
pub(crate) async fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(["-c", "credential.helper=", "-c", "protocol.version=2"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env_remove("GIT_DIR")
        .output()
        .await
        .expect("git runs")
}

/// [`git`], which must succeed: its trimmed output.
pub(crate) async fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args).await;
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Fills `path` with `len` pseudo-random (incompressible) bytes.
fn random_file(path: &Path, len: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        data.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_clone_100_mib_through_the_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, work, clone) = (
        tmp.path().join("root"),
        tmp.path().join("work"),
        tmp.path().join("clone"),
    );
    for d in [&root, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    git_ok(&root, &["init", "-q", "--bare", "-b", "main", "repo"]).await;
    git_ok(&work, &["init", "-q", "-b", "main"]).await;
    for (k, v) in [
        ("user.email", "t@example.com"),
        ("user.name", "T"),
        ("core.compression", "0"),
    ] {
        git_ok(&work, &["config", k, v]).await;
    }
    for i in 0..4 {
        random_file(
            &work.join(format!("blob{i}.bin")),
            REPO_BYTES / 4,
            i as u64 + 1,
        );
    }
    git_ok(&work, &["add", "."]).await;
    git_ok(&work, &["commit", "-q", "-m", "100 MiB of noise"]).await;
    let head = git_ok(&work, &["rev-parse", "HEAD"]).await;

    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{PAT}"))
    );
    let server_root = root.clone();
    let up = FakeUpstream::raw(move |req| {
        git_backend::serve(server_root.clone(), expected.clone(), req)
    })
    .await;
    let pat_file = tmp.path().join("pat");
    std::fs::write(&pat_file, PAT).unwrap();
    let mut config = support::config(&up.url());
    config.auth.mode = ado_auth_proxy::config::AuthMode::Pat;
    config.auth.pat_file = Some(pat_file);
    config.listen.shutdown_grace = Duration::from_secs(30);
    let proxy = support::start(config).await;
    let remote = format!("http://{}/contoso/proj/_git/repo", proxy.proxy_addr);

    // Straight to the fake, git has no credential and is refused.
    let direct = git(
        &work,
        &["ls-remote", &format!("{}/contoso/proj/_git/repo", up.url())],
    )
    .await;
    assert!(!direct.status.success());

    git_ok(&work, &["push", "-q", &remote, "main"]).await;
    assert_eq!(
        git_ok(&root.join("repo"), &["rev-parse", "main"]).await,
        head
    );

    let clone_s = clone.to_str().unwrap().to_string();
    git_ok(tmp.path(), &["clone", "-q", &remote, &clone_s]).await;
    assert_eq!(git_ok(&clone, &["rev-parse", "HEAD"]).await, head);
    for i in 0..4 {
        let name = format!("blob{i}.bin");
        assert!(
            std::fs::read(clone.join(&name)).unwrap() == std::fs::read(work.join(&name)).unwrap(),
            "{name} differs after the round trip"
        );
    }

    let m = support::metrics(proxy.admin_addr).await;
    let sent = support::metric_value(&m, "ado_proxy_request_body_bytes_total");
    let received = support::metric_value(&m, "ado_proxy_response_body_bytes_total");
    assert!(sent >= REPO_BYTES as f64, "push carried {sent} bytes");
    assert!(
        received >= REPO_BYTES as f64,
        "clone carried {received} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_shows_the_proxy_refusal_as_remote_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let up = FakeUpstream::recording(|_| crate::support::upstream::respond(200, &[], "")).await;
    let mut config = support::config(&up.url());
    config.upstream.allowed_organizations = vec!["contoso".into()];
    let proxy = support::start(config).await;
    let out = git(
        tmp.path(),
        &[
            "ls-remote",
            &format!("http://{}/fabrikam/proj/_git/repo", proxy.proxy_addr),
        ],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remote: ado-auth-proxy: Organization not allowed"),
        "{stderr}"
    );
    assert!(stderr.contains("contoso"), "{stderr}");
    assert!(up.requests().is_empty());
}
