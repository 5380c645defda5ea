//! Which request paths may be forwarded, and what they name.
//!
//! Azure DevOps' front end (IIS) percent-decodes a path, treats `\` like
//! `/` and collapses dot segments before it routes the request, so
//! `/contoso/../fabrikam/_apis` lands in `fabrikam`. The proxy decides the
//! organization from the path **as the front end will see it** (decoded
//! until stable, both separators) and refuses, before any credential is
//! attached, every path whose meaning could differ between the two views:
//! dot segments in any encoding, backslashes (raw or `%5C`), malformed or
//! IIS-only escapes (`%u002e`), overlong UTF-8 and control characters.
//! What passes is forwarded byte for byte: it contains no dot segment,
//! so no front end can move it out of the organization it names.
//!
//! One path more is refused for what it could be read as: git LFS's batch
//! call, whose answer must be rewritten (see `lfs`), written so that the
//! proxy does not recognise it but the front end may route it there (a
//! `;` parameter, trailing dots or spaces, which Windows trims from a
//! segment, or an empty segment among its last ones).
//!
//! An encoded `/` (`%2F`) is kept where it carries data (npm asks for
//! scoped packages as `@scope%2Fname`) but refused in the segment that
//! decides the route (the organization, or the `/.hosts/` name).

use std::borrow::Cow;

/// How many rounds of percent-decoding a path may need before it is
/// stable; more means a deliberately layered escape.
const MAX_DECODE_ROUNDS: usize = 3;

/// Why a path is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// A `.` or `..` segment (or one made only of dots and spaces), in any
    /// encoding: it would be collapsed upstream and leave its prefix.
    DotSegment,
    /// A backslash, raw or encoded: IIS treats it as a separator.
    Backslash,
    /// `%` not followed by two hex digits (this includes IIS's `%uXXXX`).
    BadEscape,
    /// Escapes of escapes, more than [`MAX_DECODE_ROUNDS`] deep.
    TooManyEncodings,
    /// The decoded path is not UTF-8 (overlong forms of `.` and `/`
    /// included) or holds control characters.
    BadCharacters,
    /// An encoded `/` in the organization or `/.hosts/` name segment.
    EncodedSeparator,
    /// git LFS's batch call in a spelling the front end may route as it
    /// but the proxy would not rewrite (`batch.`, `batch;x`).
    DisguisedLfsBatch,
}

// === impl PathRefusal ===

impl PathRefusal {
    /// The reason in words, for the client.
    pub fn explain(self) -> &'static str {
        match self {
            Self::DotSegment => {
                "it contains a \".\" or \"..\" segment (possibly percent-encoded), which Azure \
                 DevOps would collapse into another path; send the path already resolved"
            }
            Self::Backslash => {
                "it contains a backslash (raw or %5C), which Azure DevOps treats as a path \
                 separator; use / instead"
            }
            Self::BadEscape => "it contains a % that is not followed by two hex digits",
            Self::TooManyEncodings => "it is percent-encoded more than three times over",
            Self::BadCharacters => {
                "once percent-decoded it is not UTF-8 text or contains control characters"
            }
            Self::DisguisedLfsBatch => {
                "it names git LFS's batch call with a \";\" parameter, trailing dots or spaces \
                 or an empty segment, which Azure DevOps may still route to that call; send \
                 .../info/lfs/objects/batch as it is"
            }
            Self::EncodedSeparator => {
                "its first segment (the organization, or the /.hosts/ name) contains an encoded \
                 / (%2F)"
            }
        }
    }
}

/// Checks that `path` (origin form, no query) means the same thing to the
/// proxy and to Azure DevOps' front end; returns the path as the front
/// end sees it (decoded, `/` separators), which routing reads. Borrowed
/// when nothing is escaped, as in almost every request.
pub fn check(path: &str) -> Result<Cow<'_, str>, PathRefusal> {
    // Runs for every request: most paths have no escape, no backslash
    // and no dot at all, which three memchr scans tell without
    // allocating. (http's parser already refused control characters.)
    let bytes = path.as_bytes();
    let escaped = bytes.contains(&b'%');
    if !escaped && !bytes.contains(&b'\\') && !bytes.contains(&b'.') {
        return refuse_disguised_lfs_batch(Cow::Borrowed(path));
    }
    let text: Cow<'_, str> = if escaped {
        let decoded = decode_fully(path.as_bytes())?;
        Cow::Owned(String::from_utf8(decoded).map_err(|_| PathRefusal::BadCharacters)?)
    } else {
        Cow::Borrowed(path)
    };
    scan(&text)?;
    refuse_disguised_lfs_batch(text)
}

/// git LFS's batch call, by segment.
const LFS_BATCH: [&str; 4] = ["info", "lfs", "objects", "batch"];

/// Whether `seen` (a path as the front end reads it) ends in git LFS's
/// batch call as the proxy recognises it: any case, trailing slashes.
pub fn names_lfs_batch(seen: &str) -> bool {
    let mut segments = seen.trim_end_matches('/').rsplit('/');
    LFS_BATCH.iter().rev().all(|want| {
        segments
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case(want))
    }) && segments.next().is_some()
}

/// `seen`, unless a front end that drops `;` parameters, trailing dots
/// and spaces, and empty segments would read it as the batch call while
/// [`names_lfs_batch`] does not.
fn refuse_disguised_lfs_batch(seen: Cow<'_, str>) -> Result<Cow<'_, str>, PathRefusal> {
    // Runs for every request: a path without "lfs" is not the call.
    if !seen
        .as_bytes()
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"lfs"))
    {
        return Ok(seen);
    }
    let mut lenient = seen
        .rsplit('/')
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or_default()
                .trim_end_matches(['.', ' '])
        })
        .filter(|s| !s.is_empty());
    let read_as_batch = LFS_BATCH
        .iter()
        .rev()
        .all(|want| lenient.next().is_some_and(|s| s.eq_ignore_ascii_case(want)));
    if read_as_batch && !names_lfs_batch(&seen) {
        return Err(PathRefusal::DisguisedLfsBatch);
    }
    Ok(seen)
}

/// Refuses control characters, backslashes and dot segments in a decoded
/// path, in one pass over its bytes.
fn scan(text: &str) -> Result<(), PathRefusal> {
    let bytes = text.as_bytes();
    let mut segment_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            0..=0x1f | 0x7f => return Err(PathRefusal::BadCharacters),
            b'\\' => return Err(PathRefusal::Backslash),
            b'/' => {
                if is_dot_segment(&bytes[segment_start..i]) {
                    return Err(PathRefusal::DotSegment);
                }
                segment_start = i + 1;
            }
            _ => {}
        }
    }
    if is_dot_segment(&bytes[segment_start..]) {
        return Err(PathRefusal::DotSegment);
    }
    // C1 controls (U+0080..U+009F) are two bytes in UTF-8.
    if !text.is_ascii() && text.chars().any(char::is_control) {
        return Err(PathRefusal::BadCharacters);
    }
    Ok(())
}

/// The first segment of `path` must not hide a separator: `raw` is the
/// segment as sent.
pub fn check_route_segment(raw: &str) -> Result<(), PathRefusal> {
    if !raw.contains('%') {
        return Ok(());
    }
    let decoded = decode_fully(raw.as_bytes())?;
    if decoded.contains(&b'/') {
        return Err(PathRefusal::EncodedSeparator);
    }
    Ok(())
}

/// `.`, `..`, and anything made only of dots and spaces (Windows trims
/// trailing dots and spaces from a segment, so `.. ` is `..` there).
fn is_dot_segment(segment: &[u8]) -> bool {
    segment.first().is_some_and(|b| matches!(b, b'.' | b' '))
        && segment.contains(&b'.')
        && segment.iter().all(|b| matches!(b, b'.' | b' '))
}

/// Percent-decodes until nothing changes. A malformed escape in the
/// request itself is refused; after the first round a `%` that starts no
/// escape is a literal (`100%25.txt`) and stays, while every escape
/// around it is still decoded, as a lenient front end would. Still
/// changing after [`MAX_DECODE_ROUNDS`] rounds is refused.
fn decode_fully(input: &[u8]) -> Result<Vec<u8>, PathRefusal> {
    let mut current = decode_once(input, true)?;
    for round in 1..=MAX_DECODE_ROUNDS {
        let next = decode_once(&current, false)?;
        if next == current {
            return Ok(current);
        }
        if round == MAX_DECODE_ROUNDS {
            break;
        }
        current = next;
    }
    Err(PathRefusal::TooManyEncodings)
}

/// One round of `%XX` decoding; `strict` refuses a `%` that starts no
/// escape, otherwise it is kept as it is.
fn decode_once(input: &[u8], strict: bool) -> Result<Vec<u8>, PathRefusal> {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            match (hex(input.get(i + 1)), hex(input.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ if strict => return Err(PathRefusal::BadEscape),
                _ => {}
            }
        }
        out.push(input[i]);
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str) -> Option<PathRefusal> {
        check(path).err()
    }

    #[test]
    fn ordinary_paths_pass_and_decode() {
        for (path, seen) in [
            ("/contoso/_apis/projects", "/contoso/_apis/projects"),
            ("/%43ontoso/x", "/Contoso/x"),
            (
                "/contoso/p/_git/r.git/info/refs",
                "/contoso/p/_git/r.git/info/refs",
            ),
            (
                "/o/_packaging/f/npm/registry/@scope%2Fname",
                "/o/_packaging/f/npm/registry/@scope/name",
            ),
            ("/o/x/.well-known/y", "/o/x/.well-known/y"),
            ("/o/file.tar.gz", "/o/file.tar.gz"),
            ("/", "/"),
            ("/o//x", "/o//x"),
            ("/o/a%20b", "/o/a b"),
            ("/o/%C3%A9t%C3%A9", "/o/été"),
            ("/o/100%25.txt", "/o/100%.txt"),
            ("/o/100%2525.txt", "/o/100%.txt"),
        ] {
            assert_eq!(check(path).as_deref(), Ok(seen), "{path}");
            assert!(matches!(check(path), Ok(Cow::Borrowed(_))) == !path.contains('%'));
        }
    }

    #[test]
    fn every_spelling_of_a_dot_segment_is_refused() {
        for path in [
            "/contoso/../fabrikam/_apis/projects",
            "/contoso/%2e%2e/fabrikam",
            "/contoso/.%2E/fabrikam",
            "/contoso/%2E./fabrikam",
            "/contoso/..%2ffabrikam",
            "/contoso/..%2Ffabrikam",
            "/contoso/_apis/../../fabrikam/_apis",
            "/contoso/./x",
            "/contoso/..",
            "/contoso/.",
            "/..",
            "/contoso/%252e%252e/fabrikam",
            "/contoso/... /x",
            "/contoso/.. /x",
            "/.hosts/vsrm/contoso/../../x",
        ] {
            assert_eq!(refused(path), Some(PathRefusal::DotSegment), "{path}");
        }
    }

    #[test]
    fn backslashes_bad_escapes_and_odd_bytes_are_refused() {
        use PathRefusal::*;
        for (path, why) in [
            ("/contoso\\..\\fabrikam", Backslash),
            ("/contoso/..%5cfabrikam", Backslash),
            ("/contoso/%5C", Backslash),
            ("/contoso/%u002e%u002e/x", BadEscape),
            ("/contoso/%252e/%25", DotSegment),
            ("/contoso/%25%32%65%25%32%65/x", DotSegment),
            ("/contoso/%", BadEscape),
            ("/contoso/%zz", BadEscape),
            ("/contoso/%25252525252e", TooManyEncodings),
            ("/contoso/%c0%ae%c0%ae/x", BadCharacters),
            ("/contoso/%c0%af", BadCharacters),
            ("/contoso/%00/x", BadCharacters),
            ("/contoso/%0d%0aX:1", BadCharacters),
            ("/contoso/%ff", BadCharacters),
        ] {
            assert_eq!(refused(path), Some(why), "{path}");
        }
    }

    #[test]
    fn the_lfs_batch_call_in_disguise_is_refused() {
        for path in [
            "/o/p/_git/r.git/info/lfs/objects/batch.",
            "/o/p/_git/r.git/info/lfs/objects/batch%2e",
            "/o/p/_git/r.git/info/lfs/objects/batch%20",
            "/o/p/_git/r/info/lfs/objects/batch;x",
            "/o/p/_git/r/info/lfs/objects/BATCH;x/",
            "/o/p/_git/r/info/lfs/objects;x/batch",
            "/o/p/_git/r/info/LFS./objects/batch",
            "/o/p/_git/r/info/lfs/objects//batch",
        ] {
            assert_eq!(
                refused(path),
                Some(PathRefusal::DisguisedLfsBatch),
                "{path}"
            );
        }
        for path in [
            "/o/p/_git/r.git/info/lfs/objects/batch",
            "/o/p/_git/r/info/lfs/objects/Batch/",
            "/o/p/_git/r/info/lfs/objects/batchx",
            "/o/p/_git/r/info/lfs/objects/x.batch.",
            "/o/p/_git/r/info/lfs/locks;x",
            "/o/_apis/x;y",
        ] {
            assert_eq!(refused(path), None, "{path}");
        }
        assert!(names_lfs_batch("/o/p/_git/r/info/lfs/objects/batch//"));
        assert!(!names_lfs_batch("info/lfs/objects/batch"));
    }

    #[test]
    fn a_route_segment_may_not_hide_a_separator() {
        assert_eq!(check_route_segment("contoso"), Ok(()));
        assert_eq!(check_route_segment("%43ontoso"), Ok(()));
        for s in ["contoso%2ffabrikam", "contoso%2F", "%252f"] {
            assert_eq!(
                check_route_segment(s),
                Err(PathRefusal::EncodedSeparator),
                "{s}"
            );
        }
    }
}
