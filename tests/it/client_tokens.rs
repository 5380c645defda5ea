//! `auth.accept_client_tokens`, through the real binary: a client's own
//! Entra access token for Azure DevOps (as `az account get-access-token`
//! gives) passes as it is when the fake Entra signed it for an admitted
//! tenant and an allowed user; forged, foreign, expired or mis-addressed
//! tokens are refused with the reason and never reach Azure DevOps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::support::fake_idp::{CLIENT_ID, CLIENT_SECRET, FakeIdp, OTHER_TENANT, TENANT, keys};
use crate::support::process::ProxyProcess;
use crate::support::upstream::{FakeUpstream, Recorded, respond};
use crate::support::{PROJECTS, client};

/// An access token as Entra issues them for Azure DevOps (v1), with
/// `tweak` applied to its claims, signed by `key_file` as `kid`.
pub(crate) fn token(
    tweak: impl FnOnce(&mut serde_json::Value),
    key_file: &std::path::Path,
    kid: &str,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = serde_json::json!({
        "aud": "499b84ac-1321-427f-aa17-267ca6975798",
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
        "tid": TENANT,
        "oid": "6a1b2c3d-0000-4000-8000-000000000001",
        "upn": "dana@contoso.com",
        "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
        "scp": "user_impersonation",
        "ver": "1.0",
    });
    tweak(&mut claims);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let key = EncodingKey::from_rsa_pem(&std::fs::read(key_file).unwrap()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn a_clients_own_entra_token_passes_only_when_it_checks_out() {
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = FakeUpstream::recording(|r: &Recorded| {
        let auth = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        respond(
            200,
            &[("content-type", "application/json")],
            format!(r#"{{"auth":"{auth}"}}"#),
        )
    })
    .await;
    let toml = |accept: bool| {
        format!(
            "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"user\"\nprovider = \"entra\"\n\
             tenant = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\nauthority_host = \"{}\"\n\
             allowed_users = [\"dana@contoso.com\"]\naccept_client_tokens = {accept}\n\
             [session]\nstore = \"memory\"\n",
            ado.url(),
            idp.url()
        )
    };
    let p = ProxyProcess::spawn(
        &toml(true),
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    );
    let send = |t: String| {
        let url = format!("http://{}{PROJECTS}", p.proxy);
        async move {
            let resp = client()
                .get(url)
                .header("authorization", format!("Bearer {t}"))
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let signing = &keys().signing_key;

    let good = token(|_| {}, signing, "fake-key");
    let (status, v) = send(good.clone()).await;
    assert_eq!(status, 200, "{v}\n{}", p.logs());
    assert_eq!(v["auth"], format!("Bearer {good}"), "forwarded as it is");
    let v2 = token(
        |c| c["iss"] = format!("{}/{TENANT}/v2.0", idp.url()).into(),
        signing,
        "fake-key",
    );
    assert_eq!(send(v2).await.0, 200, "a v2 token");

    let refused: Vec<(&str, String)> = vec![
        ("forged", token(|_| {}, &keys().foreign_key, "fake-key")),
        (
            "unknown key",
            token(|_| {}, &keys().foreign_key, "another-key"),
        ),
        (
            "expired",
            token(
                |c| {
                    c["exp"] = 1_000_000.into();
                    c["nbf"] = 999_000.into();
                },
                signing,
                "fake-key",
            ),
        ),
        (
            "another audience",
            token(
                |c| c["aud"] = "https://graph.microsoft.com".into(),
                signing,
                "fake-key",
            ),
        ),
        (
            "a tenant not admitted",
            token(
                |c| {
                    c["tid"] = OTHER_TENANT.into();
                    c["iss"] = format!("https://sts.windows.net/{OTHER_TENANT}/").into();
                },
                signing,
                "fake-key",
            ),
        ),
        (
            "an issuer of another tenant",
            token(
                |c| c["iss"] = format!("https://sts.windows.net/{OTHER_TENANT}/").into(),
                signing,
                "fake-key",
            ),
        ),
        (
            "a user not allowed",
            token(|c| c["upn"] = "eve@contoso.com".into(), signing, "fake-key"),
        ),
    ];
    let before = ado.requests().len();
    for (what, t) in refused {
        let (status, v) = send(t).await;
        assert_eq!(status, 401, "{what}: {v}");
        assert_eq!(
            v["adoAuthProxy"]["id"], "client-token-refused",
            "{what}: {v}"
        );
    }
    // alg none: no signature at all.
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"tid":"72f988bf-86f1-41af-91ab-2d7cd011db47","aud":"499b84ac-1321-427f-aa17-267ca6975798"}"#
        )
    );
    assert_eq!(send(none).await.0, 401);
    assert_eq!(
        ado.requests().len(),
        before,
        "nothing refused reached Azure DevOps"
    );
    assert!(
        !p.logs().contains(&good[good.len() - 40..]),
        "no token in the logs"
    );

    // Off (the default): the token is no way in.
    let off = ProxyProcess::spawn(
        &toml(false),
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    );
    let resp = client()
        .get(format!("http://{}{PROJECTS}", off.proxy))
        .header("authorization", format!("Bearer {good}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["adoAuthProxy"]["id"], "sign-in-required", "{v}");
}

/// A token no key signed: a well-formed JWT for the Azure DevOps
/// audience, naming tenant `tid` and key `kid`, with random bytes as its
/// RS256 signature (anybody can make these by the thousand).
fn forged(tid: &str, kid: &str) -> String {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let claims = serde_json::json!({
        "aud": "499b84ac-1321-427f-aa17-267ca6975798",
        "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
        "tid": tid, "oid": uuid::Uuid::new_v4().to_string(), "upn": "dana@contoso.com",
    });
    let signature: Vec<u8> = (0..16)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect();
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(&signature)
    )
}

/// GETs the projects at `proxy` with `token` as the bearer: the status
/// and the JSON body.
async fn call(proxy: std::net::SocketAddr, token: &str) -> (u16, serde_json::Value) {
    call_with(&client(), proxy, token).await
}

/// [`call`] through `http` (building a client per request costs more
/// than the request).
async fn call_with(
    http: &reqwest::Client,
    proxy: std::net::SocketAddr,
    token: &str,
) -> (u16, serde_json::Value) {
    let resp = http
        .get(format!("http://{proxy}{PROJECTS}"))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        resp.json::<serde_json::Value>().await.unwrap_or_default(),
    )
}

/// Sends every token, 16 at a time; how many got `status`.
async fn flood(proxy: std::net::SocketAddr, tokens: Vec<String>, status: u16) -> usize {
    use futures_util::StreamExt;
    let http = client();
    let http = &http;
    futures_util::stream::iter(tokens)
        .map(|t| async move { call_with(http, proxy, &t).await.0 })
        .buffer_unordered(16)
        .filter(|s| std::future::ready(*s == status))
        .count()
        .await
}

/// The process's resident memory now (VmRSS), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// A fake Azure DevOps that answers 200 with the `Authorization` it got.
async fn echoing_ado() -> FakeUpstream {
    FakeUpstream::recording(|r: &Recorded| {
        let auth = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        respond(
            200,
            &[("content-type", "application/json")],
            format!(r#"{{"auth":"{auth}"}}"#),
        )
    })
    .await
}

#[tokio::test]
async fn forged_tokens_of_any_directory_cost_one_key_set_and_no_memory() {
    // allowed_tenants = ["*"]: anyone may name any tenant. Each forged
    // token names a fresh one; none may make the proxy fetch that
    // tenant's keys or remember anything about it.
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = echoing_ado().await;
    let dana = "6a1b2c3d-0000-4000-8000-000000000001";
    let p = ProxyProcess::spawn(
        &format!(
            "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"user\"\nprovider = \"entra\"\n\
             tenant = \"organizations\"\nallowed_tenants = [\"*\"]\nclient_id = \"{CLIENT_ID}\"\n\
             authority_host = \"{}\"\nallowed_users = [\"{dana}\"]\naccept_client_tokens = true\n\
             [session]\nstore = \"memory\"\n",
            ado.url(),
            idp.url()
        ),
        &[("ADO_AUTH_PROXY_AUTH__CLIENT_SECRET", CLIENT_SECRET)],
    );
    let signing = &keys().signing_key;
    let started = std::time::Instant::now();
    let good = token(|_| {}, signing, "fake-key");
    let (status, v) = call(p.proxy, &good).await;
    assert_eq!(status, 200, "{v}\n{}", p.logs());
    // Another directory's genuine token: the same keys sign it.
    let guest = token(
        |c| {
            c["tid"] = OTHER_TENANT.into();
            c["iss"] = format!("https://sts.windows.net/{OTHER_TENANT}/").into();
        },
        signing,
        "fake-key",
    );
    assert_eq!(call(p.proxy, &guest).await.0, 200);
    assert_eq!(
        idp.jwks_paths(),
        vec!["/common/discovery/v2.0/keys"],
        "one key set for every directory"
    );

    // Forged tokens with fresh tenants, naming Entra's key or keys
    // nobody published.
    let forgeries = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let tid = uuid::Uuid::new_v4().to_string();
                let kid = if i % 2 == 0 {
                    "fake-key".to_string()
                } else {
                    format!("kid-{i}")
                };
                forged(&tid, &kid)
            })
            .collect()
    };
    assert_eq!(flood(p.proxy, forgeries(500), 401).await, 500);
    let before = rss(p.pid());
    assert_eq!(flood(p.proxy, forgeries(5000), 401).await, 5000);
    let grown = rss(p.pid()).saturating_sub(before);
    let elapsed = started.elapsed();
    let fetches = idp.jwks_fetches();
    // An unknown kid may ask the one key set again, once per
    // REFETCH_MIN (5 s) at most.
    assert!(
        fetches <= 2 + elapsed.as_secs() / 5,
        "{fetches} key-set fetches for 5,500 forged tokens in {elapsed:?}: {:?}",
        idp.jwks_paths()
    );
    assert!(
        idp.jwks_paths()
            .iter()
            .all(|p| p == "/common/discovery/v2.0/keys"),
        "no tenant's own keys: {:?}",
        idp.jwks_paths()
    );
    assert!(
        grown < 8 * 1024 * 1024,
        "5,000 forged tokens grew the proxy by {} KiB",
        grown / 1024
    );
    assert_eq!(ado.requests().len(), 2, "no forgery reached Azure DevOps");
    // Genuine tokens still pass.
    assert_eq!(call(p.proxy, &good).await.0, 200);
    assert_eq!(call(p.proxy, &guest).await.0, 200);
}

#[tokio::test]
async fn a_failing_key_endpoint_is_asked_again_only_after_its_backoff() {
    use ado_auth_proxy::oauth::id_token::REFETCH_MIN;
    // Two listed directories: each has its own keys, and nobody else's
    // are ever fetched.
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = echoing_ado().await;
    let mut c = crate::support::fake_idp::entra_config(&ado.url(), &idp);
    c.auth.tenant = Some("organizations".into());
    c.auth.allowed_tenants = vec![TENANT.into(), OTHER_TENANT.into()];
    c.auth.allowed_users = vec!["dana@contoso.com".into()];
    c.auth.accept_client_tokens = true;
    let clock = idp.clock();
    let proxy = crate::support::start_with(c, clock.clone()).await;
    let addr = proxy.proxy_addr;
    let signing = &keys().signing_key;
    let good = token(|_| {}, signing, "fake-key");
    // A little more than a wait of `step` with its +20% jitter.
    let past = |step: Duration| step.mul_f64(1.2) + Duration::from_millis(100);

    idp.set_keys_status(Some(503));
    let tokens = |n: usize| vec![good.clone(); n];
    assert_eq!(flood(addr, tokens(300), 401).await, 300);
    let (_, v) = call(addr, &good).await;
    assert_eq!(v["adoAuthProxy"]["id"], "client-token-refused", "{v}");
    assert_eq!(idp.jwks_fetches(), 1, "the failure is remembered");
    // The first wait runs out: one more try, which fails too.
    clock.advance(past(REFETCH_MIN));
    assert_eq!(flood(addr, tokens(100), 401).await, 100);
    assert_eq!(idp.jwks_fetches(), 2);
    // The wait has doubled (10 s ± 20%): the same time is not enough now.
    clock.advance(past(REFETCH_MIN));
    assert_eq!(flood(addr, tokens(100), 401).await, 100);
    assert_eq!(idp.jwks_fetches(), 2, "backing off");
    // The endpoint is back; once the wait is over the token passes.
    idp.set_keys_status(None);
    clock.advance(past(REFETCH_MIN));
    let (status, v) = call(addr, &good).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(idp.jwks_fetches(), 3);
    assert!(
        idp.jwks_paths()
            .iter()
            .all(|p| p == &format!("/{TENANT}/discovery/v2.0/keys")),
        "{:?}",
        idp.jwks_paths()
    );

    // Forgeries: fresh tenants fetch nothing; a listed tenant's unknown
    // kids ask its keys again at most once per REFETCH_MIN.
    let mut forgeries: Vec<String> = (0..300)
        .map(|i| forged(&uuid::Uuid::new_v4().to_string(), &format!("kid-{i}")))
        .collect();
    forgeries.extend((0..300).map(|i| forged(TENANT, &format!("kid-{i}"))));
    forgeries.extend((0..300).map(|_| forged(TENANT, "fake-key")));
    assert_eq!(flood(addr, forgeries, 401).await, 900);
    assert_eq!(
        idp.jwks_fetches(),
        3,
        "within REFETCH_MIN of the last fetch"
    );
    clock.advance(past(REFETCH_MIN));
    let again: Vec<String> = (0..300)
        .map(|i| forged(TENANT, &format!("kid-{i}")))
        .collect();
    assert_eq!(flood(addr, again, 401).await, 300);
    assert_eq!(idp.jwks_fetches(), 4, "one fetch for 300 unknown kids");

    // The other listed directory has keys of its own.
    let guest = token(
        |c| {
            c["tid"] = OTHER_TENANT.into();
            c["iss"] = format!("https://sts.windows.net/{OTHER_TENANT}/").into();
        },
        signing,
        "fake-key",
    );
    assert_eq!(call(addr, &guest).await.0, 200);
    assert_eq!(
        idp.jwks_paths().last().map(String::as_str),
        Some(format!("/{OTHER_TENANT}/discovery/v2.0/keys").as_str())
    );
    assert_eq!(idp.jwks_fetches(), 5);
    assert_eq!(ado.requests().len(), 2, "only the genuine tokens went on");
}

#[tokio::test]
async fn a_client_tokens_email_counts_only_with_a_verified_domain_owner() {
    // The sign-in rule: Entra's `email` is the `mail` attribute, which
    // the directory's administrators set to anything.
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let ado = echoing_ado().await;
    let mut c = crate::support::fake_idp::entra_config(&ado.url(), &idp);
    c.auth.allowed_email_domains = vec!["contoso.com".into()];
    c.auth.accept_client_tokens = true;
    let proxy = crate::support::start_with(c, idp.clock()).await;
    let signing = &keys().signing_key;
    let with = |edov: Option<serde_json::Value>| {
        token(
            |c| {
                c["upn"] = "mallory@fabrikam.onmicrosoft.com".into();
                c["email"] = "dana@contoso.com".into();
                if let Some(v) = edov {
                    c["xms_edov"] = v;
                }
            },
            signing,
            "fake-key",
        )
    };
    for (what, edov) in [
        ("no xms_edov", None),
        ("xms_edov false", Some(false.into())),
        ("xms_edov \"0\"", Some("0".into())),
    ] {
        let (status, v) = call(proxy.proxy_addr, &with(edov)).await;
        assert_eq!(status, 401, "{what}: {v}");
        assert_eq!(v["adoAuthProxy"]["id"], "client-token-refused", "{what}");
    }
    assert_eq!(
        call(proxy.proxy_addr, &with(Some(true.into()))).await.0,
        200
    );
    // A UPN of the domain is the account's own name.
    let upn = token(|_| {}, signing, "fake-key");
    assert_eq!(call(proxy.proxy_addr, &upn).await.0, 200);
    assert_eq!(ado.requests().len(), 2);
}
