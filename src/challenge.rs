//! Bearer challenges in `WWW-Authenticate` (RFC 6750 §3) and the claims
//! they may carry.
//!
//! Since Continuous Access Evaluation (CAE), Azure DevOps can refuse an
//! access token before it expires (the user was disabled, their password
//! reset, an IP or location policy changed) with a 401 whose challenge
//! says `error="insufficient_claims"` and carries `claims="<base64
//! JSON>"`. A client that announced the capability `cp1` gets such
//! challenges and must ask the identity provider again *with* those
//! claims. Format: Microsoft Learn, "Claims challenges, claims requests,
//! and client capabilities" (Entra identity platform).
//!
//! The same answers name the organization's directory ([`directory`]):
//! the Bearer challenge's `authorization_uri` and `X-VSS-ResourceTenant`,
//! read in the order Git Credential Manager reads them.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use http::HeaderMap;
use http::header::WWW_AUTHENTICATE;
use serde_json::{Value, json};

/// The longest claims value read from a challenge.
const MAX_CLAIMS: usize = 16 * 1024;

/// The decoded claims of an `insufficient_claims` Bearer challenge in
/// `headers`, as a JSON text; `None` when there is none or it is not a
/// JSON object.
pub fn insufficient_claims(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let params = bearer_params(v)?;
            let error = param(&params, "error")?;
            if !error.eq_ignore_ascii_case("insufficient_claims") {
                return None;
            }
            decode_claims(param(&params, "claims")?)
        })
}

/// The Entra directory an Azure DevOps organization belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directory {
    /// An Entra tenant: its id, lowercase.
    Tenant(String),
    /// A Microsoft-account-backed organization: `X-VSS-ResourceTenant` is
    /// the empty GUID, and tokens come through the `organizations`
    /// authority (Microsoft-account pass-through).
    MicrosoftAccount,
}

/// The organization's directory as an Azure DevOps answer (a 401, or the
/// answer to an unauthenticated request) names it: the tenant of a
/// `Bearer authorization_uri=…/{tenant}` challenge first, then the first
/// `X-VSS-ResourceTenant` value that is a tenant, then a single empty
/// GUID (a Microsoft-account organization). `None` when neither says.
pub fn directory(headers: &HeaderMap) -> Option<Directory> {
    const EMPTY: uuid::Uuid = uuid::Uuid::nil();
    let from_challenge = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(bearer_params)
        .find_map(|params| {
            let uri = param(&params, "authorization_uri")?;
            let last = uri.trim_end_matches('/').rsplit('/').next()?;
            uuid::Uuid::parse_str(last).ok().filter(|id| *id != EMPTY)
        });
    if let Some(id) = from_challenge {
        return Some(Directory::Tenant(id.to_string()));
    }
    let listed: Vec<&str> = headers
        .get_all("x-vss-resourcetenant")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let ids: Vec<Option<uuid::Uuid>> = listed
        .iter()
        .map(|t| uuid::Uuid::parse_str(t).ok())
        .collect();
    if let Some(id) = ids.iter().flatten().find(|id| **id != EMPTY) {
        return Some(Directory::Tenant(id.to_string()));
    }
    (ids.len() == 1 && ids[0] == Some(EMPTY)).then_some(Directory::MicrosoftAccount)
}

/// The `claims` request parameter: the challenge's claims (if any) with
/// the `cp1` capability merged into their `access_token` member.
pub fn claims_request(challenge: Option<&str>) -> String {
    let mut doc = challenge
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let access = doc
        .as_object_mut()
        .map(|o| o.entry("access_token").or_insert_with(|| json!({})));
    if let Some(access) = access {
        if !access.is_object() {
            *access = json!({});
        }
        let values = &mut access["xms_cc"]["values"];
        match values.as_array_mut() {
            Some(list) if list.iter().any(|v| v == "cp1") => {}
            Some(list) => list.push(json!("cp1")),
            None => *values = json!(["cp1"]),
        }
    }
    doc.to_string()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn decode_claims(value: &str) -> Option<String> {
    if value.len() > MAX_CLAIMS {
        return None;
    }
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(value).ok())?;
    let doc: Value = serde_json::from_slice(&bytes).ok()?;
    doc.is_object().then(|| doc.to_string())
}

/// The parameters of the first `Bearer` challenge in a `WWW-Authenticate`
/// value, which may hold several challenges (`Bearer a="1", Basic
/// realm="x"`). Quoted strings may contain commas and `\"`.
pub fn bearer_params(value: &str) -> Option<Vec<(String, String)>> {
    let mut rest = value.trim_start();
    loop {
        let (scheme, after) = token(rest);
        if scheme.is_empty() {
            return None;
        }
        let (params, next) = auth_params(after);
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(params);
        }
        rest = next?;
    }
}

/// `name=value` pairs until the next challenge's scheme; returns them and
/// the text from that scheme on.
fn auth_params(mut s: &str) -> (Vec<(String, String)>, Option<&str>) {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            return (out, None);
        }
        let (name, after) = token(s);
        let after_ws = after.trim_start();
        let Some(value_part) = after_ws.strip_prefix('=') else {
            // A token not followed by `=` starts the next challenge.
            return (out, (!name.is_empty()).then_some(s));
        };
        if name.is_empty() {
            return (out, None);
        }
        let value_part = value_part.trim_start();
        let (value, rest) = match value_part.strip_prefix('"') {
            Some(quoted) => quoted_string(quoted),
            None => {
                let end = value_part
                    .find([',', ' ', '\t'])
                    .unwrap_or(value_part.len());
                (value_part[..end].to_string(), &value_part[end..])
            }
        };
        out.push((name.to_string(), value));
        s = rest;
    }
}

/// A token (RFC 9110 `tchar`s) at the start of `s`, and what follows.
fn token(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
        .unwrap_or(s.len());
    s.split_at(end)
}

/// The content of a quoted string whose opening quote was consumed, and
/// what follows its closing quote (an unterminated one runs to the end).
fn quoted_string(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &s[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    out.push(escaped);
                }
            }
            c => out.push(c),
        }
    }
    (out, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    /// Microsoft's documented example challenge.
    const LEARN: &str = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiY3AxIn19fQ==""#;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_documented_challenge_is_read() {
        let claims = insufficient_claims(&headers(&[LEARN])).unwrap();
        let v: Value = serde_json::from_str(&claims).unwrap();
        assert_eq!(v["access_token"]["acrs"]["value"], "cp1");
        // Among other challenges, in one header or several.
        let mixed = format!("Basic realm=\"https://x.visualstudio.com/\", {LEARN}, TFS-Federated");
        assert_eq!(
            insufficient_claims(&headers(&[&mixed])),
            Some(claims.clone())
        );
        assert_eq!(
            insufficient_claims(&headers(&["Basic realm=\"a, b\"", LEARN])),
            Some(claims)
        );
    }

    #[test]
    fn other_challenges_are_not_claims_challenges() {
        for v in [
            "Bearer authorization_uri=https://login.microsoftonline.com/common",
            r#"Bearer error="invalid_token", claims="e30=""#,
            r#"Bearer error="insufficient_claims", claims="not base64!""#,
            r#"Bearer error="insufficient_claims", claims="WzFd""#,
            r#"Basic error="insufficient_claims", claims="e30=""#,
            "",
        ] {
            assert_eq!(insufficient_claims(&headers(&[v])), None, "{v}");
        }
    }

    #[test]
    fn the_capability_is_merged_into_a_challenge() {
        // The capability alone, as MSAL announces it.
        assert_eq!(
            claims_request(None),
            r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#
        );
        let merged: Value = serde_json::from_str(&claims_request(Some(
            r#"{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}"#,
        )))
        .unwrap();
        assert_eq!(merged["access_token"]["nbf"]["value"], "1700000000");
        assert_eq!(merged["access_token"]["xms_cc"]["values"], json!(["cp1"]));
        let twice: Value =
            serde_json::from_str(&claims_request(Some(&claims_request(None)))).unwrap();
        assert_eq!(twice["access_token"]["xms_cc"]["values"], json!(["cp1"]));
        // Garbage is replaced by the bare capability.
        assert_eq!(claims_request(Some("[1]")), claims_request(None));
    }

    #[test]
    fn quoted_strings_keep_commas_and_escapes() {
        let p = bearer_params(r#"Bearer a="x, \"y\"", b=plain, c="""#).unwrap();
        assert_eq!(
            p,
            vec![
                ("a".into(), "x, \"y\"".into()),
                ("b".into(), "plain".into()),
                ("c".into(), "".into())
            ]
        );
    }

    /// Git Credential Manager's order: a tenant in the Bearer challenge,
    /// then `X-VSS-ResourceTenant`; one empty GUID is a Microsoft-account
    /// organization.
    #[test]
    fn the_organizations_directory_is_read_as_git_credential_manager_does() {
        const T: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
        const U: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        const EMPTY: &str = "00000000-0000-0000-0000-000000000000";
        let with = |challenge: &[&str], tenants: &[&str]| {
            let mut h = headers(challenge);
            for t in tenants {
                h.append("x-vss-resourcetenant", HeaderValue::from_str(t).unwrap());
            }
            directory(&h)
        };
        let tenant = |t: &str| Some(Directory::Tenant(t.to_string()));
        let upper = format!(
            "Bearer authorization_uri=https://login.microsoftonline.com/{}",
            T.to_uppercase()
        );
        assert_eq!(with(&[&upper], &[U]), tenant(T), "the challenge first");
        let common = "Bearer authorization_uri=\"https://login.microsoftonline.com/common\"";
        assert_eq!(with(&[common, "Basic realm=\"x\""], &[U]), tenant(U));
        assert_eq!(with(&[], &[&format!("{EMPTY}, {T}")]), tenant(T));
        assert_eq!(with(&[], &[EMPTY, U]), tenant(U));
        assert_eq!(with(&[common], &[EMPTY]), Some(Directory::MicrosoftAccount));
        assert_eq!(
            with(&[], &[EMPTY, EMPTY]),
            None,
            "only a single empty GUID is MSA"
        );
        assert_eq!(with(&[], &["not-a-guid"]), None);
        assert_eq!(with(&[common], &[]), None);
        let empty_uri =
            format!("Bearer authorization_uri=https://login.microsoftonline.com/{EMPTY}");
        assert_eq!(with(&[&empty_uri], &[]), None);
    }

    proptest! {
        #[test]
        fn any_header_value_is_parsed_without_panicking(v in "\\PC{0,200}") {
            let _ = bearer_params(&v);
            if let Ok(h) = HeaderValue::from_str(&v) {
                let mut map = HeaderMap::new();
                map.insert(WWW_AUTHENTICATE, h.clone());
                let _ = insufficient_claims(&map);
                let _ = directory(&map);
                map.insert("x-vss-resourcetenant", h);
                let _ = directory(&map);
            }
        }

        #[test]
        fn a_challenge_round_trips_among_others(
            before in prop::sample::select(vec!["", "Basic realm=\"x, y\", ", "Negotiate, "]),
            nbf in 0u64..u64::MAX,
        ) {
            let claims = json!({"access_token": {"nbf": {"essential": true, "value": nbf.to_string()}}});
            let b64 = STANDARD.encode(claims.to_string());
            let v = format!(r#"{before}Bearer realm="", error="insufficient_claims", claims="{b64}""#);
            let got = insufficient_claims(&headers(&[&v])).unwrap();
            prop_assert_eq!(serde_json::from_str::<Value>(&got).unwrap(), claims);
        }
    }
}
