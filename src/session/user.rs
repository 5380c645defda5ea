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
    /// Entra object id, or the subject / profile id.
    pub object_id: Option<String>,
    /// Entra tenant id.
    pub tenant: Option<String>,
}
