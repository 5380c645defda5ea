//! Globs on request paths, as `[[access.rules]] paths` are written:
//! `/`-separated segments, `*` for exactly one segment, `**` for any
//! number of segments (none included), anything else a literal segment.
//!
//! A path is matched as Azure DevOps' front end reads it (IIS): decoded
//! (the caller passes the decoded path, see `proxy::path`), segments
//! compared without regard to ASCII case, a `;` parameter dropped, and
//! trailing dots and spaces trimmed, which Windows does; empty segments
//! are skipped. So `/contoso/p/_apis/WIT./workitems;x` is read as
//! `/contoso/p/_apis/wit/workitems`, and a rule cannot be stepped around
//! by spelling.

/// The longest glob accepted, in bytes.
const MAX_GLOB: usize = 1024;
/// The most segments a glob may have.
const MAX_SEGMENTS: usize = 64;

/// One segment of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `*`: exactly one segment.
    One,
    /// `**`: any number of segments.
    Any,
    /// A segment read as the front end reads it.
    Literal(String),
}

/// A parsed path glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob {
    segments: Vec<Segment>,
}

/// A segment as Azure DevOps' front end reads it: up to a `;`, trailing
/// dots and spaces trimmed, lowercase.
pub fn normalise(segment: &str) -> String {
    let end = segment.find(';').unwrap_or(segment.len());
    segment[..end]
        .trim_end_matches(['.', ' '])
        .to_ascii_lowercase()
}

/// The segments of a decoded path as the front end reads them, empty
/// ones skipped.
pub fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .map(normalise)
        .filter(|s| !s.is_empty())
        .collect()
}

// === impl PathGlob ===

impl PathGlob {
    /// Parses `text`; the error says what is wrong, in words.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_GLOB {
            return Err(format!("longer than {MAX_GLOB} bytes"));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("{text:?} does not start with /"));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            let segment = match raw {
                "" => continue,
                "*" => Segment::One,
                "**" => Segment::Any,
                s if s.contains('*') => {
                    return Err(format!(
                        "{text:?}: \"{s}\" mixes * with other characters; a segment is *, ** or \
                         a name"
                    ));
                }
                s if s.contains(['?', '[', ']', '{', '}', '\\', '%']) => {
                    return Err(format!(
                        "{text:?}: \"{s}\" holds a character globs do not use here (? [ ] {{ }} \\ \
                         %); write the path as Azure DevOps reads it, decoded"
                    ));
                }
                s => {
                    let n = normalise(s);
                    if n.is_empty() || n != s.to_ascii_lowercase() {
                        return Err(format!(
                            "{text:?}: \"{s}\" is read by Azure DevOps as \"{n}\"; write that"
                        ));
                    }
                    Segment::Literal(n)
                }
            };
            // `**/**` means `**`.
            if segment == Segment::Any && segments.last() == Some(&Segment::Any) {
                continue;
            }
            segments.push(segment);
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("more than {MAX_SEGMENTS} segments"));
        }
        Ok(Self { segments })
    }

    /// Whether the path whose [`segments`] are `path` matches.
    pub fn matches(&self, path: &[String]) -> bool {
        // Wildcard matching over segments with one backtrack point (the
        // last `**` seen): linear in practice, at most
        // O(path × glob) segments.
        let (glob, mut g, mut p) = (&self.segments, 0, 0);
        let mut resume: Option<(usize, usize)> = None;
        while p < path.len() {
            match glob.get(g) {
                Some(Segment::Any) => {
                    resume = Some((g, p));
                    g += 1;
                }
                Some(Segment::One) => {
                    g += 1;
                    p += 1;
                }
                Some(Segment::Literal(s)) if *s == path[p] => {
                    g += 1;
                    p += 1;
                }
                _ => match resume {
                    // Let the last `**` take one more segment.
                    Some((star, at)) => {
                        g = star + 1;
                        p = at + 1;
                        resume = Some((star, at + 1));
                    }
                    None => return false,
                },
            }
        }
        glob[g..].iter().all(|s| *s == Segment::Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(glob: &str, path: &str) -> bool {
        PathGlob::parse(glob).unwrap().matches(&segments(path))
    }

    #[test]
    fn stars_take_one_segment_and_double_stars_any() {
        assert!(m(
            "/*/*/_apis/wit/**",
            "/contoso/proj/_apis/wit/workitems/1"
        ));
        assert!(m("/*/*/_apis/wit/**", "/contoso/proj/_apis/wit"));
        assert!(!m("/*/*/_apis/wit/**", "/contoso/_apis/wit/workitems"));
        assert!(m("/**/_apis/wit/**", "/contoso/_apis/wit/workitems"));
        assert!(m("/**", "/"));
        assert!(m("/**/info/refs", "/c/p/_git/r/info/refs"));
        assert!(!m("/*/_apis", "/c/_apis/x"));
        assert!(m("/", "/"));
        assert!(!m("/", "/a"));
    }

    #[test]
    fn a_path_is_read_as_azure_devops_reads_it() {
        let g = "/*/*/_apis/wit/**";
        for spelling in [
            "/contoso/proj/_APIS/WIT/workitems",
            "/contoso/proj/_apis/wit./workitems",
            "/contoso/proj/_apis/wit%20/workitems"
                .replace("%20", " ")
                .as_str(),
            "/contoso/proj/_apis/wit;x=1/workitems",
            "/contoso//proj/_apis//wit/workitems",
        ] {
            assert!(m(g, spelling), "{spelling}");
        }
    }

    #[test]
    fn bad_globs_say_why() {
        for (glob, says) in [
            ("_apis/**", "does not start with /"),
            ("/a*/b", "mixes *"),
            ("/a/b?", "character globs do not use"),
            ("/a/%2e", "character globs do not use"),
            ("/a/WIT.", "is read by Azure DevOps as"),
            ("/a/b;c", "is read by Azure DevOps as"),
        ] {
            let e = PathGlob::parse(glob).unwrap_err();
            assert!(e.contains(says), "{glob}: {e}");
        }
        // Case is not an error: it is ignored.
        assert!(PathGlob::parse("/_APIS/Wit").is_ok());
        assert!(PathGlob::parse(&format!("/{}", "a/".repeat(65))).is_err());
    }

    proptest! {
        #[test]
        fn parsing_and_matching_never_panic(glob in "\\PC{0,80}", path in "\\PC{0,200}") {
            if let Ok(g) = PathGlob::parse(&glob) {
                let _ = g.matches(&segments(&path));
            }
        }

        #[test]
        fn a_path_matches_its_own_segments_and_every_star_over_them(
            segs in proptest::collection::vec("[a-zA-Z0-9_-]{1,12}", 0..8),
            star in 0usize..8,
            split in 0usize..8,
        ) {
            let path = format!("/{}", segs.join("/"));
            let literal = PathGlob::parse(&path).unwrap();
            prop_assert!(literal.matches(&segments(&path)));
            let mut starred = segs.clone();
            if star < starred.len() {
                starred[star] = "*".into();
            }
            let starred = PathGlob::parse(&format!("/{}", starred.join("/"))).unwrap();
            prop_assert!(starred.matches(&segments(&path)));
            // `**` in any place, for any run of segments.
            let at = split.min(segs.len());
            let with_any = format!("/{}/**", segs[..at].join("/"));
            prop_assert!(PathGlob::parse(&with_any).unwrap().matches(&segments(&path)));
            let upper = path.to_ascii_uppercase();
            prop_assert!(literal.matches(&segments(&upper)));
        }

        #[test]
        fn a_literal_glob_matches_no_other_path(
            a in proptest::collection::vec("[a-z]{1,3}", 1..5),
            b in proptest::collection::vec("[a-z]{1,3}", 1..5),
        ) {
            let glob = PathGlob::parse(&format!("/{}", a.join("/"))).unwrap();
            let path = format!("/{}", b.join("/"));
            prop_assert_eq!(glob.matches(&segments(&path)), a == b);
        }
    }
}
