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

/// Attempts of a compare-and-swap list edit before it gives up.
const LIST_ATTEMPTS: usize = 8;

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
    /// `lifetime` from now: its value (shown once) and its list entry;
    /// `None` when the user already holds `max` live tokens. Counting,
    /// creating and listing are one step for the user, in this process
    /// and (the list is written compare-and-swap) across replicas.
    pub async fn create_token(
        &self,
        owner: &Session,
        name: &str,
        lifetime: Duration,
        max: usize,
    ) -> Result<Option<(String, TokenInfo)>, StoreError> {
        self.lists_ready().await?;
        let _editing = self.list_lock(&owner.user).lock().await;
        let now = self.clock().wall();
        let now_ms = unix_ms(now);
        let live = |list: &TokenList| list.tokens.iter().filter(|t| t.expires_ms > now_ms).count();
        if live(&self.token_list(&owner.user).await?) >= max {
            return Ok(None);
        }
        let value = format!("{TOKEN_PREFIX}{}", crate::seal::random_id());
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
            created_ms: now_ms,
            expires_ms: unix_ms(until),
            last_used_ms: None,
            session: hex(&session.key.to_bytes()),
            store: hex(&session.store_key),
        };
        let (cache_key, store_key) = (session.key, session.store_key);
        self.create(Arc::new(session)).await?;
        let listed = self
            .edit_list(&owner.user, |list| {
                list.tokens.retain(|t| t.expires_ms > now_ms);
                if list.tokens.len() >= max {
                    // Another replica made one meanwhile.
                    return Some(false);
                }
                list.tokens.push(info.clone());
                Some(true)
            })
            .await;
        // A token that is not listed could not be revoked by its owner:
        // it ends at once unless its entry was written.
        match listed {
            Ok(Some(true)) => Ok(Some((value, info))),
            Ok(_) => {
                self.remove_key(cache_key, store_key, until).await;
                Ok(None)
            }
            Err(e) => {
                self.remove_key(cache_key, store_key, until).await;
                Err(e)
            }
        }
    }

    /// The user's live tokens, oldest first.
    pub async fn list_tokens(&self, user: &UserInfo) -> Result<Vec<TokenInfo>, StoreError> {
        let now = unix_ms(self.clock().wall());
        let mut list = self.token_list(user).await?;
        list.tokens.retain(|t| t.expires_ms > now);
        Ok(list.tokens)
    }

    /// Revokes the user's token `id` (all of them with `None`): their
    /// sessions end everywhere (first, so a failure leaves an entry for a
    /// dead token, never a live token without one). How many were revoked.
    pub async fn revoke_tokens(
        &self,
        user: &UserInfo,
        id: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.lists_ready().await?;
        let _editing = self.list_lock(user).lock().await;
        let list = self.token_list(user).await?;
        let gone: Vec<&TokenInfo> = list
            .tokens
            .iter()
            .filter(|t| id.is_none_or(|id| t.id == id))
            .collect();
        for t in &gone {
            if let (Some(key), Some(store)) = (unhex(&t.session), unhex(&t.store)) {
                let until = UNIX_EPOCH + Duration::from_millis(t.expires_ms);
                self.remove_key(SessionKey::from_bytes(key), store, until)
                    .await;
            }
        }
        if gone.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = gone.iter().map(|t| t.id.clone()).collect();
        self.edit_list(user, |list| {
            list.tokens.retain(|t| !ids.contains(&t.id));
            Some(())
        })
        .await?;
        Ok(ids.len())
    }

    /// Notes a use of `session`, a token's (callers throttle).
    pub async fn token_used(&self, session: &Session) -> Result<(), StoreError> {
        let _editing = self.list_lock(&session.user).lock().await;
        let store = hex(&session.store_key);
        let now = unix_ms(self.clock().wall());
        self.edit_list(&session.user, |list| {
            let t = list.tokens.iter_mut().find(|t| t.store == store)?;
            t.last_used_ms = Some(now);
            Some(())
        })
        .await
        .map(drop)
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
            let _editing = self.list_lock(user).lock().await;
            let added = self
                .edit_list(user, |list| {
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
                    let added = list.tokens.len() - before;
                    list.tokens.sort_by_key(|t| t.created_ms);
                    (added > 0).then_some(added)
                })
                .await?;
            listed += added.unwrap_or(0);
        }
        Ok(listed)
    }

    /// The lock of `user`'s list in this process (picked by a hash of who
    /// they are: a fixed number of locks, however many users there are).
    fn list_lock(&self, user: &UserInfo) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        owner_id(user).hash(&mut h);
        let locks = self.list_locks();
        &locks[(h.finish() as usize) % locks.len()]
    }

    /// Reads, changes and writes `user`'s list; `edit` returns `None` to
    /// leave it as it is. Written only if no one wrote it meanwhile (another
    /// replica), else read and changed again. Callers hold the list lock.
    async fn edit_list<T>(
        &self,
        user: &UserInfo,
        mut edit: impl FnMut(&mut TokenList) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        let key = self.list_key(user);
        for _ in 0..LIST_ATTEMPTS {
            let raw = self.op(StoreOp::Get, self.backend().get(key)).await?;
            let mut list: TokenList = raw
                .as_ref()
                .and_then(|r| self.open_for(&key, r))
                .and_then(|json| serde_json::from_slice(&json).ok())
                .unwrap_or_default();
            let Some(out) = edit(&mut list) else {
                return Ok(None);
            };
            let (sealed, ttl) = self.seal_list(&key, &list);
            if self
                .op(
                    StoreOp::Update,
                    self.backend().swap(key, raw.as_deref(), sealed, ttl),
                )
                .await?
            {
                return Ok(Some(out));
            }
        }
        Err(StoreError::Unavailable {
            backend: self.backend_name(),
            detail: "a token list kept changing under concurrent writes".into(),
        })
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

    /// The sealed list and how long to keep it (its last token's life).
    fn seal_list(&self, key: &Key, list: &TokenList) -> (Vec<u8>, Duration) {
        let now = unix_ms(self.clock().wall());
        let last = list
            .tokens
            .iter()
            .map(|t| t.expires_ms)
            .max()
            .unwrap_or(now);
        let ttl = Duration::from_millis(last.saturating_sub(now)).max(Duration::from_secs(60));
        let json = serde_json::to_vec(list).unwrap_or_default();
        (self.seal_for(key, &json), ttl)
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
