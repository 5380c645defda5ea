//! The age of the app's client secret files, read at every scrape from
//! their modification time: legacy Azure DevOps OAuth secrets expire 60
//! days after they are created, so an alert on the age warns before the
//! sign-ins stop.

use std::path::PathBuf;
use std::sync::Mutex;

use prometheus::{IntGaugeVec, Opts, Registry};

/// `ado_proxy_client_secret_age_seconds{slot}`.
pub struct SecretAges {
    gauge: IntGaugeVec,
    files: Mutex<Vec<(&'static str, PathBuf)>>,
}

// === impl SecretAges ===

impl SecretAges {
    /// Registers the family into `registry`; it has series once files
    /// are watched.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "ado_proxy_client_secret_age_seconds",
                "Legacy Azure DevOps OAuth (whose secrets expire 60 days after they are \
                 created): seconds since each client secret file (slot current: \
                 auth.client_secret_file, next: auth.client_secret_next_file) was written.",
            ),
            &["slot"],
        )?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(Self {
            gauge,
            files: Mutex::new(Vec::new()),
        })
    }

    /// Reports the age of these (slot, file) pairs from now on.
    pub fn watch(&self, files: Vec<(&'static str, PathBuf)>) {
        if let Ok(mut f) = self.files.lock() {
            *f = files;
        }
    }

    /// Reads the files' ages; called before every scrape.
    pub fn before_scrape(&self) {
        let Ok(files) = self.files.lock() else {
            return;
        };
        for (slot, path) in files.iter() {
            let age = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| crate::clock::real_wall().duration_since(t).ok());
            match age {
                Some(age) => self
                    .gauge
                    .with_label_values(&[slot])
                    .set(age.as_secs() as i64),
                // Unreadable: no value rather than a wrong one.
                None => {
                    let _ = self.gauge.remove_label_values(&[slot]);
                }
            }
        }
    }
}
