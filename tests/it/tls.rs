//! TLS on both sides: the listener offers h2 and http/1.1 by ALPN, and the
//! upstream client speaks HTTP/2 when the upstream offers it, trusting
//! `upstream.ca_file`.

use http::Version;

use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, install_crypto, self_signed};

fn client_trusting(cert: &std::path::Path, http1_only: bool) -> reqwest::Client {
    install_crypto();
    let pem = std::fs::read(cert).unwrap();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .no_proxy();
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn the_listener_speaks_tls_with_h2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = self_signed(dir.path());
    let up = FakeUpstream::recording(|_| respond(200, &[], "hello")).await;
    let mut config = support::config(&up.url());
    config.listen.tls_cert_file = Some(cert);
    config.listen.tls_key_file = Some(key);
    let proxy = support::start(config).await;
    assert_eq!(proxy.public_url.scheme(), "https");
    let url = format!("https://localhost:{}/org/_apis/x", proxy.proxy_addr.port());

    let h2 = client_trusting(&ca, false).get(&url).send().await.unwrap();
    assert_eq!(h2.version(), Version::HTTP_2);
    assert_eq!(h2.text().await.unwrap(), "hello");
    let h1 = client_trusting(&ca, true).get(&url).send().await.unwrap();
    assert_eq!(h1.version(), Version::HTTP_11);
    assert_eq!(h1.text().await.unwrap(), "hello");

    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.headers["x-forwarded-proto"], "https");
        assert_eq!(
            r.version,
            Version::HTTP_11,
            "a plain-HTTP upstream gets HTTP/1.1"
        );
        assert_eq!(r.uri, "/org/_apis/x");
    }
    // The h2 request's :authority became X-Forwarded-Host.
    assert_eq!(
        seen[0].headers["x-forwarded-host"],
        format!("localhost:{}", proxy.proxy_addr.port()).as_str()
    );
}

#[tokio::test]
async fn a_tls_upstream_gets_http2_and_its_ca_must_be_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = self_signed(dir.path());
    let up = FakeUpstream::recording_tls(
        |_| respond(200, &[], "over h2"),
        Some(support::server_tls(&cert, &key)),
    )
    .await;
    let upstream_url = format!("https://localhost:{}", up.addr.port());

    // Without the CA the certificate is refused, and the 502 says why.
    let untrusting = support::start(support::config(&upstream_url)).await;
    let resp = support::get_problem(format!("http://{}/org/_apis/x", untrusting.proxy_addr)).await;
    assert_eq!(resp.status(), 502);
    let detail = resp.json::<serde_json::Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.to_lowercase().contains("certificate"), "{detail}");
    assert!(up.requests().is_empty());

    let mut config = support::config(&upstream_url);
    config.upstream.ca_file = Some(ca);
    let proxy = support::start(config).await;
    let resp = support::client()
        .post(format!("http://{}/org/_apis/x?y=1", proxy.proxy_addr))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "over h2");
    let got = up.single();
    assert_eq!(got.version, Version::HTTP_2);
    assert_eq!(got.uri, "/org/_apis/x?y=1");
    assert_eq!(got.body, "data");
    assert_eq!(got.headers["x-tfs-fedauthredirect"], "Suppress");
}
