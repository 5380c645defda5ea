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
