//! Host names as clients write them in `Host` (and `:authority`):
//! parsing and the comparisons the DNS-rebinding check needs. A leaf:
//! used by config validation and by the proxy.

use std::net::IpAddr;

/// A parsed `host[:port]`, lowercased, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName {
    /// The name, or the address without brackets.
    pub name: String,
    /// The port, when written.
    pub port: Option<u16>,
    /// Whether `name` is an IP address literal.
    pub is_ip: bool,
}

// === impl HostName ===

impl HostName {
    /// Parses `name`, `name:port`, `1.2.3.4:port` or `[::1]:port`; `None`
    /// for anything else (schemes, paths, user info, odd characters).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.is_empty() || s.len() > 255 {
            return None;
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?.parse().ok()?),
            };
            let ip: std::net::Ipv6Addr = v6.parse().ok()?;
            return Some(Self {
                name: ip.to_string(),
                port,
                is_ip: true,
            });
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
                None => (s, None),
            }
        };
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Self {
                name: ip.to_string(),
                port,
                is_ip: true,
            });
        }
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            && !host.starts_with('.')
            && !host.contains("..");
        valid.then_some(Self {
            name: host,
            port,
            is_ip: false,
        })
    }

    /// `localhost` or a name below it (RFC 6761: always loopback).
    pub fn is_localhost(&self) -> bool {
        self.name == "localhost" || self.name.ends_with(".localhost")
    }

    /// Whether `self` (what a client sent) is what `allowed` names: the
    /// same name, and the same port when `allowed` has one.
    pub fn matches(&self, allowed: &HostName) -> bool {
        self.name == allowed.name && allowed.port.is_none_or(|p| self.port == Some(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_clients_send_and_refuses_the_rest() {
        let h = |s: &str| HostName::parse(s).map(|h| (h.name, h.port, h.is_ip));
        assert_eq!(
            h("LocalHost:8080"),
            Some(("localhost".into(), Some(8080), false))
        );
        assert_eq!(
            h("proxy.example."),
            Some(("proxy.example".into(), None, false))
        );
        assert_eq!(h("127.0.0.1:1"), Some(("127.0.0.1".into(), Some(1), true)));
        assert_eq!(h("[::1]:8080"), Some(("::1".into(), Some(8080), true)));
        assert_eq!(h("[::1]"), Some(("::1".into(), None, true)));
        for bad in [
            "",
            "http://x",
            "x/y",
            "a@b",
            "x:99999",
            "x:",
            "[::1",
            "[zz]:1",
            "a b",
            ".x",
            "a..b",
            "é.example",
        ] {
            assert!(HostName::parse(bad).is_none(), "{bad}");
        }
        let svc = HostName::parse("svc.ns:8080").unwrap();
        assert!(HostName::parse("svc.ns:8080").unwrap().matches(&svc));
        assert!(!HostName::parse("svc.ns:9090").unwrap().matches(&svc));
        let any_port = HostName::parse("svc.ns").unwrap();
        assert!(HostName::parse("SVC.ns:1").unwrap().matches(&any_port));
        assert!(HostName::parse("a.localhost").unwrap().is_localhost());
        assert!(
            !HostName::parse("localhost.evil.com")
                .unwrap()
                .is_localhost()
        );
    }
}
