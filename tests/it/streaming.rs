//! Bodies stream with back-pressure: 2 GiB up and 2 GiB down pass through
//! the real binary while its peak resident memory stays under 64 MiB.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use http::Response;
use http_body_util::{BodyExt, StreamBody};

use crate::support::process::ProxyProcess;
use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{client, get};

const TOTAL: u64 = 2 * 1024 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;
const RSS_LIMIT: u64 = 64 * 1024 * 1024;

fn chunks() -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    futures_util::stream::iter(0..TOTAL / CHUNK as u64).map(move |_| Ok(chunk.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_up_and_down_with_bounded_memory() {
    let received = Arc::new(AtomicU64::new(0));
    let seen = received.clone();
    let up = FakeUpstream::raw(move |req| {
        let seen = seen.clone();
        async move {
            if req.method() == http::Method::POST {
                let mut body = req.into_body();
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.unwrap().into_data() {
                        seen.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                }
                return respond(200, &[], seen.load(Ordering::Relaxed).to_string());
            }
            let frames = chunks().map(|c| c.map(http_body::Frame::data).map_err(Into::into));
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            resp.headers_mut().insert("content-length", TOTAL.into());
            resp
        }
    })
    .await;
    let proxy = ProxyProcess::spawn(&format!("[upstream]\nurl = \"{}\"\n", up.url()), &[]);
    let base = format!("http://{}", proxy.proxy);

    let resp = client()
        .post(format!("{base}/org/proj/_git/repo/git-receive-pack"))
        .body(reqwest::Body::wrap_stream(chunks()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), TOTAL.to_string());
    assert_eq!(received.load(Ordering::Relaxed), TOTAL);

    let resp = get(format!("{base}/org/_apis/download")).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len() as u64;
    }
    assert_eq!(got, TOTAL);

    let peak = proxy.peak_rss();
    eprintln!("proxy peak RSS after 2 × 2 GiB: {} KiB", peak / 1024);
    assert!(peak < RSS_LIMIT, "peak RSS {} MiB", peak / (1024 * 1024));
}

/// A 64 MiB npm packument full of absolute Azure Artifacts URLs is
/// rewritten while it streams: every URL comes back on the proxy, and the
/// proxy's memory stays within the same bound as plain streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_packument_is_rewritten_in_bounded_memory() {
    const ENTRY: &str = r#""1.0.0":{"dist":{"tarball":"https://pkgs.dev.azure.com/contoso/_packaging/feed/npm/registry/big/-/big-1.0.0.tgz"}},"#;
    const SIZE: usize = 64 * 1024 * 1024;
    // Chunks that cut entries (and URLs) at arbitrary places.
    let chunk = Bytes::from(ENTRY.repeat(CHUNK / ENTRY.len() + 1)[..CHUNK].to_string());
    let entries = (SIZE / CHUNK) * chunk.matches_count(ENTRY);
    let up = FakeUpstream::raw(move |_req| {
        let chunk = chunk.clone();
        async move {
            let frames = futures_util::stream::iter(0..SIZE / CHUNK)
                .map(move |_| Ok::<_, std::io::Error>(http_body::Frame::data(chunk.clone())));
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(
                frames.map(|f| f.map_err(Into::into)),
            )));
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp.headers_mut().insert("content-length", SIZE.into());
            resp
        }
    })
    .await;
    let proxy = ProxyProcess::spawn(
        &format!(
            "[upstream]\nurl = \"{0}\"\n[upstream.hosts]\npkgs = \"{0}\"\n",
            up.url()
        ),
        &[],
    );
    let resp = get(format!(
        "http://{}/.hosts/pkgs/contoso/_packaging/feed/npm/registry/big",
        proxy.proxy
    ))
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    let mut stream = resp.bytes_stream();
    let (mut rewritten, mut escaped, mut total) = (0usize, 0usize, 0usize);
    let mut tail = Vec::new();
    let public = format!("http://{}/.hosts/pkgs/contoso/_packaging/", proxy.proxy);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len();
        // Count across chunk boundaries with a small overlap.
        tail.extend_from_slice(&chunk);
        let text = String::from_utf8_lossy(&tail).into_owned();
        let keep = text.rfind("\"1.0.0\"").unwrap_or(0);
        let (done, _) = text.split_at(keep);
        rewritten += done.matches(public.as_str()).count();
        escaped += done.matches("pkgs.dev.azure.com").count();
        tail = tail[done.len()..].to_vec();
    }
    let text = String::from_utf8_lossy(&tail);
    rewritten += text.matches(public.as_str()).count();
    escaped += text.matches("pkgs.dev.azure.com").count();
    assert_eq!(escaped, 0, "no URL left pointing around the proxy");
    assert_eq!(rewritten, entries, "every tarball URL is the proxy's");
    assert!(total > SIZE, "{total}");
    let peak = proxy.peak_rss();
    eprintln!(
        "proxy peak RSS after a 64 MiB packument: {} KiB",
        peak / 1024
    );
    assert!(peak < RSS_LIMIT, "peak RSS {} MiB", peak / (1024 * 1024));
}

trait MatchesCount {
    fn matches_count(&self, needle: &str) -> usize;
}

impl MatchesCount for Bytes {
    fn matches_count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(self).matches(needle).count()
    }
}
