//! Session store figures for docs/benchmarks.md (run by `scripts/bench-sessions.sh`):
//!
//! 1. cached lookup cost (cookie → session) with 1k, 100k and 1M sessions;
//! 2. resident memory per cached session, with 2 KiB access tokens;
//! 3. embedded store write rate (sign-ins, one durable commit each) and
//!    cold read rate (a restarted proxy loading sessions lazily);
//! 4. time from start to `/readyz` 200 of the real binary over an empty
//!    database and over one holding 100k sessions.
//!
//! Usage: session_bench <path to ado-auth-proxy> [sessions for step 4]
//!        session_bench --write-session <database file>
//!
//! The second form writes one signed-in session into an embedded
//! database, its keys beside it, and prints its cookie value:
//! `scripts/bench.sh`'s user-mode target. The embedded store keeps the
//! refresh token only, so the proxy redeems it once at the first request.

// A benchmark measures real time (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ado_auth_proxy::clock::Clock;
use ado_auth_proxy::config::Secret;
use ado_auth_proxy::config::{SessionConfig, StoreKind, StorePlan};
use ado_auth_proxy::metrics::Metrics;
use ado_auth_proxy::session::UserInfo;
use ado_auth_proxy::session::{Issued, Session, SessionKey, Sessions};

const TOKEN_BYTES: usize = 2048;

fn main() {
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .expect("usage: session_bench <ado-auth-proxy binary> [stored]");
    if bin == "--write-session" {
        let db = args
            .next()
            .expect("usage: session_bench --write-session <database file>");
        write_session(Path::new(&db));
        return;
    }
    let stored: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        lookups().await;
        embedded_rates().await;
    });
    start_to_ready(&bin, stored, &rt);
}

/// One session in the embedded database at `db`; prints its cookie value.
fn write_session(db: &Path) {
    let config = SessionConfig {
        store: StoreKind::Embedded,
        path: db.to_path_buf(),
        ..SessionConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sessions = Arc::new(
            Sessions::open(&config, &plan_of(&config), metrics(), &Clock::default()).unwrap(),
        );
        let id = "benchSessionCookieValue0123456789abcdefghij";
        let at = format!("{id}{}", "a".repeat(TOKEN_BYTES - id.len()));
        let session = Session::new(
            SessionKey::of(id),
            sessions.store_key(id),
            user(0),
            Issued {
                access_token: Secret::new(at),
                expires_in: Duration::from_secs(7200),
                refresh_token: Some(Secret::new("bench-refresh-token")),
                id_token: None,
                member: Default::default(),
            },
            &Clock::default(),
        )
        .unwrap();
        sessions.create_batch(&[Arc::new(session)]).await.unwrap();
        println!("{id}");
    });
}

/// The store plan of a session config (memory or embedded here).
fn plan_of(config: &SessionConfig) -> StorePlan {
    match config.store {
        StoreKind::Memory => StorePlan::Memory,
        _ => StorePlan::Embedded,
    }
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(prometheus::Registry::new()).unwrap())
}

fn user(i: usize) -> UserInfo {
    UserInfo {
        name: Some(format!("User {i}")),
        upn: Some(format!("user{i}@contoso.com")),
        email: Some(format!("user{i}@contoso.com")),
        email_verified: true,
        object_id: Some(format!("{i:08}-0000-4000-8000-000000000000")),
        tenant: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
    }
}

fn session(sessions: &Sessions, id: &str, i: usize) -> Arc<Session> {
    // Realistic sizes: a 2 KiB access token, a 1 KiB refresh token.
    let at = format!("{id}{}", "a".repeat(TOKEN_BYTES - id.len()));
    let rt = format!("{id}{}", "r".repeat(1024 - id.len()));
    Arc::new(
        Session::new(
            SessionKey::of(id),
            sessions.store_key(id),
            user(i),
            Issued {
                access_token: Secret::new(at),
                expires_in: Duration::from_secs(3600),
                refresh_token: Some(Secret::new(rt)),
                id_token: None,
                member: Default::default(),
            },
            sessions.clock(),
        )
        .unwrap(),
    )
}

fn id(i: usize) -> String {
    format!("bench-session-{i:010}-xxxxxxxxxxxxxxxxxxxx")
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Cached lookups at growing sizes, and memory per session.
async fn lookups() {
    println!("| sessions cached | lookup (median ns) | RSS per session |");
    println!("|---:|---:|---:|");
    let config = SessionConfig {
        store: StoreKind::Memory,
        ..SessionConfig::default()
    };
    let sessions =
        Sessions::open(&config, &plan_of(&config), metrics(), &Clock::default()).unwrap();
    let mut held = 0usize;
    for size in [1_000usize, 100_000, 1_000_000] {
        let before = rss_bytes();
        let added = size - held;
        for i in held..size {
            sessions.cache_insert(session(&sessions, &id(i), i));
        }
        held = size;
        let per = (rss_bytes().saturating_sub(before)) as f64 / added as f64;
        // Random known ids, 5 runs of 200k lookups each.
        let mut runs = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let ids: Vec<String> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                id((x as usize) % size)
            })
            .collect();
        for _ in 0..5 {
            let n = 200_000;
            let t = Instant::now();
            for k in 0..n {
                let s = sessions.lookup(&ids[k % ids.len()]).await.unwrap();
                std::hint::black_box(s);
            }
            runs.push(t.elapsed().as_nanos() as f64 / n as f64);
        }
        println!("| {size} | {:.0} | {:.1} KiB |", median(runs), per / 1024.0);
    }
}

/// Durable sign-ins per second, and cold loads per second after a restart.
async fn embedded_rates() {
    let dir = tempfile::tempdir().unwrap();
    let config = SessionConfig {
        store: StoreKind::Embedded,
        path: dir.path().join("sessions.db"),
        ..SessionConfig::default()
    };
    let n = 2_000;
    let written;
    {
        let sessions = Arc::new(
            Sessions::open(&config, &plan_of(&config), metrics(), &Clock::default()).unwrap(),
        );
        let t = Instant::now();
        for i in 0..n {
            sessions
                .create(session(&sessions, &id(i), i))
                .await
                .unwrap();
        }
        written = n as f64 / t.elapsed().as_secs_f64();
        // Concurrent sign-ins: commits are serialised by the database.
        let t = Instant::now();
        let tasks: Vec<_> = (n..2 * n)
            .map(|i| {
                let s = sessions.clone();
                tokio::spawn(async move { s.create(session(&s, &id(i), i)).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        println!();
        println!("| embedded store | rate |");
        println!("|---|---:|");
        println!("| sign-ins written, one at a time (durable commit each) | {written:.0}/s |");
        println!(
            "| sign-ins written, 2000 concurrent | {:.0}/s |",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    // A restarted proxy: every session is loaded lazily from the file.
    let sessions =
        Sessions::open(&config, &plan_of(&config), metrics(), &Clock::default()).unwrap();
    let t = Instant::now();
    for i in 0..2 * n {
        let s = sessions.lookup(&id(i)).await.unwrap();
        assert!(s.is_some(), "session {i} was stored");
    }
    println!(
        "| sessions loaded after a restart (cold lookups) | {:.0}/s |",
        (2 * n) as f64 / t.elapsed().as_secs_f64()
    );
}

/// Time until the real binary answers `/readyz` 200.
fn start_to_ready(bin: &str, stored: usize, rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.db");
    let empty = median(
        (0..5)
            .map(|i| ready_ms(bin, dir.path(), &db, 19600 + i, Stop::Term))
            .collect(),
    );
    let config = SessionConfig {
        store: StoreKind::Embedded,
        path: db.clone(),
        ..SessionConfig::default()
    };
    rt.block_on(async {
        let sessions = Arc::new(
            Sessions::open(&config, &plan_of(&config), metrics(), &Clock::default()).unwrap(),
        );
        let batch: Vec<Arc<Session>> = (0..stored).map(|i| session(&sessions, &id(i), i)).collect();
        sessions.create_batch(&batch).await.unwrap();
    });
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let full = median(
        (0..5)
            .map(|i| ready_ms(bin, dir.path(), &db, 19610 + i, Stop::Term))
            .collect(),
    );
    // Each start follows a SIGKILL of the previous one: a crash.
    let crashed = median(
        (0..5)
            .map(|i| ready_ms(bin, dir.path(), &db, 19620 + i, Stop::Kill))
            .collect(),
    );
    println!();
    println!("| start to ready (`/readyz` 200) | median of 5 |");
    println!("|---|---:|");
    println!("| empty session database | {empty:.0} ms |");
    println!(
        "| {stored} stored sessions ({:.0} MiB file), after a clean stop | {full:.0} ms |",
        size as f64 / (1 << 20) as f64
    );
    println!("| {stored} stored sessions, after a crash (SIGKILL) | {crashed:.0} ms |");
}

/// How the measured process is stopped.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGTERM and wait: a clean shutdown.
    Term,
    /// SIGKILL: a crash.
    Kill,
}

fn ready_ms(bin: &str, dir: &Path, db: &Path, port: u16, stop: Stop) -> f64 {
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"127.0.0.1:{port}\"\nshutdown_delay = \"0s\"\n[admin]\naddress = \"127.0.0.1:{}\"\n\
             [auth]\nmode = \"user\"\nprovider = \"oidc\"\nclient_id = \"bench\"\n\
             issuer_url = \"http://127.0.0.1:9/\"\n[session]\npath = \"{}\"\n[log]\nlevel = \"warn\"\n\
",
            port + 100,
            db.display()
        ),
    )
    .unwrap();
    let t = Instant::now();
    let mut child = Command::new(bin)
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin = format!("127.0.0.1:{}", port + 100);
    let ms = loop {
        if let Ok(mut c) = TcpStream::connect(&admin) {
            let _ = c.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 16];
            if c.read(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
                break t.elapsed().as_secs_f64() * 1000.0;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the proxy did not become ready"
        );
        std::thread::sleep(Duration::from_micros(500));
    };
    match stop {
        Stop::Kill => {
            let _ = child.kill();
        }
        Stop::Term => {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }
    let _ = child.wait();
    ms
}
