//! A Node.js test peer (`tests/peers/*.mjs`) that reports one JSON line
//! per step and waits for a line on stdin before the next.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A running peer.
pub struct Peer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    /// Runs `tests/peers/{script}` with `env`.
    pub fn start(script: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new("node");
        cmd.arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/peers")
                .join(script),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("node runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next step's report.
    pub async fn next(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("the peer reports")
            .unwrap()
            .expect("a line");
        serde_json::from_str(&line).unwrap()
    }

    /// Lets the peer go on to its next step.
    pub async fn go_on(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"next\n").await.unwrap();
    }
}
