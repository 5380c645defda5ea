//! Sessions on Redis behind Sentinel (`session.redis_sentinels`), with
//! real `redis-server` processes: a master, its replica and a sentinel.
//! Two proxy replicas keep every session across a `SENTINEL FAILOVER`
//! and across the new master being killed, and a sign-in after a
//! failover is written to the new master.

use std::time::{Duration, Instant};

use crate::support::fake_idp::{self, FakeIdp};
use crate::support::oidc::Browser;
use crate::support::redis::{RedisServer, Sentinel};
use crate::support::upstream::FakeUpstream;
use crate::support::{PROJECTS, start_with};

const MASTER: &str = "sessions";

struct Topology {
    idp: FakeIdp,
    _ado: FakeUpstream,
    servers: Vec<RedisServer>,
    sentinel: Sentinel,
    _dir: tempfile::TempDir,
    a: ado_auth_proxy::app::Running,
    b: ado_auth_proxy::app::Running,
}

impl Topology {
    async fn start() -> Self {
        Self::start_via(|s| vec![s.addr()]).await
    }

    /// As [`Self::start`], the proxies' `redis_sentinels` from `via`.
    async fn start_via(via: impl FnOnce(&Sentinel) -> Vec<String>) -> Self {
        use ado_auth_proxy::config::StoreKind;
        let idp = FakeIdp::start(Duration::from_secs(3600)).await;
        let ado = fake_idp::fake_ado(&idp).await;
        let master = RedisServer::start();
        let port = master.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        let sentinel = Sentinel::start(MASTER, master.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while sentinel.replicas(MASTER) < 1 || !replica.replicating() {
            assert!(
                Instant::now() < deadline,
                "the sentinel never saw the replica"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sentinels = via(&sentinel);
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, ado_auth_proxy::seal::generate_key().unwrap() + "\n").unwrap();
        let config = || {
            let mut c = fake_idp::entra_config(&ado.url(), &idp);
            c.session.store = StoreKind::Redis;
            c.session.redis_sentinels = sentinels.clone();
            c.session.redis_sentinel_master = Some(MASTER.into());
            c.session.encryption_keys_file = Some(keys.clone());
            c.session.revalidate_interval = Duration::from_secs(1);
            c.listen.public_url = Some(url::Url::parse("http://127.0.0.1:9").unwrap());
            c
        };
        let a = start_with(config(), idp.clock()).await;
        let b = start_with(config(), idp.clock()).await;
        Self {
            idp,
            _ado: ado,
            servers: vec![master, replica],
            sentinel,
            _dir: dir,
            a,
            b,
        }
    }

    /// A browser signed in at `at`.
    async fn signed_in_at(&self, at: &ado_auth_proxy::app::Running) -> Browser {
        let b = Browser::new();
        let port = at.proxy_addr.port();
        let resp = fake_idp::sign_in_via(&b, &format!("http://{}", at.proxy_addr), None, |c| {
            let mut u = url::Url::parse(c).unwrap();
            u.set_port(Some(port)).unwrap();
            u.to_string()
        })
        .await;
        assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
        b
    }

    /// `SENTINEL FAILOVER`, asked again while the sentinel says it has no
    /// replica to promote yet (it learns of one every few seconds).
    async fn failover(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let said = self.sentinel.command(&["SENTINEL", "FAILOVER", MASTER]);
            if said.as_deref().is_some_and(|r| r.starts_with("+OK")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel refused the failover: {said:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The server the sentinel names master now.
    fn master(&self) -> &RedisServer {
        let port = self.sentinel.master_port(MASTER).expect("a master");
        self.servers
            .iter()
            .find(|s| s.port == port)
            .expect("one of ours")
    }

    /// Waits until the sentinel names another master than `old`, and
    /// that one says it is master.
    async fn wait_for_new_master(&self, old: u16) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(port) = self.sentinel.master_port(MASTER)
                && port != old
                && self
                    .servers
                    .iter()
                    .any(|s| s.port == port && s.role().as_deref() == Some("master"))
            {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no failover");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn status(b: &Browser, at: &ado_auth_proxy::app::Running) -> u16 {
    b.http
        .get(format!("http://{}{PROJECTS}", at.proxy_addr))
        .header("accept", "application/json")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// How long until `b` is served on both replicas again (every request in
/// between is counted).
async fn until_served(b: &Browser, t: &Topology) -> (Duration, u32) {
    let started = Instant::now();
    let mut failed = 0;
    loop {
        let (x, y) = tokio::join!(status(b, &t.a), status(b, &t.b));
        if x == 200 && y == 200 {
            return (started.elapsed(), failed);
        }
        failed += 1;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not served again after a failover: {x} {y}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sessions_survive_a_failover_and_the_new_masters_death_on_every_replica() {
    let mut t = Topology::start().await;
    let browser = t.signed_in_at(&t.a).await;
    assert_eq!(status(&browser, &t.a).await, 200);
    assert_eq!(status(&browser, &t.b).await, 200);
    let first = t.master().port;

    // An orderly failover: the old master is demoted to a replica (it
    // still answers reads, refuses writes).
    t.failover().await;
    let switched = t.wait_for_new_master(first).await;
    let (served, failed) = until_served(&browser, &t).await;
    eprintln!(
        "failover: switched in {switched:?}, served again {served:?} later ({failed} rounds refused)"
    );

    // Sentinel demotes the old master only seconds later; until then it
    // still takes writes, which its resync from the new one would drop.
    // The proxies follow the sentinels' +switch-master at once: a sign-in
    // right after the switch goes to the new master, none to the old.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old = t.servers.iter().find(|s| s.port == first).unwrap();
    assert_eq!(old.role().as_deref(), Some("master"), "not demoted yet");
    let writes = |r: &RedisServer| r.calls("evalsha") + r.calls("eval") + r.calls("set");
    let writes_before = writes(t.master());
    let old_before = writes(old);
    let late = t.signed_in_at(&t.b).await;
    // After a switch each replica first writes back the sign-outs it
    // knows (the new master may lack the last writes); a session it does
    // not hold waits for that, with a 503, for at most the settle time.
    let waited = Instant::now();
    let mut refused = 0;
    while status(&late, &t.a).await != 200 {
        refused += 1;
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the new session on the other replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "failover: a session the other replica did not hold was served there {:?} after the \
         sign-in ({refused} answers 503)",
        waited.elapsed()
    );
    let writes_after = writes(t.master());
    assert!(
        writes_after > writes_before,
        "the new master took the writes"
    );
    assert_eq!(writes(old), old_before, "the old master took none");

    // The new master dies without a word: the sentinel promotes the old
    // one again, and both sessions come back on both replicas.
    let second = t.master().port;
    let idx = t.servers.iter().position(|s| s.port == second).unwrap();
    t.servers[idx].kill();
    let switched = t.wait_for_new_master(second).await;
    let (served, failed) = until_served(&browser, &t).await;
    eprintln!(
        "master killed: switched in {switched:?}, served again {served:?} later ({failed} rounds refused)"
    );
    assert_eq!(status(&late, &t.b).await, 200);
    assert_eq!(
        t.idp.calls("authorization_code"),
        2,
        "no session was lost: nobody signed in again"
    );
}

/// Keys that name no master or a bad address are refused at load.
#[test]
fn sentinel_keys_are_checked_at_load() {
    let idp_less = url::Url::parse("http://127.0.0.1:9").unwrap();
    let mut c = crate::support::config("http://127.0.0.1:9");
    c.auth.mode = ado_auth_proxy::config::AuthMode::User;
    c.auth.provider = Some(ado_auth_proxy::config::Provider::Entra);
    c.auth.tenant = Some(fake_idp::TENANT.into());
    c.auth.client_id = Some(fake_idp::CLIENT_ID.into());
    c.auth.client_secret = Some(ado_auth_proxy::config::Secret::new("s"));
    c.auth.authority_host = Some(idp_less);
    c.session.store = ado_auth_proxy::config::StoreKind::Redis;
    c.session.redis_sentinels = vec!["sentinel-0".into()];
    let problems: Vec<String> = ado_auth_proxy::config::validate(&c)
        .into_iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    for want in [
        "session.redis_sentinels: \"sentinel-0\" is not host:port",
        "session.redis_sentinel_master: missing",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "{want} in {problems:?}"
        );
    }
    c.session.redis_url = Some(ado_auth_proxy::config::Secret::new("redis://x:6379"));
    let problems = ado_auth_proxy::config::validate(&c);
    assert!(
        problems
            .iter()
            .any(|p| p.key == "session.redis_sentinels" && p.message.contains("keep one")),
        "{problems:?}"
    );
}

// ===== attack tests =====

/// A browser whose cookie jar the test can read.
fn browser_with_jar() -> (Browser, std::sync::Arc<reqwest::cookie::Jar>) {
    drop(Browser::new()); // installs the crypto provider
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .no_proxy()
        .build()
        .unwrap();
    (Browser { http }, jar)
}

async fn sign_in_with_jar(at: &ado_auth_proxy::app::Running) -> (Browser, String) {
    use reqwest::cookie::CookieStore;
    let (b, jar) = browser_with_jar();
    let port = at.proxy_addr.port();
    let base = format!("http://{}", at.proxy_addr);
    let resp = fake_idp::sign_in_via(&b, &base, None, |c| {
        let mut u = url::Url::parse(c).unwrap();
        u.set_port(Some(port)).unwrap();
        u.to_string()
    })
    .await;
    assert_eq!(resp.status(), 302);
    let cookie = jar
        .cookies(&url::Url::parse(&base).unwrap())
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_string();
    (b, cookie)
}

/// With the session cookie `cookie` sent by hand (a stolen or kept copy).
async fn status_of(cookie: &str, at: &ado_auth_proxy::app::Running) -> u16 {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}{PROJECTS}", at.proxy_addr))
        .header("accept", "application/json")
        .header("cookie", cookie)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A sign-out in the failover window (replica promoted, +switch-master
/// not yet out, the old master still taking writes) must not be lost.
#[tokio::test]
async fn a_sign_out_during_the_failover_stays_ended() {
    let t = Topology::start().await;
    let (browser, cookie) = sign_in_with_jar(&t.a).await;
    assert_eq!(status_of(&cookie, &t.a).await, 200);
    assert_eq!(status_of(&cookie, &t.b).await, 200);
    let first = t.master().port;
    let promoted = t.servers.iter().find(|s| s.port != first).unwrap();
    t.failover().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while promoted.role().as_deref() != Some("master") {
        assert!(Instant::now() < deadline, "never promoted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let named = t.sentinel.master_port(MASTER);
    let url = format!("http://{}", t.a.proxy_addr);
    let resp = browser
        .http
        .post(format!("{url}/.auth/logout"))
        .header("origin", &url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eprintln!(
        "signed out at A while the sentinel named {named:?} (old {first}, promoted {})",
        promoted.port
    );
    assert_eq!(status_of(&cookie, &t.a).await, 401);
    t.wait_for_new_master(first).await;
    let old = t.servers.iter().find(|s| s.port == first).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(old.role().as_deref() == Some("slave") && old.replicating()) {
        assert!(
            Instant::now() < deadline,
            "the old master was never demoted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "endings logged on the new master: {:?}; on the old one (resynced): {:?}",
        promoted.command(&["ZCARD", "ado-auth-proxy:endings"]),
        old.command(&["ZCARD", "ado-auth-proxy:endings"])
    );
    assert_eq!(status_of(&cookie, &t.a).await, 401, "A");
    assert_eq!(
        status_of(&cookie, &t.b).await,
        401,
        "B serves again a session signed out during the failover"
    );
}

/// A TCP forwarder to `port` that, once `frozen`, silently stops
/// passing bytes (connections stay open): a blackholed sentinel.
fn blackhole_to(port: u16) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let frozen = std::sync::Arc::new(AtomicBool::new(false));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let f = frozen.clone();
    tokio::spawn(async move {
        let l = tokio::net::TcpListener::from_std(l).unwrap();
        while let Ok((client, _)) = l.accept().await {
            let f = f.clone();
            tokio::spawn(async move {
                if f.load(Ordering::SeqCst) {
                    let _keep = client;
                    return std::future::pending::<()>().await;
                }
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let pump = |f: std::sync::Arc<AtomicBool>| {
                    move |mut r: tokio::net::tcp::OwnedReadHalf,
                          mut w: tokio::net::tcp::OwnedWriteHalf| async move {
                        let mut buf = vec![0u8; 1 << 16];
                        loop {
                            let n = match r.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if f.load(Ordering::SeqCst) {
                                let _keep = (r, w);
                                return std::future::pending::<()>().await;
                            }
                            if w.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                };
                let up = tokio::spawn(pump(f.clone())(cr, sw));
                let down = tokio::spawn(pump(f)(sr, cw));
                let _ = tokio::join!(up, down);
            });
        }
    });
    (addr, frozen)
}

/// One of two sentinels goes silent (blackholed, connections kept): the
/// other still answers, so the proxies must still move at once on the
/// switch and write nothing to the old master.
#[tokio::test]
async fn a_silent_sentinel_does_not_keep_writes_on_the_old_master() {
    let frozen = std::sync::Mutex::new(None);
    let t = Topology::start_via(|s| {
        let (addr, f) = blackhole_to(s.port);
        *frozen.lock().unwrap() = Some(f);
        vec![addr, s.addr()]
    })
    .await;
    let frozen = frozen.lock().unwrap().take().unwrap();
    let browser = t.signed_in_at(&t.a).await;
    assert_eq!(status(&browser, &t.b).await, 200);
    let first = t.master().port;
    frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.failover().await;
    t.wait_for_new_master(first).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old = t.servers.iter().find(|s| s.port == first).unwrap();
    assert_eq!(old.role().as_deref(), Some("master"), "not demoted yet");
    let writes = |r: &RedisServer| r.calls("evalsha") + r.calls("eval") + r.calls("set");
    let old_before = writes(old);
    let new_before = writes(t.master());
    let late = t.signed_in_at(&t.b).await;
    assert_eq!(status(&late, &t.b).await, 200);
    eprintln!(
        "writes after the switch: old master +{}, new master +{}",
        writes(old) - old_before,
        writes(t.master()) - new_before
    );
    assert_eq!(
        writes(old),
        old_before,
        "the old master took writes after the switch"
    );
}

/// Sentinel keys next to redis_url, or a URL where host:port belongs,
/// are refused at load, not silently ignored or left to start-up.
#[test]
fn sentinel_addresses_and_keys_without_sentinels_are_refused() {
    let mut c = crate::support::config("http://127.0.0.1:9");
    c.auth.mode = ado_auth_proxy::config::AuthMode::User;
    c.auth.provider = Some(ado_auth_proxy::config::Provider::Entra);
    c.auth.tenant = Some(fake_idp::TENANT.into());
    c.auth.client_id = Some(fake_idp::CLIENT_ID.into());
    c.auth.client_secret = Some(ado_auth_proxy::config::Secret::new("s"));
    c.auth.authority_host = Some(url::Url::parse("http://127.0.0.1:9").unwrap());
    c.session.store = ado_auth_proxy::config::StoreKind::Redis;
    c.session.encryption_keys_file = Some("/dev/null".into());
    let keys = |c: &ado_auth_proxy::config::Config| -> Vec<String> {
        ado_auth_proxy::config::validate(c)
            .into_iter()
            .filter(|p| p.key.contains("sentinel"))
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    };
    c.session.redis_sentinels = vec!["redis://sentinel-0:26379".into()];
    c.session.redis_sentinel_master = Some("sessions".into());
    let url_as_addr = keys(&c);
    c.session.redis_sentinels = vec![];
    c.session.redis_url = Some(ado_auth_proxy::config::Secret::new("redis://x:6379"));
    c.session.redis_sentinel_master = Some("sessions".into());
    let master_with_url = keys(&c);
    eprintln!(
        "url as sentinel address: {url_as_addr:?}\nmaster with redis_url: {master_with_url:?}"
    );
    assert!(
        !url_as_addr.is_empty(),
        "redis://sentinel-0:26379 passes as host:port"
    );
    assert!(
        !master_with_url.is_empty(),
        "redis_sentinel_master with redis_url is ignored"
    );
}
