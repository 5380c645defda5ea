//! What is stored for a session, before sealing: a versioned record with
//! the user and the refresh token, and (Redis only) the current access
//! token shared between replicas. JSON inside the seal: small, readable
//! when debugging with a key at hand, and tolerant of added fields.

use serde::{Deserialize, Serialize};

use super::{Member, UserInfo};

/// The record format this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// A session as stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredSession {
    /// Format version; a newer one is treated as absent.
    pub v: u32,
    /// Who signed in.
    pub user: UserInfo,
    /// Sign-in time, ms since the epoch.
    pub created_ms: u64,
    /// Last use known when written, ms since the epoch.
    pub seen_ms: u64,
    /// Token generation; grows with every refresh.
    pub generation: u64,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<String>,
    /// The ID token, kept as a logout hint.
    pub id_token: Option<String>,
    /// A personal proxy token's session: its end, ms since the epoch.
    #[serde(default)]
    pub until_ms: Option<u64>,
    /// A personal proxy token's session: its list entry's id and name, so
    /// a store that lost the owner's list can get it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenName>,
    /// The user's groups and roles found for this generation.
    #[serde(default, skip_serializing_if = "Member::unchecked")]
    pub member: Member,
}

/// The id and name of a personal proxy token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenName {
    /// Its stable id in the owner's list.
    pub id: String,
    /// The owner's name for it.
    pub name: String,
}

/// A replica's current access token, shared through Redis.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredAccess {
    /// Format version.
    pub v: u32,
    /// The generation it belongs to.
    pub generation: u64,
    /// The access token.
    pub token: String,
    /// Its expiry, ms since the epoch.
    pub expires_ms: u64,
    /// Its lifetime when issued, ms.
    pub lifetime_ms: u64,
}

/// Mode `service`, source `device-code`: the signed-in identity.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredService {
    /// Format version.
    pub v: u32,
    /// The refresh token (rotated on every refresh).
    pub refresh_token: String,
    /// Who signed in (from the ID token), for logs and `/.auth/me`.
    pub upn: Option<String>,
    /// Sign-in time, ms since the epoch.
    pub signed_in_ms: u64,
    /// Bumped on every rotation.
    pub generation: u64,
}

pub use crate::metrics::Unreadable;

/// Why a sealed record did not open.
impl From<crate::seal::OpenError> for Unreadable {
    fn from(e: crate::seal::OpenError) -> Self {
        match e {
            crate::seal::OpenError::Format => Self::Format,
            crate::seal::OpenError::UnknownKey => Self::UnknownKey,
            crate::seal::OpenError::Tampered => Self::Tampered,
        }
    }
}

/// Parses a record: `v` first, so a future version is told apart from
/// garbage.
pub fn decode<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, Unreadable> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let version: Version = serde_json::from_slice(json).map_err(|_| Unreadable::Corrupt)?;
    if version.v > RECORD_VERSION {
        return Err(Unreadable::FutureVersion);
    }
    serde_json::from_slice(json).map_err(|_| Unreadable::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn future_versions_and_garbage_are_told_apart() {
        let rec = StoredSession {
            v: RECORD_VERSION,
            user: UserInfo::default(),
            created_ms: 1,
            seen_ms: 2,
            generation: 3,
            refresh_token: Some("rt".into()),
            id_token: None,
            until_ms: None,
            token: None,
            member: Member::default(),
        };
        let json = serde_json::to_vec(&rec).unwrap();
        let back: StoredSession = decode(&json).unwrap();
        assert_eq!(back.generation, 3);
        let future = br#"{"v":2,"whatever":true}"#;
        assert_eq!(
            decode::<StoredSession>(future).unwrap_err(),
            Unreadable::FutureVersion
        );
        assert_eq!(
            decode::<StoredSession>(b"{\"v\":1}").unwrap_err(),
            Unreadable::Corrupt
        );
        assert_eq!(
            decode::<StoredSession>(b"\x00\x01").unwrap_err(),
            Unreadable::Corrupt
        );
    }
}
