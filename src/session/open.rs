//! Opening the session store as `[session]` says: the backend, and the
//! sealer with its key file (made beside an embedded database when none
//! is configured, mode 0600).

use std::path::{Path, PathBuf};

use super::backend::{Backend, Embedded, Memory, Redis, RedisAt, RedisSettings};
use crate::clock::Clock;
use crate::config::{RedisTarget, SessionConfig, StorePlan};
use crate::seal::{self, Sealer};

/// The backend, keeping time by `clock` when in-process; `owner` is
/// false for a tool writing beside a running proxy (`ado-auth-proxy
/// login`).
pub(super) fn backend(
    config: &SessionConfig,
    plan: &StorePlan,
    clock: &Clock,
    owner: bool,
) -> Result<Backend, String> {
    Ok(match plan {
        StorePlan::Memory => Backend::Memory(Memory::with_clock(clock.clone())),
        StorePlan::Embedded if owner => Backend::Embedded(
            Embedded::open(&config.path)
                .map_err(|e| e.to_string())?
                .with_clock(clock.clone()),
        ),
        StorePlan::Embedded => Backend::Embedded(
            Embedded::open_shared(&config.path)
                .map_err(|e| e.to_string())?
                .with_clock(clock.clone()),
        ),
        StorePlan::Redis(target) => {
            let read = |key: &str, path: &Option<PathBuf>| match path {
                Some(p) => std::fs::read_to_string(p)
                    .map(Some)
                    .map_err(|e| format!("session.{key}: cannot read {}: {e}", p.display())),
                None => Ok(None),
            };
            let password = read("redis_password_file", &config.redis_password_file)?;
            let at = match target {
                RedisTarget::Url(url) => RedisAt::Url(url.expose()),
                RedisTarget::Sentinel { sentinels, master } => RedisAt::Sentinel {
                    sentinels,
                    master,
                    password: read(
                        "redis_sentinel_password_file",
                        &config.redis_sentinel_password_file,
                    )?,
                },
            };
            let ca_pem = match &config.redis_ca_file {
                Some(p) => Some(std::fs::read(p).map_err(|e| {
                    format!("session.redis_ca_file: cannot read {}: {e}", p.display())
                })?),
                None => None,
            };
            let bytes = |key: &str, path: &PathBuf| {
                std::fs::read(path)
                    .map_err(|e| format!("session.{key}: cannot read {}: {e}", path.display()))
            };
            let client_tls = match (
                &config.redis_client_certificate_file,
                &config.redis_client_key_file,
            ) {
                (Some(c), Some(k)) => Some((
                    bytes("redis_client_certificate_file", c)?,
                    bytes("redis_client_key_file", k)?,
                )),
                _ => None,
            };
            Backend::Redis(Redis::open(&RedisSettings {
                at,
                client_tls,
                password,
                ca_pem,
                prefix: &config.key_prefix,
                connect_timeout: config.redis_connect_timeout,
                command_timeout: config.redis_command_timeout,
            })?)
        }
    })
}

/// The sealer for records in `backend`.
pub(super) fn sealer(config: &SessionConfig, backend: &Backend) -> Result<Sealer, String> {
    Ok(match (&config.encryption_keys_file, backend) {
        // A configured file's mode is among the config's warnings.
        (Some(path), _) => {
            Sealer::from_file(path).map_err(|e| format!("session.encryption_keys_file: {e}"))?
        }
        (None, Backend::Embedded(db)) => {
            let path = default_key_file(db.path());
            load_or_create_keys(&path)?
        }
        (None, Backend::Memory(_)) => {
            let key = seal::generate_key().map_err(|_| "no random numbers".to_string())?;
            Sealer::new(&seal::parse_keys(&key).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?
        }
        (None, Backend::Redis(_)) => {
            return Err(
                "session.encryption_keys_file: missing: store \"redis\" needs a \
                        key file shared by every replica (ado-auth-proxy keygen > keys)"
                    .into(),
            );
        }
    })
}

/// The key file used when none is configured: beside the database.
fn default_key_file(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".keys");
    db.with_file_name(name)
}

/// Reads the key file, or creates it (mode 0600) with a new key.
fn load_or_create_keys(path: &Path) -> Result<Sealer, String> {
    if path.exists() {
        warn_if_shared(path);
        return Sealer::from_file(path).map_err(|e| format!(
            "session.encryption_keys_file (unset, so the key file beside the database is used): {e}"
        ));
    }
    let key = seal::generate_key().map_err(|_| "no random numbers".to_string())?;
    let text = format!(
        "# ado-auth-proxy session keys: base64, one per line; the first seals, all open.\n\
         # Rotate by adding a new key (ado-auth-proxy keygen) as the first line.\n{key}\n"
    );
    write_private(path, text.as_bytes()).map_err(|e| {
        format!(
            "session.encryption_keys_file (unset, so one is made beside the database): cannot \
             create {}: {e}",
            path.display()
        )
    })?;
    tracing::info!(
        path = %path.display(),
        "created a session key file (mode 0600); keep it with the database: without it \
         stored sessions cannot be opened"
    );
    Sealer::from_file(path).map_err(|e| {
        format!(
            "session.encryption_keys_file (unset, so the key file beside the database is used): {e}"
        )
    })
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Warns when the key file beside the database is readable by every user.
fn warn_if_shared(path: &Path) {
    if let Some(why) = crate::config::world_readable(path) {
        tracing::warn!(path = %path.display(), "{why}");
    }
}
