//! The Postgres store against a real server: gap-free concurrent appends, append-only
//! enforcement, idempotency, integrity on read, the stored tree, checkpoints, anchors,
//! API keys and proof bundles. Each test gets its own database.

use ledger::checkpoint::Checkpoint;
use ledger::hash::{to_hex, Hash, Sha3Hasher};
use ledger::merkle::{verify_consistency, verify_inclusion, MemoryTree};
use ledger::note::NoteSigner;
use ledger::proofchain::{AnchorRecord, AnchoredScroll, GENESIS_PREV};
use ledger::receipt::{leaf_hash, ReceiptDraft};
use ledger::storage::{AnchorStore, CachedTiles, CheckpointStore, KeyStore, ReceiptLog, TileStore};
use ledger::store::{AppendOutcome, NewReceipt, Role, StoreError};
use ledger::testing::{admit, Rng, TestDb};
use sha3::Sha3_256;
use std::collections::HashSet;

fn draft(i: u64) -> ReceiptDraft {
    ReceiptDraft::new("drill_completed", serde_json::json!({ "i": i, "ok": true }))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn item(i: u64, key: Option<&str>, req: Option<Hash>) -> NewReceipt {
    NewReceipt {
        draft: draft(i),
        submitter: "key_test".into(),
        idempotency_key: key.map(str::to_string),
        request_hash: req,
    }
}

async fn db() -> TestDb {
    TestDb::new()
        .await
        .unwrap_or_else(|e| panic!("test database: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_get_gap_free_positions() {
    let db = db().await;
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut written = 0u64;
            let mut batch = 1 + (w as usize % 5);
            while written < 1000 {
                let n = batch.min((1000 - written) as usize) as u64;
                let items = (0..n)
                    .map(|k| item(w * 1000 + written + k, None, None))
                    .collect();
                let out = store.append_receipts(admit("drills", items), true).await?;
                assert_eq!(out.len() as u64, n);
                written += n;
                batch = batch % 37 + 3;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let rows = owner
        .query(
            "SELECT r.seq, r.leaf, r.leaf_hash FROM receipts r JOIN scrolls s ON s.id = r.scroll_id \
             WHERE s.name = 'drills' ORDER BY r.seq",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 8000);
    let mut payload_ids = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let seq: i64 = row.get(0);
        let leaf: Vec<u8> = row.get(1);
        let lh: Vec<u8> = row.get(2);
        assert_eq!(seq, i as i64, "gap or duplicate at {i}");
        assert_eq!(lh, leaf_hash(&leaf).to_vec(), "leaf hash of seq {seq}");
        let receipt = ledger::receipt::Receipt::from_leaf(&leaf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(receipt.seq, seq as u64);
        payload_ids.insert(receipt.payload["i"].to_string());
    }
    assert_eq!(
        payload_ids.len(),
        8000,
        "every submitted receipt stored exactly once"
    );
    let info = db
        .store
        .scroll("drills")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.size, 8000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_at_writes_only_when_the_head_matches_and_pipelines() {
    let db = db().await;
    let store = &db.store;
    let items = |from: u64, n: u64| (from..from + n).map(|i| item(i, None, None)).collect();
    // Wrong expectations write nothing and hand the items back.
    for wrong in [1, 7] {
        let back = store
            .append_at(wrong, admit("drills", items(0, 3)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.err().map(|v| v.len()), Some(3));
    }
    assert_eq!(store.scroll("drills").await.map(|s| s.size).ok(), Some(0));
    // Keyed items are never written this way.
    let keyed = store
        .append_at(0, admit("drills", vec![item(0, Some("k"), None)]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(keyed.is_err());
    // Two groups in flight behind a held head-row lock: the second waits for the first,
    // then finds the head where it expected it.
    let mut owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let lock = owner.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    lock.execute(
        "SELECT 1 FROM scrolls WHERE name = 'drills' FOR UPDATE",
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let watcher = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let mut tasks = Vec::new();
    for g in 0..2u64 {
        let (store, batch) = (store.clone(), items(g * 5, 5));
        tasks.push(tokio::spawn(async move {
            store.append_at(g * 5, admit("drills", batch)).await
        }));
        wait_for_lock_waiters(&watcher, g + 1).await;
    }
    lock.commit().await.unwrap_or_else(|e| panic!("{e}"));
    for t in tasks {
        let out = t
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.map(|o| o.len()).ok(), Some(5), "both groups written");
    }
    let listed = store
        .list_receipts("drills", 0, 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.len(), 10);
    for (i, r) in listed.iter().enumerate() {
        assert_eq!(r.receipt.seq, i as u64, "gap-free and integrity-checked");
        assert_eq!(
            r.receipt.payload["i"],
            serde_json::json!(i),
            "in submission order"
        );
    }
}

/// Waits until `n` sessions of this database are waiting on a lock.
async fn wait_for_lock_waiters(client: &tokio_postgres::Client, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let row = client
            .query_one(
                "SELECT count(DISTINCT l.pid) FROM pg_locks l \
                 JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE NOT l.granted AND a.datname = current_database()",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if row.get::<_, i64>(0) as u64 >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} lock waiters never appeared"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn proofs_through_the_tile_cache_match_postgres_as_the_tree_grows() {
    let db = db().await;
    let prefix = format!("vmtest:tiles:{}:{}:", std::process::id(), db.name);
    let cache = ledger::cache::Cache::new(
        Some(&ledger::testing::redis_url()),
        ledger::cache::CacheOptions {
            prefix: prefix.clone(),
            ..Default::default()
        },
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cached = CachedTiles::new(std::sync::Arc::new(db.store.clone()), cache.clone(), 0);
    // A memo smaller than the tree, so that entries are also evicted.
    let memoed = CachedTiles::new(std::sync::Arc::new(db.store.clone()), cache.clone(), 8);
    let scroll = db
        .store
        .scroll("drills")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut memory = MemoryTree::<Sha3_256>::new(Vec::new());
    let mut size = 0u64;
    let mut rng = Rng(7);
    // Grow in uneven steps so cached right-edge tiles are later extended in Postgres.
    for step in [5u64, 11, 16, 200, 37, 300] {
        let leaves: Vec<Hash> = (size..size + step)
            .map(|i| Sha3Hasher::leaf(&i.to_be_bytes()))
            .collect();
        for l in &leaves {
            memory.push(*l);
        }
        size = db
            .store
            .append_tree(scroll.id, size, leaves)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..20 {
            let n = 1 + rng.below(size);
            let i = rng.below(n);
            for cached in [&cached, &memoed, &memoed] {
                let via_cache = cached
                    .inclusion_proof(scroll.scroll_ref(), i, n)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let direct = db
                    .store
                    .inclusion_proof(scroll.scroll_ref(), i, n)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(via_cache, direct, "inclusion {i} in {n}");
                let m = rng.below(n + 1);
                let c1 = cached.consistency_proof(scroll.scroll_ref(), m, n).await;
                let c2 = db.store.consistency_proof(scroll.scroll_ref(), m, n).await;
                assert_eq!(c1.ok(), c2.ok(), "consistency {m}..{n}");
                assert_eq!(
                    cached.tree_root(scroll.scroll_ref(), n).await.ok(),
                    memory.root(n)
                );
            }
        }
        // Even with every tile of the current tree cached, a size beyond it is refused.
        for cached in [&cached, &memoed] {
            assert!(matches!(
                cached
                    .inclusion_proof(scroll.scroll_ref(), 0, size + 1)
                    .await,
                Err(StoreError::BeyondTree { .. })
            ));
        }
    }
    let names: Vec<String> = vec![format!("tile:{}:0:0", scroll.id)];
    assert_eq!(
        cache.get_many(&names).await[0].as_ref().map(Vec::len),
        Some(512),
        "a full tile was cached"
    );
    // A corrupted (short) cached tile is a miss, not an error.
    cache.put_many(&[(names[0].clone(), vec![0u8; 32])]).await;
    let direct = db
        .store
        .inclusion_proof(scroll.scroll_ref(), 9, size)
        .await
        .ok();
    assert_eq!(
        cached
            .inclusion_proof(scroll.scroll_ref(), 9, size)
            .await
            .ok(),
        direct
    );
}

#[tokio::test]
async fn application_role_cannot_rewrite_history() {
    let db = db().await;
    db.store
        .append_receipts(admit("drills", vec![item(1, None, None)]), true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let scroll = db
        .store
        .scroll("drills")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.store
        .integrate(scroll.id, 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let root = db
        .store
        .tree_root(scroll.scroll_ref(), 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.store
        .insert_checkpoint(scroll.id, 1, &root, "note\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rec = AnchorRecord::build(1, "m", "2026-11-23T00:00:00.000000Z", vec![], GENESIS_PREV)
        .unwrap_or_else(|e| panic!("{e}"));
    db.store
        .insert_anchor(&rec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sink = ledger::store::SinkResult {
        sink: "journal".into(),
        ok: true,
        result: serde_json::json!({}),
    };
    db.store
        .insert_sink_result(1, &sink)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    for role in ledger::store::DbRole::ALL {
        let app = db.role_client(role).await.unwrap_or_else(|e| panic!("{e}"));
        for table in ["receipts", "checkpoints", "anchors", "anchor_sinks"] {
            for stmt in [
                format!("UPDATE {table} SET created_at = created_at"),
                format!("DELETE FROM {table}"),
                format!("TRUNCATE {table} CASCADE"),
            ] {
                let stmt = stmt.replace(
                    "SET created_at = created_at",
                    if table == "receipts" {
                        "SET type = type"
                    } else {
                        "SET created_at = created_at"
                    },
                );
                let err = app.batch_execute(&stmt).await;
                assert!(err.is_err(), "{} ran: {stmt}", role.name());
                // The schema owner is stopped by the triggers too.
                if !stmt.starts_with("TRUNCATE") || table != "anchor_sinks" {
                    assert!(
                        owner.batch_execute(&stmt).await.is_err(),
                        "owner ran: {stmt}"
                    );
                }
            }
        }
        for stmt in [
            "DELETE FROM scrolls WHERE name = 'drills'",
            "TRUNCATE scrolls CASCADE",
        ] {
            assert!(
                app.batch_execute(stmt).await.is_err(),
                "{} ran: {stmt}",
                role.name()
            );
            assert!(
                owner.batch_execute(stmt).await.is_err(),
                "owner ran: {stmt}"
            );
        }
    }
    let n: i64 = owner
        .query_one("SELECT count(*) FROM receipts", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_default();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn idempotency_keys_replay_or_conflict_and_write_nothing_on_failure() {
    let db = db().await;
    let h1 = Sha3Hasher::plain(b"body-1");
    let h2 = Sha3Hasher::plain(b"body-2");
    let first = db
        .store
        .append_receipts(
            admit("compliance", vec![item(1, Some("k1"), Some(h1))]),
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let AppendOutcome::Created(original) = &first[0] else {
        panic!("not created: {first:?}")
    };
    let again = db
        .store
        .append_receipts(
            admit("compliance", vec![item(1, Some("k1"), Some(h1))]),
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again[0], AppendOutcome::Replayed(original.clone()));

    let before = db
        .store
        .scroll("compliance")
        .await
        .map(|s| s.size)
        .unwrap_or_default();
    let err = db
        .store
        .append_receipts(
            admit(
                "compliance",
                vec![item(2, Some("k2"), Some(h2)), item(3, Some("k1"), Some(h2))],
            ),
            true,
        )
        .await;
    assert!(matches!(err, Err(StoreError::IdempotencyConflict(k)) if k == "k1"));
    let after = db
        .store
        .scroll("compliance")
        .await
        .map(|s| s.size)
        .unwrap_or_default();
    assert_eq!(before, after, "a rejected batch writes nothing");

    let mixed = db
        .store
        .append_receipts(
            admit(
                "compliance",
                vec![
                    item(4, Some("k1"), Some(h2)),
                    item(5, Some("k3"), Some(h1)),
                    item(5, Some("k3"), Some(h1)),
                ],
            ),
            false,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mixed[0], AppendOutcome::Conflict("k1".into()));
    let AppendOutcome::Created(created) = &mixed[1] else {
        panic!("{mixed:?}")
    };
    assert_eq!(mixed[2], AppendOutcome::Replayed(created.clone()));
    assert_eq!(created.receipt.seq, 1);

    assert!(matches!(
        db.store
            .append_receipts(admit("nope", vec![item(1, None, None)]), true)
            .await,
        Err(StoreError::UnknownScroll(_))
    ));
}

#[tokio::test]
async fn tampered_rows_are_never_served_as_good() {
    let db = db().await;
    db.store
        .append_receipts(
            admit("drills", (0..3).map(|i| item(i, None, None)).collect()),
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let good = db
        .store
        .receipt("drills", 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(good.is_some());
    let by_hash = db
        .store
        .receipt_by_leaf_hash(&good.as_ref().map(|g| g.leaf_hash).unwrap_or_default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_hash, good);
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute(
            "ALTER TABLE receipts DISABLE TRIGGER USER; \
             UPDATE receipts SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), '\"i\":1', '\"i\":9'), 'UTF8') WHERE seq = 1; \
             ALTER TABLE receipts ENABLE TRIGGER USER;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        db.store.receipt("drills", 1).await,
        Err(StoreError::Integrity(_))
    ));
    assert!(matches!(
        db.store.list_receipts("drills", 0, 10).await,
        Err(StoreError::Integrity(_))
    ));
    assert!(db
        .store
        .receipt("drills", 2)
        .await
        .is_ok_and(|r| r.is_some()));
}

#[tokio::test]
async fn stored_tree_matches_memory_for_random_sizes_up_to_100k() {
    let db = db().await;
    let scroll = db
        .store
        .scroll("observability")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut mem = MemoryTree::<Sha3_256>::new(Vec::new());
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut size = 0u64;
    let mut remembered: Vec<(u64, u64, Vec<Hash>, Hash)> = Vec::new();
    let batches = [
        1u64, 2, 253, 256, 1, 511, 4096, 30_000, 777, 29_103, 1_000, 34_000,
    ];
    for (step, b) in batches.iter().enumerate() {
        let leaves: Vec<Hash> = (size..size + b)
            .map(|i| Sha3Hasher::leaf(&i.to_be_bytes()))
            .collect();
        for l in &leaves {
            mem.push(*l);
        }
        size = db
            .store
            .append_tree(scroll.id, size, leaves)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(size, mem.size());
        for _ in 0..6 {
            let n = 1 + rng.below(size);
            let root = db
                .store
                .tree_root(scroll.scroll_ref(), n)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(Some(root), mem.root(n), "root {n} after step {step}");
            let idx = rng.below(n);
            let p = db
                .store
                .inclusion_proof(scroll.scroll_ref(), idx, n)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(Some(p.path.clone()), mem.inclusion(idx, n));
            let leaf = Sha3Hasher::leaf(&idx.to_be_bytes());
            assert!(verify_inclusion::<Sha3_256>(&leaf, idx, n, &p.path, &root).is_ok());
            let m = rng.below(n + 1);
            let c = db
                .store
                .consistency_proof(scroll.scroll_ref(), m, n)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(Some(c.path.clone()), mem.consistency(m, n));
            let old_root = mem.root(m).unwrap_or_default();
            assert!(
                m == 0 || verify_consistency::<Sha3_256>(m, n, &c.path, &old_root, &root).is_ok()
            );
            remembered.push((idx, n, p.path, root));
        }
    }
    assert_eq!(size, 100_000);
    // Proofs for old sizes are unchanged, and still verify, after the tree grew.
    for (idx, n, path, root) in remembered {
        let p = db
            .store
            .inclusion_proof(scroll.scroll_ref(), idx, n)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.path, path);
        let leaf = Sha3Hasher::leaf(&idx.to_be_bytes());
        assert!(verify_inclusion::<Sha3_256>(&leaf, idx, n, &path, &root).is_ok());
    }
    assert_eq!(
        db.store.tree_root(scroll.scroll_ref(), 0).await.ok(),
        Some(Sha3Hasher::empty_root())
    );
    assert!(matches!(
        db.store.tree_root(scroll.scroll_ref(), size + 1).await,
        Err(StoreError::BeyondTree { .. })
    ));
    assert!(matches!(
        db.store
            .append_tree(scroll.id, size - 1, vec![[0u8; 32]])
            .await,
        Err(StoreError::TreeSizeMismatch { .. })
    ));
}

#[tokio::test]
async fn integration_checkpoints_anchors_and_bundles() {
    let db = db().await;
    let signer = NoteSigner::from_seed("vaultmesh-test/guardian", [9u8; 32])
        .unwrap_or_else(|e| panic!("{e}"));
    let verifier = signer.verifier();
    db.store
        .append_receipts(
            admit("drills", (0..300).map(|i| item(i, None, None)).collect()),
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let scroll = db
        .store
        .scroll("drills")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        db.store.integrate(scroll.id, 200).await.ok(),
        Some((0, 200))
    );
    assert_eq!(
        db.store.integrate(scroll.id, 200).await.ok(),
        Some((200, 300))
    );
    let leaves: Vec<Hash> = db
        .store
        .list_receipts("drills", 0, 1000)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| r.leaf_hash)
        .collect();
    let mem = MemoryTree::<Sha3_256>::new(leaves);
    let root = db
        .store
        .tree_root(scroll.scroll_ref(), 300)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Some(root), mem.root(300));

    for size in [200u64, 300] {
        let r = db
            .store
            .tree_root(scroll.scroll_ref(), size)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let cp = Checkpoint {
            origin: Checkpoint::origin_for("vaultmesh-test", "drills"),
            size,
            root: r,
        };
        let note = cp.sign(&signer).unwrap_or_else(|e| panic!("{e}"));
        db.store
            .insert_checkpoint(scroll.id, size, &r, &note)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let latest = db
        .store
        .latest_checkpoint("drills")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(latest.as_ref().map(|c| c.tree_size), Some(300));

    // Before any anchor, the bundle proves against the latest checkpoint.
    let vkey = verifier.to_vkey();
    let b = db
        .store
        .proof_bundle("drills", 250, &vkey)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = b.unwrap_or_else(|| panic!("no bundle"));
    let verdict = b.verify(&verifier).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (verdict.seq, verdict.tree_size, verdict.anchored_epoch),
        (250, 300, None)
    );

    // Anchor epoch 1 at size 200; a receipt below 200 is proven against the anchored checkpoint.
    let entry = AnchoredScroll {
        scroll: "drills".into(),
        tree_size: 200,
        root: to_hex(&mem.root(200).unwrap_or_default()),
    };
    let mut rec = AnchorRecord::build(
        1,
        "vaultmesh-test",
        "2026-11-23T00:00:00.000000Z",
        vec![entry],
        GENESIS_PREV,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    rec.signature = Some(rec.sign_head(&signer).unwrap_or_else(|e| panic!("{e}")));
    db.store
        .insert_anchor(&rec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        db.store.insert_anchor(&rec).await.is_err(),
        "one record per epoch"
    );
    db.store
        .insert_sink_result(
            1,
            &ledger::store::SinkResult {
                sink: "journal".into(),
                ok: true,
                result: serde_json::json!({"line": 1}),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = db
        .store
        .anchor(1)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no anchor"));
    assert_eq!(stored.record.anchor_hash, rec.anchor_hash);
    assert_eq!(stored.record.sinks.len(), 1);
    stored.record.verify().unwrap_or_else(|e| panic!("{e}"));

    let b = db
        .store
        .proof_bundle("drills", 10, &vkey)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = b.unwrap_or_else(|| panic!("no bundle"));
    let verdict = b.verify(&verifier).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((verdict.tree_size, verdict.anchored_epoch), (200, Some(1)));
    let json = serde_json::to_string(&b).unwrap_or_default();
    let back: ledger::bundle::ProofBundle =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        back.verify(&verifier).is_ok(),
        "bundles survive a JSON round trip"
    );

    let mut t = b.clone();
    t.leaf = t.leaf.replace("\"i\":10", "\"i\":11");
    assert!(t.verify(&verifier).is_err(), "edited leaf");
    let mut t = b.clone();
    t.inclusion.path[0][0] ^= 1;
    assert!(t.verify(&verifier).is_err(), "edited path");
    let mut t = b.clone();
    if let Some(a) = t.anchor.as_mut() {
        a.scrolls[0].tree_size = 201;
    }
    assert!(t.verify(&verifier).is_err(), "edited anchor");
    let other = NoteSigner::from_seed("vaultmesh-test/guardian", [8u8; 32])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(b.verify(&other.verifier()).is_err(), "wrong key");
    assert!(db
        .store
        .proof_bundle("drills", 300, &vkey)
        .await
        .unwrap_or_default()
        .is_none());
}

#[tokio::test]
async fn api_keys_store_only_hashes_and_can_be_revoked() {
    let db = db().await;
    let created = db
        .store
        .create_api_key(Role::Writer, Some(vec!["drills".into()]), "ci")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let found = db
        .store
        .api_key_by_token(&created.token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        found.as_ref().map(|k| k.id.clone()),
        Some(created.key.id.clone())
    );
    assert_eq!(
        found.map(|k| k.scrolls),
        Some(Some(vec!["drills".to_string()]))
    );
    assert!(db
        .store
        .api_key_by_token("vm_wrong")
        .await
        .unwrap_or_default()
        .is_none());
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let leaked: i64 = owner
        .query_one(
            "SELECT count(*) FROM api_keys WHERE position($1::bytea in key_hash) > 0 OR label = $2",
            &[&created.token.as_bytes(), &created.token],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(1);
    assert_eq!(leaked, 0, "the token itself is never stored");
    assert!(db
        .store
        .revoke_api_key(&created.key.id)
        .await
        .unwrap_or_default());
    assert!(!db
        .store
        .revoke_api_key(&created.key.id)
        .await
        .unwrap_or(true));
    assert!(db
        .store
        .api_key_by_token(&created.token)
        .await
        .unwrap_or_default()
        .is_none());
}

#[tokio::test]
async fn scrolls_can_be_created_once() {
    let db = db().await;
    let names: Vec<String> = db
        .store
        .list_scrolls()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names.len(), ledger::receipt::PRECREATED_SCROLLS.len());
    for pre in ledger::receipt::PRECREATED_SCROLLS {
        assert!(names.iter().any(|n| n == pre), "{pre} pre-created");
    }
    let s = db
        .store
        .create_scroll("audits-2026")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.size, s.tree_size), (0, 0));
    assert!(matches!(
        db.store.create_scroll("audits-2026").await,
        Err(StoreError::ScrollExists(_))
    ));
}
