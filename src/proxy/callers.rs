//! Who may call a proxy that acts as a fixed identity (modes `pat` and
//! `service`): an address allowlist (`auth.allowed_client_cidrs`) and a
//! shared secret header (`auth.caller_secret_file`). Both optional; both
//! checked when configured. The secret header is removed before
//! forwarding.

use std::net::IpAddr;
use std::path::PathBuf;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::error::Error;

/// The header callers send the shared secret in.
pub const CALLER_SECRET_HEADER: &str = "x-ado-proxy-caller-secret";

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// The admission rules.
pub struct Callers {
    cidrs: Vec<Cidr>,
    secret_file: Option<PathBuf>,
}

impl Cidr {
    /// `10.0.0.0/8`, `fd00::/8`, or a single address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR such as \"10.0.0.0/8\""))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { net, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
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
    pub fn admit(&self, peer: IpAddr, headers: &mut HeaderMap) -> Result<(), Error> {
        let sent = headers.remove(CALLER_SECRET_HEADER);
        if !self.cidrs.is_empty() && !self.cidrs.iter().any(|c| c.contains(peer)) {
            return Err(Error::CallerRefused {
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
                return Err(Error::CallerRefused {
                    reason: "the request lacks the caller secret header (X-Ado-Proxy-Caller-Secret) \
                             or it is wrong",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_by_prefix_for_both_families() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(
            c.contains("::ffff:10.1.0.9".parse().unwrap()),
            "IPv4-mapped callers count as IPv4"
        );
        let one = Cidr::parse("192.168.1.5").unwrap();
        assert!(one.contains("192.168.1.5".parse().unwrap()));
        assert!(!one.contains("192.168.1.6".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
