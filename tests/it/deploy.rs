//! The shipped monitoring files against the real proxy: every metric the
//! Grafana dashboard and the Prometheus alerts use exists in `/metrics` of
//! a running proxy (one in mode `user`, one in mode `service`).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::fake_idp::{self, CLIENT_ID, CLIENT_SECRET, FakeIdp, TENANT};
use crate::support::{self, metrics};

/// `ado_proxy_*` names in a text.
pub(crate) fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ado_proxy_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Series names a scrape exports (histograms with their suffixes).
pub(crate) fn exported(scrape: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        out.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_metric_in_the_dashboard_and_alerts_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard =
        std::fs::read_to_string(root.join("deploy/grafana/ado-auth-proxy.json")).unwrap();
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");

    // A user-mode proxy and a service-mode proxy, freshly started.
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let user = support::start(fake_idp::entra_config(&ado.url(), &idp)).await;
    let service = support::start(fake_idp::service_config(&ado.url(), &idp, CLIENT_SECRET)).await;
    let resp = support::get(format!(
        "http://{}/contoso/_apis/projects",
        service.proxy_addr
    ))
    .await;
    assert_eq!(resp.status(), 200, "the service proxy has its token");

    // And legacy Azure DevOps OAuth with its two secret slots.
    let secrets = tempfile::tempdir().unwrap();
    let mut c = fake_idp::entra_config(&ado.url(), &idp);
    c.auth.provider = Some(ado_auth_proxy::config::Provider::AzureDevops);
    c.auth.tenant = None;
    c.auth.client_secret = None;
    for (name, slot) in [("current", "a"), ("next", "b")] {
        std::fs::write(secrets.path().join(name), slot).unwrap();
    }
    c.auth.client_secret_file = Some(secrets.path().join("current"));
    c.auth.client_secret_next_file = Some(secrets.path().join("next"));
    let legacy = support::start(c).await;

    // And a service identity whose secret Entra refuses: its failure
    // series exists only while it fails.
    let refused =
        support::start(fake_idp::service_config(&ado.url(), &idp, "not-the-secret")).await;
    let resp = support::get(format!(
        "http://{}/contoso/_apis/projects",
        refused.proxy_addr
    ))
    .await;
    assert_eq!(resp.status(), 502, "the refused service proxy has no token");

    // And an upstream that is not there: series appear with their first
    // event, so its error series exists only once it failed.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_url = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let mut c = support::config(&gone_url);
    c.auth.mode = ado_auth_proxy::config::AuthMode::Pat;
    c.auth.pat = Some(ado_auth_proxy::config::Secret::new("a-pat"));
    let dead = support::start(c).await;
    let resp = support::get(format!("http://{}/contoso/_apis/projects", dead.proxy_addr)).await;
    assert_eq!(resp.status(), 502);

    let mut available = exported(&metrics(user.admin_addr).await);
    available.extend(exported(&metrics(dead.admin_addr).await));
    available.extend(exported(&metrics(refused.admin_addr).await));
    available.extend(exported(&metrics(service.admin_addr).await));
    available.extend(exported(&metrics(legacy.admin_addr).await));

    let used_by_dashboard = metric_names(&dashboard);
    let used_by_alerts = metric_names(&alerts);
    assert!(used_by_dashboard.len() >= 15, "{used_by_dashboard:?}");
    assert!(used_by_alerts.len() >= 6, "{used_by_alerts:?}");
    let missing: Vec<&String> = used_by_dashboard
        .iter()
        .chain(&used_by_alerts)
        .filter(|m| !available.contains(*m))
        .collect();
    assert!(missing.is_empty(), "not in /metrics: {missing:?}");

    // What the issue asks the dashboard to show.
    for needed in [
        "ado_proxy_requests_total",
        "ado_proxy_request_duration_seconds_bucket",
        "ado_proxy_upstream_errors_total",
        "ado_proxy_logins_total",
        "ado_proxy_token_refreshes_total",
        "ado_proxy_sessions_active",
        "ado_proxy_upstream_denials_total",
        "ado_proxy_upstream_throttled_total",
    ] {
        assert!(
            used_by_dashboard.contains(needed),
            "the dashboard lacks {needed}"
        );
    }
    // And the alerts.
    for needed in [
        "ado_proxy_token_refreshes_total",
        "ado_proxy_upstream_denials_total",
        "ado_proxy_requests_total",
        "ado_proxy_request_duration_seconds_bucket",
        "ado_proxy_service_token_expiry_seconds",
        "ado_proxy_service_token_failing_since_timestamp_seconds",
    ] {
        assert!(used_by_alerts.contains(needed), "the alerts lack {needed}");
    }
}

/// The `config.toml` blocks of a manifest's ConfigMaps.
fn embedded_configs(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = manifest.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim_end() != "  config.toml: |" {
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            if let Some(body) = next.strip_prefix("    ") {
                block.push_str(body);
                block.push('\n');
                lines.next();
            } else if next.trim().is_empty() {
                lines.next();
            } else {
                break;
            }
        }
        out.push(block);
    }
    out
}

#[test]
fn the_kubernetes_manifests_validate_and_their_configs_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");

    // Against the Kubernetes 1.30 schemas (native sidecars need 1.29+).
    let validator = root.join("tests/peers/.venv/bin/kubernetes-validate");
    let out = std::process::Command::new(&validator)
        .args(["-k", "1.30.0", "--strict", "--quiet"])
        .args(&files)
        .output()
        .expect("kubernetes-validate is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for path in &files {
        no_service_links(
            &std::fs::read_to_string(path).unwrap(),
            &path.display().to_string(),
        );
    }

    // Each ConfigMap's config passes check-config once the placeholders
    // and mounted files are filled in, as a deployment would.
    let mut checked = 0;
    for path in &files {
        for config in embedded_configs(&std::fs::read_to_string(path).unwrap()) {
            check_config(&config, &path.display().to_string());
            checked += 1;
        }
    }
    assert!(checked >= 3, "configs found: {checked}");
}

/// Every pod template turns the kubelet's Docker-link variables off: for
/// a Service named `ado-auth-proxy` they share the configuration prefix.
fn no_service_links(yaml: &str, origin: &str) {
    let pods = yaml
        .lines()
        .filter(|l| l.trim_start() == "containers:")
        .count();
    let off = yaml
        .lines()
        .filter(|l| l.trim() == "enableServiceLinks: false")
        .count();
    assert_eq!(
        pods, off,
        "{origin}: every pod sets enableServiceLinks: false"
    );
    // Every proxy container's startup probe waits for /startupz.
    let proxies = yaml
        .lines()
        .filter(|l| l.trim_start().starts_with("image:") && l.contains("ado-auth-proxy"))
        .count();
    let probed = yaml
        .lines()
        .filter(|l| l.contains("path: /startupz"))
        .count();
    assert_eq!(
        proxies, probed,
        "{origin}: each proxy container's startupProbe is /startupz"
    );
}

/// Runs `check-config` on `config` with the placeholders and mounted
/// files a deployment provides filled in through the environment; and
/// `check-config --no-files` with only the placeholders, as a user checks
/// a Kubernetes config where its Secrets are not mounted.
fn check_config(config: &str, origin: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let toml = tmp.path().join("config.toml");
    std::fs::write(&toml, config).unwrap();
    let out = std::process::Command::new(crate::support::process::binary())
        .args([
            "check-config",
            "--no-files",
            "--config",
            toml.to_str().unwrap(),
        ])
        .envs([
            ("ADO_AUTH_PROXY_AUTH__TENANT", TENANT),
            ("ADO_AUTH_PROXY_AUTH__CLIENT_ID", CLIENT_ID),
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_TENANT_ID", TENANT),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{origin} (--no-files): {}\n{config}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_config_with_files(config, origin);
}

fn check_config_with_files(config: &str, origin: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    };
    let key = ado_auth_proxy::seal::generate_key().unwrap();
    let env = [
        ("ADO_AUTH_PROXY_AUTH__TENANT", TENANT.to_string()),
        ("ADO_AUTH_PROXY_AUTH__CLIENT_ID", CLIENT_ID.to_string()),
        (
            "ADO_AUTH_PROXY_AUTH__CLIENT_SECRET_FILE",
            file("secret", "s3cret"),
        ),
        (
            "ADO_AUTH_PROXY_SESSION__ENCRYPTION_KEYS_FILE",
            file("keys", &key),
        ),
        (
            "ADO_AUTH_PROXY_SESSION__REDIS_PASSWORD_FILE",
            file("redis", "pw"),
        ),
        ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_FEDERATED_TOKEN_FILE", file("token", "eyJ.federated")),
    ];
    let toml = file("config.toml", config);
    let out = std::process::Command::new(crate::support::process::binary())
        .args(["check-config", "--config", &toml])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{origin}: {}\n{config}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Renders and lints the chart with Helm's own SDK (no helm binary here)
/// for the default values and every example, writing each case's files
/// under `out`; the report of `tests/peers/check_chart.py`.
pub(crate) fn render_chart(out: &std::path::Path) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("tests/peers/.venv/bin/python"))
        .arg(root.join("tests/peers/check_chart.py"))
        .arg(root.join("helm/ado-auth-proxy"))
        .arg(out)
        .output()
        .expect("the test venv exists (scripts/test.sh makes it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_helm_chart_renders_lints_validates_and_its_config_loads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = tempfile::tempdir().unwrap();
    let venv = root.join("tests/peers/.venv/bin");
    let report = render_chart(out_dir.path());
    assert_eq!(report["schema_refuses_typo"], true, "values.schema.json");
    assert_eq!(
        report["schema_refuses_config_typo"], true,
        "values.schema.json looks inside config:"
    );
    assert_eq!(
        report["ingress_without_caller_secret_refused"], true,
        "an Ingress in front of one identity needs a caller secret"
    );
    assert_eq!(report["ingress_with_caller_secret_renders"], true);
    assert_eq!(
        report["open_identity_refused"], true,
        "mode pat behind the Service without a caller rule would crash-loop"
    );
    let cases = report["cases"].as_object().unwrap();
    assert!(
        cases.len() >= 3,
        "default values and the examples: {cases:?}"
    );
    let mut manifests = Vec::new();
    for (name, case) in cases {
        assert_eq!(
            case["lint_problems"].as_array().unwrap().len(),
            0,
            "{name}: {}",
            case["lint_problems"]
        );
        let config = std::fs::read_to_string(case["config"].as_str().unwrap()).unwrap();
        check_config(&config, &format!("chart, values {name}"));
        // In-cluster callers reach it by its Service's names (release
        // "proxy" in namespace "tools"): no 421 for them.
        for host in [
            "\"proxy-ado-auth-proxy\"",
            "\"proxy-ado-auth-proxy.tools.svc\"",
            "\"proxy-ado-auth-proxy.tools.svc.cluster.local\"",
        ] {
            assert!(
                config.contains(host),
                "{name}: {host} in allowed_hosts: {config}"
            );
        }
        for m in case["manifests"].as_array().unwrap() {
            let m = m.as_str().unwrap().to_string();
            no_service_links(&std::fs::read_to_string(&m).unwrap(), &m);
            manifests.push(m);
        }
    }
    // No service account token in any pod (the proxy never calls the
    // Kubernetes API); the scheduling values reach the pod.
    for (name, case) in cases {
        for m in case["manifests"].as_array().unwrap() {
            let text = std::fs::read_to_string(m.as_str().unwrap()).unwrap();
            if text.contains("kind: Deployment") {
                assert!(
                    text.contains("automountServiceAccountToken: false"),
                    "{name}: {text}"
                );
            }
        }
    }
    let shared: String = cases["shared-redis"]["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| std::fs::read_to_string(m.as_str().unwrap()).unwrap())
        .collect();
    for want in [
        "imagePullSecrets:",
        "- name: registry-credentials",
        "priorityClassName:",
        "tools-critical",
        "topologySpreadConstraints:",
    ] {
        assert!(shared.contains(want), "{want} in the shared-redis example");
    }
    // The client-facing Service carries no admin port; the ServiceMonitor
    // scrapes a metrics Service of its own.
    for (name, case) in cases {
        let mut services = Vec::new();
        for m in case["manifests"].as_array().unwrap() {
            let text = std::fs::read_to_string(m.as_str().unwrap()).unwrap();
            if text.contains("kind: Service\n") {
                services.push(text);
            }
        }
        let client = services
            .iter()
            .find(|t| !t.contains("component: metrics"))
            .unwrap_or_else(|| panic!("{name}: a client Service"));
        assert!(!client.contains("name: admin"), "{name}: {client}");
        let monitored = case["kinds"].to_string().contains("ServiceMonitor");
        let metrics = services.iter().find(|t| t.contains("component: metrics"));
        assert_eq!(
            metrics.is_some(),
            monitored,
            "{name}: a metrics Service with the ServiceMonitor"
        );
        if let Some(m) = metrics {
            assert!(m.contains("name: admin"), "{name}: {m}");
        }
    }
    let kinds = cases["service-workload-identity"]["kinds"].to_string();
    for kind in ["PodMonitor", "NetworkPolicy", "PrometheusRule"] {
        assert!(kinds.contains(kind), "{kind} in {kinds}");
    }
    // The examples exercise the optional objects.
    let kinds = cases["shared-redis"]["kinds"].to_string();
    for kind in [
        "Ingress",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds}");
    }
    let out = std::process::Command::new(venv.join("kubernetes-validate"))
        .args(["-k", "1.30.0", "--strict", "--quiet"])
        .args(&manifests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The chart's alert rules are the shipped ones.
    assert_eq!(
        std::fs::read_to_string(root.join("helm/ado-auth-proxy/files/alerts.yaml")).unwrap(),
        std::fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).unwrap(),
        "copy deploy/prometheus/alerts.yaml to helm/ado-auth-proxy/files/"
    );
}

/// What the Dockerfile promises, checked against the proxy and the
/// manifests without building it (image.rs runs the built image): its
/// environment variables are real config keys that load, it runs as a
/// non-root user, and it exposes the ports the manifests probe.
#[test]
fn the_dockerfile_agrees_with_the_proxy_and_the_manifests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked --bin ado-auth-proxy"));
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "{user}"
    );
    assert!(dockerfile.contains("EXPOSE 8080 9090"));
    for manifest in ["sidecar.yaml", "shared.yaml"] {
        let text = std::fs::read_to_string(root.join("deploy/kubernetes").join(manifest)).unwrap();
        assert!(text.contains("containerPort: 9090"), "{manifest}");
        assert!(text.contains("runAsUser: 65532"), "{manifest}");
    }
    // The image's ADO_AUTH_PROXY_* defaults are keys the proxy accepts.
    let mut env: Vec<(String, String)> = Vec::new();
    let mut in_env = false;
    for line in dockerfile.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("ENV ") {
            in_env = true;
            env.extend(parse_env(rest));
        } else if in_env {
            env.extend(parse_env(line));
        }
        in_env = in_env && line.ends_with('\\');
    }
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"ADO_AUTH_PROXY_SESSION__PATH"), "{names:?}");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let out = std::process::Command::new(crate::support::process::binary())
        .args(["check-config", "--config", config.to_str().unwrap()])
        .envs(
            env.iter()
                .filter(|(k, _)| k != "ADO_AUTH_PROXY_CONFIG")
                .map(|(k, v)| (k, v)),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("path = \"/data/sessions.db\""),
        "the image's session path is used"
    );
}

/// `KEY=value` pairs of one Dockerfile ENV line.
fn parse_env(line: &str) -> Vec<(String, String)> {
    line.trim_end_matches('\\')
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The shipped alerts load in a real Prometheus's `promtool`, and its unit
/// tests (tests/prometheus/alerts_test.yaml) pass: each alert's failing
/// case fires, the healthy one does not. A healthy PAT sidecar (no session
/// store) exports what those tests call healthy.
#[tokio::test]
async fn the_alerts_pass_promtool_and_a_healthy_sidecar_looks_healthy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for args in [
        vec!["check", "rules", "deploy/prometheus/alerts.yaml"],
        vec!["test", "rules", "tests/prometheus/alerts_test.yaml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(root)
            .output()
            .expect("promtool is installed (scripts/test-peers.sh installs prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert has a unit test and a runbook section it links to.
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(root.join("tests/prometheus/alerts_test.yaml")).unwrap();
    let runbooks = std::fs::read_to_string(root.join("docs/alerts.md")).unwrap();
    let names: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no promtool unit test"
        );
        let link = format!(
            "runbook_url: \"https://github.com/ado-auth-proxy/ado-auth-proxy/blob/main/docs/alerts.md#{}\"",
            name.to_lowercase()
        );
        assert!(rules.contains(&link), "{name} lacks {link}");
        assert!(
            runbooks.contains(&format!("\n## {name}\n")),
            "docs/alerts.md lacks {name}"
        );
    }
    let up = crate::support::upstream::FakeUpstream::recording(|_| {
        crate::support::upstream::respond(200, &[], "{}")
    })
    .await;
    let mut c = crate::support::config(&up.url());
    c.auth.mode = ado_auth_proxy::config::AuthMode::Pat;
    c.auth.pat = Some(ado_auth_proxy::config::Secret::new("a-pat"));
    let p = crate::support::start(c).await;
    let m = crate::support::metrics(p.admin_addr).await;
    assert_eq!(
        crate::support::metric_value(&m, "ado_proxy_session_store_up"),
        1.0,
        "a sidecar without a store must not look like one whose store is down"
    );
}
