//! What an Entra token says about its holder's groups and app roles:
//! the `groups` claim (object ids), or the overage marker Entra puts in
//! its place when there are more than fit (`_claim_names` naming
//! `groups`, or `hasgroups` in implicit-flow tokens), and `roles`.
//!
//! A claim of the wrong shape counts as absent, and an entry of the wrong
//! shape is left out: neither names a group or role, so neither grants
//! anything; a group the proxy cannot read is treated as unknown, which
//! holds deny rules for groups (`session::Member::groups_unknown`).

use serde::Deserialize;
use serde_json::Value;

/// The raw group and role claims of a token, as they were signed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawGroupClaims {
    /// `groups`: object ids (or names, for groups synced from on-premises
    /// with that option).
    #[serde(default)]
    pub groups: Option<Value>,
    /// `roles`: the app roles assigned to the user (or app) for the app
    /// the token is for.
    #[serde(default)]
    pub roles: Option<Value>,
    /// `_claim_names`: claims left out of the token and where to get
    /// them (`{"groups": "src1"}` on overage).
    #[serde(default, rename = "_claim_names")]
    pub claim_names: Option<Value>,
    /// `hasgroups`: the overage marker of implicit-flow tokens.
    #[serde(default)]
    pub hasgroups: Option<Value>,
}

/// A token's groups and roles, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupClaims {
    /// The groups claim, lowercase; `None` when the token carries none.
    pub groups: Option<Vec<String>>,
    /// The token has more groups than it carries: ask Microsoft Graph.
    pub overage: bool,
    /// The roles claim (case as issued).
    pub roles: Vec<String>,
}

/// At most this many entries of a claim are read (Entra puts at most 200
/// groups in a JWT before it switches to the overage marker).
const MAX_ENTRIES: usize = 1000;

impl RawGroupClaims {
    /// The claims, read.
    pub fn read(&self) -> GroupClaims {
        let overage = self
            .claim_names
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|names| names.contains_key("groups"))
            || super::id_token::claim_is_true(self.hasgroups.as_ref());
        GroupClaims {
            groups: self
                .groups
                .as_ref()
                .and_then(strings)
                .map(|v| v.into_iter().map(|g| g.to_ascii_lowercase()).collect()),
            overage,
            roles: self.roles.as_ref().and_then(strings).unwrap_or_default(),
        }
    }
}

/// A claim that is a list (of at most [`MAX_ENTRIES`]): its strings, an
/// entry of another shape or an overlong one left out (it names no
/// group the proxy asks about, and must not hide those beside it), or
/// `None` when it is no list at all.
fn strings(v: &Value) -> Option<Vec<String>> {
    let list = v.as_array()?;
    if list.len() > MAX_ENTRIES {
        return None;
    }
    Some(
        list.iter()
            .filter_map(|e| e.as_str().filter(|s| s.len() <= 256).map(str::to_string))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn read(v: Value) -> GroupClaims {
        serde_json::from_value::<RawGroupClaims>(v).unwrap().read()
    }

    #[test]
    fn groups_roles_and_both_overage_markers_are_read() {
        let c = read(json!({"groups": ["ABC", "def"], "roles": ["Tools.User"]}));
        assert_eq!(c.groups, Some(vec!["abc".into(), "def".into()]));
        assert_eq!(c.roles, vec!["Tools.User".to_string()]);
        assert!(!c.overage);
        let c = read(json!({
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/x/users/y/getMemberObjects"}}
        }));
        assert_eq!(c.groups, None);
        assert!(c.overage);
        assert!(read(json!({"hasgroups": true})).overage);
        assert!(!read(json!({"_claim_names": {"other": "src1"}})).overage);
        assert_eq!(read(json!({})), GroupClaims::default());
    }

    /// A claim of another shape is no claim: it grants nothing.
    #[test]
    fn malformed_claims_count_as_absent() {
        let c = read(json!({"groups": "abc", "roles": [1, 2]}));
        assert_eq!(c.groups, None);
        assert!(c.roles.is_empty());
        assert_eq!(
            read(json!({"groups": ["a", 7]})).groups,
            Some(vec!["a".into()])
        );
        let many: Vec<String> = (0..MAX_ENTRIES + 1).map(|i| i.to_string()).collect();
        assert_eq!(read(json!({ "groups": many })).groups, None);
        assert_eq!(
            read(json!({"groups": ["x".repeat(300)]})).groups,
            Some(vec![])
        );
    }

    /// One entry the reader leaves out (over 256 bytes, such as an
    /// on-premises group emitted as `DNSDomainName\\sAMAccountName`) does
    /// not hide the object ids beside it.
    #[test]
    fn one_odd_entry_does_not_hide_the_groups_the_token_names() {
        const OPS: &str = "0b6d1c2e-3f4a-4b5c-9d6e-7f8a9b0c1d2e";
        let long = format!("corp.{}.example.com\\release-engineering", "a".repeat(240));
        let c = read(json!({"groups": [OPS, long]}));
        assert!(
            c.groups
                .as_ref()
                .is_some_and(|g| g.contains(&OPS.to_string())),
            "the token names {OPS}, the proxy reads {:?}",
            c.groups
        );
    }

    proptest! {
        /// Any JSON in these claims reads without panicking, and only
        /// strings that were in the claim come out.
        #[test]
        fn any_claim_value_reads_safely(s in "[ -~]{0,40}", n in 0u32..5, flag in any::<bool>()) {
            let values = [
                json!(s), json!([s, s]), json!(n), json!({ "groups": s }), json!(flag), json!(null),
            ];
            for v in values {
                let c = read(json!({"groups": v, "roles": v, "_claim_names": v, "hasgroups": v}));
                for g in c.groups.iter().flatten() {
                    prop_assert_eq!(g, &s.to_ascii_lowercase());
                }
                for r in &c.roles {
                    prop_assert_eq!(r, &s);
                }
            }
        }
    }
}
