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
    let files = match crate::config::caller_secrets(path) {
        Ok(files) => files,
        Err(why) => {
            warn_sometimes(&format!(
                "auth.caller_secret_file: {why}; every caller is refused"
            ));
            return None;
        }
    };
    let mut found = None;
    for (name, file) in files {
        let expected = std::fs::read_to_string(&file).unwrap_or_default();
        let expected = expected.trim();
        // One written after start is held to the rule of the load.
        let long = expected.len() >= crate::config::MIN_CALLER_SECRET;
        if !long && !expected.is_empty() {
            warn_sometimes(&format!(
                "auth.caller_secret_file: {} holds fewer than {} characters and admits nobody",
                file.display(),
                crate::config::MIN_CALLER_SECRET
            ));
        }
        let same = long && bool::from(sent.ct_eq(expected.as_bytes()));
        if same && found.is_none() {
            found = Some(name);
        }
    }
    found
}

/// Logs `what` at most once a minute: a broken secret directory is
/// seen by every request.
fn warn_sometimes(what: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = crate::clock::unix(crate::clock::real_wall());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!("{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callers(path: &std::path::Path) -> Callers {
        let auth = crate::config::AuthConfig {
            caller_secret_file: Some(path.to_path_buf()),
            ..Default::default()
        };
        Callers::from_config(&auth).unwrap().unwrap()
    }

    fn headers(secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CALLER_SECRET_HEADER, secret.parse().unwrap());
        h
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const LONG: &str = "0123456789abcdef0123456789abcdef";

    /// Validation demands 16 characters per caller secret, but a file
    /// added to the directory after start (the feature's stated use:
    /// "callers are added ... without a restart") is admitted with any
    /// non-empty secret, even one character.
    /// A caller file written after start is held to the 16 characters
    /// the load asks for.
    #[test]
    fn a_short_caller_file_added_after_start_admits_nobody() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ci"), LONG).unwrap();
        let c = callers(dir.path());
        // Later: a new caller's file, too short for validation.
        std::fs::write(dir.path().join("dashboard"), "x\n").unwrap();
        let admitted = c.admit(PEER, &mut headers("x"));
        assert!(
            admitted.is_err(),
            "a 1-character caller secret was admitted as {admitted:?}"
        );
    }

    /// One file too many added at run time refuses every caller (all the
    /// existing, valid ones too), with only the generic "lacks the caller
    /// secret or it is wrong" reason: the cause is never said.
    /// Past the limit the directory is refused whole (and the log says
    /// why, once a minute): fail closed, never guess which files count.
    #[test]
    fn a_thirty_third_caller_file_refuses_every_caller() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ci"), LONG).unwrap();
        let c = callers(dir.path());
        assert_eq!(
            c.admit(PEER, &mut headers(LONG)).unwrap().as_deref(),
            Some("ci")
        );
        for i in 0..32usize {
            std::fs::write(dir.path().join(format!("c{i:02}")), format!("{LONG}{i}")).unwrap();
        }
        let r = c.admit(PEER, &mut headers(LONG));
        assert!(r.is_err(), "{r:?}");
    }

    /// A symlink in the directory to any file outside it counts as a
    /// caller secret: e.g. the proxy's own PAT (or client secret) placed
    /// or linked beside the caller secrets is a valid caller secret.
    /// A link out of the directory is no caller secret (Kubernetes' own
    /// links, into `..data`, stay inside and count).
    #[test]
    fn a_link_out_of_the_directory_is_no_caller_secret() {
        let dir = tempfile::tempdir().unwrap();
        let callers_dir = dir.path().join("callers");
        std::fs::create_dir(&callers_dir).unwrap();
        std::fs::write(callers_dir.join("ci"), LONG).unwrap();
        let pat = dir.path().join("pat");
        std::fs::write(&pat, "patpatpatpatpatpatpatpatpatpat52").unwrap();
        std::os::unix::fs::symlink(&pat, callers_dir.join("zz-link")).unwrap();
        let r = c_admit(&callers_dir, "patpatpatpatpatpatpatpatpatpat52");
        assert!(
            r.is_err(),
            "the PAT, via a symlink, was admitted as caller {r:?}"
        );
        // As Kubernetes mounts a Secret: name -> ..data/name.
        let data = callers_dir.join("..2026_12_06");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("mounted"), LONG.repeat(2)).unwrap();
        std::os::unix::fs::symlink("..2026_12_06", callers_dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/mounted", callers_dir.join("mounted")).unwrap();
        let r = c_admit(&callers_dir, &LONG.repeat(2));
        assert_eq!(r.unwrap().as_deref(), Some("mounted"));
    }

    fn c_admit(dir: &std::path::Path, s: &str) -> Result<Option<String>, Refusal> {
        callers(dir).admit(PEER, &mut headers(s))
    }
}
