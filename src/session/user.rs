//! Who a session belongs to, as the identity provider said at sign-in.
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
