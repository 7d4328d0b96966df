//! Redis cache that never fails its caller and never trusts what it reads: every error or
//! timeout is a miss (or a skipped write), counted, and the connection is re-established in
//! the background; every value is sealed with an HMAC under a per-deployment secret
//! ([`seal`]) and every value read back is checked, so an entry anyone else wrote is a miss,
//! counted as `rejected`.

mod rejections;
pub mod seal;

use prometheus::IntCounterVec;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use rejections::RejectionLog;
pub use seal::{CacheSecret, SecretError};
use seal::{Opened, Rejection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Why a cache could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The Redis URL is malformed.
    #[error("redis: {0}")]
    Url(#[from] redis::RedisError),
    /// The secret entries are sealed with.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Cache tuning.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Key prefix, so several meshes can share one Redis.
    pub prefix: String,
    /// Upper bound on any single cache operation.
    pub op_timeout: Duration,
    /// Minimum time between reconnection attempts while Redis is down.
    pub retry_interval: Duration,
    /// TTL for immutable items (bounded so Redis memory stays bounded).
    pub immutable_ttl: Duration,
    /// Secret every entry is sealed with; `None`: a random one for this cache's lifetime
    /// (entries are then shared with no other process).
    pub secret: Option<CacheSecret>,
    /// Least time between two warnings about rejected entries of one key kind.
    pub rejection_log_interval: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            prefix: "vm:".into(),
            op_timeout: Duration::from_millis(50),
            retry_interval: Duration::from_secs(1),
            immutable_ttl: Duration::from_secs(24 * 3600),
            secret: None,
            rejection_log_interval: Duration::from_secs(10),
        }
    }
}

/// Whether the cache is in use right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheState {
    /// Connected.
    Up,
    /// Configured but unreachable: every call is a miss.
    Degraded,
    /// No Redis URL configured.
    Disabled,
}

/// Counters a cache reports into: failures by operation, and lookups by kind and result.
#[derive(Clone)]
pub struct CacheMetrics {
    /// `vaultmesh_cache_errors_total{operation}`.
    pub errors: IntCounterVec,
    /// `vaultmesh_cache_lookups_total{kind,result}`; kind is the key's first segment
    /// (`receipt`, `tile`, `idem`, `checkpoint`), result `hit`, `miss` (absent, expired, or
    /// Redis failed) or `rejected` (present but not sealed for this key under this
    /// deployment's secret: tampered with, moved, truncated or replayed; also a miss).
    pub lookups: IntCounterVec,
}

impl CacheMetrics {
    /// Both counters, registered in `registry`.
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let errors = IntCounterVec::new(
            prometheus::Opts::new(
                "vaultmesh_cache_errors_total",
                "Redis cache operations that failed or timed out (served from Postgres instead)",
            ),
            &["operation"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        let lookups = IntCounterVec::new(
            prometheus::Opts::new(
                "vaultmesh_cache_lookups_total",
                "Redis cache lookups by key kind and result (hit, miss, or rejected: an entry \
                 that failed authentication, served from Postgres instead; a failure is a miss)",
            ),
            &["kind", "result"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        Ok(Self { errors, lookups })
    }
}

struct Inner {
    client: Option<redis::Client>,
    conn: Mutex<Option<ConnectionManager>>,
    last_attempt: Mutex<Option<Instant>>,
    opts: CacheOptions,
    secret: CacheSecret,
    metrics: Option<CacheMetrics>,
    degraded: std::sync::atomic::AtomicBool,
    rejections: RejectionLog,
}

/// A cheap-to-clone handle to the cache.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    /// A cache for `url` (`None` or empty disables it), counting failures and lookups in
    /// `metrics`. Connects lazily; fails only on a malformed URL or, without a configured
    /// secret, when no random one can be made.
    pub fn new(
        url: Option<&str>,
        opts: CacheOptions,
        metrics: Option<CacheMetrics>,
    ) -> Result<Self, CacheError> {
        let client = match url.filter(|u| !u.is_empty()) {
            Some(u) => Some(redis::Client::open(u)?),
            None => None,
        };
        let secret = match &opts.secret {
            Some(s) => s.clone(),
            None => CacheSecret::random()?,
        };
        let rejections = RejectionLog::new(opts.rejection_log_interval);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn: Mutex::new(None),
                last_attempt: Mutex::new(None),
                opts,
                secret,
                metrics,
                degraded: std::sync::atomic::AtomicBool::new(false),
                rejections,
            }),
        })
    }

    /// Current state.
    pub fn state(&self) -> CacheState {
        if self.inner.client.is_none() {
            CacheState::Disabled
        } else if self
            .inner
            .degraded
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            CacheState::Degraded
        } else {
            CacheState::Up
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.opts.prefix)
    }

    fn failed(&self, op: &str, err: &str) {
        self.inner
            .degraded
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(m) = &self.inner.metrics {
            m.errors.with_label_values(&[op]).inc();
        }
        tracing::debug!(op, error = err, "cache operation failed");
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        let client = self.inner.client.as_ref()?;
        let mut guard = self.inner.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Some(c.clone());
        }
        {
            let mut last = self.inner.last_attempt.lock().await;
            if let Some(t) = *last {
                if t.elapsed() < self.inner.opts.retry_interval {
                    return None;
                }
            }
            *last = Some(Instant::now());
        }
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(
                self.inner.opts.op_timeout.max(Duration::from_millis(200)),
            ))
            .set_response_timeout(Some(self.inner.opts.op_timeout))
            .set_number_of_retries(1);
        let attempt = tokio::time::timeout(
            self.inner.opts.op_timeout.max(Duration::from_millis(250)),
            ConnectionManager::new_with_config(client.clone(), cfg),
        )
        .await;
        match attempt {
            Ok(Ok(c)) => {
                self.inner
                    .degraded
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                *guard = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.failed("connect", &e.to_string());
                None
            }
            Err(_) => {
                self.failed("connect", "timeout");
                None
            }
        }
    }

    async fn run<T, F, Fut>(&self, op: &str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.inner.opts.op_timeout, f(conn)).await {
            Ok(Ok(v)) => {
                self.inner
                    .degraded
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(op, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(op, "timeout");
                None
            }
        }
    }

    fn count_lookups(&self, key: &str, tally: Tally) {
        if let (Some(m), Some(_)) = (&self.inner.metrics, &self.inner.client) {
            let kind = kind_of(key);
            m.lookups
                .with_label_values(&[kind, "hit"])
                .inc_by(tally.hits);
            m.lookups
                .with_label_values(&[kind, "miss"])
                .inc_by(tally.misses);
            if tally.rejected > 0 {
                m.lookups
                    .with_label_values(&[kind, "rejected"])
                    .inc_by(tally.rejected);
            }
        }
    }

    /// The value sealed in `entry`, read from `key` (unprefixed), if it is authentic and
    /// fresh; a rejection is logged (rate-limited) and tallied.
    fn open(
        &self,
        key: &str,
        entry: Option<Vec<u8>>,
        now_ms: u64,
        tally: &mut Tally,
    ) -> Option<Vec<u8>> {
        let Some(entry) = entry else {
            tally.misses += 1;
            return None;
        };
        match self
            .inner
            .secret
            .open_parts(&[&self.inner.opts.prefix, key], entry, now_ms)
        {
            Opened::Value(v) => {
                tally.hits += 1;
                Some(v)
            }
            Opened::Expired => {
                tally.misses += 1;
                None
            }
            Opened::Rejected(why) => {
                tally.rejected += 1;
                self.rejected(key, why);
                None
            }
        }
    }

    fn rejected(&self, key: &str, why: Rejection) {
        self.inner.rejections.record(kind_of(key), key, why);
    }

    /// The cached bytes for `key`, or `None` on a miss, any failure, or an entry that is not
    /// authentic.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let k = self.key(key);
        let got = self
            .run("get", |mut c| async move {
                c.get::<_, Option<Vec<u8>>>(k).await
            })
            .await
            .flatten();
        let mut tally = Tally::default();
        let value = self.open(key, got, seal::now_ms(), &mut tally);
        self.count_lookups(key, tally);
        value
    }

    /// Whether Redis answers a `PING` (updates [`Cache::state`]); false when disabled.
    pub async fn ping(&self) -> bool {
        self.run("ping", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .is_some()
    }

    /// Caches an immutable item (bounded by the immutable TTL). Best effort.
    pub async fn put(&self, key: &str, value: &[u8]) {
        let ttl = self.inner.opts.immutable_ttl;
        self.put_ttl(key, value, ttl).await;
    }

    /// Caches an item for `ttl` (whole seconds, at least one). Best effort.
    pub async fn put_ttl(&self, key: &str, value: &[u8], ttl: Duration) {
        let k = self.key(key);
        let secs = ttl.as_secs().max(1);
        let v = self.inner.secret.seal(&k, value, Duration::from_secs(secs));
        self.run("put", |mut c| async move {
            c.set_ex::<_, _, ()>(k, v, secs).await
        })
        .await;
    }

    /// The cached bytes for each key (one round trip), all misses on any failure; an entry
    /// that is not authentic is a miss.
    pub async fn get_many(&self, keys: &[String]) -> Vec<Option<Vec<u8>>> {
        if keys.is_empty() {
            return Vec::new();
        }
        let ks: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let got = self
            .run("get", |mut c| async move {
                redis::cmd("MGET")
                    .arg(&ks)
                    .query_async::<Vec<Option<Vec<u8>>>>(&mut c)
                    .await
            })
            .await;
        let found = match got {
            Some(v) if v.len() == keys.len() => v,
            _ => vec![None; keys.len()],
        };
        let now = seal::now_ms();
        let mut tally = Tally::default();
        let opened = keys
            .iter()
            .zip(found)
            .map(|(k, entry)| self.open(k, entry, now, &mut tally))
            .collect();
        self.count_lookups(&keys[0], tally);
        opened
    }

    /// Caches several immutable items in one round trip. Best effort.
    pub async fn put_many(&self, items: &[(String, Vec<u8>)]) {
        if items.is_empty() {
            return;
        }
        let secs = self.inner.opts.immutable_ttl.as_secs().max(1);
        let expires_at = seal::now_ms().saturating_add(secs.saturating_mul(1000));
        let mut pipe = redis::pipe();
        for (k, v) in items {
            let k = self.key(k);
            let sealed = self.inner.secret.seal_until(&k, v, expires_at);
            pipe.set_ex(k, sealed, secs).ignore();
        }
        self.run("put", |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await;
    }

    /// Removes an item. Best effort.
    pub async fn delete(&self, key: &str) {
        let k = self.key(key);
        self.run("delete", |mut c| async move { c.del::<_, ()>(k).await })
            .await;
    }
}

/// Lookup outcomes of one call, counted together.
#[derive(Default)]
struct Tally {
    hits: u64,
    misses: u64,
    rejected: u64,
}

/// A key's kind: its first segment (`receipt`, `tile`, `idem`, `checkpoint`).
fn kind_of(key: &str) -> &str {
    key.split(':').next().unwrap_or(key)
}
