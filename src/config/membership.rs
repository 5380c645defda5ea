//! Entra groups and app roles: `auth.allowed_groups`, `auth.allowed_roles`
//! and the groups and roles `[[access.rules]]` name, checked at load and
//! read into the plan the sign-in's membership check follows.

use url::Url;

use super::{AuthMode, Config, Problem, Provider};

/// At most this many distinct groups are asked about (Microsoft Graph
/// checks 20 per call when a token has too many to carry).
pub const MAX_GROUPS: usize = 100;

/// Whose groups and roles the proxy reads, and which it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipPlan {
    /// `auth.allowed_groups`, lowercase object ids: a user must be in one
    /// (empty: no group is required).
    pub allowed_groups: Vec<String>,
    /// `auth.allowed_roles`: a user must hold one (empty: none is
    /// required).
    pub allowed_roles: Vec<String>,
    /// Every group asked about (the allowed ones and those rules name),
    /// sorted, each once.
    pub groups: Vec<String>,
    /// Every role read (the allowed ones and those rules name).
    pub roles: Vec<String>,
    /// `auth.graph_url`, without a trailing slash.
    pub graph_url: String,
    /// A digest of the lists: what was found against another plan (an
    /// older configuration) is found again before it counts.
    pub fingerprint: u64,
}

/// A group as configured: its object id, lowercase, or why it is none.
pub fn group_id(raw: &str) -> Result<String, String> {
    let g = raw.trim();
    match uuid::Uuid::parse_str(g) {
        Ok(id) if g.len() == 36 => Ok(id.to_string()),
        _ => Err(format!(
            "{raw:?} is not a group object id; Entra's groups claim carries object ids such as \
             \"9f2c6a4e-1b7d-4e3a-8c5f-2d6b0a1e7c94\" (Entra admin center → Groups → the group → \
             Object ID)"
        )),
    }
}

/// An app role as configured (its `value` in the app registration), or
/// why it cannot be one.
pub fn role_value(raw: &str) -> Result<String, String> {
    let r = raw.trim();
    let ok = !r.is_empty() && r.len() <= 250 && r.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(r.to_string())
    } else {
        Err(format!(
            "{raw:?} is not an app role value: write the role's Value from the app registration \
             (App roles), such as \"Tools.User\" (no spaces)"
        ))
    }
}

/// Every problem of the group and role keys.
pub fn validate(config: &Config, out: &mut Vec<Problem>) {
    let a = &config.auth;
    let wanted = !a.allowed_groups.is_empty() || !a.allowed_roles.is_empty();
    let entra_users = a.mode == AuthMode::User && a.provider == Some(Provider::Entra);
    if wanted && !entra_users {
        let key = if a.allowed_groups.is_empty() {
            "auth.allowed_roles"
        } else {
            "auth.allowed_groups"
        };
        out.push(Problem::new(
            key,
            "Entra groups and app roles are read from signed-in users' tokens, so they need \
             auth.mode = \"user\" and auth.provider = \"entra\"; remove the key or change the mode",
        ));
        return;
    }
    for g in &a.allowed_groups {
        if let Err(why) = group_id(g) {
            out.push(Problem::new("auth.allowed_groups", why));
        }
    }
    for r in &a.allowed_roles {
        if let Err(why) = role_value(r) {
            out.push(Problem::new("auth.allowed_roles", why));
        }
    }
    if let Some(plan) = membership_plan(config) {
        if plan.groups.len() > MAX_GROUPS {
            out.push(Problem::new(
                "auth.allowed_groups",
                format!(
                    "{} distinct groups are named (here and in [[access.rules]]); at most \
                     {MAX_GROUPS}: name a parent group instead (membership is transitive)",
                    plan.groups.len()
                ),
            ));
        }
        if !plan.groups.is_empty() {
            super::validate::http_url("auth.graph_url", &a.graph_url, out);
        }
    }
}

/// The groups and roles of a valid `config`, `None` when nothing reads
/// them (not mode `user` with Entra, or no key names any).
pub fn membership_plan(config: &Config) -> Option<MembershipPlan> {
    let a = &config.auth;
    if a.mode != AuthMode::User || a.provider != Some(Provider::Entra) {
        return None;
    }
    // Sorted and each once: the same lists in another order are the same
    // configuration (and the same fingerprint) on every replica.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v.dedup();
        v
    };
    let allowed_groups = sorted(
        a.allowed_groups
            .iter()
            .filter_map(|g| group_id(g).ok())
            .collect(),
    );
    let allowed_roles = sorted(
        a.allowed_roles
            .iter()
            .filter_map(|r| role_value(r).ok())
            .collect(),
    );
    let rules = &config.access.rules;
    let mut groups: Vec<String> = allowed_groups
        .iter()
        .cloned()
        .chain(
            rules
                .iter()
                .flat_map(|r| &r.groups)
                .filter_map(|g| group_id(g).ok()),
        )
        .collect();
    let mut roles: Vec<String> = allowed_roles
        .iter()
        .cloned()
        .chain(
            rules
                .iter()
                .flat_map(|r| &r.roles)
                .filter_map(|r| role_value(r).ok()),
        )
        .collect();
    groups.sort();
    groups.dedup();
    roles.sort();
    roles.dedup();
    if groups.is_empty() && roles.is_empty() {
        return None;
    }
    let fingerprint = fingerprint(&[&allowed_groups, &allowed_roles, &groups, &roles]);
    Some(MembershipPlan {
        allowed_groups,
        allowed_roles,
        groups,
        roles,
        graph_url: graph_base(&a.graph_url),
        fingerprint,
    })
}

/// `auth.graph_url` without a trailing slash.
fn graph_base(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// The same on every replica and every build: the first 8 bytes of a
/// SHA-256 of the lists; never 0 (the mark of "never checked").
fn fingerprint(lists: &[&Vec<String>]) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for list in lists {
        for item in list.iter() {
            ctx.update(item.as_bytes());
            ctx.update(b"\n");
        }
        ctx.update(b"\x00");
    }
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AccessRule, RuleAction};

    const G1: &str = "9F2C6A4E-1B7D-4E3A-8C5F-2D6B0A1E7C94";
    const G2: &str = "0b6d1c2e-3f4a-4b5c-9d6e-7f8a9b0c1d2e";

    fn entra() -> Config {
        let mut c = Config::default();
        c.auth.mode = AuthMode::User;
        c.auth.provider = Some(Provider::Entra);
        c
    }

    fn problems(c: &Config) -> Vec<String> {
        let mut out = Vec::new();
        validate(c, &mut out);
        out.iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    #[test]
    fn the_plan_joins_allowed_and_rule_groups_and_changes_its_fingerprint_with_them() {
        let mut c = entra();
        assert_eq!(membership_plan(&c), None);
        c.auth.allowed_groups = vec![G1.into()];
        let one = membership_plan(&c).unwrap();
        assert_eq!(one.groups, vec![G1.to_ascii_lowercase()]);
        assert_eq!(one.graph_url, "https://graph.microsoft.com");
        let mut rule = AccessRule::named("ops", RuleAction::Allow);
        rule.groups = vec![G2.into(), G1.to_ascii_lowercase()];
        rule.roles = vec!["Tools.Admin".into()];
        c.access.rules.push(rule);
        let two = membership_plan(&c).unwrap();
        assert_eq!(two.groups.len(), 2);
        assert_eq!(two.allowed_groups, vec![G1.to_ascii_lowercase()]);
        assert_eq!(two.roles, vec!["Tools.Admin".to_string()]);
        assert!(two.allowed_roles.is_empty());
        assert_ne!(one.fingerprint, two.fingerprint);
        assert_eq!(two.fingerprint, membership_plan(&c).unwrap().fingerprint);
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
    }

    /// The same groups in another order, or one listed twice, are the
    /// same configuration on every replica.
    #[test]
    fn the_fingerprint_does_not_depend_on_the_order_of_the_same_groups() {
        let mut a = entra();
        a.auth.allowed_groups = vec![G1.into(), G2.into()];
        let mut b = entra();
        b.auth.allowed_groups = vec![G2.into(), G1.into()];
        let mut c = entra();
        c.auth.allowed_groups = vec![G1.into(), G2.into(), G1.to_ascii_lowercase()];
        let (a, b, c) = (
            membership_plan(&a).unwrap(),
            membership_plan(&b).unwrap(),
            membership_plan(&c).unwrap(),
        );
        assert_eq!(a.groups, b.groups);
        assert_eq!(a.fingerprint, b.fingerprint, "same groups, other order");
        assert_eq!(
            a.fingerprint, c.fingerprint,
            "same groups, one listed twice"
        );
    }

    #[test]
    fn bad_groups_roles_and_modes_are_named() {
        let mut c = entra();
        c.auth.allowed_groups = vec![
            "Developers".into(),
            "{9f2c6a4e-1b7d-4e3a-8c5f-2d6b0a1e7c94}".into(),
        ];
        c.auth.allowed_roles = vec!["Tools User".into(), String::new()];
        let p = problems(&c);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].starts_with("auth.allowed_groups: \"Developers\" is not a group object id"));
        assert!(
            p[2].starts_with("auth.allowed_roles: \"Tools User\""),
            "{p:?}"
        );

        let mut c = entra();
        c.auth.provider = Some(Provider::Oidc);
        c.auth.allowed_roles = vec!["Tools.User".into()];
        let p = problems(&c);
        assert!(
            p[0].starts_with("auth.allowed_roles: Entra groups"),
            "{p:?}"
        );
        assert_eq!(membership_plan(&c), None);

        let mut c = entra();
        c.auth.allowed_groups = (0..=MAX_GROUPS)
            .map(|i| format!("00000000-0000-0000-0000-{i:012}"))
            .collect();
        assert!(
            problems(&c)[0].contains("at most 100"),
            "{:?}",
            problems(&c)
        );
    }
}
