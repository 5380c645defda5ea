//! Sealing stored session records: AES-256-GCM (ring) under keys from a
//! key file, one base64 key per line; the first key seals, every key
//! opens, so keys rotate without signing anyone out. Store keys are an
//! HMAC of the session id, so a copy of the store yields neither cookies
//! nor tokens.
//!
//! Sealed layout: `version (1) | key id (4) | nonce (12) | ciphertext+tag`.
//! The store key is the AEAD's associated data, so a record moved to
//! another session's key does not open.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Layout version of sealed records.
const VERSION: u8 = 1;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
const KEY_ID_LEN: usize = 4;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// The keys of one key file.
pub struct Sealer {
    keys: Vec<Key>,
    rng: SystemRandom,
}

struct Key {
    id: [u8; KEY_ID_LEN],
    aead: LessSafeKey,
    /// Derived from the key, for store keys.
    hmac: hmac::Key,
}

/// Why a key file is unusable (the message names the line).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct KeyFileError {
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Why a record does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short, or a layout version this build does not know.
    #[error("not a sealed record of a known version")]
    Format,
    /// Sealed with a key that is not in the key file.
    #[error("sealed with a key that is no longer configured")]
    UnknownKey,
    /// Tampered with, or stored under another session's key.
    #[error("does not authenticate")]
    Tampered,
}

// === impl Sealer ===

impl Sealer {
    /// Keys from raw 32-byte values; the first seals.
    pub fn new(raw: &[[u8; KEY_LEN]]) -> Result<Self, KeyFileError> {
        if raw.is_empty() {
            return Err(KeyFileError {
                message: "no keys: write at least one key (ado-auth-proxy keygen prints one)"
                    .into(),
            });
        }
        let keys = raw
            .iter()
            .map(|k| {
                let digest = ring::digest::digest(&ring::digest::SHA256, k);
                let mut id = [0u8; KEY_ID_LEN];
                id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
                // Separate keys for sealing and store keys, both from the
                // configured one.
                let prk = hmac::Key::new(hmac::HMAC_SHA256, k);
                let hmac_key = hmac::sign(&prk, b"ado-auth-proxy store key v1");
                let unbound = UnboundKey::new(&AES_256_GCM, k).map_err(|_| KeyFileError {
                    message: "a key is not 32 bytes".into(),
                })?;
                Ok(Key {
                    id,
                    aead: LessSafeKey::new(unbound),
                    hmac: hmac::Key::new(hmac::HMAC_SHA256, hmac_key.as_ref()),
                })
            })
            .collect::<Result<Vec<_>, KeyFileError>>()?;
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Reads a key file: one base64 key of 32 bytes per line; blank lines
    /// and `#` comments are ignored.
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyFileError {
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::new(&parse_keys(&text)?)
    }

    /// Store keys for a session id: the current one first, then one per
    /// older key, so records written before a rotation are still found
    /// (and rewritten under the current key).
    pub fn store_keys(&self, session_id: &str) -> Vec<[u8; 32]> {
        self.keys
            .iter()
            .map(|k| {
                let tag = hmac::sign(&k.hmac, session_id.as_bytes());
                let mut out = [0u8; 32];
                out.copy_from_slice(&tag.as_ref()[..32]);
                out
            })
            .collect()
    }

    /// Seals `plaintext` for `store_key` under the first key.
    pub fn seal(&self, store_key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG does not fail on supported platforms; if it ever
        // did, a UUID (also OS randomness) fills the nonce instead.
        if self.rng.fill(&mut nonce).is_err() {
            nonce.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..NONCE_LEN]);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        // Sealing in place cannot fail for inputs under 64 GiB.
        let _ = key.aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(store_key),
            &mut body,
        );
        out.extend_from_slice(&body);
        out
    }

    /// Opens a record sealed for `store_key` under any configured key.
    pub fn open(&self, store_key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < HEADER_LEN + AES_256_GCM.tag_len() || sealed[0] != VERSION {
            return Err(OpenError::Format);
        }
        let id = &sealed[1..1 + KEY_ID_LEN];
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(OpenError::UnknownKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        let mut body = sealed[HEADER_LEN..].to_vec();
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(store_key),
                &mut body,
            )
            .map_err(|_| OpenError::Tampered)?;
        Ok(plain.to_vec())
    }
}

/// The keys in a key file's text.
pub fn parse_keys(text: &str) -> Result<Vec<[u8; KEY_LEN]>, KeyFileError> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bytes = STANDARD.decode(line).map_err(|_| KeyFileError {
            message: format!(
                "line {}: not base64; each line holds one key from `ado-auth-proxy keygen`",
                n + 1
            ),
        })?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| KeyFileError {
            message: format!(
                "line {}: a key must be {KEY_LEN} bytes, this one is {}; use `ado-auth-proxy keygen`",
                n + 1,
                b.len()
            ),
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyFileError {
            message: "holds no key; add one from `ado-auth-proxy keygen`".into(),
        });
    }
    Ok(keys)
}

/// A new random key, base64, as `ado-auth-proxy keygen` prints it.
pub fn generate_key() -> Result<String, ring::error::Unspecified> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new().fill(&mut key)?;
    Ok(STANDARD.encode(key))
}

/// 256 random bits, base64url: for `state`, nonces, session ids and
/// personal tokens.
pub fn random_id() -> String {
    use base64::Engine;
    let mut buf = [0u8; 32];
    // The system RNG does not fail on supported platforms; fall back to
    // UUIDs (also from the OS RNG) rather than panic.
    if SystemRandom::new().fill(&mut buf).is_err() {
        buf[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        buf[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; KEY_LEN] {
        [n; KEY_LEN]
    }

    #[test]
    fn seals_and_opens_and_binds_the_record_to_its_store_key() {
        let s = Sealer::new(&[key(1)]).unwrap();
        let sk = s.store_keys("session-a")[0];
        let sealed = s.seal(&sk, b"refresh token");
        assert!(
            !sealed.windows(13).any(|w| w == b"refresh token"),
            "not in the clear"
        );
        assert_eq!(s.open(&sk, &sealed).unwrap(), b"refresh token");
        let other = s.store_keys("session-b")[0];
        assert_eq!(s.open(&other, &sealed), Err(OpenError::Tampered));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(s.open(&sk, &flipped), Err(OpenError::Tampered));
        let mut future = sealed.clone();
        future[0] = 2;
        assert_eq!(s.open(&sk, &future), Err(OpenError::Format));
        assert_eq!(s.open(&sk, b"short"), Err(OpenError::Format));
        assert_ne!(s.seal(&sk, b"x"), s.seal(&sk, b"x"), "fresh nonce per seal");
    }

    #[test]
    fn keys_rotate_without_losing_records() {
        let old = Sealer::new(&[key(1)]).unwrap();
        let old_sk = old.store_keys("id")[0];
        let sealed = old.seal(&old_sk, b"record");

        // A new key in front: it seals; the old one still opens, and the
        // old store key is still among the candidates.
        let rotated = Sealer::new(&[key(2), key(1)]).unwrap();
        let candidates = rotated.store_keys("id");
        assert_eq!(candidates.len(), 2);
        assert_ne!(candidates[0], old_sk);
        assert_eq!(candidates[1], old_sk);
        assert_eq!(rotated.open(&old_sk, &sealed).unwrap(), b"record");
        let resealed = rotated.seal(&candidates[0], b"record");
        assert_eq!(rotated.open(&candidates[0], &resealed).unwrap(), b"record");

        // Once the old key is removed, its records no longer open.
        let only_new = Sealer::new(&[key(2)]).unwrap();
        assert_eq!(only_new.open(&old_sk, &sealed), Err(OpenError::UnknownKey));
    }

    #[test]
    fn key_files_are_checked_line_by_line() {
        let good = generate_key().unwrap();
        assert_eq!(
            parse_keys(&format!("# comment\n\n{good}\n")).unwrap().len(),
            1
        );
        for (text, word) in [
            ("", "no key"),
            ("not base64!", "line 1: not base64"),
            ("# x\nAAAA", "line 2: a key must be 32 bytes"),
        ] {
            let e = parse_keys(text).unwrap_err().message;
            assert!(e.contains(word), "{text:?}: {e}");
        }
        assert_ne!(generate_key().unwrap(), good);
    }
}
