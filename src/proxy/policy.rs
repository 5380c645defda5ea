//! `[access]`: whether a request is forwarded at all. `access.read_only`
//! refuses every write first; then the first `[[access.rules]]` that
//! matches decides, and `access.default` when none does. A refusal names
//! the rule, in the answer and in `ado_proxy_access_refused_total{rule}`.
//!
//! Paths are read as Azure DevOps reads them (`path_glob`), below a
//! `/.hosts/{name}` prefix. A rule for users, groups or roles applies to a
//! request whose user the proxy cannot name (a client's own token) when
//! it denies, and not when it allows: not knowing who asks never opens a
//! door.

use http::Method;

use super::path;
use crate::config::{AccessPlan, GitOp, NameTrust, RuleAction, RulePlan};
use crate::path_glob::segments;
use crate::session::{Member, UserInfo};

/// The access rules in force.
#[derive(Debug)]
pub struct Policy {
    plan: AccessPlan,
    /// Which of a user's names a rule's `users` may match.
    names: NameTrust,
}

/// What a request asks for, as the rules read it.
pub struct Asked<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its path as sent (percent-encoded), already accepted by routing.
    pub path: &'a str,
    /// Its query, for git's `service=` parameter.
    pub query: Option<&'a str>,
    /// Who asks: `Some(None)` for a caller the proxy cannot name (a
    /// client's own token), `None` outside mode `user`.
    pub user: Option<Option<Who<'a>>>,
    /// It asks for an upgrade (a WebSocket).
    pub upgrade: bool,
}

/// A signed-in user, as rules for users, groups and roles read them.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    /// Who signed in.
    pub user: &'a UserInfo,
    /// Their groups and roles, as found with the current token.
    pub member: &'a Member,
}

/// A refused request: which rule, and why in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The rule's name, `read-only` or `default`.
    pub rule: String,
    /// What was refused, in words.
    pub why: String,
    /// `access.read_only` refused it.
    pub read_only: bool,
}

/// Headers with which a client asks a front end to act as another
/// method than the request's own (Azure DevOps honours
/// `X-HTTP-Method-Override` on a POST): the rules judge that method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The method Azure DevOps will act on: the request's, or the one an
/// override header names. Several, or one that is no method, is refused:
/// what it means upstream cannot be told.
pub fn effective_method(method: &Method, headers: &http::HeaderMap) -> Result<Method, Refused> {
    let mut named: Option<Method> = None;
    for value in METHOD_OVERRIDES.iter().flat_map(|h| headers.get_all(*h)) {
        let parsed = value
            .to_str()
            .ok()
            .map(|v| v.trim().to_ascii_uppercase())
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok());
        match (parsed, &named) {
            (Some(m), None) => named = Some(m),
            (Some(m), Some(n)) if m == *n => {}
            _ => {
                return Err(Refused {
                    rule: "method-override".into(),
                    why: "the request names its method more than once, or not as a method, \
                          in X-HTTP-Method-Override"
                        .into(),
                    read_only: false,
                });
            }
        }
    }
    // Azure DevOps reads methods without regard to case.
    let method = named.unwrap_or_else(|| method.clone());
    Ok(Method::from_bytes(method.as_str().to_ascii_uppercase().as_bytes()).unwrap_or(method))
}

/// One part of a path shape.
#[derive(Clone, Copy)]
enum Part {
    /// The organization, project and team: up to three segments, none
    /// starting with `_`; only first.
    Scope,
    /// Any one segment.
    One,
    /// This segment.
    Name(&'static str),
}

use Part::{Name as N, One, Scope};

/// The POSTs that only read, as whole path shapes: WIQL, the batch
/// reads, search, and git LFS's batch call (which only hands out URLs;
/// an upload is a PUT).
const READING_POSTS: &[&[Part]] = &[
    &[Scope, N("_apis"), N("wit"), N("wiql")],
    &[Scope, N("_apis"), N("wit"), N("workitemsbatch")],
    &[
        Scope,
        N("_apis"),
        N("wit"),
        N("reporting"),
        N("workitemrevisions"),
    ],
    &[
        Scope,
        N("_apis"),
        N("git"),
        N("repositories"),
        One,
        N("commitsbatch"),
    ],
    &[
        Scope,
        N("_apis"),
        N("git"),
        N("repositories"),
        One,
        N("itemsbatch"),
    ],
    &[Scope, N("_apis"), N("search"), N("codesearchresults")],
    &[Scope, N("_apis"), N("search"), N("workitemsearchresults")],
    &[Scope, N("_apis"), N("search"), N("wikisearchresults")],
    &[Scope, N("_apis"), N("search"), N("packagesearchresults")],
    LFS_BATCH,
];

/// git LFS's batch call.
const LFS_BATCH: &[Part] = &[
    Scope,
    N("_git"),
    One,
    N("info"),
    N("lfs"),
    N("objects"),
    N("batch"),
];

/// Whether `segs` is exactly `shape`.
fn shaped(segs: &[String], shape: &[Part]) -> bool {
    let (segs, shape) = match shape.first() {
        Some(Part::Scope) => {
            let Some(k) = segs.iter().position(|s| s.starts_with('_')) else {
                return false;
            };
            if k > 3 {
                return false;
            }
            (&segs[k..], &shape[1..])
        }
        _ => (segs, shape),
    };
    segs.len() == shape.len()
        && segs.iter().zip(shape).all(|(s, p)| match p {
            Part::Scope => false,
            Part::One => true,
            Part::Name(n) => s == n,
        })
}

// === impl Policy ===

impl Policy {
    /// The rules of `plan`, `None` when they admit everything; users'
    /// names are trusted as `names` says.
    pub fn new(plan: AccessPlan, names: NameTrust) -> Option<Self> {
        (!plan.is_open()).then_some(Self { plan, names })
    }

    /// The names of the rules, for the metric's series.
    pub fn rule_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.plan.rules.iter().map(|r| r.name.as_str()).collect();
        if self.plan.read_only {
            out.push("read-only");
        }
        if self.plan.default == RuleAction::Deny {
            out.push("default");
        }
        out.push("pat-api");
        out
    }

    /// Whether the proxy's own `/.auth/pats` may be asked with `method`:
    /// creating or revoking an Azure DevOps PAT would hand out (or end) a
    /// credential that acts past these rules, so while they restrict
    /// anything, it only lists.
    pub fn own_pats(&self, method: &Method) -> Result<(), Refused> {
        if reading(method) {
            return Ok(());
        }
        Err(Refused {
            rule: "pat-api".into(),
            why: "creating or revoking Azure DevOps PATs at /.auth/pats would hand out a \
                  credential that acts past the proxy's rules"
                .into(),
            read_only: self.plan.read_only,
        })
    }

    /// Whether `asked` is forwarded (and the rule that allowed it, if
    /// one did); why not when it is refused.
    pub fn decide(&self, asked: &Asked<'_>) -> Result<Option<&str>, Refused> {
        let seen = path::check(asked.path).unwrap_or(std::borrow::Cow::Borrowed(asked.path));
        let below = below_host(&seen);
        let segs = segments(below);
        let git = git_op(asked.method, &segs, asked.query);
        if self.plan.read_only && !reads_only(asked.method, &segs, git, asked.upgrade) {
            return Err(Refused {
                rule: "read-only".into(),
                why: match git {
                    Some(GitOp::Push) => "git push is a write".into(),
                    _ if asked.upgrade => {
                        "a WebSocket carries writes past every check, so none is opened".into()
                    }
                    _ => format!("{} {below} is a write", asked.method),
                },
                read_only: true,
            });
        }
        for rule in &self.plan.rules {
            if !self.applies(rule, asked, &segs, git) {
                continue;
            }
            return match rule.action {
                RuleAction::Allow => Ok(Some(&rule.name)),
                RuleAction::Deny => Err(Refused {
                    rule: rule.name.clone(),
                    why: match git {
                        Some(op) if rule.git.is_some() => {
                            format!("rule \"{}\" refuses git {}", rule.name, op_name(op))
                        }
                        _ => format!("rule \"{}\" refuses {} {below}", rule.name, asked.method),
                    },
                    read_only: false,
                }),
            };
        }
        match self.plan.default {
            RuleAction::Allow => Ok(None),
            RuleAction::Deny => Err(Refused {
                rule: "default".into(),
                why: format!(
                    "no rule allows {} {below}, and access.default is \"deny\"",
                    asked.method
                ),
                read_only: false,
            }),
        }
    }

    /// Whether every condition of `rule` holds for the request.
    fn applies(
        &self,
        rule: &RulePlan,
        asked: &Asked<'_>,
        segs: &[String],
        git: Option<GitOp>,
    ) -> bool {
        if let Some(methods) = &rule.methods
            && !methods.contains(asked.method)
        {
            return false;
        }
        if let Some(globs) = &rule.paths
            && !globs.iter().any(|g| g.matches(segs))
        {
            return false;
        }
        if let Some(ops) = &rule.git
            && !git.is_some_and(|op| ops.contains(&op))
        {
            return false;
        }
        if !rule.names_whom() {
            return true;
        }
        match asked.user {
            // Nobody the proxy can name: deny rules hold, allow rules not.
            None | Some(None) => rule.action == RuleAction::Deny,
            Some(Some(who)) => {
                self.names_of(who.user)
                    .iter()
                    .any(|n| rule.users.contains(n))
                    || who.member.groups.iter().any(|g| rule.groups.contains(g))
                    || who.member.roles.iter().any(|r| rule.roles.contains(r))
                    // Groups not known: deny rules for groups hold.
                    || (rule.action == RuleAction::Deny
                        && !rule.groups.is_empty()
                        && who.member.groups_unknown)
            }
        }
    }

    /// The user's names a rule may match, lowercase: the object id, and
    /// the UPN and verified email when the provider vouches for them
    /// (as the sign-in allowlists read them).
    fn names_of(&self, user: &UserInfo) -> Vec<String> {
        let mut out: Vec<String> = user
            .object_id
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect();
        let email = user.email.as_ref().filter(|_| user.email_verified);
        match self.names {
            NameTrust::UpnAndEmail => {
                out.extend(user.upn.iter().chain(email).map(|n| n.to_ascii_lowercase()))
            }
            NameTrust::Email => out.extend(email.map(|n| n.to_ascii_lowercase())),
            NameTrust::ObjectIdOnly => {}
        }
        out
    }
}

/// The path below a `/.hosts/{name}` prefix (the path its host reads).
fn below_host(seen: &str) -> &str {
    match seen.strip_prefix("/.hosts/") {
        Some(after) => after.find('/').map_or("/", |i| &after[i..]),
        None => seen,
    }
}

fn op_name(op: GitOp) -> &'static str {
    match op {
        GitOp::Fetch => "fetch",
        GitOp::Push => "push",
    }
}

/// The git smart-HTTP or LFS operation a request is part of, if any.
/// Anything that may write a repository is a push, wherever it sits in
/// the path (a write misread as a push is refused, never let through); a
/// fetch only in git's own shapes, since a fetch is what read-only lets
/// pass.
pub fn git_op(method: &Method, segs: &[String], query: Option<&str>) -> Option<GitOp> {
    let ends = |tail: &[Part]| {
        segs.len() >= tail.len()
            && segs[segs.len() - tail.len()..]
                .iter()
                .zip(tail)
                .all(|(s, t)| match t {
                    Part::Name(n) => s == n,
                    _ => true,
                })
    };
    let read = reading(method);
    let receive = query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| {
            k.eq_ignore_ascii_case("service") && v.trim().eq_ignore_ascii_case("git-receive-pack")
        })
    });
    let lfs = segs.windows(2).any(|w| w[0] == "info" && w[1] == "lfs");
    let lfs_batch = shaped(segs, LFS_BATCH);
    let push = ends(&[N("git-receive-pack")])
        || (ends(&[N("info"), N("refs")]) && (receive || !read))
        || (ends(&[N("git-upload-pack")]) && !read && *method != Method::POST)
        || (lfs && !read && !lfs_batch)
        || (!read
            && (ends(&[N("_apis"), N("git"), N("repositories"), One, N("pushes")])
                || ends(&[N("_apis"), N("git"), N("repositories"), One, N("refs")])));
    if push {
        return Some(GitOp::Push);
    }
    let repo = |tail: &[Part]| {
        let mut shape = vec![Scope, N("_git"), One];
        shape.extend_from_slice(tail);
        shaped(segs, &shape)
    };
    let fetch = (read && repo(&[N("info"), N("refs")]))
        || (*method == Method::POST && repo(&[N("git-upload-pack")]))
        || (read && repo(&[N("info"), N("lfs"), N("objects"), One]))
        || (read && repo(&[N("info"), N("lfs"), N("locks")]));
    fetch.then_some(GitOp::Fetch)
}

fn reading(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request only reads: GET, HEAD and OPTIONS (but not the
/// start of a push, nor an upgrade, whose tunnel carries anything), git
/// fetch, and the POSTs of [`READING_POSTS`].
fn reads_only(method: &Method, segs: &[String], git: Option<GitOp>, upgrade: bool) -> bool {
    if upgrade {
        return false;
    }
    match git {
        Some(GitOp::Push) => return false,
        Some(GitOp::Fetch) => return true,
        None => {}
    }
    reading(method)
        || (*method == Method::POST && READING_POSTS.iter().any(|shape| shaped(segs, shape)))
}

#[cfg(test)]
mod tests;
