//! The proxy's cookies: reading them from `Cookie`, writing `Set-Cookie`
//! with the security attributes, and removing them before forwarding.

use cookie::{Cookie, SameSite};
use http::header::{self, HeaderMap, HeaderValue};

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

    /// `Set-Cookie` deleting `name`.
    pub fn clear(&self, name: &str) -> Option<HeaderValue> {
        self.set(name, "", 0)
    }
}

/// Every value of cookie `name` in the request (a browser may send two
/// with the same name, e.g. from different paths).
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
        })
}

/// Removes the proxy's cookies from the `Cookie` header(s), keeping every
/// other cookie; drops the header when nothing is left.
pub fn strip<S: AsRef<str>>(headers: &mut HeaderMap, names: &[S]) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let mut kept: Vec<String> = Vec::new();
    let mut changed = false;
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else {
            // Not text: cannot be ours; keep it as it was.
            kept.push(String::from_utf8_lossy(v.as_bytes()).into_owned());
            continue;
        };
        for pair in s.split(';') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split_once('=').map_or(pair, |(k, _)| k).trim();
            if names.iter().any(|n| n.as_ref() == name) {
                changed = true;
            } else {
                kept.push(pair.to_string());
            }
        }
    }
    if !changed {
        return;
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::try_from(kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_proxy_cookies() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ado_proxy_session=secret; b=2"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("ado_proxy_session_login=x"),
        );
        strip(&mut h, &["ado_proxy_session", "ado_proxy_session_login"]);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");

        let mut only = HeaderMap::new();
        only.insert(
            header::COOKIE,
            HeaderValue::from_static("ado_proxy_session=s"),
        );
        strip(&mut only, &["ado_proxy_session"]);
        assert!(only.get(header::COOKIE).is_none());
    }

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

    #[test]
    fn reads_every_value_of_a_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("x=1; s=a; s=b"));
        assert_eq!(values(&h, "s").collect::<Vec<_>>(), ["a", "b"]);
    }
}
