//! What kind of credential a client sent itself (mode `none`), read from
//! its `Authorization` value without verifying it: only to choose the
//! explanation of a refusal, never to admit anything. Azure DevOps'
//! TF400813 means an organization policy for a legacy Azure DevOps OAuth
//! app's token ("Third-party application access via OAuth"), which does
//! not apply to Microsoft Entra tokens.

use base64::Engine;

/// The kind of a client's own credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientToken {
    /// No `Authorization`, or the proxy supplied the credential.
    None,
    /// `Basic`: a personal access token.
    Pat,
    /// A Microsoft Entra token (`iss` of `login.microsoftonline.com` or
    /// `sts.windows.net` and the sovereign clouds' hosts).
    Entra,
    /// A legacy Azure DevOps OAuth token (`iss`
    /// `app.vstoken.visualstudio.com`).
    LegacyOAuth,
    /// A bearer token whose issuer cannot be read (opaque, not a JWT).
    Unknown,
}

/// Longest `Authorization` value looked into.
const MAX_VALUE: usize = 16 * 1024;

/// Issuer hosts of Microsoft Entra tokens (public and sovereign clouds).
const ENTRA_ISSUERS: &[&str] = &[
    "login.microsoftonline.com",
    "sts.windows.net",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
    "sts.chinacloudapi.cn",
];

impl ClientToken {
    /// Every kind, for tests.
    pub const ALL: [ClientToken; 5] = [
        Self::None,
        Self::Pat,
        Self::Entra,
        Self::LegacyOAuth,
        Self::Unknown,
    ];

    /// The kind of the `Authorization` value `value`.
    pub fn of(value: Option<&[u8]>) -> Self {
        let Some(v) = value.filter(|v| v.len() <= MAX_VALUE) else {
            return if value.is_some() {
                Self::Unknown
            } else {
                Self::None
            };
        };
        let v = String::from_utf8_lossy(v);
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Self::Pat;
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Self::Unknown;
        }
        let Some(payload) = rest.trim().split('.').nth(1) else {
            return Self::Unknown;
        };
        let Ok(bytes) =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
        else {
            return Self::Unknown;
        };
        let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Self::Unknown;
        };
        let iss = claims["iss"].as_str().unwrap_or_default();
        let aud = match &claims["aud"] {
            serde_json::Value::String(a) => a.clone(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        let host = url::Url::parse(iss)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_else(|| iss.to_ascii_lowercase());
        if host == "app.vstoken.visualstudio.com" || aud.starts_with("app.vstoken.visualstudio.com")
        {
            Self::LegacyOAuth
        } else if ENTRA_ISSUERS.contains(&host.as_str()) {
            Self::Entra
        } else {
            Self::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("Bearer {}.{}.sig", b(r#"{"alg":"RS256"}"#), b(claims))
    }

    #[test]
    fn tells_the_kinds_apart() {
        let of = |v: &str| ClientToken::of(Some(v.as_bytes()));
        assert_eq!(ClientToken::of(None), ClientToken::None);
        assert_eq!(of("Basic OmFiYw=="), ClientToken::Pat);
        assert_eq!(
            of(&jwt(
                r#"{"iss":"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0","aud":"499b84ac-1321-427f-aa17-267ca6975798"}"#
            )),
            ClientToken::Entra
        );
        assert_eq!(
            of(&jwt(
                r#"{"iss":"https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/","aud":"499b84ac-1321-427f-aa17-267ca6975798"}"#
            )),
            ClientToken::Entra
        );
        assert_eq!(
            of(&jwt(
                r#"{"iss":"app.vstoken.visualstudio.com","aud":"app.vstoken.visualstudio.com|vso:4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a"}"#
            )),
            ClientToken::LegacyOAuth
        );
        // Look-alikes are not Entra.
        assert_eq!(
            of(&jwt(
                r#"{"iss":"https://login.microsoftonline.com.evil.example/x"}"#
            )),
            ClientToken::Unknown
        );
        for odd in ["Bearer opaque", "Bearer a.b.c", "Negotiate x", "", "Bearer"] {
            assert_eq!(of(odd), ClientToken::Unknown, "{odd}");
        }
        assert_eq!(of(&"x".repeat(MAX_VALUE + 1)), ClientToken::Unknown);
    }

    proptest::proptest! {
        #[test]
        fn any_value_is_read_safely(v in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = ClientToken::of(Some(&v));
        }
    }
}
