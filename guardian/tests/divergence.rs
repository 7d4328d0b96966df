//! Divergence detection: each way of rewriting history is found by one verification pass,
//! named by scroll and size, raised in the gauge and as an `anchor_divergence` receipt, and
//! the gauge stays 1 until an operator acknowledges it.
//! (One test per binary: the seed's metrics are process-wide, so the scenarios run in turn.)

mod common;

use common::{append, metric, metrics, post, post_as_leader, TestGuardian};
use ledger::receipt::ReceiptDraft;
use ledger::storage::{AnchorStore, CheckpointStore, ReceiptLog, TileStore};
use ledger::testing::TestDb;
use serde_json::Value;

/// Ten receipts in `drills`, signed at 10 and anchored in epoch 1 (journaled), intact.
async fn scenario() -> TestGuardian {
    let t = common::start(|_, _| {}).await;
    append(&t.db.store, "drills", 10).await;
    common::checkpoint_at(&t.db.store, "drills", 10).await;
    let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
    let covers = body["record"]["scrolls"].as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x["scroll"] == "drills" && x["tree_size"] == 10)
    });
    assert!(s == 200 && covers, "{s} {body}");
    let (s, v) = post_as_leader(&t, "/v1/guardian/verify").await;
    assert_eq!((s, &v["intact"]), (200, &Value::Bool(true)), "{v}");
    t
}

/// Runs SQL as the schema owner with the append-only triggers switched off (what a
/// superuser could do).
async fn tamper(db: &TestDb, sql: &str) {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    c.batch_execute(&format!(
        "ALTER TABLE receipts DISABLE TRIGGER USER; ALTER TABLE anchors DISABLE TRIGGER USER; \
         ALTER TABLE tree_tiles DISABLE TRIGGER USER; \
         {sql}; \
         ALTER TABLE receipts ENABLE TRIGGER USER; ALTER TABLE anchors ENABLE TRIGGER USER; \
         ALTER TABLE tree_tiles ENABLE TRIGGER USER;"
    ))
    .await
    .unwrap_or_else(|e| panic!("tamper: {e:?}"));
}

/// One verification pass must report a finding matching `scroll`, `size` and `detail`.
async fn detected(s: &TestGuardian, scroll: Option<&str>, size: Option<u64>, detail: &str) {
    let (status, v) = post(s.g.api_addr, "/v1/guardian/verify", Some(&s.admin)).await;
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

/// The ids of the findings not yet acknowledged.
async fn open_ids(s: &TestGuardian) -> Vec<String> {
    let (st, v) = ledger::testing::call(
        s.g.api_addr,
        "GET",
        "/v1/guardian/divergence",
        Some(&s.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["acknowledged"] == false)
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect()
}

/// Acknowledges exactly `ids`.
async fn acknowledge(s: &TestGuardian, ids: &[String]) -> (u16, Value) {
    let body = serde_json::json!({ "findings": ids }).to_string();
    ledger::testing::call(
        s.g.api_addr,
        "POST",
        "/v1/guardian/divergence/ack",
        Some(&s.admin),
        &[],
        &body,
    )
    .await
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
    let divergence = |text: &str| metric(text, "vaultmesh_guardian_proofchain_divergence");
    let m = metrics(s.g.metrics_addr).await;
    assert_eq!(divergence(&m), Some(1.0));
    let open = open_ids(&s).await;
    assert!(!open.is_empty());
    let (st, ack) = acknowledge(&s, &open).await;
    assert_eq!(st, 200, "{ack}");
    let m = metrics(s.g.metrics_addr).await;
    assert_eq!(divergence(&m), Some(0.0), "acknowledged");
    detected(&s, Some("drills"), Some(3), "stored leaf hash").await;
    let m = metrics(s.g.metrics_addr).await;
    assert_eq!(
        divergence(&m),
        Some(0.0),
        "an acknowledged finding does not raise it again"
    );
    // The acknowledgement is in the ledger, naming the admin key, and survives a restart.
    let acks =
        s.db.store
            .receipts_of_type("guardian", guardian::DIVERGENCE_ACK)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(acks.len(), 1);
    let acked = &acks[0].receipt.payload;
    let ids = acked["findings"].as_array().map_or(0, Vec::len);
    assert!(ids >= 1 && acked["count"] == ids, "{acked:?}");
    assert!(acks[0].receipt.payload["acknowledged_by"]
        .as_str()
        .is_some_and(|k| k.starts_with("key_")));
    let s = s.restarted().await;
    detected(&s, Some("drills"), Some(3), "stored leaf hash").await;
    let m = metrics(s.g.metrics_addr).await;
    assert_eq!(
        divergence(&m),
        Some(0.0),
        "still acknowledged after a restart"
    );
    assert!(open_ids(&s).await.is_empty(), "nothing left to acknowledge");
    let (st, ack) = acknowledge(&s, &open).await;
    assert_eq!(
        (st, ack["error"]["code"].as_str()),
        (400, Some("already_acknowledged")),
        "{ack}"
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
    let m = metrics(s.g.metrics_addr).await;
    assert_eq!(divergence(&m), Some(1.0), "a new finding raises it again");
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
            .tree_root(scroll.scroll_ref(), 10)
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
