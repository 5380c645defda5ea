//! Recognising Azure DevOps and Entra failures: which catalog case an
//! upstream answer (status, `X-TFS-ServiceError`, the JSON `message` and
//! `typeKey`, an HTML `<title>`) or a sign-in error (`error`,
//! `error_codes`, AADSTS codes in the description) is, with the facts an
//! answer should keep: the original status and message and the
//! correlation ids. `render.rs` writes the answer in the client's language.

mod artifacts;
mod callers;
pub mod catalog;
mod client_token;
mod markup;
mod provider;
mod render;
mod said;
mod symptom;
mod words;

use http::{HeaderMap, StatusCode, header};

pub use catalog::{Applies, CATALOG, Caller, Entry, Fixer};
pub use client_token::ClientToken;
pub use provider::{
    CODES, Case, Code, OAUTH_ERROR, OTHER_AADSTS, ProviderSaid, ServiceFailure, TokenPath,
    UNAVAILABLE,
};
pub use said::{LEGACY_RETIRED, legacy_retired, read as read_provider_body};
pub use symptom::Symptom;
use words::{Words, looks_like_sign_in};

/// Largest upstream error body read to recognise it; larger ones pass
/// through untouched.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// Correlation headers Azure DevOps and Entra send, kept on every answer.
const CORRELATION_HEADERS: &[&str] = &[
    "x-vss-e2eid",
    "activityid",
    "x-tfs-session",
    "x-ms-request-id",
];

/// A recognised failure and what the answer must keep of it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The catalog case.
    pub entry: &'static Entry,
    /// The status the upstream (or sign-in step) answered.
    pub status: StatusCode,
    /// Azure DevOps' (or the provider's) own message, if any.
    pub message: Option<String>,
    /// Azure DevOps' `typeKey`, if any.
    pub type_key: Option<String>,
    /// The upstream's JSON error object, kept for the ADO-shaped answer.
    pub original: Option<serde_json::Map<String, serde_json::Value>>,
    /// Whose `message` it is: "Azure DevOps" or "The sign-in provider".
    pub said_by: &'static str,
    /// Correlation ids: (name, value).
    pub ids: Vec<(String, String)>,
    /// Seconds to wait, from the upstream's `Retry-After`.
    pub retry_after: Option<String>,
    /// Values for the catalog's placeholders.
    pub vars: Vars,
}

/// Values substituted into catalog texts.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// `{org}`: the organization of the request.
    pub org: Option<String>,
    /// `{redirect_uri}`: the callback URL the proxy sent.
    pub redirect_uri: Option<String>,
    /// `{admin_consent_url}`: where an administrator grants consent.
    pub admin_consent_url: Option<String>,
    /// Where to sign in again, when the proxy signs users in.
    pub sign_in_url: Option<String>,
    /// `{resource_tenant}`: the organization's directory.
    pub resource_tenant: Option<String>,
    /// `{user_tenant}`: the signed-in user's directory.
    pub user_tenant: Option<String>,
    /// `{code}`: the identity provider's code (`AADSTS7000215`).
    pub code: Option<String>,
    /// `{feed}`: the Azure Artifacts feed of the request.
    pub feed: Option<String>,
    /// `{permission}`: the feed permission Azure Artifacts asks for.
    pub permission: Option<String>,
    /// `{feed_role}`: the least feed role that grants it.
    pub feed_role: Option<&'static str>,
}

/// An upstream answer as the diagnosis reads it: its status, headers,
/// body (empty when it could not be read) and HTTP/1 reason phrase.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The body, read bounded; empty when compressed or too large.
    pub body: &'a [u8],
    /// The reason phrase when it is not the canonical one.
    pub reason: Option<&'a str>,
}

impl<'a> Upstream<'a> {
    /// An answer without a reason phrase of its own.
    pub fn new(status: StatusCode, headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self {
            status,
            headers,
            body,
            reason: None,
        }
    }
}

/// The error codes Azure DevOps puts in messages: `TF400813`, `VS30063`.
pub fn ado_codes(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() {
        let prefix = &b[i..i + 2];
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if boundary && (prefix == b"TF" || prefix == b"VS") {
            let digits = b[i + 2..].iter().take_while(|c| c.is_ascii_digit()).count();
            let end = i + 2 + digits;
            let after_ok = b.get(end).is_none_or(|c| !c.is_ascii_alphanumeric());
            if (5..=6).contains(&digits) && after_ok {
                out.push(&text[i..end]);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// AADSTS numbers in a text (`AADSTS50076: ...`).
pub fn aadsts_codes(text: &str) -> Vec<u64> {
    text.match_indices("AADSTS")
        .filter_map(|(i, _)| {
            let digits: String = text[i + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// Whether an upstream answer may be a recognised failure, from its head
/// alone: the body is then read (bounded) and [`recognise`]d.
pub fn worth_inspecting(status: StatusCode, headers: &HeaderMap, path: &str) -> bool {
    match status.as_u16() {
        203 | 400 | 401 | 403 | 404 | 429 => true,
        200..=299 => is_api_path(path) && is_html(headers),
        _ => false,
    }
}

fn is_api_path(path: &str) -> bool {
    path.contains("/_apis/") || path.ends_with("/_apis")
}

pub(super) fn is_html(headers: &HeaderMap) -> bool {
    // Runs for every successful API answer: no allocation.
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..9))
        .is_some_and(|p| p.eq_ignore_ascii_case(b"text/html"))
}

/// The catalog case of an upstream answer to a request sent with
/// `caller`'s credential, if it is one. `body` is empty when it could not
/// be read (compressed or too large); `organization` is the one the
/// router found in the path.
pub fn recognise(
    answer: Upstream<'_>,
    path: &str,
    organization: Option<&str>,
    caller: Caller,
) -> Option<Finding> {
    recognise_for(answer, path, organization, Sender::new(caller))
}

/// What the identity knows of a request whose answer is diagnosed: whose
/// credential it sent, and the facts that decide between entries.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Whose credential it was.
    pub caller: Caller,
    /// Mode `none`: the kind of the client's own token.
    pub token: ClientToken,
    /// The directory of the token the proxy sent (its `tid`), when known:
    /// told apart from the organization's (`X-VSS-ResourceTenant`).
    pub token_tenant: Option<String>,
    /// Where to sign in again, when the proxy signs users in.
    pub sign_in_url: Option<String>,
}

impl Sender {
    /// `caller`, with nothing else known.
    pub fn new(caller: Caller) -> Self {
        Self {
            caller,
            token: ClientToken::None,
            token_tenant: None,
            sign_in_url: None,
        }
    }
}

/// [`recognise`], knowing what the identity knows of the request.
pub fn recognise_for(
    answer: Upstream<'_>,
    path: &str,
    organization: Option<&str>,
    sender: Sender,
) -> Option<Finding> {
    let words = Words::read(&answer);
    let (mut symptom, pat_violation) = symptom_of(&answer, path, &words)?;
    // A token of one directory refused by an organization backed by
    // another: Azure DevOps names its tenant in `X-VSS-ResourceTenant`
    // (or the Bearer challenge).
    let mut tenants = (None, None);
    if symptom == Symptom::NotAccepted
        && let (Some(resource), Some(mine)) = (
            resource_tenant(answer.headers),
            sender.token_tenant.as_deref().map(str::to_ascii_lowercase),
        )
        && resource != mine
    {
        symptom = Symptom::WrongDirectory;
        tenants = (Some(resource), Some(mine));
    }
    let Words {
        json,
        type_key,
        message,
        service_error,
        activity,
        ..
    } = words;
    let headers = answer.headers;
    let mut ids = correlation_ids(headers);
    if let Some(activity) = activity
        && !ids.iter().any(|(_, v)| v.eq_ignore_ascii_case(&activity))
    {
        ids.push(("DevOps Activity ID".to_string(), activity));
    }
    if let Some(text) = service_error {
        ids.push(("X-TFS-ServiceError".to_string(), text));
    }
    let m = message.as_deref().unwrap_or("");
    let permission = artifacts::permission(m);
    let feed = artifacts::feed(m, path);
    Some(Finding {
        entry: symptom.entry_for_token(sender.caller, sender.token),
        // A sign-in page with 203 (or 200) is a success to every HTTP
        // library: the refusal is answered as the 401 it is.
        status: if answer.status.is_success() {
            StatusCode::UNAUTHORIZED
        } else {
            answer.status
        },
        message,
        type_key,
        original: json.filter(|o| o.contains_key("message")),
        said_by: "Azure DevOps",
        ids,
        retry_after: headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        vars: Vars {
            org: organization.map(str::to_string),
            code: pat_violation.map(str::to_string),
            feed,
            feed_role: permission.as_deref().map(artifacts::role_for),
            permission,
            resource_tenant: tenants.0,
            user_tenant: tenants.1,
            sign_in_url: sender.sign_in_url,
            ..Vars::default()
        },
    })
}

/// The symptom an upstream answer shows, with the PAT policy it names;
/// `None` when it is no failure the catalog knows.
fn symptom_of(
    answer: &Upstream<'_>,
    path: &str,
    words: &Words,
) -> Option<(Symptom, Option<&'static str>)> {
    let headers = answer.headers;
    let m = words.message.as_deref().unwrap_or("");
    let tk = words.type_key.as_deref();
    let codes = words.codes();
    let has = |code: &str| codes.contains(&code);
    let s = answer.status.as_u16();

    let html_on_api = (200..300).contains(&s) && is_api_path(path) && is_html(headers);
    if html_on_api && s != 203 && !looks_like_sign_in(headers, &words.text) {
        // HTML that REST asked for (a rendered wiki page, a preview):
        // not a failure.
        return None;
    }
    let symptom = if s == 203 || html_on_api {
        Symptom::NotAccepted
    } else if s == 429 || has("TF400733") {
        Symptom::Throttled
    } else if has("VS403463") {
        Symptom::ConditionalAccess
    } else if has("TF401444") {
        Symptom::FirstSignIn
    } else if has("VS30063") {
        Symptom::NotMember
    } else if m.contains("Personal Access Token used has expired") {
        Symptom::PatExpired
    } else if has("TF400813") && m.contains("is not authorized to access") {
        Symptom::AccessRefused
    } else if s == 401 && crate::challenge::insufficient_claims(headers).is_some() {
        Symptom::ClaimsChallenge
    } else if s == 401 {
        Symptom::NotAccepted
    } else if let Some(policy) = pat_policy(m) {
        return Some((Symptom::PatPolicy, Some(policy)));
    } else if artifacts::lacks_permission(m, tk) {
        Symptom::FeedPermission
    } else if artifacts::feed_missing(m, tk) {
        Symptom::FeedNotFound
    } else if has("TF401019") || has("VS800075") || has("TF200016") {
        Symptom::NotFound
    } else if s == 403 {
        Symptom::PermissionDenied
    } else {
        return None;
    };
    Some((symptom, None))
}

/// An entry as one paragraph of text (title, cause, what the reader can
/// do), its placeholders filled: for answers that quote the catalog in a
/// sentence of their own (`/.auth/pats`).
pub fn entry_text(entry: &Entry, vars: &Vars) -> String {
    format!(
        "{}. {} {}",
        entry.title,
        render::fill(entry.cause, vars),
        render::fill(entry.user_fix, vars)
    )
}

/// The personal access token policies Azure DevOps names, as the whole
/// message, when it refuses a token or its creation.
pub const PAT_POLICIES: &[&str] = &[
    "FullScopePatPolicyViolation",
    "DisablePatCreationPolicyViolation",
    "GlobalPatPolicyViolation",
    "PatLifespanPolicyViolation",
    "FailedToReadTenantPolicy",
];

/// The policy a message names, if it is (or starts with) one of
/// [`PAT_POLICIES`], in any case.
pub fn pat_policy(message: &str) -> Option<&'static str> {
    let m = message.trim();
    PAT_POLICIES.iter().copied().find(|p| {
        m.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
            && m[p.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

/// The organization's directory, from an Azure DevOps 401, when it is
/// an Entra tenant (a Microsoft-account organization names none).
pub fn resource_tenant(headers: &HeaderMap) -> Option<String> {
    match crate::challenge::directory(headers)? {
        crate::challenge::Directory::Tenant(t) => Some(t),
        crate::challenge::Directory::MicrosoftAccount => None,
    }
}

/// The correlation ids among `headers`.
pub fn correlation_ids(headers: &HeaderMap) -> Vec<(String, String)> {
    CORRELATION_HEADERS
        .iter()
        .filter_map(|name| {
            let v = headers.get(*name)?.to_str().ok()?;
            Some((header_display_name(name).to_string(), v.to_string()))
        })
        .collect()
}

fn header_display_name(name: &str) -> &'static str {
    match name {
        "x-vss-e2eid" => "X-VSS-E2EID",
        "activityid" => "ActivityId",
        "x-tfs-session" => "X-TFS-Session",
        _ => "x-ms-request-id",
    }
}

/// The catalog case of a sign-in failure: the provider's `error`, its
/// AADSTS codes (from `error_codes` or the description).
pub fn recognise_sign_in(error: &str, codes: &[u64], description: &str) -> Option<&'static Entry> {
    let said = ProviderSaid {
        error: error.to_string(),
        codes: codes.to_vec(),
        description: description.to_string(),
        ..ProviderSaid::default()
    };
    Some(said.case()?.entry(TokenPath::SignIn))
}

/// Entra's trace and correlation ids from an `error_description`
/// (`...\r\nTrace ID: x\r\nCorrelation ID: y\r\n...`).
pub fn ids_in_description(description: &str) -> Vec<(String, String)> {
    ["Trace ID", "Correlation ID", "Timestamp"]
        .iter()
        .filter_map(|label| {
            let i = description.find(&format!("{label}: "))? + label.len() + 2;
            let v: String = description[i..]
                .chars()
                .take_while(|c| *c != '\r' && *c != '\n')
                .collect();
            (!v.trim().is_empty()).then(|| (label.to_string(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
