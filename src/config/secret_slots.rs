//! The two secret slots of an app registration, read from a mounted
//! Kubernetes Secret directory.

use std::path::PathBuf;

/// When `path` is a directory (a mounted Kubernetes Secret with one key
/// per secret slot), its files by name, skipping hidden ones (the
/// `..data` links Kubernetes adds): one or two, the app's two slots.
/// `None` for a plain file.
pub fn secret_slots(path: &std::path::Path) -> Result<Option<Vec<PathBuf>>, String> {
    if !path.is_dir() {
        return Ok(None);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| format!("cannot list the directory {}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
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
