//! The corporate egress proxy, a real squid with Basic authentication in
//! front of a TLS Azure DevOps whose name only squid can resolve: every
//! outbound call (Azure DevOps, its sibling hosts, the identity provider)
//! goes through it, named by `HTTPS_PROXY` or `upstream.egress_proxy`;
//! `NO_PROXY` names what goes direct; a 407, a 403 or a dead egress proxy
//! gets an answer saying which and what to fix; no proxy password shows.

use std::path::Path;
use std::time::{Duration, Instant};

use ado_auth_proxy::config::{AuthMode, Config, Secret, ServiceSource, egress_plan};
use url::Url;

use crate::support::fake_idp::{self, CLIENT_ID, CLIENT_SECRET, FakeIdp, TENANT};
use crate::support::process::ProxyProcess;
use crate::support::squid::{FORBIDDEN, PASSWORD, Squid, USER};
use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, PROJECTS, self_signed_for, server_tls};

/// Azure DevOps' test name: squid resolves it (its hosts file), the
/// proxy cannot, so an answer proves the call went through squid.
const ADO_HOST: &str = "dev.azure.test";
const LOGIN_HOST: &str = "login.azure.test";

/// A fake Azure DevOps over TLS answering for `dev.azure.test` and the
/// forbidden name; (its CA file, the fake, the temp dir holding both).
async fn tls_ado(idp: &FakeIdp) -> (std::path::PathBuf, FakeUpstream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = self_signed_for(dir.path(), &[ADO_HOST, FORBIDDEN]);
    let ado = fake_idp::fake_ado_over(idp, Some(server_tls(&cert, &key))).await;
    (ca, ado, dir)
}

/// Mode service, client credentials against the fake Entra at
/// `login.azure.test`.
fn service(c: &mut Config, idp: &FakeIdp) {
    c.auth.mode = AuthMode::Service;
    c.auth.source = Some(ServiceSource::ClientCredentials);
    c.auth.provider = None;
    c.auth.tenant = Some(TENANT.into());
    c.auth.client_id = Some(CLIENT_ID.into());
    c.auth.client_secret = Some(Secret::new(CLIENT_SECRET));
    let port = Url::parse(&idp.url()).unwrap().port().unwrap();
    c.auth.authority_host = Some(Url::parse(&format!("http://{LOGIN_HOST}:{port}")).unwrap());
}

/// `c` leaving through `proxy` with `user:password` from a file in `dir`.
fn through(c: &mut Config, proxy: &str, credentials: Option<&str>, dir: &Path) {
    c.upstream.egress_proxy = Some(proxy.into());
    if let Some(pair) = credentials {
        let file = dir.join("egress-credentials");
        std::fs::write(&file, format!("{pair}\n")).unwrap();
        c.upstream.egress_proxy_credentials_file = Some(file);
    }
    c.upstream.egress = egress_plan(&c.upstream, true).unwrap();
}

async fn problem(url: String) -> (u16, serde_json::Value) {
    let resp = support::get_problem(url).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// GETs `url` until it answers 200 (the service token comes first).
async fn get_ok(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = support::client().get(url).send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        if status == 200 {
            return body;
        }
        assert!(Instant::now() < deadline, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn every_outbound_call_goes_through_a_real_squid_named_by_https_proxy() {
    let squid = Squid::start(&[ADO_HOST, LOGIN_HOST]);
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let (ca, ado, _dir) = tls_ado(&idp).await;
    let port = ado.addr.port();
    let idp_port = Url::parse(&idp.url()).unwrap().port().unwrap();
    let toml = format!(
        "[upstream]\nurl = \"https://{ADO_HOST}:{port}\"\nca_file = \"{}\"\n\
         [upstream.hosts]\nblocked = \"https://{FORBIDDEN}:{port}\"\n\
         [auth]\nmode = \"service\"\nsource = \"client-credentials\"\ntenant = \"{TENANT}\"\n\
         client_id = \"{CLIENT_ID}\"\nauthority_host = \"http://{LOGIN_HOST}:{idp_port}\"\n",
        ca.display()
    );
    let via = squid.url_with(USER, PASSWORD);
    let p = ProxyProcess::spawn(
        &toml,
        &[
            ("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET),
            ("HTTPS_PROXY", &via),
            ("http_proxy", &via),
        ],
    );

    // The token call (http, forwarded by squid) and the request (https,
    // CONNECT) both went through squid as its user.
    let body = get_ok(&format!("http://{}{PROJECTS}", p.proxy)).await;
    assert!(body.contains("\"user\""), "{body}");
    // A destination squid's rules forbid: a 502 that says so.
    let (status, p403) =
        problem(format!("http://{}/.hosts/blocked/contoso/_apis/x", p.proxy)).await;
    assert_eq!(status, 502, "{p403}");
    assert_eq!(
        p403["type"],
        "urn:ado-auth-proxy:problem:egress-proxy-refused"
    );
    let detail = p403["detail"].as_str().unwrap();
    assert!(detail.contains("answered 403"), "{detail}");
    assert!(
        detail.contains(&format!("CONNECT {FORBIDDEN}:{port}")),
        "{detail}"
    );
    assert!(detail.contains("upstream.no_proxy"), "{detail}");

    // The start-up line names the egress proxy, never its password.
    let logs = p.logs();
    let running = logs
        .lines()
        .find(|l| l.contains("ado-auth-proxy running"))
        .unwrap();
    assert!(
        running.contains(&format!(
            "http://127.0.0.1:{} (from HTTPS_PROXY) with Basic credentials",
            squid.port
        )),
        "{running}"
    );
    assert!(!logs.contains(PASSWORD), "{logs}");
    let metrics = support::metrics(p.admin).await;
    assert!(
        metrics.contains(
            "ado_proxy_upstream_errors_total{kind=\"egress_refused\",upstream=\"blocked\"} 1"
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("upstream_errors"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // squid logs a tunnel when it closes.
    drop(p);
    let log = squid.wait_logged(&format!("CONNECT {ADO_HOST}:{port}"));
    let connect = log
        .lines()
        .find(|l| l.contains(&format!("CONNECT {ADO_HOST}:{port}")))
        .unwrap_or_else(|| panic!("no CONNECT in squid's log:\n{log}"));
    assert!(connect.contains(USER), "{connect}");
    let token = log
        .lines()
        .find(|l| l.contains(&format!("POST http://{LOGIN_HOST}:{idp_port}/")))
        .unwrap_or_else(|| panic!("no token call in squid's log:\n{log}"));
    assert!(
        token.contains(USER) && token.contains("TCP_MISS/200"),
        "{token}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_407_answer_for_requests_and_token_calls() {
    let squid = Squid::start(&[ADO_HOST, LOGIN_HOST]);
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let (ca, ado, dir) = tls_ado(&idp).await;
    let wrong = format!("{USER}:Not-the-Squid-Password-99");

    // Mode pat: the hyper connector's own CONNECT.
    let mut c = support::config(&format!("https://{ADO_HOST}:{}", ado.addr.port()));
    c.upstream.ca_file = Some(ca.clone());
    c.auth.mode = AuthMode::Pat;
    c.auth.pat = Some(Secret::new("a-personal-access-token"));
    through(&mut c, &squid.url(), Some(&wrong), dir.path());
    let p = support::start(c).await;
    let (status, body) = problem(format!("http://{}{PROJECTS}", p.proxy_addr)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["type"],
        "urn:ado-auth-proxy:problem:egress-proxy-credentials"
    );
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("answered 407"), "{detail}");
    assert!(
        detail.contains("upstream.egress_proxy_credentials_file"),
        "{detail}"
    );
    assert!(!detail.contains("Not-the-Squid-Password"), "{detail}");

    // Mode service: reqwest's tunnel for the token call says the same.
    let mut c = support::config(&format!("https://{ADO_HOST}:{}", ado.addr.port()));
    c.upstream.ca_file = Some(ca);
    service(&mut c, &idp);
    // The token endpoint over https too, so reqwest tunnels with CONNECT.
    let port = Url::parse(&idp.url()).unwrap().port().unwrap();
    c.auth.authority_host = Some(Url::parse(&format!("https://{LOGIN_HOST}:{port}")).unwrap());
    through(&mut c, &squid.url(), Some(&wrong), dir.path());
    let p = support::start(c).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let (_, body) = problem(format!("http://{}{PROJECTS}", p.proxy_addr)).await;
        let detail = body["detail"].as_str().unwrap_or_default().to_string();
        if detail.contains("egress proxy") || Instant::now() > deadline {
            break detail;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        detail.contains("egress proxy asks for credentials"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("through the egress proxy {}", squid.url())),
        "{detail}"
    );
    assert!(!detail.contains("Not-the-Squid-Password"), "{detail}");
    let log = squid.wait_logged("TCP_DENIED/407");
    assert!(log.contains("TCP_DENIED/407"), "{log}");
    assert!(
        !log.contains(&format!(
            "CONNECT {ADO_HOST}:{} {USER} HIER_DIRECT",
            ado.addr.port()
        )),
        "{log}"
    );
}

#[tokio::test]
async fn no_proxy_goes_direct_and_a_dead_egress_proxy_is_named() {
    let squid = Squid::start(&[]);
    let up = FakeUpstream::recording(|_| respond(200, &[], "direct or not")).await;
    let dir = tempfile::tempdir().unwrap();
    let pair = format!("{USER}:{PASSWORD}");
    let pat = |c: &mut Config| {
        c.auth.mode = AuthMode::Pat;
        c.auth.pat = Some(Secret::new("a-personal-access-token"));
    };

    // An http:// destination is tunnelled too (squid logs the CONNECT).
    let mut c = support::config(&up.url());
    pat(&mut c);
    through(&mut c, &squid.url(), Some(&pair), dir.path());
    let p = support::start(c).await;
    assert_eq!(
        get_ok(&format!("http://{}{PROJECTS}", p.proxy_addr)).await,
        "direct or not"
    );
    let port = up.addr.port();
    p.shutdown();
    p.wait().await;
    let log = squid.wait_logged(&format!("CONNECT 127.0.0.1:{port}"));
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{port} {USER}")),
        "{log}"
    );

    // Named in upstream.no_proxy: straight there, squid sees nothing.
    let other = FakeUpstream::recording(|_| respond(200, &[], "direct")).await;
    let mut c = support::config(&other.url());
    pat(&mut c);
    c.upstream.no_proxy = vec!["127.0.0.0/8".into()];
    through(&mut c, &squid.url(), Some(&pair), dir.path());
    let p = support::start(c).await;
    assert_eq!(
        get_ok(&format!("http://{}{PROJECTS}", p.proxy_addr)).await,
        "direct"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !squid
            .access_log()
            .contains(&format!(":{}", other.addr.port()))
    );
    drop(p);

    // An egress proxy that is not there: the answer names it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut c = support::config(&up.url());
    pat(&mut c);
    through(&mut c, &dead_url, None, dir.path());
    let p = support::start(c).await;
    let (status, body) = problem(format!("http://{}{PROJECTS}", p.proxy_addr)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["type"],
        "urn:ado-auth-proxy:problem:egress-proxy-failed"
    );
    let detail = body["detail"].as_str().unwrap();
    let dead_authority = dead_url.trim_start_matches("http://");
    assert!(
        detail.contains(&format!(
            "cannot connect to the egress proxy {dead_authority} (from upstream.egress_proxy)"
        )),
        "{detail}"
    );
}

#[tokio::test]
async fn the_key_and_its_credentials_file_override_the_environment() {
    let squid = Squid::start(&[ADO_HOST]);
    let up = FakeUpstream::recording(|_| respond(200, &[], "through the key")).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("proxy-credentials");
    std::fs::write(&creds, format!("{USER}:{PASSWORD}\n")).unwrap();
    let toml = format!(
        "[upstream]\nurl = \"{}\"\negress_proxy = \"{}\"\negress_proxy_credentials_file = \"{}\"\n\
         [auth]\nmode = \"pat\"\n",
        up.url(),
        squid.url(),
        creds.display()
    );
    // The environment names a proxy that is not there, and NO_PROXY
    // would send the request direct: the key decides instead.
    let p = ProxyProcess::spawn(
        &toml,
        &[
            ("ADO_AUTH_PROXY_AUTH__PAT", "a-personal-access-token"),
            ("HTTPS_PROXY", "http://127.0.0.1:1"),
            ("HTTP_PROXY", "http://127.0.0.1:1"),
            ("NO_PROXY", "127.0.0.1"),
        ],
    );
    assert_eq!(
        get_ok(&format!("http://{}{PROJECTS}", p.proxy)).await,
        "through the key"
    );
    drop(p);
    let log = squid.wait_logged(&format!("CONNECT 127.0.0.1:{}", up.addr.port()));
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{} {USER}", up.addr.port())),
        "{log}"
    );
}

#[test]
fn an_unusable_proxy_variable_stops_the_start_naming_it() {
    let out = std::process::Command::new(crate::support::process::binary())
        .args(["check-config"])
        .env("ADO_AUTH_PROXY_AUTH__MODE", "none")
        .env("HTTPS_PROXY", "socks5://user:Socks-Secret-1@proxy:1080")
        .env_remove("ADO_AUTH_PROXY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTPS_PROXY: uses the socks5:// scheme"),
        "{err}"
    );
    assert!(err.contains("upstream.egress_proxy"), "{err}");
    assert!(!err.contains("Socks-Secret-1"), "{err}");
}

/// An egress proxy that answers 200 to CONNECT and then says nothing,
/// or an upstream that accepts and never speaks TLS: the request gets a
/// 502 within upstream.connect_timeout, not a hang (found by review).
#[tokio::test]
async fn a_tunnel_or_upstream_that_goes_quiet_is_a_502_within_the_connect_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = silent.accept().await {
            // Answer a CONNECT with 200, then keep quiet; say nothing to TLS.
            let mut buf = [0u8; 1024];
            if let Ok(n) = s.read(&mut buf).await
                && buf[..n].starts_with(b"CONNECT ")
            {
                let _ = s
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
            }
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    for via_proxy in [true, false] {
        let mut c = support::config(&format!("https://{ADO_HOST}:443"));
        if !via_proxy {
            c.upstream.url = Url::parse(&format!("https://127.0.0.1:{silent_port}")).unwrap();
        }
        c.auth.mode = AuthMode::Pat;
        c.auth.pat = Some(Secret::new("a-personal-access-token"));
        c.upstream.connect_timeout = Duration::from_millis(500);
        c.upstream.response_timeout = Duration::from_secs(60);
        if via_proxy {
            through(
                &mut c,
                &format!("http://127.0.0.1:{silent_port}"),
                None,
                dir.path(),
            );
        }
        let p = support::start(c).await;
        let started = Instant::now();
        let (status, body) = problem(format!("http://{}{PROJECTS}", p.proxy_addr)).await;
        assert_eq!(status, 502, "via proxy {via_proxy}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("upstream.connect_timeout"), "{detail}");
    }
}

/// Managed identity federation: the managed identity endpoint is local
/// and reached directly (squid never sees it, with no NO_PROXY at all),
/// the token exchange at Entra goes through the egress proxy (its name
/// resolves only in squid). Found by review: the exchange went direct.
#[tokio::test]
async fn managed_identity_is_direct_and_its_token_exchange_goes_through_squid() {
    use crate::support::fake_idp::OTHER_TENANT;
    let squid = Squid::start(&[LOGIN_HOST]);
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado_tenants(&idp, &[("contoso", OTHER_TENANT)]).await;
    idp.set_federated_token("mi-exchange-token");
    let imds = FakeUpstream::recording(|_| {
        respond(
            200,
            &[("content-type", "application/json")],
            r#"{"access_token":"mi-exchange-token","expires_in":"86399","resource":"api://AzureADTokenExchange","token_type":"Bearer"}"#,
        )
    })
    .await;
    let idp_port = Url::parse(&idp.url()).unwrap().port().unwrap();
    let toml = format!(
        "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"service\"\n\
         source = \"managed-identity-federation\"\ntenant = \"{OTHER_TENANT}\"\n\
         client_id = \"{CLIENT_ID}\"\nmanaged_identity_client_id = \"mi-client-id\"\n\
         managed_identity_endpoint = \"{}/metadata/identity/oauth2/token\"\n\
         authority_host = \"http://{LOGIN_HOST}:{idp_port}\"\n",
        ado.url(),
        imds.url(),
    );
    let via = squid.url_with(USER, PASSWORD);
    let p = ProxyProcess::spawn(&toml, &[("HTTPS_PROXY", &via), ("http_proxy", &via)]);
    let body = get_ok(&format!("http://{}{PROJECTS}", p.proxy)).await;
    assert!(body.contains("\"user\""), "{body}");
    assert!(
        !imds.requests().is_empty(),
        "the managed identity endpoint was asked"
    );
    drop(p);
    let log = squid.wait_logged(&format!("POST http://{LOGIN_HOST}:{idp_port}/"));
    assert!(
        log.contains(&format!("POST http://{LOGIN_HOST}:{idp_port}/")),
        "{log}"
    );
    let imds_port = imds.addr.port();
    assert!(
        !log.contains(&format!(":{imds_port}")),
        "IMDS went through squid: {log}"
    );
}
