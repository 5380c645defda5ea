//! Azure DevOps organization names and `upstream.allowed_organizations`:
//! the one rule that routing and the proxy's own calls for an
//! organization (`/.auth/pats`) both apply. A leaf.

/// What the rule says of a name.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed (also: no allowlist is set).
    Allowed,
    /// An allowlist is set and no organization was named.
    Required,
    /// Not on the allowlist (the name, lowercased).
    NotAllowed(String),
}

/// `upstream.allowed_organizations`, lowercased; empty allows every one.
#[derive(Debug, Clone, Default)]
pub struct Allowlist(Vec<String>);

// === impl Allowlist ===

impl Allowlist {
    /// The allowlist of `names` (validated at load).
    pub fn new(names: &[String]) -> Self {
        Self(names.iter().map(|o| o.to_ascii_lowercase()).collect())
    }

    /// The names, lowercased.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether `org` (as the front end reads it; empty for none) may be
    /// reached.
    pub fn check(&self, org: &str) -> Verdict {
        if self.0.is_empty() {
            return Verdict::Allowed;
        }
        if org.is_empty() || org.starts_with('_') {
            return Verdict::Required;
        }
        let org = org.to_ascii_lowercase();
        if self.0.contains(&org) {
            Verdict::Allowed
        } else {
            Verdict::NotAllowed(org)
        }
    }
}

/// Whether `org` can be an organization's name: 1 to 50 letters, digits,
/// `-` or `_`, starting and ending with a letter or digit (Azure DevOps'
/// rule, with `_` for old accounts). No dots: `.` and `..` would vanish
/// from a URL built with the name.
pub fn is_name(org: &str) -> bool {
    let b = org.as_bytes();
    (1..=50).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["contoso", "Contoso-2", "a", "old_account", "x9"] {
            assert!(is_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "-a",
            "a-",
            "_a",
            "a/b",
            "a%2e",
            "a b",
            "é",
            &"a".repeat(51),
        ] {
            assert!(!is_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_allowlist_is_case_insensitive_and_requires_a_name() {
        let a = Allowlist::new(&["Contoso".into()]);
        assert_eq!(a.check("CONTOSO"), Verdict::Allowed);
        assert_eq!(a.check("fabrikam"), Verdict::NotAllowed("fabrikam".into()));
        assert_eq!(a.check(""), Verdict::Required);
        assert_eq!(a.check("_apis"), Verdict::Required);
        assert_eq!(Allowlist::default().check("anything"), Verdict::Allowed);
    }
}
