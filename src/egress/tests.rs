use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::config::ProxyCredentials;
use crate::config::Secret;

fn target(port: u16, credentials: bool) -> ProxyTarget {
    ProxyTarget {
        host: "127.0.0.1".into(),
        port,
        credentials: credentials.then(|| ProxyCredentials {
            user: "svc".into(),
            password: Secret::new("s3cret"),
        }),
        from: "HTTPS_PROXY".into(),
    }
}

fn plan(port: u16, credentials: bool, no_proxy: &str) -> EgressPlan {
    EgressPlan {
        http: Some(target(port, credentials)),
        https: Some(target(port, credentials)),
        no_proxy: no_proxy.into(),
    }
}

/// A one-connection egress proxy answering `answer` to whatever comes,
/// then echoing the tunnel's bytes; returns what it read before
/// answering.
async fn fake_proxy(answer: &'static [u8]) -> (u16, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        s.write_all(answer).await.unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf).await {
            let _ = s.write_all(&buf[..n]).await;
        }
        String::from_utf8_lossy(&head).into_owned()
    });
    (port, task)
}

fn connector(plan: &EgressPlan) -> Connector {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    Connector::new(tcp, Egress::new(plan), Duration::from_secs(2))
}

async fn connect(plan: &EgressPlan, dst: &str) -> Result<TokioIo<TcpStream>, BoxError> {
    let mut c = connector(plan);
    std::future::poll_fn(|cx| c.poll_ready(cx)).await.unwrap();
    c.call(dst.parse().unwrap()).await
}

fn failure(e: BoxError) -> EgressError {
    let e = e
        .downcast::<EgressError>()
        .unwrap_or_else(|e| panic!("not egress: {e}"));
    *e
}

#[tokio::test]
async fn a_tunnel_carries_bytes_after_a_2xx_and_sends_credentials() {
    let (port, proxy) = fake_proxy(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
    let io = connect(&plan(port, true, ""), "https://dev.azure.test/org")
        .await
        .unwrap();
    let mut s = io.into_inner();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    let head = proxy.await.unwrap();
    assert!(
        head.starts_with("CONNECT dev.azure.test:443 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("Host: dev.azure.test:443\r\n"), "{head}");
    // base64("svc:s3cret")
    assert!(
        head.contains("Proxy-Authorization: Basic c3ZjOnMzY3JldA==\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn refusals_keep_their_status_and_never_show_the_password() {
    for (answer, status) in [
        (&b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n\r\n"[..], 407),
        (&b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"[..], 403),
        (&b"HTTP/1.0 503 Service Unavailable\r\n\r\n"[..], 503),
    ] {
        let answer: &'static [u8] = Box::leak(answer.to_vec().into_boxed_slice());
        let (port, _proxy) = fake_proxy(answer).await;
        let e = failure(connect(&plan(port, true, ""), "https://dev.azure.test").await.unwrap_err());
        assert!(matches!(&e.kind, EgressFailure::Refused(s, _) if *s == status), "{e:?}");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains(&format!("answered {status} ")), "{shown}");
        assert!(shown.contains("127.0.0.1:"), "{shown}");
        assert!(shown.contains("CONNECT dev.azure.test:443"), "{shown}");
        assert!(!shown.contains("s3cret") && !shown.contains("c3ZjOnMzY3JldA"), "{shown}");
    }
}

#[tokio::test]
async fn hostile_answers_are_broken_tunnels_not_hangs() {
    let long: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_ANSWER_HEAD)
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    for answer in [
        &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
        &b""[..],
        long,
        &b"HTTP/1.1 200\r\nX\0: y\r\n\r\n"[..],
    ] {
        let (port, _proxy) = fake_proxy(answer).await;
        let e = failure(
            connect(&plan(port, false, ""), "https://dev.azure.test")
                .await
                .unwrap_err(),
        );
        assert!(
            matches!(e.kind, EgressFailure::Broken(_)),
            "{:?}: {e:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(40)])
        );
    }
}

#[tokio::test]
async fn a_silent_proxy_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(s);
    });
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    let mut c = Connector::new(
        tcp,
        Egress::new(&plan(port, false, "")),
        Duration::from_millis(200),
    );
    let e = failure(
        c.call("https://dev.azure.test".parse().unwrap())
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(&e.kind, EgressFailure::Broken(w) if w.contains("within")),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_unreachable_proxy_says_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let e = failure(
        connect(&plan(port, false, ""), "https://dev.azure.test")
            .await
            .unwrap_err(),
    );
    assert!(matches!(e.kind, EgressFailure::Unreachable(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("cannot connect to the egress proxy 127.0.0.1:"),
        "{e}"
    );
}

#[test]
fn no_proxy_decides_as_curl_does() {
    let e = Egress::new(&plan(3128, false, "corp.example, 10.0.0.0/8,::1"));
    let via = |u: &str| e.target(&u.parse().unwrap()).is_some();
    assert!(via("https://dev.azure.com/org"));
    assert!(via("http://dev.azure.com/org"));
    assert!(!via("https://corp.example/"));
    assert!(!via("https://git.corp.example/"));
    assert!(via("https://notcorp.example/"));
    assert!(!via("http://10.1.2.3:8080/"));
    assert!(!via("http://[::1]:8080/"));
    assert!(via("http://11.1.2.3/"));
    let none = Egress::direct();
    assert!(
        none.target(&"https://dev.azure.com".parse().unwrap())
            .is_none()
    );
    let https_only = Egress::new(&EgressPlan {
        https: Some(target(1, false)),
        ..EgressPlan::default()
    });
    assert!(
        https_only
            .target(&"http://dev.azure.com".parse().unwrap())
            .is_none()
    );
    assert!(
        https_only
            .target(&"https://dev.azure.com".parse().unwrap())
            .is_some()
    );
}

#[tokio::test]
async fn interim_answers_and_mixed_line_ends_are_read_as_proxies_send_them() {
    for answer in [
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection established\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\n\r\n"[..],
        &b"HTTP/1.0 200 OK\n\n"[..],
    ] {
        let answer: &'static [u8] = Box::leak(answer.to_vec().into_boxed_slice());
        let (port, _proxy) = fake_proxy(answer).await;
        let started = crate::clock::real_instant();
        let io = connect(&plan(port, false, ""), "https://dev.azure.test").await;
        assert!(
            io.is_ok(),
            "{:?}: {:?}",
            String::from_utf8_lossy(answer),
            io.err()
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no wait for a timeout"
        );
    }
    // Endless interim answers are a broken tunnel, not a hang.
    let many: &'static [u8] = Box::leak(
        b"HTTP/1.1 100 Continue\r\n\r\n"
            .repeat(20)
            .into_boxed_slice(),
    );
    let (port, _proxy) = fake_proxy(many).await;
    let e = failure(
        connect(&plan(port, false, ""), "https://dev.azure.test")
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(&e.kind, EgressFailure::Broken(w) if w.contains("interim")),
        "{e:?}"
    );
}
