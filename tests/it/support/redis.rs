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
