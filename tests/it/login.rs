//! User sign-in against a real OpenID provider (npm `oidc-provider`): the
//! browser flow, 401s for programs and git, transparent single-flight
//! refresh, logout, and every refused case. The fake Azure DevOps verifies
//! each bearer token against the provider's signing keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ado_auth_proxy::app::Running;
use ado_auth_proxy::clock::Clock;
use ado_auth_proxy::config::{AuthMode, Config, Provider, Secret};
use url::Url;

use crate::support::oidc::{Browser, OidcPeer, verify_access_token};
use crate::support::upstream::{FakeUpstream, Recorded, respond};
use crate::support::{self, PROJECTS, client, metrics, query_param};

struct Setup {
    idp: OidcPeer,
    ado: FakeUpstream,
    proxy: Running,
    url: String,
    /// When set, the fake answers the next valid token with 401 (as if it
    /// had been revoked) and clears the flag.
    reject_next: Arc<AtomicBool>,
    /// The proxy's time: moved forward instead of sleeping.
    clock: Clock,
}

fn user_config(upstream: &str, issuer: &str) -> Config {
    let mut c = support::config(upstream);
    c.auth.mode = AuthMode::User;
    c.auth.provider = Some(Provider::Oidc);
    c.auth.issuer_url = Some(Url::parse(issuer).unwrap());
    c.auth.client_id = Some("proxy".into());
    c.auth.client_secret = Some(Secret::new("proxy-secret"));
    c.auth.scopes = Some(
        ["openid", "offline_access", "profile", "email", "vso.code"]
            .map(String::from)
            .to_vec(),
    );
    c.auth.refresh_before = Duration::from_secs(2);
    c
}

/// The fake Azure DevOps: 200 with the token's subject for a valid token,
/// 401 the way Azure DevOps answers otherwise.
async fn fake_ado(idp: &OidcPeer, reject_next: Arc<AtomicBool>) -> FakeUpstream {
    let keys = idp.jwks().await;
    let issuer = idp.issuer.clone();
    FakeUpstream::recording(move |r: &Recorded| {
        let auth = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match verify_access_token(&keys, &issuer, auth) {
            Some(_) if reject_next.swap(false, Ordering::SeqCst) => unauthorized(),
            Some(sub) => respond(
                200,
                &[("content-type", "application/json")],
                format!(r#"{{"sub":"{sub}","path":"{}"}}"#, r.uri),
            ),
            None => unauthorized(),
        }
    })
    .await
}

fn unauthorized() -> http::Response<crate::support::upstream::FakeBody> {
    respond(
        401,
        &[
            (
                "www-authenticate",
                "Bearer authorization_uri=https://login.microsoftonline.com/common",
            ),
            (
                "x-tfs-serviceerror",
                "TF400813%3a+Resource+not+available+for+anonymous+access.",
            ),
            ("activityid", "cbf4682a-915d-42b3-ac36-a714328098e8"),
        ],
        "",
    )
}

async fn setup_with(access_ttl: u64, tweak: impl FnOnce(&mut Config)) -> Setup {
    let idp = OidcPeer::start(access_ttl).await;
    let reject_next = Arc::new(AtomicBool::new(false));
    let ado = fake_ado(&idp, reject_next.clone()).await;
    let mut config = user_config(&ado.url(), &idp.issuer);
    tweak(&mut config);
    let clock = Clock::default();
    let proxy = support::start_with(config, clock.clone()).await;
    let url = format!("http://{}", proxy.proxy_addr);
    Setup {
        idp,
        ado,
        proxy,
        url,
        reject_next,
        clock,
    }
}

async fn setup() -> Setup {
    setup_with(5, |_| {}).await
}

/// Signs `user` in and returns the browser holding the session.
/// `GET /.auth/me` in browser `b`.
async fn me(s: &Setup, b: &Browser) -> reqwest::Response {
    b.http
        .get(format!("{}/.auth/me", s.url))
        .send()
        .await
        .unwrap()
}

async fn signed_in(s: &Setup, user: &str) -> Browser {
    let b = Browser::new();
    let resp = b.sign_in(&s.url, user, PROJECTS).await;
    assert_eq!(resp.status(), 302, "callback: {:?}", resp.text().await);
    b
}

#[tokio::test]
async fn browser_signs_in_and_requests_carry_the_users_token() {
    let s = setup().await;
    let b = Browser::new();

    // An unknown browser is sent to sign in, keeping where it was going.
    let resp = b.navigate(&format!("{}{PROJECTS}", s.url)).await;
    assert_eq!(resp.status(), 302);
    let login = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(login.path(), "/.auth/login");
    assert_eq!(query_param(&login, "rd").as_deref(), Some(PROJECTS));

    // /.auth/login sends it to the provider with PKCE S256, state, nonce.
    let resp = b.navigate(login.as_str()).await;
    assert_eq!(resp.status(), 302);
    let set_cookie: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        set_cookie
            .iter()
            .any(|c| c.starts_with("ado_proxy_session_login_")
                && c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
                && c.contains("Max-Age=660")),
        "{set_cookie:?}"
    );
    let authorize = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(authorize.as_str().starts_with(&s.idp.issuer));
    let q = |k: &str| query_param(&authorize, k);
    assert_eq!(q("code_challenge_method").as_deref(), Some("S256"));
    assert!(q("state").unwrap().len() >= 43, "state has 256 bits");
    assert!(q("nonce").is_some());
    assert_eq!(
        q("redirect_uri").unwrap(),
        format!("{}/.auth/callback", s.url)
    );

    let callback = b.sign_in_at_provider(authorize.as_str(), "alice").await;
    let resp = b.navigate(&callback).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], PROJECTS);
    let session_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("ado_proxy_session="))
        .expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session_cookie.contains(attr), "{session_cookie}");
    }
    let id = session_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("ado_proxy_session=");
    assert_eq!(id.len(), 43, "256-bit id, base64url");

    // The request now reaches Azure DevOps with alice's verified token,
    // and without the proxy's cookies; the client's own cookies stay.
    // (reqwest sends its jar only when no Cookie header is set.)
    let resp = b
        .http
        .get(format!("{}{PROJECTS}", s.url))
        .header("cookie", format!("theirs=kept; ado_proxy_session={id}"))
        .header("authorization", "Basic c29tZW9uZS1lbHNl")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["sub"], "alice");
    let seen = s.ado.requests();
    let last = seen.last().unwrap();
    assert!(
        last.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ey")
    );
    // No cookie at all reaches Azure DevOps (upstream.forward_cookies
    // is empty): neither the proxy's nor another application's.
    assert!(
        last.headers.get("cookie").is_none(),
        "cookies reached the upstream: {:?}",
        last.headers.get_all("cookie")
    );

    // /.auth/me tells who is signed in, never a token.
    let resp = me(&s, &b).await;
    assert_eq!(resp.status(), 200);
    let me_text = resp.text().await.unwrap();
    let who: serde_json::Value = serde_json::from_str(&me_text).unwrap();
    assert_eq!(who["upn"], "alice@example.com");
    assert_eq!(who["email"], "alice@example.com");
    assert_eq!(who["name"], "User alice");
    assert_eq!(who["objectId"], "alice");
    assert_eq!(who["provider"], "oidc");
    assert!(who["accessTokenExpiresAt"].as_str().unwrap().ends_with('Z'));
    assert!(who["sessionExpiresAt"].as_str().is_some());
    assert!(!me_text.contains("ey"), "no token in /.auth/me: {me_text}");

    let m = metrics(s.proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_logins_total{outcome=\"completed\"} 1"),
        "{m}"
    );
    assert!(m.contains("ado_proxy_sessions_active 1"), "{m}");
    assert!(
        m.contains(
            "ado_proxy_token_endpoint_duration_seconds_count{grant=\"authorization_code\"} 1"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn programs_get_401_and_git_403_with_the_login_url_never_a_redirect() {
    let s = setup().await;
    let http = client();
    let url = format!("{}{PROJECTS}", s.url);
    let login = format!("{}/.auth/login", s.url);

    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "json client",
            http.get(&url).header("accept", "application/json"),
        ),
        (
            "XHR",
            http.get(&url)
                .header("accept", "text/html")
                .header("x-requested-with", "XMLHttpRequest"),
        ),
        (
            "POST form",
            http.post(&url).header("accept", "text/html").body("x"),
        ),
        (
            "FedAuthRedirect suppress",
            http.get(&url)
                .header("accept", "application/json")
                .header("x-tfs-fedauthredirect", "Suppress"),
        ),
    ];
    for (name, req) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{name}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer realm=\"ado-auth-proxy\"",
            "{name}"
        );
        // Azure DevOps' own error shape: its SDKs show `message`.
        assert_eq!(
            resp.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["adoAuthProxy"]["loginUrl"]
                .as_str()
                .unwrap()
                .starts_with(&login),
            "{name}: {body}"
        );
        assert!(body["message"].as_str().unwrap().contains(&login), "{name}");
    }
    // A client asking for problem details gets them.
    let resp = http
        .get(&url)
        .header("accept", "application/problem+json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "urn:ado-auth-proxy:problem:sign-in-required");
    assert!(body["loginUrl"].as_str().unwrap().starts_with(&login));
    assert!(body["detail"].as_str().unwrap().contains(&login));

    // git (even asking for HTML) gets text it prints as `remote:` lines,
    // with 403: a 401 makes git prompt for a user name and hide the text.
    let resp = http
        .get(format!(
            "{}/contoso/_git/repo/info/refs?service=git-upload-pack",
            s.url
        ))
        .header("user-agent", "git/2.47.3")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("www-authenticate").is_none());
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let text = resp.text().await.unwrap();
    assert!(text.contains(&login), "{text}");

    // And the real git shows it to its user, without a prompt.
    let home = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("git")
        .args(["ls-remote", &format!("{}/contoso/_git/repo", s.url)])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("remote: ado-auth-proxy: Sign-in required"),
        "{stderr}"
    );
    assert!(stderr.contains(&login), "{stderr}");
    assert!(!stderr.contains("Username"), "git did not prompt: {stderr}");
    assert!(s.ado.requests().is_empty(), "nothing was forwarded");
}

#[tokio::test]
async fn tokens_refresh_across_expiries_without_a_new_login() {
    let s = setup().await;
    let b = signed_in(&s, "alice").await;
    let url = format!("{}{PROJECTS}", s.url);
    // Access tokens live 5 s: 14 s of traffic spans several expiries.
    for _ in 0..28 {
        let resp = b.http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
        s.clock.advance(Duration::from_millis(500));
    }
    let stats = s.idp.stats().await;
    assert_eq!(stats["authorization_code"], 1, "one sign-in: {stats}");
    assert!(stats["refresh_token"].as_u64().unwrap() >= 3, "{stats}");
    assert_eq!(
        stats["refresh_errors"], 0,
        "rotation never replayed an old token: {stats}"
    );
}

#[tokio::test]
async fn five_hundred_concurrent_requests_on_an_expired_token_refresh_once() {
    // Tokens live 10 s: the refreshed one stays fresh (8 s) for longer
    // than 500 requests take on a slow debug build.
    let s = setup_with(10, |_| {}).await;
    let b = signed_in(&s, "alice").await;
    // Let the token expire outright.
    s.clock.advance(Duration::from_millis(10_300));
    let before = s.idp.refreshes().await;
    let url = format!("{}{PROJECTS}", s.url);
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let http = b.http.clone();
            let url = url.clone();
            tokio::spawn(async move { http.get(&url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    assert_eq!(
        s.idp.refreshes().await - before,
        1,
        "exactly one refresh call (500 requests took {:?})",
        started.elapsed()
    );
    let m = metrics(s.proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_token_refreshes_total{outcome=\"ok\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_refused_token_is_refreshed_and_a_bodyless_request_retried_once() {
    let s = setup_with(60, |_| {}).await;
    let b = signed_in(&s, "alice").await;
    let url = format!("{}{PROJECTS}", s.url);
    let before = s.idp.refreshes().await;
    s.reject_next.store(true, Ordering::SeqCst);
    let resp = b.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "retried with a fresh token");
    assert_eq!(s.idp.refreshes().await - before, 1);
    assert_eq!(s.ado.requests().len(), 2, "sent twice");

    // A request with a body cannot be replayed: the 401 passes through.
    s.reject_next.store(true, Ordering::SeqCst);
    let resp = b.http.post(&url).body("payload").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(s.ado.requests().len(), 3);
}

#[tokio::test]
async fn logout_ends_the_session_here_and_at_the_provider() {
    let s = setup().await;
    let b = signed_in(&s, "alice").await;
    let url = format!("{}{PROJECTS}", s.url);
    assert_eq!(b.http.get(&url).send().await.unwrap().status(), 200);

    // A GET (a link, an image from another site) only asks.
    let resp = b.navigate(&format!("{}/.auth/logout", s.url)).await;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("<form method=\"post\" action=\"/.auth/logout\">"),
        "{page}"
    );
    assert_eq!(b.http.get(&url).send().await.unwrap().status(), 200);
    // The page's button: a same-origin form post.
    let resp = b
        .http
        .post(format!("{}/.auth/logout", s.url))
        .header("accept", "text/html")
        .header("origin", &s.url)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let to = resp.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with(&format!("{}/session/end", s.idp.issuer)),
        "{to}"
    );
    assert!(to.contains("id_token_hint="), "{to}");
    let cleared = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("ado_proxy_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    let resp = b.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = b
        .http
        .post(format!("{}/.auth/logout", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "logging out twice is harmless");
    let resp = me(&s, &b).await;
    assert_eq!(resp.status(), 401);
}

/// No session cookie in any of `resp`'s `Set-Cookie` headers.
fn no_session_set(resp: &reqwest::Response) -> bool {
    !resp.headers().get_all("set-cookie").iter().any(|v| {
        v.to_str().unwrap().starts_with("ado_proxy_session=")
            && !v.to_str().unwrap().contains("Max-Age=0")
    })
}

#[tokio::test]
async fn refused_sign_ins_say_why_and_create_no_session() {
    let s = setup().await;

    // Forged state: no pending sign-in has it.
    let b = Browser::new();
    let _ = b.start_sign_in(&s.url, "alice", "/").await;
    let resp = b
        .navigate(&format!("{}/.auth/callback?code=abc&state=forged", s.url))
        .await;
    assert_eq!(resp.status(), 400);
    assert!(no_session_set(&resp));
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("This sign-in link is not valid")
    );

    // A replayed callback: the state is single-use.
    let b = Browser::new();
    let callback = b.start_sign_in(&s.url, "alice", "/").await;
    assert_eq!(b.navigate(&callback).await.status(), 302);
    let again = Browser::new();
    let resp = again.navigate(&callback).await;
    assert_eq!(resp.status(), 400);
    assert!(no_session_set(&resp));
    let resp = b.navigate(&callback).await;
    assert_eq!(resp.status(), 400, "even in the browser that started it");

    // The code of one sign-in with the state of another: the provider
    // checks the PKCE verifier, which belongs to the other sign-in.
    let b = Browser::new();
    let first = Url::parse(&b.start_sign_in(&s.url, "alice", "/").await).unwrap();
    let second = Url::parse(&b.start_sign_in(&s.url, "alice", "/").await).unwrap();
    let param = |u: &Url, k: &str| query_param(u, k).unwrap();
    let mut crossed = Url::parse(&format!("{}/.auth/callback", s.url)).unwrap();
    crossed
        .query_pairs_mut()
        .append_pair("code", &param(&first, "code"))
        .append_pair("state", &param(&second, "state"));
    let resp = b.navigate(crossed.as_str()).await;
    assert_eq!(resp.status(), 400);
    assert!(no_session_set(&resp));
    let text = resp.text().await.unwrap();
    assert!(text.contains("The sign-in code was refused"), "{text}");

    // A callback from another browser (no pre-auth cookie).
    let b = Browser::new();
    let callback = b.start_sign_in(&s.url, "alice", "/").await;
    let resp = Browser::new().navigate(&callback).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("started elsewhere"));

    // Open redirects.
    for rd in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "/%5cevil.example",
        "javascript:alert(1)",
        "/a\r\nSet-Cookie: x=y",
    ] {
        let mut login = Url::parse(&format!("{}/.auth/login", s.url)).unwrap();
        login.query_pairs_mut().append_pair("rd", rd);
        let resp = Browser::new().navigate(login.as_str()).await;
        assert_eq!(resp.status(), 400, "{rd:?}");
        assert!(resp.headers().get("location").is_none());
        let text = resp.text().await.unwrap();
        assert!(text.contains("Return address refused"), "{text}");
        assert!(
            !text.contains("evil.example"),
            "the refused value is not echoed"
        );
    }

    // A tampered or unknown session cookie is a sign-in, and is cleared.
    let resp = client()
        .get(format!("{}{PROJECTS}", s.url))
        .header(
            "cookie",
            "ado_proxy_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(s.ado.requests().is_empty());

    let m = metrics(s.proxy.admin_addr).await;
    // Every reason's series exists from the start (0); these counted.
    for reason in ["unknown_state", "code_redemption", "wrong_browser"] {
        let n = support::metric_value(
            &m,
            &format!("ado_proxy_login_failures_total{{reason=\"{reason}\"}}"),
        );
        assert!(n >= 1.0, "{reason}: {m}");
    }
}

#[tokio::test]
async fn an_expired_pre_auth_cookie_is_refused() {
    let s = setup_with(5, |c| c.auth.login_timeout = Duration::from_secs(1)).await;
    let b = Browser::new();
    let callback = b.start_sign_in(&s.url, "alice", "/").await;
    s.clock.advance(Duration::from_millis(1200));
    let resp = b.navigate(&callback).await;
    assert_eq!(resp.status(), 400);
    assert!(no_session_set(&resp));
    assert!(resp.text().await.unwrap().contains("took too long"));
}

#[tokio::test]
async fn users_outside_the_allowlist_are_refused() {
    let s = setup_with(5, |c| {
        c.auth.allowed_users = vec!["bob@example.com".into()];
    })
    .await;
    let resp = Browser::new().sign_in(&s.url, "alice", "/").await;
    assert_eq!(resp.status(), 403);
    assert!(no_session_set(&resp));
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("not on this proxy&#39;s list of allowed users"),
        "{text}"
    );

    let resp = Browser::new().sign_in(&s.url, "bob", "/").await;
    assert_eq!(resp.status(), 302, "bob is allowed");
    // An account claiming bob's address (and user name) that the
    // provider did not verify is not bob.
    let resp = Browser::new().sign_in(&s.url, "unverified-bob", "/").await;
    assert_eq!(resp.status(), 403, "an unverified email matched");
    // Nor is one whose provider does not say (no email_verified claim).
    let resp = Browser::new().sign_in(&s.url, "silent-bob", "/").await;
    assert_eq!(resp.status(), 403, "an email of unknown standing matched");

    let s = setup_with(5, |c| {
        c.auth.allowed_email_domains = vec!["contoso.com".into()];
    })
    .await;
    let resp = Browser::new().sign_in(&s.url, "alice", "/").await;
    assert_eq!(resp.status(), 403);
    assert!(no_session_set(&resp));

    let s = setup_with(5, |c| {
        c.auth.allowed_email_domains = vec!["example.com".into()];
    })
    .await;
    let resp = Browser::new().sign_in(&s.url, "alice", "/").await;
    assert_eq!(resp.status(), 302, "a verified address of the domain");
    let resp = Browser::new()
        .sign_in(&s.url, "unverified-carol", "/")
        .await;
    assert_eq!(resp.status(), 403, "an unverified address of the domain");
    let resp = Browser::new().sign_in(&s.url, "silent-carol", "/").await;
    assert_eq!(
        resp.status(),
        403,
        "an address of the domain nobody vouched for"
    );
}

#[tokio::test]
async fn parallel_sign_ins_in_two_tabs_both_complete() {
    let s = setup().await;
    let b = Browser::new();
    let first = b.start_sign_in(&s.url, "alice", "/first").await;
    let second = b.start_sign_in(&s.url, "alice", "/second").await;
    let resp = b.navigate(&second).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/second");
    let resp = b.navigate(&first).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/first");
}

/// Rotation through the binary: Entra refuses the secret of the first
/// slot (AADSTS7000215), and eight sign-ins redeem their codes at once.
/// Each gets through on the second slot, and the shared slot stays
/// there: the next sign-in presents the second at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ins_meeting_a_refused_secret_all_pass_on_the_other_slot() {
    use crate::support::fake_idp::{self, CLIENT_SECRET, Setup};
    let secrets = tempfile::tempdir().unwrap();
    let (current, next) = (secrets.path().join("current"), secrets.path().join("next"));
    std::fs::write(&current, "an-expired-client-secret").unwrap();
    std::fs::write(&next, CLIENT_SECRET).unwrap();
    let s = Setup::start(Duration::from_secs(3600), move |c, _| {
        c.auth.client_secret = None;
        c.auth.client_secret_file = Some(current);
        c.auth.client_secret_next_file = Some(next);
    })
    .await;
    // Eight browsers at the callback step, redeeming together.
    let mut pending = Vec::new();
    for _ in 0..8 {
        let b = Browser::new();
        let login = b.navigate(&format!("{}/.auth/login", s.url)).await;
        assert_eq!(login.status(), 302);
        let authorize = login.headers()["location"].to_str().unwrap().to_string();
        let approved = b.navigate(&authorize).await;
        assert_eq!(approved.status(), 302);
        let callback = approved.headers()["location"].to_str().unwrap().to_string();
        pending.push((b, callback));
    }
    let callbacks = pending.into_iter().map(|(b, callback)| {
        tokio::spawn(async move {
            let resp = b.navigate(&callback).await;
            let session = fake_idp::set_cookie(&resp, "ado_proxy_session");
            (resp.status(), session)
        })
    });
    for done in futures_util::future::join_all(callbacks).await {
        let (status, session) = done.unwrap();
        assert_eq!(status, 302, "signed in");
        assert!(session.is_some(), "with a session");
    }
    let redeemed = s.idp.calls("authorization_code");
    // Each call presented the first slot at most once.
    assert!((9..=16).contains(&redeemed), "{redeemed} code redemptions");
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        s.idp.calls("authorization_code"),
        redeemed + 1,
        "the next sign-in presents the second slot at once"
    );
}

#[tokio::test]
async fn a_provider_error_on_the_callback_gets_a_readable_escaped_page() {
    let s = setup().await;
    let b = Browser::new();
    let callback = Url::parse(&b.start_sign_in(&s.url, "alice", "/").await).unwrap();
    let state = query_param(&callback, "state").unwrap();
    let mut denied = Url::parse(&format!("{}/.auth/callback", s.url)).unwrap();
    denied
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair(
            "error_description",
            "AADSTS65004: User declined to consent <script>alert(1)</script>",
        )
        .append_pair("state", &state);
    let resp = b.navigate(denied.as_str()).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let html = resp.text().await.unwrap();
    assert!(html.contains("AADSTS65004"), "{html}");
    assert!(!html.contains("<script>alert"), "escaped: {html}");
    assert!(html.contains("&lt;script&gt;"));
    assert!(
        html.contains(&format!("href=\"{}/.auth/login\">Sign in again", s.url)),
        "offers to sign in again"
    );
}

#[tokio::test]
async fn headless_chromium_signs_in_and_lands_on_the_page_it_asked_for() {
    let s = setup_with(60, |_| {}).await;
    let start = format!("{}/contoso/_apis/projects?from=browser", s.url);
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(crate::support::oidc::peers_dir().join("browser_login.mjs"))
        .env("START_URL", &start)
        .env("LOGIN_USER", "carol");
    let result = support::run_peer(cmd, Duration::from_secs(120)).await;
    assert_eq!(result["url"], start, "landed where it started");
    assert_eq!(result["status"], 200);
    let text = result["text"].as_str().unwrap();
    assert!(
        text.contains("\"sub\":\"carol\""),
        "Azure DevOps saw carol's token: {text}"
    );
    let cookie = result["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ado_proxy_session")
        .expect("the session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Lax");
    assert_eq!(cookie["path"], "/");
    assert_eq!(cookie["secure"], false, "plain http public URL");
    assert_eq!(cookie["value"].as_str().unwrap().len(), 43);
}

#[tokio::test]
async fn an_idle_session_ends_and_the_browser_signs_in_again() {
    let s = setup_with(60, |c| c.session.idle_timeout = Duration::from_secs(1)).await;
    let b = signed_in(&s, "alice").await;
    let url = format!("{}{PROJECTS}", s.url);
    assert_eq!(b.http.get(&url).send().await.unwrap().status(), 200);
    s.clock.advance(Duration::from_millis(1300));
    let resp = b.navigate(&url).await;
    assert_eq!(resp.status(), 302);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/.auth/login")
    );
    let cleared = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn an_https_public_url_gives_host_prefixed_secure_cookies() {
    let s = setup_with(5, |c| {
        c.listen.public_url = Some(Url::parse("https://ado-proxy.example.com").unwrap());
    })
    .await;
    let resp = Browser::new()
        .navigate(&format!("{}/.auth/login?rd=%2F", s.url))
        .await;
    assert_eq!(resp.status(), 302);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("__Host-ado_proxy_session_login_"),
        "{cookie}"
    );
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains("Domain"),
        "__Host- cookies carry no Domain"
    );
    let authorize = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let redirect = query_param(&authorize, "redirect_uri").unwrap();
    assert_eq!(redirect, "https://ado-proxy.example.com/.auth/callback");
}

#[tokio::test]
async fn tokens_shorter_than_twice_refresh_before_refresh_at_half_life() {
    // 5 s tokens against the default refresh_before of 5 minutes: without
    // the half-life rule every request would refresh.
    let s = setup_with(5, |c| {
        c.auth.refresh_before = ado_auth_proxy::config::Config::default()
            .auth
            .refresh_before;
    })
    .await;
    let b = signed_in(&s, "alice").await;
    let url = format!("{}{PROJECTS}", s.url);
    for _ in 0..24 {
        assert_eq!(b.http.get(&url).send().await.unwrap().status(), 200);
        s.clock.advance(Duration::from_millis(250));
    }
    // About 6 s of traffic at one refresh per 2.5 s.
    let refreshes = s.idp.refreshes().await;
    assert!(
        (1..=4).contains(&refreshes),
        "{refreshes} refreshes for 24 requests"
    );
}

#[tokio::test]
async fn an_answer_naming_another_issuer_is_refused() {
    let s = setup().await;
    let b = Browser::new();
    let callback = Url::parse(&b.start_sign_in(&s.url, "alice", "/").await).unwrap();
    // oidc-provider names itself in `iss` (RFC 9207).
    let iss = query_param(&callback, "iss");
    assert_eq!(iss.as_deref(), Some(s.idp.issuer.as_str()));
    let mut mixed = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" {
                "https://evil.example".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    mixed.query_pairs_mut().clear().extend_pairs(pairs);
    let resp = b.navigate(mixed.as_str()).await;
    assert_eq!(resp.status(), 400);
    assert!(no_session_set(&resp));
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("came from another provider")
    );
}

/// An OpenID provider whose discovery document fails: sign-in starts
/// (anyone can make them) get the remembered failure until its backoff
/// runs out, not a fetch each; the next fetch after it succeeds.
#[tokio::test]
async fn a_failing_discovery_is_fetched_again_only_after_its_backoff() {
    let healthy = Arc::new(AtomicBool::new(false));
    let ok = healthy.clone();
    let issuer = FakeUpstream::recording(move |r| {
        if !ok.load(Ordering::SeqCst) {
            return respond(503, &[], "down");
        }
        let base = format!("http://{}", r.headers["host"].to_str().unwrap());
        respond(
            200,
            &[("content-type", "application/json")],
            serde_json::json!({
                "issuer": base,
                "authorization_endpoint": format!("{base}/authorize"),
                "token_endpoint": format!("{base}/token"),
                "jwks_uri": format!("{base}/jwks"),
            })
            .to_string(),
        )
    })
    .await;
    let issuer_url = format!("http://{}", issuer.addr);
    let clock = Clock::default();
    let proxy = support::start_with(
        user_config("http://127.0.0.1:9", &issuer_url),
        clock.clone(),
    )
    .await;
    let login = format!("http://{}/.auth/login", proxy.proxy_addr);
    let http = client();
    for _ in 0..50 {
        let resp = http.get(&login).send().await.unwrap();
        assert!(resp.status().is_server_error(), "{}", resp.status());
    }
    assert_eq!(
        issuer.requests().len(),
        1,
        "one fetch for 50 sign-in starts"
    );
    // The backoff (5 s, jittered) runs out; the provider is back.
    healthy.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(7));
    let resp = http.get(&login).send().await.unwrap();
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    assert_eq!(issuer.requests().len(), 2);
    proxy.shutdown();
    proxy.wait().await;
}
