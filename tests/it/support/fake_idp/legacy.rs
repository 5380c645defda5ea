//! The fake's legacy Azure DevOps OAuth endpoints (reference §3).

use super::*;

pub(super) fn legacy_authorize(r: &Recorded, s: &mut State) -> http::Response<FakeBody> {
    let q = query(&r.uri);
    s.authorize_queries.push(q.clone());
    if q.get("response_type").map(String::as_str) != Some("Assertion") {
        return respond(
            400,
            &[("content-type", "text/html")],
            "<html><title>400</title>response_type must be Assertion</html>",
        );
    }
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let code = new_token(s, "legacy-code");
    s.codes.insert(
        code.clone(),
        Code {
            client_id: q.get("client_id").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            challenge: None,
            nonce: None,
        },
    );
    let mut to = url::Url::parse(&redirect_uri).unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map_or("", String::as_str));
    redirect(to.to_string())
}

pub(super) fn legacy_error(error: &str, description: &str) -> http::Response<FakeBody> {
    json_resp(
        400,
        json!({"Error": error, "ErrorDescription": description}),
    )
}

pub(super) fn legacy_token(
    r: &Recorded,
    mode: Mode,
    user: &User,
    ttl: Duration,
    s: &mut State,
) -> http::Response<FakeBody> {
    let content_type = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return respond(400, &[], "");
    }
    let f = form(&r.body);
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    // The endpoint as it may answer once Microsoft ends the flow.
    if let Mode::Raw(status, body) = mode {
        *s.token_calls.entry("legacy_raw".into()).or_default() += 1;
        return respond(status, &[("content-type", "text/html")], body);
    }
    if f.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        || f.get("client_assertion").map(String::as_str) != Some(LEGACY_SECRET)
        || mode == Mode::InvalidClient
    {
        *s.token_calls
            .entry("legacy_invalid_client".into())
            .or_default() += 1;
        return legacy_error(
            "invalid_client",
            "Failed to deserialize the JsonWebToken object.",
        );
    }
    let assertion = f.get("assertion").cloned().unwrap_or_default();
    match grant.as_str() {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            *s.token_calls.entry("legacy_code".into()).or_default() += 1;
            if s.codes.remove(&assertion).is_none() {
                return legacy_error("invalid_grant", "The authorization code is not valid.");
            }
        }
        "refresh_token" => {
            *s.token_calls.entry("legacy_refresh".into()).or_default() += 1;
            s.redeemed_refresh.push(assertion.clone());
            // Treated as single-use (reference §3.2): redeeming retires it.
            if s.refresh_tokens.insert(assertion.clone(), false) != Some(true)
                || mode == Mode::Revoked
            {
                return legacy_error("invalid_request", "The access token is not valid");
            }
        }
        _ => return legacy_error("unsupported_grant_type", "grant_type is not supported"),
    }
    let access = new_token(s, "legacy-at");
    let refresh = new_token(s, "legacy-rt");
    s.access_tokens.insert(
        access.clone(),
        (user.upn.clone(), s.clock.now() + ttl, String::new()),
    );
    s.refresh_tokens.insert(refresh.clone(), true);
    s.issued_refresh.push(refresh.clone());
    json_resp(
        200,
        json!({
            "access_token": access,
            "token_type": "jwt-bearer",
            "expires_in": ttl.as_secs().to_string(),
            "refresh_token": refresh,
            "scope": "vso.code vso.profile",
        }),
    )
}
