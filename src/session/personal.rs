//! Personal proxy tokens in the session store. A command-line client
//! (git, curl, a package manager) presents one instead of a cookie. The
//! token's value is the id of a session of its own: created from the
//! owner's browser session (same user, a copy of its tokens), ending
//! when the token expires, never idling out, refreshed like any session
//! (single flight, leases across replicas). So the value is never
//! stored (only its HMAC, as for cookies), the token survives restarts
//! and works on every replica, and revoking it is ending that session.
//!
//! Each user's list of tokens (name, created, expires, last used; never
//! the value) is one more sealed record, under the HMAC of the user's
//! identity.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::backend::{Key, Namespace, StoreError, hex, unhex};
use super::{Session, SessionKey, Sessions, TokenName, UserInfo};
use crate::clock::unix_ms;
use crate::metrics::StoreOp;

/// The prefix of every token value: recognisable in a header, and by
/// secret scanners.
pub const TOKEN_PREFIX: &str = "adp_";

/// What the owner sees of one token.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Stable id.
    pub id: String,
    /// The owner's name for it.
    pub name: String,
    /// Creation, ms since the epoch.
    pub created_ms: u64,
    /// Expiry, ms since the epoch.
    pub expires_ms: u64,
    /// Last use, ms since the epoch.
    #[serde(default)]
    pub last_used_ms: Option<u64>,
    /// Its session's cache key and store key (hex), to end it.
    session: String,
    store: String,
}

/// A user's tokens.
#[derive(Default, Serialize, Deserialize)]
struct TokenList {
    tokens: Vec<TokenInfo>,
}

// === impl Sessions ===

impl Sessions {
    /// A new token acting for `owner`'s user with `owner`'s tokens until
    /// `lifetime` from now: its value (shown once) and its list entry.
    pub async fn create_token(
        &self,
        owner: &Session,
        name: &str,
        lifetime: Duration,
    ) -> Result<(String, TokenInfo), StoreError> {
        let value = format!("{TOKEN_PREFIX}{}", crate::seal::random_id());
        let now = self.clock().wall();
        let until = now + lifetime;
        let id = crate::seal::random_id()[..16].to_string();
        let session = Session::for_token(
            SessionKey::of(&value),
            self.store_key(&value),
            owner,
            (
                until,
                TokenName {
                    id: id.clone(),
                    name: name.to_string(),
                },
            ),
            self.clock(),
        );
        let info = TokenInfo {
            id,
            name: name.to_string(),
            created_ms: unix_ms(now),
            expires_ms: unix_ms(until),
            last_used_ms: None,
            session: hex(&session.key.to_bytes()),
            store: hex(&session.store_key),
        };
        self.create(Arc::new(session)).await?;
        let mut list = self.token_list(&owner.user).await?;
        list.tokens.retain(|t| t.expires_ms > info.created_ms);
        list.tokens.push(info.clone());
        self.save_list(&owner.user, &list).await?;
        Ok((value, info))
    }

    /// The user's live tokens, oldest first.
    pub async fn list_tokens(&self, user: &UserInfo) -> Result<Vec<TokenInfo>, StoreError> {
        let now = unix_ms(self.clock().wall());
        let mut list = self.token_list(user).await?;
        list.tokens.retain(|t| t.expires_ms > now);
        Ok(list.tokens)
    }

    /// Revokes the user's token `id` (all of them with `None`): their
    /// sessions end everywhere. How many were revoked.
    pub async fn revoke_tokens(
        &self,
        user: &UserInfo,
        id: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut list = self.token_list(user).await?;
        let (gone, kept): (Vec<TokenInfo>, Vec<TokenInfo>) = list
            .tokens
            .into_iter()
            .partition(|t| id.is_none_or(|id| t.id == id));
        for t in &gone {
            if let (Some(key), Some(store)) = (unhex(&t.session), unhex(&t.store)) {
                let until = UNIX_EPOCH + Duration::from_millis(t.expires_ms);
                self.remove_key(SessionKey::from_bytes(key), store, until)
                    .await;
            }
        }
        list.tokens = kept;
        if !gone.is_empty() {
            self.save_list(user, &list).await?;
        }
        Ok(gone.len())
    }

    /// Notes a use of `session`, a token's (callers throttle).
    pub async fn token_used(&self, session: &Session) -> Result<(), StoreError> {
        let mut list = self.token_list(&session.user).await?;
        let store = hex(&session.store_key);
        let Some(t) = list.tokens.iter_mut().find(|t| t.store == store) else {
            return Ok(());
        };
        t.last_used_ms = Some(unix_ms(self.clock().wall()));
        self.save_list(&session.user, &list).await
    }

    /// Puts tokens whose sessions were written back into a store that lost
    /// its data into their owners' lists again, so each stays visible and
    /// revocable.
    pub(super) async fn relist(&self, sessions: &[Arc<Session>]) -> Result<usize, StoreError> {
        let now = unix_ms(self.clock().wall());
        let mut owners: std::collections::HashMap<String, Vec<&Arc<Session>>> =
            std::collections::HashMap::new();
        for s in sessions {
            if s.token.is_some() && s.until.is_some_and(|u| unix_ms(u) > now) {
                owners.entry(owner_id(&s.user)).or_default().push(s);
            }
        }
        let mut listed = 0;
        for tokens in owners.values() {
            let user = &tokens[0].user;
            let mut list = self.token_list(user).await?;
            let before = list.tokens.len();
            for s in tokens {
                let (Some(name), Some(until)) = (&s.token, s.until) else {
                    continue;
                };
                if list.tokens.iter().any(|t| t.id == name.id) {
                    continue;
                }
                list.tokens.push(TokenInfo {
                    id: name.id.clone(),
                    name: name.name.clone(),
                    created_ms: unix_ms(s.created),
                    expires_ms: unix_ms(until),
                    last_used_ms: None,
                    session: hex(&s.key.to_bytes()),
                    store: hex(&s.store_key),
                });
            }
            if list.tokens.len() > before {
                listed += list.tokens.len() - before;
                list.tokens.sort_by_key(|t| t.created_ms);
                self.save_list(user, &list).await?;
            }
        }
        Ok(listed)
    }

    fn list_key(&self, user: &UserInfo) -> Key {
        Key::new(Namespace::TokenIndex, self.store_key(&owner_id(user)))
    }

    async fn token_list(&self, user: &UserInfo) -> Result<TokenList, StoreError> {
        let key = self.list_key(user);
        let Some(raw) = self.op(StoreOp::Get, self.backend().get(key)).await? else {
            return Ok(TokenList::default());
        };
        Ok(self
            .open_for(&key, &raw)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default())
    }

    async fn save_list(&self, user: &UserInfo, list: &TokenList) -> Result<(), StoreError> {
        let key = self.list_key(user);
        let now = unix_ms(self.clock().wall());
        let last = list
            .tokens
            .iter()
            .map(|t| t.expires_ms)
            .max()
            .unwrap_or(now);
        let ttl = Duration::from_millis(last.saturating_sub(now)).max(Duration::from_secs(60));
        let json = serde_json::to_vec(list).unwrap_or_default();
        let sealed = self.seal_for(&key, &json);
        self.op(StoreOp::Put, self.backend().put(key, sealed, ttl))
            .await
    }
}

/// Who owns tokens: the directory and object id (Entra), else the
/// provider's other stable names.
fn owner_id(user: &UserInfo) -> String {
    format!(
        "personal-tokens|{}|{}",
        user.tenant.as_deref().unwrap_or(""),
        user.object_id
            .as_deref()
            .or(user.upn.as_deref())
            .or(user.email.as_deref())
            .unwrap_or("")
    )
}
