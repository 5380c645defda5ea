//! WebSockets through the proxy: a real client and server (PyPI
//! `websockets`, `tests/peers/ws_peer.py`), SignalR's paths and the
//! organization allowlist, the idle timeout, the tunnel cap, and hostile
//! upgrades over raw sockets.

use std::path::PathBuf;
use std::time::Duration;

use ado_auth_proxy::app::Running;
use ado_auth_proxy::config::{AuthMode, Config, Secret};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::{self, closed_within, metrics};

/// A SignalR connect path as Azure DevOps' web UI uses it.
const SIGNALR: &str = "/_signalr/contoso/_apis/0f2b7a9c-0000-4000-8000-000000000001/signalr/connect\
?transport=webSockets&clientProtocol=1.5&connectionToken=abc";

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/.venv/bin/python");
    assert!(
        p.exists(),
        "tests/peers/.venv is missing: run scripts/test.sh (it installs websockets there)"
    );
    p
}

fn peer() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/ws_peer.py")
}

/// The real WebSocket server, and the file its handshakes are logged to.
struct WsServer {
    port: u16,
    log: tempfile::NamedTempFile,
    _child: tokio::process::Child,
}

impl WsServer {
    async fn start() -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = tokio::process::Command::new(python())
            .arg(peer())
            .arg("server")
            .arg(log.path())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the websockets peer starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the websockets peer prints its port")
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        Self {
            port: v["port"].as_u64().unwrap() as u16,
            log,
            _child: child,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Exactly one handshake reached the server: SignalR's connect, with
    /// the proxy's PAT (Basic, empty user name), not the client's.
    fn saw_one_signalr_handshake_with_the_pat(&self) {
        let seen = self.handshakes();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["path"], SIGNALR);
        assert_eq!(
            seen[0]["authorization"],
            "Basic OmEtcGVyc29uYWwtYWNjZXNzLXRva2Vu"
        );
    }

    /// The handshakes the server saw.
    fn handshakes(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

async fn proxy(server: &WsServer, tweak: impl FnOnce(&mut Config)) -> Running {
    let mut c = support::config(&server.url());
    c.auth.mode = AuthMode::Pat;
    c.auth.pat = Some(Secret::new("a-personal-access-token"));
    tweak(&mut c);
    support::start(c).await
}

async fn run(mode: &str, url: &str) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(peer()).arg(mode).arg(url);
    support::run_peer(cmd, Duration::from_secs(60)).await
}

/// A WebSocket handshake written by hand.
fn handshake(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Sends `request` and reads the response head; the stream stays open.
async fn open_raw(addr: std::net::SocketAddr, request: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("a response head")
            .unwrap();
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test]
async fn a_websocket_client_talks_through_the_proxy_with_its_credential() {
    let server = WsServer::start().await;
    let p = proxy(&server, |_| {}).await;
    let url = format!("ws://{}{SIGNALR}", p.proxy_addr);
    let v = run("client", &url).await;
    assert_eq!(v["text"], "hello through the proxy", "{v}");
    assert_eq!(v["large_echoed"], true, "a 4 MiB frame both ways: {v}");
    assert_eq!(v["close_code"], 1000, "{v}");
    assert_eq!(v["close_rcvd"], true, "the close handshake completed: {v}");

    server.saw_one_signalr_handshake_with_the_pat();

    let mut m = String::new();
    for _ in 0..50 {
        m = metrics(p.admin_addr).await;
        if m.contains("ado_proxy_tunnels_ended_total{reason=\"closed\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        m.contains("ado_proxy_tunnels_ended_total{reason=\"closed\"} 1"),
        "the tunnel ended as closed: {m}"
    );
    assert!(m.contains("ado_proxy_tunnels_open 0"), "{m}");
    let up = support::metric_value(&m, "ado_proxy_tunnel_bytes_total{direction=\"up\"}");
    let down = support::metric_value(&m, "ado_proxy_tunnel_bytes_total{direction=\"down\"}");
    assert!(
        up > 4.0 * 1024.0 * 1024.0 && down > 4.0 * 1024.0 * 1024.0,
        "{up} {down}"
    );
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_the_timeout() {
    let server = WsServer::start().await;
    let p = proxy(&server, |c| {
        c.listen.tunnel_idle_timeout = Duration::from_secs(1);
    })
    .await;
    let v = run("idle", &format!("ws://{}{SIGNALR}", p.proxy_addr)).await;
    let after = v["closed_after"].as_f64().expect("closed by the proxy");
    assert!((0.9..10.0).contains(&after), "{after}");
    let m = metrics(p.admin_addr).await;
    assert!(
        m.contains("ado_proxy_tunnels_ended_total{reason=\"idle\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn tunnels_beyond_the_cap_get_a_503_naming_the_key() {
    let server = WsServer::start().await;
    let p = proxy(&server, |c| c.listen.max_tunnels = 1).await;
    let (_held, head) = open_raw(p.proxy_addr, &handshake(SIGNALR, "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    let (_, refused) = open_raw(p.proxy_addr, &handshake(SIGNALR, "Connection: close\r\n")).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let answer =
        support::raw_http(p.proxy_addr, &handshake(SIGNALR, "Connection: close\r\n")).await;
    assert!(answer.contains("listen.max_tunnels"), "{answer}");
    assert_eq!(
        server.handshakes().len(),
        1,
        "refused before going upstream"
    );
    let m = metrics(p.admin_addr).await;
    assert!(m.contains("ado_proxy_tunnels_refused_total 2"), "{m}");
    assert!(m.contains("ado_proxy_tunnels_open 1"), "{m}");
}

#[tokio::test]
async fn hostile_upgrades_are_refused_before_a_credential_is_attached() {
    let server = WsServer::start().await;
    let p = proxy(&server, |c| {
        c.upstream.allowed_organizations = vec!["contoso".into()];
    })
    .await;
    let other_org = SIGNALR.replace("/contoso/", "/fabrikam/");
    let cases = [
        // Cross-site WebSocket hijacking: a page of another site.
        (
            handshake(
                SIGNALR,
                "Origin: https://evil.example\r\nConnection: close\r\n",
            ),
            "403",
        ),
        (
            handshake(
                SIGNALR,
                "Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: websocket\r\n",
            ),
            "403",
        ),
        // DNS rebinding: a name that is not the proxy's.
        (
            handshake(SIGNALR, "").replace("Host: 127.0.0.1", "Host: evil.example"),
            "421",
        ),
        // The allowlist holds for SignalR's /_signalr/{org}/ too.
        (handshake(&other_org, ""), "403"),
        (handshake("/_signalr/_apis/x/signalr/connect", ""), "403"),
        (
            handshake("/_signalr/%66abrikam/_apis/x/signalr/connect", ""),
            "403",
        ),
    ];
    for (request, status) in cases {
        let (_, head) = open_raw(p.proxy_addr, &request).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?} -> {head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("upgrade: websocket"),
            "{head}"
        );
    }
    assert!(server.handshakes().is_empty(), "{:?}", server.handshakes());
    // The same origin is fine.
    let (_s, head) = open_raw(
        p.proxy_addr,
        &handshake(SIGNALR, &format!("Origin: http://{}\r\n", p.proxy_addr)),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[tokio::test]
async fn an_upgrade_the_upstream_refuses_is_answered_like_any_request() {
    let server = WsServer::start().await;
    // Pass-through without a client credential: the server refuses the
    // handshake with 401, which reaches the client as a 401.
    let mut c = support::config(&server.url());
    c.auth.mode = AuthMode::None;
    let p = support::start(c).await;
    let (_, head) = open_raw(p.proxy_addr, &handshake(SIGNALR, "Connection: close\r\n")).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let m = metrics(p.admin_addr).await;
    assert!(m.contains("ado_proxy_tunnels_open 0"), "{m}");
}

#[tokio::test]
async fn shutdown_closes_open_tunnels() {
    let server = WsServer::start().await;
    let p = proxy(&server, |_| {}).await;
    let (mut s, head) = open_raw(p.proxy_addr, &handshake(SIGNALR, "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    p.shutdown();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the tunnel was closed at shutdown");
    p.wait().await;
}

/// A masked client text frame (RFC 6455 §5.2) carrying `text`.
fn text_frame(text: &str) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test]
async fn an_http2_client_opens_a_websocket_with_extended_connect() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let server = WsServer::start().await;
    // The tunnel outlives listen.idle_timeout: its CONNECT stream is a
    // request in flight for as long as it is open, so the connection's
    // idle watchdog leaves it alone.
    let p = proxy(&server, |c| c.listen.idle_timeout = Duration::from_secs(1)).await;
    let tcp = TcpStream::connect(p.proxy_addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // The server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) come first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{}{SIGNALR}", p.proxy_addr))
        .header("sec-websocket-version", "13")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "RFC 8441 accepts with 200");
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    let mut stream = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    // Past the idle close (1 s, checked every 250 ms) and its 1 s grace.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    stream.write_all(&text_frame("over h2")).await.unwrap();
    let mut echo = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echo))
        .await
        .expect("the echo arrives")
        .unwrap();
    assert_eq!(&echo[..2], &[0x81, 7], "an unmasked text frame of 7 bytes");
    assert_eq!(&echo[2..], b"over h2");

    // Upstream it was the HTTP/1.1 handshake, with the proxy's credential.
    server.saw_one_signalr_handshake_with_the_pat();
}

/// Reads an echoed text frame of `text` from `s`.
async fn read_echo(s: &mut TcpStream, text: &str) {
    let mut echo = vec![0u8; 2 + text.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut echo))
        .await
        .expect("the echo arrives")
        .unwrap();
    assert_eq!(&echo[2..], text.as_bytes());
}

/// Mode `user` in front of `server`, with the fake Entra it signs in at.
async fn user_proxy(server: &WsServer) -> (crate::support::fake_idp::FakeIdp, Running) {
    use crate::support::fake_idp::{self, FakeIdp};
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let c = fake_idp::entra_config(&server.url(), &idp);
    let p = support::start_with(c, idp.clock()).await;
    (idp, p)
}

/// A SignalR tunnel through `addr` opened with `credential` (header
/// lines), shown to echo.
async fn open_tunnel(addr: std::net::SocketAddr, credential: &str) -> TcpStream {
    let (mut s, head) = open_raw(addr, &handshake(SIGNALR, credential)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(&text_frame("alive")).await.unwrap();
    read_echo(&mut s, "alive").await;
    s
}

/// The tunnels that ended because their credential did.
async fn ended_with_their_credential(p: &Running) -> f64 {
    let m = metrics(p.admin_addr).await;
    support::metric_value(
        &m,
        "ado_proxy_tunnels_ended_total{reason=\"credential_ended\"}",
    )
}

#[tokio::test]
async fn a_tunnel_ends_when_its_proxy_token_is_revoked() {
    use crate::support::fake_idp;
    let server = WsServer::start().await;
    let (_idp, p) = user_proxy(&server).await;
    let base = format!("http://{}", p.proxy_addr);
    let b = crate::support::oidc::Browser::new();
    assert_eq!(fake_idp::sign_in(&b, &base, None).await.status(), 302);
    let make_token = |name: &'static str| {
        let (http, url) = (b.http.clone(), format!("{base}/.auth/tokens"));
        async move {
            let made: serde_json::Value = http
                .post(url)
                .json(&serde_json::json!({"name": name, "expires_in_days": 7}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            made
        }
    };
    let bearer = |made: &serde_json::Value| {
        format!(
            "Authorization: Bearer {}\r\n",
            made["token"].as_str().unwrap()
        )
    };
    // A tunnel of the token, and one of another token that stays.
    let made = make_token("ws").await;
    let mut revoked = open_tunnel(p.proxy_addr, &bearer(&made)).await;
    let mut kept = open_tunnel(p.proxy_addr, &bearer(&make_token("kept").await)).await;
    let del = b
        .http
        .delete(format!(
            "{base}/.auth/tokens/{}",
            made["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert!(
        closed_within(&mut revoked, Duration::from_secs(10)).await,
        "the revoked token's tunnel is closed"
    );
    kept.write_all(&text_frame("still")).await.unwrap();
    read_echo(&mut kept, "still").await;
    assert_eq!(ended_with_their_credential(&p).await, 1.0);
}

#[tokio::test]
async fn a_tunnel_ends_when_its_session_signs_out() {
    use crate::support::fake_idp::{self, set_cookie};
    let server = WsServer::start().await;
    let (_idp, p) = user_proxy(&server).await;
    let base = format!("http://{}", p.proxy_addr);
    // Two sessions (two browsers), each with a tunnel its cookie opened.
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let b = crate::support::oidc::Browser::new();
        let resp = fake_idp::sign_in(&b, &base, None).await;
        assert_eq!(resp.status(), 302);
        let cookie = set_cookie(&resp, "ado_proxy_session").expect("a session cookie");
        let tunnel = open_tunnel(
            p.proxy_addr,
            &format!("Origin: {base}\r\nCookie: ado_proxy_session={cookie}\r\n"),
        )
        .await;
        sessions.push((b, tunnel));
    }
    let (signed_out, mut ended) = sessions.remove(0);
    let (_, mut kept) = sessions.remove(0);
    let resp = signed_out
        .http
        .post(format!("{base}/.auth/logout"))
        .header("origin", &base)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_redirection() || resp.status().is_success(),
        "{resp:?}"
    );
    assert!(
        closed_within(&mut ended, Duration::from_secs(10)).await,
        "the signed-out session's tunnel is closed"
    );
    kept.write_all(&text_frame("still")).await.unwrap();
    read_echo(&mut kept, "still").await;
    assert_eq!(ended_with_their_credential(&p).await, 1.0);
}

/// A tunnel opened with a client's own Entra token
/// (`auth.accept_client_tokens`) ends when that token expires.
#[tokio::test]
async fn a_tunnel_of_a_clients_own_token_ends_at_its_expiry() {
    use crate::support::fake_idp::{self, FakeIdp, keys};
    let server = WsServer::start().await;
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let mut c = fake_idp::entra_config(&server.url(), &idp);
    c.auth.accept_client_tokens = true;
    c.auth.allowed_users = vec!["dana@contoso.com".into()];
    let p = support::start(c).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    let short =
        crate::client_tokens::token(|c| c["exp"] = exp.into(), &keys().signing_key, "fake-key");
    let long = crate::client_tokens::token(|_| {}, &keys().signing_key, "fake-key");
    let mut ending = open_tunnel(p.proxy_addr, &format!("Authorization: Bearer {short}\r\n")).await;
    let mut kept = open_tunnel(p.proxy_addr, &format!("Authorization: Bearer {long}\r\n")).await;
    assert!(
        closed_within(&mut ending, Duration::from_secs(8)).await,
        "the tunnel outlived its token"
    );
    kept.write_all(&text_frame("still")).await.unwrap();
    read_echo(&mut kept, "still").await;
    assert_eq!(ended_with_their_credential(&p).await, 1.0);
}
