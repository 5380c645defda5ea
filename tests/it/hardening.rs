//! The security review's attacks, tried over raw sockets (a client
//! library would clean the request up first) against the in-process
//! proxy: what must be refused before any credential is attached.

use std::time::Duration;

use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, closed_within, pat_proxy, raw_http, status_of};

/// The organization allowlist these attacks try to leave.
fn contoso_only(c: &mut ado_auth_proxy::config::Config) {
    c.upstream.allowed_organizations = vec!["contoso".into()];
}

/// `GET path` over a raw socket with `Host: localhost`, `headers` (each
/// line ending in CRLF) and `Connection: close`; the whole response.
async fn raw_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> String {
    raw_http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn dot_segments_and_encoded_separators_never_leave_the_organization() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
    let (proxy, _dir) = pat_proxy(&up, contoso_only).await;
    for path in [
        "/contoso/../fabrikam/_apis/projects",
        "/contoso/%2e%2e/fabrikam/_apis/projects",
        "/contoso/.%2E/fabrikam/_apis/projects",
        "/contoso/..%2ffabrikam/_apis/projects",
        "/contoso/..%5cfabrikam/_apis/projects",
        "/contoso\\..\\fabrikam/_apis/projects",
        "/contoso/_apis/../../fabrikam/_apis/projects",
        "/contoso/%252e%252e/fabrikam/_apis/projects",
        "/contoso/%u002e%u002e/fabrikam/_apis/projects",
        "/contoso/%c0%ae%c0%ae/fabrikam/_apis/projects",
        "/contoso%2f..%2ffabrikam/_apis/projects",
        "/.hosts/vsrm/contoso/../../x",
        "/.hosts/vsrm/contoso/%2e%2e/fabrikam/_apis/x",
    ] {
        let resp = raw_get(proxy.proxy_addr, path, "").await;
        let status = status_of(&resp);
        assert!(status == 400, "{path}: {status}\n{resp}");
        if resp.contains("application/problem+json") {
            assert!(resp.contains("bad-path"), "{path}: {resp}");
            assert!(
                resp.contains("does not forward this path"),
                "{path}: {resp}"
            );
        }
    }
    assert!(
        up.requests().is_empty(),
        "forwarded: {:?}",
        up.requests().iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    // The organization itself still works, and so does an encoded slash
    // that is data (an npm scoped package).
    for path in [
        "/contoso/_apis/projects",
        "/contoso/_packaging/f/npm/registry/@scope%2fname",
    ] {
        let resp = raw_get(proxy.proxy_addr, path, "").await;
        assert_eq!(status_of(&resp), 200, "{path}: {resp}");
    }
    let sent: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        sent,
        [
            "/contoso/_apis/projects",
            "/contoso/_packaging/f/npm/registry/@scope%2fname"
        ]
    );
    let m = support::metrics(proxy.admin_addr).await;
    assert_eq!(refused(&m, "bad_path"), 13.0);
}

#[tokio::test]
async fn rebound_names_and_cross_site_pages_do_not_get_the_credential() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
    let (proxy, _dir) = pat_proxy(&up, |c| {
        contoso_only(c);
        c.listen.allowed_hosts = vec!["ado-proxy.tools.svc:8080".into()];
    })
    .await;
    let port = proxy.proxy_addr.port();
    let ask = |headers: String| {
        let addr = proxy.proxy_addr;
        async move {
            raw_http(
                addr,
                &format!(
                    "POST /contoso/_apis/wit/workitems HTTP/1.1\r\n{headers}Content-Length: 2\r\n\
                     Connection: close\r\n\r\n{{}}"
                ),
            )
            .await
        }
    };
    // DNS rebinding: the attacker's name, pointed at 127.0.0.1.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        "ado-proxy.tools.svc:9999".to_string(),
    ] {
        let resp = ask(format!("Host: {host}\r\n")).await;
        assert_eq!(status_of(&resp), 421, "{host}: {resp}");
        assert!(resp.contains("listen.allowed_hosts"), "{resp}");
    }
    // An absolute-form target naming another host.
    let resp = raw_http(
        proxy.proxy_addr,
        "GET http://evil.example/contoso/_apis/projects HTTP/1.1\r\nHost: localhost\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 421, "{resp}");
    // A page of another site posting, or a fetch the browser marks.
    for headers in [
        format!("Host: localhost:{port}\r\nOrigin: https://evil.example\r\n"),
        format!("Host: localhost:{port}\r\nOrigin: null\r\n"),
        format!(
            "Host: 127.0.0.1:{port}\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\n"
        ),
        format!("Host: 127.0.0.1:{port}\r\nSec-Fetch-Site: same-site\r\n"),
        // Pat mode: not even a top-level navigation from elsewhere.
        format!(
            "Host: localhost:{port}\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\n\
             Sec-Fetch-Dest: document\r\n"
        ),
    ] {
        let resp = ask(headers.clone()).await;
        assert_eq!(status_of(&resp), 403, "{headers}: {resp}");
        assert!(resp.contains("cross-site-request"), "{resp}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    // Programs, same-origin pages and the configured Service name work.
    for headers in [
        format!("Host: 127.0.0.1:{port}\r\n"),
        format!(
            "Host: localhost:{port}\r\nOrigin: http://localhost:{port}\r\nSec-Fetch-Site: same-origin\r\n"
        ),
        "Host: ado-proxy.tools.svc:8080\r\n".to_string(),
        "Host: ADO-PROXY.tools.svc.:8080\r\n".to_string(),
    ] {
        let resp = ask(headers.clone()).await;
        assert_eq!(status_of(&resp), 200, "{headers}: {resp}");
    }
    assert_eq!(up.requests().len(), 4);
    let m = support::metrics(proxy.admin_addr).await;
    assert_eq!(refused(&m, "host"), 5.0);
    assert_eq!(refused(&m, "cross_site"), 5.0);
}

#[tokio::test]
async fn only_configured_cookies_reach_azure_devops() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
    let cookie_header = "Cookie: other_app=s3cret; ado_proxy_session=abc; lang=fran\u{e7}ais\r\n\
                         Cookie: keep_me=1\r\n";
    let (proxy, _dir) = pat_proxy(&up, contoso_only).await;
    let resp = raw_get(proxy.proxy_addr, "/contoso/_apis/projects", cookie_header).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(up.single().headers.get("cookie").is_none());

    let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
    let (proxy, _dir) = pat_proxy(&up, |c| {
        contoso_only(c);
        c.upstream.forward_cookies = vec!["keep_me".into(), "lang".into()];
    })
    .await;
    let resp = raw_get(proxy.proxy_addr, "/contoso/_apis/projects", cookie_header).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let got = up.single();
    let sent: Vec<&[u8]> = got
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    assert_eq!(sent, [b"lang=fran\xc3\xa7ais; keep_me=1".as_slice()]);
}

/// `ado_proxy_requests_refused_total{reason}` in metrics text.
fn refused(m: &str, reason: &str) -> f64 {
    support::metric_value(
        m,
        &format!("ado_proxy_requests_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// A user-mode proxy in front of the fake Entra, and a signed-in
/// browser's session cookie value.
async fn signed_in_user(
    edit: impl FnOnce(&mut ado_auth_proxy::config::Config),
) -> (
    crate::support::fake_idp::FakeIdp,
    FakeUpstream,
    ado_auth_proxy::app::Running,
    crate::support::oidc::Browser,
    String,
) {
    use crate::support::fake_idp::{Setup, set_cookie};
    let s = Setup::start(Duration::from_secs(3600), |c, _| edit(c)).await;
    let (b, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 302, "signed in");
    let cookie = set_cookie(&resp, "ado_proxy_session").expect("a session cookie");
    (s.idp, s.ado, s.proxy, b, cookie)
}

#[tokio::test]
async fn cookie_headers_are_read_leniently_and_boundedly() {
    let (_idp, ado, proxy, _b, session) =
        signed_in_user(|c| c.listen.max_header_bytes = 512 * 1024).await;
    let get = |cookie: String| {
        let addr = proxy.proxy_addr;
        async move {
            let headers = format!("Accept: application/json\r\nCookie: {cookie}\r\n");
            raw_get(addr, "/contoso/_apis/projects", &headers).await
        }
    };
    // Another application's non-ASCII cookie in the same header.
    let resp = get(format!(
        "lang=fran\u{e7}ais; ado_proxy_session={session}; x=\u{1F600}"
    ))
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(ado.requests().len(), 1);

    // Thousands of unknown session values cost a few lookups, not
    // thousands.
    let before = support::metrics(proxy.admin_addr).await;
    let absent = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("ado_proxy_session_loads_total{outcome=\"absent\"} "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let many: Vec<String> = (0..2500)
        .map(|i| format!("ado_proxy_session=unknown{i:0>39}"))
        .collect();
    let resp = get(many.join("; ")).await;
    assert_eq!(status_of(&resp), 401, "{}", &resp[..resp.len().min(300)]);
    let after = support::metrics(proxy.admin_addr).await;
    assert!(
        absent(&after) - absent(&before) <= 4,
        "{} lookups",
        absent(&after) - absent(&before)
    );
}

#[tokio::test]
async fn signing_out_takes_a_same_origin_post() {
    let (_idp, _ado, proxy, b, _session) = signed_in_user(|_| {}).await;
    let url = format!("http://{}", proxy.proxy_addr);
    let me = || b.http.get(format!("{url}/.auth/me")).send();
    // A link or image from another site: GET only shows a page.
    let resp = b
        .http
        .get(format!("{url}/.auth/logout"))
        .header("accept", "text/html")
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(me().await.unwrap().status(), 200, "still signed in");
    // Programs must POST.
    let resp = b
        .http
        .get(format!("{url}/.auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    // A form of another site posting.
    for (k, v) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let resp = b
            .http
            .post(format!("{url}/.auth/logout"))
            .header(k, v)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{k}: {v}");
        assert_eq!(me().await.unwrap().status(), 200, "still signed in");
    }
    let resp = b
        .http
        .post(format!("{url}/.auth/logout"))
        .header("origin", &url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(me().await.unwrap().status(), 401, "signed out");
}

#[tokio::test]
async fn a_flood_of_anonymous_sign_ins_locks_nobody_out() {
    use crate::support::fake_idp::{self, FakeIdp};
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = fake_idp::entra_config(&ado.url(), &idp);
    // The durable store, where each start used to be a write.
    c.session.store = ado_auth_proxy::config::StoreKind::Embedded;
    c.session.path = dir.path().join("sessions.db");
    let proxy = support::start(c).await;
    let url = format!("http://{}/.auth/login", proxy.proxy_addr);
    let started = std::time::Instant::now();
    let http = support::client();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..750 {
                let resp = http.get(&url).send().await.unwrap();
                assert_eq!(resp.status(), 302);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let size = std::fs::metadata(dir.path().join("sessions.db"))
        .unwrap()
        .len();
    // A real user signs in right after.
    let b = crate::support::oidc::Browser::new();
    let resp =
        crate::support::fake_idp::sign_in(&b, &format!("http://{}", proxy.proxy_addr), None).await;
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    let me = b
        .http
        .get(format!("http://{}/.auth/me", proxy.proxy_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let m = support::metrics(proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_logins_total{outcome=\"started\"} 12001"),
        "{m}"
    );
    // Nothing was written for the 12,000 starts: the database did not
    // grow by a record per start (one record is about 1 KiB).
    assert!(size < 2 * 1024 * 1024, "the store grew to {size} bytes");
}

#[tokio::test]
async fn a_pre_auth_cookie_opens_only_for_its_own_sign_in() {
    use crate::support::fake_idp::{self, FakeIdp};
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let proxy = support::start(fake_idp::entra_config(&ado.url(), &idp)).await;
    let base = format!("http://{}", proxy.proxy_addr);
    let http = support::client();
    // Two sign-ins started; each answer sets its own sealed cookie.
    let mut started = Vec::new();
    for _ in 0..2 {
        let resp = http
            .get(format!("{base}/.auth/login"))
            .send()
            .await
            .unwrap();
        let cookie = resp.headers()["set-cookie"].to_str().unwrap();
        let (name, value) = cookie.split(';').next().unwrap().split_once('=').unwrap();
        let (name, value) = (name.to_string(), value.to_string());
        let authorize = resp.headers()["location"].to_str().unwrap().to_string();
        let resp = http.get(&authorize).send().await.unwrap();
        let callback = resp.headers()["location"].to_str().unwrap().to_string();
        started.push((name, value, callback));
    }
    let (name1, value1, _) = &started[0];
    let (name2, value2, callback2) = &started[1];
    assert_ne!(name1, name2);
    let tamper = |v: &str| {
        let mut b = v.as_bytes().to_vec();
        let i = b.len() / 2;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    for cookie in [
        // Sign-in 1's sealed state under sign-in 2's name.
        format!("{name2}={value1}"),
        // Sign-in 2's, altered.
        format!("{name2}={}", tamper(value2)),
    ] {
        let resp = http
            .get(callback2)
            .header("cookie", &cookie)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{cookie}");
        assert!(resp.text().await.unwrap().contains("not valid"));
    }
    // The genuine one works, once: its cookie is cleared on success.
    let resp = http
        .get(callback2)
        .header("cookie", format!("{name2}={value2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let cleared: Vec<&str> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with(&format!("{name2}=;")) && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert_eq!(idp.calls("authorization_code"), 1);
}

/// A service-mode proxy (client credentials) in front of `ado`.
async fn service_proxy(
    idp: &crate::support::fake_idp::FakeIdp,
    ado: &FakeUpstream,
) -> ado_auth_proxy::app::Running {
    use crate::support::fake_idp::{self, CLIENT_SECRET};
    use ado_auth_proxy::config::{AuthMode, Secret, ServiceSource};
    let mut c = fake_idp::entra_config(&ado.url(), idp);
    c.auth.mode = AuthMode::Service;
    c.auth.source = Some(ServiceSource::ClientCredentials);
    c.auth.provider = None;
    c.auth.client_secret = Some(Secret::new(CLIENT_SECRET));
    c.auth.provider_timeout = Duration::from_secs(1);
    support::start(c).await
}

/// Sends requests from `workers` tasks for `time`; returns how many.
async fn hammer(url: String, workers: usize, time: Duration) -> usize {
    let until = std::time::Instant::now() + time;
    let http = support::client();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while std::time::Instant::now() < until {
                let resp = http.get(&url).send().await.unwrap();
                if resp.status() == 503 {
                    assert!(resp.headers().contains_key("retry-after"));
                }
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

#[tokio::test]
async fn traffic_does_not_defeat_the_service_token_backoff() {
    use crate::support::fake_idp::{self, FakeIdp, Mode};
    // A failing token endpoint and a steady stream of requests.
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    idp.set_mode(Mode::Down);
    let ado = fake_idp::fake_ado(&idp).await;
    let proxy = service_proxy(&idp, &ado).await;
    let url = format!("http://{}/contoso/_apis/projects", proxy.proxy_addr);
    let sent = hammer(url, 4, Duration::from_secs(10)).await;
    // Attempts at about 0, 1, 3, 7 s (±20%): the backoff, not the traffic.
    let calls = idp.calls("client_credentials");
    assert!(sent > 200, "{sent} requests");
    assert!(calls <= 5, "{calls} token calls for {sent} requests");
    assert!(ado.requests().is_empty());

    // Azure DevOps refusing a valid token: one early call per token, and
    // none within 5 s of the last.
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let refusing = FakeUpstream::recording(|_| respond(401, &[], "")).await;
    let proxy = service_proxy(&idp, &refusing).await;
    let url = format!("http://{}/contoso/_apis/projects", proxy.proxy_addr);
    let http = support::client();
    for _ in 0..60 {
        assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = idp.calls("client_credentials");
    assert!(calls <= 2, "{calls} token calls for 60 refusals");
}

#[tokio::test]
async fn refusals_do_not_drive_a_users_refreshes() {
    use crate::support::fake_idp::{self, FakeIdp};
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let refusing = FakeUpstream::recording(|_| respond(401, &[], "")).await;
    let proxy = support::start(fake_idp::entra_config(&refusing.url(), &idp)).await;
    let b = crate::support::oidc::Browser::new();
    let base = format!("http://{}", proxy.proxy_addr);
    assert_eq!(
        crate::support::fake_idp::sign_in(&b, &base, None)
            .await
            .status(),
        302
    );
    let started = std::time::Instant::now();
    for _ in 0..60 {
        let resp = b
            .http
            .get(format!("{base}/contoso/_apis/projects"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    // One forced refresh, and one more per forced_refresh_interval (5 s)
    // should this machine be slow.
    let allowed = 1 + started.elapsed().as_secs() / 5;
    let refreshes = idp.calls("refresh_token");
    assert!(
        refreshes <= allowed,
        "{refreshes} refreshes for 60 refusals in {:?}",
        started.elapsed()
    );
    let m = support::metrics(proxy.admin_addr).await;
    assert!(
        support::metric_value(&m, "ado_proxy_token_refreshes_total{outcome=\"throttled\"}") >= 50.0,
        "{m}"
    );
}

#[tokio::test]
async fn slow_idle_and_surplus_connections_are_bounded() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let up = FakeUpstream::recording(|_| respond(200, &[], "ok")).await;
    let mut c = support::config(&up.url());
    c.listen.header_read_timeout = Duration::from_millis(2500);
    c.listen.idle_timeout = Duration::from_millis(600);
    let proxy = support::start(c).await;

    // The admin listener: a half-sent request is cut off. And a
    // connection that never says anything (before HTTP/1 or HTTP/2 is
    // even known), on both listeners. All at once.
    let mut half = TcpStream::connect(proxy.admin_addr).await.unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent_proxy = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    let mut silent_admin = TcpStream::connect(proxy.admin_addr).await.unwrap();
    let limit = Duration::from_secs(6);
    let (a, b, c) = tokio::join!(
        closed_within(&mut half, limit),
        closed_within(&mut silent_proxy, limit),
        closed_within(&mut silent_admin, limit),
    );
    assert!(a, "admin header timeout");
    assert!(b, "silent client on the proxy listener");
    assert!(c, "silent client on the admin listener");

    // HTTP/1.1 keep-alive: closed by the idle timeout, well before
    // hyper's own header timer (2.5 s) would.
    let mut s = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    s.write_all(b"GET /org/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(4)).await,
        "idle keep-alive"
    );
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(550) && idle < Duration::from_millis(2000),
        "{idle:?}"
    );

    // HTTP/2: an idle connection is sent GOAWAY and ends.
    let stream = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/org/x", proxy.proxy_addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let ended = tokio::time::timeout(Duration::from_secs(4), driver).await;
    assert!(ended.is_ok(), "idle HTTP/2 connection stayed open");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_told_why() {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;
    let up = FakeUpstream::recording(|_| respond(200, &[], "ok")).await;
    let mut c = support::config(&up.url());
    c.listen.max_connections = 2;
    let proxy = support::start(c).await;
    let _a = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    let _b = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), third.read_to_string(&mut out)).await;
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.contains("listen.max_connections"), "{out}");
    let m = support::metrics(proxy.admin_addr).await;
    assert_eq!(
        support::metric_value(&m, "ado_proxy_connections_open"),
        2.0,
        "{m}"
    );
    assert_eq!(
        support::metric_value(&m, "ado_proxy_connections_refused_total"),
        1.0
    );
    // Room again once the server has seen one close.
    drop(_a);
    let mut status = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = status_of(&raw_get(proxy.proxy_addr, "/org/x", "").await);
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn html_that_a_rest_call_asked_for_passes_through() {
    let up = FakeUpstream::recording(|r| {
        if r.uri.contains("signin") {
            respond(
                200,
                &[("content-type", "text/html")],
                "<html><head><title>Azure DevOps Services | Sign In</title></head></html>",
            )
        } else {
            respond(
                200,
                &[("content-type", "text/html; charset=utf-8")],
                "<html><body><h1>Onboarding</h1><p>rendered wiki page</p></body></html>",
            )
        }
    })
    .await;
    let (proxy, _dir) = pat_proxy(&up, contoso_only).await;
    let http = support::client();
    let resp = http
        .get(format!(
            "http://{}/contoso/proj/_apis/wiki/wikis/w/pages?path=/Onboarding",
            proxy.proxy_addr
        ))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("rendered wiki page"));
    // The sign-in page itself is still explained.
    let resp = http
        .get(format!("http://{}/contoso/_apis/signin", proxy.proxy_addr))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    // A success status for a refusal is answered as the 401 it is.
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("pat-not-accepted"));
}

#[tokio::test]
async fn an_endless_provider_answer_is_cut_off() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ado_auth_proxy::config::{AuthMode, Secret, ServiceSource};
    use http_body_util::{BodyExt, StreamBody};
    // A token endpoint that answers 200 with a chunked body that never
    // ends (no Content-Length).
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let idp = FakeUpstream::raw(move |_| {
        let counter = counter.clone();
        async move {
            let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
            let stream = futures_util::stream::repeat_with(move || {
                counter.fetch_add(chunk.len(), Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(chunk.clone()))
            });
            let mut resp = http::Response::new(
                StreamBody::new(stream)
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { match e {} })
                    .boxed(),
            );
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        }
    })
    .await;
    let up = FakeUpstream::recording(|_| respond(200, &[], "")).await;
    let mut c = support::config(&up.url());
    c.auth.mode = AuthMode::Service;
    c.auth.source = Some(ServiceSource::ClientCredentials);
    c.auth.tenant = Some("t".into());
    c.auth.client_id = Some("c".into());
    c.auth.client_secret = Some(Secret::new("s"));
    c.auth.authority_host = Some(url::Url::parse(&idp.url()).unwrap());
    c.auth.provider_timeout = Duration::from_secs(20);
    let proxy = support::start(c).await;
    let started = std::time::Instant::now();
    let resp = support::get(format!(
        "http://{}/contoso/_apis/projects",
        proxy.proxy_addr
    ))
    .await;
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?}: the body was read until the timeout",
        started.elapsed()
    );
    let read = sent.load(Ordering::Relaxed);
    assert!(
        read < 16 * 1024 * 1024,
        "{read} bytes read from the provider"
    );
}

#[tokio::test]
async fn a_slow_response_is_not_idle() {
    use http_body_util::{BodyExt, StreamBody};
    // A body that takes 1.5 s, in pieces 250 ms apart, through a proxy
    // whose idle timeout is 300 ms.
    let up = FakeUpstream::raw(|_| async {
        let stream = futures_util::stream::unfold(0u8, |i| async move {
            if i == 6 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let frame = http_body::Frame::data(bytes::Bytes::from(format!("piece {i}\n")));
            Some((Ok::<_, std::convert::Infallible>(frame), i + 1))
        });
        http::Response::new(
            StreamBody::new(stream)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { match e {} })
                .boxed(),
        )
    })
    .await;
    let mut c = support::config(&up.url());
    c.listen.idle_timeout = Duration::from_millis(300);
    let proxy = support::start(c).await;
    let body = support::get(format!("http://{}/org/x", proxy.proxy_addr))
        .await
        .text()
        .await
        .expect("the whole body");
    assert_eq!(body.lines().count(), 6, "{body}");
}

#[tokio::test]
async fn ambiguous_request_framing_never_reaches_the_upstream_ambiguous() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "ok")).await;
    let (proxy, _dir) = pat_proxy(&up, contoso_only).await;
    let send = |framing: &'static str| {
        let addr = proxy.proxy_addr;
        async move {
            raw_http(
                addr,
                &format!(
                    "POST /contoso/_apis/x HTTP/1.1\r\nHost: localhost\r\n{framing}\
                     Connection: close\r\n\r\n0\r\n\r\nGET /fabrikam/_apis/x HTTP/1.1\r\n\
                     Host: localhost\r\n\r\n"
                ),
            )
            .await
        }
    };
    // Forms hyper refuses outright.
    for framing in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Transfer-Encoding: gzip, chunked, identity\r\n",
        "Content-Length: +5\r\n",
    ] {
        let resp = send(framing).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{framing:?}: {resp}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    // Both headers: framed by Transfer-Encoding (RFC 9112 section 6.1),
    // and re-framed upstream without the stale Content-Length, so the
    // two parties cannot disagree; the bytes after the chunked body are
    // never a request to the upstream.
    let resp = send("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let got = up.single();
    assert_eq!(got.uri, "/contoso/_apis/x");
    assert!(
        got.headers.get("content-length").is_none(),
        "{:?}",
        got.headers
    );
    assert!(got.body.is_empty());
}
