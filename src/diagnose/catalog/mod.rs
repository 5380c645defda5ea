//! The catalog of recognised failures, as data: one entry per case with a
//! stable id, a title, the cause, what the user can do, what an
//! administrator can do, and a documentation link. Placeholders, filled
//! by `render::fill`: `{org}` (the organization of the request),
//! `{redirect_uri}` and `{admin_consent_url}` (the proxy's values),
//! `{resource_tenant}` and `{user_tenant}` (the directories of a
//! wrong-directory refusal).
//!
//! The same upstream answer means different things for different
//! credentials: each entry says which [`Caller`]s it [`Applies`] to
//! (`callers.rs`).

mod service;
mod sign_in;
mod upstream;

pub use super::callers::{Applies, Caller};

/// Who can fix the problem; decides the wording and the status for git.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixer {
    /// The user (sign in again, use another account, wait).
    User,
    /// An administrator of the organization or tenant.
    Admin,
    /// The operator of this proxy (its registration or secret).
    Operator,
}

/// One recognised case.
#[derive(Debug)]
pub struct Entry {
    /// Stable id: metric label, `adoAuthProxy.id`, problem type.
    pub id: &'static str,
    /// One line.
    pub title: &'static str,
    /// What happened.
    pub cause: &'static str,
    /// What the user can do.
    pub user_fix: &'static str,
    /// What an administrator can do.
    pub admin_fix: &'static str,
    /// Where to read more.
    pub docs: &'static str,
    /// Whether signing in again may help (a link is offered).
    pub sign_in_again: bool,
    /// Who must act.
    pub fixer: Fixer,
    /// Whose failures it explains.
    pub applies: Applies,
}

const AUTH_DOCS: &str = "https://learn.microsoft.com/azure/devops/organizations/accounts/faq-user-and-permissions-management";
const POLICY_DOCS: &str = "https://learn.microsoft.com/azure/devops/organizations/accounts/change-application-access-policies";
const CA_DOCS: &str = "https://learn.microsoft.com/azure/devops/organizations/accounts/change-application-access-policies#cap-support-on-azure-devops";
const PERMISSION_DOCS: &str =
    "https://learn.microsoft.com/azure/devops/organizations/security/troubleshoot-permissions";
const RATE_DOCS: &str = "https://learn.microsoft.com/azure/devops/integrate/concepts/rate-limits";
const ENTRA_ERRORS: &str =
    "https://learn.microsoft.com/entra/identity-platform/reference-error-codes";
const CONSENT_DOCS: &str =
    "https://learn.microsoft.com/entra/identity/enterprise-apps/grant-admin-consent";

/// The catalog: its parts in order, upstream (Azure DevOps) first, then
/// sign-in and the service identity's token calls (Entra).
pub struct Catalog(&'static [&'static [Entry]]);

impl Catalog {
    /// Every case, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'static Entry> + Clone + use<> {
        self.0.iter().flat_map(|part| part.iter())
    }

    /// How many cases there are.
    pub fn len(&self) -> usize {
        self.0.iter().map(|part| part.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every case, upstream (Azure DevOps) first, then sign-in (Entra).
pub static CATALOG: Catalog = Catalog(&[upstream::UPSTREAM, sign_in::SIGN_IN, service::SERVICE]);

impl Fixer {
    /// The label used in JSON answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "administrator",
            Self::Operator => "operator",
        }
    }
}

/// The entry with `id`. Ids are compile-time constants of this file; an
/// unknown one is a bug, answered with the first entry rather than a panic.
pub fn entry(id: &str) -> &'static Entry {
    CATALOG
        .iter()
        .find(|e| e.id == id)
        .unwrap_or(&upstream::UPSTREAM[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_entry_is_complete() {
        let mut ids: Vec<&str> = CATALOG.iter().map(|e| e.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
        for e in CATALOG.iter() {
            assert!(
                e.id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                e.id
            );
            for text in [e.title, e.cause, e.user_fix, e.admin_fix] {
                assert!(!text.is_empty(), "{}", e.id);
            }
            assert!(e.docs.starts_with("https://"), "{}", e.id);
        }
    }
}
