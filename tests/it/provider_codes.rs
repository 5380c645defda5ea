//! Every AADSTS code the catalog explains, replayed from a fake Entra in
//! the shape of its real refusals (`error`, `error_description` with
//! Trace/Correlation/Timestamp lines, `error_codes`, `suberror`), on
//! both paths the proxy asks for tokens: a browser sign-in's callback,
//! and a service identity's token call, whose answer the programs
//! calling a service-mode proxy read. What each path answers is compared
//! with `tests/golden/provider-codes/{sign-in,service}.txt`
//! (`UPDATE_GOLDEN=1` rewrites them).

use std::path::PathBuf;
use std::time::Duration;

use ado_auth_proxy::app::Running;

use crate::support::fake_idp::{self, CLIENT_SECRET, FakeIdp, Mode, Refusal};
use crate::support::{self, PROJECTS, metrics};

const fn r(
    status: u16,
    error: &'static str,
    code: u64,
    text: &'static str,
    suberror: Option<&'static str>,
) -> Refusal {
    Refusal {
        status,
        error,
        code,
        text,
        suberror,
    }
}

/// One refusal per code the catalog explains, with the `error`, status
/// and `suberror` Entra sends with it (Microsoft's error-code reference
/// and answers users posted).
pub const REPLAYS: &[Refusal] = &[
    r(
        400,
        "invalid_grant",
        54005,
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        None,
    ),
    r(
        400,
        "access_denied",
        65004,
        "User declined to consent to access the app.",
        None,
    ),
    r(
        400,
        "invalid_grant",
        65001,
        "The user or administrator has not consented to use the application with ID '4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a' named 'ado-auth-proxy'. Send an interactive authorization request for this user and resource.",
        Some("consent_required"),
    ),
    r(
        400,
        "invalid_grant",
        90094,
        "The grant requires admin permission.",
        Some("consent_required"),
    ),
    r(
        400,
        "invalid_grant",
        90095,
        "Admin consent is required for the permissions requested by this application. An admin consent request may be sent to the admin.",
        Some("consent_required"),
    ),
    r(
        400,
        "invalid_grant",
        50076,
        "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '499b84ac-1321-427f-aa17-267ca6975798'.",
        Some("basic_action"),
    ),
    r(
        400,
        "interaction_required",
        50079,
        "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '499b84ac-1321-427f-aa17-267ca6975798'.",
        Some("basic_action"),
    ),
    r(
        400,
        "interaction_required",
        50074,
        "Strong Authentication is required.",
        None,
    ),
    r(
        400,
        "interaction_required",
        50158,
        "External security challenge not satisfied.",
        None,
    ),
    r(
        400,
        "interaction_required",
        53000,
        "Device is not in required device state: compliant. Conditional Access policy requires a compliant device, and the device is not compliant. The user must enroll their device with an approved MDM provider like Intune.",
        None,
    ),
    r(
        400,
        "interaction_required",
        50097,
        "Device authentication is required.",
        Some("device_authentication_failed"),
    ),
    r(
        400,
        "invalid_grant",
        50155,
        "Device authentication failed for this user.",
        None,
    ),
    r(
        400,
        "invalid_grant",
        530003,
        "Your device is required to be managed to access this resource.",
        None,
    ),
    r(
        400,
        "interaction_required",
        53001,
        "Device is not in required device state: domain_joined.",
        None,
    ),
    r(
        400,
        "interaction_required",
        53002,
        "Application used is not an approved application for Conditional Access.",
        None,
    ),
    r(
        400,
        "interaction_required",
        53003,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        Some("message_only"),
    ),
    r(
        400,
        "interaction_required",
        530032,
        "User blocked due to a security policy of the tenant.",
        Some("message_only"),
    ),
    r(
        400,
        "unauthorized_client",
        700016,
        "Application with identifier '4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
        None,
    ),
    r(
        400,
        "invalid_request",
        70021,
        "No matching federated identity record found for presented assertion. Assertion Issuer: 'https://oidc.prod-aks.azure.com/0000aaaa-11bb-cccc-dd33-eeeeee333333/'. Assertion Subject: 'system:serviceaccount:tools:ado-auth-proxy'. Assertion Audience: 'api://AzureADTokenExchange'.",
        None,
    ),
    r(
        400,
        "invalid_request",
        700211,
        "No matching federated identity record found for presented assertion issuer 'https://oidc.prod-aks.azure.com/0000aaaa-11bb-cccc-dd33-eeeeee333333/'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
        None,
    ),
    r(
        400,
        "invalid_request",
        700213,
        "No matching federated identity record found for presented assertion subject 'system:serviceaccount:tools:ado-auth-proxy'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
        None,
    ),
    r(
        401,
        "invalid_client",
        7002137,
        "No matching federated identity record found for presented assertion subject 'system:serviceaccount:tools:ado-auth-proxy'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
        None,
    ),
    r(
        400,
        "invalid_request",
        7002138,
        "No matching federated identity record found for presented assertion subject 'system:serviceaccount:Tools:ado-auth-proxy'. The subject matches with case-insensitive comparison, but not with case-sensitive comparison. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
        None,
    ),
    r(
        400,
        "invalid_client",
        700024,
        "Client assertion is not within its valid time range. Current time: 2026-11-22T04:00:00.0000000Z, assertion valid from 2026-11-21T02:00:00.0000000Z, expiry time of assertion 2026-11-21T03:00:00.0000000Z.",
        None,
    ),
    r(
        401,
        "invalid_client",
        700027,
        "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '7A3F9C0E5B2D4816A9C3E7F1D0B5A8C2E4F6D1B3']",
        None,
    ),
    r(
        400,
        "invalid_scope",
        70011,
        "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope https://dev.azure.com/user_impersonation is not valid.",
        None,
    ),
    r(
        400,
        "invalid_client",
        650057,
        "Invalid resource. The client has requested access to a resource which is not listed in the requested permissions in the client's application registration. Client app ID: 4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a(ado-auth-proxy). Resource value from request: 499b84ac-1321-427f-aa17-267ca6975798. Resource app ID: 499b84ac-1321-427f-aa17-267ca6975798.",
        None,
    ),
    r(
        400,
        "invalid_resource",
        500011,
        "The resource principal named 499b84ac-1321-427f-aa17-267ca6975798 was not found in the tenant named Contoso. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
        None,
    ),
    r(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a'.",
        None,
    ),
    r(
        401,
        "invalid_client",
        7000222,
        "The provided client secret keys for app '4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a' are expired. Visit the Azure portal to create new keys for your app.",
        None,
    ),
    r(
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        None,
    ),
    r(
        400,
        "invalid_request",
        50011,
        "The redirect URI specified in the request does not match the redirect URIs configured for the application '4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a'.",
        None,
    ),
    r(
        400,
        "invalid_request",
        50020,
        "User account 'ann@fabrikam.com' from identity provider 'live.com' does not exist in tenant 'Contoso' and cannot access the application '4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a'(ado-auth-proxy) in that tenant.",
        None,
    ),
    r(
        400,
        "invalid_grant",
        90072,
        "User account 'ann@fabrikam.com' from identity provider 'https://sts.windows.net/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0/' does not exist in tenant 'Contoso' and cannot access the application.",
        None,
    ),
    r(
        400,
        "invalid_grant",
        50105,
        "Your administrator has configured the application ado-auth-proxy ('4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a') to block users unless they are specifically granted ('assigned') access to the application.",
        None,
    ),
    r(
        400,
        "invalid_grant",
        70008,
        "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        None,
    ),
    r(
        400,
        "invalid_grant",
        700082,
        "The refresh token has expired due to inactivity. The token was issued on 2026-08-01T00:00:00Z and was inactive for 90.00:00:00.",
        Some("bad_token"),
    ),
    r(
        400,
        "invalid_grant",
        50173,
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
        Some("bad_token"),
    ),
    r(
        400,
        "invalid_grant",
        70043,
        "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access.",
        Some("bad_token"),
    ),
];

const TRACE: &str = "0000aaaa-11bb-cccc-dd33-eeeeee333333";
const CORRELATION: &str = "aaaa0000-bb11-2222-33cc-444444dddddd";

#[test]
fn every_code_the_catalog_explains_is_replayed() {
    let mut replayed: Vec<u64> = REPLAYS.iter().map(|r| r.code).collect();
    let mut known: Vec<u64> = ado_auth_proxy::diagnose::CODES
        .iter()
        .map(|c| c.number)
        .collect();
    replayed.sort_unstable();
    known.sort_unstable();
    assert_eq!(replayed, known);
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/golden/provider-codes/{name}"));
    crate::support::golden(&path, actual);
}

/// A service-mode proxy (client credentials with a secret) in front of
/// `idp`'s fake Azure DevOps.
pub(crate) async fn service_proxy(
    idp: &FakeIdp,
) -> (Running, crate::support::upstream::FakeUpstream) {
    let ado = fake_idp::fake_ado(idp).await;
    let mut c = fake_idp::service_config(&ado.url(), idp, CLIENT_SECRET);
    c.auth.provider_timeout = Duration::from_secs(2);
    (support::start_with(c, idp.clock()).await, ado)
}

pub(crate) async fn ask(p: &Running, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = support::client().get(format!("http://{}{path}", p.proxy_addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// The parts of an answer that change from run to run.
fn steady(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("Failing since ") {
            Some(i) => format!("{}Failing since <time>, request id <id>", &l[..i]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// On the service path, each code reaches the programs calling the
/// proxy with the code, the provider's words, the catalog's cause, who
/// fixes it, the trace and correlation ids, and `Retry-After` only when
/// waiting can help; in all four client languages, never with the
/// secret.
#[tokio::test]
async fn each_code_reaches_a_service_modes_callers_with_cause_and_fix() {
    let mut all = String::new();
    for replay in REPLAYS {
        let idp = FakeIdp::start(Duration::from_secs(3600)).await;
        idp.set_mode(Mode::Refuse(*replay));
        let (p, ado) = service_proxy(&idp).await;
        let code = format!("AADSTS{}", replay.code);
        for (form, path, headers) in crate::diagnose::CLIENTS {
            let resp = ask(&p, path, headers).await;
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").is_some();
            let body = resp.text().await.unwrap();
            let ctx = format!("{code} {form}: {body}");
            assert!(body.contains(&code), "quotes the code: {ctx}");
            assert!(
                body.contains(TRACE) && body.contains(CORRELATION),
                "ids: {ctx}"
            );
            assert!(!body.contains(CLIENT_SECRET), "no secret: {ctx}");
            assert_eq!(status, 502, "no retry helps without a fix: {ctx}");
            assert!(!retry, "no Retry-After: {ctx}");
            match *form {
                "git.txt" => {
                    all.push_str(&format!(
                        "== {code} ({} {})\n{status}\n{}\n",
                        replay.status,
                        replay.error,
                        steady(&body)
                    ));
                }
                "json" => {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let proxy = &v["adoAuthProxy"];
                    assert!(
                        v["message"].as_str().unwrap().contains("[ado-auth-proxy]"),
                        "{ctx}"
                    );
                    assert_eq!(proxy["correlation"]["Trace ID"], TRACE, "{ctx}");
                    assert!(
                        proxy["fixer"].is_string() && proxy["adminRemedy"].is_string(),
                        "{ctx}"
                    );
                }
                "problem.json" => {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert!(
                        v["type"]
                            .as_str()
                            .unwrap()
                            .starts_with("urn:ado-auth-proxy:problem:"),
                        "{ctx}"
                    );
                    assert_eq!(v["status"], 502, "{ctx}");
                }
                _ => assert!(body.contains("What an administrator can do"), "{ctx}"),
            }
        }
        assert!(ado.requests().is_empty(), "nothing reaches Azure DevOps");
    }
    golden("service.txt", &all);
}

/// On the sign-in path (the callback's code redemption), each code is
/// explained to the person at the browser.
#[tokio::test]
async fn each_code_is_explained_at_the_sign_in_callback() {
    let s = fake_idp::Setup::start(Duration::from_secs(3600), |_, _| {}).await;
    let mut all = String::new();
    for replay in REPLAYS {
        s.idp.set_mode(Mode::Refuse(*replay));
        let (_, resp) = s.sign_in().await;
        let status = resp.status().as_u16();
        let html = resp.text().await.unwrap();
        let code = format!("AADSTS{}", replay.code);
        assert!(html.contains(&code), "{code}: {html}");
        assert!(
            html.contains(TRACE) && html.contains(CORRELATION),
            "{code}: {html}"
        );
        let title = html
            .split("<h1>")
            .nth(1)
            .and_then(|t| t.split("</h1>").next())
            .unwrap_or_default()
            .replace("&#39;", "'");
        all.push_str(&format!(
            "{code} ({} {}): {status} {title}\n",
            replay.status, replay.error
        ));
    }
    golden("sign-in.txt", &all);
}

/// The five refusals users posted (MFA on refresh, consent, an invalid
/// secret, an unknown app, Conditional Access) as a service-mode caller,
/// `/.auth/me` and the metrics see them; the metric's series follows the
/// current code and goes when a token is acquired again.
#[tokio::test]
async fn the_last_failure_is_in_auth_me_and_the_metrics_until_a_token_comes() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let secret = REPLAYS.iter().find(|r| r.code == 7000215).unwrap();
    idp.set_mode(Mode::Refuse(*secret));
    let (p, _ado) = service_proxy(&idp).await;
    assert_eq!(ask(&p, PROJECTS, &[]).await.status(), 502);
    let me: serde_json::Value = ask(&p, "/.auth/me", &[]).await.json().await.unwrap();
    let f = &me["lastFailure"];
    assert_eq!(f["code"], "AADSTS7000215", "{me}");
    assert_eq!(f["diagnosis"], "client-credential-invalid", "{me}");
    assert_eq!(f["fixer"], "operator", "{me}");
    assert_eq!(f["retryable"], false, "{me}");
    assert_eq!(f["ids"]["Correlation ID"], CORRELATION, "{me}");
    assert!(f["since"].as_str().unwrap().ends_with('Z'), "{me}");
    assert!(!me.to_string().contains(CLIENT_SECRET));
    let series = "ado_proxy_service_token_failing_since_timestamp_seconds{code=\"AADSTS7000215\",retryable=\"false\"}";
    let m = metrics(p.admin_addr).await;
    assert!(support::metric_value(&m, series) > 1.7e9, "{m}");

    // The provider goes down: 503 with Retry-After, the code changes.
    idp.set_mode(Mode::Down);
    let moved = async {
        for _ in 0..200 {
            idp.clock().advance(Duration::from_secs(61));
            tokio::time::sleep(Duration::from_millis(20)).await;
            let m = metrics(p.admin_addr).await;
            if m.contains("code=\"aadsts-other\",retryable=\"true\"") {
                return m;
            }
        }
        panic!("the failure's code did not change");
    }
    .await;
    assert!(
        !moved.contains("code=\"AADSTS7000215\""),
        "one series at a time: {moved}"
    );
    let resp = ask(&p, PROJECTS, &[("accept", "application/problem+json")]).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("AADSTS90033"), "{v}");
    assert_eq!(
        v["type"], "urn:ado-auth-proxy:problem:service-provider-busy",
        "{v}"
    );

    // A token again: no series, no lastFailure.
    idp.set_mode(Mode::Normal);
    let mut recovered = false;
    for _ in 0..200 {
        idp.clock().advance(Duration::from_secs(61));
        tokio::time::sleep(Duration::from_millis(20)).await;
        if ask(&p, PROJECTS, &[]).await.status() == 200 {
            recovered = true;
            break;
        }
    }
    assert!(recovered);
    let m = metrics(p.admin_addr).await;
    assert!(
        !m.contains("ado_proxy_service_token_failing_since_timestamp_seconds{"),
        "{m}"
    );
    let me: serde_json::Value = ask(&p, "/.auth/me", &[]).await.json().await.unwrap();
    assert!(me["lastFailure"].is_null(), "{me}");
}
