//! The security review's attacks, tried over raw sockets (a client
//! library would clean the request up first) against the in-process
//! proxy: what must be refused before any credential is attached.

use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, raw_http};

/// A PAT-mode proxy (the credential an attacker wants) with an
/// organization allowlist.
async fn pat_proxy(
    up: &FakeUpstream,
    edit: impl FnOnce(&mut ado_auth_proxy::config::Config),
) -> (ado_auth_proxy::app::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pat = dir.path().join("pat");
    std::fs::write(&pat, "the-proxy-pat-0123456789\n").unwrap();
    let mut c = support::config(&up.url());
    c.auth.mode = ado_auth_proxy::config::AuthMode::Pat;
    c.auth.pat_file = Some(pat);
    c.upstream.allowed_organizations = vec!["contoso".into()];
    edit(&mut c);
    (support::start(c).await, dir)
}

fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {resp:?}"))
}

#[tokio::test]
async fn dot_segments_and_encoded_separators_never_leave_the_organization() {
    let up = FakeUpstream::recording(|_| respond(200, &[], "{}")).await;
    let (proxy, _dir) = pat_proxy(&up, |_| {}).await;
    for path in [
        "/contoso/../fabrikam/_apis/projects",
        "/contoso/%2e%2e/fabrikam/_apis/projects",
        "/contoso/.%2E/fabrikam/_apis/projects",
        "/contoso/..%2ffabrikam/_apis/projects",
        "/contoso/..%5cfabrikam/_apis/projects",
        "/contoso\\..\\fabrikam/_apis/projects",
        "/contoso/_apis/../../fabrikam/_apis/projects",
        "/contoso/%252e%252e/fabrikam/_apis/projects",
        "/contoso/%u002e%u002e/fabrikam/_apis/projects",
        "/contoso/%c0%ae%c0%ae/fabrikam/_apis/projects",
        "/contoso%2f..%2ffabrikam/_apis/projects",
        "/.hosts/vsrm/contoso/../../x",
        "/.hosts/vsrm/contoso/%2e%2e/fabrikam/_apis/x",
    ] {
        let resp = raw_http(
            proxy.proxy_addr,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let status = status_of(&resp);
        assert!(status == 400, "{path}: {status}\n{resp}");
        if resp.contains("application/problem+json") {
            assert!(resp.contains("bad-path"), "{path}: {resp}");
            assert!(
                resp.contains("does not forward this path"),
                "{path}: {resp}"
            );
        }
    }
    assert!(
        up.requests().is_empty(),
        "forwarded: {:?}",
        up.requests().iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    // The organization itself still works, and so does an encoded slash
    // that is data (an npm scoped package).
    for path in [
        "/contoso/_apis/projects",
        "/contoso/_packaging/f/npm/registry/@scope%2fname",
    ] {
        let resp = raw_http(
            proxy.proxy_addr,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status_of(&resp), 200, "{path}: {resp}");
    }
    let sent: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        sent,
        [
            "/contoso/_apis/projects",
            "/contoso/_packaging/f/npm/registry/@scope%2fname"
        ]
    );
    let m = support::metrics(proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_requests_refused_total{reason=\"bad_path\"} 13"),
        "{m}"
    );
}
