//! The embedded backend: one redb database file in the process.
//!
//! Why redb: pure Rust (no C toolchain, no SQLite build), ACID with
//! copy-on-write pages so a crash never leaves a torn record. It runs in
//! multi-writer mode, so `ado-auth-proxy login` can write beside the
//! running proxy; `<path>.lock` keeps a second proxy out.
//! Values are stored as `expiry (8 bytes, ms since the epoch) | value`;
//! expired ones read as absent and are deleted by [`Embedded::purge`].
//! redb is blocking, so every call runs on tokio's blocking pool.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::lease::Leases;
use super::{Clock, Key, Namespace, StoreError, Update, decide};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");

/// A redb file.
pub struct Embedded {
    db: Arc<Database>,
    path: PathBuf,
    pub(super) leases: Leases,
    clock: Clock,
    /// The proxy's claim on the file (`<path>.lock`), held while open.
    _owner: Option<std::fs::File>,
}

/// Why the database could not be opened (names the path and the fix).
#[derive(Debug, thiserror::Error)]
#[error("session.path: {0}")]
pub struct OpenFailed(pub String);

impl Embedded {
    /// Opens (or creates, mode 0600, in a 0700 directory) the database
    /// for a proxy: one proxy per file (`<path>.lock`), while short-lived
    /// tools such as `ado-auth-proxy login` may write to it meanwhile
    /// (redb's multi-writer mode).
    pub fn open(path: &Path) -> Result<Self, OpenFailed> {
        Self::open_as(path, true)
    }

    /// Opens the database beside a running proxy (`ado-auth-proxy login`).
    pub fn open_shared(path: &Path) -> Result<Self, OpenFailed> {
        Self::open_as(path, false)
    }

    fn open_as(path: &Path, owner: bool) -> Result<Self, OpenFailed> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            create_private_dir(dir).map_err(|e| {
                OpenFailed(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        create_private_file(path)
            .map_err(|e| OpenFailed(format!("cannot create {}: {e}", path.display())))?;
        let owner = if owner {
            let mut lock_path = path.as_os_str().to_os_string();
            lock_path.push(".lock");
            let lock_path = PathBuf::from(lock_path);
            create_private_file(&lock_path)
                .map_err(|e| OpenFailed(format!("cannot create {}: {e}", lock_path.display())))?;
            let file = OpenOptions::new()
                .append(true)
                .open(&lock_path)
                .map_err(|e| OpenFailed(format!("cannot open {}: {e}", lock_path.display())))?;
            if file.try_lock().is_err() {
                return Err(OpenFailed(format!(
                    "{} is open in another process (another ado-auth-proxy?); give each proxy \
                     its own session.path, or use store = \"redis\" to share sessions",
                    path.display()
                )));
            }
            Some(file)
        } else {
            None
        };
        let db = Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => OpenFailed(format!(
                    "{} is open in another process (another ado-auth-proxy?); give each proxy \
                 its own session.path, or use store = \"redis\" to share sessions",
                    path.display()
                )),
                other => OpenFailed(format!(
                    "{} is not a usable session database ({other}); move it away to start empty",
                    path.display()
                )),
            })?;
        let w = begin_write(&db).map_err(|e| OpenFailed(format!("{}: {e}", path.display())))?;
        w.open_table(TABLE)
            .map_err(|e| OpenFailed(format!("{}: {e}", path.display())))?;
        w.commit()
            .map_err(|e| OpenFailed(format!("{}: {e}", path.display())))?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
            leases: Leases::default(),
            clock: Clock::default(),
            _owner: owner,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its time is `clock` from now on (tests move it forward).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.leases = Leases::with_clock(clock.clone());
        self.clock = clock;
        self
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database, &Clock) -> Result<T, String> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let clock = self.clock.clone();
        match tokio::task::spawn_blocking(move || f(&db, &clock)).await {
            Ok(r) => r.map_err(unavailable),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }

    pub(super) async fn get(&self, key: Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.blocking(move |db, clock| {
            let r = db.begin_read().map_err(s)?;
            let t = r.open_table(TABLE).map_err(s)?;
            let v = t.get(key.to_bytes().as_slice()).map_err(s)?;
            Ok(v.and_then(|v| live(clock, v.value()).map(<[u8]>::to_vec)))
        })
        .await
    }

    pub(super) async fn put(
        &self,
        key: Key,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.blocking(move |db, clock| {
            let w = begin_write(db)?;
            {
                let mut t = w.open_table(TABLE).map_err(s)?;
                t.insert(
                    key.to_bytes().as_slice(),
                    stamped(clock, &value, ttl).as_slice(),
                )
                .map_err(s)?;
            }
            w.commit().map_err(s)
        })
        .await
    }

    pub(super) async fn put_many(
        &self,
        items: Vec<(Key, Vec<u8>, Duration)>,
    ) -> Result<(), StoreError> {
        self.blocking(move |db, clock| {
            let w = begin_write(db)?;
            {
                let mut t = w.open_table(TABLE).map_err(s)?;
                for (key, value, ttl) in &items {
                    t.insert(
                        key.to_bytes().as_slice(),
                        stamped(clock, value, *ttl).as_slice(),
                    )
                    .map_err(s)?;
                }
            }
            w.commit().map_err(s)
        })
        .await
    }

    pub(super) async fn update(
        &self,
        key: Key,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        self.blocking(move |db, clock| {
            let w = begin_write(db)?;
            let outcome;
            {
                let mut t = w.open_table(TABLE).map_err(s)?;
                let tomb = key.with(Namespace::Tombstone).to_bytes();
                let tombstoned = t
                    .get(tomb.as_slice())
                    .map_err(s)?
                    .is_some_and(|v| live(clock, v.value()).is_some());
                let current = t
                    .get(key.to_bytes().as_slice())
                    .map_err(s)?
                    .and_then(|v| live(clock, v.value()).map(<[u8]>::to_vec));
                outcome = decide(current.as_deref(), tombstoned, &value);
                if outcome == Update::Written {
                    t.insert(
                        key.to_bytes().as_slice(),
                        stamped(clock, &value, ttl).as_slice(),
                    )
                    .map_err(s)?;
                }
            }
            w.commit().map_err(s)?;
            Ok(outcome)
        })
        .await
    }

    pub(super) async fn remove(&self, key: Key, ttl: Duration) -> Result<(), StoreError> {
        self.blocking(move |db, clock| {
            let w = begin_write(db)?;
            {
                let mut t = w.open_table(TABLE).map_err(s)?;
                t.remove(key.to_bytes().as_slice()).map_err(s)?;
                t.remove(key.with(Namespace::Access).to_bytes().as_slice())
                    .map_err(s)?;
                t.insert(
                    key.with(Namespace::Tombstone).to_bytes().as_slice(),
                    stamped(clock, &[], ttl).as_slice(),
                )
                .map_err(s)?;
            }
            w.commit().map_err(s)
        })
        .await
    }

    pub(super) async fn purge(&self) -> Result<u64, StoreError> {
        self.leases.purge();
        self.blocking(move |db, clock| {
            let now = clock.now_ms();
            let w = begin_write(db)?;
            let mut removed = 0u64;
            {
                let mut t = w.open_table(TABLE).map_err(s)?;
                t.retain(|_, v| {
                    let keep = expiry(v) > now;
                    if !keep {
                        removed += 1;
                    }
                    keep
                })
                .map_err(s)?;
            }
            w.commit().map_err(s)?;
            Ok(removed)
        })
        .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db, _| {
            let r = db.begin_read().map_err(s)?;
            r.open_table(TABLE).map_err(s)?;
            Ok(())
        })
        .await
    }
}

/// A write transaction with quick repair: each commit also saves the
/// allocator state, so reopening after a crash (a SIGKILLed pod) does not
/// walk the whole file. Commits cost a little more; see README's figures.
fn begin_write(db: &Database) -> Result<redb::WriteTransaction, String> {
    let mut w = db.begin_write().map_err(s)?;
    w.set_quick_repair(true);
    Ok(w)
}

fn s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn unavailable(detail: String) -> StoreError {
    StoreError::Unavailable {
        backend: "embedded",
        detail,
    }
}

fn stamped(clock: &Clock, value: &[u8], ttl: Duration) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&clock.expiry_ms(ttl).to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn expiry(stored: &[u8]) -> u64 {
    stored
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// The value of an unexpired entry.
fn live<'a>(clock: &Clock, stored: &'a [u8]) -> Option<&'a [u8]> {
    (expiry(stored) > clock.now_ms()).then(|| &stored[8..])
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates `path` readable by the owner only, or tightens an existing one.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let file = opts.open(path)?;
        let mode = file.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the file was readable by others; setting mode 0600"
            );
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    {
        opts.open(path)?;
    }
    Ok(())
}
