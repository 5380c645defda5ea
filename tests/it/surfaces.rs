//! The second security review's attacks on the surfaces added since the
//! first (hosts, the admin listener, CORS on `/.auth/`, upgrades,
//! documents on the proxy's origin, HTTP/2 streams), over raw sockets and
//! a raw HTTP/2 client where a library would clean the request up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::lfs::lfs_batch;
use crate::support::upstream::{FakeUpstream, full, respond};
use crate::support::{self, pat_proxy, raw_http, status_of};

/// The value of header `name` in a raw response (first one).
fn header_of<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An HTTP/2 connection to `addr` (prior knowledge, as h2c clients do).
async fn h2(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn ambiguous_or_missing_hosts_are_refused_and_the_checked_one_is_forwarded() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
    let (proxy, _dir) = pat_proxy(&up, |_| {}).await;
    let addr = proxy.proxy_addr;
    let port = addr.port();
    for (request, why) in [
        (
            "GET /contoso/_apis/projects HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\
             Connection: close\r\n\r\n"
                .to_string(),
            "two Host headers",
        ),
        (
            "GET /contoso/_apis/projects HTTP/1.1\r\nHost: evil.example\r\nHost: localhost\r\n\
             Connection: close\r\n\r\n"
                .to_string(),
            "two Host headers, the foreign one first",
        ),
        (
            "GET /contoso/_apis/projects HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
            "no Host",
        ),
        (
            "GET /contoso/_apis/projects HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n"
                .to_string(),
            "an empty Host",
        ),
    ] {
        let resp = raw_http(addr, &request).await;
        assert_eq!(status_of(&resp), 400, "{why}: {resp}");
        assert!(resp.contains("bad-host"), "{why}: {resp}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    // HTTP/1.0 without Host is no browser: it passes.
    let resp = raw_http(addr, "GET /contoso/_apis/projects HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    // An absolute-form target wins over Host, and X-Forwarded-Host is
    // what was checked, not the unchecked header.
    let resp = raw_http(
        addr,
        &format!(
            "GET http://localhost:{port}/contoso/_apis/projects HTTP/1.1\r\nHost: evil.example\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let forwarded: Vec<_> = up
        .requests()
        .iter()
        .map(|r| r.headers.get("x-forwarded-host").cloned())
        .collect();
    assert_eq!(forwarded[0], None, "HTTP/1.0 named no host");
    assert_eq!(
        forwarded[1]
            .as_ref()
            .map(|v| v.to_str().unwrap().to_string()),
        Some(format!("localhost:{port}"))
    );

    // HTTP/2: a `host` that disagrees with `:authority` is refused; one
    // that agrees passes, and X-Forwarded-Host is the authority.
    let mut sender = h2(addr).await;
    let ask = |host: Option<&str>| {
        let mut b =
            http::Request::builder().uri(format!("http://localhost:{port}/contoso/_apis/x"));
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(Empty::<Bytes>::new()).unwrap()
    };
    let resp = sender
        .send_request(ask(Some("evil.example")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("bad-host"),
        "{body:?}"
    );
    let before = up.requests().len();
    let resp = sender
        .send_request(ask(Some(&format!("LOCALHOST:{port}"))))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = sender.send_request(ask(None)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let sent = up.requests();
    assert_eq!(
        sent.len(),
        before + 2,
        "the refused stream was not forwarded"
    );
    for r in &sent[before..] {
        assert_eq!(
            r.headers.get("x-forwarded-host").unwrap(),
            &format!("localhost:{port}")
        );
    }
}

#[tokio::test]
async fn the_admin_listener_answers_only_to_its_own_names() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
    let (proxy, _dir) = pat_proxy(&up, |c| {
        c.admin.allowed_hosts = vec!["metrics.tools.svc".into()];
    })
    .await;
    let admin = proxy.admin_addr;
    let port = admin.port();
    let get = |host: String| async move {
        let host = if host.is_empty() {
            String::new()
        } else {
            format!("Host: {host}\r\n")
        };
        raw_http(
            admin,
            &format!("GET /metrics HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
        )
        .await
    };
    // A page that rebinds its own name to the pod reads nothing.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        format!("localhost.evil.example:{port}"),
    ] {
        let resp = get(host.clone()).await;
        assert_eq!(status_of(&resp), 421, "{host}: {resp}");
        assert!(resp.contains("admin.allowed_hosts"), "{resp}");
        assert!(!resp.contains("ado_proxy_"), "no metrics for {host}");
    }
    let resp = get(String::new()).await;
    assert_eq!(status_of(&resp), 400, "no Host: {resp}");
    let resp = raw_http(
        admin,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&resp), 400, "two Hosts: {resp}");
    // Probes and scrapers by address, localhost and a configured name.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("metrics.tools.svc:{port}"),
    ] {
        let resp = get(host.clone()).await;
        assert_eq!(status_of(&resp), 200, "{host}: {resp}");
        assert!(resp.contains("ado_proxy_build_info"), "{host}");
    }
    let resp = get(format!("127.0.0.1:{port}"))
        .await
        .replace("/metrics", "/healthz");
    assert_eq!(status_of(&resp), 200);
}

#[tokio::test]
async fn upgrades_other_than_websocket_are_not_tunnelled() {
    // An upstream that would switch to anything it is asked for.
    let up = FakeUpstream::recording(|r| {
        if r.headers.contains_key("upgrade") {
            respond(
                101,
                &[
                    ("upgrade", r.headers["upgrade"].to_str().unwrap()),
                    ("connection", "upgrade"),
                ],
                "",
            )
        } else {
            respond(
                200,
                &[("content-type", "application/json")],
                "{\"plain\":true}",
            )
        }
    })
    .await;
    let (proxy, _dir) = pat_proxy(&up, |_| {}).await;
    for (upgrade, connection) in [
        ("h2c", "Upgrade, HTTP2-Settings"),
        ("foo", "upgrade"),
        ("websocket, h2c", "upgrade"),
        ("TLS/1.0", "upgrade"),
    ] {
        let resp = raw_http(
            proxy.proxy_addr,
            &format!(
                "GET /contoso/_apis/projects HTTP/1.1\r\nHost: localhost\r\nUpgrade: {upgrade}\r\n\
                 HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: {connection}\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status_of(&resp), 200, "{upgrade}: served plainly: {resp}");
        assert!(resp.contains("\"plain\":true"), "{resp}");
    }
    for r in up.requests() {
        assert!(r.headers.get("upgrade").is_none(), "{:?}", r.headers);
        assert!(r.headers.get("http2-settings").is_none(), "{:?}", r.headers);
    }
    let m = support::metrics(proxy.admin_addr).await;
    assert_eq!(
        support::metric_value(&m, "ado_proxy_tunnels_open"),
        0.0,
        "no tunnel was opened"
    );

    // HTTP/2 extended CONNECT for another protocol has no plain reading.
    let mut sender = h2(proxy.proxy_addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = up.requests().len();
    for protocol in ["h2c", "connect-udp", "foo"] {
        let mut req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("http://{}/contoso/_apis/x", proxy.proxy_addr))
            .body(Empty::<Bytes>::new())
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static(protocol));
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 400, "{protocol}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("listen.tunnel_protocols"), "{body}");
    }
    assert_eq!(up.requests().len(), before, "nothing forwarded");
}

#[tokio::test]
async fn upstream_documents_are_sandboxed_and_the_proxys_pages_cannot_be_framed() {
    let up = FakeUpstream::recording(|r| {
        let ct = r
            .uri
            .rsplit('=')
            .next()
            .unwrap()
            .replace("%2B", "+")
            .replace("%2F", "/");
        if ct == "none" {
            let mut resp = respond(200, &[], "<script>fetch('/.auth/tokens')</script>");
            resp.headers_mut().remove("content-type");
            return resp;
        }
        respond(
            200,
            &[("content-type", ct.as_str())],
            "<svg onload=alert(1)>",
        )
    })
    .await;
    let (proxy, _dir) = pat_proxy(&up, |_| {}).await;
    let addr = proxy.proxy_addr;
    let get = |ct: &str| {
        let request = format!(
            "GET /contoso/p/_apis/git/repositories/r/items?path=/x&ct={ct} HTTP/1.1\r\n\
             Host: localhost\r\nConnection: close\r\n\r\n"
        );
        async move { raw_http(addr, &request).await }
    };
    for ct in [
        "text%2Fhtml",
        "image%2Fsvg%2Bxml",
        "application%2Fxhtml%2Bxml",
        "text%2Fxml",
        "application%2Fxml",
        "none",
    ] {
        let resp = get(ct).await;
        assert_eq!(status_of(&resp), 200, "{ct}: {resp}");
        assert_eq!(
            header_of(&resp, "content-security-policy"),
            Some("sandbox"),
            "{ct}: {resp}"
        );
    }
    for ct in [
        "application%2Fjson",
        "application%2Foctet-stream",
        "image%2Fpng",
    ] {
        let resp = get(ct).await;
        assert_eq!(
            header_of(&resp, "content-security-policy"),
            None,
            "{ct}: {resp}"
        );
    }
    // The proxy's own answers (here: a refused path, as a browser reads
    // it) are its own policy, never sandboxed, never framed.
    let resp = raw_http(
        proxy.proxy_addr,
        "GET /contoso/../x HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    let csp = header_of(&resp, "content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("sandbox"), "{csp}");
    assert_eq!(header_of(&resp, "x-frame-options"), Some("DENY"));
}

#[tokio::test]
async fn user_pages_and_auth_answers_cannot_be_framed() {
    use crate::support::fake_idp::Setup;
    let s = Setup::start(Duration::from_secs(3600), |_, _| {}).await;
    let (b, _) = s.sign_in().await;
    for path in ["/.auth/logout", "/.auth/tokens", "/.auth/me", "/.auth/pats"] {
        let resp = b.navigate(&format!("{}{path}", s.url)).await;
        let csp = resp
            .headers()
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: {:?}", resp.headers()))
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY", "{path}");
    }
}

#[tokio::test]
async fn cors_origins_get_no_grant_on_the_proxys_own_endpoints() {
    use crate::support::fake_idp::{Setup, set_cookie};
    const APP: &str = "https://app.tools.example";
    let s = Setup::start(Duration::from_secs(3600), |c, _| {
        c.listen.cors_allowed_origins = vec![APP.into()];
    })
    .await;
    let (_b, resp) = s.sign_in().await;
    let cookie = set_cookie(&resp, "ado_proxy_session").expect("a session cookie");
    let addr = s.proxy.proxy_addr;
    let ask = |method: &str, path: &str, extra: &str| {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: {APP}\r\n\
             Cookie: ado_proxy_session={cookie}\r\n{extra}Connection: close\r\n\r\n",
            addr.port()
        );
        async move { raw_http(addr, &request).await }
    };
    for path in ["/.auth/tokens", "/.auth/pats", "/.auth/logout", "/.auth/me"] {
        let resp = ask(
            "OPTIONS",
            path,
            "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n",
        )
        .await;
        assert_eq!(status_of(&resp), 403, "preflight {path}: {resp}");
        assert!(
            header_of(&resp, "access-control-allow-origin").is_none(),
            "{path}: {resp}"
        );
    }
    let resp = ask(
        "POST",
        "/.auth/tokens",
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 12\r\n\r\nname=stolen&",
    )
    .await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(!resp.contains("adp_"), "no token minted: {resp}");
    let resp = ask("GET", "/.auth/me", "").await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(header_of(&resp, "access-control-allow-origin").is_none());
    let resp = ask("POST", "/.auth/logout", "Content-Length: 0\r\n").await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    // The session lives on, and the app keeps its grant elsewhere.
    let resp = ask(
        "OPTIONS",
        "/contoso/_apis/projects",
        "Access-Control-Request-Method: GET\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 204, "{resp}");
    assert_eq!(header_of(&resp, "access-control-allow-origin"), Some(APP));
    let resp = ask("GET", "/contoso/_apis/projects", "").await;
    assert_eq!(status_of(&resp), 200, "still signed in: {resp}");
    assert_eq!(header_of(&resp, "access-control-allow-origin"), Some(APP));
}

/// An upstream that holds every request until `release` is set, counting
/// how many it holds at once.
struct Held {
    up: FakeUpstream,
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

async fn held_upstream() -> Held {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (release, rx) = tokio::sync::watch::channel(false);
    let (n, p) = (now.clone(), peak.clone());
    let up = FakeUpstream::raw(move |_req| {
        let (now, peak, mut rx) = (n.clone(), p.clone(), rx.clone());
        async move {
            let held = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(held, Ordering::SeqCst);
            let _ = rx.wait_for(|r| *r).await;
            now.fetch_sub(1, Ordering::SeqCst);
            let mut resp = http::Response::new(full("{}"));
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        }
    })
    .await;
    Held {
        up,
        now,
        peak,
        release,
    }
}

#[tokio::test]
async fn http2_streams_cannot_multiply_upstream_connections_past_the_limits() {
    let held = held_upstream().await;
    let (proxy, _dir) = pat_proxy(&held.up, |c| {
        c.listen.max_concurrent_streams = 8;
        c.listen.max_requests = 20;
    })
    .await;
    let addr = proxy.proxy_addr;
    // One connection asking for 40 streams at once gets 8 of them: no
    // more than 8 upstream requests (and connections) for it.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let sender = h2(addr).await;
        for i in 0..40 {
            let mut sender = sender.clone();
            streams.push(tokio::spawn(async move {
                let req = http::Request::builder()
                    .uri(format!(
                        "http://localhost:{}/contoso/_apis/x/{i}",
                        addr.port()
                    ))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                // A stream over the connection's limit is refused by
                // the server (REFUSED_STREAM): never forwarded.
                let Ok(resp) = sender.send_request(req).await else {
                    return (0, Bytes::new());
                };
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                (status, body)
            }));
        }
    }
    // Three connections of 8 streams are 24 requests: 20 reach the
    // upstream, the rest are told the proxy is busy.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held.now.load(Ordering::SeqCst) < 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(held.now.load(Ordering::SeqCst), 20, "held at the budget");
    // An ordinary request meanwhile is refused readably, not left hanging.
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        raw_http(
            addr,
            "GET /contoso/_apis/projects HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
    )
    .await
    .expect("answered at once");
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert!(resp.contains("listen.max_requests"), "{resp}");
    assert_eq!(header_of(&resp, "retry-after"), Some("1"));
    held.release.send_replace(true);
    let (mut ok, mut busy, mut reset) = (0, 0, 0);
    for s in streams {
        let (status, body) = s.await.unwrap();
        match status {
            0 => reset += 1,
            200 => ok += 1,
            503 => {
                assert!(String::from_utf8_lossy(&body).contains("listen.max_requests"));
                busy += 1
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!(ok + busy + reset, 120);
    assert!(busy >= 4, "some streams were over the budget ({busy})");
    assert!(
        held.peak.load(Ordering::SeqCst) <= 20,
        "peak {}",
        held.peak.load(Ordering::SeqCst)
    );
    let m = support::metrics(proxy.admin_addr).await;
    assert!(
        support::metric_value(&m, "ado_proxy_requests_refused_total{reason=\"busy\"}") >= 5.0,
        "counted"
    );
    // The budget is given back: a request passes again.
    let resp = raw_http(
        addr,
        "GET /contoso/_apis/projects HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
}

#[tokio::test]
async fn one_http2_connection_holds_at_most_max_concurrent_streams_upstream() {
    let held = held_upstream().await;
    let (proxy, _dir) = pat_proxy(&held.up, |c| c.listen.max_concurrent_streams = 8).await;
    let addr = proxy.proxy_addr;
    let sender = h2(addr).await;
    let mut streams = Vec::new();
    for i in 0..50 {
        let mut sender = sender.clone();
        streams.push(tokio::spawn(async move {
            let req = http::Request::builder()
                .uri(format!(
                    "http://localhost:{}/contoso/_apis/x/{i}",
                    addr.port()
                ))
                .body(Empty::<Bytes>::new())
                .unwrap();
            sender.send_request(req).await.map(|r| r.status().as_u16())
        }));
    }
    // A client that ignores the server's limit has its extra streams
    // refused (REFUSED_STREAM), not forwarded; one that waits for the
    // SETTINGS queues them.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        held.now.load(Ordering::SeqCst),
        8,
        "one connection, 8 streams upstream"
    );
    held.release.send_replace(true);
    let mut ok = 0;
    for s in streams {
        match s.await.unwrap() {
            Ok(status) => {
                assert_eq!(status, 200);
                ok += 1;
            }
            Err(e) => assert!(format!("{e:?}").contains("REFUSED_STREAM"), "{e:?}"),
        }
    }
    assert!(ok >= 8, "{ok}");
    assert_eq!(held.peak.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn no_spelling_or_size_of_an_lfs_batch_hands_out_the_upstreams_authorization() {
    // Answers whatever the path, as IIS routes every spelling: the body
    // size and encoding come from the query.
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let b = base.clone();
    let up = FakeUpstream::recording(move |r| {
        let base = b.get().unwrap();
        let objects = if r.uri.contains("big=1") { 40_000 } else { 2 };
        let mut headers = vec![("content-type", "application/vnd.git-lfs+json")];
        if r.uri.contains("gzip=1") {
            headers.push(("content-encoding", "gzip"));
        }
        respond(200, &headers, lfs_batch(base, objects))
    })
    .await;
    let url = up.url();
    base.set(url.trim_end_matches('/').to_string()).unwrap();
    let (proxy, _dir) = pat_proxy(&up, |c| {
        c.upstream.url = url::Url::parse(&url).unwrap();
    })
    .await;
    let post = |path: &str, content_type: &str| {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let addr = proxy.proxy_addr;
        async move { raw_http(addr, &request).await }
    };
    for path in [
        "/contoso/p/_git/r.git/info/lfs/objects/batch",
        "/contoso/p/_git/r.git/info/lfs/objects/Batch",
        "/contoso/p/_git/r.git/info/lfs/objects/BATCH",
        "/contoso/p/_git/r.git/info/lfs/objects/batch/",
        "/contoso/p/_git/r.git/info/lfs/objects/b%61tch",
    ] {
        let resp = post(path, "application/json").await;
        assert_eq!(status_of(&resp), 200, "{path}: {resp}");
        assert!(!resp.contains("UPSTREAM-SECRET-TOKEN"), "{path}: {resp}");
        assert!(resp.contains("/info/lfs/objects/"), "{path}: {resp}");
        assert!(
            !resp.contains(base.get().unwrap().as_str()),
            "on the proxy: {resp}"
        );
    }
    // Any path with git-lfs' media type is read as a batch too.
    let resp = post(
        "/contoso/p/_git/r.git/info/lfs/whatever",
        "application/vnd.git-lfs+json",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(!resp.contains("UPSTREAM-SECRET-TOKEN"), "{resp}");
    // Too large or compressed: a readable 502, never the answer.
    for (query, why) in [("big=1", "MiB"), ("gzip=1", "compressed")] {
        let resp = post(
            &format!("/contoso/p/_git/r.git/info/lfs/objects/batch?{query}"),
            "application/vnd.git-lfs+json",
        )
        .await;
        assert_eq!(
            status_of(&resp),
            502,
            "{query}: {}",
            &resp[..resp.len().min(600)]
        );
        assert!(!resp.contains("UPSTREAM-SECRET-TOKEN"), "{query}");
        assert!(resp.contains("answer-not-rewritable"), "{query}: {resp}");
        assert!(resp.contains(why), "{query}: {resp}");
    }
}

/// Uploads that never end, on an upstream that answers early.
mod slow_uploads {
    use super::*;
    use std::convert::Infallible;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A body that sends one chunk and then never ends.
    struct Trickle(bool);
    impl hyper::body::Body for Trickle {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            if self.0 {
                return std::task::Poll::Pending;
            }
            self.0 = true;
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"x")))))
        }
    }

    /// `listen.max_requests` bounds the upstream sockets clients can make
    /// the proxy hold: an upstream that answers before the request body
    /// ends (as any server may: 401, 403, 413...) leaves the upload
    /// holding the socket, so the upload keeps its place in the budget
    /// until its body ends, and is cut off once its answer is done.
    #[tokio::test]
    async fn slow_uploads_count_against_max_requests_until_their_body_ends() {
        let (up_addr, open) = early_answering_upstream().await;
        let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
        let (proxy, _dir) = pat_proxy(&up, |c| {
            c.upstream.url = url::Url::parse(&format!("http://{up_addr}")).unwrap();
            c.listen.max_requests = 5;
        })
        .await;
        let addr = proxy.proxy_addr;
        let mut conns = Vec::new();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            for i in 0..25 {
                let mut sender = sender.clone();
                let req = http::Request::builder()
                    .method("POST")
                    .uri(format!(
                        "http://localhost:{}/contoso/_apis/x/{i}",
                        addr.port()
                    ))
                    .body(Trickle(false))
                    .unwrap();
                // One at a time: never more than one in flight.
                let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
                    .await
                    .expect("answered")
                    .unwrap();
                statuses.push(resp.status().as_u16());
                let _ = resp.into_body().collect().await;
            }
            conns.push(sender);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let held = open.load(Ordering::SeqCst);
        let ok = statuses.iter().filter(|s| **s == 403).count();
        assert!(ok >= 5, "{ok} answered: {statuses:?}");
        assert!(
            held <= 5,
            "{held} upstream sockets with listen.max_requests = 5"
        );
        drop(conns);
    }

    /// Clients that abort their uploads (HTTP/1.1 mid-body, HTTP/2
    /// connections dropped after an early answer) leave no place held and
    /// no upstream socket open: afterwards the proxy is not busy.
    #[tokio::test]
    async fn aborted_uploads_leave_no_place_and_no_socket_held() {
        let (up_addr, open) = early_answering_upstream().await;
        let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
        let (proxy, _dir) = pat_proxy(&up, |c| {
            c.upstream.url = url::Url::parse(&format!("http://{up_addr}")).unwrap();
            c.listen.max_requests = 3;
        })
        .await;
        let addr = proxy.proxy_addr;
        // HTTP/1.1: a head promising 1 GB, some bytes, the socket closed.
        for i in 0..6 {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /contoso/_apis/x/{i} HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n",
                addr.port()
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            tcp.write_all(&vec![b'x'; 100_000]).await.unwrap();
            let mut b = [0u8; 512];
            let _ = tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut b)).await;
            drop(tcp);
        }
        // HTTP/2: streams with endless bodies, answered early, then the
        // connection dropped.
        for _ in 0..2 {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .unwrap();
            let task = tokio::spawn(conn);
            for i in 0..3 {
                let mut sender = sender.clone();
                let req = http::Request::builder()
                    .method("POST")
                    .uri(format!(
                        "http://localhost:{}/contoso/_apis/y/{i}",
                        addr.port()
                    ))
                    .body(Trickle(false))
                    .unwrap();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), sender.send_request(req)).await;
            }
            drop(sender);
            task.abort();
        }
        let mut held = usize::MAX;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            held = open.load(Ordering::SeqCst);
            if held == 0 {
                break;
            }
        }
        let mut after = Vec::new();
        for i in 0..3 {
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                support::get(format!("http://{addr}/contoso/_apis/z/{i}")),
            )
            .await
            .expect("answered");
            after.push(r.status().as_u16());
        }
        assert!(!after.contains(&503), "places leaked: {after:?}");
        assert_eq!(held, 0, "upstream sockets still held by aborted uploads");
    }

    /// An upstream that answers as soon as a request's head is in (GET:
    /// 200 and close; anything else: 403) and keeps reading the body; with
    /// the number of its connections open.
    async fn early_answering_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let counter = open.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let counter = counter.clone();
                tokio::spawn(async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _gone = Gone(counter.clone());
                    let mut buf = vec![0u8; 65536];
                    let mut head = Vec::new();
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let was = head.windows(4).any(|w| w == b"\r\n\r\n");
                        head.extend_from_slice(&buf[..n]);
                        if !was && head.windows(4).any(|w| w == b"\r\n\r\n") {
                            let get = head.starts_with(b"GET");
                            let answer: &[u8] = if get {
                                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
                            } else {
                                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"
                            };
                            let _ = s.write_all(answer).await;
                            if get {
                                break;
                            }
                        }
                    }
                });
            }
        });
        (addr, open)
    }

    struct Gone(Arc<AtomicUsize>);

    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
