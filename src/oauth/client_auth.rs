//! How the proxy's app proves itself at a token endpoint, for sign-in and
//! service identities alike: a client secret (its file re-read on every
//! call, so a rotated secret needs no restart; with a second file, the
//! app's other secret slot, tried when the provider refuses the first), a
//! certificate (a signed `private_key_jwt` assertion per call), or a
//! federated token (workload identity or any OpenID Connect token file;
//! whoever writes the file rotates it), or a managed identity's token.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use crate::assertion::{ASSERTION_TYPE, ReloadingSigner};
use crate::config::{AppCredential, AuthConfig, Secret};

/// The app's credential.
pub enum ClientAuth {
    /// `auth.client_secret`.
    Secret(Secret),
    /// `auth.client_secret_file` (and `client_secret_next_file`), and
    /// which of them is presented.
    SecretFile(Vec<PathBuf>, AtomicUsize),
    /// `auth.client_certificate_file` and `auth.client_key_file`.
    Certificate(ReloadingSigner),
    /// `auth.federated_token_file`: its content is the assertion.
    Federated(PathBuf),
    /// An assertion obtained just before the call (a managed identity's
    /// token, for an app that trusts it).
    Assertion(Secret),
}

/// What one call presents.
pub enum Presented {
    /// A client secret.
    Secret(String),
    /// A client assertion (a JWT).
    Assertion(String),
}

// === impl ClientAuth ===

impl ClientAuth {
    /// The configured secret or certificate (a certificate wins), or
    /// `None` for a public client.
    pub fn from_config(auth: &AuthConfig) -> Result<Option<Self>, String> {
        crate::config::credential(auth)
            .map(|c| Self::load(&c))
            .transpose()
    }

    /// The credential a plan names; a certificate is read and checked now.
    pub fn load(credential: &AppCredential) -> Result<Self, String> {
        Ok(match credential {
            AppCredential::Secret(s) => Self::Secret(s.clone()),
            AppCredential::SecretFile(f, next) => Self::SecretFile(
                std::iter::once(f.clone()).chain(next.clone()).collect(),
                AtomicUsize::new(0),
            ),
            AppCredential::Federated(file) => Self::Federated(file.clone()),
            AppCredential::ManagedIdentity { .. } => {
                return Err(
                    "auth.client_credential: \"managed-identity-federation\" proves only \
                            the sign-in app of mode \"user\"; in mode \"service\" use \
                            source = \"managed-identity-federation\""
                        .into(),
                );
            }
            AppCredential::Certificate { cert, key } => Self::Certificate(
                ReloadingSigner::load(cert, key)
                    .map_err(|e| format!("{}: {}", e.key, e.message))?,
            ),
        })
    }

    /// The credential for one call to `token_endpoint` by `client_id`
    /// (an assertion is audience-bound to the endpoint). The error names
    /// the key and the cause, never a secret.
    pub fn present(&self, client_id: &str, token_endpoint: &str) -> Result<Presented, String> {
        self.present_in(client_id, token_endpoint, None)
            .map(|(p, _)| p)
    }

    /// [`present`](Self::present), from secret slot `slot` (the current
    /// one with `None`); also says which slot it presented (0 for any
    /// credential without slots).
    pub fn present_in(
        &self,
        client_id: &str,
        token_endpoint: &str,
        slot: Option<usize>,
    ) -> Result<(Presented, usize), String> {
        let mut used = 0;
        let presented = self.present_slot(client_id, token_endpoint, slot, &mut used)?;
        Ok((presented, used))
    }

    fn present_slot(
        &self,
        client_id: &str,
        token_endpoint: &str,
        slot: Option<usize>,
        used: &mut usize,
    ) -> Result<Presented, String> {
        let read = |key: &str, path: &PathBuf| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("auth.{key}: cannot read {}: {e}", path.display()))
        };
        Ok(match self {
            Self::Secret(s) => Presented::Secret(s.expose().to_string()),
            Self::SecretFile(paths, current) => {
                let i =
                    slot.unwrap_or_else(|| current.load(Ordering::Acquire)) % paths.len().max(1);
                *used = i;
                let key = if i == 0 {
                    "client_secret_file"
                } else {
                    "client_secret_next_file"
                };
                Presented::Secret(read(key, &paths[i])?)
            }
            Self::Certificate(signer) => Presented::Assertion(
                signer
                    .sign(client_id, token_endpoint)
                    .map_err(|e| format!("signing the client assertion: {e}"))?,
            ),
            Self::Federated(path) => {
                let token = read("federated_token_file", path)?;
                // Entra would only say AADSTS700024; whatever writes the
                // file (a CI step, the kubelet) must renew it.
                if let Some(exp) = crate::assertion::expired_at(&token, crate::clock::real_wall()) {
                    return Err(format!(
                        "auth.federated_token_file: the token in {} expired at {} (exp {exp}); \
                         whatever writes the file must renew it before it expires",
                        path.display(),
                        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(exp))
                    ));
                }
                Presented::Assertion(token)
            }
            Self::Assertion(token) => Presented::Assertion(token.expose().to_string()),
        })
    }

    /// After the provider refused the secret of slot `presented` as
    /// invalid: the other slot, to try once, and presented from now on.
    /// Only a switch away from the slot that was refused happens
    /// (compare-and-swap): concurrent calls that all met the bad secret
    /// switch once, and one that presented the good slot never switches
    /// back to the bad one. `None` when there is no other slot.
    pub fn other_secret(&self, presented: usize) -> Option<usize> {
        match self {
            Self::SecretFile(paths, current) if paths.len() > 1 => {
                let next = (presented + 1) % paths.len();
                if current
                    .compare_exchange(presented, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    tracing::warn!(
                        slot = if next == 0 {
                            "client_secret_file"
                        } else {
                            "client_secret_next_file"
                        },
                        "the identity provider refused the client secret; presenting the other \
                         slot from now on"
                    );
                }
                Some(next)
            }
            _ => None,
        }
    }

    /// The secret files and their config keys, for the age metric.
    pub fn secret_files(&self) -> Vec<(&'static str, PathBuf)> {
        match self {
            Self::SecretFile(paths, _) => ["current", "next"]
                .into_iter()
                .zip(paths.iter().cloned())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Adds the standard form fields (RFC 6749 §2.3.1 `client_secret`,
    /// RFC 7523 `client_assertion`) for one call, from secret slot `slot`
    /// (the current one with `None`); returns the slot presented.
    pub fn add_to(
        &self,
        form: &mut Vec<(&'static str, String)>,
        client_id: &str,
        token_endpoint: &str,
        slot: Option<usize>,
    ) -> Result<usize, String> {
        let (presented, used) = self.present_in(client_id, token_endpoint, slot)?;
        match presented {
            Presented::Secret(s) => form.push(("client_secret", s)),
            Presented::Assertion(a) => {
                form.push(("client_assertion_type", ASSERTION_TYPE.into()));
                form.push(("client_assertion", a));
            }
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_read_on_every_call_and_named_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "first\n").unwrap();
        let auth = ClientAuth::SecretFile(vec![path.clone()], AtomicUsize::new(0));
        let mut form = Vec::new();
        auth.add_to(&mut form, "app", "https://idp/token", None)
            .unwrap();
        assert_eq!(form, [("client_secret", "first".to_string())]);
        std::fs::write(&path, "rotated").unwrap();
        let Presented::Secret(s) = auth.present("app", "https://idp/token").unwrap() else {
            panic!("a secret");
        };
        assert_eq!(s, "rotated");
        std::fs::remove_file(&path).unwrap();
        let err = auth.present("app", "x").err().unwrap();
        assert!(
            err.starts_with("auth.client_secret_file: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn a_refused_secret_gives_way_to_the_other_slot_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "old").unwrap();
        std::fs::write(&b, "new").unwrap();
        let auth = ClientAuth::load(&AppCredential::SecretFile(a, Some(b))).unwrap();
        let secret = |auth: &ClientAuth| match auth.present("app", "x").unwrap() {
            Presented::Secret(s) => s,
            Presented::Assertion(_) => panic!("a secret"),
        };
        assert_eq!(secret(&auth), "old");
        assert_eq!(auth.other_secret(0), Some(1));
        assert_eq!(secret(&auth), "new");
        // A late refusal of the slot already left changes nothing.
        assert_eq!(auth.other_secret(0), Some(1));
        assert_eq!(secret(&auth), "new");
        assert_eq!(auth.other_secret(1), Some(0));
        assert_eq!(secret(&auth), "old");
        assert_eq!(
            auth.secret_files()
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>(),
            ["current", "next"]
        );
        // One slot: nothing to try.
        let single =
            ClientAuth::load(&AppCredential::SecretFile(dir.path().join("a"), None)).unwrap();
        assert_eq!(single.other_secret(0), None);
    }

    /// Eight sign-ins meet the expired first slot at once: each retries
    /// with the second, and the shared slot ends on the second, however
    /// their refusals interleave (it used to flip once per refusal, back
    /// to the expired secret about half the time).
    #[test]
    fn concurrent_refusals_of_one_slot_switch_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "expired").unwrap();
        std::fs::write(&b, "good").unwrap();
        for _ in 0..200 {
            let auth =
                ClientAuth::load(&AppCredential::SecretFile(a.clone(), Some(b.clone()))).unwrap();
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        let (p, slot) = auth.present_in("app", "x", None).unwrap();
                        barrier.wait();
                        let Presented::Secret(first) = p else {
                            panic!()
                        };
                        if first == "expired" {
                            let other = auth.other_secret(slot).expect("another slot");
                            let (again, _) = auth.present_in("app", "x", Some(other)).unwrap();
                            let Presented::Secret(again) = again else {
                                panic!()
                            };
                            assert_eq!(again, "good", "the retry presents the other slot");
                        }
                    });
                }
            });
            let (Presented::Secret(now), _) = auth.present_in("app", "x", None).unwrap() else {
                panic!()
            };
            assert_eq!(now, "good");
        }
    }

    #[test]
    fn a_federated_token_is_a_client_assertion() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "eyJ.federated.jwt\n").unwrap();
        let mut form = Vec::new();
        ClientAuth::Federated(path)
            .add_to(&mut form, "app", "https://idp/token", None)
            .unwrap();
        assert_eq!(
            form,
            [
                ("client_assertion_type", ASSERTION_TYPE.to_string()),
                ("client_assertion", "eyJ.federated.jwt".to_string()),
            ]
        );
    }
}
