//! How the Redis backend reaches its server: one address (the
//! connection manager reconnects by itself), or the master the sentinels
//! name, found again when a command says it is gone or demoted.
//!
//! After a failover the old master may still answer, as a replica: reads
//! work there and writes fail with `READONLY`. That, a refused
//! connection, or a dropped one makes the link ask the sentinels again
//! (once per failed connection however many commands saw it, and not
//! more often than [`REDISCOVER_MIN`]); the session store's periodic
//! check writes, so a demotion is noticed within its interval even when
//! no request writes. A command is sent again only when it cannot have
//! been applied (`READONLY`, a refused connection).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The sentinels are not asked again sooner than this after they
/// answered.
const REDISCOVER_MIN: Duration = Duration::from_millis(250);

/// The connection every command takes.
pub(super) struct Link {
    inner: std::sync::Arc<Inner>,
}

/// The link's state, shared with its watcher of the sentinels.
struct Inner {
    /// The current connection and its generation (0: none yet).
    current: std::sync::RwLock<(Option<ConnectionManager>, u64)>,
    /// With sentinels: the master's address it goes to.
    master_addr: std::sync::Mutex<Option<String>>,
    finder: Option<Box<Finder>>,
}

/// The sentinels and what a master connection needs.
struct Finder {
    sentinel: tokio::sync::Mutex<(Sentinel, Option<Instant>)>,
    /// Each sentinel, for the watcher's subscription.
    sentinels: Vec<redis::ConnectionInfo>,
    master: String,
    node: SentinelNodeConnectionInfo,
    config: ConnectionManagerConfig,
    /// Masters found so far (for the log).
    found: AtomicU64,
}

/// Where the sentinels are and who the master is.
pub(super) struct SentinelSettings {
    /// `redis://host:port` of each sentinel, with their password.
    pub sentinels: Vec<redis::ConnectionInfo>,
    /// The monitored master's name.
    pub master: String,
    /// The master's password and database.
    pub node: redis::RedisConnectionInfo,
}

impl Link {
    /// A link to one address.
    pub(super) fn fixed(conn: ConnectionManager) -> Self {
        Self {
            inner: std::sync::Arc::new(Inner {
                current: std::sync::RwLock::new((Some(conn), 1)),
                master_addr: std::sync::Mutex::new(None),
                finder: None,
            }),
        }
    }

    /// A link to the master `s` names; nobody is asked before the first
    /// command. Inside a runtime, a watcher follows the sentinels'
    /// announcements of a new master.
    pub(super) fn sentinel(
        s: SentinelSettings,
        config: ConnectionManagerConfig,
    ) -> Result<Self, String> {
        let link = Self::sentinel_unwatched(s, config)?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch(std::sync::Arc::downgrade(&link.inner)));
        }
        Ok(link)
    }

    fn sentinel_unwatched(
        s: SentinelSettings,
        config: ConnectionManagerConfig,
    ) -> Result<Self, String> {
        let sentinel = Sentinel::build(s.sentinels.clone())
            .map_err(|e| format!("session.redis_sentinels: not usable ({})", e.category()))?;
        Ok(Self {
            inner: std::sync::Arc::new(Inner {
                current: std::sync::RwLock::new((None, 0)),
                master_addr: std::sync::Mutex::new(None),
                finder: Some(Box::new(Finder {
                    sentinels: s.sentinels,
                    sentinel: tokio::sync::Mutex::new((sentinel, None)),
                    master: s.master,
                    node: SentinelNodeConnectionInfo::default().set_redis_connection_info(s.node),
                    config,
                    found: AtomicU64::new(0),
                })),
            }),
        })
    }

    /// See [`Inner::conn`].
    pub(super) async fn conn(&self) -> Result<(ConnectionManager, u64), RedisError> {
        self.inner.conn().await
    }

    /// See [`Inner::after_failure`].
    pub(super) async fn after_failure(&self, generation: u64, e: &RedisError) -> bool {
        self.inner.after_failure(generation, e).await
    }

    /// See [`Inner::confirm`].
    pub(super) async fn confirm(&self) {
        self.inner.confirm().await
    }
}

/// Follows the sentinels' `+switch-master` announcements, so the link
/// moves to a new master the moment one is chosen (before the old one is
/// demoted, which takes Sentinel seconds), until the link is dropped.
async fn watch(inner: std::sync::Weak<Inner>) {
    use futures_util::StreamExt;
    loop {
        let Some(sentinels) = inner
            .upgrade()
            .and_then(|i| i.finder.as_ref().map(|f| f.sentinels.clone()))
        else {
            return;
        };
        for info in sentinels {
            let Ok(client) = redis::Client::open(info) else {
                continue;
            };
            let Ok(Ok(mut pubsub)) =
                tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub()).await
            else {
                continue;
            };
            if pubsub.subscribe("+switch-master").await.is_err() {
                continue;
            }
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let Some(link) = inner.upgrade() else {
                    return;
                };
                let said: String = msg.get_payload().unwrap_or_default();
                let ours = link
                    .finder
                    .as_ref()
                    .is_some_and(|f| said.split(' ').next() == Some(f.master.as_str()));
                if ours {
                    link.confirm().await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Inner {
    /// The connection for one command and its generation; with
    /// sentinels, the master is found first when none is known.
    async fn conn(&self) -> Result<(ConnectionManager, u64), RedisError> {
        if let (Some(conn), generation) = self.snapshot() {
            return Ok((conn, generation));
        }
        self.rediscover(0).await?;
        match self.snapshot() {
            (Some(conn), generation) => Ok((conn, generation)),
            (None, _) => Err(RedisError::from((
                ErrorKind::Io,
                "no Redis master is known yet",
            ))),
        }
    }

    /// A command on the connection of `generation` failed with `e`:
    /// whether to send it again, on the master found again (only when it
    /// cannot have been applied).
    async fn after_failure(&self, generation: u64, e: &RedisError) -> bool {
        if self.finder.is_none() {
            return false;
        }
        let demoted = e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly);
        let refused = e.is_connection_refusal();
        if !(demoted || refused || e.is_connection_dropped() || e.is_io_error()) {
            return false;
        }
        match self.rediscover(generation).await {
            Ok(()) => demoted || refused,
            Err(_) => false,
        }
    }

    /// The store's periodic check: with sentinels, whether they still
    /// name the master this link goes to; when they name another (an
    /// orderly failover, before the old master is demoted and refuses
    /// writes), the link moves there now.
    async fn confirm(&self) {
        if self.finder.is_none() {
            return;
        }
        let (_, generation) = self.snapshot();
        let _ = self.find_boxed(generation, true).await;
    }

    fn snapshot(&self) -> (Option<ConnectionManager>, u64) {
        let guard = match self.current.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        (guard.0.clone(), guard.1)
    }

    /// Asks the sentinels for the master, unless the connection of
    /// `failed` was replaced meanwhile or they were asked a moment ago.
    async fn rediscover(&self, failed: u64) -> Result<(), RedisError> {
        self.find_boxed(failed, false).await
    }

    /// [`Self::find`] behind a pointer: the sentinel client's futures are
    /// deep, and every request's future would otherwise carry their type.
    fn find_boxed(
        &self,
        failed: u64,
        keep_same: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), RedisError>> + Send + '_>> {
        Box::pin(self.find(failed, keep_same))
    }

    /// Asks the sentinels; replaces the connection unless `keep_same`
    /// and they name the master it already goes to.
    async fn find(&self, failed: u64, keep_same: bool) -> Result<(), RedisError> {
        let Some(f) = &self.finder else {
            return Ok(());
        };
        let mut guard = f.sentinel.lock().await;
        let (current, generation) = self.snapshot();
        if generation != failed && current.is_some() {
            return Ok(());
        }
        let (sentinel, asked) = &mut *guard;
        if current.is_some() && asked.is_some_and(|at| at.elapsed() < REDISCOVER_MIN) {
            return Ok(());
        }
        *asked = Some(crate::clock::real_instant());
        let client = match sentinel.async_master_for(&f.master, Some(&f.node)).await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(
                    master = %f.master,
                    error = %format!("{} ({:?})", e.category(), e.kind()),
                    "the Redis sentinels named no usable master; asking again at the next command"
                );
                return Err(e);
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        {
            let mut known = match self.master_addr.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if keep_same && current.is_some() && known.as_deref() == Some(addr.as_str()) {
                return Ok(());
            }
            *known = Some(addr.clone());
        }
        let conn = client.get_connection_manager_lazy(f.config.clone())?;
        let n = f.found.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            master = %f.master,
            address = %addr,
            found = n,
            "the Redis sentinels named the master"
        );
        let mut w = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *w = (Some(conn), w.1 + 1);
        Ok(())
    }
}
