//! The guardian against a real Postgres: integrates new receipts and signs consistent
//! checkpoints for every scroll, anchors epochs on demand into a hash-linked ProofChain and
//! the journal, writes its own receipts, and reports it all in its seed metrics.
//! (One test per binary: the seed's metrics are process-wide.)

use guardian::GuardianArgs;
use ledger::checkpoint::Checkpoint;
use ledger::hash::{to_hex, Hash};
use ledger::merkle::{verify_consistency, MemoryTree};
use ledger::note::NoteSigner;
use ledger::proofchain::{verify_chain, AnchorRecord};
use ledger::receipt::ReceiptDraft;
use ledger::store::{NewReceipt, Role, Store};
use ledger::testing::{http, request, scratch_dir, service_config, TestDb};
use sha3::Sha3_256;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

async fn append(store: &Store, scroll: &str, n: u64) {
    let items = (0..n)
        .map(|i| NewReceipt {
            draft: ReceiptDraft::new("drill_completed", serde_json::json!({ "i": i }))
                .unwrap_or_else(|e| panic!("{e}")),
            submitter: "key_test".into(),
            idempotency_key: None,
            request_hash: None,
        })
        .collect();
    store
        .append_receipts(scroll, items, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until `scroll` has a checkpoint at `size`.
async fn checkpoint_at(store: &Store, scroll: &str, size: u64) -> ledger::store::StoredCheckpoint {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(cp)) = store.latest_checkpoint(scroll).await {
            if cp.tree_size == size {
                return cp;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {scroll} at {size}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn memory_root(store: &Store, scroll: &str, size: u64) -> Hash {
    let leaves = store
        .list_receipts(scroll, 0, 1000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tree = MemoryTree::<Sha3_256>::new(leaves.iter().map(|r| r.leaf_hash).collect());
    tree.root(size)
        .unwrap_or_else(|| panic!("no root at {size}"))
}

async fn post_anchor(addr: SocketAddr, token: Option<&str>) -> (u16, serde_json::Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let (status, text) = request(addr, "POST", "/v1/guardian/anchor", &headers, b"")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Waits until `/metrics` shows `series` at `value`.
async fn wait_metric(addr: SocketAddr, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = http(addr, "GET", "/metrics")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if metric(&m, series) == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value}: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrates_signs_and_anchors_into_the_proofchain_and_journal() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("guardian-anchor");
    let key = dir.join("guardian.key");
    let signer = NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    let journal = dir.join("proofchain.jsonl");
    let opts = GuardianArgs {
        signing_key_file: key,
        journal_path: journal.clone(),
        integrate_interval_ms: 50,
        epoch_interval_secs: 3600,
        ..GuardianArgs::default()
    };
    append(&db.store, "drills", 37).await;
    let g = guardian::start_with(
        service_config(&db.app_url),
        opts,
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Every scroll gets a signed checkpoint; drills at 37 with the root of its leaves.
    let first = checkpoint_at(&db.store, "drills", 37).await;
    let verifier = signer.verifier();
    let cp = Checkpoint::verify(&first.note, &verifier, Some("vaultmesh-test/drills"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (cp.size, cp.root),
        (37, memory_root(&db.store, "drills", 37).await)
    );
    for scroll in ledger::receipt::PRECREATED_SCROLLS {
        if !["drills", "guardian"].contains(&scroll) {
            checkpoint_at(&db.store, scroll, 0).await;
        }
    }
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
        .consistency_proof(scroll.id, 37, 57)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    verify_consistency::<Sha3_256>(37, 57, &proof.path, &first.root, &second.root)
        .unwrap_or_else(|e| panic!("{e}"));

    wait_metric(
        g.metrics_addr,
        "vaultmesh_guardian_receipts_since_anchor",
        57.0,
    )
    .await;
    let (_, m) = http(g.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        metric(&m, "vaultmesh_guardian_anchor_status"),
        Some(0.0),
        "idle before any epoch"
    );

    // On-demand epochs need an admin key.
    let admin = db
        .store
        .create_api_key(Role::Admin, None, "t")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    let writer = db
        .store
        .create_api_key(Role::Writer, None, "t")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    assert_eq!(post_anchor(g.api_addr, None).await.0, 401);
    assert_eq!(post_anchor(g.api_addr, Some("vm_nope")).await.0, 401);
    assert_eq!(post_anchor(g.api_addr, Some(&writer)).await.0, 403);
    let (s, one) = post_anchor(g.api_addr, Some(&admin)).await;
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
    let (s, two) = post_anchor(g.api_addr, Some(&admin)).await;
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
    let (s, m) = http(g.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s, 200);
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
    g.stop().await;
}
