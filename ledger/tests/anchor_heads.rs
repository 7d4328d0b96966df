//! Signed ProofChain heads in the store, against a real Postgres: a signed record and its head
//! are stored together and read back joined; epochs stored without a head are listed and get
//! one later as a new row (the record never changes); heads are append-only for the guardian's
//! role and not writable by the others; a bundle never carries an unsigned anchor.

use ledger::checkpoint::Checkpoint;
use ledger::hash::to_hex;
use ledger::note::NoteSigner;
use ledger::proofchain::{AnchorRecord, AnchoredScroll, GENESIS_PREV};
use ledger::storage::{AnchorStore, CheckpointStore, ReceiptLog, TileStore};
use ledger::store::{DbRole, Store};
use ledger::testing::{append_receipts, TestDb};

fn signer() -> NoteSigner {
    NoteSigner::from_seed("vaultmesh-test/guardian", [5u8; 32]).unwrap_or_else(|e| panic!("{e}"))
}

fn record(epoch: u64, scrolls: Vec<AnchoredScroll>, prev: &str) -> AnchorRecord {
    AnchorRecord::build(
        epoch,
        "vaultmesh-test",
        &format!("2026-11-23T00:00:0{epoch}.000000Z"),
        scrolls,
        prev,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn stored(store: &Store, epoch: u64) -> AnchorRecord {
    store
        .anchor(epoch)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no epoch {epoch}"))
        .record
}

#[tokio::test]
async fn heads_are_stored_with_their_record_or_added_later_and_never_changed() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let guardian = db
        .leading_guardian_store()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = signer();
    let v = s.verifier();

    let mut first = record(1, vec![], GENESIS_PREV);
    first.signature = Some(first.sign_head(&s).unwrap_or_else(|e| panic!("{e}")));
    guardian
        .insert_anchor(&first)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let back = stored(&guardian, 1).await;
    assert_eq!(back.signature, first.signature);
    back.verify_signed(&v).unwrap_or_else(|e| panic!("{e}"));

    let second = record(2, vec![], &first.anchor_hash);
    let third = record(3, vec![], &second.anchor_hash);
    for r in [&second, &third] {
        guardian
            .insert_anchor(r)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        guardian.epochs_without_head().await.ok(),
        Some(vec![2, 3]),
        "epochs stored without a head are listed"
    );
    let latest = guardian
        .latest_anchor()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no latest"));
    assert_eq!((latest.record.epoch, latest.record.signature), (3, None));
    assert!(guardian.anchor(4).await.unwrap_or_default().is_none());

    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let text_before: String = owner
        .query_one("SELECT record FROM anchors WHERE epoch = 2", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    let note = second.sign_head(&s).unwrap_or_else(|e| panic!("{e}"));
    let note3 = third.sign_head(&s).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        guardian
            .insert_anchor_heads(&[(2, note.clone()), (9, note3.clone())])
            .await
            .is_err(),
        "no head without its record"
    );
    assert_eq!(
        guardian.epochs_without_head().await.ok(),
        Some(vec![2, 3]),
        "heads are stored all or none"
    );
    guardian
        .insert_anchor_heads(&[(2, note.clone()), (3, note3)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guardian.epochs_without_head().await.ok(), Some(vec![]));
    stored(&guardian, 2)
        .await
        .verify_signed(&v)
        .unwrap_or_else(|e| panic!("{e}"));
    let text_after: String = owner
        .query_one("SELECT record FROM anchors WHERE epoch = 2", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(text_before, text_after, "the record never changes");
    assert!(!text_after.contains("signature"));

    assert!(
        guardian
            .insert_anchor_heads(&[(2, note.clone())])
            .await
            .is_err(),
        "one head per epoch"
    );
    let g = db
        .role_client(DbRole::Guardian)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for stmt in [
        "UPDATE anchor_heads SET note = note",
        "DELETE FROM anchor_heads",
        "TRUNCATE anchor_heads",
    ] {
        assert!(
            g.batch_execute(stmt).await.is_err(),
            "guardian role: {stmt}"
        );
    }
    let fourth = record(4, vec![], &third.anchor_hash);
    db.store
        .insert_anchor(&fourth)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let note4 = fourth.sign_head(&s).unwrap_or_else(|e| panic!("{e}"));
    for role in [DbRole::Portal, DbRole::Oracle] {
        let store = db.role_store(role).unwrap_or_else(|e| panic!("{e}"));
        let fifth = record(5, vec![], &fourth.anchor_hash);
        assert!(
            store.insert_anchor(&fifth).await.is_err(),
            "{role:?} cannot anchor"
        );
        assert!(
            store
                .insert_anchor_heads(&[(4, note4.clone())])
                .await
                .is_err(),
            "{role:?} cannot write heads"
        );
    }
    guardian
        .insert_anchor_heads(&[(4, note4)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let count: i64 = owner
        .query_one("SELECT count(*) FROM anchor_heads", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(count, 4);
}

#[tokio::test]
async fn bundles_carry_the_head_and_never_an_unsigned_anchor() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let s = signer();
    let v = s.verifier();
    append_receipts(&db.store, "drills", "drill_completed", 4).await;
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
        .tree_root(scroll.scroll_ref(), 4)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let note = Checkpoint {
        origin: Checkpoint::origin_for("vaultmesh-test", "drills"),
        size: 4,
        root,
    }
    .sign(&s)
    .unwrap_or_else(|e| panic!("{e}"));
    db.store
        .insert_checkpoint(scroll.id, 4, &root, &note)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let entry = AnchoredScroll {
        scroll: "drills".into(),
        tree_size: 4,
        root: to_hex(&root),
    };
    let vkey = v.to_vkey();

    let unsigned = record(1, vec![entry.clone()], GENESIS_PREV);
    db.store
        .insert_anchor(&unsigned)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = db
        .store
        .proof_bundle("drills", 2, &vkey)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no bundle"));
    assert!(b.anchor.is_none(), "an unsigned epoch is not offered");
    assert_eq!(
        b.verify(&v).map(|x| x.anchored_epoch).ok(),
        Some(None),
        "the bundle still proves inclusion"
    );

    db.store
        .insert_anchor_heads(&[(1, unsigned.sign_head(&s).unwrap_or_default())])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = db
        .store
        .proof_bundle("drills", 2, &vkey)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no bundle"));
    assert!(b.anchor.as_ref().is_some_and(|a| a.signature.is_some()));
    assert_eq!(b.verify(&v).map(|x| x.anchored_epoch).ok(), Some(Some(1)));
    let mut t = b.clone();
    if let Some(a) = t.anchor.as_mut() {
        a.signature = None;
    }
    assert!(t.verify(&v).is_err(), "an unsigned anchor fails the bundle");
}
