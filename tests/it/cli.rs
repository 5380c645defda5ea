//! The command line: `check-config`, bad config files, environment
//! overrides, `--version`, and starting from `config.example.toml`.

use std::process::{Command, Output};

use crate::support::process::{ProxyProcess, binary};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args).env_remove("ADO_AUTH_PROXY_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn example() -> String {
    format!("{}/config.example.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_example_and_prints_the_effective_config() {
    let out = run(&["check-config", "--config", &example()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[listen]\naddress = \"127.0.0.1:8080\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("vsrm = \"https://vsrm.dev.azure.com/\""),
        "{stdout}"
    );
    // The printed config is itself a valid config.
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &stdout).unwrap();
    let out = run(&["check-config", "--config", again.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[listen]\nadress = \"0.0.0.0:80\"\nshutdown_grace = \"a while\"\n[upstream]\nurl = \"dev.azure.com\"\n\
         [auth]\nmode = \"pat\"\npat_file = \"/nonexistent/pat\"\n[logging]\nlevel = \"debug\"\n",
    )
    .unwrap();
    let out = run(&["check-config", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for needle in [
        "configuration has 5 problems",
        "listen.adress: unknown key; did you mean `address`?",
        "listen.shutdown_grace: ",
        "upstream.url: ",
        "auth.pat_file: cannot read /nonexistent/pat",
        "logging: unknown key",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
    assert!(
        stderr.contains(bad.to_str().unwrap()),
        "names the file: {stderr}"
    );
    assert!(out.stdout.is_empty());

    // `run` refuses the same file with the same list.
    let out = run(&["--config", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("listen.adress"));
}

#[test]
fn toml_syntax_errors_and_missing_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[listen\naddress = 1").unwrap();
    let out = run(&["check-config", "--config", broken.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("broken.toml"),
        "{}",
        text(&out.stderr)
    );

    let out = run(
        &["check-config", "--config", "/nonexistent/config.toml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the config file /nonexistent/config.toml"));
}

#[test]
fn environment_overrides_the_file_and_secrets_are_redacted() {
    let out = run(
        &["check-config", "--config", &example()],
        &[
            ("ADO_AUTH_PROXY_LISTEN__ADDRESS", "0.0.0.0:18080"),
            (
                "ADO_AUTH_PROXY_UPSTREAM__HOSTS__VSRM",
                "https://vsrm.example.test",
            ),
            ("ADO_AUTH_PROXY_AUTH__MODE", "pat"),
            ("ADO_AUTH_PROXY_AUTH__PAT", "pat-value-that-must-not-print"),
            // A PAT on a network address must say who may call.
            ("ADO_AUTH_PROXY_AUTH__ALLOW_REMOTE_CALLERS", "true"),
            (
                "ADO_AUTH_PROXY_AUTH__ALLOWED_CLIENT_CIDRS",
                "[\"10.0.0.0/8\"]",
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("address = \"0.0.0.0:18080\""), "{stdout}");
    assert!(
        stdout.contains("vsrm = \"https://vsrm.example.test/\""),
        "{stdout}"
    );
    assert!(stdout.contains("pat = \"[redacted]\""), "{stdout}");
    assert!(
        stdout.contains("allowed_client_cidrs = [\"10.0.0.0/8\"]"),
        "{stdout}"
    );
    assert!(!stdout.contains("pat-value-that-must-not-print"));

    let out = run(
        &["check-config", "--config", &example()],
        &[("ADO_AUTH_PROXY_UPSTREAM__CONECT_TIMEOUT", "5s")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("upstream.conect_timeout: unknown key; did you mean `connect_timeout`?")
            && stderr.contains("environment variable ADO_AUTH_PROXY_UPSTREAM__CONECT_TIMEOUT"),
        "{stderr}"
    );
}

#[test]
fn version_flag() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("ado-auth-proxy {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn starts_from_the_example_config_unchanged() {
    // The example's fixed ports (8080, 9090) belong to this test alone.
    let example = example();
    let proxy =
        ProxyProcess::spawn_args(&["--config", &example], &[], tempfile::tempdir().unwrap());
    assert_eq!(proxy.proxy.to_string(), "127.0.0.1:8080");
    assert_eq!(proxy.admin.to_string(), "127.0.0.1:9090");
    let out = crate::support::blocking_get(proxy.admin, "/readyz");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[test]
fn keygen_prints_a_fresh_32_byte_key_without_a_config() {
    use base64::Engine;
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let out = run(
                &["keygen"],
                &[("ADO_AUTH_PROXY_LISTEN__ADDRESS", "not an address")],
            );
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout).trim().to_string()
        })
        .collect();
    for k in &keys {
        let bytes = base64::engine::general_purpose::STANDARD.decode(k).unwrap();
        assert_eq!(bytes.len(), 32, "{k}");
    }
    assert_ne!(keys[0], keys[1]);
}

/// What the kubelet injects into every pod of a namespace with a Service
/// named `ado-auth-proxy` (as `helm install ado-auth-proxy` creates).
const SERVICE_LINKS: [(&str, &str); 8] = [
    ("ADO_AUTH_PROXY_SERVICE_HOST", "10.96.0.12"),
    ("ADO_AUTH_PROXY_SERVICE_PORT", "80"),
    ("ADO_AUTH_PROXY_SERVICE_PORT_HTTP", "80"),
    ("ADO_AUTH_PROXY_PORT", "tcp://10.96.0.12:80"),
    ("ADO_AUTH_PROXY_PORT_80_TCP", "tcp://10.96.0.12:80"),
    ("ADO_AUTH_PROXY_PORT_80_TCP_PROTO", "tcp"),
    ("ADO_AUTH_PROXY_PORT_80_TCP_PORT", "80"),
    ("ADO_AUTH_PROXY_PORT_80_TCP_ADDR", "10.96.0.12"),
];

#[test]
fn kubernetes_service_links_are_no_configuration_and_single_underscores_are_named() {
    let out = run(&["check-config", "--config", &example()], &SERVICE_LINKS);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("is ignored"),
        "{}",
        text(&out.stderr)
    );

    // One underscore where two belong: ignored, and said so.
    let mut env = SERVICE_LINKS.to_vec();
    env.push(("ADO_AUTH_PROXY_AUTH_MODE", "pat"));
    let out = run(&["check-config", "--config", &example()], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ADO_AUTH_PROXY_AUTH_MODE is ignored")
            && stderr.contains("ADO_AUTH_PROXY_AUTH__MODE")
            && !stderr.contains("SERVICE_HOST"),
        "{stderr}"
    );
    // A mistyped key in a section stays an error.
    env.push(("ADO_AUTH_PROXY_LISTEN__ADRESS", "0.0.0.0:8080"));
    let out = run(&["check-config", "--config", &example()], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("listen.adress"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_pod_given_service_links_starts_and_serves() {
    let proxy = ProxyProcess::spawn(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nmode = \"none\"\n",
        &SERVICE_LINKS,
    );
    let out = crate::support::blocking_get(proxy.admin, "/healthz");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}\n{}", proxy.logs());
}

/// A key file mounted as Kubernetes mounts a Secret for a non-root pod
/// (`defaultMode: 0440`, group-owned through `fsGroup`) draws no warning
/// that cannot be acted on; one every user can read does, saying how.
#[test]
fn only_a_key_file_every_user_can_read_draws_a_warning() {
    for (mode, warned) in [(0o440, false), (0o400, false), (0o644, true)] {
        let dir = tempfile::tempdir().unwrap();
        let keys = key_file(dir.path(), mode);
        let toml = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nmode = \"user\"\nprovider = \"entra\"\n\
             tenant = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"11111111-2222-3333-4444-555555555555\"\n\
             [session]\nstore = \"embedded\"\npath = \"{}\"\nencryption_keys_file = \"{}\"\n",
            dir.path().join("s.db").display(),
            keys.display()
        );
        let proxy = ProxyProcess::spawn(&toml, &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", "s3cret")]);
        let out = crate::support::blocking_get(proxy.admin, "/healthz");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let logs = proxy.logs();
        // Whatever the wording: no warning about the key file at all.
        assert_eq!(
            logs.contains("session key file"),
            warned,
            "mode {mode:o}: {logs}"
        );
        if warned {
            assert!(logs.contains("defaultMode"), "{logs}");
        }
    }
}

/// A config file that exists but cannot be read (its mode, or a
/// directory) is named with the reason and the fix, not "Permission
/// denied" alone.
#[test]
fn an_unreadable_config_file_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["check-config", "--config", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot read the config file {}",
            dir.path().display()
        )) && stderr.contains("directory"),
        "{stderr}"
    );

    // As an unprivileged user (the tests run as root, who reads anything).
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[auth]\nmode = \"none\"\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(crate::support::process::binary())
        .args(["check-config", "--config", file.to_str().unwrap()])
        .env_remove("ADO_AUTH_PROXY_CONFIG")
        .output()
        .expect("setpriv (util-linux) runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot read the config file {}", file.display()))
            && stderr.contains("make it readable"),
        "{stderr}"
    );
}

/// `check-config --no-files` checks shapes and values where the files a
/// config names are not (a Kubernetes config on a laptop): a missing
/// secret file is then no problem, a mistake still is.
#[test]
fn check_config_without_files_checks_everything_but_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[auth]\nmode = \"pat\"\npat_file = \"/var/run/secrets/ado/pat\"\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let out = run(&["check-config", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("auth.pat_file: cannot read /var/run/secrets/ado/pat"));

    let out = run(&["check-config", "--no-files", "--config", path], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--no-files"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(
        &config,
        "[auth]\nmode = \"pat\"\npat_file = \"/var/run/secrets/ado/pat\"\n[listen]\nmax_connections = \"many\"\n",
    )
    .unwrap();
    let out = run(&["check-config", "--no-files", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("listen.max_connections") && !stderr.contains("pat_file"),
        "{stderr}"
    );
}

/// The warnings `run` logs at start are the ones `check-config` prints:
/// a memory store, an http callback for legacy Azure DevOps OAuth, a key
/// file every user can read (not with `--no-files`).
#[test]
fn check_config_prints_the_warnings_run_would_log() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), 0o644);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"user\"\nprovider = \"azure-devops\"\nclient_id = \"app\"\n\
             client_secret_file = \"{}\"\n[session]\nstore = \"memory\"\nencryption_keys_file = \"{}\"\n",
            secret.display(),
            keys.display()
        ),
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let out = run(&["check-config", "--config", path], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    for want in [
        "warning: session.store: \"memory\"",
        "warning: auth.provider: \"azure-devops\": Microsoft retires the legacy Azure DevOps OAuth in 2026",
        "warning: listen.public_url: legacy Azure DevOps OAuth only accepts https",
        "warning: session.encryption_keys_file: the session key file is readable by every user",
    ] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
    let out = run(&["check-config", "--no-files", "--config", path], &[]);
    assert!(
        !text(&out.stderr).contains("key file"),
        "{}",
        text(&out.stderr)
    );
}

/// The start-up log says what runs: the build (version and git revision),
/// the mode and where its credential comes from, the session store, the
/// organizations; in mode `user` the redirect URI to register.
#[test]
fn the_start_up_log_says_what_runs_and_the_redirect_uri_to_register() {
    // What build.rs saw: the checkout's revision, or "unknown" where git
    // cannot tell (no .git, or a repository git refuses to read).
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let proxy = ProxyProcess::spawn(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\nallowed_organizations = [\"contoso\"]\n\
         [auth]\nmode = \"user\"\nprovider = \"entra\"\n\
         tenant = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"11111111-2222-3333-4444-555555555555\"\n\
         [session]\nstore = \"memory\"\n",
        &[
            ("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", "s3cret"),
            // The default's shape (a loopback address, no public_url).
            ("ADO_AUTH_PROXY_LISTEN__ADDRESS", "127.0.0.1:0"),
        ],
    );
    let out = crate::support::blocking_get(proxy.admin, "/healthz");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // The log is read by a thread of its own: wait for the lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !proxy.logs().contains("redirect_uri") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let logs = proxy.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("ado-auth-proxy running"))
        .unwrap_or_else(|| panic!("{logs}"));
    for want in [
        format!("\"version\":\"{}\"", env!("CARGO_PKG_VERSION")),
        format!("\"revision\":\"{revision}\""),
        "\"mode\":\"user\"".to_string(),
        "\"credential\":\"entra\"".to_string(),
        "\"session_store\":\"memory\"".to_string(),
        "\"organizations\":\"contoso\"".to_string(),
    ] {
        assert!(line.contains(&want), "{want} in {line}");
    }
    // localhost, as README says to register: Entra takes http redirect
    // URIs only for localhost.
    let redirect = format!(
        "\"redirect_uri\":\"http://localhost:{}/.auth/callback\"",
        proxy.proxy.port()
    );
    assert!(logs.contains(&redirect), "{redirect} in {logs}");
    // And the store's state once it answered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !proxy.logs().contains("the session store answers")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        proxy.logs().contains("the session store answers"),
        "{}",
        proxy.logs()
    );
    assert!(!logs.contains("s3cret"));
}

/// A fresh session key file in `dir` with `mode`.
fn key_file(dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let keys = dir.join("keys");
    let key = ado_auth_proxy::seal::generate_key().unwrap();
    std::fs::write(&keys, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(mode)).unwrap();
    keys
}
