//! A real squid (Debian's `squid`) as the corporate egress proxy: Basic
//! authentication against an htpasswd file, a `hosts_file` that resolves
//! test names (`dev.azure.test`) only it can resolve, one destination its
//! rules forbid, and its access log to read what went through.
//! The test command installs squid; a missing binary fails the test.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user squid accepts.
pub const USER: &str = "svc-ado";
/// Its password (distinctive, so logs and answers can be searched).
pub const PASSWORD: &str = "Sq1d-pa55word-4711";
/// A destination squid's rules refuse (403) to authenticated users.
pub const FORBIDDEN: &str = "forbidden.azure.test";

/// A running squid, killed when dropped.
pub struct Squid {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Squid {
    /// Starts squid on a free loopback port; `hosts` are names it
    /// resolves to 127.0.0.1.
    pub fn start(hosts: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // squid drops to user `proxy`: its files must be reachable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = |n: &str| dir.path().join(n);
        let hash = Command::new("openssl")
            .args(["passwd", "-apr1", PASSWORD])
            .output()
            .expect("openssl is installed");
        assert!(hash.status.success());
        let hash = String::from_utf8(hash.stdout).unwrap();
        std::fs::write(path("passwd"), format!("{USER}:{}\n", hash.trim())).unwrap();
        let mut names: Vec<&str> = hosts.to_vec();
        names.push(FORBIDDEN);
        std::fs::write(path("hosts"), format!("127.0.0.1 {}\n", names.join(" "))).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log\n\
             coredump_dir {d}\n\
             cache deny all\n\
             cache_dir null /tmp\n\
             hosts_file {d}/hosts\n\
             dns_nameservers 127.0.0.1\n\
             auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/passwd\n\
             auth_param basic realm corporate-egress\n\
             acl authed proxy_auth REQUIRED\n\
             acl forbidden dstdomain -n {FORBIDDEN}\n\
             http_access deny !authed\n\
             http_access deny forbidden\n\
             http_access allow authed\n\
             http_access deny all\n\
             shutdown_lifetime 0 seconds\n"
        );
        std::fs::write(path("squid.conf"), conf).unwrap();
        for f in ["passwd", "hosts", "squid.conf"] {
            std::fs::set_permissions(path(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let child = Command::new("/usr/sbin/squid")
            // A service name of its own: squids running at once would
            // otherwise share their shared-memory segments.
            .args(["-N", "-n", &format!("squid{port}"), "-f"])
            .arg(path("squid.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid is installed (scripts/test-peers.sh installs it)");
        let mut squid = Self { child, port, dir };
        squid.wait_listening();
        squid
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("squid exited ({status}): {}", self.cache_log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("squid did not listen: {}", self.cache_log());
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT`, as HTTPS_PROXY holds it.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The access log so far: one line per request squid finished (a
    /// CONNECT tunnel is logged when it closes, so stop the proxy that
    /// holds it open first).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.path("access.log")).unwrap_or_default()
    }

    /// Waits until the access log holds a line with `needle`.
    pub fn wait_logged(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.access_log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cache_log(&self) -> String {
        std::fs::read_to_string(self.path("cache.log")).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
