//! A portal started while Redis is down starts using it once it appears, without a restart,
//! and its readiness says which state the cache is in meanwhile.

use ledger::storage::KeyStore;
use ledger::store::{DbRole, Role};
use ledger::testing::{call, closed_port, http, service_config, RedisServer, TestDb};
use portal::PortalArgs;
use std::time::{Duration, Instant};

fn hits(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("vaultmesh_cache_lookups_total{") && l.contains("result=\"hit\""))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_started_without_redis_uses_it_once_it_appears() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let reader = db
        .store
        .create_api_key(Role::Reader, None, "late")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    ledger::testing::append_receipts(&db.store, "drills", "drill_completed", 3).await;
    let port = closed_port().await;
    let mut cfg = service_config(&db.url(DbRole::Portal));
    cfg.redis_url = Some(format!("redis://127.0.0.1:{port}"));
    let p = portal::start_with(cfg, PortalArgs::default(), ledger::service::Shutdown::new())
        .await
        .unwrap_or_else(|e| panic!("portal: {e}"));
    let (s, ready) = call(p.api_addr, "GET", "/v1/ready", None, &[], "").await;
    assert_eq!(
        (s, ready["checks"]["redis"].as_str()),
        (200, Some("degraded")),
        "{ready}"
    );
    let (s, b) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/receipts/1",
        Some(&reader),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "served from Postgres with Redis down: {b}");

    let redis = RedisServer::start(port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, b) = call(
            p.api_addr,
            "GET",
            "/v1/scrolls/drills/receipts/1",
            Some(&reader),
            &[],
            "",
        )
        .await;
        assert_eq!(b["seq"], 1, "{b}");
        let (_, metrics) = http(p.metrics_addr, "GET", "/metrics")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if hits(&metrics) > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no cache hit 10 s after Redis appeared:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, ready) = call(p.api_addr, "GET", "/v1/ready", None, &[], "").await;
    assert_eq!(
        (s, ready["checks"]["redis"].as_str()),
        (200, Some("up")),
        "{ready}"
    );
    p.stop().await;
    redis.kill().await;
}
