//! The guardian against a real Postgres: integrates new receipts and signs consistent
//! checkpoints for every scroll, anchors epochs on demand into a hash-linked ProofChain and
//! the journal, writes its own receipts, and reports it all in its seed metrics.
//! (One test per binary: the seed's metrics are process-wide.)

mod common;

use common::{api_key, append, checkpoint_at, metric, metrics, post, wait_metric};
use ledger::checkpoint::Checkpoint;
use ledger::hash::{to_hex, Hash};
use ledger::merkle::{verify_consistency, MemoryTree};
use ledger::proofchain::{verify_chain, AnchorRecord};
use ledger::storage::{AnchorStore, ReceiptLog, TileStore};
use ledger::store::{Role, Store};
use sha3::Sha3_256;

const PATH: &str = "/v1/guardian/anchor";

async fn memory_root(store: &Store, scroll: &str, size: u64) -> Hash {
    let leaves = store
        .list_receipts(scroll, 0, 1000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tree = MemoryTree::<Sha3_256>::new(leaves.iter().map(|r| r.leaf_hash).collect());
    tree.root(size)
        .unwrap_or_else(|| panic!("no root at {size}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrates_signs_and_anchors_into_the_proofchain_and_journal() {
    let t = common::start(|_, _| {}).await;
    let (db, g, signer, journal) = (&t.db, &t.g, &t.signer, t.journal.clone());
    append(&db.store, "drills", 37).await;

    // Every scroll gets a signed checkpoint; drills at 37 with the root of its leaves.
    let first = checkpoint_at(&db.store, "drills", 37).await;
    let verifier = signer.verifier();
    let cp = Checkpoint::verify(&first.note, &verifier, Some("vaultmesh-test/drills"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (cp.size, cp.root),
        (37, memory_root(&db.store, "drills", 37).await)
    );
    // (`psi` holds the guardian's first phase_changed receipt.)
    for scroll in ledger::receipt::PRECREATED_SCROLLS {
        if !["drills", "guardian", "psi"].contains(&scroll) {
            checkpoint_at(&db.store, scroll, 0).await;
        }
    }
    checkpoint_at(&db.store, "psi", 1).await;
    // Growth: a new checkpoint, consistent with the first.
    append(&db.store, "drills", 20).await;
    let second = checkpoint_at(&db.store, "drills", 57).await;
    assert_eq!(second.root, memory_root(&db.store, "drills", 57).await);
    let scroll = db
        .store
        .scroll("drills")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let proof = db
        .store
        .consistency_proof(scroll.scroll_ref(), 37, 57)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    verify_consistency::<Sha3_256>(37, 57, &proof.path, &first.root, &second.root)
        .unwrap_or_else(|e| panic!("{e}"));

    // 57 drills and psi's first phase_changed receipt.
    wait_metric(
        g.metrics_addr,
        "vaultmesh_guardian_receipts_since_anchor",
        58.0,
    )
    .await;
    let m = metrics(g.metrics_addr).await;
    assert_eq!(
        metric(&m, "vaultmesh_guardian_anchor_status"),
        Some(0.0),
        "idle before any epoch"
    );

    // On-demand epochs need an admin key.
    let admin = t.admin.clone();
    let writer = api_key(&db.store, Role::Writer).await;
    assert_eq!(post(g.api_addr, PATH, None).await.0, 401);
    assert_eq!(post(g.api_addr, PATH, Some("vm_nope")).await.0, 401);
    assert_eq!(post(g.api_addr, PATH, Some(&writer)).await.0, 403);
    let (s, one) = post(g.api_addr, PATH, Some(&admin)).await;
    assert_eq!(s, 200, "{one}");
    let rec1: AnchorRecord =
        serde_json::from_value(one["record"].clone()).unwrap_or_else(|e| panic!("{e}"));
    rec1.verify().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rec1.epoch, 1);
    let drills = rec1
        .scroll("drills")
        .unwrap_or_else(|| panic!("drills not anchored"));
    assert_eq!(
        (drills.tree_size, drills.root.as_str()),
        (57, to_hex(&second.root).as_str())
    );
    assert_eq!(
        rec1.scrolls.len(),
        ledger::receipt::PRECREATED_SCROLLS.len()
    );

    // A second epoch links to the first and covers the guardian's own anchor_success event.
    let (s, two) = post(g.api_addr, PATH, Some(&admin)).await;
    assert_eq!(s, 200, "{two}");
    let stored = db
        .store
        .anchors(1, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<AnchorRecord> = stored.iter().map(|a| a.record.clone()).collect();
    assert_eq!(records.len(), 2);
    verify_chain(&records).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(records[0].anchor_hash, rec1.anchor_hash);
    let events = db
        .store
        .list_receipts("guardian", 0, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].receipt.kind, "anchor_success");
    assert_eq!(events[0].receipt.payload["epoch"], 1);
    assert_eq!(events[0].receipt.submitter, "guardian");
    assert_eq!(records[1].scroll("guardian").map(|s| s.tree_size), Some(1));
    for a in &stored {
        assert!(
            a.record
                .sinks
                .iter()
                .any(|s| s["sink"] == "journal" && s["ok"] == true),
            "{:?}",
            a.record.sinks
        );
    }

    // The journal holds exactly the stored records, one line each, in order.
    let text = std::fs::read_to_string(&journal).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<&str> = text.lines().collect();
    let expected: Vec<String> = records
        .iter()
        .map(|r| r.stored_text().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(lines, expected);

    // The seed's guardian metrics tell the same story.
    let m = metrics(g.metrics_addr).await;
    assert_eq!(metric(&m, "vaultmesh_guardian_anchor_status"), Some(2.0));
    assert_eq!(metric(&m, "vaultmesh_guardian_anchor_epoch"), Some(2.0));
    assert_eq!(metric(&m, "vaultmesh_guardian_anchors_total"), Some(2.0));
    assert_eq!(
        metric(&m, "vaultmesh_guardian_proofchain_divergence"),
        Some(0.0)
    );
    assert!(metric(&m, "vaultmesh_guardian_last_anchor_timestamp").unwrap_or(0.0) > 1.7e9);
    assert_eq!(
        metric(&m, "vaultmesh_guardian_anchor_duration_seconds_count"),
        Some(2.0)
    );
    let drills_series = format!(
        "vaultmesh_guardian_proofchain_root_info{{root_hash=\"{}\",scroll=\"drills\"}}",
        to_hex(&second.root)
    );
    assert_eq!(metric(&m, &drills_series), Some(1.0), "{m}");
    for scroll in ledger::receipt::PRECREATED_SCROLLS {
        let n = m
            .lines()
            .filter(|l| {
                l.starts_with("vaultmesh_guardian_proofchain_root_info{")
                    && l.contains(&format!("scroll=\"{scroll}\""))
            })
            .count();
        assert_eq!(n, 1, "one root series for {scroll}");
    }
    assert!(m.contains("vaultmesh_guardian_sentinel_events_total{event_type=\"leadership_acquired\",severity=\"info\"} 1"), "{m}");

    // Receipts since the last epoch: four new drills plus the epoch-2 anchor_success event.
    append(&db.store, "drills", 4).await;
    checkpoint_at(&db.store, "drills", 61).await;
    checkpoint_at(&db.store, "guardian", 2).await;
    wait_metric(
        g.metrics_addr,
        "vaultmesh_guardian_receipts_since_anchor",
        5.0,
    )
    .await;
    t.g.stop().await;
}
