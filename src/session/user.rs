//! Who a session belongs to, as the identity provider said at sign-in,
//! and their groups and roles as last found.
//! Plain data: the session layer knows no OAuth types.

/// Who signed in.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct UserInfo {
    /// Display name.
    pub name: Option<String>,
    /// UPN or user name.
    pub upn: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Whether the provider vouched for `email` (OIDC `email_verified`,
    /// Entra `xms_edov`), so the allowlists may match it. Records written
    /// before this field existed read as `false`: their address was
    /// admitted by an older, laxer rule and is judged again.
    #[serde(default)]
    pub email_verified: bool,
    /// Entra object id, or the subject / profile id.
    pub object_id: Option<String>,
    /// Entra tenant id.
    pub tenant: Option<String>,
}

/// What the proxy found of a user's Entra groups and app roles when a
/// token generation was issued: of the groups and roles it asks about,
/// those the user has. Plain data, judged by the login's membership
/// check.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Group object ids, lowercase.
    pub groups: Vec<String>,
    /// App roles.
    pub roles: Vec<String>,
    /// The token carried no readable groups claim (the app registration
    /// emits none, or not these): which groups the user is in is not
    /// known, so deny rules for groups hold and allow rules do not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub groups_unknown: bool,
    /// The fingerprint of the configuration they were found against; 0
    /// when they were never looked for (a record from before the check,
    /// or none is configured).
    pub checked: u64,
}

impl Member {
    /// Never looked for.
    pub fn unchecked(&self) -> bool {
        self.checked == 0
    }
}

#[cfg(test)]
mod tests {
    use super::UserInfo;

    #[test]
    fn a_record_from_before_email_verification_counts_its_email_as_unverified() {
        let old = r#"{"name":"Mallory","upn":null,"email":"dana@contoso.com","object_id":"x","tenant":null}"#;
        let user: UserInfo = serde_json::from_str(old).unwrap();
        assert_eq!(user.email.as_deref(), Some("dana@contoso.com"));
        assert!(!user.email_verified);
    }
}
