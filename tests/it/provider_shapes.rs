//! Identity-provider refusals that are not Entra's clean JSON: only the
//! description line (as a gateway logged it), JSON cut off mid-way, the
//! provider's body quoted inside an intermediary's JSON, an HTML page
//! quoting the code, a form-encoded error. The AADSTS code they carry
//! decides the answer on every path that asks for tokens, whatever the
//! status; a body with nothing to read stays a temporary failure.

use std::time::Duration;

use crate::provider_codes::{ask, service_proxy};
use crate::support::fake_idp::{FakeIdp, Mode, Setup};
use crate::support::{PROJECTS, metrics};

const TRACE: &str = "0000aaaa-11bb-cccc-dd33-eeeeee333333";

/// Only the description, flattened by whoever relayed it, with a 500.
const SECRET_EXPIRED_LINE: &str = "AADSTS7000222: The provided client secret keys for app '4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a' are expired. Visit the Azure portal to create new keys for your app.\r\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-11-22 04:00:00Z";

/// JSON cut off in the middle of the description.
const FEDERATION_CUT: &str = r#"{"error":"invalid_request","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:tools:ado-auth-proxy'. Please check your federated identity credential Subject, Audience and Issu"#;

/// The provider's body quoted by an intermediary (microsoft/Agents#202's
/// shape).
const FEDERATION_WRAPPED: &str = r#"{"message":"Failed to acquire token","statusCode":401,"responseBody":"{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7002137: No matching federated identity record found for presented assertion subject 'system:serviceaccount:tools:ado-auth-proxy'. Trace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333 Correlation ID: aaaa0000-bb11-2222-33cc-444444dddddd\",\"error_codes\":[7002137]}"}"#;

/// A gateway's error page quoting the code.
const DEVICE_HTML: &str = "<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1><p>Upstream said: AADSTS50097: Device authentication is required.</p></body></html>";

/// Form-encoded, as a redirect's query pasted into a body.
const PERMISSION_FORM: &str = "error=invalid_client&error_description=AADSTS650057%3A+Invalid+resource.+The+client+has+requested+access+to+a+resource+which+is+not+listed+in+the+requested+permissions+in+the+client%27s+application+registration.";

/// On the service path, each shape is explained as its code's catalog
/// entry: 502 without `Retry-After`; a body with no code stays 503.
#[tokio::test]
async fn a_service_reads_the_code_in_any_shape_of_refusal() {
    let shapes: &[(u16, &str, Option<&str>, &str)] = &[
        (
            500,
            SECRET_EXPIRED_LINE,
            Some("AADSTS7000222"),
            "client-credential-invalid",
        ),
        (
            400,
            FEDERATION_CUT,
            Some("AADSTS700213"),
            "federated-credential-mismatch",
        ),
        (
            401,
            FEDERATION_WRAPPED,
            Some("AADSTS7002137"),
            "federated-credential-mismatch",
        ),
        (
            403,
            DEVICE_HTML,
            Some("AADSTS50097"),
            "service-device-required",
        ),
        (
            400,
            PERMISSION_FORM,
            Some("AADSTS650057"),
            "azure-devops-permission-missing",
        ),
        (
            502,
            "<html><body>Bad Gateway</body></html>",
            None,
            "service-token-unavailable",
        ),
        (503, "AADSTS: overloaded", None, "service-token-unavailable"),
    ];
    for (status, body, code, id) in shapes {
        let idp = FakeIdp::start(Duration::from_secs(3600)).await;
        idp.set_mode(Mode::Raw(*status, body));
        let (p, ado) = service_proxy(&idp).await;
        let resp = ask(&p, PROJECTS, &[("accept", "application/problem+json")]).await;
        let got = resp.status().as_u16();
        let retry = resp.headers().contains_key("retry-after");
        let v: serde_json::Value = resp.json().await.unwrap();
        let ctx = format!("{status} {body}: {v}");
        assert_eq!(
            v["type"],
            format!("urn:ado-auth-proxy:problem:{id}"),
            "{ctx}"
        );
        match code {
            Some(code) => {
                assert_eq!(got, 502, "a code the catalog explains is final: {ctx}");
                assert!(!retry, "{ctx}");
                assert!(v["detail"].as_str().unwrap().contains(code), "{ctx}");
                let me: serde_json::Value = ask(&p, "/.auth/me", &[]).await.json().await.unwrap();
                assert_eq!(me["lastFailure"]["code"], *code, "{me}");
                assert_eq!(me["lastFailure"]["diagnosis"], *id, "{me}");
                assert_eq!(me["lastFailure"]["retryable"], false, "{me}");
            }
            None => {
                assert_eq!(got, 503, "nothing to read: try again: {ctx}");
                assert!(retry, "{ctx}");
            }
        }
        if body.contains(TRACE) {
            assert!(v.to_string().contains(TRACE), "the trace id is kept: {ctx}");
        }
        assert!(ado.requests().is_empty());
        p.shutdown();
        p.wait().await;
    }
}

/// The sign-in callback explains a code that came in plain text with a
/// 500: a user's code is the user's to fix (400, as the same code in
/// JSON), the proxy's own credential's code a 502.
#[tokio::test]
async fn the_sign_in_callback_reads_a_plain_text_refusal() {
    let s = Setup::start(Duration::from_secs(3600), |_, _| {}).await;
    for (body, status, title) in [
        (
            "AADSTS530003: Your device is required to be managed to access this resource.\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333",
            400,
            "This sign-in needs a registered or compliant device",
        ),
        (
            SECRET_EXPIRED_LINE,
            502,
            "The proxy&#39;s client secret or certificate is wrong or expired",
        ),
    ] {
        s.idp.set_mode(Mode::Raw(500, body));
        let (_, resp) = s.sign_in().await;
        assert_eq!(resp.status(), status, "{body}");
        let html = resp.text().await.unwrap();
        assert!(html.contains(title), "{html}");
        assert!(html.contains(TRACE), "{html}");
    }
}

/// `GET` of the projects list as a program, with the browser's session.
async fn projects(s: &Setup, b: &crate::support::oidc::Browser) -> reqwest::Response {
    b.http
        .get(format!("{}{PROJECTS}", s.url))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

/// A user's refresh answered with a 500 whose text says the grant was
/// revoked ends the session (sign in again), once, instead of backing
/// off as if the provider were down.
#[tokio::test]
async fn a_refresh_refused_in_plain_text_ends_the_session_once() {
    let s = Setup::start(Duration::from_secs(3), |c, _| {
        c.auth.refresh_before = Duration::from_secs(1);
    })
    .await;
    let b = s.signed_in().await;
    let api = || projects(&s, &b);
    assert_eq!(api().await.status(), 200);
    s.idp.set_mode(Mode::Raw(
        500,
        "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed.",
    ));
    s.advance(Duration::from_millis(2200));
    assert_eq!(api().await.status(), 401);
    assert_eq!(api().await.status(), 401);
    assert_eq!(s.idp.calls("refresh_token"), 1);
    let m = metrics(s.proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_token_refreshes_total{outcome=\"relogin\"} 1"),
        "{m}"
    );
}

/// A gateway, firewall or API manager in front of the token endpoint
/// that refuses for a moment with its own error object is no provider's
/// refusal: the session is kept (a temporary failure), and works again
/// when the gateway lets the refresh through.
#[tokio::test]
async fn a_gateways_own_refusal_of_a_refresh_keeps_the_session() {
    let s = Setup::start(Duration::from_secs(3), |c, _| {
        c.auth.refresh_before = Duration::from_secs(1);
    })
    .await;
    let b = s.signed_in().await;
    let api = || projects(&s, &b);
    for (i, (status, body)) in [
        (
            403,
            r#"{"error":{"code":"Forbidden","message":"The request was blocked by the web application firewall."}}"#,
        ),
        (
            401,
            r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key."}}"#,
        ),
        (
            403,
            r#"<html><script>window.cfg={"error": "request_blocked"}</script></html>"#,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        s.idp.set_mode(Mode::Raw(status, body));
        s.advance(Duration::from_millis(3200));
        let resp = api().await;
        assert_eq!(resp.status(), 503, "{body}");
        assert!(resp.headers().contains_key("retry-after"), "{body}");
        // Each body reached the proxy: the backoff had run out.
        assert_eq!(s.idp.calls("refresh_token"), i as u64 + 1, "{body}");
    }
    let m = metrics(s.proxy.admin_addr).await;
    assert_eq!(
        crate::support::metric_value(&m, "ado_proxy_token_refreshes_total{outcome=\"relogin\"}"),
        0.0,
        "{m}"
    );
    s.idp.set_mode(Mode::Normal);
    s.advance(Duration::from_secs(61));
    assert_eq!(
        api().await.status(),
        200,
        "the same session, no new sign-in"
    );
    assert_eq!(s.idp.calls("authorization_code"), 1);
}
