//! How the Redis backend reaches its server: one address (the
//! connection manager reconnects by itself), or the master the sentinels
//! name, followed through a failover.
//!
//! After `SENTINEL FAILOVER` the old master keeps taking writes for
//! seconds, until Sentinel demotes it, and its resync then drops them; so
//! the link moves as soon as it can tell: a watcher subscribed to every
//! sentinel's `+switch-master` goes to the announced master at once; the
//! store's periodic check asks the sentinels again (`confirm`); and
//! `READONLY`, a refused or a dropped connection make a command ask them
//! (once per failed connection however many commands saw it, and not
//! more often than [`REDISCOVER_MIN`]). A command is sent again only when
//! it cannot have been applied (`READONLY`, a refused connection). A move
//! to another master is reported to the store (`take_switched`), which
//! writes back what the new master may lack.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ErrorKind, IntoConnectionInfo, RedisError, ServerErrorKind};

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
    /// It moved from one master to another since the store last asked.
    switched: std::sync::atomic::AtomicBool,
    finder: Option<Box<Finder>>,
}

/// The sentinels and what a master connection needs.
struct Finder {
    sentinel: tokio::sync::Mutex<(Sentinel, Option<Instant>)>,
    /// Each sentinel, for the watcher's subscription.
    sentinels: Vec<redis::ConnectionInfo>,
    master: String,
    node: SentinelNodeConnectionInfo,
    /// The master's password and database, for a master announced by
    /// address.
    node_redis: redis::RedisConnectionInfo,
    config: ConnectionManagerConfig,
    /// Masters found so far (for the log).
    found: AtomicU64,
}

/// One question to the sentinels.
#[derive(Clone, Copy)]
struct Ask {
    /// The generation of the connection that failed (or is confirmed).
    failed: u64,
    /// Keep the connection when they name the master it goes to.
    keep_same: bool,
    /// Ask even when they were asked a moment ago (an announcement).
    now: bool,
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
                switched: std::sync::atomic::AtomicBool::new(false),
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
                switched: std::sync::atomic::AtomicBool::new(false),
                finder: Some(Box::new(Finder {
                    sentinels: s.sentinels,
                    sentinel: tokio::sync::Mutex::new((sentinel, None)),
                    master: s.master,
                    node: SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(s.node.clone()),
                    node_redis: s.node,
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
        self.inner.confirm(false).await
    }

    /// Whether it moved to another master since the last call.
    pub(super) fn take_switched(&self) -> bool {
        self.inner.switched.swap(false, Ordering::AcqRel)
    }
}

/// Follows every sentinel's `+switch-master` announcements, so the link
/// moves to a new master the moment one is chosen (before the old one is
/// demoted, which takes Sentinel seconds), until the link is dropped. One
/// subscription per sentinel: a silent one is covered by the others, and
/// each is renewed after [`QUIET_FOR`] without a word.
async fn watch(inner: std::sync::Weak<Inner>) {
    let Some(sentinels) = inner
        .upgrade()
        .and_then(|i| i.finder.as_ref().map(|f| f.sentinels.clone()))
    else {
        return;
    };
    for info in sentinels {
        tokio::spawn(watch_one(inner.clone(), info));
    }
}

/// A subscription that has heard nothing this long is opened again: a
/// connection that went silent would otherwise wait for ever.
const QUIET_FOR: Duration = Duration::from_secs(30);

async fn watch_one(inner: std::sync::Weak<Inner>, info: redis::ConnectionInfo) {
    use futures_util::StreamExt;
    loop {
        if inner.strong_count() == 0 {
            return;
        }
        let pubsub = match redis::Client::open(info.clone()) {
            Ok(client) => tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        if let Some(mut pubsub) = pubsub
            && pubsub.subscribe("+switch-master").await.is_ok()
        {
            let mut messages = pubsub.into_on_message();
            while let Ok(Some(msg)) = tokio::time::timeout(QUIET_FOR, messages.next()).await {
                let Some(link) = inner.upgrade() else {
                    return;
                };
                // `<name> <old ip> <old port> <new ip> <new port>`: go to
                // the new one at once (asking the sentinels again would
                // wait on a silent one), and confirm with them after.
                let said: String = msg.get_payload().unwrap_or_default();
                let words: Vec<&str> = said.split(' ').collect();
                let ours = link
                    .finder
                    .as_ref()
                    .is_some_and(|f| words.first() == Some(&f.master.as_str()));
                if ours {
                    if let [_, _, _, ip, port] = words[..]
                        && let Ok(port) = port.parse::<u16>()
                    {
                        link.move_to(ip, port);
                    }
                    link.confirm(true).await;
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
    /// `announced`: a sentinel said a new master was chosen, so it is
    /// asked even if it was a moment ago.
    async fn confirm(&self, announced: bool) {
        if self.finder.is_none() {
            return;
        }
        let (_, generation) = self.snapshot();
        let ask = Ask {
            failed: generation,
            keep_same: true,
            now: announced,
        };
        let _ = self.find_boxed(ask).await;
    }

    /// Goes to the master a sentinel announced at `ip:port`.
    fn move_to(&self, ip: &str, port: u16) {
        let Some(f) = &self.finder else {
            return;
        };
        let Ok(info) = (ip, port).into_connection_info() else {
            return;
        };
        let info = info.set_redis_settings(f.node_redis.clone());
        let Ok(conn) =
            redis::Client::open(info).and_then(|c| c.get_connection_manager_lazy(f.config.clone()))
        else {
            return;
        };
        let addr = format!("{ip}:{port}");
        if self.goes_to(&addr) {
            return;
        }
        tracing::info!(
            master = %f.master,
            address = %addr,
            "a Redis sentinel announced a new master"
        );
        self.install(addr, conn, None);
    }

    /// Whether the link goes to the master at `addr` already.
    fn goes_to(&self, addr: &str) -> bool {
        let known = match self.master_addr.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        known.as_deref() == Some(addr)
    }

    /// Makes `conn`, to the master at `addr`, the link's connection, unless
    /// the connection of generation `on` was replaced meanwhile (an
    /// answer older than an announcement); a move from one master to
    /// another is reported to the store. Whether it was installed.
    fn install(&self, addr: String, conn: ConnectionManager, on: Option<u64>) -> bool {
        let mut w = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if on.is_some_and(|generation| generation != w.1) {
            return false;
        }
        *w = (Some(conn), w.1 + 1);
        let mut known = match self.master_addr.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if known.as_deref().is_some_and(|k| k != addr) {
            self.switched.store(true, Ordering::Release);
        }
        *known = Some(addr);
        true
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
        self.find_boxed(Ask {
            failed,
            keep_same: false,
            now: false,
        })
        .await
    }

    /// [`Self::find`] behind a pointer: the sentinel client's futures are
    /// deep, and every request's future would otherwise carry their type.
    fn find_boxed(
        &self,
        ask: Ask,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), RedisError>> + Send + '_>> {
        Box::pin(self.find(ask))
    }

    /// Asks the sentinels; replaces the connection unless `keep_same`
    /// and they name the master it already goes to.
    async fn find(&self, ask: Ask) -> Result<(), RedisError> {
        let Ask {
            failed,
            keep_same,
            now,
        } = ask;
        let Some(f) = &self.finder else {
            return Ok(());
        };
        let mut guard = f.sentinel.lock().await;
        let (current, generation) = self.snapshot();
        if generation != failed && current.is_some() {
            return Ok(());
        }
        let (sentinel, asked) = &mut *guard;
        let recent = asked.is_some_and(|at| at.elapsed() < REDISCOVER_MIN);
        if current.is_some() && recent && !now {
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
        if self.snapshot().1 != generation
            || (keep_same && current.is_some() && self.goes_to(&addr))
        {
            return Ok(());
        }
        let conn = client.get_connection_manager_lazy(f.config.clone())?;
        if self.install(addr.clone(), conn, Some(generation)) {
            let n = f.found.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(
                master = %f.master,
                address = %addr,
                found = n,
                "the Redis sentinels named the master"
            );
        }
        Ok(())
    }
}
