use proptest::prelude::*;

use super::*;
use crate::config::{AccessConfig, AccessRule, AuthMode, Config, access_plan};

fn policy(f: impl FnOnce(&mut AccessConfig), mode: AuthMode) -> Policy {
    let mut c = Config::default();
    c.auth.mode = mode;
    f(&mut c.access);
    let mut problems = Vec::new();
    crate::config::validate_access(&c, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    Policy::new(access_plan(&c), NameTrust::UpnAndEmail).expect("rules")
}

fn ask(p: &Policy, method: &str, target: &str) -> Result<(), Refused> {
    ask_as(p, method, target, None)
}

fn ask_as(
    p: &Policy,
    method: &str,
    target: &str,
    user: Option<Option<&UserInfo>>,
) -> Result<(), Refused> {
    let nothing = Member::default();
    let who = user.map(|u| {
        u.map(|user| Who {
            user,
            member: &nothing,
        })
    });
    ask_who(p, method, target, who)
}

fn ask_who(
    p: &Policy,
    method: &str,
    target: &str,
    user: Option<Option<Who<'_>>>,
) -> Result<(), Refused> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    p.decide(&Asked {
        method: &method,
        path,
        query,
        user,
        upgrade: false,
    })
    .map(|_| ())
}

#[test]
fn read_only_forwards_reads_and_refuses_writes() {
    let p = policy(|a| a.read_only = true, AuthMode::Pat);
    for (method, target) in [
        ("GET", "/contoso/_apis/projects"),
        ("HEAD", "/contoso/_apis/projects"),
        ("OPTIONS", "/contoso/_apis/projects"),
        ("GET", "/contoso/p/_git/r/info/refs?service=git-upload-pack"),
        ("POST", "/contoso/p/_git/r/git-upload-pack"),
        ("POST", "/contoso/p/_apis/wit/wiql?api-version=7.1"),
        ("POST", "/contoso/_apis/wit/workitemsbatch"),
        ("POST", "/contoso/p/_apis/git/repositories/r/commitsbatch"),
        (
            "POST",
            "/.hosts/almsearch/contoso/_apis/search/codesearchresults",
        ),
        ("POST", "/contoso/p/_git/r.git/info/lfs/objects/batch"),
        ("GET", "/contoso/p/_git/r.git/info/lfs/objects/0123abcd"),
    ] {
        assert_eq!(ask(&p, method, target), Ok(()), "{method} {target}");
    }
    for (method, target) in [
        ("POST", "/contoso/p/_apis/wit/workitems/$Task"),
        ("PATCH", "/contoso/_apis/wit/workitems/1"),
        ("DELETE", "/contoso/_apis/git/repositories/r"),
        ("PUT", "/contoso/_apis/packaging/feeds/f"),
        (
            "GET",
            "/contoso/p/_git/r/info/refs?service=git-receive-pack",
        ),
        ("POST", "/contoso/p/_git/r/git-receive-pack"),
        ("PUT", "/contoso/p/_git/r.git/info/lfs/objects/0123abcd"),
        ("POST", "/contoso/p/_git/r.git/info/lfs/objects/verify"),
        ("POST", "/contoso/p/_git/r.git/info/lfs/locks"),
        ("DELETE", "/contoso/p/_git/r/info/refs"),
        // A reading endpoint's name elsewhere in the path is no read.
        ("POST", "/contoso/p/_apis/wit/wiql/extra"),
    ] {
        let e = ask(&p, method, target).unwrap_err();
        assert!(
            e.read_only && e.rule == "read-only",
            "{method} {target}: {e:?}"
        );
    }
    let e = ask(&p, "POST", "/contoso/p/_git/r/git-receive-pack").unwrap_err();
    assert_eq!(e.why, "git push is a write");
}

#[test]
fn the_first_matching_rule_decides_then_the_default() {
    let p = policy(
        |a| {
            a.default = RuleAction::Deny;
            a.rules = vec![
                AccessRule {
                    methods: Some(vec!["post".into(), "PATCH".into()]),
                    paths: Some(vec!["/*/*/_apis/wit/**".into()]),
                    ..AccessRule::named("no-work-item-writes", RuleAction::Deny)
                },
                AccessRule {
                    git: Some(vec![GitOp::Push]),
                    ..AccessRule::named("no-push", RuleAction::Deny)
                },
                AccessRule {
                    paths: Some(vec!["/contoso/**".into()]),
                    ..AccessRule::named("contoso", RuleAction::Allow)
                },
            ]
        },
        AuthMode::Pat,
    );
    assert_eq!(ask(&p, "GET", "/contoso/p/_apis/wit/workitems/1"), Ok(()));
    let e = ask(&p, "PATCH", "/contoso/p/_apis/wit/workitems/1").unwrap_err();
    assert_eq!(e.rule, "no-work-item-writes");
    assert!(
        e.why.contains("PATCH /contoso/p/_apis/wit/workitems/1"),
        "{}",
        e.why
    );
    // Spellings Azure DevOps reads the same way are refused the same way.
    for target in [
        "/contoso/p/_APIS/Wit/workitems/1",
        "/contoso/p/_apis/wi%74/workitems/1",
        "/contoso/p/_apis/wit./workitems/1",
        "/contoso/p/_apis/wit;v=1/workitems/1",
        "/.hosts/vsrm/contoso/p/_apis/wit/x",
    ] {
        assert_eq!(
            ask(&p, "POST", target).unwrap_err().rule,
            "no-work-item-writes",
            "{target}"
        );
    }
    let e = ask(&p, "POST", "/contoso/p/_git/r/git-receive-pack").unwrap_err();
    assert_eq!(
        (e.rule.as_str(), e.why.as_str()),
        ("no-push", "rule \"no-push\" refuses git push")
    );
    assert_eq!(ask(&p, "POST", "/contoso/p/_git/r/git-upload-pack"), Ok(()));
    let e = ask(&p, "GET", "/fabrikam/_apis/projects").unwrap_err();
    assert_eq!(e.rule, "default");
    assert!(e.why.contains("access.default"), "{}", e.why);
}

#[test]
fn a_users_rule_opens_only_for_a_named_user_and_closes_for_an_unknown_one() {
    let dana = UserInfo {
        upn: Some("Dana@Contoso.com".into()),
        object_id: Some("oid-dana".into()),
        ..UserInfo::default()
    };
    let eve = UserInfo {
        upn: Some("eve@contoso.com".into()),
        object_id: Some("oid-eve".into()),
        ..UserInfo::default()
    };
    let p = policy(
        |a| {
            a.default = RuleAction::Deny;
            a.rules = vec![
                AccessRule {
                    users: vec!["eve@contoso.com".into()],
                    ..AccessRule::named("not-eve", RuleAction::Deny)
                },
                AccessRule {
                    users: vec!["dana@contoso.com".into(), "OID-EVE".into()],
                    ..AccessRule::named("dana", RuleAction::Allow)
                },
            ]
        },
        AuthMode::User,
    );
    let path = "/contoso/_apis/projects";
    assert_eq!(ask_as(&p, "GET", path, Some(Some(&dana))), Ok(()));
    assert_eq!(
        ask_as(&p, "GET", path, Some(Some(&eve))).unwrap_err().rule,
        "not-eve"
    );
    // A caller the proxy cannot name: the deny rule holds, the allow not.
    assert_eq!(
        ask_as(&p, "GET", path, Some(None)).unwrap_err().rule,
        "not-eve"
    );
    // An unverified email names nobody.
    let mallory = UserInfo {
        email: Some("dana@contoso.com".into()),
        email_verified: false,
        object_id: Some("oid-m".into()),
        ..UserInfo::default()
    };
    assert_eq!(
        ask_as(&p, "GET", path, Some(Some(&mallory)))
            .unwrap_err()
            .rule,
        "default"
    );
}

#[test]
fn rules_are_checked_at_load_and_each_problem_names_its_rule() {
    let problems = |f: &dyn Fn(&mut Config)| {
        let mut c = Config::default();
        f(&mut c);
        let mut out = Vec::new();
        crate::config::validate_access(&c, &mut out);
        out.iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect::<Vec<_>>()
    };
    let one = |r: AccessRule, mode: AuthMode| {
        problems(&|c: &mut Config| {
            c.auth.mode = mode;
            c.access.rules = vec![r.clone()];
        })
    };
    let cases: Vec<(AccessRule, AuthMode, &str)> = vec![
        (
            AccessRule {
                methods: Some(vec!["FETCH".into()]),
                ..AccessRule::named("m", RuleAction::Deny)
            },
            AuthMode::Pat,
            "rule \"m\": unknown method \"FETCH\"",
        ),
        (
            AccessRule {
                methods: Some(vec![]),
                ..AccessRule::named("m", RuleAction::Deny)
            },
            AuthMode::Pat,
            "matches nothing",
        ),
        (
            AccessRule {
                paths: Some(vec!["/a*b".into()]),
                ..AccessRule::named("g", RuleAction::Deny)
            },
            AuthMode::Pat,
            "rule \"g\": bad path glob",
        ),
        (
            AccessRule {
                paths: Some(vec!["_apis".into()]),
                ..AccessRule::named("g", RuleAction::Deny)
            },
            AuthMode::Pat,
            "does not start with /",
        ),
        (
            AccessRule {
                users: vec!["x".into()],
                ..AccessRule::named("u", RuleAction::Deny)
            },
            AuthMode::Service,
            "need auth.mode = \"user\"",
        ),
        (
            AccessRule {
                groups: vec!["x".into()],
                ..AccessRule::named("g", RuleAction::Deny)
            },
            AuthMode::User,
            "need auth.provider = \"entra\"",
        ),
        (
            AccessRule::named("bad name!", RuleAction::Deny),
            AuthMode::Pat,
            "metric label",
        ),
    ];
    for (r, mode, says) in cases {
        let out = one(r, mode);
        assert!(
            out.len() == 1 && out[0].starts_with("access.rules[0]") && out[0].contains(says),
            "{out:?} lacks {says}"
        );
    }
    let entra = |r: AccessRule| {
        problems(&|c: &mut Config| {
            c.auth.mode = AuthMode::User;
            c.auth.provider = Some(crate::config::Provider::Entra);
            c.access.rules = vec![r.clone()];
        })
    };
    let bad_group = entra(AccessRule {
        groups: vec!["Developers".into()],
        ..AccessRule::named("g", RuleAction::Deny)
    });
    assert!(
        bad_group[0].contains("not a group object id"),
        "{bad_group:?}"
    );
    let bad_role = entra(AccessRule {
        roles: vec!["Tools User".into()],
        ..AccessRule::named("r", RuleAction::Deny)
    });
    assert!(
        bad_role[0].contains("not an app role value"),
        "{bad_role:?}"
    );
    let twice = problems(&|c: &mut Config| {
        c.access.rules = vec![
            AccessRule::named("same", RuleAction::Deny),
            AccessRule::named("same", RuleAction::Allow),
        ]
    });
    assert!(
        twice.len() == 1 && twice[0].starts_with("access.rules[1].name"),
        "{twice:?}"
    );
}

#[test]
fn no_rules_and_allow_check_nothing() {
    let mut c = Config::default();
    c.auth.mode = AuthMode::Pat;
    assert!(Policy::new(access_plan(&c), NameTrust::UpnAndEmail).is_none());
}

proptest! {
    /// Whatever the spelling, read-only forwards no write: only GET,
    /// HEAD, OPTIONS and POST can pass, never a git push.
    #[test]
    fn read_only_never_forwards_a_write(
        method in prop::sample::select(vec!["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]),
        segs in prop::collection::vec(prop::sample::select(vec![
            "contoso", "p", "_git", "r", "info", "refs", "lfs", "objects", "batch", "locks",
            "git-receive-pack", "git-upload-pack", "_apis", "wit", "wiql", "WIQL.", "x;y",
            "workitems", "%2e", "%77iql", "verify",
        ]), 0..8),
        query in prop::sample::select(vec!["", "service=git-receive-pack", "service=GIT-RECEIVE-PACK", "service=git-upload-pack"]),
    ) {
        let p = policy(|a| a.read_only = true, AuthMode::Pat);
        let path = format!("/{}", segs.join("/"));
        let q = (!query.is_empty()).then_some(query);
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let passed = p
            .decide(&Asked { method: &m, path: &path, query: q, user: None, upgrade: false })
            .is_ok();
        if passed {
            prop_assert!(matches!(method, "GET" | "HEAD" | "OPTIONS" | "POST"), "{method} {path}");
            let seen = super::path::check(&path).map(|c| c.into_owned()).unwrap_or(path.clone());
            let read = segments(&seen);
            prop_assert_ne!(git_op(&m, &read, q), Some(GitOp::Push), "{} {}", method, path);
        }
    }
}

#[test]
fn a_method_override_is_judged_as_the_method_it_names() {
    let mut h = http::HeaderMap::new();
    assert_eq!(effective_method(&Method::POST, &h), Ok(Method::POST));
    h.insert("x-http-method-override", "patch".parse().unwrap());
    assert_eq!(effective_method(&Method::POST, &h), Ok(Method::PATCH));
    h.insert("x-http-method", "PATCH".parse().unwrap());
    assert_eq!(effective_method(&Method::POST, &h), Ok(Method::PATCH));
    h.insert("x-method-override", "DELETE".parse().unwrap());
    assert_eq!(
        effective_method(&Method::POST, &h).unwrap_err().rule,
        "method-override"
    );
    let mut bad = http::HeaderMap::new();
    bad.insert("x-http-method-override", "PAT CH".parse().unwrap());
    assert!(effective_method(&Method::POST, &bad).is_err());
    let mut twice = http::HeaderMap::new();
    twice.append("x-http-method-override", "GET".parse().unwrap());
    twice.append("x-http-method-override", "PATCH".parse().unwrap());
    assert!(effective_method(&Method::POST, &twice).is_err());
}

#[test]
fn a_method_in_any_case_is_the_method() {
    let lower = Method::from_bytes(b"patch").unwrap();
    assert_eq!(
        effective_method(&lower, &http::HeaderMap::new()),
        Ok(Method::PATCH)
    );
    let mixed = Method::from_bytes(b"Delete").unwrap();
    assert_eq!(
        effective_method(&mixed, &http::HeaderMap::new()),
        Ok(Method::DELETE)
    );
}

#[test]
fn reading_shapes_are_whole_paths_not_endings() {
    let p = policy(|a| a.read_only = true, AuthMode::Pat);
    for (method, target) in [
        // A write whose decoded path ends like a read.
        (
            "POST",
            "/contoso/proj/_apis/wit/workitems/$Task%2F_apis%2Fwit%2Fwiql",
        ),
        ("POST", "/contoso/proj/_apis/wit/workitems;/_apis/wit/wiql"),
        (
            "POST",
            "/contoso/proj/_apis/wit/queries/Shared%20Queries/_apis/wit/wiql",
        ),
        (
            "POST",
            "/contoso/proj/_apis/wit/workitems/$Task%2Fgit-upload-pack",
        ),
        (
            "POST",
            "/contoso/proj/_apis/wit/workitems/$Task%2F_git%2Fr%2Fgit-upload-pack",
        ),
        // The start of a push, its query key in another case.
        (
            "GET",
            "/contoso/proj/_git/r/info/refs?Service=git-receive-pack",
        ),
        (
            "GET",
            "/contoso/proj/_git/r/info/refs?SERVICE=Git-Receive-Pack",
        ),
    ] {
        let e = ask(&p, method, target).unwrap_err();
        assert!(e.read_only, "{method} {target}");
    }
    // Team-scoped and organization-less reads pass.
    for target in [
        "/contoso/proj/team/_apis/wit/wiql",
        "/_apis/wit/wiql",
        "/contoso/_git/r/git-upload-pack",
    ] {
        assert_eq!(ask(&p, "POST", target), Ok(()), "{target}");
    }
    // An upgrade carries anything: refused.
    let m = Method::GET;
    let e = p
        .decide(&Asked {
            method: &m,
            path: "/contoso/_apis/signalr",
            query: None,
            user: None,
            upgrade: true,
        })
        .unwrap_err();
    assert!(e.why.contains("WebSocket"), "{}", e.why);
}

#[test]
fn git_push_covers_the_rest_apis_that_write_a_repository() {
    let p = policy(
        |a| {
            a.rules = vec![AccessRule {
                git: Some(vec![GitOp::Push]),
                ..AccessRule::named("no-push", RuleAction::Deny)
            }]
        },
        AuthMode::Pat,
    );
    for (method, target) in [
        (
            "POST",
            "/contoso/proj/_apis/git/repositories/r/pushes?api-version=7.1",
        ),
        (
            "POST",
            "/contoso/proj/_apis/git/repositories/r/refs?api-version=7.1",
        ),
        ("POST", "/contoso/proj/_git/r.git/info/lfs/verify"),
        ("POST", "/contoso/proj/_git/r.git/info/lfs/objects/verify"),
        ("PUT", "/contoso/proj/_git/r.git/info/lfs/objects/abc"),
        ("POST", "/contoso/proj/_git/r.git/info/lfs/locks"),
        (
            "GET",
            "/contoso/proj/_git/r/info/refs?Service=git-receive-pack",
        ),
    ] {
        assert_eq!(
            ask(&p, method, target).unwrap_err().rule,
            "no-push",
            "{method} {target}"
        );
    }
    for (method, target) in [
        ("GET", "/contoso/proj/_apis/git/repositories/r/refs"),
        ("POST", "/contoso/proj/_git/r/git-upload-pack"),
        ("POST", "/contoso/proj/_git/r.git/info/lfs/objects/batch"),
    ] {
        assert_eq!(ask(&p, method, target), Ok(()), "{method} {target}");
    }
}

#[test]
fn while_rules_restrict_anything_the_pat_api_only_lists() {
    let p = policy(|a| a.default = RuleAction::Deny, AuthMode::User);
    assert_eq!(p.own_pats(&Method::GET), Ok(()));
    for m in [Method::POST, Method::DELETE] {
        let e = p.own_pats(&m).unwrap_err();
        assert_eq!(e.rule, "pat-api");
    }
    assert!(p.rule_names().contains(&"pat-api"));
}

#[test]
fn with_any_directory_admitted_users_are_named_by_object_id() {
    let mut c = Config::default();
    c.auth.mode = AuthMode::User;
    c.auth.provider = Some(crate::config::Provider::Entra);
    c.auth.allowed_tenants = vec!["*".into()];
    c.access.rules = vec![AccessRule {
        users: vec!["dana@contoso.com".into()],
        ..AccessRule::named("dana", RuleAction::Deny)
    }];
    let mut out = Vec::new();
    crate::config::validate_access(&c, &mut out);
    assert!(
        out.len() == 1
            && out[0].key == "access.rules[0].users"
            && out[0].message.contains("object id"),
        "{out:?}"
    );
    c.access.rules[0].users = vec!["72f988bf-86f1-41af-91ab-2d7cd011db47".into()];
    let mut out = Vec::new();
    crate::config::validate_access(&c, &mut out);
    assert!(out.is_empty(), "{out:?}");
}

/// Rules for groups and roles match a signed-in user by what was found
/// with their token; a caller the proxy cannot name meets deny rules
/// only.
#[test]
fn group_and_role_rules_match_what_was_found() {
    const OPS: &str = "9f2c6a4e-1b7d-4e3a-8c5f-2d6b0a1e7c94";
    let mut c = Config::default();
    c.auth.mode = AuthMode::User;
    c.auth.provider = Some(crate::config::Provider::Entra);
    c.access.default = RuleAction::Deny;
    c.access.rules = vec![
        AccessRule {
            groups: vec![OPS.to_ascii_uppercase()],
            ..AccessRule::named("ops", RuleAction::Allow)
        },
        AccessRule {
            roles: vec!["Tools.Reader".into()],
            methods: Some(vec!["GET".into()]),
            ..AccessRule::named("readers", RuleAction::Allow)
        },
    ];
    let mut problems = Vec::new();
    crate::config::validate_access(&c, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let p = Policy::new(access_plan(&c), NameTrust::UpnAndEmail).unwrap();
    let user = UserInfo::default();
    let member = |groups: &[&str], roles: &[&str]| Member {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        groups_unknown: false,
        checked: 1,
    };
    let ops = member(&[OPS], &[]);
    let reader = member(&[], &["Tools.Reader"]);
    let other = member(&["0b6d1c2e-3f4a-4b5c-9d6e-7f8a9b0c1d2e"], &["tools.reader"]);
    let who = |m| {
        Some(Some(Who {
            user: &user,
            member: m,
        }))
    };
    let path = "/contoso/_apis/wit/workitems/1";
    assert_eq!(ask_who(&p, "PATCH", path, who(&ops)), Ok(()));
    assert_eq!(ask_who(&p, "GET", path, who(&reader)), Ok(()));
    assert_eq!(
        ask_who(&p, "PATCH", path, who(&reader)).unwrap_err().rule,
        "default"
    );
    // Roles are matched as issued: another case is another role.
    assert_eq!(
        ask_who(&p, "GET", path, who(&other)).unwrap_err().rule,
        "default"
    );
    assert_eq!(
        ask_who(&p, "GET", path, Some(None)).unwrap_err().rule,
        "default"
    );
    // Groups not known (no groups claim): an allow rule for a group does
    // not let them in...
    let unknown = Member {
        groups_unknown: true,
        ..member(&[], &[])
    };
    assert_eq!(
        ask_who(&p, "PATCH", path, who(&unknown)).unwrap_err().rule,
        "default"
    );
    // ...and a deny rule for one holds.
    c.access.default = RuleAction::Allow;
    c.access.rules.insert(
        0,
        AccessRule {
            groups: vec!["5e1f0a9b-8c7d-4e6f-a5b4-c3d2e1f0a9b8".into()],
            methods: Some(vec!["DELETE".into()]),
            ..AccessRule::named("no-deletes", RuleAction::Deny)
        },
    );
    let p = Policy::new(access_plan(&c), NameTrust::UpnAndEmail).unwrap();
    assert_eq!(
        ask_who(&p, "DELETE", path, who(&unknown)).unwrap_err().rule,
        "no-deletes"
    );
    assert_eq!(ask_who(&p, "DELETE", path, who(&ops)), Ok(()));
}
