//! An in-process fake Azure DevOps: a hyper server on a free loopback port
//! that records what it received and answers with a handler per test.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Any response body a fake may send.
pub type FakeBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Path and query, as sent on the wire.
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The address the request's connection came from (the proxy's
    /// side of an upstream connection).
    pub peer: SocketAddr,
}

/// The connection's remote address, as a request extension.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<FakeBody>> + Send>>
        + Send
        + Sync,
>;

/// A running fake upstream.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

/// A body from bytes.
pub fn full(body: impl Into<Bytes>) -> FakeBody {
    Full::new(body.into()).map_err(|e| match e {}).boxed()
}

/// A response with status, headers and body.
pub fn respond(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<FakeBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

impl FakeUpstream {
    /// A fake whose handler sees the raw request (for streaming tests).
    pub async fn raw<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<FakeBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        Self::serve(handler, None, Arc::new(Mutex::new(Vec::new()))).await
    }

    /// A fake that buffers and records each request, then answers with
    /// `handler(&recorded)`.
    pub async fn recording<F>(handler: F) -> Self
    where
        F: Fn(&Recorded) -> Response<FakeBody> + Send + Sync + 'static,
    {
        Self::recording_tls(handler, None).await
    }

    /// As [`recording`], over TLS (ALPN h2 and http/1.1) when `tls` is set.
    pub async fn recording_tls<F>(handler: F, tls: Option<rustls::ServerConfig>) -> Self
    where
        F: Fn(&Recorded) -> Response<FakeBody> + Send + Sync + 'static,
    {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let log = recorded.clone();
        let handler = Arc::new(handler);
        let h: Handler = Arc::new(move |req: Request<Incoming>| {
            let log = log.clone();
            let handler = handler.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let rec = Recorded {
                    method: parts.method,
                    uri: parts
                        .uri
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    version: parts.version,
                    peer: parts
                        .extensions
                        .get::<Peer>()
                        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.0),
                    headers: parts.headers,
                    body,
                };
                let resp = handler(&rec);
                log.lock().unwrap().push(rec);
                resp
            })
        });
        Self::serve(h, tls, recorded).await
    }

    async fn serve(
        handler: Handler,
        tls: Option<rustls::ServerConfig>,
        recorded: Arc<Mutex<Vec<Recorded>>>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |mut req: Request<Incoming>| {
                        req.extensions_mut().insert(Peer(peer));
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, recorded }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// The only request received; panics unless exactly one arrived.
    pub fn single(&self) -> Recorded {
        let all = self.requests();
        assert_eq!(all.len(), 1, "expected one upstream request, got {all:#?}");
        all.into_iter().next().unwrap()
    }
}
