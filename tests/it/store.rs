//! One conformance suite for every session store backend: memory, the
//! embedded redb file, and a real redis-server. Each check states what
//! sessions rely on: values with a TTL, generation-checked updates,
//! tombstones, single-use takes, and leases for refresh coordination.

use std::sync::Arc;
use std::time::Duration;

use ado_auth_proxy::clock::Clock;
use ado_auth_proxy::session::backend::{
    Backend, Embedded, Key, Memory, Namespace, Redis, RedisAt, RedisSettings, Update,
    generation_prefix,
};

use crate::support::redis::RedisServer;

fn key(n: u8, ns: Namespace) -> Key {
    Key::new(ns, [n; 32])
}

fn record(generation: u64, body: &str) -> Vec<u8> {
    let mut v = generation_prefix(generation).to_vec();
    v.extend_from_slice(body.as_bytes());
    v
}

fn redis_backend(server: &RedisServer, prefix: &str) -> Backend {
    redis_at(&server.url(), None, prefix)
}

fn redis_at(url: &str, password: Option<&str>, prefix: &str) -> Backend {
    Backend::Redis(
        Redis::open(&RedisSettings {
            at: RedisAt::Url(url),
            password: password.map(str::to_string),
            ca_pem: None,
            client_tls: None,
            prefix,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
        })
        .unwrap(),
    )
}

/// How time passes for a backend: the in-process ones have a clock the
/// suite moves forward; Redis keeps the server's time, so the suite waits.
enum Time {
    Clock(Clock),
    Real,
}

impl Time {
    async fn pass(&self, d: Duration) {
        match self {
            Self::Clock(c) => c.advance(d),
            Self::Real => tokio::time::sleep(d).await,
        }
    }
}

/// Every behaviour the session layer relies on.
async fn conformance(b: Backend, time: Time) {
    let name = b.name();
    let b = Arc::new(b);
    b.ping().await.unwrap();
    let long = Duration::from_secs(60);

    // Values by key; absent is None; namespaces do not collide.
    let k = key(1, Namespace::Session);
    assert_eq!(b.get(k).await.unwrap(), None, "{name}");
    b.put(k, record(1, "one"), long).await.unwrap();
    assert_eq!(b.get(k).await.unwrap(), Some(record(1, "one")), "{name}");
    assert_eq!(b.get(k.with(Namespace::Service)).await.unwrap(), None);

    // TTL: gone after it runs out.
    let short = key(2, Namespace::Service);
    b.put(short, b"x".to_vec(), Duration::from_millis(300))
        .await
        .unwrap();
    assert!(b.get(short).await.unwrap().is_some(), "{name}");
    time.pass(Duration::from_millis(450)).await;
    assert_eq!(b.get(short).await.unwrap(), None, "{name}: TTL honoured");

    // Generation-checked updates: newer or equal writes, older is stale.
    assert_eq!(
        b.update(k, record(3, "three"), long).await.unwrap(),
        Update::Written
    );
    assert_eq!(
        b.update(k, record(2, "two"), long).await.unwrap(),
        Update::Stale,
        "{name}: an older generation never overwrites a newer one"
    );
    assert_eq!(b.get(k).await.unwrap(), Some(record(3, "three")));
    assert_eq!(
        b.update(k, record(3, "three again"), long).await.unwrap(),
        Update::Written
    );
    // A record the store lost (restart, eviction) is written back.
    let lost = key(3, Namespace::Session);
    assert_eq!(
        b.update(lost, record(7, "restored"), long).await.unwrap(),
        Update::Written,
        "{name}"
    );
    assert_eq!(b.get(lost).await.unwrap(), Some(record(7, "restored")));

    // Remove deletes the record and its shared access token and leaves a
    // tombstone: no replica writes the session back.
    b.put(k.with(Namespace::Access), b"token".to_vec(), long)
        .await
        .unwrap();
    b.remove(k, long).await.unwrap();
    assert_eq!(b.get(k).await.unwrap(), None, "{name}");
    assert_eq!(b.get(k.with(Namespace::Access)).await.unwrap(), None);
    assert_eq!(
        b.update(k, record(9, "zombie"), long).await.unwrap(),
        Update::Gone,
        "{name}: a signed-out session stays signed out"
    );
    assert_eq!(b.get(k).await.unwrap(), None);

    // Leases: one holder at a time, renewable by the holder only,
    // released by the holder only, and free again when they expire.
    let l = key(5, Namespace::Lease);
    let ttl = Duration::from_millis(400);
    let tries: Vec<_> = (0..16)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.lease(l, &format!("h{i}"), ttl).await.unwrap() })
        })
        .collect();
    let mut holders = 0;
    for t in tries {
        holders += usize::from(t.await.unwrap());
    }
    assert_eq!(holders, 1, "{name}: exactly one replica gets the lease");
    b.release(l, "h-nobody").await.unwrap();
    assert!(!b.lease(l, "other", ttl).await.unwrap(), "{name}");
    // Whoever holds it: find out by renewing.
    let mut holder = None;
    for i in 0..16 {
        if b.renew(l, &format!("h{i}"), ttl).await.unwrap() {
            holder = Some(format!("h{i}"));
        }
    }
    let holder = holder.expect("the holder can renew");
    assert!(!b.renew(l, "other", ttl).await.unwrap());
    b.release(l, &holder).await.unwrap();
    assert!(b.lease(l, "other", ttl).await.unwrap(), "{name}: released");
    assert!(!b.renew(l, &holder, ttl).await.unwrap(), "{name}: lost");
    time.pass(Duration::from_millis(550)).await;
    assert!(
        b.lease(l, "third", ttl).await.unwrap(),
        "{name}: an expired lease (crashed holder) is free"
    );

    // Purge deletes expired entries (Redis expires them itself).
    for n in 10..20 {
        b.put(
            key(n, Namespace::Session),
            record(1, "old"),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
    }
    time.pass(Duration::from_millis(120)).await;
    let purged = b.purge().await.unwrap();
    if name != "redis" {
        assert!(purged >= 10, "{name}: purged {purged}");
    }
    for n in 10..20 {
        assert_eq!(b.get(key(n, Namespace::Session)).await.unwrap(), None);
    }
    // What is still valid survives the purge.
    assert_eq!(b.get(lost).await.unwrap(), Some(record(7, "restored")));
}

#[tokio::test]
async fn the_memory_store_conforms() {
    let clock = Clock::default();
    conformance(
        Backend::Memory(Memory::with_clock(clock.clone())),
        Time::Clock(clock),
    )
    .await;
}

#[tokio::test]
async fn the_embedded_store_conforms_and_keeps_its_file_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/sessions.db");
    let clock = Clock::default();
    let db = Embedded::open(&path).unwrap().with_clock(clock.clone());
    conformance(Backend::Embedded(db), Time::Clock(clock)).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "the database is owner-only");
        assert_eq!(
            mode(path.parent().unwrap()),
            0o700,
            "so is its new directory"
        );
    }
    // A second opener (another proxy on the same file) is refused with
    // a message that names the key and the way out.
    let first = Embedded::open(&dir.path().join("one.db")).unwrap();
    let err = Embedded::open(&dir.path().join("one.db"))
        .err()
        .expect("the file is locked")
        .to_string();
    assert!(err.starts_with("session.path:"), "{err}");
    assert!(err.contains("another process"), "{err}");
    // A tool (`ado-auth-proxy login`) may write beside the running proxy,
    // and each sees the other's commits.
    let owner = Backend::Embedded(first);
    let tool = Backend::Embedded(Embedded::open_shared(&dir.path().join("one.db")).unwrap());
    let long = Duration::from_secs(60);
    tool.put(key(7, Namespace::Session), record(1, "from the tool"), long)
        .await
        .unwrap();
    assert_eq!(
        owner.get(key(7, Namespace::Session)).await.unwrap(),
        Some(record(1, "from the tool"))
    );
    owner
        .put(
            key(8, Namespace::Session),
            record(1, "from the proxy"),
            long,
        )
        .await
        .unwrap();
    assert_eq!(
        tool.get(key(8, Namespace::Session)).await.unwrap(),
        Some(record(1, "from the proxy"))
    );
    drop((owner, tool));
    // Data survives reopening.
    {
        let db = Backend::Embedded(Embedded::open(&dir.path().join("two.db")).unwrap());
        db.put(
            key(1, Namespace::Session),
            record(1, "kept"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }
    let db = Backend::Embedded(Embedded::open(&dir.path().join("two.db")).unwrap());
    assert_eq!(
        db.get(key(1, Namespace::Session)).await.unwrap(),
        Some(record(1, "kept"))
    );
}

#[tokio::test]
async fn the_redis_store_conforms_and_keeps_to_its_prefix() {
    let server = RedisServer::start();
    conformance(redis_backend(&server, "suite:"), Time::Real).await;
    let keys = server.keys("*");
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| k.starts_with("suite:")),
        "every key carries the prefix: {keys:?}"
    );
    // Every key the proxy writes expires (-1: no TTL; -2: gone already).
    for k in keys {
        let ttl = server.command(&["PTTL", &k]).unwrap();
        let ms: i64 = ttl.trim_start_matches(':').parse().unwrap();
        assert_ne!(ms, -1, "{k} has no TTL");
    }
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_and_recovers() {
    let mut server = RedisServer::start();
    let b = redis_backend(&server, "p:");
    b.ping().await.unwrap();
    server.kill();
    let started = std::time::Instant::now();
    let err = b.get(key(1, Namespace::Session)).await.unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeouts"
    );
    server.restart();
    let mut ok = false;
    for _ in 0..50 {
        if b.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the client reconnects by itself");
}

#[tokio::test]
async fn redis_acl_users_passwords_and_database_numbers_are_honoured() {
    let server = RedisServer::start_with(&[
        "--user",
        "default",
        "off",
        "--user",
        "proxy",
        "on",
        ">s3cret-pw",
        "~*",
        "&*",
        "+@all",
    ]);
    let port = server.port;
    let k = key(1, Namespace::Session);
    let long = Duration::from_secs(60);
    let db3 = redis_at(
        &format!("redis://proxy:s3cret-pw@127.0.0.1:{port}/3"),
        None,
        "p:",
    );
    db3.ping().await.unwrap();
    db3.put(k, record(1, "in db 3"), long).await.unwrap();
    let db0 = redis_at(
        &format!("redis://proxy:s3cret-pw@127.0.0.1:{port}/0"),
        None,
        "p:",
    );
    assert_eq!(db0.get(k).await.unwrap(), None, "databases are separate");
    // The password from redis_password_file (with its trailing newline).
    let from_file = redis_at(
        &format!("redis://proxy@127.0.0.1:{port}/3"),
        Some("s3cret-pw\n"),
        "p:",
    );
    assert_eq!(from_file.get(k).await.unwrap(), Some(record(1, "in db 3")));
    // A wrong password fails with an error that does not echo it.
    let wrong = redis_at(
        &format!("redis://proxy:wrong-pw@127.0.0.1:{port}/3"),
        None,
        "p:",
    );
    let err = wrong.ping().await.unwrap_err().to_string();
    assert!(!err.contains("wrong-pw"), "{err}");
    let anonymous = redis_at(&format!("redis://127.0.0.1:{port}/3"), None, "p:");
    assert!(anonymous.get(k).await.is_err(), "the default user is off");
}

#[tokio::test]
async fn rediss_speaks_tls_to_a_server_signed_by_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key_file) = crate::support::self_signed(dir.path());
    let server = RedisServer::start_tls(&cert, &key_file);
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let open = |ca_pem: Option<Vec<u8>>| {
        Redis::open(&RedisSettings {
            at: RedisAt::Url(&url),
            password: None,
            ca_pem,
            client_tls: None,
            prefix: "tls:",
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
        })
        .map(Backend::Redis)
        .unwrap()
    };
    let b = open(Some(std::fs::read(&ca).unwrap()));
    conformance(b, Time::Real).await;
    // Without the CA the server's certificate is not trusted.
    let untrusted = open(None);
    assert!(untrusted.ping().await.is_err());
}

/// A server that demands a client certificate: the store conformance
/// suite passes with `redis_client_certificate_file`/`_key_file`; without
/// them the proxy is not ready and its log names the keys.
#[tokio::test]
async fn a_redis_demanding_client_certificates_is_reached_with_ours() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key_file) = crate::support::self_signed(dir.path());
    let (client_cert, client_key) = crate::support::client_signed(dir.path());
    let server = RedisServer::start_mutual_tls(&cert, &key_file, &ca);
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let b = Redis::open(&RedisSettings {
        at: RedisAt::Url(&url),
        password: None,
        ca_pem: Some(std::fs::read(&ca).unwrap()),
        client_tls: Some((
            std::fs::read(&client_cert).unwrap(),
            std::fs::read(&client_key).unwrap(),
        )),
        prefix: "mtls:",
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
    })
    .map(Backend::Redis)
    .unwrap();
    conformance(b, Time::Real).await;

    let keys = dir.path().join("keys");
    std::fs::write(&keys, ado_auth_proxy::seal::generate_key().unwrap() + "\n").unwrap();
    let toml = |client: &str| {
        format!(
            "[auth]\nmode = \"user\"\nprovider = \"entra\"\ntenant = \"{}\"\nclient_id = \"c\"\n\
             [session]\nstore = \"redis\"\nredis_url = \"{url}\"\nredis_ca_file = \"{}\"\n\
             encryption_keys_file = \"{}\"\n{client}[log]\nlevel = \"warn,ado_auth_proxy::app=info\"\n",
            crate::support::fake_idp::TENANT,
            ca.display(),
            keys.display()
        )
    };
    let env = [("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", "s")];
    let without = crate::support::process::ProxyProcess::spawn(&toml(""), &env);
    let ready = |p: &crate::support::process::ProxyProcess| {
        let url = format!("http://{}/readyz", p.admin);
        async move {
            crate::support::client()
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ready(&without).await, 503, "{}", without.logs());
    let logs = without.logs();
    assert!(
        logs.contains("session.redis_client_certificate_file"),
        "the log names the keys: {logs}"
    );
    let with = crate::support::process::ProxyProcess::spawn(
        &toml(&format!(
            "redis_client_certificate_file = \"{}\"\nredis_client_key_file = \"{}\"\n",
            client_cert.display(),
            client_key.display()
        )),
        &env,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ready(&with).await != 200 {
        assert!(std::time::Instant::now() < deadline, "{}", with.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis keeps an epoch (the one key without a TTL: its disappearance is
/// how replicas notice a store that lost its data) and a log of endings
/// that every replica reads at its checks.
#[tokio::test]
async fn redis_keeps_an_epoch_and_logs_every_ending_for_the_other_replicas() {
    let mut server = RedisServer::start();
    let b = redis_backend(&server, "e:");
    let first = b.check("one", 0).await.unwrap();
    assert_eq!(first.epoch.as_deref(), Some("one"), "set when missing");
    assert!(first.endings.is_empty());
    let again = b.check("two", 0).await.unwrap();
    assert_eq!(again.epoch.as_deref(), Some("one"), "kept once set");

    let ttl = Duration::from_secs(600);
    b.remove(key(7, Namespace::Session), ttl).await.unwrap();
    b.remove(key(8, Namespace::Session), ttl).await.unwrap();
    let seen = b.check("x", 0).await.unwrap();
    let hashes: Vec<[u8; 32]> = seen.endings.iter().map(|(h, _)| *h).collect();
    assert_eq!(hashes, [[7; 32], [8; 32]], "in order, by store hash");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for (_, until) in &seen.endings {
        let left = until.saturating_sub(now_ms);
        assert!((590_000..=601_000).contains(&left), "{left} ms left");
    }
    // Read from where the last check stopped: nothing new.
    let later = b.check("x", seen.read_to_ms + 1).await.unwrap();
    assert!(later.endings.is_empty(), "{later:?}");
    // The log expires like every other key; hostile members are skipped.
    let log_ttl: i64 = server
        .command(&["PTTL", "e:endings"])
        .unwrap()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(log_ttl > 0, "{log_ttl}");
    server.command(&["ZADD", "e:endings", "99999999999999", "not-a-hash:1"]);
    server.command(&["ZADD", "e:endings", "99999999999999", "zz:zz"]);
    let hostile = b.check("x", seen.read_to_ms + 1).await.unwrap();
    assert!(hostile.endings.is_empty(), "{hostile:?}");

    // MGET answers in order, absent as None.
    b.put(key(1, Namespace::Session), record(1, "a"), ttl)
        .await
        .unwrap();
    let got = b
        .get_many(&[key(2, Namespace::Session), key(1, Namespace::Session)])
        .await
        .unwrap();
    assert_eq!(got, [None, Some(record(1, "a"))]);

    // Restarted empty: the epoch is gone, the next check sets a new one.
    server.restart();
    let mut after = None;
    for _ in 0..50 {
        if let Ok(c) = b.check("three", 0).await {
            after = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = after.expect("reconnected");
    assert_eq!(after.epoch.as_deref(), Some("three"));
    assert!(after.endings.is_empty());
}
