//! Waiting in tests: for a condition, or for a connection to close.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// Polls `f` every 100 ms until it is true (`true`) or `limit` passes
/// (`false`).
pub async fn eventually<F: AsyncFnMut() -> bool>(limit: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Whether the peer closes `s` within `limit`: what it still sends is
/// read and dropped until the end of the stream or an error.
pub async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut buf))
        .await
        .is_ok()
}
