//! The Redis cache against real Redis servers: round trips, a closed port, and a server
//! killed and restarted under it (callers never see an error); and Redis as an adversary:
//! entries rewritten by anyone without the deployment's secret are misses, counted as
//! rejected and logged at a bounded rate, while caches sharing the secret share entries.

use ledger::cache::seal::SEAL_LEN;
use ledger::cache::{Cache, CacheMetrics, CacheOptions, CacheSecret, CacheState};
use ledger::storage::{CachedTiles, TileStore};
use ledger::testing::{closed_port, redis_url, scratch_dir, RedisServer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn counters() -> CacheMetrics {
    CacheMetrics::register(&prometheus::Registry::new()).unwrap_or_else(|e| panic!("{e}"))
}

fn lookups(m: &CacheMetrics, kind: &str, result: &str) -> u64 {
    m.lookups.with_label_values(&[kind, result]).get()
}

fn opts(prefix: &str) -> CacheOptions {
    CacheOptions {
        prefix: format!("vmtest:{prefix}:{}:", std::process::id()),
        retry_interval: Duration::from_millis(100),
        ..CacheOptions::default()
    }
}

#[tokio::test]
async fn round_trips_against_real_redis() {
    let metrics = counters();
    let cache = Cache::new(Some(&redis_url()), opts("rt"), Some(metrics.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cache.get("a").await, None);
    cache.put("a", b"immutable").await;
    assert_eq!(cache.get("a").await.as_deref(), Some(&b"immutable"[..]));
    cache.put_ttl("b", b"short", Duration::from_secs(30)).await;
    assert_eq!(cache.get("b").await.as_deref(), Some(&b"short"[..]));
    cache.delete("b").await;
    assert_eq!(cache.get("b").await, None);
    let items: Vec<(String, Vec<u8>)> = (0..3).map(|i| (format!("m{i}"), vec![i; 4])).collect();
    cache.put_many(&items[..2]).await;
    let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        cache.get_many(&keys).await,
        vec![Some(vec![0; 4]), Some(vec![1; 4]), None]
    );
    assert!(cache.get_many(&[]).await.is_empty());
    // Lookups are counted by the key's first segment: `a` missed then hit, `b` hit then
    // missed after the delete, the MGET (named by its first key) hit twice and missed once.
    assert_eq!(cache.get("tile:1:2").await, None);
    assert_eq!(lookups(&metrics, "a", "hit"), 1);
    assert_eq!(lookups(&metrics, "a", "miss"), 1);
    assert_eq!(lookups(&metrics, "b", "hit"), 1);
    assert_eq!(lookups(&metrics, "b", "miss"), 1);
    assert_eq!(lookups(&metrics, "m0", "hit"), 2);
    assert_eq!(lookups(&metrics, "m0", "miss"), 1);
    assert_eq!(lookups(&metrics, "tile", "miss"), 1);
    assert!(cache.ping().await);
    assert_eq!(cache.state(), CacheState::Up);
}

#[tokio::test]
async fn a_closed_port_degrades_without_failing_callers() {
    let url = format!("redis://127.0.0.1:{}", closed_port().await);
    let metrics = counters();
    let errors = metrics.errors.clone();
    let cache = Cache::new(Some(&url), opts("closed"), Some(metrics.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    for i in 0..20 {
        cache.put(&format!("k{i}"), b"v").await;
        assert_eq!(cache.get(&format!("k{i}")).await, None);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "calls must not hang"
    );
    assert_eq!(cache.state(), CacheState::Degraded);
    assert!(errors.with_label_values(&["connect"]).get() >= 1);
    assert_eq!(
        lookups(&metrics, "k0", "miss"),
        1,
        "a failed lookup is a miss"
    );
    assert!(!cache.ping().await);

    let disabled = Cache::new(None, opts("off"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(disabled.state(), CacheState::Disabled);
    disabled.put("x", b"y").await;
    assert_eq!(disabled.get("x").await, None);
}

#[tokio::test]
async fn redis_killed_and_restarted_under_the_cache() {
    let server = RedisServer::start(0).await;
    let port = server.port;
    let metrics = counters();
    let errors = metrics.errors.clone();
    let cache = Cache::new(
        Some(&format!("redis://127.0.0.1:{port}")),
        opts("kill"),
        Some(metrics),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    cache.put("k", b"v1").await;
    assert_eq!(cache.get("k").await.as_deref(), Some(&b"v1"[..]));

    server.kill().await;
    for _ in 0..10 {
        assert_eq!(cache.get("k").await, None, "a dead server is a miss");
        cache.put("k", b"v2").await;
    }
    assert_eq!(cache.state(), CacheState::Degraded);
    assert!(
        errors
            .get_metric_with_label_values(&["get"])
            .map(|c| c.get())
            .unwrap_or(0)
            + errors
                .get_metric_with_label_values(&["connect"])
                .map(|c| c.get())
                .unwrap_or(0)
            >= 1
    );

    let _server = RedisServer::start(port).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        cache.put("k", b"v3").await;
        if cache.get("k").await.as_deref() == Some(&b"v3"[..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cache did not recover after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cache.state(), CacheState::Up);
}

fn secret(byte: u8) -> CacheSecret {
    CacheSecret::from_bytes(&[byte; 32]).unwrap_or_else(|e| panic!("{e}"))
}

fn sealed_opts(prefix: &str, secret: CacheSecret) -> CacheOptions {
    CacheOptions {
        secret: Some(secret),
        ..opts(prefix)
    }
}

/// A plain Redis connection: the other party, who can read and write every key.
async fn raw_redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("{e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn raw_get(c: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<u8> {
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<Vec<u8>>>(c)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{key} is not in Redis"))
}

async fn raw_set(c: &mut redis::aio::MultiplexedConnection, key: &str, value: &[u8]) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A self-consistent receipt entry in the pre-seal layout: leaf hash ‖ leaf.
fn forged_receipt_entry(scroll: &str, seq: u64) -> Vec<u8> {
    let leaf = format!(
        r#"{{"payload":{{"forged":true}},"scroll":"{scroll}","seq":{seq},"submitted_at":"2026-01-01T00:00:00.000000Z","submitter":"key_evil","type":"t"}}"#
    );
    let mut entry = ledger::receipt::leaf_hash(leaf.as_bytes()).to_vec();
    entry.extend_from_slice(leaf.as_bytes());
    entry
}

#[tokio::test]
async fn entries_rewritten_without_the_secret_are_rejected_misses() {
    let metrics = counters();
    let o = sealed_opts("poison", secret(1));
    let prefix = o.prefix.clone();
    let cache =
        Cache::new(Some(&redis_url()), o, Some(metrics.clone())).unwrap_or_else(|e| panic!("{e}"));
    let mut redis = raw_redis(&redis_url()).await;
    let genuine = forged_receipt_entry("drills", 0);
    let other = forged_receipt_entry("drills", 1);
    cache.put("receipt:drills:0", &genuine).await;
    cache.put("receipt:drills:1", &other).await;
    assert_eq!(cache.get("receipt:drills:0").await, Some(genuine.clone()));
    let key = format!("{prefix}receipt:drills:0");
    let sealed = raw_get(&mut redis, &key).await;
    let sealed_other = raw_get(&mut redis, &format!("{prefix}receipt:drills:1")).await;
    assert_eq!(sealed.len(), SEAL_LEN + genuine.len());
    assert_ne!(&sealed[SEAL_LEN..], &sealed_other[SEAL_LEN..]);

    let forged = forged_receipt_entry("drills", 0);
    let mut forged_body = forged.clone();
    forged_body.extend_from_slice(b" ");
    let mut header_kept = sealed[..SEAL_LEN].to_vec();
    header_kept.extend_from_slice(&forged_body);
    let mut flipped = sealed.clone();
    flipped[SEAL_LEN + 40] ^= 0x01;
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        ("the old layout, no seal", forged.clone()),
        (
            "sealed under another secret",
            secret(2).seal(&key, &forged_body, Duration::from_secs(60)),
        ),
        (
            "sealed for the right key by a cache with a random secret",
            CacheSecret::random()
                .unwrap_or_else(|e| panic!("{e}"))
                .seal(&key, &forged_body, Duration::from_secs(60)),
        ),
        ("the genuine seal over another value", header_kept),
        ("one bit changed", flipped),
        ("the genuine entry of another key", sealed_other.clone()),
        ("truncated by a byte", sealed[..sealed.len() - 1].to_vec()),
        ("truncated inside the seal", sealed[..SEAL_LEN - 3].to_vec()),
        ("empty", Vec::new()),
        (
            "an authentic entry replayed long after it expired",
            secret(1).seal_until(&key, &genuine, 1_000),
        ),
    ];
    for (i, (what, bytes)) in attacks.iter().enumerate() {
        raw_set(&mut redis, &key, bytes).await;
        assert_eq!(cache.get("receipt:drills:0").await, None, "{what}");
        assert_eq!(
            lookups(&metrics, "receipt", "rejected"),
            i as u64 + 1,
            "{what} is counted as rejected"
        );
    }
    assert_eq!(lookups(&metrics, "receipt", "hit"), 1);

    // In a batch, each entry is judged on its own: genuine, poisoned, absent.
    raw_set(&mut redis, &key, &forged).await;
    let names: Vec<String> = ["receipt:drills:1", "receipt:drills:0", "receipt:drills:2"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(
        cache.get_many(&names).await,
        vec![Some(other.clone()), None, None]
    );
    assert_eq!(lookups(&metrics, "receipt", "hit"), 2);
    assert_eq!(lookups(&metrics, "receipt", "miss"), 1);
    assert_eq!(
        lookups(&metrics, "receipt", "rejected"),
        attacks.len() as u64 + 1
    );

    // An authentic entry just past its expiry (Redis has not dropped it yet) is a plain miss.
    let now = ledger::cache::seal::now_ms();
    raw_set(
        &mut redis,
        &key,
        &secret(1).seal_until(&key, &genuine, now - 1),
    )
    .await;
    assert_eq!(cache.get("receipt:drills:0").await, None);
    assert_eq!(lookups(&metrics, "receipt", "miss"), 2);

    // The next write replaces a rejected entry, and it is served again.
    cache.put("receipt:drills:0", &genuine).await;
    assert_eq!(cache.get("receipt:drills:0").await, Some(genuine));
    assert_eq!(
        lookups(&metrics, "receipt", "rejected"),
        attacks.len() as u64 + 1
    );
}

#[tokio::test]
async fn caches_share_entries_exactly_when_they_share_the_secret() {
    let dir = scratch_dir("cache-secret");
    let bytes: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let hex_file = dir.join("hex.secret");
    std::fs::write(&hex_file, format!("  {}\n", hex::encode(&bytes)))
        .unwrap_or_else(|e| panic!("{e}"));
    let raw_file = dir.join("raw.secret");
    std::fs::write(&raw_file, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let from_hex = CacheSecret::from_file(&hex_file).unwrap_or_else(|e| panic!("{e}"));
    let from_raw = CacheSecret::from_file(&raw_file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_hex.fingerprint(), from_raw.fingerprint());

    let writer = Cache::new(Some(&redis_url()), sealed_opts("share", from_hex), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let same_metrics = counters();
    let same = Cache::new(
        Some(&redis_url()),
        sealed_opts("share", from_raw),
        Some(same_metrics.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let other_metrics = counters();
    let other = Cache::new(
        Some(&redis_url()),
        sealed_opts("share", secret(9)),
        Some(other_metrics.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let unconfigured_metrics = counters();
    let unconfigured = Cache::new(
        Some(&redis_url()),
        opts("share"),
        Some(unconfigured_metrics.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    writer.put("tile:1:0:0", &[7u8; 512]).await;
    writer
        .put_ttl("checkpoint:drills", b"{}", Duration::from_secs(5))
        .await;
    assert_eq!(same.get("tile:1:0:0").await, Some(vec![7u8; 512]));
    assert_eq!(
        same.get("checkpoint:drills").await.as_deref(),
        Some(&b"{}"[..])
    );
    assert_eq!(lookups(&same_metrics, "tile", "hit"), 1);
    for (cache, metrics) in [
        (&other, &other_metrics),
        (&unconfigured, &unconfigured_metrics),
    ] {
        assert_eq!(cache.get("tile:1:0:0").await, None);
        assert_eq!(
            cache.get_many(&["tile:1:0:0".to_string()]).await,
            vec![None]
        );
        assert_eq!(cache.get("checkpoint:drills").await, None);
        assert_eq!(lookups(metrics, "tile", "rejected"), 2);
        assert_eq!(lookups(metrics, "checkpoint", "rejected"), 1);
        assert_eq!(lookups(metrics, "tile", "hit"), 0);
    }

    // A secret file too short, or missing, is an error, never a weak or empty secret.
    let short = dir.join("short.secret");
    std::fs::write(&short, hex::encode([1u8; 31])).unwrap_or_else(|e| panic!("{e}"));
    match CacheSecret::from_file(&short) {
        Err(e) => assert!(e.to_string().contains("31 bytes"), "{e}"),
        Ok(_) => panic!("a 31-byte secret was accepted"),
    }
    let raw_short = dir.join("raw-short.secret");
    std::fs::write(&raw_short, b"correct horse battery staple").unwrap_or_else(|e| panic!("{e}"));
    assert!(CacheSecret::from_file(&raw_short).is_err());
    assert!(CacheSecret::from_file(&dir.join("absent")).is_err());
}

/// A log sink for one test thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn rejections_are_logged_at_most_once_per_interval_per_kind() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let o = |interval| CacheOptions {
        rejection_log_interval: interval,
        ..sealed_opts("ratelimit", secret(4))
    };
    let prefix = o(Duration::ZERO).prefix;
    let metrics = counters();
    let cache = Cache::new(
        Some(&redis_url()),
        o(Duration::from_secs(3600)),
        Some(metrics.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut redis = raw_redis(&redis_url()).await;
    for kind in ["rla", "rlb"] {
        raw_set(
            &mut redis,
            &format!("{prefix}{kind}:x"),
            b"not sealed at all",
        )
        .await;
    }
    let warnings = || {
        let text = String::from_utf8_lossy(
            &logs
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .to_string();
        text.lines()
            .filter(|l| l.contains("cache entry rejected"))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    for _ in 0..50 {
        assert_eq!(cache.get("rla:x").await, None);
        assert_eq!(cache.get("rlb:x").await, None);
    }
    assert_eq!(lookups(&metrics, "rla", "rejected"), 50);
    assert_eq!(lookups(&metrics, "rlb", "rejected"), 50);
    let w = warnings();
    assert_eq!(w.len(), 2, "one warning per kind: {w:?}");
    assert_eq!(w[0]["fields"]["kind"], "rla");
    assert_eq!(w[0]["fields"]["reason"], "malformed");
    assert_eq!(w[0]["fields"]["key"], "rla:x");
    assert_eq!(w[1]["fields"]["kind"], "rlb");

    // After the interval, the next rejection is logged with the count of those that were not.
    let short = Cache::new(Some(&redis_url()), o(Duration::from_millis(200)), None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(short.get("rla:x").await, None);
    assert_eq!(warnings().len(), 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    while warnings().len() == 3 {
        assert!(Instant::now() < deadline, "no second warning");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(short.get("rla:x").await, None);
    }
    let w = warnings();
    let last = &w[w.len() - 1];
    assert_eq!(last["fields"]["kind"], "rla");
    assert!(
        last["fields"]["unlogged_since_last"].as_u64().unwrap_or(0) >= 1,
        "{last}"
    );
}

async fn scan_prefix(c: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Tiles read back through the cache reach the proof memo only when authentic: a store with
/// an empty memo over poisoned tile entries computes every proof from Postgres, and keeps
/// doing so once Redis is repaired or emptied.
#[tokio::test]
async fn poisoned_tiles_never_reach_the_proof_memo() {
    use ledger::hash::{Hash, Sha3Hasher};
    let db = ledger::testing::TestDb::new()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let scroll = db
        .store
        .scroll("drills")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let leaves: Vec<Hash> = (0u32..300)
        .map(|i| Sha3Hasher::leaf(&i.to_be_bytes()))
        .collect();
    let size = db
        .store
        .append_tree(scroll.id, 0, leaves)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let o = sealed_opts(&format!("tiles-{}", db.name), secret(5));
    let prefix = o.prefix.clone();
    let metrics = counters();
    let cache =
        Cache::new(Some(&redis_url()), o, Some(metrics.clone())).unwrap_or_else(|e| panic!("{e}"));
    let direct = |i: u64| {
        let (store, scroll) = (db.store.clone(), scroll.clone());
        async move {
            store
                .inclusion_proof(scroll.scroll_ref(), i, size)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let warm = CachedTiles::new(std::sync::Arc::new(db.store.clone()), cache.clone(), 1024);
    for i in 0..size {
        assert_eq!(
            warm.inclusion_proof(scroll.scroll_ref(), i, size)
                .await
                .ok(),
            Some(direct(i).await)
        );
    }
    let mut redis = raw_redis(&redis_url()).await;
    let tiles = scan_prefix(&mut redis, &format!("{prefix}tile:*")).await;
    assert!(tiles.len() >= 18, "{tiles:?}");
    let other: Vec<u8> = (0u8..16).flat_map(|i| Sha3Hasher::leaf(&[i])).collect();
    let attacker = secret(6);
    for (round, k) in tiles.iter().enumerate() {
        let bytes = match round % 3 {
            0 => other.clone(),
            1 => attacker.seal(k, &other, Duration::from_secs(3600)),
            _ => {
                let mut genuine = raw_get(&mut redis, k).await;
                let len = genuine.len();
                genuine[len - 1] ^= 1;
                genuine
            }
        };
        raw_set(&mut redis, k, &bytes).await;
    }
    let fresh = CachedTiles::new(std::sync::Arc::new(db.store.clone()), cache.clone(), 1024);
    for i in 0..size {
        assert_eq!(
            fresh
                .inclusion_proof(scroll.scroll_ref(), i, size)
                .await
                .ok(),
            Some(direct(i).await),
            "inclusion {i} over poisoned tiles"
        );
        assert_eq!(
            fresh.tree_root(scroll.scroll_ref(), i + 1).await.ok(),
            db.store.tree_root(scroll.scroll_ref(), i + 1).await.ok()
        );
    }
    assert!(lookups(&metrics, "tile", "rejected") >= tiles.len() as u64);
    // What the memo holds came from Postgres: poisoning Redis again, or emptying it, changes
    // nothing.
    for k in &tiles {
        raw_set(&mut redis, k, &other).await;
    }
    for i in (0..size).step_by(7) {
        assert_eq!(
            fresh
                .inclusion_proof(scroll.scroll_ref(), i, size)
                .await
                .ok(),
            Some(direct(i).await)
        );
    }
    for k in &tiles {
        redis::cmd("DEL")
            .arg(k)
            .query_async::<()>(&mut redis)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for i in (0..size).step_by(5) {
        assert_eq!(
            fresh
                .inclusion_proof(scroll.scroll_ref(), i, size)
                .await
                .ok(),
            Some(direct(i).await)
        );
    }
}
