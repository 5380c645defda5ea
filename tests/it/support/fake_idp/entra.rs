//! The fake's Microsoft Entra ID v2 endpoints: authorize, token (code,
//! refresh, client credentials, assertions, device code), claims
//! challenges and ID tokens.

use super::*;

pub(super) fn entra_authorize(r: &Recorded, mode: Mode, s: &mut State) -> http::Response<FakeBody> {
    let q = query(&r.uri);
    s.authorize_queries.push(q.clone());
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let state = q.get("state").cloned().unwrap_or_default();
    let mut to = url::Url::parse(&redirect_uri).unwrap();
    if mode == Mode::Deny {
        to.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair(
                "error_description",
                "AADSTS65004: User declined to consent to access the app.",
            )
            .append_pair("state", &state);
        return redirect(to.to_string());
    }
    if let Mode::AuthorizeError(error, code) = mode {
        to.query_pairs_mut()
            .append_pair("error", error)
            .append_pair(
                "error_description",
                &format!("AADSTS{code}: The sign-in was refused.\r\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-11-22 04:00:00Z"),
            )
            .append_pair("state", &state);
        return redirect(to.to_string());
    }
    let code = new_token(s, "code");
    s.codes.insert(
        code.clone(),
        Code {
            client_id: q.get("client_id").cloned().unwrap_or_default(),
            redirect_uri,
            challenge: q.get("code_challenge").cloned(),
            nonce: q.get("nonce").cloned(),
        },
    );
    if q.get("response_mode").map(String::as_str) == Some("form_post") {
        // Entra's form_post page: the browser posts code and state back.
        let html = format!(
            "<html><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"code\" value=\"{code}\"/>\
             <input type=\"hidden\" name=\"state\" value=\"{state}\"/></form></body></html>",
            s.codes[&code].redirect_uri,
        );
        return respond(200, &[("content-type", "text/html; charset=utf-8")], html);
    }
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    redirect(to.to_string())
}

/// Checks the client's secret or `private_key_jwt` assertion.
pub(super) fn client_ok(f: &HashMap<String, String>, token_url: &str, s: &mut State) -> bool {
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return false;
    }
    if s.public_client && !f.contains_key("client_secret") && !f.contains_key("client_assertion") {
        return true;
    }
    if let Some(assertion) = f.get("client_assertion") {
        // A certificate assertion names its certificate (x5t#S256); a
        // federated token (workload identity) does not.
        let names_certificate =
            jsonwebtoken::decode_header(assertion).is_ok_and(|h| h.x5t_s256.is_some());
        if s.federated.is_some() && !names_certificate {
            s.federated_seen.push(assertion.clone());
            return s.federated.as_deref() == Some(assertion.as_str());
        }
        if f.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return false;
        }
        let Ok(header) = jsonwebtoken::decode_header(assertion) else {
            return false;
        };
        if header.x5t_s256.as_deref() != Some(keys().client_x5t_s256.as_str()) {
            return false;
        }
        let pem = std::fs::read(&keys().client_pub).unwrap();
        let key = DecodingKey::from_rsa_pem(&pem).unwrap();
        let mut v = Validation::new(header.alg);
        v.set_audience(&[token_url]);
        v.set_issuer(&[CLIENT_ID]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        // Entra refuses assertions valid for more than 10 minutes.
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ok = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &v).is_ok_and(|d| {
            d.claims["sub"] == CLIENT_ID
                && d.claims["jti"].is_string()
                && d.claims["exp"].as_u64().is_some_and(|exp| exp <= now + 600)
        });
        if ok {
            s.assertions_verified += 1;
        }
        return ok;
    }
    f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
}

pub(super) fn entra_token(
    r: &Recorded,
    token_url: &str,
    base: &str,
    k: &Knobs,
    ttl: Duration,
    s: &mut State,
) -> http::Response<FakeBody> {
    let mode = k.mode;
    let tenant = match s.token_tenants.last().map(String::as_str) {
        Some("organizations") | None => TENANT.to_string(),
        Some(t) => t.to_string(),
    };
    let f = form(&r.body);
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    *s.token_calls.entry(grant.clone()).or_default() += 1;
    s.asked_scope = f.get("scope").cloned();
    if let Some(c) = f.get("claims") {
        s.token_claims.push(c.clone());
    }
    if let Mode::Raw(status, body) = mode {
        return respond(status, &[("content-type", "text/plain")], body);
    }
    if let Mode::Refuse(r) = mode {
        let extra = match r.suberror {
            Some(sub) => json!({ "suberror": sub }),
            None => json!({}),
        };
        return aadsts(r.status, r.error, r.code, r.text, extra);
    }
    if let (Mode::RedeemError(status, error, code), "authorization_code") = (mode, grant.as_str()) {
        return aadsts(status, error, code, "The request was refused.", json!({}));
    }
    if mode == Mode::Down {
        return aadsts(
            503,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
            json!({}),
        );
    }
    if mode == Mode::InvalidClient {
        return aadsts(
            401,
            "invalid_client",
            7000222,
            "The provided client secret keys for app are expired.",
            json!({}),
        );
    }
    if !client_ok(&f, token_url, s) {
        return aadsts(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
            json!({}),
        );
    }
    match grant.as_str() {
        "urn:ietf:params:oauth:grant-type:device_code" => {
            s.device_polls.push(Instant::now());
            if f.get("device_code").map(String::as_str) != Some("DAQABAAEAAAD-device-code") {
                return aadsts(
                    400,
                    "bad_verification_code",
                    70019,
                    "Verification code mismatch.",
                    json!({}),
                );
            }
            match s.device_script.pop_front() {
                Some("authorization_pending") => aadsts(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                    json!({}),
                ),
                Some("slow_down") => aadsts(400, "slow_down", 70016, "Slow down.", json!({})),
                Some("authorization_declined") => aadsts(
                    400,
                    "authorization_declined",
                    70016,
                    "The end user denied the authorization request.",
                    json!({}),
                ),
                Some("expired_token") => aadsts(
                    400,
                    "expired_token",
                    70019,
                    "Verification code expired.",
                    json!({}),
                ),
                Some("bad_verification_code") => aadsts(
                    400,
                    "bad_verification_code",
                    70019,
                    "Verification code mismatch.",
                    json!({}),
                ),
                _ => issue(base, k, ttl, None, s),
            }
        }
        "client_credentials" => {
            let scope = f.get("scope").map(String::as_str).unwrap_or_default();
            if scope != "499b84ac-1321-427f-aa17-267ca6975798/.default" {
                return aadsts(
                    400,
                    "invalid_scope",
                    1002012,
                    "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                    json!({}),
                );
            }
            if let Some(refused) = cae_unsatisfied(&f, s) {
                return refused;
            }
            s.serial += 1;
            let claims = json!({
                "aud": "499b84ac-1321-427f-aa17-267ca6975798",
                "appid": CLIENT_ID,
                "oid": "99999999-8888-7777-6666-555555555555",
                "tid": tenant,
                "idtyp": "app",
                "n": s.serial,
            });
            let access = format!(
                "eyJhbGciOiJub25lIn0.{}.sig",
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            s.access_tokens.insert(
                access.clone(),
                (
                    format!("app:{CLIENT_ID}"),
                    s.clock.now() + ttl,
                    tenant.to_string(),
                ),
            );
            json_resp(
                200,
                json!({
                    "token_type": "Bearer",
                    "expires_in": ttl.as_secs(),
                    "ext_expires_in": ttl.as_secs(),
                    "access_token": access,
                }),
            )
        }
        "authorization_code" => {
            let code = f.get("code").cloned().unwrap_or_default();
            if s.used_codes.contains(&code) {
                return aadsts(
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed.",
                    json!({"error_codes": [70002, 54005]}),
                );
            }
            let Some(c) = s.codes.remove(&code) else {
                return aadsts(
                    400,
                    "invalid_grant",
                    70000,
                    "The provided authorization code is not valid.",
                    json!({}),
                );
            };
            s.used_codes.insert(code);
            if f.get("redirect_uri") != Some(&c.redirect_uri)
                || f.get("client_id") != Some(&c.client_id)
            {
                return aadsts(
                    400,
                    "invalid_grant",
                    50011,
                    "The redirect URI does not match.",
                    json!({}),
                );
            }
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
            if c.challenge.as_deref() != Some(URL_SAFE_NO_PAD.encode(digest.as_ref()).as_str()) {
                return aadsts(
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    json!({}),
                );
            }
            issue(base, k, ttl, c.nonce, s)
        }
        "refresh_token" => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            s.redeemed_refresh.push(rt.clone());
            if let Some(refused) = cae_unsatisfied(&f, s) {
                return refused;
            }
            match mode {
                Mode::Revoked => aadsts(
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
                    json!({}),
                ),
                Mode::Mfa => aadsts(
                    400,
                    "invalid_grant",
                    50076,
                    "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '499b84ac-1321-427f-aa17-267ca6975798'.",
                    json!({"suberror": "basic_action", "claims": MFA_CLAIMS}),
                ),
                _ if s.refresh_tokens.get(&rt) == Some(&true) => {
                    if s.strict_rotation {
                        s.refresh_tokens.insert(rt, false);
                    }
                    issue(base, k, ttl, None, s)
                }
                _ if s.refresh_tokens.get(&rt) == Some(&false) => {
                    s.reuses += 1;
                    aadsts(
                        400,
                        "invalid_grant",
                        70000,
                        "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid.",
                        json!({}),
                    )
                }
                _ => aadsts(
                    400,
                    "invalid_grant",
                    70000,
                    "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid.",
                    json!({}),
                ),
            }
        }
        _ => aadsts(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
            json!({}),
        ),
    }
}

/// After a CAE revocation: the refusal of a token request that does not
/// ask for the demanded claims (or of any, while only the user can
/// satisfy them); `None` lets it through and ends the demand.
pub(super) fn cae_unsatisfied(
    f: &HashMap<String, String>,
    s: &mut State,
) -> Option<http::Response<FakeBody>> {
    let required = s.cae_claims.clone()?;
    if s.cae_interaction {
        return Some(aadsts(
            400,
            "invalid_grant",
            50076,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '499b84ac-1321-427f-aa17-267ca6975798'.",
            json!({"suberror": "basic_action"}),
        ));
    }
    if !f.get("claims").is_some_and(|c| claims_cover(c, &required)) {
        return Some(aadsts(
            400,
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
            json!({}),
        ));
    }
    s.cae_claims = None;
    None
}

/// Whether the `claims` request asks for every member of `required`'s
/// `access_token` (as Entra checks a claims challenge was echoed).
pub(super) fn claims_cover(asked: &str, required: &str) -> bool {
    let (Ok(asked), Ok(required)) = (
        serde_json::from_str::<serde_json::Value>(asked),
        serde_json::from_str::<serde_json::Value>(required),
    ) else {
        return false;
    };
    required["access_token"]
        .as_object()
        .is_some_and(|want| want.iter().all(|(k, v)| asked["access_token"][k] == *v))
}

/// A v2 token response; Entra keeps earlier refresh tokens redeemable.
pub(super) fn issue(
    base: &str,
    k: &Knobs,
    ttl: Duration,
    nonce: Option<String>,
    s: &mut State,
) -> http::Response<FakeBody> {
    let user = &k.user;
    // `organizations` issues from the user's home directory.
    let tenant = match s.token_tenants.last().map(String::as_str) {
        Some(t) if t != "organizations" => t.to_string(),
        _ => user.tid.clone(),
    };
    let access = new_token(s, "at");
    let refresh = new_token(s, "rt");
    s.access_tokens.insert(
        access.clone(),
        (user.upn.clone(), s.clock.now() + ttl, tenant),
    );
    s.refresh_tokens.insert(refresh.clone(), true);
    s.issued_refresh.push(refresh.clone());
    if let Some(scope) = s.asked_scope.take() {
        s.token_scopes.insert(access.clone(), scope);
    }
    let mut body = json!({
        "token_type": "Bearer",
        "scope": "499b84ac-1321-427f-aa17-267ca6975798/user_impersonation",
        "expires_in": ttl.as_secs(),
        "ext_expires_in": ttl.as_secs(),
        "access_token": access,
        "refresh_token": refresh,
    });
    body["id_token"] = json!(id_token_for(base, k, nonce));
    json_resp(200, body)
}

pub(super) fn id_token_for(base: &str, k: &Knobs, nonce: Option<String>) -> String {
    let user = &k.user;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(k.kid.clone());
    let mut claims = json!({
        "aud": CLIENT_ID,
        "iss": format!("{base}/{}/v2.0", user.tid),
        "iat": now, "nbf": now, "exp": now + 3600,
        "sub": format!("sub-{}", user.oid),
        "oid": user.oid, "tid": user.tid,
        "preferred_username": user.upn, "name": user.name,
        "ver": "2.0",
    });
    if let Some(c) = claims.as_object_mut() {
        c.extend(user.extra.clone());
    }
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    let mut key_file = &keys().signing_key;
    match k.flaw {
        IdTokenFlaw::None => {}
        IdTokenFlaw::WrongAudience => claims["aud"] = json!("another-app"),
        IdTokenFlaw::WrongIssuer => claims["iss"] = json!("https://evil.example/v2.0"),
        IdTokenFlaw::Expired => {
            claims["iat"] = json!(now - 7200);
            claims["nbf"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
        }
        IdTokenFlaw::WrongNonce => claims["nonce"] = json!("replayed-nonce"),
        IdTokenFlaw::ForeignKey => key_file = &keys().foreign_key,
    }
    let key = EncodingKey::from_rsa_pem(&std::fs::read(key_file).unwrap()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}
