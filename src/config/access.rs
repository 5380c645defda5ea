//! `[access]`: which requests the proxy forwards at all, in every mode:
//! `[[access.rules]]` (first match wins), `access.default` when none
//! matches, and `access.read_only`.

use serde::{Deserialize, Serialize};

use super::{AuthConfig, AuthMode, Config, Problem, Provider};
use crate::path_glob::PathGlob;

/// `[access]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessConfig {
    /// What a request no rule matches gets: `allow` or `deny`.
    pub default: RuleAction,
    /// Forward only requests that read (GET, HEAD, OPTIONS, git fetch,
    /// and the POSTs that only read; see docs/access.md) and refuse every
    /// write, whatever the rules say.
    pub read_only: bool,
    /// The rules, in order; the first that matches decides.
    pub rules: Vec<AccessRule>,
}

/// Whether a rule lets a request through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// Forward it.
    #[default]
    Allow,
    /// Refuse it (403, naming the rule).
    Deny,
}

/// A git smart-HTTP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GitOp {
    /// Clone, fetch, pull, and LFS downloads.
    Fetch,
    /// Push, and LFS uploads and locks.
    Push,
}

/// One `[[access.rules]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Shown in the refusal and the metric.
    pub name: String,
    /// `allow` or `deny`.
    pub action: RuleAction,
    /// Methods it is for (any when absent).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Path globs it is for (any when absent): `*` one segment, `**`
    /// any, on the path as Azure DevOps reads it, below a `/.hosts/`
    /// prefix.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// git operations it is for (any request when absent).
    #[serde(default)]
    pub git: Option<Vec<GitOp>>,
    /// Mode `user`: the users it is for, by UPN, verified email or object
    /// id (anyone when empty).
    #[serde(default)]
    pub users: Vec<String>,
    /// Mode `user`: Entra group object ids it is for.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Mode `user`: app roles it is for.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl AccessRule {
    /// A rule with only a name and an action: it matches every request.
    pub fn named(name: &str, action: RuleAction) -> Self {
        Self {
            name: name.into(),
            action,
            methods: None,
            paths: None,
            git: None,
            users: vec![],
            groups: vec![],
            roles: vec![],
        }
    }
}

/// Methods a rule may name.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];

/// A rule's conditions, checked and parsed.
#[derive(Debug, Clone)]
pub struct RulePlan {
    /// Its name.
    pub name: String,
    /// Allow or deny.
    pub action: RuleAction,
    /// Uppercase methods; `None`: any.
    pub methods: Option<Vec<http::Method>>,
    /// `None`: any path.
    pub paths: Option<Vec<PathGlob>>,
    /// `None`: any request.
    pub git: Option<Vec<GitOp>>,
    /// Lowercase user names or object ids.
    pub users: Vec<String>,
    /// Lowercase group object ids.
    pub groups: Vec<String>,
    /// App roles.
    pub roles: Vec<String>,
}

impl RulePlan {
    /// Whether the rule names whom it is for (users, groups or roles);
    /// when it does not, it is for anyone.
    pub fn names_whom(&self) -> bool {
        !self.users.is_empty() || !self.groups.is_empty() || !self.roles.is_empty()
    }
}

/// `[access]` of a valid config.
#[derive(Debug, Clone, Default)]
pub struct AccessPlan {
    /// When no rule matches.
    pub default: RuleAction,
    /// `access.read_only`.
    pub read_only: bool,
    /// The rules in order.
    pub rules: Vec<RulePlan>,
}

impl AccessPlan {
    /// Whether anything is checked at all.
    pub fn is_open(&self) -> bool {
        !self.read_only && self.rules.is_empty() && self.default == RuleAction::Allow
    }
}

/// Every problem of `[access]`, each naming the rule.
pub fn validate(config: &Config, out: &mut Vec<Problem>) {
    let mut names: Vec<&str> = Vec::new();
    // With any directory admitted, only object ids name someone.
    let ids_only = config.auth.mode == AuthMode::User
        && config.auth.provider.is_some_and(|kind| {
            super::user_plan::allow_plan(config, kind).names == super::NameTrust::ObjectIdOnly
        });
    for (i, rule) in config.access.rules.iter().enumerate() {
        let key = format!("access.rules[{i}]");
        if let Err(why) = rule_plan(rule, &config.auth) {
            out.push(Problem::new(key.clone(), why));
        }
        if let Some(name) = rule
            .users
            .iter()
            .find(|u| ids_only && uuid::Uuid::parse_str(u.trim()).is_err())
        {
            out.push(Problem::new(
                format!("{key}.users"),
                format!(
                    "rule \"{}\": {name:?} would match nobody: with auth.allowed_tenants = \
                     [\"*\"] any directory's administrator can give anyone any name, so users \
                     are named by object id",
                    rule.name
                ),
            ));
        }
        if names.contains(&rule.name.as_str()) {
            out.push(Problem::new(
                format!("{key}.name"),
                format!(
                    "two rules are named \"{}\"; give each its own name",
                    rule.name
                ),
            ));
        }
        names.push(&rule.name);
    }
}

/// `[access]` of a config `validate` accepted.
pub fn access_plan(config: &Config) -> AccessPlan {
    AccessPlan {
        default: config.access.default,
        read_only: config.access.read_only,
        rules: config
            .access
            .rules
            .iter()
            .filter_map(|r| rule_plan(r, &config.auth).ok())
            .collect(),
    }
}

/// One rule parsed, or why it cannot be (naming the rule).
fn rule_plan(rule: &AccessRule, auth: &AuthConfig) -> Result<RulePlan, String> {
    let (mode, provider) = (auth.mode, auth.provider);
    let name = rule.name.trim();
    let named = |why: String| format!("rule \"{name}\": {why}");
    let good_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !good_name {
        return Err(format!(
            "rule name {:?}: use 1 to 64 letters, digits, '-', '_' or '.' (it becomes a metric \
             label)",
            rule.name
        ));
    }
    let methods = methods_of(rule.methods.as_deref(), &named)?;
    let paths = paths_of(rule.paths.as_deref(), &named)?;
    if rule.git.as_ref().is_some_and(Vec::is_empty) {
        return Err(named(
            "git = [] matches nothing; leave it out to match any".into(),
        ));
    }
    let whom = !rule.users.is_empty() || !rule.groups.is_empty() || !rule.roles.is_empty();
    if whom && mode != AuthMode::User {
        return Err(named(
            "users, groups and roles name signed-in users, so they need auth.mode = \"user\"; \
             in this mode every caller acts as the one identity"
                .into(),
        ));
    }
    let (groups, roles) = whom_of(rule, provider, &named)?;
    Ok(RulePlan {
        name: name.to_string(),
        action: rule.action,
        methods,
        paths,
        git: rule.git.clone(),
        users: rule
            .users
            .iter()
            .map(|u| u.trim().to_ascii_lowercase())
            .collect(),
        groups,
        roles,
    })
}

/// A rule's `groups` (object ids, lowercase) and `roles`, which only
/// Entra's tokens carry.
fn whom_of(
    rule: &AccessRule,
    provider: Option<Provider>,
    named: &dyn Fn(String) -> String,
) -> Result<(Vec<String>, Vec<String>), String> {
    if (!rule.groups.is_empty() || !rule.roles.is_empty()) && provider != Some(Provider::Entra) {
        return Err(named(
            "groups and roles are read from Entra tokens, so they need auth.provider = \
             \"entra\"; name the users instead"
                .into(),
        ));
    }
    let groups = rule
        .groups
        .iter()
        .map(|g| super::group_id(g).map_err(named))
        .collect::<Result<_, _>>()?;
    let roles = rule
        .roles
        .iter()
        .map(|r| super::role_value(r).map_err(named))
        .collect::<Result<_, _>>()?;
    Ok((groups, roles))
}

/// A rule's `methods`, uppercase and known.
fn methods_of(
    list: Option<&[String]>,
    named: &dyn Fn(String) -> String,
) -> Result<Option<Vec<http::Method>>, String> {
    let Some(list) = list else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(named(
            "methods = [] matches nothing; leave it out to match any".into(),
        ));
    }
    list.iter()
        .map(|m| {
            let up = m.trim().to_ascii_uppercase();
            if !METHODS.contains(&up.as_str()) {
                return Err(named(format!(
                    "unknown method {m:?}; use {}",
                    METHODS.join(", ")
                )));
            }
            http::Method::from_bytes(up.as_bytes()).map_err(|e| named(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A rule's `paths`, parsed.
fn paths_of(
    list: Option<&[String]>,
    named: &dyn Fn(String) -> String,
) -> Result<Option<Vec<PathGlob>>, String> {
    let Some(list) = list else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(named(
            "paths = [] matches nothing; leave it out to match any".into(),
        ));
    }
    list.iter()
        .map(|p| PathGlob::parse(p).map_err(|e| named(format!("bad path glob: {e}"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
