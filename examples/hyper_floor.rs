//! The floor for any hyper-based proxy, measured by `scripts/bench.sh`: a
//! reverse proxy with nothing but hyper's server, a hyper client and the
//! same two timeouts ado-auth-proxy arms per request (header read, time to
//! first byte). No routing, headers, metrics or logging.
//!
//! Usage: hyper_floor LISTEN_ADDR UPSTREAM_BASE [MODEL]
//!   (e.g. 127.0.0.1:18085 http://127.0.0.1:18081)
//!
//! MODEL says how the work is spread over threads and upstream
//! connections, so each of issue 18's approaches can be measured alone:
//! - `multi` (default): tokio's multi-thread runtime, one listener,
//!   hyper-util's pooled client shared by every connection.
//! - `per-core`: one current-thread runtime per core, each with its own
//!   `SO_REUSEPORT` listener and its own pooled client.
//! - `affinity`: `per-core`, and each downstream connection keeps one
//!   upstream HTTP/1.1 connection of its own (hyper's `client::conn`),
//!   falling back to the thread's pool while it is busy.

// A benchmark measures real time (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

type Pooled = Client<HttpConnector, Incoming>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args.next().ok_or("missing LISTEN_ADDR")?.parse()?;
    let upstream = args.next().ok_or("missing UPSTREAM_BASE")?;
    let model = args.next().unwrap_or_else(|| "multi".into());
    match model.as_str() {
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(listen, upstream, false, false)),
        "multi-affinity" => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(listen, upstream, false, true)),
        "per-core" | "affinity" => {
            let affinity = model == "affinity";
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads: Vec<_> = (0..cores)
                .map(|_| {
                    let upstream = upstream.clone();
                    std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("runtime");
                        let local = tokio::task::LocalSet::new();
                        local
                            .block_on(&rt, serve(listen, upstream, true, affinity))
                            .expect("serve");
                    })
                })
                .collect();
            for t in threads {
                let _ = t.join();
            }
            Ok(())
        }
        other => Err(format!("unknown MODEL {other}: multi, per-core or affinity").into()),
    }
}

async fn serve(
    listen: SocketAddr,
    upstream: String,
    local: bool,
    affinity: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    if local {
        socket.set_reuseport(true)?;
    }
    socket.bind(listen)?;
    let listener = socket.listen(1024)?;
    let client: Pooled = Client::builder(TokioExecutor::new()).build_http();
    let authority: Arc<str> = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .into();
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, upstream, authority) = (client.clone(), upstream.clone(), authority.clone());
        let own: Arc<Mutex<Option<SendRequest<Incoming>>>> = Arc::new(Mutex::new(None));
        let service = service_fn(move |mut req: Request<Incoming>| {
            let (client, upstream, authority, own) = (
                client.clone(),
                upstream.clone(),
                authority.clone(),
                own.clone(),
            );
            async move {
                req.headers_mut().remove(hyper::header::HOST);
                // An HTTP/2 client's request goes upstream as HTTP/1.1, as
                // the proxy sends it.
                *req.version_mut() = hyper::Version::HTTP_11;
                let resp = if affinity {
                    send_own(&own, &client, &upstream, &authority, req, local).await
                } else {
                    send_pooled(&client, &upstream, req).await
                };
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        };
        if local {
            tokio::task::spawn_local(conn);
        } else {
            tokio::spawn(conn);
        }
    }
}

async fn send_pooled(
    client: &Pooled,
    upstream: &str,
    mut req: Request<Incoming>,
) -> Response<Incoming> {
    let target = format!(
        "{upstream}{}",
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    *req.uri_mut() = target.parse().expect("valid target");
    let sent = tokio::time::timeout(Duration::from_secs(120), client.request(req)).await;
    sent.expect("in time").expect("upstream answers")
}

/// Sends on the connection's own upstream connection: opened on first use,
/// kept while it stays ready; the pool serves while it is busy (HTTP/2
/// clients' concurrent streams).
async fn send_own(
    own: &Mutex<Option<SendRequest<Incoming>>>,
    client: &Pooled,
    upstream: &str,
    authority: &str,
    mut req: Request<Incoming>,
    local: bool,
) -> Response<Incoming> {
    let taken = own.lock().expect("not poisoned").take();
    let mut sender = match taken {
        Some(s) if s.is_ready() => s,
        Some(s) if !s.is_closed() => {
            // Busy (another stream): use the pool, keep ours.
            *own.lock().expect("not poisoned") = Some(s);
            return send_pooled(client, upstream, req).await;
        }
        _ => {
            let stream = tokio::net::TcpStream::connect(authority)
                .await
                .expect("upstream accepts");
            stream.set_nodelay(true).expect("nodelay");
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            if local {
                tokio::task::spawn_local(conn);
            } else {
                tokio::spawn(conn);
            }
            sender
        }
    };
    // Origin form: the connection is already to the upstream.
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *req.uri_mut() = path.parse().expect("valid path");
    req.headers_mut()
        .insert(hyper::header::HOST, authority.parse().expect("valid host"));
    let sent = tokio::time::timeout(Duration::from_secs(120), sender.send_request(req)).await;
    let resp = sent.expect("in time").expect("upstream answers");
    *own.lock().expect("not poisoned") = Some(sender);
    resp
}
