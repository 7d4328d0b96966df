//! Divergence detection: each way of rewriting history is found by one verification pass,
//! named by scroll and size, raised in the gauge and as an `anchor_divergence` receipt, and
//! the gauge stays 1 until an operator acknowledges it.
//! (One test per binary: the seed's metrics are process-wide, so the scenarios run in turn.)

use guardian::GuardianArgs;
use ledger::receipt::ReceiptDraft;
use ledger::store::{NewReceipt, Role};
use ledger::testing::{http, request, scratch_dir, service_config, TestDb};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Scenario {
    db: TestDb,
    g: ledger::service::RunningService,
    admin: String,
    journal: PathBuf,
}

async fn post(addr: SocketAddr, path: &str, token: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let (status, text) = request(addr, "POST", path, &[("authorization", &bearer)], b"")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Ten receipts in `drills`, signed at 10 and anchored in epoch 1 (journaled), intact.
async fn scenario() -> Scenario {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("guardian-divergence");
    let key = dir.join("guardian.key");
    ledger::note::NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    let journal = dir.join("proofchain.jsonl");
    let items = (0..10u64)
        .map(|i| NewReceipt {
            draft: ReceiptDraft::new("t", serde_json::json!({ "i": i }))
                .unwrap_or_else(|e| panic!("{e}")),
            submitter: "key_test".into(),
            idempotency_key: None,
            request_hash: None,
        })
        .collect();
    db.store
        .append_receipts("drills", items, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let opts = GuardianArgs {
        signing_key_file: key,
        journal_path: journal.clone(),
        integrate_interval_ms: 50,
        epoch_interval_secs: 3600,
        ..GuardianArgs::default()
    };
    let g = guardian::start_with(
        service_config(&db.app_url),
        opts,
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let admin = db
        .store
        .create_api_key(Role::Admin, None, "t")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, body) = post(g.api_addr, "/v1/guardian/anchor", &admin).await;
        if s == 200
            && body["record"]["scrolls"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x["scroll"] == "drills" && x["tree_size"] == 10)
            })
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no anchor covering drills at 10: {s} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = post(g.api_addr, "/v1/guardian/verify", &admin).await;
    assert_eq!((s, &v["intact"]), (200, &Value::Bool(true)), "{v}");
    Scenario {
        db,
        g,
        admin,
        journal,
    }
}

/// Runs SQL as the schema owner with the append-only triggers switched off (what a
/// superuser could do).
async fn tamper(db: &TestDb, sql: &str) {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    c.batch_execute(&format!(
        "ALTER TABLE receipts DISABLE TRIGGER USER; ALTER TABLE anchors DISABLE TRIGGER USER; \
         {sql}; \
         ALTER TABLE receipts ENABLE TRIGGER USER; ALTER TABLE anchors ENABLE TRIGGER USER;"
    ))
    .await
    .unwrap_or_else(|e| panic!("tamper: {e}"));
}

/// One verification pass must report a finding matching `scroll`, `size` and `detail`.
async fn detected(s: &Scenario, scroll: Option<&str>, size: Option<u64>, detail: &str) {
    let (status, v) = post(s.g.api_addr, "/v1/guardian/verify", &s.admin).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["intact"], false, "{v}");
    let found = v["findings"].as_array().is_some_and(|fs| {
        fs.iter().any(|f| {
            f["scroll"].as_str() == scroll
                && (size.is_none() || f["size"].as_u64() == size)
                && f["detail"].as_str().is_some_and(|d| d.contains(detail))
        })
    });
    assert!(found, "expected {scroll:?}@{size:?} '{detail}' in {v:#}");
    let events =
        s.db.store
            .list_receipts("guardian", 0, 100)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        events.iter().any(|e| e.receipt.kind == "anchor_divergence"),
        "an anchor_divergence receipt was written"
    );
}

const DRILLS: &str = "(SELECT id FROM scrolls WHERE name = 'drills')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_rewrite_is_detected_in_one_pass() {
    // A receipt body changed.
    let s = scenario().await;
    tamper(&s.db, &format!("UPDATE receipts SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), '\"i\":3', '\"i\":333'), 'UTF8') WHERE scroll_id = {DRILLS} AND seq = 3")).await;
    detected(
        &s,
        Some("drills"),
        Some(3),
        "stored leaf hash does not match its bytes",
    )
    .await;

    // The gauge is 1 until acknowledged, then 0; a new finding raises it again.
    let metric = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("vaultmesh_guardian_proofchain_divergence "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let (_, m) = http(s.g.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metric(&m), Some(1.0));
    let (st, ack) = post(s.g.api_addr, "/v1/guardian/divergence/ack", &s.admin).await;
    assert_eq!(st, 200, "{ack}");
    let (_, m) = http(s.g.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metric(&m), Some(0.0), "acknowledged");
    detected(&s, Some("drills"), Some(3), "stored leaf hash").await;
    let (_, m) = http(s.g.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        metric(&m),
        Some(0.0),
        "an acknowledged finding does not raise it again"
    );
    tamper(
        &s.db,
        &format!("DELETE FROM receipts WHERE scroll_id = {DRILLS} AND seq = 9"),
    )
    .await;
    detected(
        &s,
        Some("drills"),
        Some(10),
        "covers 10 receipts but only 9",
    )
    .await;
    let (_, m) = http(s.g.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metric(&m), Some(1.0), "a new finding raises it again");
    s.g.stop().await;

    // A receipt deleted in the middle.
    let s = scenario().await;
    tamper(
        &s.db,
        &format!("DELETE FROM receipts WHERE scroll_id = {DRILLS} AND seq = 5"),
    )
    .await;
    detected(
        &s,
        Some("drills"),
        Some(5),
        "receipt 6 found where 5 was expected",
    )
    .await;
    s.g.stop().await;

    // A receipt inserted in the middle (later ones moved up, the newcomer well formed).
    let s = scenario().await;
    let leaf = ReceiptDraft::new("t", serde_json::json!({"forged": true}))
        .unwrap_or_else(|e| panic!("{e}"))
        .leaf_at("drills", 5, "2026-01-01T00:00:00.000000Z", "key_test");
    let hash = ledger::hash::to_hex(&ledger::receipt::leaf_hash(&leaf));
    let leaf_text = String::from_utf8(leaf)
        .unwrap_or_default()
        .replace('\'', "''");
    tamper(&s.db, &format!(
        "UPDATE receipts SET seq = seq + 1000 WHERE scroll_id = {DRILLS} AND seq >= 5; \
         UPDATE receipts SET seq = seq - 999 WHERE scroll_id = {DRILLS} AND seq >= 1000; \
         INSERT INTO receipts (scroll_id, seq, leaf, leaf_hash, type, submitted_at, submitter) \
         VALUES ({DRILLS}, 5, convert_to('{leaf_text}', 'UTF8'), decode('{hash}', 'hex'), 't', now(), 'key_test')"
    )).await;
    detected(
        &s,
        Some("drills"),
        Some(10),
        "differs from the checkpoint at 10",
    )
    .await;
    detected(
        &s,
        Some("drills"),
        Some(6),
        "its bytes name position drills/5",
    )
    .await;
    s.g.stop().await;

    // Body, stored leaf hash and tree tile rewritten consistently: only the signed
    // checkpoint and the anchor still remember the original root.
    let s = scenario().await;
    let leaf = ReceiptDraft::new("t", serde_json::json!({"i": 3, "altered": true}))
        .unwrap_or_else(|e| panic!("{e}"))
        .leaf_at("drills", 3, "2026-01-01T00:00:00.000000Z", "key_test");
    let hash = ledger::hash::to_hex(&ledger::receipt::leaf_hash(&leaf));
    let leaf_text = String::from_utf8(leaf)
        .unwrap_or_default()
        .replace('\'', "''");
    tamper(&s.db, &format!(
        "UPDATE receipts SET leaf = convert_to('{leaf_text}', 'UTF8'), leaf_hash = decode('{hash}', 'hex') \
           WHERE scroll_id = {DRILLS} AND seq = 3; \
         UPDATE tree_tiles SET hashes = overlay(hashes PLACING decode('{hash}', 'hex') FROM 97 FOR 32) \
           WHERE scroll_id = {DRILLS} AND level = 0 AND idx = 0"
    )).await;
    let scroll =
        s.db.store
            .scroll("drills")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let stored_root =
        s.db.store
            .tree_root(scroll.id, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let signed =
        s.db.store
            .checkpoint_at("drills", 10)
            .await
            .ok()
            .flatten()
            .map(|c| c.root);
    assert_ne!(
        Some(stored_root),
        signed,
        "the stored tree now agrees with the altered body"
    );
    detected(
        &s,
        Some("drills"),
        Some(10),
        "differs from the checkpoint at 10",
    )
    .await;
    detected(
        &s,
        Some("drills"),
        Some(10),
        "differs from the epoch 1 anchor",
    )
    .await;
    s.g.stop().await;

    // An anchor row rewritten.
    let s = scenario().await;
    tamper(&s.db, "UPDATE anchors SET record = replace(record, '\"mesh\":\"vaultmesh-test\"', '\"mesh\":\"vaultmesh-evil\"') WHERE epoch = 1").await;
    detected(&s, None, Some(1), "anchor_hash does not match").await;
    detected(&s, None, Some(1), "journal line for epoch 1 differs").await;
    s.g.stop().await;

    // The journal truncated, then edited.
    let s = scenario().await;
    std::fs::write(&s.journal, "").unwrap_or_else(|e| panic!("{e}"));
    detected(&s, None, Some(1), "has no line for epoch 1").await;
    let good = {
        let rec =
            s.db.store
                .anchor(1)
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("no epoch 1"));
        rec.record.stored_text().unwrap_or_default()
    };
    std::fs::write(
        &s.journal,
        format!("{}\n", good.replacen("\"epoch\":1", "\"epoch\":1 ", 1)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    detected(&s, None, Some(1), "differs from the stored record").await;
    s.g.stop().await;
}
