//! Upgraded connections: a request with `Connection: upgrade` naming a
//! protocol of `listen.tunnel_protocols` (`websocket` by default) is sent
//! upstream with its `Upgrade` header and the credential. Any other
//! upgrade (`h2c`, made-up tokens) is not tunnelled: over HTTP/1.1 it is
//! served as the plain request it also is (`Upgrade` is hop-by-hop and
//! dropped, as RFC 9110 §7.8 lets a server ignore it); an HTTP/2 extended
//! CONNECT for it is refused, as it has no plain reading. When Azure
//! DevOps answers `101 Switching Protocols`, the proxy relays the 101 and
//! then splices the two connections byte for byte: each direction reads
//! only when the other side has taken the previous chunk (back-pressure),
//! a tunnel with no byte either way for `listen.tunnel_idle_timeout` is
//! closed, at most `listen.max_tunnels` are open, and all close when the
//! proxy shuts down.
//!
//! After the 101 the bytes are the upgraded protocol's (WebSocket frames);
//! the proxy does not read them.
//!
//! HTTP/2 clients open WebSockets with an extended CONNECT (RFC 8441:
//! `:method CONNECT`, `:protocol websocket`). Azure DevOps is reached
//! over HTTP/1.1 for upgrades, so such a request goes up as the RFC 6455
//! handshake (`GET`, `Upgrade: websocket`, a fresh `Sec-WebSocket-Key`),
//! and the upstream's 101 comes back as the `200` RFC 8441 asks for. The
//! frames are the same on both sides.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::error::Error;
use crate::metrics::{Metrics, TunnelEnd};

/// Resolves when a tunnel's credential ends.
pub type CredentialEnd = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Bytes read at once from either side.
const CHUNK: usize = 16 * 1024;

/// The tunnels of one proxy.
pub struct Tunnels {
    permits: Arc<Semaphore>,
    max: usize,
    /// `listen.tunnel_protocols`.
    protocols: Vec<String>,
    idle: Duration,
    stop: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

/// A tunnel's place, taken before the upgrade is sent upstream and held
/// until the tunnel ends.
pub struct Place {
    _permit: OwnedSemaphorePermit,
}

/// What a client's request asks to upgrade to.
pub struct Upgrade {
    /// The `Upgrade` header as the client sent it (or `:protocol`).
    pub protocol: HeaderValue,
    /// The client's side, ready once the 101 (or 200) is sent.
    pub client: OnUpgrade,
    /// An HTTP/2 extended CONNECT, translated to HTTP/1.1 upstream.
    pub extended_connect: bool,
}

// === impl Tunnels ===

impl Tunnels {
    /// Room for `max` tunnels of `protocols`, each closed after `idle`
    /// without traffic.
    pub fn new(max: usize, idle: Duration, protocols: &[String], metrics: Arc<Metrics>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max,
            protocols: protocols.to_vec(),
            idle,
            stop: watch::channel(false).0,
            metrics,
        }
    }

    /// A place for one more tunnel, or the answer why not.
    pub fn admit(&self) -> Result<Place, Error> {
        if *self.stop.borrow() {
            return Err(Error::TunnelsFull {
                max: self.max,
                stopping: true,
            });
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(Place { _permit: permit }),
            Err(_) => {
                self.metrics.tunnels.refused.inc();
                tracing::warn!(
                    max = self.max,
                    "listen.max_tunnels reached; upgrade refused"
                );
                Err(Error::TunnelsFull {
                    max: self.max,
                    stopping: false,
                })
            }
        }
    }

    /// The upgrade `req` asks for, with a place for its tunnel; boxed, as
    /// it is kept across the upstream exchange and rare, so the request
    /// future stays small. Refused when there is no room.
    pub fn requested<B>(
        &self,
        req: &mut http::Request<B>,
    ) -> Result<Option<Box<(Upgrade, Place)>>, Error> {
        let allowed = |p: &[u8]| {
            self.protocols
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(p))
        };
        match Upgrade::requested(req, allowed)? {
            Some(u) => Ok(Some(Box::new((u, self.admit()?)))),
            None => Ok(None),
        }
    }

    /// Closes every tunnel and admits no more (shutdown).
    pub fn close_all(&self) {
        self.stop.send_replace(true);
    }

    /// Splices `client` and `upstream` once both have switched, holding
    /// `place` until the tunnel ends.
    /// `ended` resolves when the credential it was opened with ends: the
    /// tunnel closes then.
    pub fn spawn(
        &self,
        place: Place,
        client: OnUpgrade,
        upstream: OnUpgrade,
        request_id: String,
        ended: Option<CredentialEnd>,
    ) {
        let metrics = self.metrics.clone();
        let idle = self.idle;
        let stop = self.stop.subscribe();
        tokio::spawn(async move {
            let _place = place;
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(request_id, error = %e, "an upgrade did not complete");
                    return;
                }
            };
            metrics.tunnels.open.inc();
            let started = Instant::now();
            let end = splice(
                TokioIo::new(client),
                TokioIo::new(upstream),
                idle,
                stop,
                ended,
                &metrics,
            )
            .await;
            metrics.tunnels.open.dec();
            metrics.tunnels.ended(end);
            tracing::info!(
                request_id,
                ended = end.as_str(),
                seconds = started.elapsed().as_secs_f64(),
                "tunnel closed"
            );
        });
    }
}

// === impl Upgrade ===

impl Upgrade {
    /// The upgrade an HTTP/1.1 request asks for: `Connection` names
    /// `upgrade` and `Upgrade` is one protocol that `allowed` admits (any
    /// other is no upgrade: the request is served plainly), or an HTTP/2
    /// extended CONNECT (refused when `allowed` does not admit its
    /// `:protocol`). Takes the client's side.
    fn requested<B>(
        req: &mut http::Request<B>,
        allowed: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<Self>, Error> {
        if req.version() == http::Version::HTTP_2 && req.method() == http::Method::CONNECT {
            let Some(protocol) = req.extensions().get::<hyper::ext::Protocol>() else {
                return Ok(None);
            };
            let name = protocol.as_str();
            if !allowed(name.as_bytes()) {
                return Err(crate::error::Refusal::UpgradeNotAllowed {
                    protocol: name.chars().take(64).collect(),
                }
                .into());
            }
            let Ok(protocol) = HeaderValue::from_str(name) else {
                return Ok(None);
            };
            return Ok(Some(Self {
                protocol,
                client: hyper::upgrade::on(req),
                extended_connect: true,
            }));
        }
        // Nearly every request stops at the first check.
        if req.version() != http::Version::HTTP_11 || !req.headers().contains_key(header::UPGRADE) {
            return Ok(None);
        }
        let asks = req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        let mut offered = req.headers().get_all(header::UPGRADE).iter();
        let (Some(protocol), None) = (offered.next(), offered.next()) else {
            return Ok(None);
        };
        if !asks || !allowed(protocol.as_bytes().trim_ascii()) {
            return Ok(None);
        }
        let protocol = protocol.clone();
        Ok(Some(Self {
            protocol,
            client: hyper::upgrade::on(req),
            extended_connect: false,
        }))
    }

    /// Makes the upstream request (hop-by-hop headers already stripped)
    /// the HTTP/1.1 upgrade Azure DevOps expects.
    pub fn prepare_upstream<B>(&self, req: &mut http::Request<B>) {
        mark_upgrade(req.headers_mut(), self.protocol.clone());
        if self.extended_connect {
            *req.method_mut() = http::Method::GET;
            req.extensions_mut().remove::<hyper::ext::Protocol>();
            if self.protocol.as_bytes().eq_ignore_ascii_case(b"websocket") {
                req.headers_mut().insert(SEC_WEBSOCKET_KEY, websocket_key());
            }
        }
    }

    /// The client's answer once the upstream switched: a 101 with the
    /// upgrade for HTTP/1.1, a 200 for an extended CONNECT (whose
    /// `Sec-WebSocket-Accept` belongs to the handshake the proxy made).
    pub fn prepare_answer(
        &self,
        status: &mut http::StatusCode,
        headers: &mut HeaderMap,
        upstream_protocol: Option<HeaderValue>,
    ) {
        if self.extended_connect {
            *status = http::StatusCode::OK;
            headers.remove(SEC_WEBSOCKET_ACCEPT);
        } else {
            mark_upgrade(
                headers,
                upstream_protocol.unwrap_or_else(|| self.protocol.clone()),
            );
        }
    }
}

const SEC_WEBSOCKET_KEY: http::HeaderName = http::HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: http::HeaderName =
    http::HeaderName::from_static("sec-websocket-accept");

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1).
fn websocket_key() -> HeaderValue {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; 16];
    // The key only proves the server speaks WebSocket; it is no secret.
    let _ = ring::rand::SystemRandom::new().fill(&mut nonce);
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    HeaderValue::from_str(&key)
        .unwrap_or_else(|_| HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA=="))
}

/// Puts the upgrade back on headers whose hop-by-hop fields were
/// stripped (a request going up, or the 101 coming down).
pub fn mark_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// When either direction last carried a byte, in ms since the start.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `idle`.
    async fn quiet_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + idle;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Carries bytes both ways until both sides have closed, one fails, the
/// tunnel is idle for `idle`, or `stop` is set.
async fn splice<C, U>(
    client: C,
    upstream: U,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
    ended: Option<CredentialEnd>,
    metrics: &Metrics,
) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let both = async {
        let (up, down) = tokio::join!(
            pump(client_read, upstream_write, &activity, &metrics.tunnels.up),
            pump(
                upstream_read,
                client_write,
                &activity,
                &metrics.tunnels.down
            ),
        );
        if up.is_ok() && down.is_ok() {
            TunnelEnd::Closed
        } else {
            TunnelEnd::Error
        }
    };
    tokio::select! {
        end = both => end,
        _ = activity.quiet_for(idle) => TunnelEnd::Idle,
        r = stop.wait_for(|s| *s) => {
            drop(r);
            TunnelEnd::Shutdown
        }
        () = async {
            match ended {
                Some(ended) => ended.await,
                None => std::future::pending().await,
            }
        } => TunnelEnd::CredentialEnded,
    }
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing
/// side (a half-close, so the other direction may still finish).
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    activity: &Activity,
    bytes: &IntCounter,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // The peer may already be gone; that is not an error here.
            let _ = to.shutdown().await;
            return Ok(());
        }
        activity.touch();
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        bytes.inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn metrics() -> Metrics {
        Metrics::new(prometheus::Registry::new()).unwrap()
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_a_half_close_lets_the_other_side_finish() {
        let m = metrics();
        let (client, mut client_peer) = duplex(64);
        let (upstream, mut upstream_peer) = duplex(64);
        let stop = watch::channel(false);
        let tunnel = splice(client, upstream, Duration::from_secs(60), stop.1, None, &m);
        let peers = async {
            // More than both buffers: only back-pressure gets it through.
            let big = vec![7u8; 100_000];
            let (w, r) = tokio::join!(client_peer.write_all(&big), async {
                let mut got = vec![0u8; big.len()];
                upstream_peer.read_exact(&mut got).await.map(|_| got)
            });
            w.unwrap();
            assert_eq!(r.unwrap(), big);
            client_peer.shutdown().await.unwrap();
            // The upstream still answers after the client's half-close.
            upstream_peer.write_all(b"bye").await.unwrap();
            upstream_peer.shutdown().await.unwrap();
            let mut rest = Vec::new();
            client_peer.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"bye");
        };
        let (end, ()) = tokio::join!(tunnel, peers);
        assert_eq!(end, TunnelEnd::Closed);
        assert_eq!(m.tunnels.up.get(), 100_000);
        assert_eq!(m.tunnels.down.get(), 3);
    }

    #[tokio::test]
    async fn a_quiet_tunnel_ends_after_the_idle_timeout_and_traffic_keeps_it_open() {
        let m = metrics();
        let (client, mut client_peer) = duplex(64);
        let (upstream, mut upstream_peer) = duplex(64);
        let stop = watch::channel(false);
        let started = Instant::now();
        let tunnel = splice(
            client,
            upstream,
            Duration::from_millis(300),
            stop.1,
            None,
            &m,
        );
        let talk = async {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                client_peer.write_all(b"ping").await.unwrap();
                let mut b = [0u8; 4];
                upstream_peer.read_exact(&mut b).await.unwrap();
            }
        };
        let (end, ()) = tokio::join!(tunnel, talk);
        assert_eq!(end, TunnelEnd::Idle);
        assert!(
            started.elapsed() >= Duration::from_millis(850),
            "kept open while traffic flowed: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn shutdown_ends_every_tunnel_and_admits_no_new_one() {
        let m = Arc::new(metrics());
        let tunnels = Tunnels::new(1, Duration::from_secs(60), &["websocket".into()], m.clone());
        let place = tunnels.admit().unwrap();
        assert!(
            matches!(
                tunnels.admit(),
                Err(Error::TunnelsFull {
                    max: 1,
                    stopping: false
                })
            ),
            "the cap holds"
        );
        assert_eq!(m.tunnels.refused.get(), 1);
        drop(place);
        let (client, _c) = duplex(64);
        let (upstream, _u) = duplex(64);
        let tunnel = splice(
            client,
            upstream,
            Duration::from_secs(60),
            tunnels.stop.subscribe(),
            None,
            &m,
        );
        tunnels.close_all();
        assert_eq!(tunnel.await, TunnelEnd::Shutdown);
        // A tunnel whose credential ends is closed then.
        let (client, _c) = duplex(64);
        let (upstream, _u) = duplex(64);
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        let (_stop, stopped) = watch::channel(false);
        let tunnel = splice(
            client,
            upstream,
            Duration::from_secs(60),
            stopped,
            Some(Box::pin(async move {
                let _ = ended.await;
            })),
            &m,
        );
        let _ = end.send(());
        assert_eq!(tunnel.await, TunnelEnd::CredentialEnded);
        assert!(matches!(
            tunnels.admit(),
            Err(Error::TunnelsFull { stopping: true, .. })
        ));
    }
}
