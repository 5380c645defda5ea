//! Personal proxy tokens through the real binary: a signed-in user makes
//! one at `/.auth/tokens`, then real `git` (its credential helper answers
//! the proxy's Basic challenge) and a curl-like client act as that user;
//! revoked, the token reads why; it survives a restart (embedded store)
//! and works on another replica (Redis); its value is never in the logs
//! or the store's bytes; a token is no cookie and a cookie no token.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use tokio::process::Command;

use crate::support::fake_idp::{self, CLIENT_ID, CLIENT_SECRET, FakeIdp, TENANT};
use crate::support::oidc::Browser;
use crate::support::process::ProxyProcess;
use crate::support::redis::RedisServer;
use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{PROJECTS, client, git_backend, metrics};

/// A fake Azure DevOps accepting the fake IdP's live tokens: git from
/// `root`, anything else answered with who the token belongs to.
pub(crate) async fn ado(idp: &FakeIdp, root: std::path::PathBuf) -> FakeUpstream {
    let check = std::sync::Arc::new(idp.checker());
    FakeUpstream::raw(move |req| {
        let (check, root) = (check.clone(), root.clone());
        async move {
            if req.uri().path().contains("/_git/") {
                return git_backend::serve_checked(root, |auth| check(auth).is_ok(), req).await;
            }
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            match check(&auth) {
                Ok(who) => respond(
                    200,
                    &[("content-type", "application/json")],
                    format!(r#"{{"user":"{who}"}}"#),
                ),
                Err(_) => respond(401, &[], ""),
            }
        }
    })
    .await
}

pub(crate) fn toml(ado: &FakeUpstream, idp: &FakeIdp, session: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"user\"\nprovider = \"entra\"\n\
         tenant = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\nauthority_host = \"{}\"\n\
         [session]\n{session}\n",
        ado.url(),
        idp.url()
    )
}

pub(crate) fn spawn(toml: &str) -> ProxyProcess {
    ProxyProcess::spawn(
        toml,
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    )
}

pub(crate) async fn signed_in(p: &ProxyProcess) -> Browser {
    let b = Browser::new();
    let resp = fake_idp::sign_in(&b, &format!("http://{}", p.proxy), Some(PROJECTS)).await;
    assert_eq!(resp.status(), 302, "signed in: {}", p.logs());
    b
}

/// Creates a token through the JSON API: (id, value).
pub(crate) async fn create(p: &ProxyProcess, b: &Browser, name: &str) -> (String, String) {
    let resp = b
        .http
        .post(format!("http://{}/.auth/tokens", p.proxy))
        .json(&serde_json::json!({"name": name, "expires_in_days": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: serde_json::Value = resp.json().await.unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("adp_"), "{v}");
    assert_eq!(v["name"], name);
    (v["id"].as_str().unwrap().to_string(), token)
}

pub(crate) async fn with_bearer(p: &ProxyProcess, token: &str) -> reqwest::Response {
    client()
        .get(format!("http://{}{PROJECTS}", p.proxy))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

async fn git(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("GIT_DIR")
        .output()
        .await
        .expect("git runs")
}

#[tokio::test]
async fn git_and_programs_act_as_the_signed_in_user_with_a_proxy_token() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, home, work) = (
        tmp.path().join("root"),
        tmp.path().join("home"),
        tmp.path().join("work"),
    );
    for d in [&root, &home, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    let init = git(
        &root,
        &home,
        &["init", "-q", "--bare", "-b", "main", "repo"],
    )
    .await;
    assert!(init.status.success());
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let up = ado(&idp, root.clone()).await;
    let db = tmp.path().join("sessions.redb");
    let config = toml(
        &up,
        &idp,
        &format!("store = \"embedded\"\npath = \"{}\"", db.display()),
    );
    let mut p = spawn(&config);
    let url = format!("http://{}/contoso/proj/_git/repo", p.proxy);

    // Without a credential, git gets the Basic challenge and stops (no
    // prompt here); the body says where to get a token.
    let out = git(&work, &home, &["ls-remote", &url]).await;
    assert!(!out.status.success());
    let resp = client()
        .get(format!("{url}/info/refs?service=git-upload-pack"))
        .header("user-agent", "git/2.47.3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Basic realm=\"ado-auth-proxy\""),
        "{challenge}"
    );
    assert!(resp.text().await.unwrap().contains("/.auth/tokens"));

    let b = signed_in(&p).await;
    let (id, token) = create(&p, &b, "laptop git").await;

    // git: the credential helper answers the challenge with the token.
    let creds = home.join(".git-credentials");
    std::fs::write(&creds, format!("http://me:{token}@{}\n", p.proxy)).unwrap();
    let helper = format!("store --file={}", creds.display());
    let clone = git(
        &work,
        &home,
        &[
            "-c",
            &format!("credential.helper={helper}"),
            "clone",
            "-q",
            &url,
            "c",
        ],
    )
    .await;
    assert!(
        clone.status.success(),
        "{}",
        String::from_utf8_lossy(&clone.stderr)
    );
    let c = work.join("c");
    for (k, v) in [("user.email", "t@example.com"), ("user.name", "T")] {
        assert!(git(&c, &home, &["config", k, v]).await.status.success());
    }
    std::fs::write(c.join("f"), "pushed with a proxy token").unwrap();
    assert!(git(&c, &home, &["add", "f"]).await.status.success());
    assert!(
        git(&c, &home, &["commit", "-q", "-m", "x"])
            .await
            .status
            .success()
    );
    let push = git(
        &c,
        &home,
        &[
            "-c",
            &format!("credential.helper={helper}"),
            "push",
            "-q",
            "origin",
            "main",
        ],
    )
    .await;
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );

    // A program: Bearer, or Basic with any user name.
    let resp = with_bearer(&p, &token).await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["user"].as_str().unwrap().contains('@'), "the owner: {v}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"));
    let resp = client()
        .get(format!("http://{}{PROJECTS}", p.proxy))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The list shows it, never its value; a token cannot list or make
    // tokens, nor pass as a cookie; a cookie is no token.
    let list: serde_json::Value = b
        .http
        .get(format!("http://{}/.auth/tokens", p.proxy))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["tokens"][0]["name"], "laptop git");
    assert!(list["tokens"][0]["last_used_at"].is_string(), "{list}");
    assert!(!list.to_string().contains(&token));
    let by_token = client()
        .get(format!("http://{}/.auth/tokens", p.proxy))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), 401);
    let as_cookie = client()
        .get(format!("http://{}{PROJECTS}", p.proxy))
        .header("cookie", format!("ado_proxy_session={token}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(as_cookie.status(), 401, "a token is no cookie");

    // It survives a restart of the proxy (embedded store).
    p.signal(rustix::process::Signal::TERM);
    p.wait_exit(Duration::from_secs(20));
    let logs_before = p.logs();
    let p = spawn(&config);
    assert_eq!(with_bearer(&p, &token).await.status(), 200, "{}", p.logs());

    // Revoked: the next use reads why and where to renew.
    let b = signed_in(&p).await;
    let del = b
        .http
        .delete(format!("http://{}/.auth/tokens/{id}", p.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let resp = with_bearer(&p, &token).await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["adoAuthProxy"]["id"], "proxy-token-refused", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("/.auth/tokens"),
        "{v}"
    );
    let m = metrics(p.admin).await;
    for line in [
        "ado_proxy_personal_tokens_total{outcome=\"revoked\"} 1",
        "ado_proxy_personal_tokens_total{outcome=\"refused\"} 1",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }

    // The value is in no log and nowhere in the database file.
    for logs in [logs_before, p.logs()] {
        assert!(!logs.contains(&token[4..]), "a token in the logs");
    }
    drop(p);
    let bytes = std::fs::read(&db).unwrap();
    assert!(
        !bytes
            .windows(token.len() - 4)
            .any(|w| w == &token.as_bytes()[4..]),
        "a token in the database"
    );
}

/// A fake Entra and Azure DevOps, and the config of replicas sharing
/// `redis` with one key file.
struct OnRedis {
    idp: FakeIdp,
    _up: FakeUpstream,
    _dir: tempfile::TempDir,
    config: String,
}

impl OnRedis {
    async fn new(redis: &RedisServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        std::fs::write(&keys, format!("{key}\n")).unwrap();
        let idp = FakeIdp::start(Duration::from_secs(3600)).await;
        let up = ado(&idp, dir.path().to_path_buf()).await;
        let session = format!(
            "store = \"redis\"\nredis_url = \"{}\"\nencryption_keys_file = \"{}\"\nrevalidate_interval = \"1s\"",
            redis.url(),
            keys.display()
        );
        let config = toml(&up, &idp, &session);
        Self {
            idp,
            _up: up,
            _dir: dir,
            config,
        }
    }
}

/// Two replicas on one Redis: a token made on one works on the other,
/// and a revocation reaches it within the revalidation interval.
#[tokio::test]
async fn a_token_works_on_every_replica_and_dies_everywhere() {
    let redis = RedisServer::start();
    let r = OnRedis::new(&redis).await;
    let (a, b_proxy) = (spawn(&r.config), spawn(&r.config));
    let b = signed_in(&a).await;
    let (id, token) = create(&a, &b, "ci job").await;
    assert_eq!(
        with_bearer(&b_proxy, &token).await.status(),
        200,
        "{}",
        b_proxy.logs()
    );
    let del = b
        .http
        .delete(format!("http://{}/.auth/tokens/{id}", a.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(with_bearer(&b_proxy, &token).await.status(), 401);
    assert_eq!(with_bearer(&a, &token).await.status(), 401);
    let dump = redis.dump_values();
    assert!(!dump.contains(&token[4..]), "a token in Redis");
}

/// Hostile and malformed credentials are no tokens: the request is
/// answered as unauthenticated, never forwarded with them.
#[tokio::test]
async fn malformed_tokens_are_refused_without_reaching_azure_devops() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let up = ado(&idp, std::env::temp_dir()).await;
    let p = spawn(&toml(&up, &idp, "store = \"memory\""));
    let long = format!("adp_{}", "a".repeat(500));
    let basic_no_colon = base64::engine::general_purpose::STANDARD.encode("adp_abc");
    // (Authorization, the proxy's answer id): a well-formed unknown token
    // is refused as such; anything else is no token at all.
    let unknown = "Bearer adp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    for value in [
        "Bearer adp_".to_string(),
        "Bearer adp_../../etc".to_string(),
        format!("Bearer {long}"),
        "Bearer not-a-proxy-token".to_string(),
        format!("Basic {basic_no_colon}"),
        "Basic %%%".to_string(),
        unknown.clone(),
    ] {
        let resp = client()
            .get(format!("http://{}{PROJECTS}", p.proxy))
            .header("authorization", &value)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{value}");
        let v: serde_json::Value = resp.json().await.unwrap();
        let want = if value == unknown {
            "proxy-token-refused"
        } else {
            "sign-in-required"
        };
        assert_eq!(v["adoAuthProxy"]["id"], want, "{value}: {v}");
    }
}

/// Headless Chromium: the page sends the browser through sign-in, shows a
/// new token once, lists it without its value, and revokes it.
#[tokio::test]
async fn chromium_creates_sees_once_and_revokes_a_token() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let up = ado(&idp, std::env::temp_dir()).await;
    let p = spawn(&toml(&up, &idp, "store = \"memory\""));
    let page = format!("http://{}/.auth/tokens", p.proxy);
    let mut peer = crate::support::peer::Peer::start(
        "tokens_page.mjs",
        &[("PAGE_URL", &page), ("TOKEN_NAME", "build <agent> & co")],
    );
    let created = peer.next().await;
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("adp_"), "{created}");
    let text = created["text"].as_str().unwrap();
    assert!(
        text.contains("build <agent> & co"),
        "the name, escaped and shown: {text}"
    );
    assert_eq!(with_bearer(&p, &token).await.status(), 200);

    peer.go_on().await;
    let listed = peer.next().await;
    let text = listed["text"].as_str().unwrap();
    assert!(
        text.contains("build <agent> & co") && !text.contains(&token),
        "{text}"
    );
    let revoked = peer.next().await;
    assert!(
        revoked["text"].as_str().unwrap().contains("None yet"),
        "{revoked}"
    );
    assert_eq!(with_bearer(&p, &token).await.status(), 401);
}

/// Signing out leaves the tokens working (they have sessions of their
/// own); signing out with `tokens=revoke` ends them too.
#[tokio::test]
async fn signing_out_keeps_tokens_unless_asked_to_revoke_them() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let up = ado(&idp, std::env::temp_dir()).await;
    let p = spawn(&toml(&up, &idp, "store = \"memory\""));
    let logout = |b: &Browser, query: &'static str| {
        let url = format!("http://{}/.auth/logout{query}", p.proxy);
        let req = b.http.post(url).header("accept", "application/json");
        async move { req.send().await.unwrap().status() }
    };
    let b = signed_in(&p).await;
    let (_, kept) = create(&p, &b, "kept").await;
    assert_eq!(logout(&b, "").await, 200);
    assert_eq!(
        with_bearer(&p, &kept).await.status(),
        200,
        "outlives the browser session"
    );

    let b = signed_in(&p).await;
    let (_, second) = create(&p, &b, "second").await;
    assert_eq!(logout(&b, "?tokens=revoke").await, 200);
    for token in [&kept, &second] {
        assert_eq!(with_bearer(&p, token).await.status(), 401);
    }
}

/// When the owner's refresh token is revoked, the token stops with an
/// answer naming the page where a new one is made.
#[tokio::test]
async fn a_token_stops_readably_when_its_refresh_token_is_gone() {
    let idp = FakeIdp::start(Duration::from_secs(2)).await;
    let up = ado(&idp, std::env::temp_dir()).await;
    let p = spawn(&toml(&up, &idp, "store = \"memory\""));
    let b = signed_in(&p).await;
    let (_, token) = create(&p, &b, "nightly").await;
    assert_eq!(with_bearer(&p, &token).await.status(), 200);
    idp.set_mode(fake_idp::Mode::Revoked);
    // The access token runs out; the refresh is refused.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = with_bearer(&p, &token).await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["adoAuthProxy"]["id"], "proxy-token-refused", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("refresh token") && message.contains("/.auth/tokens"),
        "{message}"
    );
}

#[tokio::test]
async fn a_user_holds_at_most_max_tokens_per_user_even_when_asking_at_once() {
    use crate::support::fake_idp::Setup;
    let s = Setup::start(Duration::from_secs(3600), |c, _| {
        c.auth.max_tokens_per_user = 3;
    })
    .await;
    let b = s.signed_in().await;
    let url = format!("{}/.auth/tokens", s.url);
    let asks: Vec<_> = (0..12)
        .map(|i| {
            let req = b
                .http
                .post(&url)
                .json(&serde_json::json!({"name": format!("t{i}"), "expires_in_days": 7}));
            tokio::spawn(async move {
                let resp = req.send().await.unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            })
        })
        .collect();
    let mut made = 0;
    for a in asks {
        let (status, body) = a.await.unwrap();
        match status {
            201 => made += 1,
            409 => {
                assert!(body.contains("auth.max_tokens_per_user"), "{body}");
                assert!(body.contains("too-many-tokens"), "{body}");
                assert!(!body.contains("adp_"), "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(made, 3, "exactly the cap, concurrent or not");
    let list: serde_json::Value = b
        .http
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(
        tokens.len(),
        3,
        "every made token is listed (revocable): {list}"
    );
    // Revoking one makes room for one.
    let id = tokens[0]["id"].as_str().unwrap();
    let del = b.http.delete(format!("{url}/{id}")).send().await.unwrap();
    assert_eq!(del.status(), 204);
    let again = b
        .http
        .post(&url)
        .json(&serde_json::json!({"name": "again", "expires_in_days": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
}

/// The status of an API call through `p` with `b`'s session cookie.
async fn with_cookie(p: &ProxyProcess, b: &Browser) -> u16 {
    b.http
        .get(format!("http://{}{PROJECTS}", p.proxy))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Redis killed and restarted empty (no persistence) right after a
/// sign-out and a revocation on replica A, while replica B still caches
/// both: B must not write them back, A must not accept them again, a
/// replica started afterwards must not find them; and nothing live is
/// lost: the other session and token keep working everywhere, the token
/// is listed again for its owner.
#[tokio::test]
async fn a_redis_restarted_empty_revives_no_sign_out_and_no_revoked_token() {
    let mut redis = RedisServer::start();
    let r = OnRedis::new(&redis).await;
    let config = r.config.clone();
    let (a, b) = (spawn(&config), spawn(&config));
    let alice = signed_in(&a).await;
    let bob = signed_in(&a).await;
    let (gone_id, gone) = create(&a, &alice, "revoked").await;
    let (_, kept) = create(&a, &alice, "kept").await;
    // B holds every one of them.
    for token in [&gone, &kept] {
        assert_eq!(with_bearer(&b, token).await.status(), 200, "{}", b.logs());
    }
    assert_eq!(with_cookie(&b, &bob).await, 200);
    assert_eq!(with_cookie(&b, &alice).await, 200);

    // On A: Bob signs out, Alice revokes one token; Redis loses
    // everything at once.
    let out = bob
        .http
        .post(format!("http://{}/.auth/logout", a.proxy))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let del = alice
        .http
        .delete(format!("http://{}/.auth/tokens/{gone_id}", a.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    redis.restart();

    // B is used meanwhile; within a few store checks every replica
    // knows, and the restore (endings first, sessions after 5 s) is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (t, c) = (
            with_bearer(&b, &gone).await.status().as_u16(),
            with_cookie(&b, &bob).await,
        );
        if (t, c) == (401, 401) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B still serves what A ended: token {t}, cookie {c}\n{}",
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    let c = spawn(&config);
    for p in [&a, &b, &c] {
        assert_eq!(
            with_bearer(p, &gone).await.status(),
            401,
            "revoked token revived"
        );
        assert_eq!(
            with_cookie(p, &bob).await,
            401,
            "signed-out session revived"
        );
        assert_eq!(with_bearer(p, &kept).await.status(), 200, "live token lost");
        assert_eq!(with_cookie(p, &alice).await, 200, "live session lost");
    }
    // Alice still sees (and can revoke) her live token, and only it.
    let list: serde_json::Value = alice
        .http
        .get(format!("http://{}/.auth/tokens", c.proxy))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["kept"], "{list}");
    assert!(
        a.logs().contains("lost its data") || b.logs().contains("lost its data"),
        "the loss is logged"
    );
    assert_eq!(
        r.idp.calls("authorization_code"),
        2,
        "no one signed in again"
    );
}
