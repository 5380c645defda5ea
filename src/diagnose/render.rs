//! A finding as an [`Answer`]: the catalog's texts with their
//! placeholders filled; `crate::answer` writes it in the client's
//! language.

use super::{Finding, Vars};
use crate::answer::{Answer, Fix, Said};

// === impl Finding ===

impl Finding {
    /// The answer for this finding, keeping the status it was found with
    /// (the caller adds the headers to keep).
    pub fn into_answer(self) -> Answer {
        let e = self.entry;
        let mut answer = Answer::new(self.status, e.id, e.title, fill(e.cause, &self.vars));
        answer.fix = Some(Fix {
            user: fill(e.user_fix, &self.vars),
            admin: fill(e.admin_fix, &self.vars),
            fixer: e.fixer.as_str(),
            docs: e.docs,
        });
        answer.said = Some(Said {
            by: self.said_by,
            message: self.message,
            type_key: self.type_key,
            original: self.original,
        });
        answer.retry_after = self.retry_after;
        answer.ids = self.ids;
        if e.sign_in_again {
            answer.sign_in = self.vars.sign_in_url;
        }
        answer
    }
}

/// Fills the catalog placeholders in one pass over the catalog's text,
/// so a value (a feed name from the request, a code from the provider)
/// that looks like a placeholder stays as it is; an unknown value reads
/// as a hint.
pub fn fill(text: &str, vars: &Vars) -> String {
    crate::answer::fill(text, |name| value_of(name, vars))
}

/// The text standing for placeholder `name`, `None` for no placeholder.
fn value_of(name: &str, vars: &Vars) -> Option<String> {
    let or = |v: Option<&str>, hint: &str| v.unwrap_or(hint).to_string();
    Some(match name {
        "code" => or(vars.code.as_deref(), "its code"),
        "org" => or(vars.org.as_deref(), "<organization>"),
        "redirect_uri" => or(vars.redirect_uri.as_deref(), "<the proxy's callback URL>"),
        "resource_tenant" => or(
            vars.resource_tenant.as_deref(),
            "<the organization's tenant>",
        ),
        "user_tenant" => or(vars.user_tenant.as_deref(), "<your tenant>"),
        "feed" => vars
            .feed
            .as_deref()
            .map_or_else(|| "the feed".to_string(), |f| format!("feed '{f}'")),
        "permission" => or(vars.permission.as_deref(), "the permission it names"),
        "feed_role" => or(
            vars.feed_role,
            "Feed Publisher (Contributor) to publish, Feed Reader to read",
        ),
        "admin_consent_url" => or(
            vars.admin_consent_url.as_deref(),
            "Entra admin center > Enterprise applications > the app > Permissions",
        ),
        _ => return None,
    })
}
