//! Reading what an identity provider said from any body it (or a
//! gateway in front of it) sent: Entra's JSON error, the legacy
//! PascalCase one, an App Service managed-identity answer
//! (`statusCode`/`message`/`correlationId`), an `{"error":{"code",
//! "message"}}` wrapper, a JSON body quoted inside another one's field,
//! a form-encoded error, JSON cut off mid-way, or plain text and HTML
//! that only carry an `AADSTS<n>: ...` line. Bodies are untrusted: the
//! reader is bounded and total (property-tested).

use serde_json::{Map, Value};

use super::ProviderSaid;
use super::markup::{strip_tags, unescape};

/// Most bytes of a body read: Entra's answers are a few KiB.
const MAX_READ: usize = 64 * 1024;
/// Nesting followed into quoted JSON bodies (`responseBody`).
const MAX_DEPTH: usize = 3;
/// Longest text kept of a field (the answer cuts further).
const MAX_TEXT: usize = 4000;

/// Words of managed-identity endpoints that carry no AADSTS code but say
/// the identity is not there: IMDS and App Service.
pub const IDENTITY_MISSING: &[&str] = &[
    "Identity not found",
    "Unable to load the proper Managed Identity",
    "Unable to load the requested Managed Identity",
];

/// What `body` says, if anything the catalog can use: an `error`, an
/// AADSTS code, or a managed-identity phrase. `None` for a body without
/// any (an HTML error page of a gateway, an empty body).
pub fn read(body: &[u8]) -> Option<ProviderSaid> {
    let body = &body[..body.len().min(MAX_READ)];
    let text = String::from_utf8_lossy(body);
    let said = match serde_json::from_str::<Value>(text.trim()) {
        Ok(v) => from_json(&v, 0).unwrap_or_else(|| from_text(&text)),
        Err(_) => from_form(text.trim()).unwrap_or_else(|| from_text(&text)),
    };
    useful(&said).then_some(said)
}

/// The `error` values of OAuth 2.0 (RFC 6749 §4.1.2.1 and §5.2), device
/// authorization (RFC 8628), OpenID Connect, resource indicators
/// (RFC 8707) and Entra's `invalid_resource`, `authorization_declined`
/// and `bad_verification_code`. An `error` outside them
/// (a gateway's `{"error":{"code":"Forbidden"}}`, a page's script) is not
/// a provider's refusal.
const OAUTH_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "authorization_pending",
    "authorization_declined",
    "bad_verification_code",
    "slow_down",
    "expired_token",
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
    "invalid_target",
    "invalid_resource",
];

/// Whether a body said something a provider says: an OAuth `error`, an
/// AADSTS code, or a managed-identity phrase.
fn useful(s: &ProviderSaid) -> bool {
    OAUTH_ERRORS.contains(&s.error.as_str())
        || !s.all_codes().is_empty()
        || IDENTITY_MISSING.iter().any(|p| s.description.contains(p))
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

fn str_field<'a>(o: &'a Map<String, Value>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| o.get(*n).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// A JSON value: an error object (any of the known shapes), a quoted
/// body, or a string of text.
fn from_json(v: &Value, depth: usize) -> Option<ProviderSaid> {
    if depth > MAX_DEPTH {
        return None;
    }
    match v {
        Value::String(s) => {
            let inner = serde_json::from_str::<Value>(s.trim()).ok();
            match inner.and_then(|i| from_json(&i, depth + 1)) {
                Some(said) => Some(said),
                None => Some(from_text(s)).filter(useful),
            }
        }
        Value::Object(o) => from_object(o, depth),
        Value::Array(items) => items.iter().find_map(|i| from_json(i, depth + 1)),
        _ => None,
    }
}

fn from_object(o: &Map<String, Value>, depth: usize) -> Option<ProviderSaid> {
    // An `error` object: `{"error":{"code":"...","message":"..."}}`.
    if let Some(Value::Object(inner)) = o.get("error").or_else(|| o.get("Error")) {
        let mut said = from_object(inner, depth + 1).unwrap_or_default();
        if said.error.is_empty() {
            said.error = str_field(inner, &["code", "Code"])
                .map(cut)
                .unwrap_or_default();
        }
        if said.description.is_empty() {
            said.description = str_field(inner, &["message", "Message"])
                .map(cut)
                .unwrap_or_default();
        }
        return Some(said).filter(useful);
    }
    let error = str_field(o, &["error", "Error"])
        .map(cut)
        .unwrap_or_default();
    let description = str_field(
        o,
        &[
            "error_description",
            "ErrorDescription",
            "message",
            "Message",
        ],
    )
    .map(cut)
    .unwrap_or_default();
    let codes: Vec<u64> = o
        .get("error_codes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).take(16).collect())
        .unwrap_or_default();
    let ids: Vec<(String, String)> = [
        ("Trace ID", &["trace_id", "traceId"][..]),
        ("Correlation ID", &["correlation_id", "correlationId"][..]),
        ("Timestamp", &["timestamp"][..]),
    ]
    .into_iter()
    .filter_map(|(label, names)| Some((label.to_string(), cut(str_field(o, names)?))))
    .collect();
    let said = ProviderSaid {
        error,
        codes,
        description,
        suberror: str_field(o, &["suberror"]).map(cut),
        ids,
    };
    if useful(&said) {
        return Some(said);
    }
    // A gateway's wrapper around the provider's body: its string or
    // object fields (`responseBody`, `content`, `details`).
    o.values()
        .filter(|v| v.is_string() || v.is_object() || v.is_array())
        .find_map(|v| from_json(v, depth + 1))
}

/// `error=invalid_client&error_description=AADSTS...` (a redirect's
/// query pasted as a body, or a form-encoding gateway).
fn from_form(text: &str) -> Option<ProviderSaid> {
    if !text.starts_with("error=") && !text.contains("&error=") {
        return None;
    }
    let mut said = ProviderSaid::default();
    for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
        match k.as_ref() {
            "error" => said.error = cut(&v),
            "error_description" => said.description = cut(&v),
            "error_codes" => {
                said.codes = v
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse().ok())
                    .take(16)
                    .collect();
            }
            "error_subcode" | "suberror" => said.suberror = Some(cut(&v)),
            _ => {}
        }
    }
    Some(said).filter(useful)
}

/// Text that is not JSON: JSON cut off (its `"error"` and
/// `"error_description"` read up to where it ends), HTML (its text), or
/// plain text; the description is the first line naming an AADSTS code
/// (or a managed-identity phrase).
fn from_text(text: &str) -> ProviderSaid {
    let mut said = ProviderSaid {
        error: json_string_after(text, "\"error\"")
            .or_else(|| json_string_after(text, "\"Error\""))
            .unwrap_or_default(),
        description: json_string_after(text, "\"error_description\"")
            .or_else(|| json_string_after(text, "\"ErrorDescription\""))
            .unwrap_or_default(),
        ..ProviderSaid::default()
    };
    if (said.description.is_empty() || !said.description.contains("AADSTS"))
        && let Some(line) = telling_line(text)
    {
        said.description = line;
    }
    if said.description.is_empty() && !said.error.is_empty() {
        said.description.clone_from(&said.error);
    }
    said
}

/// The line from the first `AADSTS<n>` (or managed-identity phrase) on,
/// with Entra's `Trace ID:` lines after it kept.
fn telling_line(text: &str) -> Option<String> {
    let start = text
        .match_indices("AADSTS")
        .map(|(i, _)| i)
        .find(|i| text[i + 6..].starts_with(|c: char| c.is_ascii_digit()))
        .or_else(|| IDENTITY_MISSING.iter().find_map(|p| text.find(p)))?;
    let rest = &text[start..];
    let end = rest.find(['\n', '"', '<']).unwrap_or(rest.len());
    let mut line = unescape(rest[..end].trim_end());
    // Entra's ids follow the description on their own lines, or on the
    // same line when an intermediary flattened it.
    for label in ["Trace ID: ", "Correlation ID: ", "Timestamp: "] {
        if !line.contains(label)
            && let Some(i) = rest.find(label)
        {
            let v: String = rest[i..]
                .chars()
                .take_while(|c| !matches!(c, '\r' | '\n' | '"' | '<'))
                .collect();
            line.push_str("\r\n");
            line.push_str(&v);
        }
    }
    Some(cut(&line))
}

/// The (JSON-escaped) string value after `key` and a colon, read to its
/// closing quote or, when the body was cut, to the end.
fn json_string_after(text: &str, key: &str) -> Option<String> {
    let i = text.find(key)? + key.len();
    let rest = text[i..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        out.push(c);
                    }
                }
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
        if out.len() >= MAX_TEXT {
            break;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The `error` given to a legacy Azure DevOps OAuth answer that says the
/// flow itself is gone (no OAuth provider sends it).
pub const LEGACY_RETIRED: &str = "legacy_oauth_retired";

/// Words of an answer that says a service was retired. Microsoft has not
/// published what the legacy token endpoint will answer once the flow
/// ends; these are the words such notices use.
const RETIRED_WORDS: &[&str] = &[
    "deprecated",
    "retired",
    "no longer supported",
    "no longer available",
    "discontinued",
    "end of life",
];

/// Most characters of the retirement notice kept.
const MAX_NOTICE: usize = 300;

/// Whether an answer of the legacy Azure DevOps OAuth token endpoint says
/// the flow is gone: 404 or 410 (the endpoint no longer exists), or any
/// refusal whose text says deprecated, retired, no longer supported.
/// What it said, as an OAuth error [`LEGACY_RETIRED`] whose description
/// is the notice (or the status), for the catalog.
pub fn legacy_retired(status: u16, body: &[u8]) -> Option<ProviderSaid> {
    let gone = matches!(status, 404 | 410);
    // A 5xx or 429 is passing, whatever its page says; a refusal of the
    // grant itself (a dead refresh token) is the user's, whatever words
    // its description uses.
    if !gone && (!(400..500).contains(&status) || status == 429 || refuses_the_grant(body)) {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_READ)]);
    let notice = retirement_notice(&text);
    if notice.is_none() && !gone {
        return None;
    }
    let description = notice.unwrap_or_else(|| {
        format!(
            "the legacy token endpoint answered HTTP {status}: it no longer exists (or \
             auth.authority_host points elsewhere)"
        )
    });
    Some(ProviderSaid {
        error: LEGACY_RETIRED.to_string(),
        description,
        ..ProviderSaid::default()
    })
}

/// Whether `body` is an OAuth refusal of the grant (or of the user), not
/// of the client or the flow.
fn refuses_the_grant(body: &[u8]) -> bool {
    read(body).is_some_and(|s| {
        matches!(
            s.error.as_str(),
            "invalid_grant"
                | "invalid_request"
                | "access_denied"
                | "interaction_required"
                | "login_required"
                | "consent_required"
        )
    })
}

/// The sentence of `text` (markup removed) that carries a retirement word.
fn retirement_notice(text: &str) -> Option<String> {
    let plain = unescape(&strip_tags(text));
    let lower = plain.to_ascii_lowercase();
    let at = RETIRED_WORDS.iter().filter_map(|w| lower.find(w)).min()?;
    let start = lower[..at]
        .rfind(['.', '\n', '"', '{', ':'])
        .map_or(0, |i| i + 1);
    // The sentence's full stop is kept; a quote or line end is not.
    let end = lower[at..].find(['.', '\n', '"']).map_or(lower.len(), |i| {
        at + i + usize::from(lower[at + i..].starts_with('.'))
    });
    let notice: String = plain[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_NOTICE)
        .collect();
    (!notice.is_empty()).then_some(notice)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "Trace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333";

    #[test]
    fn every_shape_gives_its_code_error_and_words() {
        // Entra's own JSON.
        let s = read(br#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app '4b7c5e8a' are expired.\r\nTrace ID: t\r\nCorrelation ID: c","error_codes":[7000222],"correlation_id":"c"}"#).unwrap();
        assert_eq!(
            (s.error.as_str(), s.codes.as_slice()),
            ("invalid_client", &[7000222][..])
        );
        assert_eq!(s.ids, [("Correlation ID".to_string(), "c".to_string())]);
        // Only the description line, as a gateway logged it.
        let s = read(format!("AADSTS7000222: The provided client secret keys for app '4b7c5e8a' are expired. Visit the Azure portal to create new keys for your app.\n{TRACE}\n").as_bytes()).unwrap();
        assert_eq!(s.all_codes(), [7000222]);
        assert!(s.error.is_empty());
        assert!(
            s.description.starts_with("AADSTS7000222: The provided"),
            "{}",
            s.description
        );
        assert!(s.description.contains(TRACE), "{}", s.description);
        // Cut in the middle of the description.
        let s = read(br#"{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:tools:proxy'. Check your feder"#).unwrap();
        assert_eq!(s.error, "invalid_client");
        assert_eq!(s.all_codes(), [700213]);
        // Redacted: the description replaced, the code kept.
        let s = read(
            br#"{"error":"invalid_grant","error_description":"[REDACTED]","error_codes":[50076]}"#,
        )
        .unwrap();
        assert_eq!(s.all_codes(), [50076]);
        // Wrapped by an intermediary, the provider's body quoted.
        let s = read(br#"{"message":"Login failed","statusCode":401,"responseBody":"{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7002137: No matching federated identity record found for presented assertion subject 'x'.\",\"error_codes\":[7002137]}"}"#).unwrap();
        assert_eq!(
            (s.error.as_str(), s.all_codes()),
            ("invalid_client", vec![7002137])
        );
        // An ARM-style error object.
        let s = read(br#"{"error":{"code":"AuthenticationFailed","message":"AADSTS500011: The resource principal named 499b84ac-1321-427f-aa17-267ca6975798 was not found in the tenant named Contoso."}}"#).unwrap();
        assert_eq!(s.error, "AuthenticationFailed");
        assert_eq!(s.all_codes(), [500011]);
        // App Service's managed-identity answer.
        let s = read(br#"{"statusCode":400,"message":"Unable to load the proper Managed Identity.","correlationId":"bf68136a-73f7-4ca4-9903-9ee8af3ab2ee"}"#).unwrap();
        assert_eq!(s.message(), "Unable to load the proper Managed Identity.");
        assert_eq!(s.ids[0].1, "bf68136a-73f7-4ca4-9903-9ee8af3ab2ee");
        // A gateway's HTML page quoting the code.
        let s = read(b"<html><body><h1>502</h1><p>upstream said AADSTS50097: Device authentication is required.</p></body></html>").unwrap();
        assert_eq!(s.all_codes(), [50097]);
        assert_eq!(
            s.message(),
            "AADSTS50097: Device authentication is required."
        );
        // Form-encoded.
        let s = read(b"error=access_denied&error_description=AADSTS53000%3A+Device+is+not+in+required+device+state").unwrap();
        assert_eq!(
            (s.error.as_str(), s.all_codes()),
            ("access_denied", vec![53000])
        );
        // Legacy Azure DevOps OAuth.
        let s = read(br#"{"Error":"invalid_client","ErrorDescription":"Invalid client secret"}"#)
            .unwrap();
        assert_eq!(s.error, "invalid_client");
        // Nothing to read.
        for nothing in [
            &b""[..],
            b"<html>busy</html>",
            b"{}",
            b"[]",
            b"null",
            b"Service Unavailable",
            b"AADSTS: no digits",
        ] {
            assert!(
                read(nothing).is_none(),
                "{}",
                String::from_utf8_lossy(nothing)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_body_is_read_safely(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            if let Some(s) = read(&raw) {
                proptest::prop_assert!(s.description.chars().count() <= MAX_TEXT);
                proptest::prop_assert!(s.error.chars().count() <= MAX_TEXT);
            }
        }

        #[test]
        fn a_code_anywhere_in_text_is_found(
            before in "[a-zA-Z {}\":,<>/]{0,40}",
            code in 10_000u64..10_000_000,
            after in "[a-zA-Z .:]{0,40}",
        ) {
            let body = format!("{before}AADSTS{code}: {after}");
            let s = read(body.as_bytes());
            proptest::prop_assert!(s.is_some(), "{}", body);
            proptest::prop_assert!(s.unwrap().all_codes().contains(&code), "{}", body);
        }
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        let mut deep = String::from("\"AADSTS50076: x\"");
        for _ in 0..12 {
            deep = serde_json::to_string(&deep).unwrap();
        }
        let _ = read(deep.as_bytes());
        let huge = format!("{}AADSTS50076: late", "x".repeat(200_000));
        assert!(read(huge.as_bytes()).is_none(), "past the read limit");
    }

    #[test]
    fn a_retired_legacy_endpoint_is_told_from_an_ordinary_refusal() {
        // Gone: 404 and 410, whatever the body.
        for status in [404, 410] {
            let s = legacy_retired(status, b"<html><body>Not Found</body></html>").unwrap();
            assert_eq!(s.error, LEGACY_RETIRED);
            assert!(
                s.description.contains(&status.to_string()),
                "{}",
                s.description
            );
        }
        // A notice in a page or in JSON, at any refusal status: its sentence.
        let page = b"<html><head><title>Error</title></head><body><h1>Azure DevOps OAuth</h1><p>Azure DevOps OAuth has been retired. Use Microsoft Entra ID.</p></body></html>";
        let s = legacy_retired(400, page).unwrap();
        assert_eq!(s.description, "Azure DevOps OAuth has been retired.");
        let json = br#"{"Error":"unsupported_grant_type","ErrorDescription":"This grant is no longer supported by Azure DevOps OAuth"}"#;
        let s = legacy_retired(400, json).unwrap();
        assert_eq!(
            s.description,
            "This grant is no longer supported by Azure DevOps OAuth"
        );
        // Markup and entities do not reach the notice; it is bounded.
        let s = legacy_retired(
            403,
            b"<p><b>OAuth</b> is <i>deprecated</i> &amp; retired</p>",
        )
        .unwrap();
        assert_eq!(s.description, "OAuth is deprecated & retired");
        let s = legacy_retired(403, format!("{} deprecated", "x".repeat(5000)).as_bytes()).unwrap();
        assert_eq!(s.description.chars().count(), MAX_NOTICE);
        // Ordinary refusals, passing failures and successes are not the
        // retirement, whatever words they use.
        for (status, body) in [
            (
                400,
                &br#"{"Error":"invalid_grant","ErrorDescription":"Refresh token issued for a retired token format"}"#[..],
            ),
            (
                401,
                br#"{"Error":"invalid_grant","ErrorDescription":"the authorization was discontinued by the user"}"#,
            ),
            (503, b"<p>Internet Explorer is no longer supported.</p>"),
            (429, b"rate-limit headers are deprecated"),
            (
                400,
                br#"{"Error":"invalid_request","ErrorDescription":"Refresh token is invalid"}"#,
            ),
            (401, b"<html>Unauthorized</html>"),
            (503, b"Service Unavailable"),
            (200, b"deprecated"),
        ] {
            assert_eq!(legacy_retired(status, body), None, "{status}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_retirement_reader_is_total_and_bounded(status in 0u16..1000, body in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            if let Some(s) = legacy_retired(status, &body) {
                proptest::prop_assert!(s.description.chars().count() <= MAX_NOTICE.max(80));
            }
        }
    }
}
