//! Test support: the fake upstream, launchers for the proxy (in process and
//! as the real binary), a raw HTTP/1.1 client, and small helpers.

pub mod fake_idp;
pub mod git_backend;
pub mod golden;
pub mod oidc;
pub mod peer;
pub mod process;
pub mod redis;
pub mod squid;
pub mod upstream;
pub mod wait;

pub use golden::golden;
pub use wait::{closed_within, eventually};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use ado_auth_proxy::app::{self, Running};
use ado_auth_proxy::clock::Clock;
use ado_auth_proxy::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

/// A config that listens on free loopback ports and forwards to `upstream`.
pub fn config(upstream: &str) -> Config {
    let mut c = Config::default();
    c.listen.address = "127.0.0.1:0".parse().unwrap();
    c.admin.address = "127.0.0.1:0".parse().unwrap();
    c.listen.shutdown_delay = Duration::from_millis(100);
    c.listen.shutdown_grace = Duration::from_secs(5);
    c.upstream.url = Url::parse(upstream).unwrap();
    // Tests that exercise persistence choose their store and path.
    c.session.store = ado_auth_proxy::config::StoreKind::Memory;
    // Tests count upstream requests; the one that checks the start-up
    // look turns it on.
    c.auth.check_pat_at_start = false;
    c
}

/// Starts the proxy in this process with `config`. Set `TEST_LOG=debug`
/// to see its logs.
pub async fn start(config: Config) -> Running {
    start_with(config, Clock::default()).await
}

/// [`start`], with the proxy keeping time by `clock`: a test moves it
/// forward (`clock.advance`) instead of sleeping until tokens come due.
pub async fn start_with(config: Config, clock: Clock) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
        .with_test_writer()
        .try_init();
    // A loopback listener's derived public URL is http://localhost:PORT
    // (what Entra accepts as an http redirect URI); the tests sign in
    // on 127.0.0.1, where their cookie jars then hold the cookies. So a
    // test proxy on port 0 gets a free port and 127.0.0.1 as its public
    // URL, and another port if that one was taken in between.
    let derive = config.listen.public_url.is_none()
        && config.listen.address.port() == 0
        && config.listen.address.ip().is_loopback();
    if !derive {
        return app::start_with(config, clock).await.expect("proxy starts");
    }
    for _ in 0..20 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = config.clone();
        c.listen.address.set_port(port);
        let scheme = if c.listen.tls() { "https" } else { "http" };
        c.listen.public_url = Some(Url::parse(&format!("{scheme}://127.0.0.1:{port}")).unwrap());
        match app::start_with(c, clock.clone()).await {
            Ok(running) => return running,
            Err(app::StartError::Bind { .. }) => continue,
            Err(e) => panic!("proxy starts: {e}"),
        }
    }
    panic!("no free port for the proxy in 20 tries")
}

/// The problem+json answer to a GET of `url` (no credential).
pub async fn problem(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .header("accept", "application/problem+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A reqwest client that never follows redirects.
pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// The request most tests forward: a project list of organization
/// `contoso`.
pub const PROJECTS: &str = "/contoso/_apis/projects?api-version=7.1";

/// `GET url` with [`client`]; panics when no response arrives.
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Response {
    client().get(url).send().await.expect("a response")
}

/// `GET url` asking for `application/problem+json`, as a program that
/// reads RFC 9457 answers does.
pub async fn get_problem(url: impl reqwest::IntoUrl) -> reqwest::Response {
    client()
        .get(url)
        .header("accept", "application/problem+json")
        .send()
        .await
        .expect("a response")
}

/// Installs ring as rustls' process default (reqwest is built without one).
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The first value of query parameter `name` in `url`.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Runs a test peer (node or python script) that prints one JSON line,
/// failing with its output if it fails or takes longer than `limit`.
pub async fn run_peer(mut cmd: tokio::process::Command, limit: Duration) -> serde_json::Value {
    let out = cmd.kill_on_drop(true).output();
    let out = tokio::time::timeout(limit, out)
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs the peers)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A raw HTTP/1.1 exchange: writes `request` as is and returns the whole
/// response text (the connection is closed by `Connection: close`).
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (431, 400) and close before it read everything.
    let _ = s.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A proxy in mode `pat` (the credential an attacker wants, read from a
/// PAT file in the returned directory) in front of `up`, changed by
/// `edit` before it starts.
pub async fn pat_proxy(
    up: &upstream::FakeUpstream,
    edit: impl FnOnce(&mut Config),
) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pat = dir.path().join("pat");
    std::fs::write(&pat, "the-proxy-pat-0123456789\n").unwrap();
    let mut c = config(&up.url());
    c.auth.mode = ado_auth_proxy::config::AuthMode::Pat;
    c.auth.pat_file = Some(pat);
    edit(&mut c);
    (start(c).await, dir)
}

/// The status code of a raw HTTP/1.1 response.
pub fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {resp:?}"))
}

/// The body of `GET /metrics` on the admin listener.
pub async fn metrics(admin: SocketAddr) -> String {
    client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the unlabelled series `name` in metrics text.
pub fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
        .parse()
        .unwrap()
}

/// A throwaway CA and a server certificate it signed for `127.0.0.1` and
/// `localhost`, made with the openssl command line:
/// (CA certificate, server certificate, server key), all PEM files.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    self_signed_for(dir, &[])
}

/// [`self_signed`] whose server certificate also names `hosts`.
pub fn self_signed_for(dir: &Path, hosts: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let p = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("openssl is installed (scripts/test.sh installs it)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ][..],
            &ec,
        ]
        .concat(),
    );
    openssl(
        &[
            &[
                "req",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ][..],
            &ec,
        ]
        .concat(),
    );
    let extra: String = hosts.iter().map(|h| format!(",DNS:{h}")).collect();
    std::fs::write(
        p("ext.cnf"),
        format!(
            "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1{extra}\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

/// A client certificate (and its key) signed by the CA [`self_signed`]
/// made in `dir`.
pub fn client_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("openssl is installed (scripts/test.sh installs it)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=ado-auth-proxy",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
    ]);
    std::fs::write(
        dir.join("client.cnf"),
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "client.cnf",
        "-out",
        "client.pem",
    ]);
    (dir.join("client.pem"), dir.join("client.key"))
}

/// A TLS server config (ALPN h2 and http/1.1) for `cert` and `key`.
pub fn server_tls(cert: &Path, key: &Path) -> rustls::ServerConfig {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let mut c = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    c
}

/// A blocking `GET path` with `Connection: close`, for tests without a
/// runtime; returns the raw response.
pub fn blocking_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
