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
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, ado_auth_proxy::seal::generate_key().unwrap() + "\n").unwrap();
        let config = || {
            let mut c = fake_idp::entra_config(&ado.url(), &idp);
            c.session.store = StoreKind::Redis;
            c.session.redis_sentinels = vec![sentinel.addr()];
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
    assert!(
        t.sentinel
            .command(&["SENTINEL", "FAILOVER", MASTER])
            .is_some_and(|r| r.starts_with("+OK")),
        "the sentinel refused the failover"
    );
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
    assert_eq!(
        status(&late, &t.a).await,
        200,
        "the new session on the other replica"
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
