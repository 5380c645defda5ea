//! Mode `service`: one fixed identity for every caller. Client
//! credentials (secret and certificate, checked by the fake Entra), Azure
//! Workload Identity with the token file rotated mid-test, managed
//! identity through fake IMDS and App Service endpoints, background
//! refresh that no request waits for, and the refusal of callers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ado_auth_proxy::app::Running;
use ado_auth_proxy::config::{AuthMode, Config, Secret, ServiceSource};
use url::Url;

use crate::support::fake_idp::{self, CAE_CLAIMS, CLIENT_ID, CLIENT_SECRET, FakeIdp, Mode, TENANT};
use crate::support::upstream::{FakeUpstream, Recorded, respond};
use crate::support::{self, PROJECTS, metric_value, metrics};

fn service(c: &mut Config, idp: &FakeIdp, source: ServiceSource) {
    c.auth.mode = AuthMode::Service;
    c.auth.source = Some(source);
    c.auth.provider = None;
    c.auth.tenant = Some(TENANT.into());
    c.auth.client_id = Some(CLIENT_ID.into());
    c.auth.client_secret = None;
    c.auth.authority_host = Some(Url::parse(&idp.url()).unwrap());
}

async fn get(p: &Running, path: &str) -> reqwest::Response {
    support::client()
        .get(format!("http://{}{path}", p.proxy_addr))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

async fn me(p: &Running) -> serde_json::Value {
    get(p, "/.auth/me").await.json().await.unwrap()
}

fn bearer(r: &Recorded) -> String {
    r.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn client_credentials_with_a_secret_serve_every_caller_as_the_app() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let mut c = fake_idp::entra_config(&ado.url(), &idp);
    service(&mut c, &idp, ServiceSource::ClientCredentials);
    c.auth.client_secret = Some(Secret::new(CLIENT_SECRET));
    let p = support::start(c).await;

    for _ in 0..3 {
        assert_eq!(get(&p, PROJECTS).await.status(), 200);
    }
    assert_eq!(idp.calls("client_credentials"), 1, "one token for all");
    let seen = ado.requests();
    assert!(bearer(&seen[0]).starts_with("Bearer eyJ"));
    assert!(seen.iter().all(|r| bearer(r) == bearer(&seen[0])));
    let who = me(&p).await;
    assert_eq!(who["mode"], "service");
    assert_eq!(who["source"], "client-credentials");
    assert_eq!(who["appId"], CLIENT_ID);
    assert_eq!(who["identityType"], "app");
    assert!(who["accessTokenExpiresAt"].is_string());
    assert!(!who.to_string().contains("eyJ"), "never the token");
    let m = metrics(p.admin_addr).await;
    assert_eq!(
        metric_value(
            &m,
            "ado_proxy_service_token_acquisitions_total{outcome=\"ok\",source=\"client-credentials\"}"
        ),
        1.0
    );
    let left = metric_value(&m, "ado_proxy_service_token_expiry_seconds");
    assert!((590.0..=600.0).contains(&left), "{left}");
}

#[tokio::test]
async fn client_credentials_with_a_certificate_send_a_verified_assertion() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let mut c = fake_idp::entra_config(&ado.url(), &idp);
    service(&mut c, &idp, ServiceSource::ClientCredentials);
    let keys = fake_idp::keys();
    c.auth.client_certificate_file = Some(keys.client_cert.clone());
    c.auth.client_key_file = Some(keys.client_key.clone());
    let p = support::start(c).await;
    assert_eq!(get(&p, PROJECTS).await.status(), 200);
    // The fake checked the signature with the certificate's key, that
    // `aud` is its token endpoint, and `exp`.
    assert_eq!(idp.assertions_verified(), 1);
}

#[tokio::test]
async fn a_wrong_secret_is_a_readable_502_naming_the_code_and_counted() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let mut c = fake_idp::entra_config(&ado.url(), &idp);
    service(&mut c, &idp, ServiceSource::ClientCredentials);
    c.auth.client_secret = Some(Secret::new("not-the-secret"));
    c.auth.provider_timeout = Duration::from_secs(2);
    let p = support::start(c).await;
    let resp = get(&p, PROJECTS).await;
    // Only an operator can fix a wrong secret: no Retry-After.
    assert_eq!(resp.status(), 502);
    assert!(!resp.headers().contains_key("retry-after"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("AADSTS7000215"), "{body}");
    assert!(
        body.contains("client secret or certificate is wrong"),
        "{body}"
    );
    assert!(!body.contains("not-the-secret"));
    assert!(ado.requests().is_empty(), "nothing reaches Azure DevOps");
    let m = metrics(p.admin_addr).await;
    assert!(
        metric_value(
            &m,
            "ado_proxy_service_token_refresh_failures_total{source=\"client-credentials\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn workload_identity_rereads_the_rotated_token_file_for_every_exchange() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "federated-token-one\n").unwrap();
    idp.set_federated_token("federated-token-one");
    let mut c = fake_idp::entra_config(&ado.url(), &idp);
    service(&mut c, &idp, ServiceSource::WorkloadIdentity);
    c.auth.federated_token_file = Some(file.clone());
    let p = support::start(c).await;
    assert_eq!(get(&p, PROJECTS).await.status(), 200);

    // The kubelet rotates the file; Azure DevOps stops accepting the
    // token; the next exchange sends the new content.
    std::fs::write(&file, "federated-token-two\n").unwrap();
    idp.set_federated_token("federated-token-two");
    idp.revoke_access_tokens();
    assert_eq!(get(&p, PROJECTS).await.status(), 401, "the refused token");
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if get(&p, PROJECTS).await.status() == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "a new token after the refusal");
    assert_eq!(
        idp.federated_seen(),
        ["federated-token-one", "federated-token-two"]
    );
}

#[tokio::test]
async fn workload_identity_settings_come_from_the_webhook_environment() {
    // What the Azure Workload Identity webhook injects; the config file
    // names only the mode and source.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "x").unwrap();
    let toml = dir.path().join("c.toml");
    std::fs::write(
        &toml,
        "[auth]\nmode = \"service\"\nsource = \"workload-identity\"\n",
    )
    .unwrap();
    let env = |extra: &[(&str, &str)]| {
        let mut v: Vec<(String, String)> = vec![
            ("AZURE_CLIENT_ID".into(), CLIENT_ID.into()),
            ("AZURE_TENANT_ID".into(), TENANT.into()),
            (
                "AZURE_FEDERATED_TOKEN_FILE".into(),
                file.display().to_string(),
            ),
            (
                "AZURE_AUTHORITY_HOST".into(),
                "https://login.microsoftonline.com/".into(),
            ),
        ];
        v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        v
    };
    let c = ado_auth_proxy::config::load_file(&toml, env(&[])).unwrap();
    assert_eq!(c.auth.client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(c.auth.tenant.as_deref(), Some(TENANT));
    assert_eq!(c.auth.federated_token_file.as_deref(), Some(file.as_path()));
    // The proxy's own settings win over the webhook's.
    let c = ado_auth_proxy::config::load_file(
        &toml,
        env(&[("ADO_AUTH_PROXY_AUTH__CLIENT_ID", "override")]),
    )
    .unwrap();
    assert_eq!(c.auth.client_id.as_deref(), Some("override"));
    // Without them, the problem names the key and the variable.
    let err = ado_auth_proxy::config::load_file(&toml, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.federated_token_file"), "{err}");
    assert!(err.contains("AZURE_FEDERATED_TOKEN_FILE"), "{err}");
}

/// A fake managed identity endpoint: IMDS (`Metadata: true`, expiry as
/// strings) or App Service (`X-IDENTITY-HEADER`, `expires_on` a number).
async fn fake_identity_endpoint(
    app_service: bool,
    idp_tokens: Arc<Mutex<Vec<String>>>,
) -> FakeUpstream {
    FakeUpstream::recording(move |r: &Recorded| {
        let q: HashMap<String, String> = r
            .uri
            .split_once('?')
            .map(|(_, q)| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let header_ok = if app_service {
            r.headers.get("x-identity-header").is_some_and(|v| v == "app-service-secret")
                && q.get("api-version").map(String::as_str) == Some("2019-08-01")
        } else {
            r.headers.get("metadata").is_some_and(|v| v == "true")
                && q.get("api-version").map(String::as_str) == Some("2018-02-01")
        };
        if !header_ok || q.get("resource").map(String::as_str) != Some("499b84ac-1321-427f-aa17-267ca6975798") {
            return respond(400, &[("content-type", "application/json")], r#"{"error":"invalid_request","error_description":"Required metadata header not specified or resource missing"}"#);
        }
        if q.get("client_id").map(String::as_str) != Some("user-assigned-id") {
            return respond(400, &[("content-type", "application/json")], r#"{"error":"invalid_request","error_description":"Identity not found"}"#);
        }
        let token = format!("mi-token-{}", idp_tokens.lock().unwrap().len());
        idp_tokens.lock().unwrap().push(token.clone());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = if app_service {
            format!(r#"{{"access_token":"{token}","expires_on":{},"resource":"499b84ac-1321-427f-aa17-267ca6975798","token_type":"Bearer"}}"#, now + 3600)
        } else {
            format!(r#"{{"access_token":"{token}","expires_in":"3599","expires_on":"{}","resource":"499b84ac-1321-427f-aa17-267ca6975798","token_type":"Bearer"}}"#, now + 3599)
        };
        respond(200, &[("content-type", "application/json")], body)
    })
    .await
}

#[tokio::test]
async fn managed_identity_through_imds_and_app_service() {
    for app_service in [false, true] {
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let endpoint = fake_identity_endpoint(app_service, tokens.clone()).await;
        let ado = FakeUpstream::recording(|_r: &Recorded| respond(200, &[], "ok")).await;
        let mut c = support::config(&ado.url());
        c.auth.mode = AuthMode::Service;
        c.auth.source = Some(ServiceSource::ManagedIdentity);
        c.auth.managed_identity_endpoint =
            Some(Url::parse(&format!("{}/msi/token", endpoint.url())).unwrap());
        c.auth.managed_identity_client_id = Some("user-assigned-id".into());
        if app_service {
            c.auth.managed_identity_header = Some(Secret::new("app-service-secret"));
        }
        let p = support::start(c).await;
        assert_eq!(
            get(&p, PROJECTS).await.status(),
            200,
            "app service: {app_service}"
        );
        assert_eq!(bearer(&ado.single()), "Bearer mi-token-0");
        let m = metrics(p.admin_addr).await;
        let left = metric_value(&m, "ado_proxy_service_token_expiry_seconds");
        assert!((3500.0..=3600.0).contains(&left), "{left}");
        assert_eq!(me(&p).await["source"], "managed-identity");
        p.shutdown();
        p.wait().await;
    }
}

/// A managed identity endpoint's refusal (no such identity) is quoted
/// to callers as a 502 without `Retry-After`; the endpoint failing (5xx)
/// is a 503 with one.
#[tokio::test]
async fn a_managed_identity_refusal_is_quoted_and_an_outage_is_retryable() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let endpoint = fake_identity_endpoint(false, tokens).await;
    let down =
        FakeUpstream::recording(|_r: &Recorded| respond(500, &[], "<html>busy</html>")).await;
    for (url, status) in [(endpoint.url(), 502), (down.url(), 503)] {
        let ado = FakeUpstream::recording(|_r: &Recorded| respond(200, &[], "ok")).await;
        let mut c = support::config(&ado.url());
        c.auth.mode = AuthMode::Service;
        c.auth.source = Some(ServiceSource::ManagedIdentity);
        c.auth.managed_identity_endpoint = Some(Url::parse(&format!("{url}/msi/token")).unwrap());
        c.auth.managed_identity_client_id = Some("not-assigned-here".into());
        let p = support::start(c).await;
        let resp = get(&p, PROJECTS).await;
        assert_eq!(resp.status(), status);
        assert_eq!(resp.headers().contains_key("retry-after"), status == 503);
        let body = resp.text().await.unwrap();
        if status == 502 {
            assert!(body.contains("Identity not found"), "{body}");
            assert!(body.contains("managed-identity-not-assigned"), "{body}");
            let me = me(&p).await;
            assert_eq!(me["lastFailure"]["code"], "invalid_request");
            assert_eq!(
                me["lastFailure"]["diagnosis"],
                "managed-identity-not-assigned"
            );
        } else {
            // No OAuth answer to quote: the proxy's own account of it.
            assert!(
                body.contains("The last attempt: managed identity endpoint: HTTP 500"),
                "{body}"
            );
        }
        assert!(ado.requests().is_empty());
        p.shutdown();
        p.wait().await;
    }
}

/// Refusals of managed identity endpoints in their other shapes: App
/// Service's `statusCode`/`message` when no identity is assigned, and an
/// AADSTS code Entra gave IMDS, relayed in a 500: both final (502, no
/// `Retry-After`), each with its catalog entry.
#[tokio::test]
async fn managed_identity_refusals_in_app_service_and_relayed_shapes() {
    let cases: &[(u16, &str, &str, &str)] = &[
        (
            400,
            r#"{"statusCode":400,"message":"Unable to load the proper Managed Identity.","correlationId":"bf68136a-73f7-4ca4-9903-9ee8af3ab2ee"}"#,
            "managed-identity-not-assigned",
            "bf68136a-73f7-4ca4-9903-9ee8af3ab2ee",
        ),
        (
            500,
            r#"{"error":"invalid_resource","error_description":"AADSTS500011: The resource principal named 499b84ac-1321-427f-aa17-267ca6975798 was not found in the tenant named Contoso. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.\r\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd","error_codes":[500011]}"#,
            "azure-devops-not-in-directory",
            "aaaa0000-bb11-2222-33cc-444444dddddd",
        ),
        (
            500,
            "AADSTS500011: The resource principal named 499b84ac-1321-427f-aa17-267ca6975798 was not found in the tenant named Contoso.",
            "azure-devops-not-in-directory",
            "AADSTS500011",
        ),
    ];
    for (status, body, id, shown) in cases {
        let (status, body) = (*status, body.to_string());
        let endpoint = FakeUpstream::recording(move |_r: &Recorded| {
            respond(
                status,
                &[("content-type", "application/json")],
                body.clone(),
            )
        })
        .await;
        let ado = FakeUpstream::recording(|_r: &Recorded| respond(200, &[], "ok")).await;
        let mut c = support::config(&ado.url());
        c.auth.mode = AuthMode::Service;
        c.auth.source = Some(ServiceSource::ManagedIdentity);
        c.auth.managed_identity_endpoint =
            Some(Url::parse(&format!("{}/msi/token", endpoint.url())).unwrap());
        c.auth.managed_identity_header = Some(Secret::new("app-service-secret"));
        let p = support::start(c).await;
        let resp = get(&p, PROJECTS).await;
        assert_eq!(resp.status(), 502, "{id}");
        assert!(!resp.headers().contains_key("retry-after"), "{id}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(id) && text.contains(shown), "{text}");
        assert!(!text.contains("app-service-secret"), "{text}");
        assert_eq!(me(&p).await["lastFailure"]["diagnosis"], *id);
        assert!(ado.requests().is_empty());
        p.shutdown();
        p.wait().await;
    }
}

/// A token endpoint that answers slowly (async, so nothing else waits),
/// issuing short-lived tokens, and an Azure DevOps accepting them.
#[tokio::test]
async fn no_request_waits_for_a_background_refresh() {
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let slow = {
        let issued = issued.clone();
        FakeUpstream::raw(move |_req| {
            let issued = issued.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1000)).await;
                let mut list = issued.lock().unwrap();
                let token = format!("short-{}", list.len());
                list.push(token.clone());
                respond(
                    200,
                    &[("content-type", "application/json")],
                    format!(r#"{{"token_type":"Bearer","expires_in":8,"access_token":"{token}"}}"#),
                )
            }
        })
        .await
    };
    let ado = FakeUpstream::recording(|_r: &Recorded| respond(200, &[], "ok")).await;
    let mut c = support::config(&ado.url());
    c.auth.mode = AuthMode::Service;
    c.auth.source = Some(ServiceSource::ClientCredentials);
    c.auth.tenant = Some(TENANT.into());
    c.auth.client_id = Some(CLIENT_ID.into());
    c.auth.client_secret = Some(Secret::new(CLIENT_SECRET));
    c.auth.authority_host = Some(Url::parse(&slow.url()).unwrap());
    c.auth.refresh_before = Duration::from_secs(4);
    let p = support::start(c).await;
    // The first request waits for the first token (the proxy just started).
    assert_eq!(get(&p, PROJECTS).await.status(), 200);
    // Then requests for 11 s: across two refreshes (4 s before the 8 s
    // expiry), each taking 1 s at the provider.
    let client = support::client();
    let url = format!("http://{}{PROJECTS}", p.proxy_addr);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(11) {
        let t = Instant::now();
        let status = client.get(&url).send().await.unwrap().status();
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 200);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tokens = issued.lock().unwrap().clone();
    assert!(tokens.len() >= 3, "refreshed in the background: {tokens:?}");
    assert!(
        slowest < Duration::from_millis(500),
        "the slowest of {n} requests took {slowest:?}; a refresh takes 1 s"
    );
    let used: std::collections::BTreeSet<String> = ado.requests().iter().map(bearer).collect();
    assert!(
        used.len() >= 2,
        "requests moved to the new tokens: {used:?}"
    );
}

#[tokio::test]
async fn an_outage_keeps_the_valid_token_then_answers_503() {
    // 10 s tokens, refreshed from 5 s before expiry; a token is not sent
    // in its last 2 s.
    let idp = FakeIdp::start(Duration::from_secs(10)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let mut c = fake_idp::entra_config(&ado.url(), &idp);
    service(&mut c, &idp, ServiceSource::ClientCredentials);
    c.auth.client_secret = Some(Secret::new(CLIENT_SECRET));
    c.auth.refresh_before = Duration::from_secs(5);
    let clock = idp.clock();
    let p = support::start_with(c, clock.clone()).await;
    assert_eq!(get(&p, PROJECTS).await.status(), 200);
    idp.set_mode(Mode::Down);
    // Past the refresh time: the refresher wakes and fails.
    clock.advance(Duration::from_millis(6500));
    let failures = "ado_proxy_service_token_refresh_failures_total{source=\"client-credentials\"}";
    let mut counted = false;
    for _ in 0..100 {
        if metric_value(&metrics(p.admin_addr).await, failures) >= 1.0 {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(counted, "the failed refresh is counted");
    assert_eq!(get(&p, PROJECTS).await.status(), 200, "still valid");
    // Within 2 s of expiry the token is not sent any more.
    clock.advance(Duration::from_millis(2000));
    let resp = get(&p, PROJECTS).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    idp.set_mode(Mode::Normal);
    let mut ok = false;
    for _ in 0..40 {
        // The backoff (1 s, then 2 s, ...) runs on the same clock.
        clock.advance(Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(50)).await;
        if get(&p, PROJECTS).await.status() == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "recovers when the provider answers again");
}

#[tokio::test]
async fn callers_outside_the_allowlist_or_without_the_secret_are_refused() {
    let ado = FakeUpstream::recording(|_r: &Recorded| respond(200, &[], "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let pat = dir.path().join("pat");
    std::fs::write(&pat, "pat-value-123").unwrap();
    let secret = dir.path().join("caller");
    std::fs::write(&secret, "a-long-caller-secret-value\n").unwrap();
    let base = |c: &mut Config| {
        c.auth.mode = AuthMode::Service;
        c.auth.source = Some(ServiceSource::Pat);
        c.auth.pat_file = Some(pat.clone());
    };

    // Loopback is not in the list: refused, readably, nothing forwarded.
    let mut c = support::config(&ado.url());
    base(&mut c);
    c.auth.allowed_client_cidrs = vec!["10.0.0.0/8".into()];
    let p = support::start(c).await;
    let resp = get(&p, PROJECTS).await;
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(body.contains("allowed callers"), "{body}");
    assert!(ado.requests().is_empty());
    p.shutdown();

    // The shared secret: missing or wrong is refused; right is served
    // and not forwarded.
    let mut c = support::config(&ado.url());
    base(&mut c);
    c.auth.allowed_client_cidrs = vec!["127.0.0.0/8".into()];
    c.auth.caller_secret_file = Some(secret.clone());
    let p = support::start(c).await;
    assert_eq!(get(&p, PROJECTS).await.status(), 403);
    let with = |v: &'static str| {
        support::client()
            .get(format!("http://{}{PROJECTS}", p.proxy_addr))
            .header("x-ado-proxy-caller-secret", v)
            .send()
    };
    assert_eq!(with("wrong").await.unwrap().status(), 403);
    assert_eq!(
        with("a-long-caller-secret-value").await.unwrap().status(),
        200
    );
    let forwarded = ado.single();
    assert!(!forwarded.headers.contains_key("x-ado-proxy-caller-secret"));
    assert!(bearer(&forwarded).starts_with("Basic "), "the PAT is sent");
    // /.auth/me is behind the same door.
    let me = support::client()
        .get(format!("http://{}/.auth/me", p.proxy_addr))
        .header("x-ado-proxy-caller-secret", "a-long-caller-secret-value")
        .send()
        .await
        .unwrap();
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["source"], "pat");
    assert_eq!(get(&p, "/.auth/me").await.status(), 403);
}

/// Whether `PROJECTS` is served (200) within `limit`.
async fn served_within(p: &Running, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if get(p, PROJECTS).await.status() == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A device-code config file for the `login` command and the proxy.
fn device_toml(dir: &std::path::Path, idp: &FakeIdp, ado: &str) -> std::path::PathBuf {
    let path = dir.join("device.toml");
    std::fs::write(
        &path,
        format!(
            "[upstream]\nurl = \"{ado}\"\n[auth]\nmode = \"service\"\nsource = \"device-code\"\n\
             tenant = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\nauthority_host = \"{}\"\n\
             provider_timeout = \"10s\"\n[session]\npath = \"{}\"\n",
            idp.url(),
            dir.join("sessions.db").display()
        ),
    )
    .unwrap();
    path
}

/// The config file `device_toml` wrote, on free ports, stopping quickly.
fn device_config(toml: &std::path::Path) -> ado_auth_proxy::config::Config {
    let mut c = ado_auth_proxy::config::load_file(toml, Vec::new()).unwrap();
    c.listen.address = "127.0.0.1:0".parse().unwrap();
    c.admin.address = "127.0.0.1:0".parse().unwrap();
    c.listen.shutdown_delay = Duration::from_millis(100);
    c
}

/// Runs `ado-auth-proxy login`; (success, stdout, stderr).
async fn login_command(config: &std::path::Path) -> (bool, String, String) {
    let out = tokio::process::Command::new(crate::support::process::binary())
        .args(["login", "--config", config.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn device_code_login_while_the_proxy_runs_and_after_a_restart() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = device_toml(dir.path(), &idp, &ado.url());
    let config = || device_config(&toml);
    let p = support::start(config()).await;
    // Nobody signed in yet: a readable answer that says what to run, and
    // that retrying alone does not help (no Retry-After).
    let resp = get(&p, PROJECTS).await;
    assert_eq!(resp.status(), 502);
    assert!(!resp.headers().contains_key("retry-after"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("service identity"), "{body}");
    assert!(
        body.contains("not signed in yet: run `ado-auth-proxy login"),
        "{body}"
    );

    // The operator signs in while the proxy runs (it holds the database).
    idp.set_device_script(&["authorization_pending", "slow_down"]);
    let (ok, stdout, stderr) = login_command(&toml).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("https://microsoft.com/devicelogin"),
        "{stdout}"
    );
    assert!(stdout.contains("F7XK2M9QP"), "{stdout}");
    assert!(stdout.contains("Signed in as dana@contoso.com"), "{stdout}");
    // It polled at the interval (1 s), and 5 s slower after slow_down.
    let polls = idp.device_polls();
    assert_eq!(polls.len(), 3, "pending, slow_down, approved");
    assert!(polls[1] - polls[0] >= Duration::from_millis(950));
    assert!(polls[2] - polls[1] >= Duration::from_millis(5950));

    // The running proxy picks the identity up without a restart.
    let ok = served_within(&p, Duration::from_secs(5)).await;
    assert!(ok, "picked up within 5 s");
    assert_eq!(me(&p).await["source"], "device-code");
    p.shutdown();
    p.wait().await;

    // A restart finds it again: no new device sign-in, one refresh.
    let device_grants = idp.calls("urn:ietf:params:oauth:grant-type:device_code");
    let refreshes = idp.calls("refresh_token");
    let p = support::start(config()).await;
    assert_eq!(get(&p, PROJECTS).await.status(), 200);
    assert_eq!(
        idp.calls("urn:ietf:params:oauth:grant-type:device_code"),
        device_grants
    );
    assert_eq!(idp.calls("refresh_token"), refreshes + 1);
    // The database holds no token in the clear.
    let stored = std::fs::read(dir.path().join("sessions.db")).unwrap();
    let (issued, _) = idp.refresh_history();
    for t in issued {
        assert!(
            !stored.windows(t.len()).any(|w| w == t.as_bytes()),
            "{t} stored in the clear"
        );
    }
    p.shutdown();
    p.wait().await;
}

/// Source `device-code`: when Entra refuses the stored refresh token
/// (AADSTS700082, inactive for 90 days), the programs calling the proxy
/// are told that the stored sign-in expired and to run `login` again.
#[tokio::test]
async fn an_expired_device_code_sign_in_tells_callers_to_log_in_again() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = device_toml(dir.path(), &idp, &ado.url());
    idp.set_device_script(&[]);
    let (ok, stdout, stderr) = login_command(&toml).await;
    assert!(ok, "{stdout}\n{stderr}");
    let p = support::start_with(device_config(&toml), idp.clock()).await;
    assert_eq!(get(&p, PROJECTS).await.status(), 200);

    let inactive = crate::provider_codes::REPLAYS
        .iter()
        .find(|r| r.code == 700082)
        .unwrap();
    idp.set_mode(Mode::Refuse(*inactive));
    // Past the token's expiry: the refresher's call is refused.
    idp.clock().advance(Duration::from_secs(601));
    let mut answer = None;
    for _ in 0..100 {
        let resp = get(&p, PROJECTS).await;
        if resp.status() == 502 {
            answer = Some(resp.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = answer.expect("a 502 once the token expired");
    assert_eq!(v["adoAuthProxy"]["id"], "service-sign-in-expired", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("AADSTS700082"),
        "{v}"
    );
    assert!(
        v["adoAuthProxy"]["adminRemedy"]
            .as_str()
            .unwrap()
            .contains("ado-auth-proxy login again"),
        "{v}"
    );
    assert_eq!(
        me(&p).await["lastFailure"]["diagnosis"],
        "service-sign-in-expired"
    );
}

#[tokio::test]
async fn device_code_login_stops_on_every_final_polling_error() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = device_toml(dir.path(), &idp, "http://127.0.0.1:9");
    for (error, words) in [
        ("authorization_declined", "declined"),
        ("expired_token", "expired"),
        ("bad_verification_code", "does not know this device code"),
    ] {
        idp.set_device_script(&["authorization_pending", error]);
        let (ok, stdout, stderr) = login_command(&toml).await;
        assert!(!ok, "{error}: {stdout}");
        assert!(stderr.contains(words), "{error}: {stderr}");
    }
    // A refusal that is only Entra's description line, as a gateway
    // passed it on: the code and the catalog's explanation.
    idp.set_mode(fake_idp::Mode::Raw(
        400,
        "AADSTS50097: Device authentication is required.\r\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333",
    ));
    let (ok, _, stderr) = login_command(&toml).await;
    assert!(!ok);
    assert!(stderr.contains("AADSTS50097"), "{stderr}");
    assert!(
        stderr.contains("This sign-in needs a registered or compliant device"),
        "{stderr}"
    );
    idp.set_mode(fake_idp::Mode::Normal);
    // A config of another mode is refused with the key named.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[auth]\nmode = \"none\"\n").unwrap();
    let (ok, _, stderr) = login_command(&other).await;
    assert!(!ok);
    assert!(stderr.contains("auth.mode"), "{stderr}");
}

#[tokio::test]
async fn an_allowed_operator_can_sign_the_service_identity_in_through_the_browser() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = device_toml(dir.path(), &idp, &ado.url());
    let start = |users: &[&str]| {
        let mut c = device_config(&toml);
        c.auth.allow_browser_login = true;
        c.auth.allowed_users = users.iter().map(|u| u.to_string()).collect();
        c.auth.client_secret = Some(Secret::new(CLIENT_SECRET));
        support::start(c)
    };
    let sign_in = async |p: &Running| {
        let b = crate::support::oidc::Browser::new();
        fake_idp::sign_in(&b, &format!("http://{}", p.proxy_addr), None).await
    };

    // Someone not on the list cannot become the proxy's identity.
    let p = start(&["someone.else@contoso.com"]).await;
    let resp = sign_in(&p).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        get(&p, PROJECTS).await.status(),
        502,
        "still not signed in: not retryable"
    );
    p.shutdown();
    p.wait().await;

    // The operator on the list can.
    let p = start(&["dana@contoso.com"]).await;
    let resp = sign_in(&p).await;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("acts as dana@contoso.com"), "{page}");
    let ok = served_within(&p, Duration::from_secs(5)).await;
    assert!(ok, "the proxy acts as the operator's sign-in");
    assert_eq!(me(&p).await["source"], "device-code");
    p.shutdown();
    p.wait().await;
}

#[tokio::test]
async fn a_claims_challenge_gets_the_service_a_new_token_and_the_request_again() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let mut c = fake_idp::entra_config(&ado.url(), &idp);
    service(&mut c, &idp, ServiceSource::ClientCredentials);
    c.auth.client_secret = Some(Secret::new(CLIENT_SECRET));
    let clock = idp.clock();
    let p = support::start_with(c, clock.clone()).await;
    assert_eq!(get(&p, PROJECTS).await.status(), 200);
    // The app announces CAE (cp1) on its token requests.
    assert!(
        idp.token_claims()[0].contains("cp1"),
        "{:?}",
        idp.token_claims()
    );

    idp.cae_revoke(CAE_CLAIMS, false);
    assert_eq!(
        get(&p, PROJECTS).await.status(),
        200,
        "sent again with the new token"
    );
    assert_eq!(idp.calls("client_credentials"), 2);
    let asked = idp.token_claims().pop().unwrap();
    assert!(
        asked.contains("1796000000") && asked.contains("cp1"),
        "{asked}"
    );

    // Challenged again at once: no loop; the caller reads why.
    idp.cae_revoke(CAE_CLAIMS, false);
    let resp = support::client()
        .get(format!("http://{}{PROJECTS}", p.proxy_addr))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["adoAuthProxy"]["id"], "service-claims-challenge",
        "{body}"
    );
    assert_eq!(idp.calls("client_credentials"), 2);
    // Once the interval has passed, the next challenge gets its round.
    clock.advance(Duration::from_secs(60));
    assert_eq!(get(&p, PROJECTS).await.status(), 200);
    assert_eq!(idp.calls("client_credentials"), 3);
    let m = metrics(p.admin_addr).await;
    for line in [
        "ado_proxy_claims_challenges_total{outcome=\"service_refreshed\"} 2",
        "ado_proxy_claims_challenges_total{outcome=\"service_failed\"} 1",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
}

/// `/startupz` (the chart's startup probe) waits for the service
/// identity's first token; `/readyz` keeps its meaning (listening, store
/// answering). Once started, it stays started through later outages.
#[tokio::test]
async fn startupz_waits_for_the_first_token_and_then_stays_started() {
    let idp = FakeIdp::start(Duration::from_secs(600)).await;
    let ado = fake_idp::fake_ado(&idp).await;
    let mut c = fake_idp::entra_config(&ado.url(), &idp);
    service(&mut c, &idp, ServiceSource::ClientCredentials);
    c.auth.client_secret = Some(Secret::new(CLIENT_SECRET));
    idp.set_mode(Mode::Down);
    let clock = idp.clock();
    let p = support::start_with(c, clock.clone()).await;
    let admin = |path: &'static str| {
        let url = format!("http://{}{path}", p.admin_addr);
        async move {
            let r = support::get(url).await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) = admin("/startupz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no token yet"), "{body}");
    assert_eq!(admin("/readyz").await.0, 200, "/readyz keeps its meaning");
    idp.set_mode(Mode::Normal);
    let mut started = false;
    for _ in 0..60 {
        clock.advance(Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(50)).await;
        if admin("/startupz").await.0 == 200 {
            started = true;
            break;
        }
    }
    assert!(started, "started once the first token came");
    idp.set_mode(Mode::Down);
    clock.advance(Duration::from_secs(700));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        admin("/startupz").await.0,
        200,
        "a later outage is /readyz's and the alerts' business"
    );
}

/// `/startupz` also waits for the start-up look at the allowed
/// organizations (here an Azure DevOps that takes its time), so a rollout
/// does not go on before the log could say whether the PAT works.
#[tokio::test]
async fn startupz_waits_for_the_start_up_check_of_the_organizations() {
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let ado = FakeUpstream::raw(move |_req| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            respond(200, &[("content-type", "application/json")], "{}")
        }
    })
    .await;
    let mut c = support::config(&ado.url());
    c.auth.mode = AuthMode::Pat;
    c.auth.pat = Some(Secret::new("a-personal-access-token"));
    c.auth.check_pat_at_start = true;
    c.upstream.allowed_organizations = vec!["contoso".into()];
    let p = support::start(c).await;
    let startupz = || {
        let url = format!("http://{}/startupz", p.admin_addr);
        async move {
            let r = support::get(url).await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) = startupz().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("start-up check of the allowed organizations"),
        "{body}"
    );
    release.notify_waiters();
    let mut started = false;
    for _ in 0..100 {
        release.notify_waiters();
        if startupz().await.0 == 200 {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started, "started once the check finished");
}
