//! Who may call a proxy that acts as a fixed identity (modes `pat` and
//! `service`): an address allowlist (`auth.allowed_client_cidrs`) and a
//! shared secret header (`auth.caller_secret_file`). Both optional; both
//! checked when configured. The secret header is removed before
//! forwarding.

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
    /// `true` when the caller secret was asked for and matched.
    pub fn admit(&self, peer: IpAddr, headers: &mut HeaderMap) -> Result<bool, Refusal> {
        let sent = headers.remove(CALLER_SECRET_HEADER);
        if !self.cidrs.is_empty() && !self.cidrs.iter().any(|c| c.contains(peer)) {
            return Err(Refusal::CallerRefused {
                reason: "your address is not in the proxy's list of allowed callers",
            });
        }
        if let Some(path) = &self.secret_file {
            // Re-read per request: rotation needs no restart, and the file
            // is tiny and in the page cache.
            let expected = std::fs::read_to_string(path).unwrap_or_default();
            let expected = expected.trim();
            let ok = !expected.is_empty()
                && sent.is_some_and(|v| bool::from(v.as_bytes().ct_eq(expected.as_bytes())));
            if !ok {
                return Err(Refusal::CallerRefused {
                    reason: "the request lacks the caller secret header (X-Ado-Proxy-Caller-Secret) \
                             or it is wrong",
                });
            }
            return Ok(true);
        }
        Ok(false)
    }
}
