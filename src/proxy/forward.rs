//! The only code that talks to Azure DevOps: a pooled hyper client over
//! rustls (HTTP/2 when the upstream offers it by ALPN), with connect and
//! time-to-first-byte timeouts. Bodies stream both ways. Upgrades
//! (WebSockets) go through a second, HTTP/1.1-only client: HTTP/1.1's
//! `Upgrade` does not exist in HTTP/2.

use std::error::Error as _;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::route::Upstream;
use crate::body::CountedBody;
use crate::config::UpstreamConfig;
use crate::error::Error;
use crate::metrics::UpstreamErrorKind;
use crate::tls::{self, TlsError};

/// Sends requests upstream.
pub struct Forwarder {
    client: Client<HttpsConnector<HttpConnector>, CountedBody>,
    upgrades: Client<HttpsConnector<HttpConnector>, CountedBody>,
    response_timeout: Duration,
}

// === impl Forwarder ===

impl Forwarder {
    /// Builds the pooled clients from `[upstream]`.
    pub fn new(config: &UpstreamConfig) -> Result<Self, TlsError> {
        Ok(Self {
            client: client(config, true)?,
            upgrades: client(config, false)?,
            response_timeout: config.response_timeout,
        })
    }

    /// Sends `req` to `upstream` and waits for the response headers (at
    /// most `response_timeout`); the body then streams without a deadline.
    /// Dropping the returned future cancels the upstream request.
    pub async fn send(
        &self,
        req: Request<CountedBody>,
        upstream: &Upstream,
    ) -> Result<Response<Incoming>, Error> {
        let client = if req.headers().contains_key(http::header::UPGRADE) {
            &self.upgrades
        } else {
            &self.client
        };
        match tokio::time::timeout(self.response_timeout, client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                let kind = if e.is_connect() {
                    UpstreamErrorKind::Connect
                } else {
                    UpstreamErrorKind::Protocol
                };
                Err(upstream.failed(kind, innermost(&e)))
            }
            Err(_) => Err(upstream.failed(
                UpstreamErrorKind::Timeout,
                format!(
                    "no response within {} (upstream.response_timeout)",
                    humantime::format_duration(self.response_timeout)
                ),
            )),
        }
    }
}

/// A pooled client; `http2` offers HTTP/2 by ALPN besides HTTP/1.1.
fn client(
    config: &UpstreamConfig,
    http2: bool,
) -> Result<Client<HttpsConnector<HttpConnector>, CountedBody>, TlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls::client_config(config.ca_file.as_deref())?)
        .https_or_http()
        .enable_http1();
    let connector = if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        // Flattened writes, as on the server side (see app.rs).
        .http1_writev(false)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}

/// The most specific message in an error's chain ("Connection refused").
fn innermost(e: &hyper_util::client::legacy::Error) -> String {
    let mut messages = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        messages.push(s.to_string());
        source = s.source();
    }
    messages.dedup();
    messages.join(": ")
}
