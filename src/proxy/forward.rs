//! The only code that talks to Azure DevOps: a pooled hyper client over
//! rustls (HTTP/2 when the upstream offers it by ALPN), with connect and
//! time-to-first-byte timeouts. Bodies stream both ways. Upgrades
//! (WebSockets) go through a second, HTTP/1.1-only client: HTTP/1.1's
//! `Upgrade` does not exist in HTTP/2.
//!
//! Each serving thread has its own `Forwarder`. Against an HTTP/1.1
//! upstream, a client connection's requests go on an upstream connection
//! of its own ([`super::affinity`]); an upstream that picks HTTP/2 is
//! remembered and served by the pool's multiplexed connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service as _;

use super::affinity::{Downstream, Idle, Take};
use super::route::Upstream;
use crate::body::CountedBody;
use crate::config::UpstreamConfig;
use crate::egress::{self, Egress, EgressError};
use crate::error::Error;
use crate::metrics::UpstreamErrorKind;
use crate::tls::{self, TlsError};

type Pooled = Client<HttpsConnector<egress::Connector>, CountedBody>;

/// Sends requests upstream.
pub struct Forwarder {
    client: Pooled,
    upgrades: Pooled,
    /// What a pool of its own is built from.
    connectors: Connectors,
    /// This serving thread's upstream connections between clients.
    idle: Arc<Idle>,
    response_timeout: Duration,
    /// Bounds a connection of a client's own: TCP, the egress proxy's
    /// tunnel, TLS and the HTTP/1.1 handshake.
    connect_timeout: Duration,
}

/// The connectors (TLS settings included) and pool settings, kept to
/// build more pools.
#[derive(Clone)]
struct Connectors {
    any: HttpsConnector<egress::Connector>,
    http1: HttpsConnector<egress::Connector>,
    pool_idle_timeout: Duration,
}

// === impl Forwarder ===

impl Forwarder {
    /// Builds the pooled clients from `[upstream]`.
    pub fn new(config: &UpstreamConfig) -> Result<Self, TlsError> {
        let egress = Egress::new(&config.egress);
        let connectors = Connectors {
            any: connector(config, &egress, true)?,
            http1: connector(config, &egress, false)?,
            pool_idle_timeout: config.pool_idle_timeout,
        };
        Ok(Self {
            client: connectors.pool(true),
            upgrades: connectors.pool(false),
            idle: Arc::new(Idle::new(connectors.pool_idle_timeout)),
            connectors,
            response_timeout: config.response_timeout,
            connect_timeout: config.connect_timeout,
        })
    }

    /// The same settings with pools of its own (empty).
    pub fn with_own_pool(&self) -> Self {
        Self {
            client: self.connectors.pool(true),
            upgrades: self.connectors.pool(false),
            idle: Arc::new(Idle::new(self.connectors.pool_idle_timeout)),
            connectors: self.connectors.clone(),
            response_timeout: self.response_timeout,
            connect_timeout: self.connect_timeout,
        }
    }

    /// This thread's idle upstream connections.
    pub fn idle(&self) -> &Arc<Idle> {
        &self.idle
    }

    /// A client connection from `remote`, whose requests get an upstream
    /// connection of their own.
    pub fn downstream(&self, remote: SocketAddr) -> Downstream {
        Downstream::new(remote, self.idle.clone())
    }

    /// Sends `req` to `upstream` and waits for the response headers (at
    /// most `response_timeout`); the body then streams without a deadline.
    /// Dropping the returned future cancels the upstream request.
    ///
    /// The exchange is one boxed future: the request future, which holds
    /// it, stays small (see proxy's tests).
    pub fn send<'a>(
        &'a self,
        req: Request<CountedBody>,
        upstream: &'a Upstream,
        downstream: Option<&'a Downstream>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Incoming>, Error>> + Send + 'a>> {
        let upgrade = req.headers().contains_key(http::header::UPGRADE);
        let own = !upgrade && !upstream.speaks_h2.load(Ordering::Relaxed);
        if let Some(d) = downstream.filter(|_| own) {
            match d.take(&upstream.name) {
                Take::Pool => {}
                Take::Own(own) => {
                    let idle = Some(own.used.elapsed());
                    return Box::pin(self.send_own(own.sender, idle, req, upstream, d));
                }
                Take::Open => return Box::pin(self.open_and_send(req, upstream, d)),
            }
        }
        let client = if upgrade {
            &self.upgrades
        } else {
            &self.client
        };
        Box::pin(self.send_pooled(client, req, upstream))
    }

    /// Sends on a connection of the serving thread's idle list, or a new
    /// one, and gives it to `downstream`.
    async fn open_and_send(
        &self,
        req: Request<CountedBody>,
        upstream: &Upstream,
        downstream: &Downstream,
    ) -> Result<Response<Incoming>, Error> {
        let (sender, idle) = match downstream.idle_connection(&upstream.name) {
            Some(own) => (own.sender, Some(own.used.elapsed())),
            None => match self.connect(req.uri(), upstream).await {
                Ok(Some(sender)) => (sender, None),
                Ok(None) => {
                    // HTTP/2: the pool multiplexes it for every client.
                    downstream.release();
                    return self.send_pooled(&self.client, req, upstream).await;
                }
                Err(e) => {
                    downstream.release();
                    return Err(e);
                }
            },
        };
        self.send_own(sender, idle, req, upstream, downstream).await
    }

    /// Sends on the shared pool.
    async fn send_pooled(
        &self,
        client: &Pooled,
        req: Request<CountedBody>,
        upstream: &Upstream,
    ) -> Result<Response<Incoming>, Error> {
        match tokio::time::timeout(self.response_timeout, client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(connect_failed(upstream, &e)),
            Ok(Err(e)) => Err(upstream.failed(UpstreamErrorKind::Protocol, innermost(&e))),
            Err(_) => Err(self.timed_out(upstream)),
        }
    }

    /// Sends on the client connection's own upstream connection (idle for
    /// `idle` since its last exchange; `None` when new), and keeps it for
    /// the next request. A request the connection closed on before
    /// sending it goes to the pool instead; so does, once, an idempotent
    /// request without a body that a connection idle for a while closed
    /// on after it was sent: the upstream's idle timeout struck as it
    /// arrived (nginx sends such requests again too).
    async fn send_own(
        &self,
        mut sender: SendRequest<CountedBody>,
        idle: Option<Duration>,
        mut req: Request<CountedBody>,
        upstream: &Upstream,
        downstream: &Downstream,
    ) -> Result<Response<Incoming>, Error> {
        let again = idle
            .is_some_and(|d| d >= REPLAY_AFTER_IDLE)
            .then(|| Replay::of(&req))
            .flatten();
        // The connection is to the upstream already: origin form, and the
        // Host that hyper's pooled client would have set.
        let origin = origin_form(req.uri());
        let absolute = std::mem::replace(req.uri_mut(), origin);
        req.headers_mut()
            .insert(http::header::HOST, upstream.host.clone());
        let sent = tokio::time::timeout(self.response_timeout, sender.try_send_request(req)).await;
        match sent {
            Ok(Ok(resp)) => {
                downstream.put_back(&upstream.name, sender);
                Ok(resp)
            }
            Ok(Err(mut e)) => {
                downstream.release();
                match (e.take_message(), again) {
                    (Some(mut req), _) => {
                        // Not sent (the upstream closed the idle
                        // connection): safe to send again.
                        *req.uri_mut() = absolute;
                        req.headers_mut().remove(http::header::HOST);
                        self.send_pooled(&self.client, req, upstream).await
                    }
                    (None, Some(again)) if closed_under_us(e.error()) => {
                        tracing::debug!(
                            upstream = %upstream.name,
                            error = %e.error(),
                            "a reused upstream connection closed under an idempotent request; sending it again"
                        );
                        self.send_pooled(&self.client, again.request(), upstream)
                            .await
                    }
                    (None, _) => {
                        Err(upstream.failed(UpstreamErrorKind::Protocol, innermost(e.error())))
                    }
                }
            }
            Err(_) => {
                downstream.release();
                Err(self.timed_out(upstream))
            }
        }
    }

    /// A new HTTP/1.1 connection to `uri`'s upstream, driven by a task of
    /// this serving thread; `None` when the upstream chose HTTP/2 (ALPN),
    /// which is then noted so that its requests go to the pool.
    async fn connect(
        &self,
        uri: &Uri,
        upstream: &Upstream,
    ) -> Result<Option<SendRequest<CountedBody>>, Error> {
        // An upstream (or an egress proxy's tunnel) that accepts and then
        // says nothing must not hold the request without a deadline.
        match tokio::time::timeout(self.connect_timeout, self.connect_unbounded(uri, upstream))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(upstream.failed(
                UpstreamErrorKind::Connect,
                format!(
                    "no connection within {} (upstream.connect_timeout): the TLS or HTTP \
                     handshake did not complete",
                    humantime::format_duration(self.connect_timeout)
                ),
            )),
        }
    }

    async fn connect_unbounded(
        &self,
        uri: &Uri,
        upstream: &Upstream,
    ) -> Result<Option<SendRequest<CountedBody>>, Error> {
        let mut connector = self.connectors.any.clone();
        let failed = |e: &(dyn std::error::Error + 'static)| connect_failed(upstream, e);
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| failed(&*e))?;
        let io = connector.call(uri.clone()).await.map_err(|e| failed(&*e))?;
        if io.connected().is_negotiated_h2() {
            upstream.speaks_h2.store(true, Ordering::Relaxed);
            return Ok(None);
        }
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            // Flattened writes, as on the server side (see serve.rs).
            .writev(false)
            .handshake(io)
            .await
            .map_err(|e| failed(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Some(sender))
    }

    fn timed_out(&self, upstream: &Upstream) -> Error {
        upstream.failed(
            UpstreamErrorKind::Timeout,
            format!(
                "no response within {} (upstream.response_timeout)",
                humantime::format_duration(self.response_timeout)
            ),
        )
    }
}

/// How long a connection must have been idle before a request it closes
/// on after sending is sent again: a connection in use keeps a server's
/// idle timeout away, so a close right after use is the upstream's
/// answer, not a race.
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// What it takes to send a request again: its head, when it is
/// idempotent (RFC 9110: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and has
/// no body, so nothing of it is lost.
struct Replay {
    head: http::request::Parts,
    body: CountedBody,
}

impl Replay {
    fn of(req: &Request<CountedBody>) -> Option<Self> {
        use http::Method;
        let idempotent = matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        if !idempotent || !http_body::Body::is_end_stream(req.body()) {
            return None;
        }
        let mut head = Request::new(());
        *head.method_mut() = req.method().clone();
        *head.uri_mut() = req.uri().clone();
        *head.version_mut() = req.version();
        *head.headers_mut() = req.headers().clone();
        Some(Self {
            head: head.into_parts().0,
            body: req.body().empty_like(),
        })
    }

    fn request(self) -> Request<CountedBody> {
        Request::from_parts(self.head, self.body)
    }
}

/// Whether the upstream closed the connection while the request was
/// out: the answer never started, so an idempotent request may go again.
fn closed_under_us(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

/// `uri` without scheme and authority.
fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()))
}

/// A connector, directly or through the egress proxy; `http2` offers
/// HTTP/2 by ALPN besides HTTP/1.1.
fn connector(
    config: &UpstreamConfig,
    egress: &Arc<Egress>,
    http2: bool,
) -> Result<HttpsConnector<egress::Connector>, TlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tcp = egress::Connector::new(http, egress.clone(), config.connect_timeout);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls::client_config(config.ca_file.as_deref())?)
        .https_or_http()
        .enable_http1();
    Ok(if http2 {
        builder.enable_http2().wrap_connector(tcp)
    } else {
        builder.wrap_connector(tcp)
    })
}

// === impl Connectors ===

impl Connectors {
    /// A pooled client; `http2` offers HTTP/2 by ALPN besides HTTP/1.1.
    fn pool(&self, http2: bool) -> Pooled {
        let connector = if http2 { &self.any } else { &self.http1 };
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            // Flattened writes, as on the server side (see serve.rs).
            .http1_writev(false)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector.clone())
    }
}

/// A connection to `upstream` that could not be made: the egress proxy's
/// refusal when it was one, so the answer can say what to fix.
fn connect_failed(upstream: &Upstream, e: &(dyn std::error::Error + 'static)) -> Error {
    let Some(egress) = EgressError::find(e) else {
        return upstream.failed(UpstreamErrorKind::Connect, innermost(e));
    };
    let kind = match egress.kind {
        egress::EgressFailure::Refused(407, _) => UpstreamErrorKind::EgressAuth,
        egress::EgressFailure::Refused(..) => UpstreamErrorKind::EgressRefused,
        _ => UpstreamErrorKind::EgressFailed,
    };
    upstream.failed(kind, egress.to_string())
}

/// The most specific message in an error's chain ("Connection refused").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut messages = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        messages.push(s.to_string());
        source = s.source();
    }
    messages.dedup();
    messages.join(": ")
}
