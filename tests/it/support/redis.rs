//! A real `redis-server` on a free loopback port, started by the test and
//! killed when dropped. The test command installs redis-server; a missing
//! binary fails the test instead of skipping it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    extra: Vec<String>,
    tls: bool,
    /// Its working directory: a replica's sync writes an RDB file there,
    /// never into the checkout.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server without persistence on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with extra command-line settings (users, passwords).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::launch(extra, false)
    }

    /// Starts one that speaks TLS only, with this certificate and key.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Self {
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let args = [
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
            "--tls-auth-clients",
            "no",
        ];
        Self::launch(&args, true)
    }

    /// Starts one that speaks TLS only and demands a client certificate
    /// signed by `ca`.
    pub fn start_mutual_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
    ) -> Self {
        let (cert, key, ca) = (
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            ca.to_str().unwrap(),
        );
        let args = [
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            ca,
            "--tls-auth-clients",
            "yes",
        ];
        Self::launch(&args, true)
    }

    fn launch(extra: &[&str], tls: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self {
            child: None,
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls,
            dir: tempfile::tempdir().unwrap(),
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let (plain, tls) = if self.tls {
            ("0", port.as_str())
        } else {
            (port.as_str(), "0")
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                plain,
                "--tls-port",
                tls,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir.path().to_str().unwrap(),
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Any answer will do (PING may need authentication); a TLS port
        // only needs to accept.
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while (self.tls && TcpStream::connect(addr).is_err())
            || (!self.tls && self.command(&["PING"]).is_none_or(|l| l.is_empty()))
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command; the first reply line, if the server answers.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut conn = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port))).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        conn.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 1 << 16];
        let n = conn.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        Some(text.lines().next().unwrap_or_default().to_string())
    }

    /// Every key and value the server holds, as (lossy) text: what a dump
    /// of it would show.
    pub fn dump_values(&self) -> String {
        let keys = self.keys("*");
        let mut conn = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port))).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut req = String::new();
        for k in &keys {
            req.push_str(&format!("*2\r\n$4\r\nDUMP\r\n${}\r\n{k}\r\n", k.len()));
        }
        conn.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        format!("{}\n{}", keys.join("\n"), String::from_utf8_lossy(&out))
    }

    /// How many times the server ran `command` (lower case, e.g. `mget`)
    /// since it started, from `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        let mut conn = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port))).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        conn.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let want = format!("cmdstat_{command}:calls=");
        String::from_utf8_lossy(&out)
            .lines()
            .find_map(|l| l.strip_prefix(&want))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Every key matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port))).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let req = format!("*2\r\n$4\r\nKEYS\r\n${}\r\n{pattern}\r\n", pattern.len());
        conn.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `redis-server --sentinel` monitoring one master, with a
/// quorum of one and a one-second down-after, so failovers take seconds.
pub struct Sentinel {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    /// Monitors the master on `master_port` as `name`.
    pub fn start(name: &str, master_port: u16) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 4000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        let s = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.command(&["PING"]).is_none_or(|l| l.is_empty()) {
            assert!(Instant::now() < deadline, "the sentinel did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// `host:port`, as the proxy's `session.redis_sentinels` takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends one command; the whole reply, if the sentinel answers.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut conn = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port))).ok()?;
        conn.set_read_timeout(Some(Duration::from_millis(500)))
            .ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        conn.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 1 << 16];
        let n = conn.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    }

    /// The port of the master it names now.
    pub fn master_port(&self, name: &str) -> Option<u16> {
        let reply = self.command(&["SENTINEL", "get-master-addr-by-name", name])?;
        reply
            .lines()
            .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
            .nth(1)?
            .parse()
            .ok()
    }

    /// How many replicas it knows of `name`.
    pub fn replicas(&self, name: &str) -> usize {
        self.command(&["SENTINEL", "replicas", name])
            .and_then(|r| r.lines().next()?.strip_prefix('*')?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// Whether a replica's link to its master is up (`master_link_status`).
    pub fn replicating(&self) -> bool {
        self.replication()
            .is_some_and(|info| info.contains("master_link_status:up"))
    }

    /// `INFO replication`.
    fn replication(&self) -> Option<String> {
        let mut conn = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port))).ok()?;
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .ok()?;
        conn.write_all(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
            .ok()?;
        let mut buf = vec![0u8; 1 << 16];
        let n = conn.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    }

    /// `role:master` or `role:slave`, from `INFO replication`.
    pub fn role(&self) -> Option<String> {
        self.replication()?
            .lines()
            .find_map(|l| l.strip_prefix("role:").map(str::to_string))
    }
}
