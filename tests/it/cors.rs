//! CORS for single-page apps (`listen.cors_allowed_origins`), with headless
//! Chromium: a page of an allowed origin makes a credentialed PATCH (with
//! a preflight the proxy answers itself); a page of another origin is
//! refused before anything reaches Azure DevOps.

use std::path::PathBuf;
use std::time::Duration;

use ado_auth_proxy::config::{AuthMode, Secret};

use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, raw_http};

fn peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

async fn spa() -> FakeUpstream {
    FakeUpstream::recording(|_| {
        respond(
            200,
            &[("content-type", "text/html")],
            "<!DOCTYPE html><title>dashboard</title><body>dashboard</body>",
        )
    })
    .await
}

async fn fetch_from(page: &str, target: &str) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(peers().join("cors_fetch.mjs"))
        .env("PAGE_URL", page)
        .env("TARGET", target);
    support::run_peer(cmd, Duration::from_secs(60)).await
}

#[tokio::test]
async fn an_allowed_single_page_app_calls_through_the_proxy_and_others_cannot() {
    let ado = FakeUpstream::recording(|r| {
        respond(
            200,
            &[
                ("content-type", "application/json"),
                ("access-control-allow-origin", "https://dev.azure.com"),
            ],
            format!(r#"{{"method":"{}"}}"#, r.method),
        )
    })
    .await;
    let (app, other) = (spa().await, spa().await);
    let mut c = support::config(&ado.url());
    c.auth.mode = AuthMode::Pat;
    c.auth.pat = Some(Secret::new("a-personal-access-token"));
    c.listen.cors_allowed_origins = vec![app.url()];
    let proxy = support::start(c).await;
    let target = format!(
        "http://{}/contoso/_apis/projects/p?api-version=7.1",
        proxy.proxy_addr
    );

    let v = fetch_from(&format!("{}/", app.url()), &target).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"], r#"{"method":"PATCH"}"#);
    assert!(v["requestId"].is_string(), "X-Request-Id is exposed: {v}");
    let seen = ado.requests();
    assert_eq!(seen.len(), 1, "the preflight was answered by the proxy");
    assert_eq!(seen[0].method, "PATCH");
    assert_eq!(
        seen[0].headers["authorization"],
        "Basic OmEtcGVyc29uYWwtYWNjZXNzLXRva2Vu"
    );

    let v = fetch_from(&format!("{}/", other.url()), &target).await;
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("Failed to fetch"),
        "{v}"
    );
    assert_eq!(
        ado.requests().len(),
        1,
        "nothing of the other origin went upstream"
    );

    // Over a raw socket: the other origin's preflight is refused with the
    // reason, and carries no CORS grant.
    let refused = raw_http(
        proxy.proxy_addr,
        &format!(
            "OPTIONS /contoso/_apis/projects HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {}\r\n\
             Access-Control-Request-Method: DELETE\r\nConnection: close\r\n\r\n",
            other.url()
        ),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(
        !refused
            .to_ascii_lowercase()
            .contains("access-control-allow"),
        "{refused}"
    );
    // The allowed origin's preflight, as the proxy answers it.
    let preflight = raw_http(
        proxy.proxy_addr,
        &format!(
            "OPTIONS /contoso/_apis/projects HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {}\r\n\
             Access-Control-Request-Method: PATCH\r\nAccess-Control-Request-Headers: content-type\r\n\
             Connection: close\r\n\r\n",
            app.url()
        ),
    )
    .await
    .to_ascii_lowercase();
    assert!(preflight.starts_with("http/1.1 204"), "{preflight}");
    for line in [
        "access-control-allow-methods: patch",
        "access-control-allow-headers: content-type",
        "access-control-allow-credentials: true",
        "access-control-max-age: 600",
    ] {
        assert!(preflight.contains(line), "{line}: {preflight}");
    }
    assert_eq!(ado.requests().len(), 1, "preflights never go upstream");
    // The allowed origin's refusals are readable by it, too.
    let allowed_404 = raw_http(
        proxy.proxy_addr,
        &format!(
            "GET /.hosts/nope/x HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {}\r\nConnection: close\r\n\r\n",
            app.url()
        ),
    )
    .await;
    assert!(allowed_404.starts_with("HTTP/1.1 404"), "{allowed_404}");
    assert!(
        allowed_404
            .to_ascii_lowercase()
            .contains(&format!("access-control-allow-origin: {}", app.url())),
        "{allowed_404}"
    );
}
