//! Who may sign in: `auth.allowed_tenants`, `allowed_users` and
//! `allowed_email_domains`, matched only against the names the provider
//! vouches for.

use crate::config::{AllowPlan, NameTrust};
#[cfg(test)]
use crate::config::{Config, Provider as ProviderKind};
use crate::session::UserInfo;

/// Who may sign in.
pub(super) struct Allowlist {
    tenants: Vec<String>,
    any_tenant: bool,
    /// Whether the provider's user names (UPN, `preferred_username`,
    /// email) identify someone: not for an Entra user of an arbitrary
    /// tenant (`allowed_tenants = ["*"]`), whose admin can give anyone
    /// any name, nor `preferred_username` of a generic OIDC issuer,
    /// which the user may choose.
    names: NameTrust,
    users: Vec<String>,
    domains: Vec<String>,
}

// === impl Allowlist ===

impl Allowlist {
    /// The allowlists `plan` sets.
    pub(super) fn new(plan: &AllowPlan) -> Self {
        let p = plan.clone();
        Self {
            tenants: p.tenants,
            any_tenant: p.any_tenant,
            names: p.names,
            users: p.users,
            domains: p.domains,
        }
    }

    /// The user's names the allowlists may match: an email only when
    /// the provider vouched for it (`email_verified`).
    pub(super) fn trusted_names<'u>(&self, user: &'u UserInfo) -> Vec<&'u String> {
        let email = user.email.as_ref().filter(|_| user.email_verified);
        match self.names {
            NameTrust::UpnAndEmail => vec![user.upn.as_ref(), email],
            NameTrust::Email => vec![email],
            NameTrust::ObjectIdOnly => vec![],
        }
        .into_iter()
        .flatten()
        .collect()
    }

    /// `auth.allowed_tenants`, lower case (`*`: any).
    pub(super) fn tenants(&self) -> &[String] {
        &self.tenants
    }

    /// Whether tokens of tenant `tid` may be checked at all: it is
    /// listed, or any tenant is (`["*"]`).
    pub(super) fn admits_tenant(&self, tid: &str) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tid)
    }

    /// Why `user` may not sign in, or `None` when they may.
    pub(super) fn refuse(&self, user: &UserInfo) -> Option<String> {
        if !self.any_tenant {
            let tid = user.tenant.as_deref().unwrap_or("").to_ascii_lowercase();
            if !self.tenants.contains(&tid) {
                return Some(format!(
                    "your account belongs to directory (tenant) {}, which this proxy does not admit",
                    if tid.is_empty() { "unknown" } else { &tid }
                ));
            }
        }
        let names = self.trusted_names(user);
        if !self.users.is_empty() {
            let known = names
                .iter()
                .copied()
                .chain(user.object_id.as_ref())
                .any(|n| self.users.contains(&n.to_ascii_lowercase()));
            if !known {
                return Some("your account is not on this proxy's list of allowed users".into());
            }
        }
        if !self.domains.is_empty() {
            let ok = names.iter().any(|addr| {
                addr.rsplit_once('@')
                    .is_some_and(|(_, d)| self.domains.contains(&d.to_ascii_lowercase()))
            });
            if !ok {
                return Some(format!(
                    "only accounts of the domains {} (with an address the provider verified) may \
                     sign in",
                    self.domains.join(", ")
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn user(upn: &str, email: Option<(&str, bool)>, tenant: &str) -> UserInfo {
        UserInfo {
            upn: Some(upn.into()),
            email: email.map(|(e, _)| e.into()),
            email_verified: email.is_some_and(|(_, v)| v),
            object_id: Some("oid-1".into()),
            tenant: Some(tenant.into()),
            ..UserInfo::default()
        }
    }

    fn allow(f: impl FnOnce(&mut Config), provider: ProviderKind) -> Allowlist {
        let mut c = Config::default();
        f(&mut c);
        Allowlist::new(&crate::config::user_plan(&c, provider).allow)
    }

    #[test]
    fn the_tenant_then_users_then_domains_decide() {
        let a = allow(
            |c| c.auth.tenant = Some(T.to_uppercase()),
            ProviderKind::Entra,
        );
        assert_eq!(a.refuse(&user("dana@contoso.com", None, T)), None);
        let why = a.refuse(&user("eve@fabrikam.com", None, "other")).unwrap();
        assert!(why.contains("directory (tenant) other"), "{why}");

        let a = allow(
            |c| {
                c.auth.tenant = Some(T.into());
                c.auth.allowed_users = vec![" Dana@Contoso.com ".into(), "OID-2".into()];
            },
            ProviderKind::Entra,
        );
        assert_eq!(a.refuse(&user("dana@contoso.com", None, T)), None);
        assert!(a.refuse(&user("eve@contoso.com", None, T)).is_some());

        let a = allow(
            |c| {
                c.auth.tenant = Some(T.into());
                c.auth.allowed_email_domains = vec!["@Contoso.com".into()];
            },
            ProviderKind::Entra,
        );
        assert_eq!(a.refuse(&user("dana@contoso.com", None, T)), None);
        let why = a.refuse(&user("dana@fabrikam.com", None, T)).unwrap();
        assert!(why.contains("contoso.com"), "{why}");
    }

    /// Names an outsider can choose never match: an unverified email, a
    /// generic issuer's user name, any name of an Entra user of any tenant.
    #[test]
    fn only_names_the_provider_vouches_for_match() {
        let users = |c: &mut Config| c.auth.allowed_users = vec!["dana@contoso.com".into()];
        let oidc = allow(users, ProviderKind::Oidc);
        assert!(oidc.refuse(&user("dana@contoso.com", None, "")).is_some());
        assert!(
            oidc.refuse(&user("x", Some(("dana@contoso.com", false)), ""))
                .is_some()
        );
        assert_eq!(
            oidc.refuse(&user("x", Some(("dana@contoso.com", true)), "")),
            None
        );
        let any = allow(
            |c| {
                c.auth.allowed_tenants = vec!["*".into()];
                users(c);
            },
            ProviderKind::Entra,
        );
        assert!(any.admits_tenant("whatever"));
        assert!(
            any.refuse(&user(
                "dana@contoso.com",
                Some(("dana@contoso.com", true)),
                "t"
            ))
            .is_some()
        );
    }
}
