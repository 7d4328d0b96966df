//! The governance watcher on a real Postgres: it LISTENs, its idle polls take nothing from
//! the service's pool (they run on the listening connection), and a change written with a
//! notification is in force at once.

use ledger::gate::{Service, Writer};
use ledger::governance::{Governance, GovernanceSettings};
use ledger::service::Shutdown;
use ledger::store::{DbRole, DB_REQUESTS};
use ledger::testing::TestDb;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_polls_cost_the_pool_nothing_and_a_notified_change_applies_at_once() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let store = db
        .role_store(DbRole::Portal)
        .unwrap_or_else(|e| panic!("{e}"));
    let registry = prometheus::Registry::new();
    let shutdown = Shutdown::new();
    let gov = Governance::start(
        Service::Portal,
        store,
        db.url(DbRole::Portal),
        &registry,
        GovernanceSettings {
            poll: Duration::from_millis(20),
            ..GovernanceSettings::default()
        },
        shutdown.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    while !gov.listening() {
        assert!(start.elapsed() < Duration::from_secs(5), "never listening");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Twenty-five polls' worth of time: none of them goes through the pool.
    let before = DB_REQUESTS.get();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(DB_REQUESTS.get(), before, "idle polls used the pool");
    assert!(gov.listening());

    // Another service raises an emergency; this one is frozen as soon as it is notified.
    let other = Governance::start(
        Service::Guardian,
        db.role_store(DbRole::Guardian)
            .unwrap_or_else(|e| panic!("{e}")),
        db.url(DbRole::Guardian),
        &prometheus::Registry::new(),
        GovernanceSettings {
            poll: Duration::from_secs(3600),
            ..GovernanceSettings::default()
        },
        shutdown.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    other
        .append(
            "emergency_raised",
            serde_json::json!({"reason": "test", "raised_by": "key_x"}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let raised = Instant::now();
    while gov.current().emergency.is_none() {
        assert!(
            raised.elapsed() < Duration::from_secs(1),
            "not frozen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let writer = Writer::Client {
        key_id: "key_w".into(),
        role: ledger::store::Role::Writer,
        scrolls: None,
    };
    let item = ledger::store::NewReceipt {
        draft: ledger::receipt::ReceiptDraft::new("x", serde_json::json!({}))
            .unwrap_or_else(|e| panic!("{e}")),
        submitter: String::new(),
        idempotency_key: None,
        request_hash: None,
    };
    assert!(matches!(
        gov.gate().admit(&writer, "drills", vec![item]),
        Err(ledger::gate::GateError::Frozen { .. })
    ));
    shutdown.trigger();
}
