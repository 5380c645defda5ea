//! Runs the real `ado-auth-proxy` binary with a config file, captures its
//! JSON logs, and finds its bound addresses from the "listening" line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ado-auth-proxy"))
}

/// A running proxy process.
pub struct ProxyProcess {
    child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts the binary with `toml` (listen and admin addresses on port 0
    /// and JSON logs are set through the environment) and extra variables.
    pub fn spawn(toml: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml).unwrap();
        let path = path.to_str().unwrap().to_string();
        let args = ["run", "--config", &path];
        let own_listener = env.iter().any(|(k, _)| {
            *k == "ADO_AUTH_PROXY_LISTEN__ADDRESS" || *k == "ADO_AUTH_PROXY_LISTEN__PUBLIC_URL"
        }) || toml.contains("public_url");
        if own_listener {
            let mut all = vec![("ADO_AUTH_PROXY_ADMIN__ADDRESS", "127.0.0.1:0")];
            all.extend_from_slice(env);
            return Self::spawn_args(&args, &all, dir);
        }
        // A loopback listener's derived public URL is http://localhost:PORT;
        // the tests sign in on 127.0.0.1 (see support::start_with): a free
        // port and 127.0.0.1 as the public URL, another port when that one
        // was taken in between.
        let scheme = if toml.contains("tls_cert_file") {
            "https"
        } else {
            "http"
        };
        let mut dir = Some(dir);
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let address = format!("127.0.0.1:{port}");
            let public = format!("{scheme}://127.0.0.1:{port}");
            let mut all = vec![
                ("ADO_AUTH_PROXY_LISTEN__ADDRESS", address.as_str()),
                ("ADO_AUTH_PROXY_LISTEN__PUBLIC_URL", public.as_str()),
                ("ADO_AUTH_PROXY_ADMIN__ADDRESS", "127.0.0.1:0"),
            ];
            all.extend_from_slice(env);
            match Self::try_spawn_args(&args, &all, dir.take().unwrap()) {
                Ok(p) => return p,
                Err((d, logs)) if logs.contains("cannot listen on") => dir = Some(d),
                Err((_, logs)) => panic!("proxy did not start; logs: {logs}"),
            }
        }
        panic!("no free port for the proxy in 20 tries")
    }

    /// Starts the binary with exactly these arguments; JSON logs are
    /// switched on through the environment so the addresses can be read.
    pub fn spawn_args(args: &[&str], env: &[(&str, &str)], dir: tempfile::TempDir) -> Self {
        match Self::try_spawn_args(args, env, dir) {
            Ok(p) => p,
            Err((_, logs)) => panic!("proxy did not start; logs: {logs}"),
        }
    }

    /// [`ProxyProcess::spawn_args`]; a process that stops or does not
    /// listen gives back the directory and its logs.
    fn try_spawn_args(
        args: &[&str],
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
    ) -> Result<Self, (tempfile::TempDir, String)> {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env("ADO_AUTH_PROXY_LOG__FORMAT", "json")
            // Hermetic: the machine's egress proxy is not the test's.
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("binary starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"listening\"")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let all = logs.lock().unwrap().join("\n");
                return Err((dir, all));
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let addr = |k: &str| v[k].as_str().unwrap().parse().unwrap();
        Ok(Self {
            proxy: addr("proxy"),
            admin: addr("admin"),
            child,
            logs,
            _dir: dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends a signal (`Signal::TERM`, `Signal::INT`).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let raw = i32::try_from(self.child.id()).unwrap();
        let pid = rustix::process::Pid::from_raw(raw).unwrap();
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("kill({raw}, {signal:?}): {e}"));
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "proxy did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
