//! Secrets read from a mounted Kubernetes Secret directory (one key, one
//! file): the two secret slots of an app registration, and the named
//! caller secrets of modes `pat` and `service`.

use std::path::PathBuf;

/// When `path` is a directory (a mounted Kubernetes Secret with one key
/// per secret slot), its files by name, skipping hidden ones (the
/// `..data` links Kubernetes adds): one or two, the app's two slots.
/// `None` for a plain file.
pub fn secret_slots(path: &std::path::Path) -> Result<Option<Vec<PathBuf>>, String> {
    if !path.is_dir() {
        return Ok(None);
    }
    let files = visible_files(path)?;
    match files.len() {
        1 | 2 => Ok(Some(files)),
        0 => Err(format!(
            "the directory {} holds no secret file; write the client secret into a file there",
            path.display()
        )),
        n => Err(format!(
            "the directory {} holds {n} files, and an app has two secret slots: keep the \
             current and the next secret only",
            path.display()
        )),
    }
}

/// The files of a mounted Secret directory, sorted: hidden entries (the
/// `..data` links Kubernetes adds) and anything but files skipped.
fn visible_files(dir: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list the directory {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// At most this many caller secrets are read from a directory.
pub const MAX_CALLER_SECRETS: usize = 32;

/// The shortest caller secret: a shorter one (written after start)
/// admits nobody.
pub const MIN_CALLER_SECRET: usize = 16;

/// The caller secrets at `path`, by name: the file itself (named by its
/// file name), or, for a directory, each file in it (hidden ones such as
/// Kubernetes' `..data` skipped; a link only when it stays inside the
/// directory, as Kubernetes' own links do), sorted by name.
pub fn caller_secrets(path: &std::path::Path) -> Result<Vec<(String, PathBuf)>, String> {
    let named = |p: PathBuf| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (name, p)
    };
    if !path.is_dir() {
        return Ok(vec![named(path.to_path_buf())]);
    }
    let home = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot resolve the directory {}: {e}", path.display()))?;
    let inside = |p: &PathBuf| std::fs::canonicalize(p).is_ok_and(|real| real.starts_with(&home));
    let files: Vec<(String, PathBuf)> = visible_files(path)?
        .into_iter()
        .filter(inside)
        .map(named)
        .collect();
    match files.len() {
        0 => Err(format!(
            "the directory {} holds no secret file; write each caller's secret into a file \
             named after the caller",
            path.display()
        )),
        n if n > MAX_CALLER_SECRETS => Err(format!(
            "the directory {} holds {n} files; at most {MAX_CALLER_SECRETS} caller secrets",
            path.display()
        )),
        _ => Ok(files),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_secrets_are_a_file_or_a_directory_of_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("caller-secret");
        std::fs::write(&one, "x").unwrap();
        assert_eq!(caller_secrets(&one).unwrap()[0].0, "caller-secret");
        let many = dir.path().join("callers");
        std::fs::create_dir(&many).unwrap();
        assert!(
            caller_secrets(&many)
                .unwrap_err()
                .contains("holds no secret file")
        );
        for name in ["dashboard", "ci", "..data", ".hidden"] {
            std::fs::write(many.join(name), "x").unwrap();
        }
        let names: Vec<String> = caller_secrets(&many)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["ci", "dashboard"]);
        for i in 0..MAX_CALLER_SECRETS {
            std::fs::write(many.join(format!("c{i}")), "x").unwrap();
        }
        assert!(caller_secrets(&many).unwrap_err().contains("at most 32"));
    }
}
