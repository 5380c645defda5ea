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
    // The proxy's own endpoints are no place to land (logout loops).
    if rd.starts_with("/.auth/") || rd == "/.auth" {
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
            "evil.example",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad:?}");
        }
    }
}
