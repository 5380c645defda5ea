//! Serving threads and upstream connections: each client connection keeps
//! an upstream connection of its own, hands it on when it leaves, and a
//! closed or HTTP/2 upstream connection is never a client's problem.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, raw_http};

/// A request over a raw connection that stays open (keep-alive).
async fn keep_alive_get(stream: &mut tokio::net::TcpStream, path: &str) -> String {
    keep_alive_send(stream, "GET", path, "").await
}

/// Sends `method path` with `body` on a kept-alive connection; the whole
/// answer (head and its Content-Length body).
async fn keep_alive_send(
    stream: &mut tokio::net::TcpStream,
    method: &str,
    path: &str,
    body: &str,
) -> String {
    stream
        .write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "the proxy closed the connection: {got:?}");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if rest.len() >= length {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test]
async fn a_client_connection_keeps_its_own_upstream_connection_and_hands_it_on() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "ok")).await;
    let mut config = support::config(&up.url());
    // One serving thread: its idle list is the only one.
    config.listen.workers = 1;
    let proxy = support::start(config).await;

    let mut a = tokio::net::TcpStream::connect(proxy.proxy_addr)
        .await
        .unwrap();
    let mut b = tokio::net::TcpStream::connect(proxy.proxy_addr)
        .await
        .unwrap();
    for i in 0..3 {
        let head = keep_alive_get(&mut a, &format!("/org/_apis/a{i}")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let head = keep_alive_get(&mut b, &format!("/org/_apis/b{i}")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let seen = up.requests();
    let peers_of = |prefix: &str| {
        seen.iter()
            .filter(|r| r.uri.starts_with(prefix))
            .map(|r| r.peer)
            .collect::<Vec<_>>()
    };
    let (pa, pb) = (peers_of("/org/_apis/a"), peers_of("/org/_apis/b"));
    assert!(pa.iter().all(|p| *p == pa[0]), "{pa:?}");
    assert!(pb.iter().all(|p| *p == pb[0]), "{pb:?}");
    assert_ne!(pa[0], pb[0], "two clients, two upstream connections");
    // Each request kept the path and got the upstream's Host.
    assert!(
        seen.iter()
            .all(|r| r.headers["host"] == up.addr.to_string().as_str()),
        "{seen:#?}"
    );

    // Both leave; the next client reuses one of their upstream connections.
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = raw_http(
        proxy.proxy_addr,
        "GET /org/_apis/c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let c = up.requests().last().unwrap().peer;
    assert!(c == pa[0] || c == pb[0], "{c} is a new upstream connection");
}

/// An HTTP/1.1 upstream that answers one request per connection and then
/// closes it quietly (as an upstream's idle timeout does), without
/// `Connection: close`.
async fn closing_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn an_upstream_that_closed_the_connection_costs_the_client_nothing() {
    let (up, connections) = closing_upstream().await;
    let proxy = support::start(support::config(&format!("http://{up}"))).await;
    let mut client = tokio::net::TcpStream::connect(proxy.proxy_addr)
        .await
        .unwrap();
    for i in 0..3 {
        let head = keep_alive_get(&mut client, &format!("/org/_apis/x{i}")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        // The upstream closes its side meanwhile.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_second_proxy_on_the_same_port_is_refused_with_the_key() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "ok")).await;
    let first = support::start(support::config(&up.url())).await;
    let mut config = support::config(&up.url());
    config.listen.address = first.proxy_addr;
    let Err(e) = ado_auth_proxy::app::start(config).await else {
        panic!("two proxies listen on {}", first.proxy_addr);
    };
    let message = e.to_string();
    assert!(
        message.starts_with("listen.address: cannot listen on"),
        "{message}"
    );
    // The first one still serves every connection.
    for _ in 0..8 {
        let resp = raw_http(
            first.proxy_addr,
            "GET /org/_apis/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
}

/// An upstream whose first connection answers one request with
/// keep-alive, then reads the next request and closes without answering
/// (its idle timeout striking as the request arrives); later connections
/// answer every request with "ok". Counts the requests it read.
async fn racing_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let closes_on_second = std::mem::replace(&mut first, false);
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                for n in 0.. {
                    // A head (and, for a POST, its small body).
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => got.extend_from_slice(&buf[..k]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    got.clear();
                    if closes_on_second && n == 1 {
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    (addr, requests)
}

/// A kept upstream connection that the upstream closes just as an
/// idempotent request arrives costs the client nothing: the request goes
/// again on a new connection. A request with a body (or a POST) is never
/// sent twice: its client gets the 502.
#[tokio::test]
async fn a_request_the_upstream_closed_on_after_idling_is_sent_again_if_idempotent() {
    for (method, body, want, reads) in [
        ("GET", "", 200, 3),
        ("DELETE", "", 200, 3),
        ("POST", "{}", 502, 2),
    ] {
        let (up, requests) = racing_upstream().await;
        let mut config = support::config(&format!("http://{up}"));
        config.listen.workers = 1;
        let proxy = support::start(config).await;
        let mut client = tokio::net::TcpStream::connect(proxy.proxy_addr)
            .await
            .unwrap();
        let first = keep_alive_send(&mut client, "GET", "/org/_apis/x", "").await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        // Idle long enough that a close is the upstream's idle timeout.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let answer = keep_alive_send(&mut client, method, "/org/_apis/x", body).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {want}")),
            "{method}: {answer}"
        );
        assert_eq!(
            requests.load(Ordering::SeqCst),
            reads,
            "{method}: requests the upstream read"
        );
    }
}
