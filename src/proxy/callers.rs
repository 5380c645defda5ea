//! Who may call a proxy that acts as a fixed identity (modes `pat` and
//! `service`): an address allowlist (`auth.allowed_client_cidrs`) and a
//! shared secret header (`auth.caller_secret_file`: one secret, or a
//! directory of named ones, so the audit trail says which caller it was).
//! Both optional; both checked when configured. The secret header is
//! removed before forwarding.

use std::net::IpAddr;
use std::path::PathBuf;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::Cidr;
use crate::error::Refusal;

/// The header callers send the shared secret in.
pub const CALLER_SECRET_HEADER: &str = "x-ado-proxy-caller-secret";

/// The admission rules.
pub struct Callers {
    cidrs: Vec<Cidr>,
    secret_file: Option<PathBuf>,
}

impl Callers {
    /// The rules of `[auth]`, or `None` when nothing is configured.
    pub fn from_config(auth: &crate::config::AuthConfig) -> Result<Option<Self>, String> {
        if auth.allowed_client_cidrs.is_empty() && auth.caller_secret_file.is_none() {
            return Ok(None);
        }
        let cidrs = auth
            .allowed_client_cidrs
            .iter()
            .map(|c| Cidr::parse(c).map_err(|e| format!("auth.allowed_client_cidrs: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Some(Self {
            cidrs,
            secret_file: auth.caller_secret_file.clone(),
        }))
    }

    /// Admits the caller or says why not; removes the secret header.
    /// The name of the caller secret that matched, when one was asked
    /// for.
    pub fn admit(&self, peer: IpAddr, headers: &mut HeaderMap) -> Result<Option<String>, Refusal> {
        let sent = headers.remove(CALLER_SECRET_HEADER);
        if !self.cidrs.is_empty() && !self.cidrs.iter().any(|c| c.contains(peer)) {
            return Err(Refusal::CallerRefused {
                reason: "your address is not in the proxy's list of allowed callers",
            });
        }
        if let Some(path) = &self.secret_file {
            return match sent.and_then(|v| matching(path, v.as_bytes())) {
                Some(name) => Ok(Some(name)),
                None => Err(Refusal::CallerRefused {
                    reason: "the request lacks the caller secret header (X-Ado-Proxy-Caller-Secret) \
                             or it is wrong",
                }),
            };
        }
        Ok(None)
    }
}

/// The name of the caller secret at `path` that `sent` is. Re-read per
/// request: rotation and new callers need no restart, and the files are
/// tiny and in the page cache. Every secret is compared, in constant
/// time, whichever matches.
fn matching(path: &std::path::Path, sent: &[u8]) -> Option<String> {
    let files = crate::config::caller_secrets(path).ok()?;
    let mut found = None;
    for (name, file) in files {
        let expected = std::fs::read_to_string(&file).unwrap_or_default();
        let expected = expected.trim();
        let same = !expected.is_empty() && bool::from(sent.ct_eq(expected.as_bytes()));
        if same && found.is_none() {
            found = Some(name);
        }
    }
    found
}
