//! Getting a shared store that lost its data back (a Redis restarted
//! empty, flushed, or failed over to an empty copy), and the periodic check
//! that notices it: endings are put back first, cached sessions
//! [`RESTORE_SETTLE`] later, token lists rebuilt; meanwhile lookups of
//! sessions not held answer "try again shortly".

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::{RESTORE_SETTLE, RESTORING, Sessions};
use crate::metrics::StoreOp;
use crate::session::Session;
use crate::session::backend::{Key, Namespace, StoreError, Update};

/// Where getting a store that lost its data back stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restore {
    /// Nothing to do.
    Idle,
    /// Remembered endings still to be put back (since the loss was seen).
    Endings(Instant),
    /// Endings are back; cached sessions follow after the settle time.
    Sessions(Instant),
}

/// The store's epoch as last seen, and the restore in progress.
pub(super) struct Epoch {
    pub(super) known: Option<String>,
    pub(super) restore: Restore,
}

// === impl Sessions ===

impl Sessions {
    /// Fails (503) while a store that lost its data is being restored, or
    /// when one look at it shows it just did: token lists are incomplete
    /// until then, so no token is created, counted or revoked on them.
    pub async fn lists_ready(&self) -> Result<(), StoreError> {
        if self.shared() && (self.restoring() || self.observe().await?) {
            return Err(self.restoring_error());
        }
        Ok(())
    }

    pub(super) fn restoring_error(&self) -> StoreError {
        StoreError::Unavailable {
            backend: self.backend.name(),
            detail: "restoring sessions after the store lost its data".into(),
        }
    }

    /// The epoch this replica knows (from its last check); `None` before
    /// its first.
    pub(super) fn known_epoch(&self) -> Option<String> {
        self.epoch.lock().ok().and_then(|e| e.known.clone())
    }

    /// Whether a store that lost its data is being given it back.
    pub(super) fn restoring(&self) -> bool {
        self.epoch
            .lock()
            .map(|e| e.restore != Restore::Idle)
            .unwrap_or(false)
    }

    /// Asks the store whether it answers, learns the endings other
    /// replicas logged, and notices a store that lost its data (then puts
    /// the endings back, and the cached sessions after [`RESTORE_SETTLE`]);
    /// when it answers again after a failure, writes back what it may have
    /// missed. Returns whether it is up.
    pub async fn check(&self) -> bool {
        if let Err(e) = self.observe().await {
            tracing::debug!(error = %e, "session store check failed");
            return false;
        }
        if self.restore_step().await.is_err() {
            return false;
        }
        if !self.announced.swap(true, Ordering::AcqRel) {
            // The start-up log's last word on the store: it answers.
            tracing::info!(store = self.backend.name(), "the session store answers");
        }
        if self.is_up() {
            return true;
        }
        let restoring = self.restoring();
        let written = if restoring {
            // The restore writes everything back, endings first.
            Ok(0)
        } else {
            self.flush().await
        };
        match written {
            Ok(n) => {
                tracing::info!(
                    store = self.backend.name(),
                    sessions = n,
                    "session store answers again{}",
                    if restoring {
                        "; restoring what it lost"
                    } else {
                        "; cached sessions written back"
                    }
                );
                self.up.store(true, Ordering::Release);
                self.metrics.store.up.set(1);
                true
            }
            Err(_) => false,
        }
    }

    /// One look at the store (Redis: its epoch and the ending log; the
    /// others: a ping). Starts a restore when the epoch changed. Returns
    /// whether a restore is under way.
    pub(super) async fn observe(&self) -> Result<bool, StoreError> {
        let fresh = crate::seal::random_id();
        let since = self.log_read_to.load(Ordering::Acquire);
        let seen = self
            .op(StoreOp::Ping, self.backend.check(&fresh, since))
            .await?;
        self.log_read_to
            .fetch_max(seen.read_to_ms, Ordering::AcqRel);
        self.learn(&seen.endings);
        let lost = match (&seen.epoch, self.epoch.lock()) {
            (Some(epoch), Ok(mut e)) => {
                let lost = e.known.as_ref().is_some_and(|k| k != epoch) || seen.switched;
                e.known = Some(epoch.clone());
                if lost {
                    e.restore = Restore::Endings(self.clock.now());
                }
                lost
            }
            _ => false,
        };
        if lost {
            self.data_lost(seen.switched);
            self.restore_step().await?;
        }
        Ok(self.restoring())
    }

    /// Takes endings other replicas logged: they are remembered, and
    /// their sessions leave this cache at once.
    pub(super) fn learn(&self, logged: &[([u8; 32], u64)]) {
        let wall = self.clock.wall();
        let new: HashSet<[u8; 32]> = logged
            .iter()
            .filter(|(hash, until)| {
                self.endings
                    .remember(*hash, UNIX_EPOCH + Duration::from_millis(*until), wall)
            })
            .map(|(hash, _)| *hash)
            .collect();
        if !new.is_empty() {
            self.cache.retain(|_, s| !new.contains(&s.store_key));
            self.gauge();
        }
    }

    /// The store lost its data: ids it had no record of may get one back,
    /// the log starts again, and the missed sign-outs are among the
    /// endings put back.
    pub(super) fn data_lost(&self, switched: bool) {
        self.absent.clear();
        self.log_read_to.store(0, Ordering::Release);
        if let Ok(mut q) = self.removals.lock() {
            q.clear();
        }
        self.metrics.store.data_losses.inc();
        let what = match switched {
            true => "the session store moved to a new master, which may lack the last writes",
            false => "the session store lost its data",
        };
        tracing::warn!(
            store = self.backend.name(),
            endings = self.endings.len(),
            sessions = self.cache.len(),
            "{what}: the sign-outs and revocations this replica knows go back first, its cached \
             sessions in {}; meanwhile sessions it does not hold wait",
            humantime::format_duration(RESTORE_SETTLE)
        );
    }

    /// Advances a restore: endings back first, then (after the settle
    /// time) every cached session that is not known to have ended, with
    /// its personal token listed again.
    pub(super) async fn restore_step(&self) -> Result<(), StoreError> {
        let state = self
            .epoch
            .lock()
            .map(|e| e.restore)
            .unwrap_or(Restore::Idle);
        match state {
            Restore::Idle => Ok(()),
            Restore::Endings(since) => {
                // Every replica's lookups wait until all have written back.
                let until = since + RESTORE_SETTLE + RESTORE_SETTLE;
                self.mark_restoring(until.saturating_duration_since(self.clock.now()))
                    .await?;
                let wall = self.clock.wall();
                for (i, (hash, until)) in self.endings.live(wall).into_iter().enumerate() {
                    if i > 0 && i % 1000 == 0 {
                        // Many endings take a while: the mark outlasts them.
                        self.mark_restoring(RESTORE_SETTLE + RESTORE_SETTLE).await?;
                    }
                    let ttl = until.duration_since(wall).unwrap_or(Duration::from_secs(1));
                    let key = Key::new(Namespace::Session, hash);
                    self.op(StoreOp::Remove, self.backend.remove(key, ttl))
                        .await?;
                }
                if let Ok(mut e) = self.epoch.lock()
                    && e.restore == Restore::Endings(since)
                {
                    e.restore = Restore::Sessions(since);
                }
                Ok(())
            }
            Restore::Sessions(since) if self.clock.now() >= since + RESTORE_SETTLE => {
                // However long putting the endings back took, the mark
                // stands while this replica writes its sessions back.
                self.mark_restoring(RESTORE_SETTLE).await?;
                let kept = self.write_back().await?;
                let listed = self.relist(&kept).await?;
                // A loss seen meanwhile started its own restore: keep it.
                if let Ok(mut e) = self.epoch.lock()
                    && e.restore == Restore::Sessions(since)
                {
                    e.restore = Restore::Idle;
                }
                tracing::info!(
                    store = self.backend.name(),
                    sessions = kept.len(),
                    tokens_listed = listed,
                    "session store restored: cached sessions written back"
                );
                Ok(())
            }
            Restore::Sessions(_) => Ok(()),
        }
    }

    /// Sets (or extends) the store-wide restore mark for at least `at_least`.
    pub(super) async fn mark_restoring(&self, at_least: Duration) -> Result<(), StoreError> {
        let ttl = at_least.max(RESTORE_SETTLE);
        self.op(
            StoreOp::Put,
            self.backend.put(RESTORING, b"1".to_vec(), ttl),
        )
        .await
    }

    /// Writes back missed sign-outs, then every cached session.
    pub(super) async fn flush(&self) -> Result<usize, StoreError> {
        let removals = self
            .removals
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        let mut failed = Vec::new();
        for (i, (key, until)) in removals.iter().enumerate() {
            let ttl = until
                .duration_since(self.clock.wall())
                .unwrap_or(Duration::from_secs(1));
            if self.backend.remove(*key, ttl).await.is_err() {
                failed.extend_from_slice(&removals[i..]);
                break;
            }
        }
        if !failed.is_empty() {
            if let Ok(mut q) = self.removals.lock() {
                q.extend(failed);
            }
            self.metrics.store.failed(StoreOp::Remove);
            return Err(StoreError::Unavailable {
                backend: self.backend.name(),
                detail: "write-back of sign-outs failed".into(),
            });
        }
        Ok(self.write_back().await?.len())
    }

    /// Writes every cached session back (generation-checked, so a newer
    /// copy or a tombstone wins), except those known to have ended;
    /// returns the ones written.
    pub(super) async fn write_back(&self) -> Result<Vec<Arc<Session>>, StoreError> {
        let wall = self.clock.wall();
        let sessions: Vec<Arc<Session>> = self.cache.iter().map(|e| e.value().clone()).collect();
        let mut kept = Vec::with_capacity(sessions.len());
        for s in sessions {
            if self.endings.contains(&s.store_key, wall) {
                self.forget(&s.key);
                continue;
            }
            let key = Key::new(Namespace::Session, s.store_key);
            let value = self.seal_record(key, &s.record());
            let ttl = s.remaining(self.idle, self.max);
            match self.backend.update(key, value, ttl).await {
                Ok(Update::Gone) => self.ended_elsewhere(&s),
                Ok(_) => kept.push(s),
                Err(e) => {
                    self.metrics.store.failed(StoreOp::Update);
                    return Err(e);
                }
            }
        }
        Ok(kept)
    }
}
