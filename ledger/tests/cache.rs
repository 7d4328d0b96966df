//! The Redis cache against real Redis servers: round trips, a closed port, and a server
//! killed and restarted under it. Callers never see an error.

use ledger::cache::{Cache, CacheMetrics, CacheOptions, CacheState};
use ledger::testing::{closed_port, redis_url, RedisServer};
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
