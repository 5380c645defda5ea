//! One finding, four languages: a self-contained HTML page for browsers,
//! Azure DevOps' own JSON error shape (extended) for its SDKs, RFC 9457
//! problem details for clients that ask for them, and short `text/plain`
//! lines that git prints as `remote:`.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Finding, Vars};
use crate::request::{ClientKind, RequestCtx};

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

/// The language a request's client reads.
pub fn form_for(ctx: &RequestCtx) -> Form {
    match ctx.client {
        ClientKind::Browser => Form::Html,
        ClientKind::Git => Form::GitText,
        ClientKind::Program if ctx.wants_problem => Form::Problem,
        ClientKind::Program => Form::AdoJson,
    }
}

/// The whole answer: `status`, the `headers` kept from the upstream (or
/// none), and the body in the client's language (the caller wraps it in
/// its body type).
pub fn response(
    f: &Finding,
    ctx: &RequestCtx,
    status: StatusCode,
    mut headers: HeaderMap,
) -> Response<Bytes> {
    let (content_type, text) = body(f, form_for(ctx), ctx.request_id_str());
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::ETAG,
    ] {
        headers.remove(name);
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let mut resp = Response::new(Bytes::from(text));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Fills the catalog placeholders; an unknown value reads as a hint.
pub fn fill(text: &str, vars: &Vars) -> String {
    text.replace("{org}", vars.org.as_deref().unwrap_or("<organization>"))
        .replace(
            "{redirect_uri}",
            vars.redirect_uri
                .as_deref()
                .unwrap_or("<the proxy's callback URL>"),
        )
        .replace(
            "{resource_tenant}",
            vars.resource_tenant
                .as_deref()
                .unwrap_or("<the organization's tenant>"),
        )
        .replace(
            "{user_tenant}",
            vars.user_tenant.as_deref().unwrap_or("<your tenant>"),
        )
        .replace(
            "{admin_consent_url}",
            vars.admin_consent_url
                .as_deref()
                .unwrap_or("Entra admin center > Enterprise applications > the app > Permissions"),
        )
}

/// The body and its content type.
pub fn body(f: &Finding, form: Form, request_id: &str) -> (&'static str, String) {
    match form {
        Form::Html => ("text/html; charset=utf-8", html(f, request_id)),
        Form::AdoJson => (
            "application/json; charset=utf-8",
            ado_json(f, request_id).to_string(),
        ),
        Form::Problem => (
            "application/problem+json",
            problem(f, request_id).to_string(),
        ),
        Form::GitText => ("text/plain; charset=utf-8", git(f, request_id)),
    }
}

fn facts<'a>(f: &'a Finding, request_id: &'a str) -> Vec<(String, String)> {
    let mut out = vec![("Status".to_string(), f.status.as_u16().to_string())];
    if let Some(m) = &f.message {
        out.push(("Message".into(), m.clone()));
    }
    if let Some(t) = &f.type_key {
        out.push(("typeKey".into(), t.clone()));
    }
    if let Some(r) = &f.retry_after {
        out.push(("Retry-After (seconds)".into(), r.clone()));
    }
    out.extend(f.ids.iter().cloned());
    out.push(("Request id".into(), request_id.to_string()));
    out
}

fn html(f: &Finding, request_id: &str) -> String {
    let e = f.entry;
    let cause = fill(e.cause, &f.vars);
    let user = fill(e.user_fix, &f.vars);
    let admin = fill(e.admin_fix, &f.vars);
    let sections = [
        ("What happened", cause.as_str()),
        ("What you can do", user.as_str()),
        ("What an administrator can do", admin.as_str()),
    ];
    let mut actions: Vec<(&str, &str)> = Vec::new();
    if let (true, Some(url)) = (e.sign_in_again, &f.vars.sign_in_url) {
        actions.push(("Sign in again", url));
    }
    actions.push(("Documentation", e.docs));
    let facts = facts(f, request_id);
    let facts: Vec<(&str, &str)> = facts
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    crate::page::render_sections(e.title, &sections, &actions, &facts)
}

/// The proxy's explanation, one paragraph, appended to Azure DevOps'
/// own `message` so SDKs that only show `message` show it too.
fn explanation(f: &Finding) -> String {
    format!(
        "[ado-auth-proxy] {}. {} What you can do: {}",
        f.entry.title,
        fill(f.entry.cause, &f.vars),
        fill(f.entry.user_fix, &f.vars)
    )
}

fn proxy_object(f: &Finding, request_id: &str) -> Value {
    let ids: serde_json::Map<String, Value> =
        f.ids.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({
        "id": f.entry.id,
        "title": f.entry.title,
        "cause": fill(f.entry.cause, &f.vars),
        "remedy": fill(f.entry.user_fix, &f.vars),
        "adminRemedy": fill(f.entry.admin_fix, &f.vars),
        "fixer": f.entry.fixer.as_str(),
        "docs": f.entry.docs,
        "status": f.status.as_u16(),
        "retryAfter": f.retry_after,
        "correlation": ids,
        "requestId": request_id,
    })
}

/// Azure DevOps' own shape, so SDK error handling keeps working: the
/// upstream object when there was one, `message` extended, plus an
/// `adoAuthProxy` object.
fn ado_json(f: &Finding, request_id: &str) -> Value {
    let mut obj = f.original.clone().unwrap_or_else(|| {
        let mut o = serde_json::Map::new();
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
    let original = f.message.clone().unwrap_or_default();
    let message = if original.is_empty() {
        explanation(f)
    } else {
        format!("{original} {}", explanation(f))
    };
    obj.insert("message".into(), json!(message));
    obj.insert("adoAuthProxy".into(), proxy_object(f, request_id));
    Value::Object(obj)
}

fn problem(f: &Finding, request_id: &str) -> Value {
    let mut p = json!({
        "type": format!("urn:ado-auth-proxy:problem:{}", f.entry.id),
        "title": f.entry.title,
        "status": f.status.as_u16(),
        "detail": fill(f.entry.cause, &f.vars),
        "remedy": fill(f.entry.user_fix, &f.vars),
        "adminRemedy": fill(f.entry.admin_fix, &f.vars),
        "fixer": f.entry.fixer.as_str(),
        "docs": f.entry.docs,
        "requestId": request_id,
    });
    if let Some(m) = &f.message {
        p["adoMessage"] = json!(m);
    }
    if let Some(t) = &f.type_key {
        p["typeKey"] = json!(t);
    }
    if let Some(r) = &f.retry_after {
        p["retryAfter"] = json!(r);
    }
    if !f.ids.is_empty() {
        let ids: serde_json::Map<String, Value> =
            f.ids.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        p["correlation"] = Value::Object(ids);
    }
    p
}

/// A few short lines; git prefixes each with `remote: `.
fn git(f: &Finding, request_id: &str) -> String {
    let mut out = format!("ado-auth-proxy: {}\n", f.entry.title);
    if let Some(m) = &f.message {
        out.push_str(&format!("{} said: {m}\n", f.said_by));
    }
    out.push_str(&format!("Cause: {}\n", fill(f.entry.cause, &f.vars)));
    out.push_str(&format!("Fix: {}\n", fill(f.entry.user_fix, &f.vars)));
    if let Some(r) = &f.retry_after {
        out.push_str(&format!("Retry after: {r} seconds\n"));
    }
    out.push_str(&format!("Admin: {}\n", fill(f.entry.admin_fix, &f.vars)));
    if let (true, Some(url)) = (f.entry.sign_in_again, &f.vars.sign_in_url) {
        out.push_str(&format!("Sign in again in a browser: {url}\n"));
    }
    out.push_str(&format!("Docs: {}\n", f.entry.docs));
    let ids: Vec<String> = f
        .ids
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .chain(std::iter::once(format!("request id {request_id}")))
        .collect();
    out.push_str(&format!("Ids: {}\n", ids.join(", ")));
    out
}
