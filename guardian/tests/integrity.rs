//! The guardian signs only what it computed: receipt rows whose stored hash is not the hash
//! of their bytes, or whose bytes name another position, and tiles holding leaves that exist
//! nowhere, are never signed — each is a divergence finding (gauge, `anchor_divergence`
//! receipt, the findings route) while the other scrolls keep being signed; tiles that a
//! crashed pass left beyond the last checkpoint are re-verified from the receipts and then
//! signed. (One test per binary: the seed's metrics are process-wide.)

mod common;
mod forge;

use common::{append, checkpoint_at, post_as_leader, wait_metric, TestGuardian};
use forge::{insert, Row};
use ledger::hash::to_hex;
use ledger::receipt::leaf_hash;
use ledger::storage::{CheckpointStore, TileStore};
use ledger::testing::call;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const GAUGE: &str = "vaultmesh_guardian_proofchain_divergence";

/// The findings route's list.
async fn findings(t: &TestGuardian) -> Vec<Value> {
    let (s, v) = call(
        t.g.api_addr,
        "GET",
        "/v1/guardian/divergence",
        Some(&t.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["findings"].as_array().cloned().unwrap_or_default()
}

/// Waits until a finding for `scroll` at `size` whose detail contains `detail` is listed.
async fn reported(t: &TestGuardian, scroll: &str, size: u64, detail: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = findings(t).await;
        let hit = all.iter().find(|f| {
            f["scroll"] == scroll
                && f["size"] == size
                && f["detail"].as_str().is_some_and(|d| d.contains(detail))
        });
        if let Some(f) = hit {
            return f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no finding {scroll}@{size} '{detail}' in {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids listed in the guardian's `anchor_divergence` receipts.
async fn recorded_ids(t: &TestGuardian) -> Vec<String> {
    let events =
        t.db.store
            .receipts_of_type("guardian", "anchor_divergence")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    events
        .iter()
        .flat_map(|e| {
            e.receipt.payload["findings"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect()
}

async fn latest_size(t: &TestGuardian, scroll: &str) -> Option<u64> {
    t.db.store
        .latest_checkpoint(scroll)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|c| c.tree_size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_rows_and_tiles_are_never_signed_and_other_scrolls_carry_on() {
    let t = common::start(|_, _| {}).await;
    for s in ["ops", "audits", "logs", "tiles", "resumed"] {
        t.db.store
            .create_scroll(s)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for s in ["drills", "ops", "audits", "logs", "tiles"] {
        append(&t.db.store, s, 3).await;
        checkpoint_at(&t.db.store, s, 3).await;
    }
    let owner = t.db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));

    // drills/3: true bytes, but a stored hash that is not H(0x00‖leaf).
    let mut wrong_hash = Row::honest("drills", 3, "t", json!({"forged": "hash"}), "key_test");
    wrong_hash.leaf_hash = leaf_hash(b"some other leaf").to_vec();
    insert(&owner, &wrong_hash, None).await;
    // ops/3: bytes with their true hash, naming seq 7.
    let mut other_seq = Row::honest("ops", 7, "t", json!({"forged": "seq"}), "key_test");
    other_seq.seq = 3;
    insert(&owner, &other_seq, None).await;
    // audits/3: bytes with their true hash, naming drills/3.
    let mut other_scroll = Row::honest("drills", 3, "t", json!({"forged": "scroll"}), "key_test");
    other_scroll.scroll = "audits";
    insert(&owner, &other_scroll, None).await;
    // Honest receipts behind each of them.
    for s in ["drills", "ops", "audits"] {
        append(&t.db.store, s, 2).await;
    }
    // tiles: the tree grown by one leaf that exists nowhere (tile extended, size raised).
    let phantom = to_hex(&leaf_hash(b"a leaf that exists nowhere"));
    owner
        .batch_execute(&format!(
            "BEGIN; \
             UPDATE tree_tiles SET hashes = hashes || decode('{phantom}', 'hex') \
               WHERE scroll_id = (SELECT id FROM scrolls WHERE name = 'tiles') AND level = 0 AND idx = 0; \
             UPDATE trees SET size = 4 WHERE scroll_id = (SELECT id FROM scrolls WHERE name = 'tiles'); \
             COMMIT"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Every forgery is reported, each for its own scroll.
    wait_metric(t.g.metrics_addr, GAUGE, 1.0).await;
    let hash = reported(&t, "drills", 3, "stored leaf hash is not H(0x00 || leaf)").await;
    let seq = reported(&t, "ops", 3, "its bytes name position ops/7").await;
    let scroll = reported(&t, "audits", 3, "its bytes name position drills/3").await;
    let tiles = reported(&t, "tiles", 4, "holds 4 leaves but only 3 receipts").await;
    for f in [&hash, &seq, &scroll, &tiles] {
        assert_eq!(f["acknowledged"], false, "{f}");
        assert_eq!(f["first_seen_epoch"], 0, "{f}");
        let id = f["id"].as_str().unwrap_or_default().to_string();
        assert_eq!(id.len(), 64, "{f}");
        assert!(
            recorded_ids(&t).await.contains(&id),
            "{id} is in an anchor_divergence receipt"
        );
    }

    // Other scrolls keep being signed, the forged ones never beyond what was verified.
    append(&t.db.store, "logs", 5).await;
    checkpoint_at(&t.db.store, "logs", 8).await;
    append(&t.db.store, "logs", 2).await;
    checkpoint_at(&t.db.store, "logs", 10).await;
    for s in ["drills", "ops", "audits", "tiles"] {
        assert_eq!(
            latest_size(&t, s).await,
            Some(3),
            "{s} signed beyond its forgery"
        );
    }

    // A true receipt arrives at tiles/3: the stored tile still holds the phantom.
    append(&t.db.store, "tiles", 1).await;
    reported(&t, "tiles", 4, "the stored tiles give root").await;
    append(&t.db.store, "logs", 1).await;
    checkpoint_at(&t.db.store, "logs", 11).await;
    assert_eq!(latest_size(&t, "tiles").await, Some(3));

    // The epoch anchors the verified sizes only.
    let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
    assert_eq!(s, 200, "{body}");
    let anchored = |name: &str| {
        body["record"]["scrolls"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["scroll"] == name))
            .map(|x| x["tree_size"].clone())
    };
    for s in ["drills", "ops", "audits", "tiles"] {
        assert_eq!(anchored(s), Some(json!(3)), "{s}: {body}");
    }
    assert_eq!(anchored("logs"), Some(json!(11)), "{body}");

    // A crashed pass: the tree of `resumed` grown (correctly) while no guardian ran, and
    // never signed. The next guardian re-derives those leaves from the receipts and signs.
    checkpoint_at(&t.db.store, "resumed", 0).await;
    let t = t
        .restarted_after(async |db| {
            append(&db.store, "resumed", 4).await;
            let info = db
                .store
                .scroll("resumed")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let grown = db
                .leading_guardian_store()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .integrate(info.id, 100)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(grown, (0, 4));
            assert_eq!(
                db.store
                    .latest_checkpoint("resumed")
                    .await
                    .ok()
                    .flatten()
                    .map(|c| c.tree_size),
                Some(0),
                "signed empty, never at 4"
            );
        })
        .await;
    checkpoint_at(&t.db.store, "resumed", 4).await;
    // The findings outlive the restart, with their ids, still open.
    wait_metric(t.g.metrics_addr, GAUGE, 1.0).await;
    let after = findings(&t).await;
    for f in [&hash, &seq, &scroll, &tiles] {
        assert!(
            after
                .iter()
                .any(|a| a["id"] == f["id"] && a["acknowledged"] == false),
            "{f} after the restart: {after:#?}"
        );
    }
    t.g.stop().await;
}
