//! A personal access token from a file (re-read when it changes) or from
//! the environment, sent as `Basic base64(":" + pat)`.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

use super::IdentityError;
use crate::config::PatSourcePlan;

/// How often, at most, the file's metadata is checked for a change.
const RECHECK_MS: u64 = 1000;

/// The token source.
pub struct PatSource {
    file: Option<PatFile>,
    current: RwLock<HeaderValue>,
}

struct PatFile {
    path: PathBuf,
    started: Instant,
    /// Milliseconds since `started` after which the file is checked again.
    next_check_ms: AtomicU64,
    /// (modified time, length) of the version loaded now.
    version: RwLock<(Option<SystemTime>, u64)>,
}

// === impl PatSource ===

impl PatSource {
    /// Reads the token from `pat_file` or the `pat` value.
    pub fn from_plan(plan: &PatSourcePlan) -> Result<Self, IdentityError> {
        if let Some(path) = &plan.file {
            let (value, version) = read(path)?;
            return Ok(Self {
                file: Some(PatFile {
                    path: path.clone(),
                    started: crate::clock::real_instant(),
                    next_check_ms: AtomicU64::new(RECHECK_MS),
                    version: RwLock::new(version),
                }),
                current: RwLock::new(value),
            });
        }
        let pat = plan
            .value
            .as_ref()
            .ok_or_else(|| IdentityError::PatUnavailable("no pat_file and no pat".into()))?;
        Ok(Self {
            file: None,
            current: RwLock::new(basic(pat.expose())?),
        })
    }

    /// The header value to send; picks up a changed file within a second.
    pub fn header(&self) -> Result<HeaderValue, IdentityError> {
        if let Some(file) = &self.file {
            file.maybe_reload(&self.current);
        }
        self.current
            .read()
            .map(|v| v.clone())
            .map_err(|_| IdentityError::PatUnavailable("lock poisoned".into()))
    }
}

impl PatFile {
    fn maybe_reload(&self, current: &RwLock<HeaderValue>) {
        let now = self.started.elapsed().as_millis() as u64;
        let due = self.next_check_ms.load(Ordering::Relaxed);
        // One caller per interval wins the check; the others use the cache.
        if now < due
            || self
                .next_check_ms
                .compare_exchange(due, now + RECHECK_MS, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let Ok(meta) = std::fs::metadata(&self.path) else {
            tracing::warn!(path = %self.path.display(), "PAT file cannot be read; keeping the token loaded before");
            return;
        };
        let seen = (meta.modified().ok(), meta.len());
        if self.version.read().map(|v| *v == seen).unwrap_or(false) {
            return;
        }
        match read(&self.path) {
            Ok((value, version)) => {
                if let (Ok(mut cur), Ok(mut ver)) = (current.write(), self.version.write()) {
                    *cur = value;
                    *ver = version;
                    tracing::info!(path = %self.path.display(), "PAT file changed; using the new token");
                }
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "PAT file changed but is unusable; keeping the token loaded before");
            }
        }
    }
}

type Version = (Option<SystemTime>, u64);

fn read(path: &Path) -> Result<(HeaderValue, Version), IdentityError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| IdentityError::PatUnavailable(format!("{}: {e}", path.display())))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| IdentityError::PatUnavailable(format!("{}: {e}", path.display())))?;
    Ok((basic(text.trim())?, (meta.modified().ok(), meta.len())))
}

fn basic(pat: &str) -> Result<HeaderValue, IdentityError> {
    if pat.is_empty() {
        return Err(IdentityError::PatUnavailable("the token is empty".into()));
    }
    let encoded = STANDARD.encode(format!(":{pat}"));
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .map_err(|_| IdentityError::PatUnavailable("the token has invalid characters".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_encodes_colon_and_token() {
        let v = basic("abc").unwrap();
        // base64(":abc") == "OmFiYw=="
        assert_eq!(v.to_str().unwrap(), "Basic OmFiYw==");
        assert!(v.is_sensitive());
        assert!(basic("").is_err());
    }
}
