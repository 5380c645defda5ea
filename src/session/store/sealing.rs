//! What the store seals: session records (their generation prefix in the
//! clear, for generation-checked writes) and pending sign-ins (in the
//! browser's pre-auth cookie, nothing stored).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::super::backend::{GENERATION_LEN, Key, generation_prefix};
use super::super::record::{self, StoredSession, Unreadable};
use super::{MAX_LOGGED, Sessions};

impl Sessions {
    /// Seals a pending sign-in for the browser's pre-auth cookie. Nothing
    /// is stored: starting a sign-in costs no store write, so a flood of
    /// anonymous starts fills nothing and locks nobody out, and every
    /// replica holding the key file can finish it. `state` is bound in as
    /// associated data, so the cookie opens only for its own callback.
    pub fn seal_pending<T: Serialize>(&self, state: &str, value: &T) -> String {
        use base64::Engine;
        let json = serde_json::to_vec(value).unwrap_or_default();
        let sealed = self.sealer.seal(&pending_binding(state), &json);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
    }

    /// Opens what [`seal_pending`](Self::seal_pending) sealed for `state`;
    /// `None` when it was sealed for another state, under an unknown key,
    /// or tampered with.
    pub fn open_pending<T: DeserializeOwned>(&self, state: &str, sealed: &str) -> Option<T> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .ok()?;
        let json = self.sealer.open(&pending_binding(state), &raw).ok()?;
        serde_json::from_slice(&json).ok()
    }

    pub(super) fn seal_record(&self, key: Key, rec: &StoredSession) -> Vec<u8> {
        let json = serde_json::to_vec(rec).unwrap_or_default();
        let mut out = generation_prefix(rec.generation).to_vec();
        out.extend_from_slice(&self.sealer.seal(&key.to_bytes(), &json));
        out
    }

    /// A record's contents, or `None` (logged once, counted) when it
    /// cannot be used.
    pub(super) fn open_record(&self, key: Key, raw: &[u8]) -> Option<StoredSession> {
        let sealed = raw.get(GENERATION_LEN..).ok_or(Unreadable::Format);
        let result = sealed.and_then(|s| {
            let json = self.sealer.open(&key.to_bytes(), s)?;
            record::decode::<StoredSession>(&json)
        });
        match result {
            Ok(rec) => Some(rec),
            Err(why) => {
                self.metrics.store.unreadable(why);
                let first = self
                    .logged
                    .lock()
                    .map(|mut set| set.len() < MAX_LOGGED && set.insert(key.hash))
                    .unwrap_or(true);
                if first {
                    tracing::warn!(
                        reason = why.as_str(),
                        record = format!(
                            "{:02x}{:02x}{:02x}{:02x}",
                            key.hash[0], key.hash[1], key.hash[2], key.hash[3]
                        ),
                        "a stored session cannot be used and is treated as absent{}",
                        match why {
                            Unreadable::UnknownKey =>
                                " (sealed with a key no longer in session.encryption_keys_file)",
                            Unreadable::FutureVersion => " (written by a newer ado-auth-proxy)",
                            _ => "",
                        }
                    );
                }
                None
            }
        }
    }
}

/// The associated data of a sealed pending sign-in: a hash of its
/// `state` (not an HMAC under the current key, so a key rotation during a
/// sign-in does not break it; the sealing key itself authenticates).
fn pending_binding(state: &str) -> Vec<u8> {
    let mut out = b"pending:".to_vec();
    out.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, state.as_bytes()).as_ref());
    out
}
