use proptest::prelude::*;

use super::tests_support::router;
use super::*;

/// An independent model of the front end (IIS): percent-decode up to
/// three times, `\` is `/`, trailing spaces go, RFC 3986 §5.2.4
/// dot-segment removal.
fn front_end_view(path: &str) -> Vec<String> {
    let mut bytes = path.as_bytes().to_vec();
    for _ in 0..3 {
        bytes = percent_encoding_lenient(&bytes);
    }
    let text = String::from_utf8_lossy(&bytes).replace('\\', "/");
    let mut out: Vec<String> = Vec::new();
    for seg in text.split('/').skip(1) {
        match seg.trim_end_matches(' ') {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

fn percent_encoding_lenient(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let hex = |j: usize| {
            input
                .get(j)
                .and_then(|b| (*b as char).to_digit(16))
                .map(|d| d as u8)
        };
        if input[i] == b'%'
            && let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

const PIECES: &[&str] = &[
    "contoso",
    "CONTOSO",
    "fabrikam",
    "_apis",
    "_signalr",
    "_SignalR",
    "projects",
    "..",
    ".",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2e",
    "%252e",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "%25",
    "x",
    "%43ontoso",
    "%66abrikam",
    "%20",
    "%u002e",
    "%c0%ae",
    "..%2f",
    "%00",
];

fn segment() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..4).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn no_forwarded_path_leaves_the_allowed_organization(
        hosts in any::<bool>(),
        segments in prop::collection::vec(segment(), 0..7),
    ) {
        static ROUTER: std::sync::LazyLock<Router> =
            std::sync::LazyLock::new(|| router(&["contoso"]));
        let r = &*ROUTER;
        let prefix = if hosts { "/.hosts/vsrm" } else { "" };
        let path = format!("{prefix}/{}", segments.join("/"));
        let Ok(uri) = path.parse::<Uri>() else {
            return Ok(()); // refused by the HTTP parser already
        };
        let Ok(target) = r.route(&uri) else {
            return Ok(());
        };
        let base = if hosts { "https://vsrm.dev.azure.com" } else { "http://127.0.0.1:9/base" };
        let forwarded = target.uri.path();
        let below = forwarded
            .strip_prefix(base.split_once("://").map(|(_, rest)| rest.find('/').map_or("", |i| &rest[i..])).unwrap_or(""))
            .unwrap_or(forwarded);
        let mut view = front_end_view(below);
        // SignalR names the organization second: /_signalr/{org}/...
        if view.first().is_some_and(|s| s.eq_ignore_ascii_case("_signalr")) {
            view.remove(0);
        }
        prop_assert_eq!(
            view.first().map(|s| s.to_ascii_lowercase()),
            Some("contoso".to_string()),
            "{} forwarded as {}", path, forwarded
        );
        // No dot segment survives in what is forwarded.
        let raw_view: Vec<String> = {
            let mut b = forwarded.as_bytes().to_vec();
            for _ in 0..3 { b = percent_encoding_lenient(&b); }
            String::from_utf8_lossy(&b).replace('\\', "/").split('/').map(str::to_string).collect()
        };
        prop_assert!(
            !raw_view.iter().any(|s| s.trim_end_matches(' ') == ".." || s.trim_end_matches(' ') == "."),
            "{} forwarded with a dot segment: {}", path, forwarded
        );
    }
}
