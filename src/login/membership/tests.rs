//! The membership check through its interface, on a provider nothing
//! answers for (a Graph question fails as the network would).

use super::*;
use crate::config::{AccessRule, RuleAction};
use crate::login::tests::login_with;

const DEVS: &str = "9f2c6a4e-1b7d-4e3a-8c5f-2d6b0a1e7c94";
const OPS: &str = "0b6d1c2e-3f4a-4b5c-9d6e-7f8a9b0c1d2e";
const OTHER: &str = "5e1f0a9b-8c7d-4e6f-a5b4-c3d2e1f0a9b8";

fn membership(f: impl FnOnce(&mut crate::config::Config)) -> Arc<Membership> {
    let (login, _) = login_with(f);
    login.membership.clone().expect("groups or roles are read")
}

fn claims(groups: Option<&[&str]>, overage: bool, roles: &[&str]) -> GroupClaims {
    GroupClaims {
        groups: groups.map(|g| g.iter().map(|s| s.to_string()).collect()),
        overage,
        roles: roles.iter().map(|s| s.to_string()).collect(),
    }
}

fn not_member(r: Result<Member, Denied>) -> String {
    match r {
        Err(Denied::NotMember(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_user_needs_an_allowed_group_and_an_allowed_role_when_both_are_set() {
    let m = membership(|c| {
        c.auth.allowed_groups = vec![DEVS.to_ascii_uppercase()];
        c.auth.allowed_roles = vec!["Tools.User".into()];
    });
    let found = m
        .find(
            &claims(Some(&[OTHER, DEVS]), false, &["Tools.User", "x"]),
            None,
        )
        .await
        .unwrap();
    // Only what the proxy asks about is kept.
    assert_eq!(found.groups, vec![DEVS.to_string()]);
    assert_eq!(found.roles, vec!["Tools.User".to_string()]);
    assert_eq!(m.standing(&found), Standing::Admitted);

    let why = not_member(
        m.find(&claims(Some(&[OTHER]), false, &["Tools.User"]), None)
            .await,
    );
    assert!(
        why.contains(DEVS) && why.contains("in none of them"),
        "{why}"
    );
    let why = not_member(
        m.find(&claims(Some(&[DEVS]), false, &["tools.user"]), None)
            .await,
    );
    assert!(why.contains("app roles Tools.User"), "{why}");
    // No groups claim at all: the app registration does not emit it.
    let why = not_member(m.find(&claims(None, false, &["Tools.User"]), None).await);
    assert!(why.contains("groupMembershipClaims"), "{why}");
}

#[tokio::test]
async fn an_overage_asks_graph_and_a_failed_graph_is_no_admission() {
    let m = membership(|c| c.auth.allowed_groups = vec![DEVS.into()]);
    // Without a refresh token Graph cannot be asked: the operator's to fix.
    match m.find(&claims(None, true, &[]), None).await {
        Err(Denied::Unverified(Failure::Operator { reason, .. })) => {
            assert!(reason.contains("offline_access"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The token endpoint cannot be reached: it passes, and admits nobody.
    match m.find(&claims(None, true, &[]), Some("rt")).await {
        Err(Denied::Unverified(Failure::Transient { reason })) => {
            assert!(reason.contains("User.Read"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let e = Denied::Unverified(Failure::Transient {
        reason: "down".into(),
    })
    .into_error();
    assert!(format!("{e}").contains("membership unverified"), "{e}");
}

#[tokio::test]
async fn a_finding_counts_only_under_the_configuration_it_was_made_for() {
    let rule = |c: &mut crate::config::Config| {
        c.auth.allowed_groups = vec![DEVS.into()];
        c.access.rules = vec![AccessRule {
            groups: vec![OPS.into()],
            ..AccessRule::named("ops", RuleAction::Allow)
        }];
    };
    let m = membership(rule);
    let found = m
        .find(&claims(Some(&[DEVS, OPS]), false, &[]), None)
        .await
        .unwrap();
    assert_eq!(found.groups, vec![OPS.to_string(), DEVS.to_string()]);
    assert_eq!(m.standing(&found), Standing::Admitted);
    assert_eq!(m.standing(&Member::default()), Standing::Stale);
    let other_config = membership(|c| c.auth.allowed_groups = vec![DEVS.into()]);
    assert_eq!(other_config.standing(&found), Standing::Stale);
    let forged = Member {
        groups: vec![OPS.into()],
        ..found
    };
    assert!(matches!(m.standing(&forged), Standing::Refused(_)));
}

#[tokio::test]
async fn a_client_token_must_carry_its_groups_or_roles() {
    let m = membership(|c| c.auth.allowed_groups = vec![DEVS.into()]);
    assert!(m.of_client(&claims(Some(&[DEVS]), false, &[])).is_ok());
    let why = m.of_client(&claims(None, true, &[])).unwrap_err();
    assert!(why.contains("sign in through the proxy"), "{why}");
    let why = m
        .of_client(&claims(Some(&[OTHER]), false, &[]))
        .unwrap_err();
    assert!(why.contains("in none of them"), "{why}");
    let roles = membership(|c| c.auth.allowed_roles = vec!["Tools.User".into()]);
    assert!(
        roles
            .of_client(&claims(None, true, &["Tools.User"]))
            .is_ok()
    );
    assert!(roles.of_client(&claims(None, false, &[])).is_err());
}
