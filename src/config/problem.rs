//! A configuration mistake, as every part of loading and checking reports
//! it: the key, what is wrong and how to fix it, where the value came from.

use std::fmt;

/// One configuration mistake: which key, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `listen.address`; empty for whole-file problems.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Where the value came from (file or environment variable), if known.
    pub origin: Option<String>,
    /// About a file the key names (missing, unreadable, empty), which
    /// `check-config --no-files` does not look at.
    pub file: bool,
}

/// Every problem found while loading; never empty.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

// === impl Problem ===

impl Problem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            origin: None,
            file: false,
        }
    }

    /// The same problem, marked as about a file's presence or contents.
    pub fn about_file(mut self) -> Self {
        self.file = true;
        self
    }

    pub(super) fn with_origin(mut self, origin: Option<String>) -> Self {
        self.origin = origin;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.key, self.message)?;
        }
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
