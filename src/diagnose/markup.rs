//! Text out of the HTML and XML that Azure DevOps, Entra and gateways
//! send: entities decoded, tags removed. Inputs are untrusted; both
//! functions are total and linear.

/// The predefined XML entities and HTML's `&#39;`; `&amp;` last, so
/// `&amp;lt;` stays `&lt;`.
pub fn unescape(text: &str) -> String {
    text.replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `text` without its `<...>` markup: block tags end a line (a heading
/// is not part of the sentence after it), inline ones are a space; a
/// lone `<` is text.
pub fn strip_tags(text: &str) -> String {
    const INLINE: &[&str] = &["a", "b", "i", "em", "strong", "span", "code", "small"];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let tag = &rest[open + 1..];
        let Some(close) = tag.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let name = tag[..close]
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        out.push(if INLINE.contains(&name.as_str()) {
            ' '
        } else {
            '\n'
        });
        rest = &tag[close + 1..];
    }
    out.push_str(rest);
    out
}

/// [`strip_tags`] with every run of white space made one space.
pub fn plain(text: &str) -> String {
    strip_tags(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` on one line: every control character (CR, LF, NUL, escapes,
/// the Unicode line separators) a space, so words from Azure DevOps
/// cannot start a line of their own in git's output or a log.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_decoded_once() {
        assert_eq!(
            unescape("it&#39;s &lt;b&gt; &amp;lt; &quot;q&quot; &apos;"),
            "it's <b> &lt; \"q\" '"
        );
    }

    #[test]
    fn one_line_has_no_control_characters() {
        assert_eq!(
            one_line("a\r\nremote: b\0\u{1b}[31m\u{2028}c\u{85}"),
            "a  remote: b  [31m c "
        );
    }

    #[test]
    fn tags_end_lines_or_become_spaces() {
        assert_eq!(
            strip_tags("<h1>Error</h1><p>a <b>b</b> c</p>"),
            "\nError\n\na  b  c\n"
        );
        assert_eq!(
            plain("<soap:Text xml:lang=\"en\">TF400813: x</soap:Text>"),
            "TF400813: x"
        );
        assert_eq!(strip_tags("a < b and c"), "a < b and c");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_read(raw in ".{0,300}") {
            let out = strip_tags(&raw);
            proptest::prop_assert!(out.len() <= raw.len() + raw.matches('>').count());
            let _ = unescape(&raw);
        }
    }
}
