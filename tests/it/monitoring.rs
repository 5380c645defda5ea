//! The shipped alerts and dashboard against a real Prometheus (Debian's
//! `prometheus`) scraping live proxies in every mode: healthy proxies
//! raise no alert, a service identity the identity provider refuses
//! raises the one meant for it, and every dashboard query parses and runs
//! in that Prometheus.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ado_auth_proxy::config::{AuthMode, Config, Secret};

use crate::support::fake_idp::{self, CLIENT_SECRET, FakeIdp, Mode};
use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, PROJECTS};

/// A Prometheus on a free port, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `targets` (instance label: the address) every second as job
    /// `ado-auth-proxy`, evaluating the shipped rules every second.
    fn start(targets: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: ado-auth-proxy\n    static_configs:\n      - targets: [{}]\n",
            root.join("deploy/prometheus/alerts.yaml").display(),
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        // Not 9090: that is the proxy's default admin port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (scripts/test-peers.sh installs it)");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let resp = support::client()
                .get(format!("{}{path}", self.url))
                .query(query)
                .send()
                .await;
            // While it starts, Prometheus answers 503 in plain text; its
            // API answers JSON otherwise, errors included.
            let answer = match resp {
                Ok(r) => r.json().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(v) => return v,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("prometheus does not answer: {e}"),
            }
        }
    }

    /// An instant query's result vector (its status must be success).
    async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let v = self.api("/api/v1/query", &[("query", expr)]).await;
        assert_eq!(v["status"], "success", "{expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The alerts pending or firing, as (alertname, instance, state).
    async fn alerts(&self) -> Vec<(String, String, String)> {
        let v = self.api("/api/v1/alerts", &[]).await;
        v["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let s = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
                (
                    s("alertname"),
                    s("instance"),
                    a["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dashboard query with Grafana's variables as Prometheus reads them.
fn as_prometheus(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
        .replace("$job", ".*")
        .replace("$instance", ".*")
}

#[tokio::test]
async fn a_real_prometheus_sees_healthy_modes_quiet_and_a_refused_identity_alerting() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let refusing = FakeIdp::start(Duration::from_secs(3600)).await;
    refusing.set_mode(Mode::InvalidClient);
    let ado = fake_idp::fake_ado(&idp).await;
    let plain = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;

    let mut modes: Vec<(&str, Config)> = Vec::new();
    let mut none = support::config(&plain.url());
    none.auth.mode = AuthMode::None;
    modes.push(("none", none));
    let mut pat = support::config(&plain.url());
    pat.auth.mode = AuthMode::Pat;
    pat.auth.pat = Some(Secret::new("a-personal-access-token"));
    modes.push(("pat", pat));
    modes.push(("user", fake_idp::entra_config(&ado.url(), &idp)));
    modes.push((
        "service",
        fake_idp::service_config(&ado.url(), &idp, CLIENT_SECRET),
    ));
    modes.push((
        "service-refused",
        fake_idp::service_config(&ado.url(), &refusing, CLIENT_SECRET),
    ));

    let mut proxies = Vec::new();
    let mut mode_of = HashMap::new();
    for (mode, c) in modes {
        let p = support::start(c).await;
        mode_of.insert(p.admin_addr.to_string(), mode);
        proxies.push(p);
    }
    // Traffic, so the request series exist and move.
    for p in &proxies {
        for _ in 0..3 {
            let _ = support::client()
                .get(format!("http://{}{PROJECTS}", p.proxy_addr))
                .send()
                .await
                .unwrap();
        }
    }
    let targets: Vec<SocketAddr> = proxies.iter().map(|p| p.admin_addr).collect();
    let prom = Prometheus::start(&targets);

    // Every target scraped, for long enough that rates have two samples.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = prom.query("up == 1").await;
        if up.len() == targets.len() {
            break;
        }
        assert!(Instant::now() < deadline, "not every proxy is up: {up:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The refused identity's alert is pending (its `for` is 5m); no
    // healthy proxy has any alert.
    let deadline = Instant::now() + Duration::from_secs(20);
    let alerts = loop {
        let alerts = prom.alerts().await;
        let meant = alerts.iter().any(|(name, instance, _)| {
            name == "AdoProxyServiceIdentityRefused"
                && mode_of.get(instance) == Some(&"service-refused")
        });
        if meant || Instant::now() > deadline {
            break alerts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let by_mode: Vec<(String, &str, String)> = alerts
        .iter()
        .map(|(n, i, s)| (n.clone(), *mode_of.get(i).unwrap_or(&"?"), s.clone()))
        .collect();
    assert!(
        by_mode
            .iter()
            .any(|(n, m, _)| n == "AdoProxyServiceIdentityRefused" && *m == "service-refused"),
        "{by_mode:?}"
    );
    let healthy: Vec<_> = by_mode
        .iter()
        .filter(|(_, m, _)| *m != "service-refused")
        .collect();
    assert!(healthy.is_empty(), "healthy proxies alert: {healthy:?}");

    // Every dashboard query parses and runs in this Prometheus; the
    // template variables' metric exists for every proxy.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/ado-auth-proxy.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            prom.query(&as_prometheus(expr)).await;
            exprs += 1;
        }
        // Thresholds are where Grafana reads them, not in the layout.
        let grid = panel["gridPos"].as_object().unwrap();
        for k in ["x", "y", "w", "h"] {
            assert!(
                grid[k].is_u64(),
                "{}: gridPos.{k} = {}",
                panel["title"],
                grid[k]
            );
        }
        assert_eq!(grid.len(), 4, "{}", panel["title"]);
    }
    assert!(exprs >= 20, "{exprs}");
    let built = prom.query("ado_proxy_build_info").await;
    assert_eq!(built.len(), targets.len(), "{built:?}");
    // A query that does not parse is refused by the same call (the check
    // above can fail).
    let v = prom
        .api("/api/v1/query", &[("query", "sum(rate(x[5m])")])
        .await;
    assert_eq!(v["status"], "error", "{v}");
}
