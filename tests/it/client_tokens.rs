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
fn token(
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
