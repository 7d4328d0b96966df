//! Redis cache that never fails its caller: every error or timeout is a miss (or a
//! skipped write), counted, and the connection is re-established in the background.

use prometheus::IntCounterVec;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

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
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            prefix: "vm:".into(),
            op_timeout: Duration::from_millis(50),
            retry_interval: Duration::from_secs(1),
            immutable_ttl: Duration::from_secs(24 * 3600),
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
    /// (`receipt`, `tile`, `idem`, `checkpoint`), result `hit` or `miss`.
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
                "Redis cache lookups by key kind and result (hit or miss; a failure is a miss)",
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
    metrics: Option<CacheMetrics>,
    degraded: std::sync::atomic::AtomicBool,
}

/// A cheap-to-clone handle to the cache.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    /// A cache for `url` (`None` or empty disables it), counting failures and lookups in
    /// `metrics`. Connects lazily; never fails except on a malformed URL.
    pub fn new(
        url: Option<&str>,
        opts: CacheOptions,
        metrics: Option<CacheMetrics>,
    ) -> Result<Self, redis::RedisError> {
        let client = match url.filter(|u| !u.is_empty()) {
            Some(u) => Some(redis::Client::open(u)?),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn: Mutex::new(None),
                last_attempt: Mutex::new(None),
                opts,
                metrics,
                degraded: std::sync::atomic::AtomicBool::new(false),
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

    fn count_lookups(&self, key: &str, hits: u64, misses: u64) {
        if let (Some(m), Some(_)) = (&self.inner.metrics, &self.inner.client) {
            let kind = key.split(':').next().unwrap_or(key);
            m.lookups.with_label_values(&[kind, "hit"]).inc_by(hits);
            m.lookups.with_label_values(&[kind, "miss"]).inc_by(misses);
        }
    }

    /// The cached bytes for `key`, or `None` on a miss or any failure.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let k = self.key(key);
        let got = self
            .run("get", |mut c| async move {
                c.get::<_, Option<Vec<u8>>>(k).await
            })
            .await
            .flatten();
        let hit = u64::from(got.is_some());
        self.count_lookups(key, hit, 1 - hit);
        got
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

    /// Caches an item for `ttl`. Best effort.
    pub async fn put_ttl(&self, key: &str, value: &[u8], ttl: Duration) {
        let k = self.key(key);
        let v = value.to_vec();
        let secs = ttl.as_secs().max(1);
        self.run("put", |mut c| async move {
            c.set_ex::<_, _, ()>(k, v, secs).await
        })
        .await;
    }

    /// The cached bytes for each key (one round trip), all misses on any failure.
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
        let hits = found.iter().filter(|v| v.is_some()).count() as u64;
        self.count_lookups(&keys[0], hits, keys.len() as u64 - hits);
        found
    }

    /// Caches several immutable items in one round trip. Best effort.
    pub async fn put_many(&self, items: &[(String, Vec<u8>)]) {
        if items.is_empty() {
            return;
        }
        let secs = self.inner.opts.immutable_ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        for (k, v) in items {
            pipe.set_ex(self.key(k), v, secs).ignore();
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
