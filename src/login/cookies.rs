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
        pairs(headers)
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

/// How many values of one of the proxy's cookies a request may make it
/// look up: a browser sends two at most (paths, prefixes); a request with
/// thousands must not cost thousands of store lookups.
pub const MAX_VALUES: usize = 4;

/// Sign-ins a browser may have in progress at once (one pre-auth cookie
/// each); starting another drops the oldest.
pub const MAX_PENDING_COOKIES: usize = 3;

/// The `name=value` pairs of every `Cookie` header, as bytes. Lenient per
/// pair: another application's cookie with non-ASCII bytes
/// (`lang=français`) or without `=` does not hide the others.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| {
            let eq = pair.iter().position(|b| *b == b'=')?;
            Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
        })
}

/// The values of cookie `name` in the request (a browser may send two
/// with the same name, e.g. from different paths), at most
/// [`MAX_VALUES`]; values that are not plain ASCII cookie text are
/// skipped, as no cookie the proxy sets looks like that.
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    pairs(headers)
        .filter(move |(k, _)| *k == name.as_bytes())
        .filter_map(|(_, v)| {
            let v = v
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v);
            let text = std::str::from_utf8(v).ok()?;
            text.bytes()
                .all(|b| b.is_ascii_graphic() && b != b',' && b != b'\\')
                .then(|| text.to_string())
        })
        .take(MAX_VALUES)
}

/// Keeps only the cookies named in `keep` (`upstream.forward_cookies`) in
/// the request's `Cookie` header(s), as one header; removes the header
/// when none is named or none is left. Pairs are matched as bytes, so a
/// non-ASCII cookie neither breaks the filter nor slips through it.
pub fn keep_only<S: AsRef<str>>(headers: &mut HeaderMap, keep: &[S]) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    if keep.is_empty() {
        headers.remove(header::COOKIE);
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for (k, v) in pairs(headers) {
        if keep.iter().any(|n| n.as_ref().as_bytes() == k) {
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(k);
            kept.push(b'=');
            kept.extend_from_slice(v);
        }
    }
    headers.remove(header::COOKIE);
    if let Ok(v) = HeaderValue::from_bytes(&kept)
        && !kept.is_empty()
    {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_only_the_named_cookies() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ado_proxy_session=secret; b=2"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes("lang=français; ado_proxy_session_login=x; b=3".as_bytes())
                .unwrap(),
        );
        let mut keep = h.clone();
        keep_only(&mut keep, &["b"]);
        assert_eq!(keep.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(keep[header::COOKIE], "b=2; b=3");

        keep_only(&mut h, &[] as &[&str]);
        assert!(h.get(header::COOKIE).is_none());

        let mut none_left = HeaderMap::new();
        none_left.insert(header::COOKIE, HeaderValue::from_static("a=1"));
        keep_only(&mut none_left, &["b"]);
        assert!(none_left.get(header::COOKIE).is_none());
    }

    #[test]
    fn reading_is_lenient_per_pair_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"lang=fran\xe7ais; junk; s=\"abc\"; s=caf\xc3\xa9").unwrap(),
        );
        assert_eq!(values(&h, "s").collect::<Vec<_>>(), ["abc"]);
        let many = format!("x=1; {}", "s=v; ".repeat(2500));
        h.insert(header::COOKIE, HeaderValue::try_from(many).unwrap());
        assert_eq!(values(&h, "s").count(), MAX_VALUES);
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

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Arbitrary `Cookie` bytes: reading and filtering never panic,
        /// values read are plain ASCII without separators, and only the
        /// named cookies are kept.
        #[test]
        fn cookie_headers_of_any_bytes(
            raw in prop::collection::vec(
                prop::collection::vec(prop_oneof![
                    Just(b';'), Just(b'='), Just(b' '), Just(b'"'), 0x21u8..0x7f, 0x80u8..=0xff,
                    Just(b's'),
                ], 0..60),
                1..4,
            ),
        ) {
            let mut h = HeaderMap::new();
            for v in &raw {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(header::COOKIE, v);
                }
            }
            let read: Vec<String> = values(&h, "s").collect();
            prop_assert!(read.len() <= MAX_VALUES);
            for v in &read {
                prop_assert!(v.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b','));
            }
            keep_only(&mut h, &["s"]);
            for v in h.get_all(header::COOKIE) {
                for pair in v.as_bytes().split(|b| *b == b';') {
                    let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
                    prop_assert_eq!(name.trim_ascii(), b"s");
                }
            }
        }
    }
}
