//! The proxy's cookies: their names, and `Set-Cookie` with the security
//! attributes. `crate::cookies` reads them from requests.

use cookie::{Cookie, SameSite};
use http::header::{HeaderMap, HeaderValue};

/// The names and attributes of the proxy's two cookies.
#[derive(Clone)]
pub struct CookieJar {
    /// The session cookie.
    pub session: String,
    /// The pre-auth cookie binding a browser to its pending sign-ins.
    pub login: String,
    /// Whether `Secure` is set (public URL is https).
    pub secure: bool,
}

// === impl CookieJar ===

impl CookieJar {
    /// Names from `cookie_name`; `__Host-` prefixed when https, which the
    /// browser only accepts with `Secure`, `Path=/` and no `Domain`.
    pub fn new(cookie_name: &str, secure: bool) -> Self {
        let prefix = if secure { "__Host-" } else { "" };
        Self {
            session: format!("{prefix}{cookie_name}"),
            login: format!("{prefix}{cookie_name}_login"),
            secure,
        }
    }

    /// `Set-Cookie` for `name=value`, HttpOnly, SameSite=Lax, Path=/,
    /// `max_age` seconds (0 deletes).
    pub fn set(&self, name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
        let c = Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(
                max_age.min(i64::MAX as u64) as i64,
            ))
            .build();
        let mut v = HeaderValue::try_from(c.to_string()).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// The pre-auth cookie of the sign-in with `state`: one per sign-in,
    /// so parallel sign-ins (tabs) do not disturb each other.
    pub fn pending(&self, state: &str) -> String {
        use base64::Engine;
        let digest = ring::digest::digest(&ring::digest::SHA256, state.as_bytes());
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..9]);
        format!("{}_{tag}", self.login)
    }

    /// The names and values of the request's pre-auth cookies (at most
    /// [`MAX_PENDING_COOKIES`] times two, so a stuffed header costs little).
    pub fn pending_in(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        let prefix = format!("{}_", self.login);
        crate::cookies::pairs(headers)
            .filter(|(k, _)| k.starts_with(prefix.as_bytes()))
            .filter_map(|(k, v)| {
                Some((
                    std::str::from_utf8(k).ok()?.to_string(),
                    std::str::from_utf8(v).ok()?.to_string(),
                ))
            })
            .take(2 * MAX_PENDING_COOKIES)
            .collect()
    }

    /// `Set-Cookie` deleting `name`.
    pub fn clear(&self, name: &str) -> Option<HeaderValue> {
        self.set(name, "", 0)
    }
}

/// Sign-ins a browser may have in progress at once (one pre-auth cookie
/// each); starting another drops the oldest.
pub const MAX_PENDING_COOKIES: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_has_the_security_attributes() {
        let jar = CookieJar::new("ado_proxy_session", true);
        assert_eq!(jar.session, "__Host-ado_proxy_session");
        let v = jar.set(&jar.session, "abc", 60).unwrap();
        let s = v.to_str().unwrap();
        for part in [
            "__Host-ado_proxy_session=abc",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        let plain = CookieJar::new("s", false);
        assert!(
            !plain
                .set("s", "v", 1)
                .unwrap()
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }
}
