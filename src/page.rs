//! Self-contained HTML pages for browsers: no external assets, readable on
//! a phone, every value escaped, never framed.

use http::header::{self, HeaderMap, HeaderValue};

/// The policy of every page and answer the proxy writes itself: nothing
/// but its own inline style loads, and no other page may frame it (a
/// framed sign-out or token form could be clicked through by another
/// site).
const OWN_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
);

/// Marks an answer the proxy wrote itself (a page, an error, `/.auth/`
/// JSON): its own content policy (replacing any an upstream answer had),
/// no framing for browsers that predate `frame-ancestors`, no sniffing.
pub fn mark_own(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, OWN_POLICY);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page with a title, paragraphs, an optional action link (text, href)
/// and key/value facts (request and correlation ids). All escaped here.
pub fn render(
    title: &str,
    paragraphs: &[&str],
    action: Option<(&str, &str)>,
    facts: &[(&str, &str)],
) -> String {
    let sections: Vec<(&str, &str)> = paragraphs.iter().map(|p| ("", *p)).collect();
    let actions: Vec<(&str, &str)> = action.into_iter().collect();
    render_sections(title, &sections, &actions, facts)
}

/// A page with headed sections (an empty heading is a plain paragraph),
/// action links (text, href), and facts. All escaped here; links keep
/// only `http(s)` and same-origin targets.
pub fn render_sections(
    title: &str,
    sections: &[(&str, &str)],
    actions: &[(&str, &str)],
    facts: &[(&str, &str)],
) -> String {
    let mut body = String::new();
    for (heading, text) in sections {
        if !heading.is_empty() {
            body.push_str(&format!("<h2>{}</h2>\n", escape(heading)));
        }
        body.push_str(&format!("<p>{}</p>\n", escape(text)));
    }
    let safe = |href: &str| {
        href.starts_with("https://") || href.starts_with("http://") || href.starts_with('/')
    };
    let links: Vec<String> = actions
        .iter()
        .filter(|(_, href)| safe(href))
        .map(|(text, href)| {
            format!(
                "<a class=\"button\" href=\"{}\">{}</a>",
                escape(href),
                escape(text)
            )
        })
        .collect();
    if !links.is_empty() {
        body.push_str(&format!("<p class=\"actions\">{}</p>\n", links.join(" ")));
    }
    facts_list(&mut body, facts);
    wrap(title, &body)
}

/// A page asking the user to confirm an action that changes state: each
/// choice is a button posting an empty form to its action (a path on the
/// proxy), so a link from another site cannot trigger it.
pub fn confirm(title: &str, text: &str, choices: &[(&str, &str)]) -> String {
    let mut body = format!("<p>{}</p>\n", escape(text));
    for (button, action) in choices {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{}\"><button class=\"button\" \
             type=\"submit\">{}</button></form>\n",
            escape(if action.starts_with('/') { action } else { "/" }),
            escape(button)
        ));
    }
    wrap(title, &body)
}

fn facts_list(body: &mut String, facts: &[(&str, &str)]) {
    if !facts.is_empty() {
        body.push_str("<dl>\n");
        for (k, v) in facts {
            body.push_str(&format!(
                "<dt>{}</dt><dd><code>{}</code></dd>\n",
                escape(k),
                escape(v)
            ));
        }
        body.push_str("</dl>\n");
    }
}

/// The page around `body` (already escaped HTML).
/// A page around `body`, HTML its caller built with every value escaped
/// (the title is escaped here).
pub fn wrap_html(title: &str, body: &str) -> String {
    wrap(title, body)
}

fn wrap(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\">\
<title>{title}</title><style>\
body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1b1b1b}}\
h1{{font-size:1.4rem}}h2{{font-size:1.05rem;margin-bottom:.2rem}}code{{word-break:break-all}}\
dt{{font-weight:600;margin-top:.5rem}}dd{{margin:0}}\
a.button,button.button{{display:inline-block;border:0;font:inherit;cursor:pointer;padding:.5rem 1rem;margin:.2rem .4rem .2rem 0;background:#0078d4;color:#fff;border-radius:4px;text-decoration:none}}\
footer{{margin-top:2rem;color:#666;font-size:.85rem}}\
</style></head><body><h1>{title}</h1>\n{body}<footer>ado-auth-proxy</footer></body></html>\n",
        title = escape(title),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_every_value() {
        let html = super::render(
            "<t>",
            &["<script>alert(1)</script>"],
            Some(("go", "/x?a=1&b=\"2\"")),
            &[("id", "'1'")],
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("/x?a=1&amp;b=&quot;2&quot;"));
        assert!(html.contains("&#39;1&#39;"));
        assert!(html.contains("<title>&lt;t&gt;</title>"));
    }
}
