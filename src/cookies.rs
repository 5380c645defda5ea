//! A request's `Cookie` header, read as bytes: the values of one cookie,
//! and the filter that keeps only the cookies forwarded upstream.

use http::header::{self, HeaderMap, HeaderValue};

/// How many values of one of the proxy's cookies a request may make it
/// look up: a browser sends two at most (paths, prefixes); a request with
/// thousands must not cost thousands of store lookups.
pub const MAX_VALUES: usize = 4;

/// The `name=value` pairs of every `Cookie` header, as bytes. Lenient per
/// pair: another application's cookie with non-ASCII bytes
/// (`lang=français`) or without `=` does not hide the others.
pub fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
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
