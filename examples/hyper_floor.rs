//! The floor for any hyper-based proxy, measured by `scripts/bench.sh`: a
//! reverse proxy with nothing but hyper's server, hyper-util's pooled
//! client and the same two timeouts ado-auth-proxy arms per request (header
//! read, time to first byte). No routing, headers, metrics or logging.
//!
//! Usage: hyper_floor LISTEN_ADDR UPSTREAM_BASE   (e.g. 127.0.0.1:18085 http://127.0.0.1:18081)

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().ok_or("missing LISTEN_ADDR")?;
    let upstream = args.next().ok_or("missing UPSTREAM_BASE")?;
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = service_fn(move |mut req: hyper::Request<Incoming>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let target = format!(
                        "{upstream}{}",
                        req.uri().path_and_query().map_or("/", |p| p.as_str())
                    );
                    *req.uri_mut() = target.parse().expect("valid target");
                    req.headers_mut().remove(hyper::header::HOST);
                    // An HTTP/2 client's request goes upstream as HTTP/1.1,
                    // as the proxy sends it.
                    *req.version_mut() = hyper::Version::HTTP_11;
                    let sent =
                        tokio::time::timeout(Duration::from_secs(120), client.request(req)).await;
                    Ok::<_, Infallible>(sent.expect("in time").expect("upstream answers"))
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
