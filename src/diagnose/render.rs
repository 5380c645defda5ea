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

/// Fills the catalog placeholders; an unknown value reads as a hint.
pub fn fill(text: &str, vars: &Vars) -> String {
    text.replace("{code}", vars.code.as_deref().unwrap_or("its code"))
        .replace("{org}", vars.org.as_deref().unwrap_or("<organization>"))
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
            "{feed}",
            &vars
                .feed
                .as_deref()
                .map_or_else(|| "the feed".to_string(), |f| format!("feed '{f}'")),
        )
        .replace(
            "{permission}",
            vars.permission
                .as_deref()
                .unwrap_or("the permission it names"),
        )
        .replace(
            "{feed_role}",
            vars.feed_role
                .unwrap_or("Feed Publisher (Contributor) to publish, Feed Reader to read"),
        )
        .replace(
            "{admin_consent_url}",
            vars.admin_consent_url
                .as_deref()
                .unwrap_or("Entra admin center > Enterprise applications > the app > Permissions"),
        )
}
