//! Readable answers to Azure DevOps failures: a corpus of realistic
//! upstream answers (`tests/fixtures/upstream/*.http`) replayed through
//! the proxy, each answered in all four client languages and compared
//! with golden files (`tests/golden/diagnose/`; regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test it diagnose::`). Real clients (the
//! Python SDK, git, Chromium) read the answers in `diagnose_clients.rs`.

use std::path::PathBuf;

use std::time::Duration;

use ado_auth_proxy::app::Running;
use ado_auth_proxy::config::{AuthMode, Secret};

use crate::support::fake_idp::{CLIENT_ID, FakeIdp, TENANT};
use crate::support::oidc::Browser;
use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{self, client, metrics};

/// A recorded upstream answer.
pub struct Fixture {
    pub status: u16,
    /// The reason phrase, when it is not the canonical one.
    pub reason: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Reads `tests/fixtures/upstream/{name}.http`: status line, headers, a
/// blank line, the body.
pub fn fixture(name: &str) -> Fixture {
    let path = root().join(format!("fixtures/upstream/{name}.http"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (head, body) = text.split_once("\n\n").unwrap();
    let mut lines = head.lines();
    let mut status_line = lines.next().unwrap().splitn(3, ' ').skip(1);
    let status: u16 = status_line.next().unwrap().parse().unwrap();
    let canonical = http::StatusCode::from_u16(status)
        .unwrap()
        .canonical_reason()
        .unwrap_or("");
    let reason = status_line
        .next()
        .filter(|r| *r != canonical)
        .map(str::to_string);
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    Fixture {
        status,
        reason,
        headers,
        body: body.strip_suffix('\n').unwrap_or(body).to_string(),
    }
}

impl Fixture {
    /// The recorded answer, to send again.
    pub fn response(&self) -> hyper::Response<crate::support::upstream::FakeBody> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut resp = respond(self.status, &headers, self.body.clone());
        if let Some(r) = &self.reason {
            resp.extensions_mut()
                .insert(hyper::ext::ReasonPhrase::try_from(r.clone()).unwrap());
        }
        resp
    }
}

/// A fake Azure DevOps that answers every request with `fx`.
pub async fn replay(fx: Fixture) -> FakeUpstream {
    FakeUpstream::recording(move |_| fx.response()).await
}

/// A proxy in PAT mode (so the proxy supplies the credential) in front of
/// `upstream`.
pub async fn pat_proxy(upstream: &FakeUpstream) -> ado_auth_proxy::app::Running {
    pat_proxy_with(upstream, |_| {}).await
}

/// [`pat_proxy`], with `tweak` applied to its config.
async fn pat_proxy_with(
    upstream: &FakeUpstream,
    tweak: impl FnOnce(&mut ado_auth_proxy::config::Config),
) -> ado_auth_proxy::app::Running {
    let mut c = support::config(&upstream.url());
    c.auth.mode = AuthMode::Pat;
    c.auth.pat = Some(Secret::new("a-personal-access-token"));
    tweak(&mut c);
    support::start(c).await
}

/// A proxy in mode `user` (Entra, against the fake) in front of
/// `upstream`, with one signed-in session: (IdP, proxy, Cookie header).
pub async fn user_proxy(upstream: &FakeUpstream) -> (FakeIdp, Running, String) {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let c = crate::support::fake_idp::entra_config(&upstream.url(), &idp);
    let proxy = support::start(c).await;
    let b = Browser::new();
    let base = format!("http://{}", proxy.proxy_addr);
    let resp = crate::support::fake_idp::sign_in(&b, &base, None).await;
    assert_eq!(resp.status(), 302, "signed in");
    let value = crate::support::fake_idp::set_cookie(&resp, "ado_proxy_session").unwrap();
    let cookie = format!("ado_proxy_session={value}");
    (idp, proxy, cookie)
}

pub const CASES: &[&str] = &[
    "token-not-accepted",
    "token-not-accepted-203",
    "token-not-accepted-soap",
    "oauth-disabled",
    "not-a-member",
    "conditional-access",
    "first-sign-in-required",
    "pat-expired",
    "not-found-or-no-permission",
    "pat-policy-refused",
    "feed-permission-missing",
    "feed-read-permission-json",
    "feed-not-found",
    "permission-denied",
    "throttled",
];

/// (file suffix, path, request headers) of one client language.
pub type Client = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// How each client language asks.
pub const CLIENTS: &[Client] = &[
    (
        "html",
        "/contoso/_apis/git/repositories/r",
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
    ),
    (
        "json",
        "/contoso/_apis/git/repositories/r",
        &[("accept", "application/json;api-version=7.1")],
    ),
    (
        "problem.json",
        "/contoso/_apis/git/repositories/r",
        &[("accept", "application/problem+json")],
    ),
    (
        "git.txt",
        "/contoso/proj/_git/r/info/refs?service=git-upload-pack",
        &[("user-agent", "git/2.47.3")],
    ),
];

#[tokio::test]
async fn every_case_is_answered_in_every_client_language() {
    for case in CASES {
        let fx = fixture(case);
        let original_status = fx.status;
        let retry_after = fx
            .headers
            .iter()
            .find(|(k, _)| k == "Retry-After")
            .map(|(_, v)| v.clone());
        let kept = what_an_answer_keeps(&fx);
        let upstream = replay(fx).await;
        let (_idp, proxy, cookie) = user_proxy(&upstream).await;
        for (suffix, path, headers) in CLIENTS {
            let mut req = client()
                .get(format!("http://{}{path}", proxy.proxy_addr))
                .header("cookie", &cookie)
                .header("x-request-id", "golden-request");
            for (k, v) in *headers {
                req = req.header(*k, *v);
            }
            let resp = req.send().await.unwrap();
            // A 203 sign-in page is a success to HTTP libraries: it is
            // answered as a 401.
            let refused = if original_status == 203 {
                401
            } else {
                original_status
            };
            let git_401 = *suffix == "git.txt" && refused == 401;
            let want = if git_401 { 403 } else { refused };
            assert_eq!(resp.status(), want, "{case} {suffix}");
            if let Some(r) = &retry_after {
                assert_eq!(resp.headers()["retry-after"], r.as_str(), "{case} {suffix}");
                assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
            }
            if refused == 401 && !git_401 {
                assert!(
                    resp.headers().contains_key("www-authenticate")
                        || !case.starts_with("token-not-accepted"),
                    "{case} {suffix}: a 401 carries a challenge"
                );
            }
            let resp_headers = resp.headers().clone();
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
            let expected_type = match *suffix {
                "html" => "text/html; charset=utf-8",
                "json" => "application/json; charset=utf-8",
                "problem.json" => "application/problem+json",
                _ => "text/plain; charset=utf-8",
            };
            assert_eq!(content_type, expected_type, "{case} {suffix}");
            // The sign-in link names the proxy's random port.
            let body = resp
                .text()
                .await
                .unwrap()
                .replace(&proxy.proxy_addr.to_string(), "127.0.0.1:PORT");
            // Azure DevOps' ids and words, in the headers and in the text,
            // in every language.
            for (name, value) in &kept.headers {
                assert_eq!(
                    resp_headers[name.as_str()],
                    value.as_str(),
                    "{case} {suffix}"
                );
            }
            let readable = match *suffix {
                "html" => html_text(&body),
                s if s.ends_with("json") => json_strings(&body),
                _ => body.clone(),
            };
            for words in &kept.words {
                assert!(
                    readable.contains(words.as_str()),
                    "{case} {suffix} keeps {words:?}: {readable}"
                );
            }
            let text = if suffix.ends_with("json") {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                serde_json::to_string_pretty(&v).unwrap() + "\n"
            } else {
                body
            };
            crate::support::golden(
                &root().join(format!("golden/diagnose/{case}.{suffix}")),
                &text,
            );
        }
        // An Entra user: TF400813 "not authorized" is not the legacy
        // OAuth policy, and a session sends no PAT (diagnose_modes.rs
        // covers every mode).
        let id = match case.trim_end_matches("-203").trim_end_matches("-soap") {
            "oauth-disabled" => "entra-access-refused",
            "pat-expired" => "token-not-accepted",
            "feed-read-permission-json" => "feed-permission-missing",
            other => other,
        };
        let m = metrics(proxy.admin_addr).await;
        assert!(
            m.contains(&format!(
                "ado_proxy_upstream_denials_total{{id=\"{id}\"}} 4"
            )),
            "{case}: {m}"
        );
    }
}

/// What every explained answer to `fx` keeps: Azure DevOps' correlation
/// headers (also as text), `X-TFS-ServiceError`, and its own words
/// wherever they were (the JSON `message`, the page title, the service
/// error header, the reason phrase, a plain-text body).
struct Kept {
    headers: Vec<(String, String)>,
    words: Vec<String>,
}

fn what_an_answer_keeps(fx: &Fixture) -> Kept {
    let header = |name: &str| {
        fx.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut headers = Vec::new();
    let mut words = Vec::new();
    for name in ["ActivityId", "X-VSS-E2EID", "X-TFS-Session"] {
        if let Some(v) = header(name) {
            headers.push((name.to_ascii_lowercase(), v.clone()));
            words.push(v);
        }
    }
    if let Some(v) = header("X-TFS-ServiceError") {
        headers.push(("x-tfs-serviceerror".into(), v.clone()));
        let decoded = url::form_urlencoded::parse(format!("m={v}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        words.push(decoded);
    }
    let json: Option<serde_json::Value> = serde_json::from_str(&fx.body).ok();
    if let Some(m) = json.as_ref().and_then(|v| v["message"].as_str()) {
        words.push(m.to_string());
    } else if let Some(title) = fx
        .body
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
    {
        words.push(title.0.to_string());
    } else if header("Content-Type").is_some_and(|t| t.starts_with("text/plain")) {
        words.push(fx.body.trim().to_string());
    }
    // Azure Artifacts: "Forbidden - <words> (DevOps Activity ID: ...)".
    if let Some((_, said)) = fx.reason.as_deref().and_then(|r| r.split_once(" - ")) {
        words.push(
            said.split(" (DevOps Activity ID")
                .next()
                .unwrap()
                .to_string(),
        );
    }
    Kept { headers, words }
}

/// An HTML answer's text as a reader sees it (entities decoded).
fn html_text(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Every string in a JSON answer, one per line.
fn json_strings(body: &str) -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(&serde_json::from_str(body).unwrap(), &mut out);
    out
}

/// Renders `finding` in the four client languages and compares each
/// with `golden/diagnose/{dir}/{id}.{form}`.
fn render_golden(dir: &str, finding: &ado_auth_proxy::diagnose::Finding) {
    use ado_auth_proxy::answer::Form;
    for (form, suffix) in [
        (Form::Html, "html"),
        (Form::AdoJson, "json"),
        (Form::Problem, "problem.json"),
        (Form::GitText, "git.txt"),
    ] {
        let (_, text) = finding.clone().into_answer().body(form, "golden-request");
        let text = if suffix.ends_with("json") {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            serde_json::to_string_pretty(&v).unwrap() + "\n"
        } else {
            text
        };
        if form == Form::Html {
            assert!(!text.contains("<refused>"), "escaped: {text}");
        }
        crate::support::golden(
            &root().join(format!(
                "golden/diagnose/{dir}/{}.{suffix}",
                finding.entry.id
            )),
            &text,
        );
    }
}

/// The description Entra sends with `code`: its words, then the ids.
fn entra_description(code: u64) -> String {
    format!(
        "AADSTS{code}: <refused>.\r\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-11-22 04:00:00Z"
    )
}

#[test]
fn every_sign_in_case_renders_in_every_client_language() {
    use ado_auth_proxy::diagnose::{CATALOG, Finding, Vars, ids_in_description, recognise_sign_in};
    // One representative AADSTS code per sign-in case.
    let cases: &[(&str, u64)] = &[
        ("access_denied", 65004),
        ("invalid_grant", 65001),
        ("invalid_grant", 50076),
        ("interaction_required", 50097),
        ("access_denied", 53003),
        ("unauthorized_client", 700016),
        ("invalid_request", 700213),
        ("invalid_client", 700024),
        ("invalid_client", 700027),
        ("invalid_scope", 70011),
        ("invalid_client", 650057),
        ("invalid_resource", 500011),
        ("invalid_client", 7000222),
        ("invalid_request", 50011),
        ("access_denied", 50020),
        ("access_denied", 50105),
        ("invalid_grant", 54005),
        ("invalid_grant", 70008),
        // No code: the legacy token endpoint's retirement.
        (ado_auth_proxy::diagnose::LEGACY_RETIRED, 0),
    ];
    let mut seen = Vec::new();
    for (error, code) in cases {
        let description = match code {
            0 => "the legacy token endpoint answered HTTP 410: it no longer exists".to_string(),
            _ => entra_description(*code),
        };
        let entry = recognise_sign_in(error, &[], &description).unwrap();
        seen.push(entry.id);
        let finding = Finding {
            entry,
            status: http::StatusCode::BAD_REQUEST,
            message: Some(match code {
                0 => description.clone(),
                _ => format!("AADSTS{code}: <refused>."),
            }),
            type_key: None,
            original: None,
            said_by: "The sign-in provider",
            retry_after: None,
            ids: ids_in_description(&description),
            vars: Vars {
                org: None,
                redirect_uri: Some("https://ado-proxy.example.com/.auth/callback".into()),
                admin_consent_url: Some(format!(
                    "https://login.microsoftonline.com/{TENANT}/v2.0/adminconsent?client_id={CLIENT_ID}"
                )),
                sign_in_url: Some("https://ado-proxy.example.com/.auth/login".into()),
                ..Vars::default()
            },
        };
        render_golden("sign-in", &finding);
    }
    // Every sign-in case of the catalog is covered.
    let sign_in: Vec<&str> = CATALOG
        .iter()
        .skip_while(|e| e.id != "consent-declined")
        .take_while(|e| e.id != "service-consent-required")
        .map(|e| e.id)
        .collect();
    assert_eq!(seen, sign_in);
}

/// What the programs calling a service-mode proxy read when its token
/// calls are refused, one representative code per case, 502 as only an
/// operator or administrator can fix these.
#[test]
fn every_service_token_case_renders_in_every_client_language() {
    use ado_auth_proxy::diagnose::{CATALOG, ProviderSaid, TokenPath, Vars};
    let cases: &[(&str, u64)] = &[
        ("invalid_grant", 65001),
        ("invalid_grant", 50076),
        ("interaction_required", 53003),
        ("interaction_required", 53000),
        // No code: IMDS's words for a missing identity.
        ("invalid_request", 0),
        ("invalid_grant", 50105),
        ("invalid_grant", 700082),
        ("invalid_grant", 54005),
    ];
    let mut seen = Vec::new();
    for (error, code) in cases {
        let said = match code {
            0 => ProviderSaid {
                error: error.to_string(),
                description: "Identity not found".into(),
                ..ProviderSaid::default()
            },
            _ => ProviderSaid {
                error: error.to_string(),
                codes: vec![*code],
                description: entra_description(*code),
                ..ProviderSaid::default()
            },
        };
        let finding = said
            .finding(
                TokenPath::Service,
                http::StatusCode::BAD_GATEWAY,
                Vars::default(),
            )
            .unwrap();
        seen.push(finding.entry.id);
        render_golden("service", &finding);
    }
    // A temporary failure: waiting helps.
    let busy = ado_auth_proxy::diagnose::ServiceFailure {
        said: Some(ProviderSaid {
            error: "temporarily_unavailable".into(),
            codes: vec![90033],
            description: entra_description(90033),
            ..ProviderSaid::default()
        }),
        retryable: true,
        detail: String::new(),
        since: std::time::UNIX_EPOCH,
    };
    let mut finding = busy.finding().unwrap();
    assert_eq!(finding.status, http::StatusCode::SERVICE_UNAVAILABLE);
    // The one fact that changes from run to run ("Failing since") is fixed.
    finding.ids.retain(|(k, _)| k != "Failing since");
    seen.push(finding.entry.id);
    render_golden("service", &finding);
    let service: Vec<&str> = CATALOG
        .iter()
        .skip_while(|e| e.id != "service-consent-required")
        .map(|e| e.id)
        .collect();
    assert_eq!(seen, service);
}

/// A request for `/contoso/_apis/projects` with `accept`, not yet sent.
fn projects(proxy: &Running, accept: &str) -> reqwest::RequestBuilder {
    client()
        .get(format!(
            "http://{}/contoso/_apis/projects",
            proxy.proxy_addr
        ))
        .header("accept", accept)
}

/// On a sibling host the organization is the segment after the host's
/// name, and the answer names it (it once read "<organization>").
#[tokio::test]
async fn a_diagnosis_on_a_sibling_host_names_the_organization() {
    let upstream = replay(fixture("oauth-disabled")).await;
    let vsrm = format!("{}/", upstream.url()).parse().unwrap();
    let proxy = pat_proxy_with(&upstream, |c| {
        c.upstream.hosts.insert("vsrm".into(), vsrm);
    })
    .await;
    let v: serde_json::Value = client()
        .get(format!(
            "http://{}/.hosts/vsrm/contoso/_apis/release/releases",
            proxy.proxy_addr
        ))
        .header("accept", "application/problem+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["type"], "urn:ado-auth-proxy:problem:access-refused",
        "{v}"
    );
    let admin = v["adminRemedy"].as_str().unwrap();
    assert!(
        admin.contains("https://dev.azure.com/contoso/_settings/users"),
        "{admin}"
    );
}

#[tokio::test]
async fn a_refused_personal_access_token_is_the_operators_to_fix() {
    let upstream = replay(fixture("token-not-accepted")).await;
    let proxy = pat_proxy(&upstream).await;
    let v: serde_json::Value = projects(&proxy, "application/problem+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["type"], "urn:ado-auth-proxy:problem:pat-not-accepted");
    assert!(v["adminRemedy"].as_str().unwrap().contains("auth.pat_file"));
    let resp = projects(&proxy, "text/html")
        .header("x-request-id", "golden-request")
        .send()
        .await
        .unwrap();
    let html = resp.text().await.unwrap();
    assert!(
        !html.contains("Sign in again"),
        "no sign-in in PAT mode: {html}"
    );
    crate::support::golden(&root().join("golden/diagnose/pat-not-accepted.html"), &html);
}

#[tokio::test]
async fn the_sdk_shape_keeps_azure_devops_fields_and_extends_the_message() {
    let upstream = replay(fixture("oauth-disabled")).await;
    let proxy = pat_proxy(&upstream).await;
    let v: serde_json::Value = projects(&proxy, "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["$id"], "1");
    assert_eq!(v["typeKey"], "UnauthorizedRequestException");
    assert_eq!(v["eventId"], 3000);
    assert!(v["innerException"].is_null());
    let message = v["message"].as_str().unwrap();
    assert!(message.starts_with("TF400813: The user"), "{message}");
    assert!(message.contains("[ado-auth-proxy]"), "{message}");
    assert_eq!(v["adoAuthProxy"]["id"], "access-refused");
    assert!(
        v["adoAuthProxy"]["adminRemedy"]
            .as_str()
            .unwrap()
            .contains("https://dev.azure.com/contoso/_settings/users")
    );
    assert_eq!(
        v["adoAuthProxy"]["correlation"]["ActivityId"],
        "cbf4682a-915d-42b3-ac36-a714328098e8"
    );
}

#[tokio::test]
async fn throttling_is_passed_on_and_counted_including_delayed_successes() {
    let upstream = FakeUpstream::recording(|r| {
        if r.uri.contains("delayed") {
            respond(
                200,
                &[
                    ("content-type", "application/json"),
                    ("x-ratelimit-delay", "1.250"),
                    ("retry-after", "5"),
                    ("x-ratelimit-remaining", "0"),
                ],
                "{\"count\":0}",
            )
        } else {
            respond(
                200,
                &[("content-type", "application/json")],
                "{\"count\":0}",
            )
        }
    })
    .await;
    let proxy = pat_proxy(&upstream).await;
    let resp = client()
        .get(format!("http://{}/contoso/_apis/delayed", proxy.proxy_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(resp.headers()["x-ratelimit-delay"], "1.250");
    assert_eq!(
        resp.text().await.unwrap(),
        "{\"count\":0}",
        "a delayed success is untouched"
    );
    let _ = client()
        .get(format!("http://{}/contoso/_apis/fine", proxy.proxy_addr))
        .send()
        .await
        .unwrap();
    let m = metrics(proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_upstream_throttled_total{kind=\"delayed\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ado_proxy_upstream_throttle_delay_seconds_sum 1.25"),
        "{m}"
    );
}

#[tokio::test]
async fn unrecognised_errors_and_large_bodies_pass_through_untouched() {
    let big = format!("{{\"message\":\"TF401019: {}\"}}", "x".repeat(100_000));
    let big_body = big.clone();
    let upstream = FakeUpstream::recording(move |r| {
        if r.uri.contains("big") {
            respond(
                404,
                &[("content-type", "application/json")],
                big_body.clone(),
            )
        } else {
            respond(
                500,
                &[("content-type", "application/json"), ("activityid", "a")],
                "{\"message\":\"TF400898: An Internal Error Occurred.\"}",
            )
        }
    })
    .await;
    let proxy = pat_proxy(&upstream).await;
    let resp = client()
        .get(format!("http://{}/contoso/_apis/x", proxy.proxy_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.text().await.unwrap(),
        "{\"message\":\"TF400898: An Internal Error Occurred.\"}"
    );
    let resp = client()
        .get(format!("http://{}/contoso/_apis/big", proxy.proxy_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), big);
}

/// Mode pat (and source pat of mode service) checks its token once at
/// start against each allowed organization and logs which it does not
/// work for (the real binary).
#[tokio::test]
async fn a_pat_that_does_not_work_for_an_organization_is_logged_at_start() {
    for auth in ["mode = \"pat\"", "mode = \"service\"\nsource = \"pat\""] {
        pat_checked_at_start(auth).await;
    }
}

async fn pat_checked_at_start(auth: &str) {
    use crate::support::process::ProxyProcess;
    const PAT: &str = "pat-for-contoso-only";
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!(":{PAT}")
        )
    );
    let upstream = FakeUpstream::recording(move |r| {
        let ok = r.uri.starts_with("/contoso/")
            && r.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&expected);
        if ok {
            respond(200, &[("content-type", "application/json")], "{}")
        } else {
            respond(
                401,
                &[("x-tfs-serviceerror", "TF400813%3a+not+authorized")],
                "",
            )
        }
    })
    .await;
    let toml = format!(
        "[upstream]\nurl = \"{}\"\nallowed_organizations = [\"contoso\", \"fabrikam\"]\n\
         [auth]\n{auth}\n[log]\nformat = \"json\"\n",
        upstream.url()
    );
    let proxy = ProxyProcess::spawn(&toml, &[("ADO_AUTH_PROXY_AUTH__PAT", PAT)]);
    let mut logs = String::new();
    for _ in 0..100 {
        logs = proxy.logs();
        if logs.contains("does not work for this organization")
            && logs.contains("works for this organization")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{logs}"))
            .to_string()
    };
    let bad = line("does not work for this organization");
    assert!(
        bad.contains("fabrikam") && bad.contains("401") && bad.contains("2026-12-01"),
        "{bad}"
    );
    assert!(line("works for this organization").contains("contoso"));
    // One line says what the whole check found.
    let mut done = String::new();
    for _ in 0..100 {
        if let Some(l) = proxy
            .logs()
            .lines()
            .find(|l| l.contains("start-up check of the allowed organizations done"))
        {
            done = l.to_string();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        done.contains("\"works\":\"contoso\"") && done.contains("\"refused\":\"fabrikam\""),
        "{done}"
    );
    assert!(!logs.contains(PAT), "the token never reaches the log");
    assert_eq!(
        upstream.requests().len(),
        2,
        "one look per organization, no retries"
    );
}
