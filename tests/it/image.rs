//! The container image, run with podman the way Kubernetes runs it:
//! read-only root (no tmpfs either), no capabilities, no new privileges,
//! uid 65532, `/data` the only writable path. `scripts/image-test.sh`
//! builds the image from deploy/Dockerfile and runs these tests (they are
//! `#[ignore]`d in a plain `cargo test`, which has no image to run).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::fake_idp::{self, CLIENT_ID, CLIENT_SECRET, FakeIdp, TENANT};
use crate::support::oidc::Browser;
use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, PROJECTS, client};

/// The image under test.
fn image() -> String {
    std::env::var("ADO_IMAGE")
        .expect("ADO_IMAGE is not set: scripts/image-test.sh builds the image and runs these tests")
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs (scripts/image-test.sh installs it)")
}

/// `podman run` with the restrictions Kubernetes applies, `mounts` as
/// `host:container[:opts]`, then `args` for the image.
fn run_args(mounts: &[String], detached: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = ["run", "--read-only", "--read-only-tmpfs=false"]
        .iter()
        .chain(&["--network", "host", "--cap-drop", "ALL"])
        .chain(&["--security-opt", "no-new-privileges", "--user", "65532"])
        .map(|s| s.to_string())
        .collect();
    match detached {
        Some(name) => out.extend(["-d".to_string(), "--name".into(), name.into()]),
        None => out.push("--rm".into()),
    }
    for m in mounts {
        out.extend(["-v".to_string(), m.clone()]);
    }
    out.push(image());
    out
}

/// Runs the image to completion with `args`.
fn run_once(mounts: &[String], env: &[(&str, String)], args: &[&str]) -> Output {
    let mut all = run_args(mounts, None);
    let at = all.len() - 1;
    for (k, v) in env {
        all.insert(at, format!("--env={k}={v}"));
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    podman(&refs)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory owned by the image's user, for `/data` or mounted files.
fn owned_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65532), Some(65532)).unwrap();
    dir
}

/// A running container, removed when dropped.
struct Container {
    name: String,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Container {
    /// Starts the image's default command (`run`) with `config` mounted
    /// where the image looks for it, plus `mounts`; waits for `/readyz`.
    async fn start(config: &str, dir: &Path, mounts: &[String], ports: (u16, u16)) -> Self {
        let name = format!("ado-image-test-{}", ports.0);
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut all = vec![format!("{}:/etc/ado-auth-proxy:ro", dir.display())];
        all.extend(mounts.iter().cloned());
        let args = run_args(&all, Some(&name));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = podman(&refs);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Self {
            name,
            proxy: SocketAddr::from(([127, 0, 0, 1], ports.0)),
            admin: SocketAddr::from(([127, 0, 0, 1], ports.1)),
        };
        let started = Instant::now();
        loop {
            let ready = client()
                .get(format!("http://{}/readyz", c.admin))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return c;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not ready: {}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    }

    /// SIGTERM, then the exit code and how long the stop took.
    fn terminate(&self) -> (i64, Duration) {
        let started = Instant::now();
        let out = podman(&["kill", "--signal", "TERM", &self.name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = podman(&["wait", &self.name]);
        let took = started.elapsed();
        let code = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(-1);
        (code, took)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

#[tokio::test]
#[ignore = "needs the image: scripts/image-test.sh"]
async fn the_image_runs_its_version_and_checks_the_shipped_configs() {
    let out = run_once(&[], &[], &["--version"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ado-auth-proxy "));

    // The example config, where the image looks for it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = owned_dir();
    std::fs::copy(
        root.join("config.example.toml"),
        dir.path().join("config.toml"),
    )
    .unwrap();
    let etc = format!("{}:/etc/ado-auth-proxy:ro", dir.path().display());
    let out = run_once(&[etc], &[], &["check-config"]);
    assert!(
        out.status.success(),
        "config.example.toml: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The chart's rendered config, with the files and variables a pod
    // provides (as deploy.rs does for the host binary).
    let rendered = tempfile::tempdir().unwrap();
    let report = crate::deploy::render_chart(rendered.path());
    let config = report["cases"]["default"]["config"].as_str().unwrap();
    let files = owned_dir();
    std::fs::copy(config, files.path().join("config.toml")).unwrap();
    std::fs::write(files.path().join("secret"), "s3cret").unwrap();
    std::fs::write(
        files.path().join("keys"),
        ado_auth_proxy::seal::generate_key().unwrap(),
    )
    .unwrap();
    for f in ["config.toml", "secret", "keys"] {
        std::os::unix::fs::chown(files.path().join(f), Some(65532), Some(65532)).unwrap();
    }
    let env = [
        ("ADO_AUTH_PROXY_AUTH__TENANT", TENANT.to_string()),
        ("ADO_AUTH_PROXY_AUTH__CLIENT_ID", CLIENT_ID.to_string()),
        (
            "ADO_AUTH_PROXY_AUTH__CLIENT_SECRET_FILE",
            "/cfg/secret".to_string(),
        ),
        (
            "ADO_AUTH_PROXY_SESSION__ENCRYPTION_KEYS_FILE",
            "/cfg/keys".to_string(),
        ),
    ];
    let cfg = format!("{}:/cfg:ro", files.path().display());
    let out = run_once(
        &[cfg],
        &env,
        &["check-config", "--config", "/cfg/config.toml"],
    );
    assert!(
        out.status.success(),
        "the chart's config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "needs the image: scripts/image-test.sh"]
async fn the_image_proxies_in_pat_mode_reports_health_and_stops_on_sigterm() {
    let upstream = FakeUpstream::recording(|_| respond(200, &[], "from upstream")).await;
    let dir = owned_dir();
    std::fs::write(dir.path().join("pat"), "image-test-pat\n").unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\nshutdown_delay = \"200ms\"\n\
         shutdown_grace = \"10s\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\
         [upstream]\nurl = \"{}\"\n[auth]\nmode = \"pat\"\n\
         pat_file = \"/etc/ado-auth-proxy/pat\"\n",
        upstream.url()
    );
    let c = Container::start(&config, dir.path(), &[], (port, admin)).await;

    let resp = support::get(format!("http://{}/contoso/_apis/projects", c.proxy)).await;
    assert_eq!(resp.status(), 200, "{}", c.logs());
    assert_eq!(resp.text().await.unwrap(), "from upstream");
    let sent = upstream.single();
    assert!(
        sent.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Basic "),
        "the PAT is sent"
    );
    for path in ["/healthz", "/readyz"] {
        let r = support::get(format!("http://{}{path}", c.admin)).await;
        assert_eq!(r.status(), 200, "{path}");
    }
    // The families of what happened (series appear with their first
    // event; deploy.rs checks every dashboard family across the modes).
    let scrape = support::metrics(c.admin).await;
    for family in [
        "ado_proxy_build_info{",
        "ado_proxy_requests_total{code=\"200\",route=\"api\",status=\"2xx\"} 1",
        "ado_proxy_request_duration_seconds_count{route=\"api\"} 1",
        "ado_proxy_upstream_duration_seconds_count{upstream=\"default\"} 1",
        "ado_proxy_session_store_up 1",
    ] {
        assert!(scrape.contains(family), "{family} in {scrape}");
    }
    // JSON logs, as the image's environment asks.
    assert!(c.logs().lines().any(|l| l.starts_with('{')), "{}", c.logs());

    let (code, took) = c.terminate();
    assert_eq!(code, 0, "exit code after SIGTERM: {}", c.logs());
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
}

#[tokio::test]
#[ignore = "needs the image: scripts/image-test.sh"]
async fn the_image_keeps_sessions_under_data_across_a_restart() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let dir = owned_dir();
    std::fs::write(dir.path().join("secret"), CLIENT_SECRET).unwrap();
    let data = owned_dir();
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\nshutdown_delay = \"100ms\"\n\
         public_url = \"http://127.0.0.1:{port}\"\n\
         [admin]\naddress = \"127.0.0.1:{admin}\"\n[upstream]\nurl = \"{}\"\n\
         [auth]\nmode = \"user\"\nprovider = \"entra\"\ntenant = \"{TENANT}\"\n\
         client_id = \"{CLIENT_ID}\"\n\
         client_secret_file = \"/etc/ado-auth-proxy/secret\"\n\
         authority_host = \"{}\"\n[session]\nstore = \"embedded\"\n",
        ado.url(),
        idp.url()
    );
    let mounts = [format!("{}:/data", data.path().display())];
    let c = Container::start(&config, dir.path(), &mounts, (port, admin)).await;
    let base = format!("http://{}", c.proxy);
    let b = Browser::new();
    let resp = fake_idp::sign_in(&b, &base, Some(PROJECTS)).await;
    assert_eq!(resp.status(), 302, "signed in: {}", c.logs());
    let get = async |b: &Browser| {
        b.http
            .get(format!("{base}{PROJECTS}"))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(get(&b).await, 200);
    let (code, _) = c.terminate();
    assert_eq!(code, 0, "{}", c.logs());

    // Only the database and its key file (and the lock) were written,
    // owner-only, by the image's user.
    let mut names: Vec<String> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["sessions.db", "sessions.db.keys", "sessions.db.lock"],
        "/data holds"
    );
    for name in ["sessions.db", "sessions.db.keys"] {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(data.path().join(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        assert_eq!(meta.uid(), 65532, "{name}");
    }
    drop(c);

    // A new container on the same /data knows the session.
    let c = Container::start(&config, dir.path(), &mounts, (port, admin)).await;
    assert_eq!(get(&b).await, 200, "the session survived: {}", c.logs());
}

#[test]
#[ignore = "needs the image: scripts/image-test.sh"]
fn the_image_is_small_non_root_and_has_no_shell() {
    let image = image();
    let out = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{.Size}}",
        &image,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (user, size) = text.split_once(' ').unwrap();
    assert_eq!(user, "65532:65532");
    let size: u64 = size.parse().unwrap();
    println!("image size: {:.1} MB", size as f64 / 1e6);
    assert!(size < 40_000_000, "over the 40 MB budget: {size} bytes");

    // Its files: the proxy, libc, CA bundle; no shell, no package manager.
    let id = podman(&["create", &image]);
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    let tar = tempfile::NamedTempFile::new().unwrap();
    let out = podman(&["export", "-o", tar.path().to_str().unwrap(), &id]);
    let _ = podman(&["rm", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = Command::new("tar")
        .arg("tf")
        .arg(tar.path())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines()
            .any(|l| l.ends_with("usr/local/bin/ado-auth-proxy"))
    );
    assert!(
        list.lines()
            .any(|l| l.ends_with("etc/ssl/certs/ca-certificates.crt"))
    );
    for tool in ["sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg"] {
        let found: Vec<&str> = list
            .lines()
            .filter(|l| l.ends_with(&format!("bin/{tool}")))
            .collect();
        assert!(found.is_empty(), "{tool} in the image: {found:?}");
    }
    let shell = podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &image,
        "-c",
        "true",
    ]);
    assert!(!shell.status.success(), "a shell ran in the image");
}

/// The deployment rehearsal: the chart rendered with Helm's SDK, and the
/// proxy container of its pod spec run from the image as the kubelet
/// would run it: the rendered args, env, security contexts (user, group,
/// fsGroup as a supplementary group, read-only root, no capabilities, no
/// privilege escalation), the ConfigMap and Secret mounted read-only with
/// the Secret's defaultMode and fsGroup group ownership (0440, root:2000,
/// as the kubelet writes it), an emptyDir for /data owned by the fsGroup;
/// then its probes asked on their named ports, and a proxied request.
#[tokio::test]
#[ignore = "needs the image: scripts/image-test.sh"]
async fn a_pod_the_chart_renders_starts_probes_and_proxies_as_the_kubelet_runs_it() {
    use std::os::unix::fs::PermissionsExt;
    const PAT: &str = "rehearsal-pat-4711";
    const FS_GROUP: u32 = 2000;
    let upstream = FakeUpstream::recording(|_| respond(200, &[], "from upstream")).await;
    let values = serde_json::json!({
        "config": {
            "upstream": {"url": upstream.url(), "allowed_organizations": ["contoso"]},
            "auth": {
                "mode": "pat", "pat_file": "/var/run/secrets/ado-auth-proxy/pat",
                // The rehearsal's callers come from the host's loopback.
                "allow_remote_callers": true, "allowed_client_cidrs": ["127.0.0.0/8"],
            },
        },
        "secrets": {"pat": PAT},
        "podSecurityContext": {
            "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
            "fsGroup": FS_GROUP, "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("tests/peers/.venv/bin/python"))
        .arg(root.join("tests/peers/render_pod.py"))
        .arg(root.join("helm/ado-auth-proxy"))
        .arg(values.to_string())
        .output()
        .expect("the test venv exists (scripts/test-peers.sh makes it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pod["enable_service_links"], false);
    assert_eq!(pod["automount_token"], false);
    let port = |name: &str| pod["ports"][name].as_u64().unwrap() as u16;
    for p in [port("http"), port("admin")] {
        assert!(
            TcpListener::bind(("0.0.0.0", p)).is_ok(),
            "port {p} is taken: the rehearsal runs the pod's ports on the host network"
        );
    }

    // The volumes, as the kubelet materialises them.
    let volumes = tempfile::tempdir().unwrap();
    let mut run: Vec<String> = vec!["run".into(), "-d".into()];
    let name = format!("ado-rehearsal-{}", free_port());
    run.extend([
        "--name".into(),
        name.clone(),
        "--network".into(),
        "host".into(),
    ]);
    for (i, m) in pod["mounts"].as_array().unwrap().iter().enumerate() {
        let dir = volumes.path().join(format!("v{i}"));
        std::fs::create_dir(&dir).unwrap();
        let volume = &m["volume"];
        if let Some(cm) = volume.get("configMap") {
            let data = &pod["config_maps"][cm["name"].as_str().unwrap()];
            for (file, text) in data.as_object().unwrap() {
                std::fs::write(dir.join(file), text.as_str().unwrap()).unwrap();
                std::fs::set_permissions(dir.join(file), PermissionsExt::from_mode(0o644)).unwrap();
            }
        } else if let Some(secret) = volume.get("secret") {
            // defaultMode, plus group read for the fsGroup.
            let mode = secret["defaultMode"].as_u64().unwrap_or(0o644) as u32 | 0o040;
            for (file, text) in pod["secret"].as_object().unwrap() {
                let f = dir.join(file);
                std::fs::write(&f, text.as_str().unwrap()).unwrap();
                std::os::unix::fs::chown(&f, Some(0), Some(FS_GROUP)).unwrap();
                std::fs::set_permissions(&f, PermissionsExt::from_mode(mode)).unwrap();
            }
            std::os::unix::fs::chown(&dir, Some(0), Some(FS_GROUP)).unwrap();
            std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o2750)).unwrap();
        } else if volume.get("emptyDir").is_some() {
            std::os::unix::fs::chown(&dir, Some(0), Some(FS_GROUP)).unwrap();
            std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o2775)).unwrap();
        } else {
            panic!("a volume the rehearsal does not know: {volume}");
        }
        let ro = if m["readOnly"] == true { ":ro" } else { "" };
        run.extend([
            "-v".into(),
            format!("{}:{}{ro}", dir.display(), m["mountPath"].as_str().unwrap()),
        ]);
    }
    let sec = &pod["security"];
    let psc = &pod["pod_security"];
    if sec["readOnlyRootFilesystem"] == true {
        run.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
    }
    if sec["allowPrivilegeEscalation"] == false {
        run.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    for cap in sec["capabilities"]["drop"].as_array().into_iter().flatten() {
        run.extend(["--cap-drop".into(), cap.as_str().unwrap().into()]);
    }
    run.extend([
        "--user".into(),
        format!("{}:{}", psc["runAsUser"], psc["runAsGroup"]),
        "--group-add".into(),
        psc["fsGroup"].to_string(),
    ]);
    for e in pod["env"].as_array().unwrap() {
        run.push(format!(
            "--env={}={}",
            e["name"].as_str().unwrap(),
            e["value"].as_str().unwrap_or("")
        ));
    }
    run.push(image());
    run.extend(
        pod["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    let refs: Vec<&str> = run.iter().map(String::as_str).collect();
    let started = podman(&refs);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let c = Container {
        name,
        proxy: SocketAddr::from(([127, 0, 0, 1], port("http"))),
        admin: SocketAddr::from(([127, 0, 0, 1], port("admin"))),
    };

    // The kubelet's probes, on their named ports: the startup probe
    // within its period × failureThreshold, then readiness and liveness.
    let probe = |kind: &str| {
        let p = &pod["probes"][kind];
        let get = &p["httpGet"];
        let port = get["port"]
            .as_str()
            .map_or_else(|| get["port"].as_u64().unwrap() as u16, port);
        let url = format!("http://127.0.0.1:{port}{}", get["path"].as_str().unwrap());
        let budget =
            p["periodSeconds"].as_u64().unwrap_or(10) * p["failureThreshold"].as_u64().unwrap_or(3);
        (url, Duration::from_secs(budget))
    };
    let (startup, budget) = probe("startupProbe");
    let since = Instant::now();
    loop {
        let ok = client()
            .get(&startup)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            break;
        }
        let state = podman(&["inspect", "--format", "{{.State.Status}}", &c.name]);
        assert!(
            !String::from_utf8_lossy(&state.stdout).contains("exited"),
            "the container stopped: {}",
            c.logs()
        );
        assert!(
            since.elapsed() < budget.min(Duration::from_secs(60)),
            "startup probe failed: {}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for kind in ["readinessProbe", "livenessProbe"] {
        let (url, _) = probe(kind);
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{kind} {url}: {}", c.logs());
    }
    let resp = support::get(format!("http://{}{PROJECTS}", c.proxy)).await;
    assert_eq!(resp.status(), 200, "{}", c.logs());
    let sent = upstream.requests();
    let pat_header = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!(":{PAT}")
        )
    );
    assert!(
        sent.iter()
            .any(|r| r.uri.starts_with("/contoso/_apis/projects")
                && r.headers["authorization"] == pat_header.as_str()),
        "the PAT from the Secret file is sent"
    );
    let logs = c.logs();
    assert!(
        logs.contains("start-up check of the allowed organizations done"),
        "{logs}"
    );
    assert!(
        !logs.contains("readable by other users"),
        "a 0440 Secret file with fsGroup draws no warning: {logs}"
    );
    assert!(!logs.contains(PAT), "{logs}");
    let (code, _) = c.terminate();
    assert_eq!(code, 0, "{}", c.logs());
}
