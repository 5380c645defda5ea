//! What a client is told when the proxy answers instead of Azure DevOps,
//! and the one place that decides how it is written: a self-contained
//! HTML page for browsers, Azure DevOps' own JSON error shape (extended)
//! for its SDKs, RFC 9457 problem details for clients that ask for them,
//! and short `text/plain` lines that git prints as `remote:`.
//!
//! Both kinds of answer come here: a diagnosed upstream or sign-in
//! failure (`diagnose`, with the catalog's fixes) and the proxy's own
//! refusals (`error`).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::request::{ClientKind, RequestCtx};

/// Fills `{placeholders}` in `text` in one pass: `value_of` gives a
/// name's text, `None` leaves the braces as they are. A value that looks
/// like a placeholder (a feed name from the request, a code from the
/// provider) is never filled again.
pub fn fill(text: &str, value_of: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find('}')
            .and_then(|close| value_of(&after[..close]).map(|v| (close, v)))
        {
            Some((close, value)) => {
                out.push_str(&value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// An answer, before it is written in a client's language.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status as the failure has it; git may see a 403 instead (see
    /// [`Answer::proxy_credential`]).
    pub status: StatusCode,
    /// Stable id: a catalog case or one of the proxy's own problems
    /// (`urn:ado-auth-proxy:problem:{id}`).
    pub id: &'static str,
    /// One line.
    pub title: &'static str,
    /// What happened; for the proxy's own refusals also what to do.
    pub cause: String,
    /// The catalog's remedies, for a diagnosed failure.
    pub fix: Option<Fix>,
    /// What Azure DevOps or the provider said, kept.
    pub said: Option<Said>,
    /// Seconds to wait, as the `Retry-After` says.
    pub retry_after: Option<String>,
    /// Correlation ids: (name, value).
    pub ids: Vec<(String, String)>,
    /// Where to sign in again, when that is the fix.
    pub sign_in: Option<String>,
    /// Another link that helps (text, href), on HTML pages.
    pub action: Option<(&'static str, String)>,
    /// Where to sign in, for programs that can show it.
    pub login_url: Option<String>,
    /// Headers the response keeps (the upstream's, `Retry-After`, ...).
    pub headers: HeaderMap,
    /// The proxy supplied the request's credential, so git's password
    /// prompt (its answer to a 401) cannot help: git gets a 403, whose
    /// text it prints.
    pub proxy_credential: bool,
}

/// The catalog's remedies for a diagnosed failure.
#[derive(Debug, Clone)]
pub struct Fix {
    /// What the user can do.
    pub user: String,
    /// What an administrator can do.
    pub admin: String,
    /// Who must act (`user`, `administrator`, ...).
    pub fixer: &'static str,
    /// Documentation link.
    pub docs: &'static str,
}

/// What Azure DevOps or the sign-in provider said.
#[derive(Debug, Clone, Default)]
pub struct Said {
    /// "Azure DevOps" or "The sign-in provider".
    pub by: &'static str,
    /// Its message.
    pub message: Option<String>,
    /// Azure DevOps' `typeKey`.
    pub type_key: Option<String>,
    /// Azure DevOps' JSON error object, kept for the ADO-shaped answer.
    pub original: Option<Map<String, Value>>,
}

/// The answer's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `text/html` page.
    Html,
    /// Azure DevOps' WrappedException JSON, extended.
    AdoJson,
    /// `application/problem+json`.
    Problem,
    /// `text/plain` for git.
    GitText,
}

impl Form {
    /// The language a request's client reads.
    pub fn of(ctx: &RequestCtx) -> Self {
        match ctx.client {
            ClientKind::Browser => Self::Html,
            ClientKind::Git => Self::GitText,
            ClientKind::Program if ctx.wants_problem => Self::Problem,
            ClientKind::Program => Self::AdoJson,
        }
    }
}

// === impl Answer ===

impl Answer {
    /// One of the proxy's own refusals: `cause` says what happened and
    /// what to do.
    pub fn new(status: StatusCode, id: &'static str, title: &'static str, cause: String) -> Self {
        Self {
            status,
            id,
            title,
            cause,
            fix: None,
            said: None,
            retry_after: None,
            ids: Vec::new(),
            sign_in: None,
            action: None,
            login_url: None,
            headers: HeaderMap::new(),
            proxy_credential: false,
        }
    }

    /// Adds a `Retry-After` of `secs` (header and text).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        self.retry_after = Some(secs.to_string());
        self
    }

    /// Adds a link to sign in again.
    pub fn sign_in_again(mut self, href: impl Into<String>) -> Self {
        self.sign_in = Some(href.into());
        self
    }

    /// The status the client gets: git sees a 403 for a 401 the proxy's
    /// credential earned (a 401 makes it prompt and hide the text).
    pub fn status_for(&self, client: ClientKind) -> StatusCode {
        if client == ClientKind::Git
            && self.status == StatusCode::UNAUTHORIZED
            && self.proxy_credential
        {
            StatusCode::FORBIDDEN
        } else {
            self.status
        }
    }

    /// The whole response for `ctx`'s client.
    pub fn into_response(mut self, ctx: &RequestCtx) -> Response<Bytes> {
        let status = self.status_for(ctx.client);
        if status != self.status {
            // A challenge on a 403 means nothing.
            self.headers.remove(header::WWW_AUTHENTICATE);
        }
        let (content_type, text) = self.body(Form::of(ctx), ctx.request_id_str());
        let mut headers = std::mem::take(&mut self.headers);
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::ETAG,
        ] {
            headers.remove(name);
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        crate::page::mark_own(&mut headers);
        let mut resp = Response::new(Bytes::from(text));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        if ctx.client == ClientKind::Program
            && let Some(reason) = self.reason_phrase(status)
        {
            resp.extensions_mut().insert(reason);
        }
        resp
    }

    /// The HTTP/1 reason phrase for programs: package managers (NuGet,
    /// pip, twine, npm) print it and not the body, as Azure Artifacts
    /// puts its words there. `Forbidden - <Azure DevOps' words> -
    /// [ado-auth-proxy] <title>. <what you can do>`, printable ASCII only,
    /// bounded.
    fn reason_phrase(&self, status: StatusCode) -> Option<hyper::ext::ReasonPhrase> {
        const MAX: usize = 600;
        let mut text = status.canonical_reason().unwrap_or("Error").to_string();
        if let Some(m) = self.message().filter(|m| !m.is_empty()) {
            text.push_str(" - ");
            text.push_str(m);
        }
        text.push_str(" - [ado-auth-proxy] ");
        text.push_str(self.title);
        text.push('.');
        if let Some(fix) = &self.fix {
            text.push(' ');
            text.push_str(&fix.user);
        }
        let mut out = String::with_capacity(MAX);
        for c in text.chars() {
            let c = match c {
                ' '..='~' => c,
                '\u{2018}' | '\u{2019}' => '\'',
                '\u{201c}' | '\u{201d}' => '"',
                _ => ' ',
            };
            if out.len() + 1 > MAX {
                break;
            }
            out.push(c);
        }
        hyper::ext::ReasonPhrase::try_from(out.trim_end().to_string()).ok()
    }

    /// The body in `form` and its content type.
    pub fn body(&self, form: Form, request_id: &str) -> (&'static str, String) {
        match form {
            Form::Html => ("text/html; charset=utf-8", self.html(request_id)),
            Form::AdoJson => (
                "application/json; charset=utf-8",
                self.ado_json(request_id).to_string(),
            ),
            Form::Problem => (
                "application/problem+json",
                self.problem(request_id).to_string(),
            ),
            Form::GitText => ("text/plain; charset=utf-8", self.git(request_id)),
        }
    }

    fn message(&self) -> Option<&str> {
        self.said.as_ref().and_then(|s| s.message.as_deref())
    }

    fn type_key(&self) -> Option<&str> {
        self.said.as_ref().and_then(|s| s.type_key.as_deref())
    }

    fn facts(&self, request_id: &str) -> Vec<(String, String)> {
        let mut out = vec![("Status".to_string(), self.status.as_u16().to_string())];
        if let Some(m) = self.message() {
            out.push(("Message".into(), m.to_string()));
        }
        if let Some(t) = self.type_key() {
            out.push(("typeKey".into(), t.to_string()));
        }
        if let Some(r) = &self.retry_after {
            out.push(("Retry-After (seconds)".into(), r.clone()));
        }
        out.extend(self.ids.iter().cloned());
        out.push(("Request id".into(), request_id.to_string()));
        out
    }

    fn html(&self, request_id: &str) -> String {
        let sections: Vec<(&str, &str)> = match &self.fix {
            Some(fix) => vec![
                ("What happened", self.cause.as_str()),
                ("What you can do", fix.user.as_str()),
                ("What an administrator can do", fix.admin.as_str()),
            ],
            None => vec![("", self.cause.as_str())],
        };
        let mut actions: Vec<(&str, &str)> = Vec::new();
        if let Some(url) = &self.sign_in {
            actions.push(("Sign in again", url));
        }
        if let Some((text, href)) = &self.action {
            actions.push((text, href));
        }
        if let Some(fix) = &self.fix {
            actions.push(("Documentation", fix.docs));
        }
        let facts = self.facts(request_id);
        let facts: Vec<(&str, &str)> = facts
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        crate::page::render_sections(self.title, &sections, &actions, &facts)
    }

    /// The proxy's explanation, one paragraph, appended to Azure DevOps'
    /// own `message` so SDKs that only show `message` show it too.
    fn explanation(&self) -> String {
        match &self.fix {
            Some(fix) => format!(
                "[ado-auth-proxy] {}. {} What you can do: {}",
                self.title, self.cause, fix.user
            ),
            None => format!("[ado-auth-proxy] {}. {}", self.title, self.cause),
        }
    }

    fn ids_object(&self) -> Map<String, Value> {
        self.ids
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect()
    }

    fn proxy_object(&self, request_id: &str) -> Value {
        let fix = self.fix.as_ref();
        let mut o = json!({
            "id": self.id,
            "title": self.title,
            "cause": self.cause,
            "remedy": fix.map(|f| &f.user),
            "adminRemedy": fix.map(|f| &f.admin),
            "fixer": fix.map(|f| f.fixer),
            "docs": fix.map(|f| f.docs),
            "status": self.status.as_u16(),
            "retryAfter": self.retry_after,
            "correlation": self.ids_object(),
            "requestId": request_id,
        });
        if let Some(url) = &self.login_url {
            o["loginUrl"] = json!(url);
        }
        o
    }

    /// Azure DevOps' own shape, so SDK error handling keeps working: the
    /// upstream object when there was one, `message` extended, plus an
    /// `adoAuthProxy` object.
    fn ado_json(&self, request_id: &str) -> Value {
        let original = self.said.as_ref().and_then(|s| s.original.clone());
        let mut obj = original.unwrap_or_else(|| {
            let mut o = Map::new();
            o.insert("$id".into(), json!("1"));
            o.insert("innerException".into(), Value::Null);
            o.insert("message".into(), json!(""));
            o.insert(
                "typeName".into(),
                json!("AdoAuthProxy.DiagnosedException, ado-auth-proxy"),
            );
            o.insert("typeKey".into(), json!("DiagnosedException"));
            o.insert("errorCode".into(), json!(0));
            o.insert("eventId".into(), json!(3000));
            o
        });
        let message = match self.message().filter(|m| !m.is_empty()) {
            Some(original) => format!("{original} {}", self.explanation()),
            None => self.explanation(),
        };
        obj.insert("message".into(), json!(message));
        obj.insert("adoAuthProxy".into(), self.proxy_object(request_id));
        Value::Object(obj)
    }

    fn problem(&self, request_id: &str) -> Value {
        let mut p = json!({
            "type": format!("urn:ado-auth-proxy:problem:{}", self.id),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.cause,
            "requestId": request_id,
        });
        if let Some(fix) = &self.fix {
            p["remedy"] = json!(fix.user);
            p["adminRemedy"] = json!(fix.admin);
            p["fixer"] = json!(fix.fixer);
            p["docs"] = json!(fix.docs);
        }
        if let Some(m) = self.message() {
            p["adoMessage"] = json!(m);
        }
        if let Some(t) = self.type_key() {
            p["typeKey"] = json!(t);
        }
        if let Some(r) = &self.retry_after {
            p["retryAfter"] = json!(r);
        }
        if !self.ids.is_empty() {
            p["correlation"] = Value::Object(self.ids_object());
        }
        if let Some(url) = &self.login_url {
            p["loginUrl"] = json!(url);
        }
        p
    }

    /// A few short lines; git prefixes each with `remote: `.
    fn git(&self, request_id: &str) -> String {
        let mut out = format!("ado-auth-proxy: {}\n", self.title);
        if let (Some(said), Some(m)) = (&self.said, self.message()) {
            out.push_str(&format!("{} said: {m}\n", said.by));
        }
        match &self.fix {
            Some(fix) => {
                out.push_str(&format!("Cause: {}\n", self.cause));
                out.push_str(&format!("Fix: {}\n", fix.user));
                if let Some(r) = &self.retry_after {
                    out.push_str(&format!("Retry after: {r} seconds\n"));
                }
                out.push_str(&format!("Admin: {}\n", fix.admin));
            }
            None => {
                out.push_str(&format!("{}\n", self.cause));
                if let Some(r) = &self.retry_after {
                    out.push_str(&format!("Retry after: {r} seconds\n"));
                }
            }
        }
        if let Some(url) = &self.sign_in {
            out.push_str(&format!("Sign in again in a browser: {url}\n"));
        }
        if let Some(fix) = &self.fix {
            out.push_str(&format!("Docs: {}\n", fix.docs));
        }
        let ids: Vec<String> = self
            .ids
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .chain(std::iter::once(format!("request id {request_id}")))
            .collect();
        out.push_str(&format!("Ids: {}\n", ids.join(", ")));
        out
    }
}
