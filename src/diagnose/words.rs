//! Azure DevOps' own words in an upstream answer, read once: the JSON
//! `message` and `typeKey`, an HTML page's title, `X-TFS-ServiceError`,
//! the SOAP fault in `X-TFS-SoapException`, a plain-text body, Azure
//! Artifacts' reason phrase; and whether an HTML page is the sign-in page.

use http::HeaderMap;

use super::{Upstream, ado_codes, artifacts, is_html, markup};

/// Most characters of an `X-TFS-ServiceError` an answer repeats beside
/// the message it chose.
pub(super) const MAX_SERVICE_ERROR: usize = 500;

/// What an upstream answer says, read once.
pub(super) struct Words {
    /// The body as text (lossy).
    pub(super) text: String,
    /// The body's JSON object, if it is one.
    pub(super) json: Option<serde_json::Map<String, serde_json::Value>>,
    /// Its `typeKey`.
    pub(super) type_key: Option<String>,
    /// Azure DevOps' own words ([`message_of`], else the reason phrase's).
    pub(super) message: Option<String>,
    /// `X-TFS-ServiceError` when it says more than the message chosen (a
    /// page's title): its codes count, and the answer keeps its text.
    pub(super) service_error: Option<String>,
    /// Azure Artifacts' activity id from the reason phrase.
    pub(super) activity: Option<String>,
}

impl Words {
    pub(super) fn read(answer: &Upstream<'_>) -> Self {
        let text = String::from_utf8_lossy(answer.body).into_owned();
        let json = serde_json::from_slice::<serde_json::Value>(answer.body)
            .ok()
            .and_then(|v| match v {
                serde_json::Value::Object(o) => Some(o),
                _ => None,
            });
        let type_key = json
            .as_ref()
            .and_then(|o| o.get("typeKey"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        // Azure Artifacts' words in the reason phrase, and its activity id.
        let (reason, activity) = answer
            .reason
            .and_then(artifacts::reason_words)
            .map_or((None, None), |(words, id)| (Some(words), id));
        // Upstream words stay on one line in every answer.
        let message = message_of(answer.headers, &text, json.as_ref())
            .or(reason)
            .map(|m| markup::one_line(&m));
        let m = message.as_deref().unwrap_or("");
        let service_error = header_text(answer.headers, "x-tfs-serviceerror")
            .map(|t| {
                markup::one_line(t.trim())
                    .chars()
                    .take(MAX_SERVICE_ERROR)
                    .collect::<String>()
            })
            .filter(|t| !t.is_empty() && !m.contains(t.as_str()) && !t.contains(m));
        Self {
            text,
            json,
            type_key,
            message,
            service_error,
            activity,
        }
    }

    /// Azure DevOps' codes (TF…, VS…) in the message and the service error.
    pub(super) fn codes(&self) -> Vec<&str> {
        let mut codes = ado_codes(self.message.as_deref().unwrap_or(""));
        codes.extend(
            self.service_error
                .as_deref()
                .map(ado_codes)
                .unwrap_or_default(),
        );
        codes
    }
}

/// Azure DevOps' own words in an answer, most specific first: the JSON
/// `message`, an HTML page's title, `X-TFS-ServiceError`, plain text.
pub(super) fn message_of(
    headers: &HeaderMap,
    text: &str,
    json: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Option<String> {
    let json_message = json
        .and_then(|o| o.get("message"))
        .and_then(|m| m.as_str())
        .map(str::to_string);
    let title = if is_html(headers) {
        html_title(text)
    } else {
        None
    };
    let service_error = header_text(headers, "x-tfs-serviceerror");
    let soap = header_text(headers, "x-tfs-soapexception").and_then(|x| soap_message(&x));
    let plain = (!is_html(headers) && json.is_none() && !text.trim().is_empty())
        .then(|| text.trim().chars().take(1000).collect::<String>());
    json_message
        .or(title)
        .or(service_error.filter(|m| !m.trim().is_empty()))
        .or(soap)
        .or(plain)
        .filter(|m| !m.is_empty())
}

/// A URL-encoded header's text (`+` and `%20` are spaces), at most
/// 1000 characters.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let v = headers.get(name)?.as_bytes();
    let decoded: String = url::form_urlencoded::parse(&[b"m=", v].concat())
        .next()
        .map(|(_, m)| m.into_owned())
        .unwrap_or_default();
    Some(decoded.chars().take(4000).collect())
}

/// The fault text of the SOAP envelope Azure DevOps puts (URL-encoded)
/// in `X-TFS-SoapException`: SOAP 1.2's `<soap:Text>`, SOAP 1.1's
/// `<faultstring>`, or a `<Message>`; failing those, the envelope's text
/// without tags when it names an Azure DevOps code.
pub(super) fn soap_message(xml: &str) -> Option<String> {
    let found = ["Text", "faultstring", "Message"]
        .iter()
        .find_map(|tag| element_text(xml, tag).map(str::to_string))
        .or_else(|| {
            let text = markup::plain(xml);
            (!ado_codes(&text).is_empty()).then_some(text)
        })?;
    let message: String = markup::unescape(found.trim()).chars().take(1000).collect();
    (!message.trim().is_empty()).then_some(message)
}

/// The text inside the first non-empty element whose local name is
/// `tag` (any namespace prefix).
fn element_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let Some(end) = rest.find('>') else { break };
        let head = &rest[..end];
        let name = head.split(|c: char| c.is_whitespace()).next().unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        if local == tag && !head.ends_with('/') {
            let inner = &rest[end + 1..];
            let text = &inner[..inner.find('<').unwrap_or(inner.len())];
            if !text.trim().is_empty() {
                return Some(text);
            }
        }
    }
    None
}

/// Whether an HTML answer on a REST path is Azure DevOps' sign-in page
/// rather than HTML the client asked for: it says "sign in" in its title
/// or sends the browser to a sign-in host (a form, link, refresh or
/// script), or Azure DevOps names its sign-in redirect in a header.
pub(super) fn looks_like_sign_in(headers: &HeaderMap, html: &str) -> bool {
    if headers.get("x-tfs-fedauthredirect").is_some_and(|v| {
        v.as_bytes()
            .windows(7)
            .any(|w| w.eq_ignore_ascii_case(b"_signin"))
    }) {
        return true;
    }
    let title = html_title(html).unwrap_or_default().to_ascii_lowercase();
    if ["sign in", "sign-in", "signin", "log in", "login"]
        .iter()
        .any(|w| title.contains(w))
    {
        return true;
    }
    let lower = html.to_ascii_lowercase();
    [
        "login.microsoftonline.com",
        "login.windows.net",
        "login.live.com",
        "/_signin",
        "/_signedin",
    ]
    .iter()
    .any(|host| lower.contains(host))
}

fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = lower[start..].find('>')? + start + 1;
    let end = lower[open_end..].find("</title>")? + open_end;
    let title = markup::unescape(html[open_end..end].trim());
    (!title.is_empty()).then_some(title)
}
