//! Postgres blackholed under load: the portal reaches Postgres through a proxy in this test
//! that, for 10 s, keeps every connection open and forwards nothing either way, while 16
//! writers (a key each) submit receipts with idempotency keys, retrying a 503 under the same
//! key. Every request is answered within the store's call bound (default configuration:
//! 5 s) plus a margin — 201/200, or 503 JSON `database_unavailable`, never a hang or another
//! status — readiness says Postgres is down during the outage, the write-error metric moves,
//! writes succeed again within 5 s of forwarding resuming, and every acknowledged receipt is
//! in Postgres afterwards, at the position and with the hash it was acknowledged with, in a
//! gap-free scroll.

#[path = "../../ledger/tests/support/blackhole.rs"]
mod blackhole;

use blackhole::{upstream_of, Blackhole};
use ledger::storage::KeyStore;
use ledger::store::{DbRole, Role};
use ledger::testing::{request, service_config, TestDb};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: usize = 16;
const OUTAGE: Duration = Duration::from_secs(10);
/// Allowance over the call bound for the HTTP round trip and scheduling.
const MARGIN: Duration = Duration::from_secs(1);
/// How long forwarding may have resumed before writes must succeed again.
const RECOVERY: Duration = Duration::from_secs(5);

/// One answered (or unanswered) request.
#[derive(Debug, Clone)]
struct Answer {
    sent: Instant,
    took: Duration,
    status: u16,
    code: Option<String>,
}

#[derive(Default)]
struct Shared {
    answers: Mutex<Vec<Answer>>,
    acked: Mutex<HashMap<u64, String>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn writer(addr: SocketAddr, token: String, id: usize, shared: Arc<Shared>) {
    let bearer = format!("Bearer {token}");
    let mut i = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let key = format!("w{id}-{i}");
        let body = json!({"type": "load", "payload": {"w": id, "i": i}}).to_string();
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
            ("idempotency-key", key.as_str()),
        ];
        let sent = Instant::now();
        let answered = tokio::time::timeout(
            Duration::from_secs(60),
            request(
                addr,
                "POST",
                "/v1/scrolls/drills/receipts",
                &headers,
                body.as_bytes(),
            ),
        )
        .await;
        let took = sent.elapsed();
        let (status, body) = match answered {
            Ok(Ok((status, text))) => (status, serde_json::from_str(&text).unwrap_or(Value::Null)),
            Ok(Err(_)) => (1, Value::Null),
            Err(_) => (0, Value::Null),
        };
        lock(&shared.answers).push(Answer {
            sent,
            took,
            status,
            code: body["error"]["code"].as_str().map(str::to_string),
        });
        match status {
            200 | 201 => {
                let seq = body["seq"].as_u64().unwrap_or(u64::MAX);
                let hash = body["leaf_hash"].as_str().unwrap_or_default().to_string();
                let previous = lock(&shared.acked).insert(seq, hash.clone());
                assert!(
                    previous.is_none() || previous == Some(hash),
                    "seq {seq} acknowledged with two hashes"
                );
                i += 1;
            }
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => i += 1,
        }
    }
}

async fn ready(addr: SocketAddr) -> (u16, String, Duration) {
    let started = Instant::now();
    let (s, body) = tokio::time::timeout(
        Duration::from_secs(30),
        ledger::testing::http(addr, "GET", "/v1/ready"),
    )
    .await
    .unwrap_or_else(|_| panic!("/v1/ready hung"))
    .unwrap_or_else(|e| panic!("/v1/ready: {e}"));
    (s, body, started.elapsed())
}

fn unavailable_errors(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("vaultmesh_receipt_write_errors_total{")
                && l.contains("scroll=\"drills\"")
                && l.contains("error_type=\"database_unavailable\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(addr: SocketAddr) -> String {
    ledger::testing::http(addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("/metrics: {e}"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blackholed_postgres_gets_prompt_503s_and_loses_no_acknowledged_receipt() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let mut tokens = Vec::new();
    for w in 0..WRITERS {
        tokens.push(
            db.store
                .create_api_key(Role::Writer, None, &format!("w{w}"))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .token,
        );
    }
    let url = db.url(DbRole::Portal);
    let proxy = Blackhole::start(upstream_of(&url)).await;
    let mut cfg = service_config(&proxy.url(&url));
    cfg.redis_url = None;
    let bound = cfg.db_timeouts.call_bound();
    assert!(
        bound <= Duration::from_secs(5),
        "the default bound is at most 5 s"
    );
    let p = portal::start_with(
        cfg,
        portal::PortalArgs::default(),
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (addr, metrics_addr) = (p.api_addr, p.metrics_addr);

    let shared = Arc::new(Shared::default());
    let writers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, token)| tokio::spawn(writer(addr, token, id, shared.clone())))
        .collect();
    let warm = Instant::now();
    while lock(&shared.acked).len() < 300 {
        assert!(
            warm.elapsed() < Duration::from_secs(30),
            "load did not get going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let errors_before = unavailable_errors(&metrics(metrics_addr).await);

    proxy.set_forwarding(false);
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (s, body, took) = ready(addr).await;
    assert_eq!(s, 503, "readiness during the outage: {body}");
    assert!(body.contains("\"postgres\":\"down\""), "{body}");
    assert!(
        took < Duration::from_secs(2) + MARGIN,
        "readiness took {took:?}"
    );
    tokio::time::sleep(OUTAGE.saturating_sub(outage.elapsed())).await;

    proxy.set_forwarding(true);
    let resumed = Instant::now();
    let recovered_at = loop {
        let first = lock(&shared.answers)
            .iter()
            .filter(|a| a.sent >= resumed && matches!(a.status, 200 | 201))
            .map(|a| a.sent + a.took)
            .min();
        if let Some(at) = first {
            break at;
        }
        assert!(
            resumed.elapsed() < RECOVERY + MARGIN,
            "no write succeeded within {RECOVERY:?} of forwarding resuming"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let recovery = recovered_at.saturating_duration_since(resumed);
    assert!(recovery <= RECOVERY, "recovered after {recovery:?}");
    let settle = Instant::now();
    loop {
        let (s, body, _) = ready(addr).await;
        if s == 200 {
            break;
        }
        assert!(settle.elapsed() < RECOVERY, "still unready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap_or_else(|e| panic!("writer: {e}"));
    }
    let errors_after = unavailable_errors(&metrics(metrics_addr).await);

    let answers = lock(&shared.answers).clone();
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent >= outage && a.sent < resumed)
        .collect();
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    for a in &answers {
        assert!(
            matches!(a.status, 200 | 201 | 503),
            "status {} (0: no answer in 60 s, 1: connection failed) after {:?}",
            a.status,
            a.took
        );
        if a.status == 503 {
            assert_eq!(a.code.as_deref(), Some("database_unavailable"), "{a:?}");
        }
        assert!(
            a.took <= bound + MARGIN,
            "a request took {:?}, over the bound {bound:?} + {MARGIN:?}",
            a.took
        );
    }
    let refused = during.iter().filter(|a| a.status == 503).count();
    assert!(
        refused >= WRITERS,
        "the outage must have been felt: {refused} 503s of {} requests",
        during.len()
    );
    assert!(
        errors_after > errors_before,
        "vaultmesh_receipt_write_errors_total{{error_type=\"database_unavailable\"}} did not move"
    );

    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let rows = owner
        .query(
            "SELECT r.seq, r.leaf_hash FROM receipts r JOIN scrolls s ON s.id = r.scroll_id \
             WHERE s.name = 'drills' ORDER BY r.seq",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored: HashMap<u64, String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let seq = r.get::<_, i64>(0);
            assert_eq!(seq, i as i64, "gap at {i}");
            (seq as u64, hex::encode(r.get::<_, Vec<u8>>(1)))
        })
        .collect();
    let acked = lock(&shared.acked).clone();
    for (seq, hash) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(hash),
            "acknowledged receipt {seq} lost or changed"
        );
    }
    eprintln!(
        "blackhole: {} requests ({} during the outage, {refused} answered 503), {} acknowledged, \
         slowest answer {slowest:?} (bound {bound:?}), recovery {recovery:?}",
        answers.len(),
        during.len(),
        acked.len()
    );
    p.stop().await;
}
