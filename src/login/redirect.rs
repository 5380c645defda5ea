//! Where a browser may be sent after sign-in: only a path on this proxy.
//! Anything that a browser could read as another origin is refused.

/// `rd` if it is a same-origin relative path, else `None`.
pub fn safe_return_path(rd: &str) -> Option<&str> {
    if rd.is_empty() || rd.len() > 4096 {
        return None;
    }
    // The raw value becomes a Location header: no spaces either.
    if !is_safe(rd) || rd.contains(' ') {
        return None;
    }
    // Browsers and servers decode once (sometimes twice); every decoded
    // form must be just as harmless.
    let mut current = rd.to_string();
    for _ in 0..3 {
        let decoded = percent_decode(&current);
        if decoded == current {
            break;
        }
        if !is_safe(&decoded) {
            return None;
        }
        current = decoded;
    }
    // The proxy's own endpoints are no place to land (logout loops),
    // except its pages for people.
    let page = rd.split(['?', '#']).next().unwrap_or(rd);
    let for_people = matches!(page, "/.auth/tokens" | "/.auth/pats");
    if (rd.starts_with("/.auth/") || rd == "/.auth") && !for_people {
        return None;
    }
    Some(rd)
}

fn is_safe(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first() == Some(&b'/')
        // `//host` and `/\host` are protocol-relative URLs to browsers.
        && !matches!(bytes.get(1), Some(b'/') | Some(b'\\'))
        && !s.contains('\\')
        && !s.chars().any(char::is_control)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::safe_return_path;

    #[test]
    fn accepts_only_same_origin_paths() {
        for ok in [
            "/",
            "/contoso/_apis/projects?api-version=7.1",
            "/a/b%20c",
            "/x?next=%2Fy",
        ] {
            assert_eq!(safe_return_path(ok), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example/",
            "\\\\evil.example",
            "javascript:alert(1)",
            "/%2F/evil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "%2F%2Fevil.example",
            "/%252F%252Fevil.example",
            "/a\r\nSet-Cookie:x=y",
            "/a%0d%0aSet-Cookie:x=y",
            "/.auth/logout",
            "/.auth/tokens/../logout",
            "/.auth/callback?code=x",
            "evil.example",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad:?}");
        }
        // The proxy's pages for people are places to land.
        for page in ["/.auth/tokens", "/.auth/pats", "/.auth/pats?org=contoso"] {
            assert_eq!(safe_return_path(page), Some(page));
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::{percent_decode, safe_return_path};

    const PIECES: &[&str] = &[
        "/",
        "//",
        "\\",
        "%2f",
        "%2F",
        "%5c",
        "%252f",
        "evil.example",
        "@",
        ":",
        "http:",
        "javascript:",
        "?",
        "#",
        "%0d%0a",
        "\t",
        ".",
        "..",
        "a",
        "%",
        "%25",
        " ",
        "%09",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Whatever `rd` is, an accepted one resolves (as a browser
        /// resolves a Location header) to the proxy's own origin, also
        /// after one or two rounds of decoding.
        #[test]
        fn an_accepted_return_path_stays_on_the_proxy(
            pieces in prop::collection::vec(prop::sample::select(PIECES), 0..8),
        ) {
            let rd = pieces.concat();
            let Some(ok) = safe_return_path(&rd) else {
                return Ok(());
            };
            let base = url::Url::parse("https://proxy.example/").unwrap();
            let mut current = ok.to_string();
            for _ in 0..3 {
                let resolved = base.join(&current);
                prop_assert!(
                    resolved.as_ref().is_ok_and(|u| u.host_str() == Some("proxy.example")),
                    "{:?} leaves the proxy as {:?}", rd, resolved
                );
                current = percent_decode(&current);
            }
            prop_assert!(!ok.chars().any(char::is_control));
        }
    }
}
