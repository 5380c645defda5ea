use super::*;

fn rejected(json: &str, status: u16) -> IdpError {
    match parse_token_response(status, json.as_bytes()) {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    }
}

fn kind(f: &Failure) -> &'static str {
    match f {
        Failure::Relogin { .. } => "relogin",
        Failure::Operator { .. } => "operator",
        Failure::Transient { .. } => "transient",
    }
}

#[test]
fn classifies_by_error_codes_and_suberror() {
    let cases = [
        (
            r#"{"error":"invalid_grant","error_codes":[50173]}"#,
            400,
            "relogin",
        ),
        (
            r#"{"error":"invalid_grant","error_codes":[700082]}"#,
            400,
            "relogin",
        ),
        (
            r#"{"error":"invalid_grant","error_codes":[70002,54005]}"#,
            400,
            "relogin",
        ),
        (
            r#"{"error":"invalid_client","error_codes":[7000222]}"#,
            401,
            "operator",
        ),
        (
            r#"{"error":"invalid_grant","error_codes":[7000215]}"#,
            400,
            "operator",
        ),
        (
            r#"{"error":"unauthorized_client","error_codes":[700016]}"#,
            400,
            "operator",
        ),
        (r#"{"error":"temporarily_unavailable"}"#, 503, "transient"),
        (
            r#"{"Error":"invalid_client","ErrorDescription":"Failed to deserialize the JsonWebToken object."}"#,
            400,
            "operator",
        ),
        (
            r#"{"Error":"invalid_request","ErrorDescription":"The access token is not valid"}"#,
            400,
            "relogin",
        ),
        ("<html>oops</html>", 500, "transient"),
        ("", 502, "transient"),
        // Not clean JSON: the code inside decides, whatever the status.
        (
            "AADSTS7000222: The provided client secret keys for app 'x' are expired.",
            500,
            "operator",
        ),
        (
            r#"{"error":"server_error","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:a:b'."}"#,
            500,
            "operator",
        ),
        (
            r#"{"error":"invalid_client","error_description":"AADSTS7002138: No matching fed"#,
            401,
            "operator",
        ),
        (
            r#"{"status":502,"responseBody":"{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS50076: Due to a configuration change made by your administrator\"}"}"#,
            502,
            "relogin",
        ),
        (
            r#"{"status":400,"responseBody":"{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS50076: Due to a configuration change made by your administrator\"}"}"#,
            400,
            "relogin",
        ),
        ("<p>AADSTS90999: something new</p>", 503, "transient"),
        (
            r#"{"error":"server_error","error_codes":[53000]}"#,
            500,
            "relogin",
        ),
        ("<html><p>Identity not found</p></html>", 503, "operator"),
        // What gateways, firewalls and pages say is no provider's
        // refusal: it is retried, as any unreadable answer.
        (
            r#"{"error":{"code":"Forbidden","message":"The request was blocked by the web application firewall."}}"#,
            403,
            "transient",
        ),
        (
            r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key."}}"#,
            401,
            "transient",
        ),
        (
            r#"<html><script>window.cfg={"error": "request_blocked"}</script></html>"#,
            403,
            "transient",
        ),
        ("error=bad_gateway_header", 400, "transient"),
        ("error=invalid_grant&error_description=gone", 400, "relogin"),
    ];
    for (body, status, want) in cases {
        let got = rejected(body, status).classify(Grant::Refresh);
        assert_eq!(kind(&got), want, "{body}");
    }
}

#[test]
fn mfa_on_refresh_passes_the_claims_challenge_on() {
    let body = r#"{"error":"invalid_grant","error_codes":[50076],"suberror":"basic_action","claims":"{\"access_token\":{\"capolids\":{\"essential\":true}}}"}"#;
    match rejected(body, 400).classify(Grant::Refresh) {
        Failure::Relogin { claims, .. } => {
            assert_eq!(
                claims.as_deref(),
                Some(r#"{"access_token":{"capolids":{"essential":true}}}"#)
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expires_in_may_be_a_string() {
    for body in [
        r#"{"access_token":"a","token_type":"jwt-bearer","expires_in":"3599","refresh_token":"r"}"#,
        r#"{"access_token":"a","token_type":"Bearer","expires_in":3599}"#,
    ] {
        let t = parse_token_response(200, body.as_bytes()).ok().unwrap();
        assert_eq!(t.expires_in, Duration::from_secs(3599));
    }
}
