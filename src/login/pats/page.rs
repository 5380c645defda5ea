//! The `/.auth/pats` page.

use super::{MAX_DAYS, SCOPES};
use crate::page::escape;

pub(in crate::login) fn not_entra_page() -> String {
    crate::page::render(
        "Personal access tokens",
        &[
            "Azure DevOps' PAT lifecycle API accepts only Microsoft Entra tokens, and this proxy \
           signs users in with another provider. Create personal access tokens in Azure DevOps \
           itself (User settings > Personal access tokens), or use a proxy token from \
           /.auth/tokens with the proxy.",
        ],
        Some(("Proxy tokens", "/.auth/tokens")),
        &[],
    )
}

/// The page: an organization picker, its PATs with a revoke button each,
/// the new PAT once, and the create form.
pub(super) fn pats_page(
    org: Option<&str>,
    listed: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
) -> String {
    let mut body = String::from(
        "<form method=\"get\" action=\"/.auth/pats\"><label>Organization <input name=\"org\" \
         required></label> <button class=\"button\" type=\"submit\">Show</button></form>\n",
    );
    if let Some(t) = new {
        body.push_str(&format!(
            "<h2>New personal access token: {}</h2>\n<p>Copy it now: it is not shown again.</p>\n\
             <p><code id=\"new-pat\">{}</code></p>\n",
            escape(t["displayName"].as_str().unwrap_or("")),
            escape(t["token"].as_str().unwrap_or("")),
        ));
    }
    let Some(org) = org else {
        return crate::page::wrap_html("Personal access tokens", &body);
    };
    let org_q: String = url::form_urlencoded::byte_serialize(org.as_bytes()).collect();
    body.push_str(&format!("<h2>Your PATs in {}</h2>\n", escape(org)));
    let tokens = listed
        .and_then(|l| l["patTokens"].as_array())
        .cloned()
        .unwrap_or_default();
    if tokens.is_empty() {
        body.push_str("<p>None.</p>\n");
    }
    for t in &tokens {
        body.push_str(&format!(
            "<p>{} <code>{}</code> until {} <form method=\"post\" action=\"/.auth/pats/{}?org={}\">\
             <button type=\"submit\">Revoke</button></form></p>\n",
            escape(t["displayName"].as_str().unwrap_or("")),
            escape(t["scope"].as_str().unwrap_or("")),
            escape(t["validTo"].as_str().unwrap_or("")),
            escape(t["authorizationId"].as_str().unwrap_or("")),
            escape(&org_q),
        ));
    }
    let checks: String = SCOPES
        .iter()
        .map(|(k, label)| {
            format!(
                "<label><input type=\"checkbox\" name=\"scope\" value=\"{k}\"> {}</label><br>\n",
                escape(label)
            )
        })
        .collect();
    body.push_str(&format!(
        "<h2>Create one for {}</h2>\n<form method=\"post\" action=\"/.auth/pats\">\n\
         <input type=\"hidden\" name=\"org\" value=\"{}\">\n<label>Name <input name=\"name\" \
         required maxlength=\"100\"></label><br>\n{checks}<label>Days <input name=\"days\" \
         type=\"number\" min=\"1\" max=\"{MAX_DAYS}\" value=\"7\"></label>\n<button \
         class=\"button\" type=\"submit\">Create</button>\n</form>\n<p>Prefer a proxy token \
         (/.auth/tokens) where the proxy runs: a PAT works without it, so keep it short-lived and \
         narrow.</p>\n",
        escape(org),
        escape(org),
    ));
    crate::page::wrap_html("Personal access tokens", &body)
}
