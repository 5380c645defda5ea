//! The Redis backend, shared by replicas. Each check-and-write is one Lua
//! script, so it is atomic on the server; the connection manager
//! reconnects by itself after Redis restarts, and with sentinels the
//! master is found again after a failover (`redis_link`).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Script, Value};

use super::redis_link::{Link, SentinelSettings};
use super::{GENERATION_LEN, Key, Namespace, StoreError, Update, generation_of, hex, unhex};

/// Writes a record unless tombstoned (2) or a newer generation is stored (1).
const UPDATE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
local cur = redis.call('GET', KEYS[1])
if cur and (tonumber(string.sub(cur, 1, ARGV[4])) or 0) > tonumber(ARGV[3]) then return 1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 0
";
/// Ends a session: its record and access token go, a tombstone stays,
/// and the ending is logged (score: the server's time in ms; member: the
/// store hash and when it would have ended) for the other replicas, which
/// read the log at every check; entries older than ARGV[3] ms are trimmed.
const REMOVE: &str = r"
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], '', 'PX', ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[4], now, ARGV[2] .. ':' .. (now + tonumber(ARGV[1])))
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[4], ARGV[3])
return 1
";
/// Writes ARGV[1] (for ARGV[2] ms) if the key holds ARGV[4] (ARGV[3] = 1)
/// or nothing (ARGV[3] = 0).
const SWAP: &str = r"
local cur = redis.call('GET', KEYS[1])
if (ARGV[3] == '0' and not cur) or (ARGV[3] == '1' and cur == ARGV[4]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";
/// The periodic check: the epoch (set to ARGV[1] when missing) and the
/// endings logged since ARGV[2] (server ms), oldest first.
const CHECK: &str = r"
local e = redis.call('GET', KEYS[1])
if not e then
  redis.call('SET', KEYS[1], ARGV[1], 'NX')
  e = redis.call('GET', KEYS[1])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
local ends = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[4])
return {e, ends}
";

/// How long the shared log keeps an ending: far longer than the check
/// interval, so a replica that missed a few checks still reads it.
pub const ENDING_LOG_FOR: Duration = Duration::from_secs(300);
/// Endings read per check at most (the rest at the next one).
const ENDINGS_PER_CHECK: usize = 10_000;
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A Redis server.
pub struct Redis {
    link: Link,
    /// TLS without a client certificate: a handshake refused for the lack
    /// of one is explained by the keys that set it.
    tls_without_client_cert: bool,
    prefix: String,
    timeout: Duration,
    scripts: Box<Scripts>,
}

/// The Lua scripts, loaded once per connection by their hashes.
struct Scripts {
    update: Script,
    remove: Script,
    renew: Script,
    release: Script,
    check: Script,
    swap: Script,
}

/// Which server: an address, or the master sentinels name.
pub enum RedisAt<'a> {
    /// `redis://` or `rediss://` URL.
    Url(&'a str),
    /// `host:port` of each sentinel, the master's name, and the
    /// sentinels' own password.
    Sentinel {
        /// The sentinels.
        sentinels: &'a [String],
        /// The monitored master's name.
        master: &'a str,
        /// `session.redis_sentinel_password_file`'s content.
        password: Option<String>,
    },
}

/// What the Redis backend needs from the config.
pub struct RedisSettings<'a> {
    /// Where the server is.
    pub at: RedisAt<'a>,
    /// Overrides the URL's password (the master's, with sentinels).
    pub password: Option<String>,
    /// PEM CA certificates for `rediss://`, instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The proxy's client certificate and key (PEM), for a server that
    /// demands one.
    pub client_tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Prefix of every key.
    pub prefix: &'a str,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Time for one command.
    pub command_timeout: Duration,
}

impl Redis {
    /// A client that connects lazily: the proxy starts (not ready) while
    /// Redis is down and becomes ready when it answers.
    pub fn open(s: &RedisSettings<'_>) -> Result<Self, String> {
        // The redis crate builds its rustls config with the process-wide
        // provider: make it ring (an error means one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(s.connect_timeout))
            .set_response_timeout(Some(s.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let link = match &s.at {
            RedisAt::Url(url) => Link::fixed(Self::at_url(url, s, config)?),
            RedisAt::Sentinel {
                sentinels,
                master,
                password,
            } => Link::sentinel(sentinel_settings(sentinels, master, password, s)?, config)?,
        };
        let tls_without_client_cert = s.client_tls.is_none()
            && matches!(&s.at, RedisAt::Url(url) if url.trim_start().starts_with("rediss://"));
        Ok(Self {
            link,
            tls_without_client_cert,
            prefix: s.prefix.to_string(),
            timeout: s.command_timeout + s.connect_timeout,
            scripts: Box::new(Scripts {
                update: Script::new(UPDATE),
                remove: Script::new(REMOVE),
                renew: Script::new(RENEW),
                release: Script::new(RELEASE),
                check: Script::new(CHECK),
                swap: Script::new(SWAP),
            }),
        })
    }

    /// The connection manager of the server at `url`.
    fn at_url(
        url: &str,
        s: &RedisSettings<'_>,
        config: ConnectionManagerConfig,
    ) -> Result<ConnectionManager, String> {
        let mut info = url
            .trim()
            .into_connection_info()
            .map_err(|e| format!("session.redis_url: not usable ({})", e.category()))?;
        if let Some(p) = &s.password {
            let settings = info.redis_settings().clone().set_password(p.trim());
            info = info.set_redis_settings(settings);
        }
        let client = match (&s.ca_pem, &s.client_tls) {
            (None, None) => redis::Client::open(info)
                .map_err(|e| format!("session.redis_url: not usable ({})", e.category()))?,
            (root, client) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                    root_cert: root.clone(),
                },
            )
            .map_err(|e| {
                format!(
                    "session.redis_ca_file / redis_client_certificate_file / redis_client_key_file: \
                     not usable ({})",
                    e.category()
                )
            })?,
        };
        client
            .get_connection_manager_lazy(config)
            .map_err(|e| format!("session.redis_url: {}", e.category()))
    }

    fn key(&self, key: Key) -> String {
        key.to_redis(&self.prefix)
    }

    /// A key of the store itself (the epoch, the ending log).
    fn own(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs one command or script with the command timeout; with
    /// sentinels, once more on the master found again when the first
    /// cannot have been applied (see `redis_link`).
    async fn run<T: redis::FromRedisValue>(
        &self,
        f: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T> + Clone,
    ) -> Result<T, StoreError> {
        let attempt = async {
            let (mut conn, generation) = self.link.conn().await?;
            match f.clone()(&mut conn).await {
                Err(e) if self.link.after_failure(generation, &e).await => {
                    let (mut conn, _) = self.link.conn().await?;
                    f(&mut conn).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(v)) => Ok(v),
            // The error's kind and category only: a Redis error can echo
            // arguments, which are sealed values. A transport error says
            // why (a TLS alert, a refused connection), never a value.
            Ok(Err(e)) if e.is_io_error() => {
                let why: String = e.to_string().chars().take(200).collect();
                let hint = match self.tls_without_client_cert {
                    true if why.contains("alert") || why.contains("ertificate") => {
                        "; a server that demands a client certificate needs \
                         session.redis_client_certificate_file and session.redis_client_key_file"
                    }
                    _ => "",
                };
                Err(unavailable(format!("{} ({why}){hint}", e.category())))
            }
            Ok(Err(e)) => Err(unavailable(format!("{} ({:?})", e.category(), e.kind()))),
            Err(_) => Err(unavailable(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    pub(super) async fn get(&self, key: Key) -> Result<Option<Vec<u8>>, StoreError> {
        let k = self.key(key);
        self.run(async |c| redis::cmd("GET").arg(&k).query_async(c).await)
            .await
    }

    pub(super) async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ks: Vec<String> = keys.iter().map(|k| self.key(*k)).collect();
        self.run(async |c| redis::cmd("MGET").arg(&ks).query_async(c).await)
            .await
    }

    pub(super) async fn put(
        &self,
        key: Key,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let k = self.key(key);
        let ms = ms(ttl);
        self.run(async |c| {
            redis::cmd("SET")
                .arg(&k)
                .arg(&value)
                .arg("PX")
                .arg(ms)
                .query_async::<Value>(c)
                .await
        })
        .await
        .map(drop)
    }

    pub(super) async fn swap(
        &self,
        key: Key,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let k = self.key(key);
        let ms = ms(ttl);
        let (flag, old): (u8, &[u8]) = match expected {
            Some(e) => (1, e),
            None => (0, b""),
        };
        let n: i64 = self
            .run(async |c| {
                self.scripts
                    .swap
                    .key(&k)
                    .arg(&value)
                    .arg(ms)
                    .arg(flag)
                    .arg(old)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn update(
        &self,
        key: Key,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        let (k, tomb) = (self.key(key), self.key(key.with(Namespace::Tombstone)));
        let generation = generation_of(&value);
        let ms = ms(ttl);
        let code: i64 = self
            .run(async |c| {
                self.scripts
                    .update
                    .key(&k)
                    .key(&tomb)
                    .arg(&value)
                    .arg(ms)
                    .arg(generation)
                    .arg(GENERATION_LEN)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(match code {
            0 => Update::Written,
            1 => Update::Stale,
            _ => Update::Gone,
        })
    }

    pub(super) async fn remove(&self, key: Key, ttl: Duration) -> Result<(), StoreError> {
        let keys = [
            self.key(key),
            self.key(key.with(Namespace::Access)),
            self.key(key.with(Namespace::Tombstone)),
            self.own("endings"),
        ];
        let ms = ms(ttl);
        let hash = hex(&key.hash);
        let keep = ENDING_LOG_FOR.as_millis() as u64;
        self.run(async |c| {
            self.scripts
                .remove
                .key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .key(&keys[3])
                .arg(ms)
                .arg(&hash)
                .arg(keep)
                .invoke_async::<Value>(c)
                .await
        })
        .await
        .map(drop)
    }

    pub(super) async fn lease(
        &self,
        key: Key,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let k = self.key(key);
        let ms = ms(ttl);
        let v: Option<String> = self
            .run(async |c| {
                redis::cmd("SET")
                    .arg(&k)
                    .arg(holder)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(v.is_some())
    }

    pub(super) async fn renew(
        &self,
        key: Key,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let k = self.key(key);
        let ms = ms(ttl);
        let n: i64 = self
            .run(async |c| {
                self.scripts
                    .renew
                    .key(&k)
                    .arg(holder)
                    .arg(ms)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn release(&self, key: Key, holder: &str) -> Result<(), StoreError> {
        let k = self.key(key);
        self.run(async |c| {
            self.scripts
                .release
                .key(&k)
                .arg(holder)
                .invoke_async::<Value>(c)
                .await
        })
        .await
        .map(drop)
    }

    pub(super) async fn purge(&self) -> Result<u64, StoreError> {
        // Every key carries a TTL; Redis expires them.
        Ok(0)
    }

    pub(super) async fn check(
        &self,
        fresh_epoch: &str,
        since_ms: u64,
    ) -> Result<super::Checked, StoreError> {
        let _ = tokio::time::timeout(self.timeout, self.link.confirm()).await;
        let (epoch, log) = (self.key(super::EPOCH), self.own("endings"));
        let keep = ENDING_LOG_FOR.as_millis() as u64;
        let (e, ends): (Option<String>, Vec<(String, f64)>) = self
            .run(async |c| {
                self.scripts
                    .check
                    .key(&epoch)
                    .key(&log)
                    .arg(fresh_epoch)
                    .arg(since_ms)
                    .arg(keep)
                    .arg(ENDINGS_PER_CHECK)
                    .invoke_async(c)
                    .await
            })
            .await?;
        let mut out = super::Checked {
            epoch: e,
            endings: Vec::with_capacity(ends.len()),
            read_to_ms: since_ms,
            switched: self.link.take_switched(),
        };
        let full = ends.len() >= ENDINGS_PER_CHECK;
        for (member, score) in ends {
            out.read_to_ms = out.read_to_ms.max(score as u64);
            // Anything else in the log is not ours: skipped.
            let Some((h, until)) = member.split_once(':') else {
                continue;
            };
            if let (Some(h), Ok(until)) = (unhex(h), until.parse::<u64>()) {
                out.endings.push((h, until));
            }
        }
        if full && out.read_to_ms == since_ms {
            // A full batch within one millisecond: move on, or the next
            // check would read the same batch again.
            out.read_to_ms += 1;
        }
        Ok(out)
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.run(async |c| redis::cmd("PING").query_async::<Value>(c).await)
            .await
            .map(drop)
    }
}

/// The sentinels' and the master's connection settings.
fn sentinel_settings(
    sentinels: &[String],
    master: &str,
    password: &Option<String>,
    s: &RedisSettings<'_>,
) -> Result<SentinelSettings, String> {
    let sentinels = sentinels
        .iter()
        .map(|a| {
            let info = format!("redis://{}", a.trim())
                .as_str()
                .into_connection_info()
                .map_err(|e| {
                    format!(
                        "session.redis_sentinels: {a:?} is not usable ({})",
                        e.category()
                    )
                })?;
            Ok(match password {
                Some(p) => {
                    let settings = info.redis_settings().clone().set_password(p.trim());
                    info.set_redis_settings(settings)
                }
                None => info,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut node = redis::RedisConnectionInfo::default();
    if let Some(p) = &s.password {
        node = node.set_password(p.trim());
    }
    Ok(SentinelSettings {
        sentinels,
        master: master.to_string(),
        node,
    })
}

fn ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

fn unavailable(detail: String) -> StoreError {
    StoreError::Unavailable {
        backend: "redis",
        detail,
    }
}
