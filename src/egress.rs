//! Leaving through the corporate egress proxy: one decision per
//! destination (the [`EgressPlan`]'s proxy for its scheme unless
//! `NO_PROXY` names it), used by both HTTP clients: the hyper connector
//! to Azure DevOps ([`Connector`], which opens the `CONNECT` tunnel
//! itself so that a refusal keeps its status) and the reqwest clients of
//! the identity provider and the proxy's own Azure DevOps calls
//! ([`Egress::configure`], with reqwest's own tunnel).
//!
//! NO_PROXY is matched by hyper-util's matcher, the code reqwest matches
//! with, so the two clients never disagree about a host.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::config::{EgressPlan, ProxyTarget};

/// Largest `CONNECT` answer head read from the egress proxy.
const MAX_ANSWER_HEAD: usize = 16 * 1024;
/// Interim (1xx) answers skipped before the answer to `CONNECT`.
const MAX_INTERIM: usize = 8;

/// The egress decision for every outbound connection.
pub struct Egress {
    plan: EgressPlan,
    matcher: Matcher,
}

/// Why a connection through the egress proxy could not be made.
#[derive(Debug)]
pub struct EgressError {
    /// The egress proxy's `host:port` and where it was named.
    pub proxy: String,
    /// The destination's `host:port`.
    pub target: String,
    /// What happened.
    pub kind: EgressFailure,
}

/// How the egress proxy failed a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressFailure {
    /// No TCP connection to the proxy itself.
    Unreachable(String),
    /// It answered `CONNECT` with this status and reason phrase.
    Refused(u16, String),
    /// It said nothing usable (closed, garbage, too long, too slow).
    Broken(String),
}

// === impl Egress ===

impl Egress {
    /// The decision for `plan`.
    pub fn new(plan: &EgressPlan) -> Arc<Self> {
        let url = |t: &Option<ProxyTarget>| t.as_ref().map(ProxyTarget::url).unwrap_or_default();
        let matcher = Matcher::builder()
            .http(url(&plan.http))
            .https(url(&plan.https))
            .no(plan.no_proxy.clone())
            .build();
        Arc::new(Self {
            plan: plan.clone(),
            matcher,
        })
    }

    /// Direct connections only (tests, tools).
    pub fn direct() -> Arc<Self> {
        Self::new(&EgressPlan::default())
    }

    /// The egress proxy for `dst`; `None`: connect directly.
    pub fn target(&self, dst: &Uri) -> Option<&ProxyTarget> {
        self.matcher.intercept(dst)?;
        match dst.scheme_str() {
            Some("https") => self.plan.https.as_ref(),
            Some("http") => self.plan.http.as_ref(),
            _ => None,
        }
    }

    /// `builder` deciding like [`Egress::target`]: reqwest's own reading
    /// of the environment is off, the plan's proxies and NO_PROXY are on.
    pub fn configure(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let mut builder = builder.no_proxy();
        for (target, https) in [(&self.plan.https, true), (&self.plan.http, false)] {
            let Some(t) = target else { continue };
            let proxy = if https {
                reqwest::Proxy::https(t.url())
            } else {
                reqwest::Proxy::http(t.url())
            };
            let Ok(mut proxy) = proxy else {
                // The plan's URLs are checked at load; never here.
                tracing::error!(proxy = %t.url(), "unusable egress proxy URL");
                continue;
            };
            if let Some(c) = &t.credentials {
                proxy = proxy.basic_auth(&c.user, c.password.expose());
            }
            builder =
                builder.proxy(proxy.no_proxy(reqwest::NoProxy::from_string(&self.plan.no_proxy)));
        }
        builder
    }
}

// === impl EgressError ===

impl std::fmt::Display for EgressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proxy = &self.proxy;
        let target = &self.target;
        match &self.kind {
            EgressFailure::Unreachable(why) => {
                write!(f, "cannot connect to the egress proxy {proxy}: {why}")
            }
            EgressFailure::Refused(status, reason) => write!(
                f,
                "the egress proxy {proxy} answered {status} {reason} to CONNECT {target}"
            ),
            EgressFailure::Broken(why) => {
                write!(
                    f,
                    "the egress proxy {proxy} failed the tunnel to {target}: {why}"
                )
            }
        }
    }
}

impl std::error::Error for EgressError {}

impl EgressError {
    /// The egress failure somewhere in `e`'s chain.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressError> {
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<EgressError>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

/// A connector that opens TCP connections directly or through the egress
/// proxy's `CONNECT` tunnel; the TLS on top (hyper-rustls) is the same
/// either way, end to end with the destination.
#[derive(Clone)]
pub struct Connector {
    tcp: HttpConnector,
    egress: Arc<Egress>,
    /// Covers the TCP connection to the proxy and its answer to CONNECT.
    timeout: Duration,
}

impl Connector {
    /// Wraps `tcp` (its own settings: timeouts, keepalive, nodelay).
    pub fn new(tcp: HttpConnector, egress: Arc<Egress>, timeout: Duration) -> Self {
        Self {
            tcp,
            egress,
            timeout,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let Some(target) = self.egress.target(&dst).cloned() else {
            let direct = self.tcp.call(dst);
            return Box::pin(async move { direct.await.map_err(Into::into) });
        };
        let mut tcp = self.tcp.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let port = dst.port_u16().unwrap_or(match dst.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let host = dst.host().unwrap_or_default().to_string();
            let fail = |kind| EgressError {
                proxy: format!("{} (from {})", target.authority(), target.from),
                target: format!("{host}:{port}"),
                kind,
            };
            let proxy_uri: Uri = target
                .url()
                .parse()
                .map_err(|e| fail(EgressFailure::Unreachable(format!("{e}"))))?;
            let io = tcp
                .call(proxy_uri)
                .await
                .map_err(|e| fail(EgressFailure::Unreachable(innermost(&e))))?;
            let mut stream = io.into_inner();
            let head = connect_request(&host, port, &target);
            let answer = tokio::time::timeout(timeout, async {
                stream.write_all(head.as_bytes()).await?;
                // Interim (1xx) answers come before the real one.
                for _ in 0..MAX_INTERIM {
                    let head = read_answer_head(&mut stream).await?;
                    if !matches!(parse_answer(&head), Ok((100..=199, _))) {
                        return Ok(head);
                    }
                }
                Err(std::io::Error::other(format!(
                    "it sent more than {MAX_INTERIM} interim (1xx) answers to CONNECT"
                )))
            })
            .await;
            match answer {
                Err(_) => Err(fail(EgressFailure::Broken(format!(
                    "no answer to CONNECT within {} (upstream.connect_timeout)",
                    humantime::format_duration(timeout)
                )))
                .into()),
                Ok(Err(e)) => Err(fail(EgressFailure::Broken(e.to_string())).into()),
                Ok(Ok(head)) => match parse_answer(&head) {
                    Ok((200..=299, _)) => Ok(TokioIo::new(stream)),
                    Ok((status, reason)) => {
                        Err(fail(EgressFailure::Refused(status, reason)).into())
                    }
                    Err(why) => Err(fail(EgressFailure::Broken(why)).into()),
                },
            }
        })
    }
}

/// The `CONNECT` request head for `host:port`.
fn connect_request(host: &str, port: u16, target: &ProxyTarget) -> String {
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ado-auth-proxy/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(c) = &target.credentials {
        let pair = format!("{}:{}", c.user, c.password.expose());
        head.push_str("Proxy-Authorization: Basic ");
        head.push_str(&base64::engine::general_purpose::STANDARD.encode(pair));
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Reads the answer head byte by byte up to its blank line, so that no
/// byte of the tunnel is taken with it.
async fn read_answer_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "it closed the connection without answering CONNECT",
            ));
        }
        head.push(byte[0]);
        // A blank line ends the head, whether lines end in CRLF or LF.
        if head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n") {
            return Ok(head);
        }
        if head.len() > MAX_ANSWER_HEAD {
            return Err(std::io::Error::other(format!(
                "its answer to CONNECT is longer than {MAX_ANSWER_HEAD} bytes"
            )));
        }
    }
}

/// The status and reason phrase of an answer head.
fn parse_answer(head: &[u8]) -> Result<(u16, String), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut answer = httparse::Response::new(&mut headers);
    match answer.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            let status = answer.code.ok_or("no status")?;
            let reason: String = answer
                .reason
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            Ok((status, reason))
        }
        Ok(httparse::Status::Partial) => Err("its answer to CONNECT is incomplete".into()),
        Err(e) => Err(format!("its answer to CONNECT is not HTTP ({e})")),
    }
}

/// The most specific message in an error's chain.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

#[cfg(test)]
mod tests;
