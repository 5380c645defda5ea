//! Passthrough, headers, routing, rewriting and upstream failures, against
//! the in-process fake upstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};

use crate::support::upstream::{FakeBody, FakeUpstream, respond};
use crate::support::{self, client, get, raw_http};

#[tokio::test]
async fn forwards_method_path_query_body_and_sets_forwarding_headers() {
    let up =
        FakeUpstream::recording(|_| respond(201, &[("x-vss-e2eid", "e2e-1")], "created")).await;
    let proxy = support::start(support::config(&up.url())).await;

    let resp = client()
        .post(format!(
            "http://{}/contoso/_apis/wit/workitems?api-version=7.1",
            proxy.proxy_addr
        ))
        .header("authorization", "Bearer client-token")
        .header("x-request-id", "req-123")
        .header("x-custom", "kept")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    assert_eq!(resp.text().await.unwrap(), "created");

    let got = up.single();
    assert_eq!(got.method, "POST");
    assert_eq!(got.uri, "/contoso/_apis/wit/workitems?api-version=7.1");
    assert_eq!(got.body, "payload");
    assert_eq!(got.headers["host"], up.addr.to_string().as_str());
    assert_eq!(got.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got.headers["x-forwarded-proto"], "http");
    assert_eq!(
        got.headers["x-forwarded-host"],
        proxy.proxy_addr.to_string().as_str()
    );
    assert_eq!(got.headers["x-tfs-fedauthredirect"], "Suppress");
    // mode "none" passes the client's credential through.
    assert_eq!(got.headers["authorization"], "Bearer client-token");
    assert_eq!(got.headers["x-custom"], "kept");
    assert_eq!(got.headers["x-request-id"], "req-123");
}

#[tokio::test]
async fn generates_a_request_id_when_the_client_sends_none_or_a_bad_one() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "")).await;
    let proxy = support::start(support::config(&up.url())).await;
    for sent in [None, Some("bad id with spaces")] {
        let mut req = client().get(format!("http://{}/org/_apis/x", proxy.proxy_addr));
        if let Some(id) = sent {
            req = req.header("x-request-id", id);
        }
        let resp = req.send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 36, "uuid expected, got {id}");
        assert_ne!(Some(id.as_str()), sent);
    }
}

#[tokio::test]
async fn hop_by_hop_headers_and_upstream_cookies_are_removed() {
    let up = FakeUpstream::recording(|_| {
        respond(
            200,
            &[
                ("connection", "x-resp-hop"),
                ("x-resp-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("proxy-authenticate", "Basic"),
                (
                    "set-cookie",
                    "VstsSession=secret-session; domain=.dev.azure.com; secure; HttpOnly",
                ),
                ("set-cookie", "X-VSS-UseRequestRouting=True; path=/"),
                ("x-resp-end", "kept"),
            ],
            "ok",
        )
    })
    .await;
    let proxy = support::start(support::config(&up.url())).await;
    let out = raw_http(proxy.proxy_addr,
        "GET /org/_apis/x HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Req-Hop\r\nX-Req-Hop: 1\r\n\
         Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\nX-Req-End: kept\r\n\r\n",
    )
    .await;
    let lower = out.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{out}");
    assert!(lower.contains("x-resp-end: kept"), "{out}");
    for gone in [
        "x-resp-hop",
        "keep-alive",
        "proxy-authenticate",
        "set-cookie",
        "vstssession",
    ] {
        assert!(!lower.contains(gone), "{gone} leaked to the client: {out}");
    }
    let got = up.single();
    assert_eq!(got.headers["x-req-end"], "kept");
    for gone in ["x-req-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(
            !got.headers.contains_key(gone),
            "{gone} reached the upstream: {:?}",
            got.headers
        );
    }
    assert_ne!(
        got.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"close, X-Req-Hop"[..])
    );
}

#[tokio::test]
async fn sibling_hosts_are_routed_by_name() {
    let main = FakeUpstream::recording(|_| respond(200, &[], "main")).await;
    let vsrm = FakeUpstream::recording(|_| respond(200, &[], "vsrm")).await;
    let mut config = support::config(&main.url());
    config
        .upstream
        .hosts
        .insert("vsrm".into(), format!("{}/", vsrm.url()).parse().unwrap());
    let proxy = support::start(config).await;

    let body = get(format!(
        "http://{}/.hosts/vsrm/org/_apis/release/releases?$top=1",
        proxy.proxy_addr
    ))
    .await
    .text()
    .await
    .unwrap();
    assert_eq!(body, "vsrm");
    assert_eq!(vsrm.single().uri, "/org/_apis/release/releases?$top=1");
    assert_eq!(
        vsrm.single().headers["host"],
        vsrm.addr.to_string().as_str()
    );

    let resp = support::get_problem(format!(
        "http://{}/.hosts/nosuch/org/_apis/x",
        proxy.proxy_addr
    ))
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("vsrm"),
        "{problem}"
    );
    assert!(main.requests().is_empty());
}

#[tokio::test]
async fn auth_paths_are_reserved_and_never_forwarded() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "")).await;
    let proxy = support::start(support::config(&up.url())).await;
    for path in ["/.auth/login?rd=/x", "/.auth/callback", "/.auth"] {
        let resp = get(format!("http://{}{path}", proxy.proxy_addr)).await;
        assert_eq!(resp.status(), 404, "{path}");
    }
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn organizations_outside_the_allowlist_get_a_readable_403() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "ok")).await;
    let mut config = support::config(&up.url());
    config.upstream.allowed_organizations = vec!["contoso".into()];
    let proxy = support::start(config).await;
    let base = format!("http://{}", proxy.proxy_addr);

    let ok = get(format!("{base}/Contoso/_apis/projects")).await;
    assert_eq!(ok.status(), 200);

    let denied = support::get_problem(format!("{base}/fabrikam/_apis/projects")).await;
    assert_eq!(denied.status(), 403);
    let problem: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(problem["status"], 403);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("fabrikam") && detail.contains("contoso"),
        "{detail}"
    );

    // git gets plain text, which it prints as remote: lines.
    let git = client()
        .get(format!(
            "{base}/fabrikam/p/_git/r/info/refs?service=git-upload-pack"
        ))
        .header("user-agent", "git/2.47.3")
        .send()
        .await
        .unwrap();
    assert_eq!(git.status(), 403);
    assert!(
        git.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(git.text().await.unwrap().contains("not allowed"));

    let no_org = get(format!("{base}/_apis/resourceAreas")).await;
    assert_eq!(no_org.status(), 403);
    assert_eq!(
        up.requests().len(),
        1,
        "only the allowed request reached the upstream"
    );
}

#[tokio::test]
async fn location_headers_pointing_at_azure_devops_hosts_are_rewritten() {
    let up = FakeUpstream::recording(|req| {
        let location = match req.uri.as_str() {
            "/org/canonical" => "https://dev.azure.com/org/c",
            "/org/sibling" => "https://vsrm.dev.azure.com/org/_apis/release",
            "/org/legacy" => "https://org.visualstudio.com/p/_git/r",
            "/org/relative" => "/org/rel",
            _ => "https://login.microsoftonline.com/common/oauth2/authorize",
        };
        respond(
            302,
            &[
                ("location", location),
                ("content-location", "https://dev.azure.com/org/cl"),
            ],
            "",
        )
    })
    .await;
    let proxy = support::start(support::config(&up.url())).await;
    let public = proxy.public_url.as_str().trim_end_matches('/').to_string();
    let cases = [
        ("/org/canonical", format!("{public}/org/c")),
        (
            "/org/sibling",
            format!("{public}/.hosts/vsrm/org/_apis/release"),
        ),
        ("/org/legacy", format!("{public}/org/p/_git/r")),
        ("/org/relative", format!("{public}/org/rel")),
        (
            "/org/external",
            "https://login.microsoftonline.com/common/oauth2/authorize".to_string(),
        ),
    ];
    for (path, want) in &cases {
        let resp = get(format!("http://{}{path}", proxy.proxy_addr)).await;
        assert_eq!(resp.status(), 302, "{path}");
        assert_eq!(resp.headers()["location"].to_str().unwrap(), want, "{path}");
        assert_eq!(
            resp.headers()["content-location"].to_str().unwrap(),
            format!("{public}/org/cl")
        );
    }
}

#[tokio::test]
async fn upstream_url_in_location_maps_to_public_url() {
    // A second fake answers with its own absolute URL, as Azure DevOps does.
    let addr_cell: Arc<std::sync::OnceLock<String>> = Arc::new(std::sync::OnceLock::new());
    let cell = addr_cell.clone();
    let up = FakeUpstream::recording(move |_| {
        let me = cell.get().cloned().unwrap_or_default();
        respond(
            301,
            &[("location", &format!("{me}/org/_git/moved?x=1"))],
            "",
        )
    })
    .await;
    addr_cell.set(up.url()).unwrap();
    let mut config = support::config(&up.url());
    config.listen.public_url = Some("https://ado.internal.example/".parse().unwrap());
    let proxy = support::start(config).await;
    let resp = get(format!("http://{}/org/_git/old", proxy.proxy_addr)).await;
    assert_eq!(
        resp.headers()["location"],
        "https://ado.internal.example/org/_git/moved?x=1"
    );
}

#[tokio::test]
async fn discovery_documents_are_rewritten_to_proxy_urls() {
    let resource_areas = r#"{"count":3,"value":[
        {"id":"efc2f575-36ef-48e9-b672-0c6fb4a48ac5","name":"Release","locationUrl":"https://vsrm.dev.azure.com/org/"},
        {"id":"79134c72-4a58-4b42-976c-04e7115f32bf","name":"core","locationUrl":"https://dev.azure.com/org/"},
        {"id":"0d55247a-1c47-4462-9b1f-5e2125590ee6","name":"account","locationUrl":"https://app.vssps.visualstudio.com/"}]}"#;
    let connection_data = r#"{"authenticatedUser":{"id":"u"},"locationServiceData":{"accessMappings":[{"moniker":"PublicAccessMapping","accessPoint":"https://org.visualstudio.com/"}],"defaultAccessMappingMoniker":"PublicAccessMapping"}}"#;
    let location_service = r#"{"serviceType":"LocationService2","identifier":"951917ac-a960-4999-8464-e3f0aa25b381","location":"https://vssps.dev.azure.com/org/"}"#;
    let up = FakeUpstream::recording(move |req| {
        let body = if req.uri.contains("resourceAreas") {
            resource_areas
        } else if req.uri.contains("LocationService2") {
            location_service
        } else if req.uri.contains("connectionData") {
            connection_data
        } else {
            r#"{"url":"https://dev.azure.com/org/_apis/projects/1"}"#
        };
        respond(
            200,
            &[(
                "content-type",
                "application/json; charset=utf-8; api-version=7.1",
            )],
            body,
        )
    })
    .await;
    let proxy = support::start(support::config(&up.url())).await;
    let public = proxy.public_url.as_str().trim_end_matches('/').to_string();
    let get = |path: &str| {
        let url = format!("http://{}{path}", proxy.proxy_addr);
        async move {
            let resp = client()
                .get(url)
                .header("accept-encoding", "gzip")
                .send()
                .await
                .unwrap();
            let len: usize = resp.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let text = resp.text().await.unwrap();
            assert_eq!(len, text.len(), "content-length matches the rewritten body");
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        }
    };

    let areas = get("/org/_apis/resourceAreas").await;
    let urls: Vec<&str> = areas["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["locationUrl"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            format!("{public}/.hosts/vsrm/org/"),
            format!("{public}/org/"),
            format!("{public}/.hosts/app_vssps/")
        ]
    );
    let data = get("/org/_apis/connectionData").await;
    assert_eq!(
        data["locationServiceData"]["accessMappings"][0]["accessPoint"],
        format!("{public}/org/")
    );
    let location = get("/org/_apis/ServiceDefinitions/LocationService2/951917AC-A960-4999-8464-E3F0AA25B381?api-version=1.0").await;
    assert_eq!(location["location"], format!("{public}/.hosts/vssps/org/"));
    // Discovery is fetched uncompressed so it can be rewritten.
    assert!(
        up.requests()
            .iter()
            .all(|r| !r.headers.contains_key("accept-encoding"))
    );

    // HEAD keeps the upstream's Content-Length of the GET body.
    let head = client()
        .head(format!(
            "http://{}/org/_apis/resourceAreas",
            proxy.proxy_addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["content-length"],
        resource_areas.len().to_string().as_str()
    );

    // Other JSON streams through untouched.
    let other = get("/org/_apis/projects").await;
    assert_eq!(other["url"], "https://dev.azure.com/org/_apis/projects/1");
}

#[tokio::test]
async fn oversized_malformed_and_non_path_requests_are_refused() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "")).await;
    let proxy = support::start(support::config(&up.url())).await;
    let big = "a".repeat(70 * 1024);
    let out = raw_http(
        proxy.proxy_addr,
        &format!(
            "GET /org/x HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(200)]
    );
    let ok = raw_http(
        proxy.proxy_addr,
        &format!(
            "GET /org/x HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(30 * 1024)
        ),
    )
    .await;
    assert!(
        ok.starts_with("HTTP/1.1 200"),
        "{}",
        &ok[..ok.len().min(200)]
    );
    let garbage = raw_http(proxy.proxy_addr, "NOT HTTP AT ALL\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    for odd in ["OPTIONS * HTTP/1.1", "CONNECT 127.0.0.1:443 HTTP/1.1"] {
        let out = raw_http(
            proxy.proxy_addr,
            &format!("{odd}\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400"), "{odd}: {out}");
        assert!(out.contains("bad-target"), "{odd}: {out}");
    }
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn unreachable_upstream_gets_502_naming_it() {
    // Bind and drop a listener so the port is known to be closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = support::start(support::config(&format!("http://127.0.0.1:{port}"))).await;
    let resp = support::get_problem(format!("http://{}/org/_apis/x", proxy.proxy_addr)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["type"], "urn:ado-auth-proxy:problem:upstream-unreachable");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("127.0.0.1:{port}")), "{detail}");
    assert!(detail.to_lowercase().contains("refused"), "{detail}");
    let m = support::metrics(proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_upstream_errors_total{kind=\"connect\",upstream=\"default\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn slow_upstream_gets_504_but_a_slow_body_is_never_cut() {
    let up = FakeUpstream::raw(|req| async move {
        if req.uri().path().ends_with("/slow-headers") {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return respond(200, &[], "late");
        }
        // Headers at once, then a body that takes 1.2 s to arrive.
        let chunks = futures_util::stream::unfold(0, |i| async move {
            if i == 6 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http_body::Frame::data(
                    Bytes::from(format!("chunk{i};")),
                )),
                i + 1,
            ))
        });
        Response::new(StreamBody::new(chunks).boxed())
    })
    .await;
    let mut config = support::config(&up.url());
    config.upstream.response_timeout = Duration::from_millis(400);
    let proxy = support::start(config).await;

    let started = Instant::now();
    let resp = support::get_problem(format!("http://{}/org/slow-headers", proxy.proxy_addr)).await;
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["type"], "urn:ado-auth-proxy:problem:upstream-timeout");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("upstream.response_timeout"),
        "{p}"
    );

    let body = get(format!("http://{}/org/slow-body", proxy.proxy_addr))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(body, "chunk0;chunk1;chunk2;chunk3;chunk4;chunk5;");
}

/// Sets its flag when dropped: the handler's future was cancelled.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let waiting_dropped = Arc::new(AtomicBool::new(false));
    let streaming_dropped = Arc::new(AtomicBool::new(false));
    let (w, s) = (waiting_dropped.clone(), streaming_dropped.clone());
    let up = FakeUpstream::raw(move |req| {
        let (w, s) = (w.clone(), s.clone());
        async move {
            if req.uri().path().ends_with("/wait") {
                let _flag = DropFlag(w);
                tokio::time::sleep(Duration::from_secs(30)).await;
                return respond(200, &[], "too late");
            }
            // An endless body; its stream is dropped when nobody reads it.
            let flag = Arc::new(DropFlag(s));
            let chunks = futures_util::stream::unfold(flag, |flag| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Some((
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http_body::Frame::data(
                        Bytes::from_static(&[b'x'; 1024]),
                    )),
                    flag,
                ))
            });
            let body: FakeBody = StreamBody::new(chunks).boxed();
            Response::new(body)
        }
    })
    .await;
    let proxy = support::start(support::config(&up.url())).await;

    for (path, flag) in [
        ("/org/wait", &waiting_dropped),
        ("/org/stream", &streaming_dropped),
    ] {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(proxy.proxy_addr)
            .await
            .unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !flag.load(Ordering::SeqCst),
            "{path}: cancelled while the client was still there"
        );
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !flag.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "{path}: upstream request was not cancelled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn pat_mode_replaces_the_client_credential_and_follows_the_file() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "")).await;
    let dir = tempfile::tempdir().unwrap();
    let pat_file = dir.path().join("pat");
    std::fs::write(&pat_file, "first-token\n").unwrap();
    let mut config = support::config(&up.url());
    config.auth.mode = ado_auth_proxy::config::AuthMode::Pat;
    config.auth.pat_file = Some(pat_file.clone());
    let proxy = support::start(config).await;
    let url = format!("http://{}/org/_apis/projects", proxy.proxy_addr);

    client()
        .get(&url)
        .header("authorization", "Bearer from-client")
        .send()
        .await
        .unwrap();
    // base64(":first-token")
    assert_eq!(
        up.requests()[0].headers["authorization"],
        "Basic OmZpcnN0LXRva2Vu"
    );

    std::fs::write(&pat_file, "second-longer-token\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        get(&url).await;
        let last = up.requests().last().unwrap().headers["authorization"].clone();
        // base64(":second-longer-token")
        if last == "Basic OnNlY29uZC1sb25nZXItdG9rZW4=" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new PAT not picked up; still {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn metrics_count_requests_bytes_and_upstream_time() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "0123456789")).await;
    let proxy = support::start(support::config(&up.url())).await;
    for path in ["/org/_apis/a", "/org/p/_git/r/info/refs", "/.auth/x"] {
        let resp = client()
            .post(format!("http://{}{path}", proxy.proxy_addr))
            .body("abcd")
            .send()
            .await
            .unwrap();
        resp.bytes().await.unwrap();
    }
    let m = support::metrics(proxy.admin_addr).await;
    for line in [
        "ado_proxy_requests_total{code=\"200\",route=\"api\",status=\"2xx\"} 1",
        "ado_proxy_requests_total{code=\"200\",route=\"git\",status=\"2xx\"} 1",
        "ado_proxy_requests_total{code=\"404\",route=\"auth\",status=\"4xx\"} 1",
        "ado_proxy_requests_in_flight 0",
        "ado_proxy_request_body_bytes_total 8",
        "ado_proxy_upstream_duration_seconds_count{upstream=\"default\"} 2",
        "ado_proxy_request_duration_seconds_count{route=\"api\"} 1",
        "ado_proxy_build_info{revision=\"",
        "process_resident_memory_bytes ",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    // Only what happened has series: no unused sibling host, no route
    // without requests, no sign-in families in mode none.
    for absent in [
        "ado_proxy_upstream_duration_seconds_count{upstream=\"vsrm\"}",
        "ado_proxy_request_duration_seconds_count{route=\"other\"}",
        "ado_proxy_requests_total{code=\"500\"",
        "ado_proxy_login_failures_total{",
        "ado_proxy_session_loads_total{",
        "ado_proxy_token_endpoint_duration_seconds_count{",
    ] {
        assert!(!m.contains(absent), "{absent:?} in\n{m}");
    }
    let series = m.lines().filter(|l| !l.starts_with('#')).count();
    // 614 before series were cut to what the mode can move.
    assert!(series < 200, "{series} series in mode none:\n{m}");
    // 2 × 10 bytes from the upstream plus the 404 problem body.
    let out = support::metric_value(&m, "ado_proxy_response_body_bytes_total");
    assert!(out > 20.0, "{out}");
}

#[tokio::test]
async fn admin_endpoints_answer_health_readiness_and_metrics() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "")).await;
    let proxy = support::start(support::config(&up.url())).await;
    let admin = format!("http://{}", proxy.admin_addr);
    for (path, status, word) in [
        ("/healthz", 200, "ok"),
        ("/readyz", 200, "ready"),
        ("/metrics", 200, "ado_proxy_requests_in_flight"),
        ("/nope", 404, "/healthz"),
    ] {
        let resp = get(format!("{admin}{path}")).await;
        assert_eq!(resp.status(), status, "{path}");
        assert!(resp.text().await.unwrap().contains(word), "{path}");
    }
    // In process, shutdown() starts the same sequence SIGTERM does.
    proxy.shutdown();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let resp = get(format!("{admin}/readyz")).await;
    assert_eq!(resp.status(), 503);
    assert!(
        up.requests().is_empty(),
        "admin requests never reach the upstream"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "")).await;
    let mut config = support::config(&up.url());
    config.listen.header_read_timeout = Duration::from_millis(300);
    let proxy = support::start(config).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(proxy.proxy_addr)
        .await
        .unwrap();
    s.write_all(b"GET /org/x HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(up.requests().is_empty());
}
