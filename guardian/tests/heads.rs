//! Signed ProofChain heads from the guardian, against a real Postgres: every new epoch is
//! stored with its head; epochs anchored before heads existed get theirs when a guardian
//! becomes leader (new rows; the records never change) — but only once the chain around them
//! checks out. A forged or broken unsigned record is raised as divergence and never signed,
//! and neither is any unsigned epoch after it.

mod common;

use common::{post_as_leader, TestGuardian};
use ledger::hash::{to_hex, Sha3Hasher};
use ledger::proofchain::{verify_signed_chain, AnchorRecord, GENESIS_PREV};
use ledger::storage::AnchorStore;
use ledger::store::Store;
use std::time::{Duration, Instant};

/// A record anchored now (so that no epoch falls due at once when a guardian takes over).
fn record(epoch: u64, prev: &str) -> AnchorRecord {
    let at = ledger::receipt::format_timestamp(chrono::Utc::now());
    AnchorRecord::build(epoch, "vaultmesh-test", &at, vec![], prev)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Epochs stored as before heads existed: the records only, as the schema owner.
async fn store_unsigned(store: &Store, records: &[AnchorRecord]) {
    for r in records {
        assert!(r.signature.is_none());
        store
            .insert_anchor(r)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

async fn record_texts(t: &TestGuardian) -> Vec<String> {
    let owner = t.db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .query("SELECT record FROM anchors ORDER BY epoch", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn headed_epochs(t: &TestGuardian) -> Vec<i64> {
    let owner = t.db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .query("SELECT epoch FROM anchor_heads ORDER BY epoch", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn all_records(store: &Store) -> Vec<AnchorRecord> {
    store
        .anchors(1, 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|a| a.record)
        .collect()
}

/// Waits until the guardian scroll holds an `anchor_divergence` receipt mentioning `needle`.
async fn divergence_receipt(store: &Store, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = store
            .receipts_of_type("guardian", "anchor_divergence")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| serde_json::Value::Object(r.receipt.payload).to_string())
            .find(|p| p.contains(needle));
        if let Some(p) = found {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no anchor_divergence receipt mentioning {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every stored epoch has a head.
async fn all_headed(t: &TestGuardian) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.db.store.epochs_without_head().await.ok() != Some(vec![]) {
        assert!(Instant::now() < deadline, "some epochs never got heads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_epochs_get_heads_on_leadership_and_new_ones_are_stored_signed() {
    let t = common::start(|_, _| {}).await;
    let (s, body) = post_as_leader(&t, "/v1/guardian/verify").await;
    assert_eq!(s, 200, "{body}");
    let v = t.signer.verifier();

    // Three epochs stored as an earlier version did: no heads.
    let one = record(1, GENESIS_PREV);
    let two = record(2, &one.anchor_hash);
    let three = record(3, &two.anchor_hash);
    store_unsigned(&t.db.store, &[one, two, three]).await;
    assert_eq!(
        t.db.store.epochs_without_head().await.ok(),
        Some(vec![1, 2, 3])
    );
    let before = record_texts(&t).await;

    // A guardian that becomes leader signs them; the next epoch is stored signed.
    let t = t.restarted().await;
    all_headed(&t).await;
    let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(headed_epochs(&t).await, vec![1, 2, 3, 4]);
    let after = record_texts(&t).await;
    assert_eq!(&after[..3], &before[..], "the records never change");
    let chain = all_records(&t.db.store).await;
    verify_signed_chain(&chain, &v).unwrap_or_else(|e| panic!("{e}"));

    // A head lost before a signed epoch is signed again: the signed successors' hash chain
    // commits to the record.
    let owner = t.db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute(
            "ALTER TABLE anchor_heads DISABLE TRIGGER USER; \
             DELETE FROM anchor_heads WHERE epoch = 2; \
             ALTER TABLE anchor_heads ENABLE TRIGGER USER;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t = t.restarted().await;
    all_headed(&t).await;
    verify_signed_chain(&all_records(&t.db.store).await, &v).unwrap_or_else(|e| panic!("{e}"));
    t.g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_epoch_after_signed_ones_is_never_signed_nor_built_upon() {
    let t = common::start(|_, _| {}).await;
    let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
    assert_eq!(s, 200, "{body}");
    let first = all_records(&t.db.store).await;
    first[0]
        .verify_signed(&t.signer.verifier())
        .unwrap_or_else(|e| panic!("a new epoch is stored signed: {e}"));

    // With the guardian's own database role and a lease term (but not its key), a
    // self-consistent epoch 2.
    let forged = record(2, &first[0].anchor_hash);
    let t = t
        .restarted_after(async |db| {
            let as_guardian = db
                .leading_guardian_store()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            store_unsigned(&as_guardian, std::slice::from_ref(&forged)).await;
        })
        .await;
    let payload = divergence_receipt(&t.db.store, "epoch 2 is suspect").await;
    assert!(
        payload.contains("no head though epoch 1 before it has one"),
        "{payload}"
    );
    let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
    assert_ne!(s, 200, "an epoch was built on the unsigned one: {body}");
    assert_eq!(headed_epochs(&t).await, vec![1]);
    assert!(t.db.store.anchor(3).await.unwrap_or_default().is_none());
    t.g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_unsigned_epoch_is_raised_and_nothing_from_it_on_is_signed() {
    let t = common::start(|_, _| {}).await;
    let (s, body) = post_as_leader(&t, "/v1/guardian/verify").await;
    assert_eq!(s, 200, "{body}");

    // Epochs 1-3 as an earlier version stored them; then the schema owner replaces epoch 2 by
    // a self-consistent record (re-dated, hash recomputed, still linked to epoch 1). Only the
    // link from epoch 3 betrays it.
    let one = record(1, GENESIS_PREV);
    let two = record(2, &one.anchor_hash);
    let three = record(3, &two.anchor_hash);
    let mut forged = two.clone();
    forged.anchored_at = "2026-11-22T00:00:02.000000Z".into();
    forged.anchor_hash = to_hex(&Sha3Hasher::plain(
        &forged.hashed_bytes().unwrap_or_else(|e| panic!("{e}")),
    ));
    assert!(forged.verify().is_ok(), "the forgery is self-consistent");
    store_unsigned(&t.db.store, &[one, forged, three]).await;

    let t = t.restarted().await;
    let payload = divergence_receipt(&t.db.store, "epoch 2 is suspect").await;
    assert!(
        payload.contains("does not link to epoch 2"),
        "the reason is named: {payload}"
    );
    assert_eq!(
        headed_epochs(&t).await,
        vec![1],
        "only the epoch before the suspect one is signed"
    );
    common::wait_metric(
        t.g.metrics_addr,
        "vaultmesh_guardian_proofchain_divergence",
        1.0,
    )
    .await;
    t.g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_epoch_whose_hash_does_not_recompute_is_not_signed() {
    let t = common::start(|_, _| {}).await;
    let (s, body) = post_as_leader(&t, "/v1/guardian/verify").await;
    assert_eq!(s, 200, "{body}");
    let one = record(1, GENESIS_PREV);
    let mut two = record(2, &one.anchor_hash);
    two.anchored_at = "2026-11-22T00:00:02.000000Z".into();
    let three = record(3, &two.anchor_hash);
    store_unsigned(&t.db.store, &[one, two, three]).await;

    let t = t.restarted().await;
    let payload = divergence_receipt(&t.db.store, "epoch 2 is suspect").await;
    assert!(payload.contains("anchor_hash does not match"), "{payload}");
    assert_eq!(headed_epochs(&t).await, vec![1]);
    t.g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_signed_by_another_key_is_raised_by_the_verification_pass() {
    let t = common::start(|_, _| {}).await;
    let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = post_as_leader(&t, "/v1/guardian/verify").await;
    assert_eq!(
        (s, &body["intact"]),
        (200, &serde_json::Value::Bool(true)),
        "{body}"
    );
    // The owner swaps epoch 1's head for one signed by a key that is not the guardian's.
    let other = ledger::note::NoteSigner::generate("vaultmesh-test/guardian")
        .unwrap_or_else(|e| panic!("{e}"));
    let rec = all_records(&t.db.store).await.remove(0);
    let mut forged = rec.clone();
    forged.signature = None;
    let note = forged.sign_head(&other).unwrap_or_else(|e| panic!("{e}"));
    let owner = t.db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute("ALTER TABLE anchor_heads DISABLE TRIGGER USER")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    owner
        .execute(
            "UPDATE anchor_heads SET note = $1 WHERE epoch = 1",
            &[&note],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute("ALTER TABLE anchor_heads ENABLE TRIGGER USER")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (s, body) = post_as_leader(&t, "/v1/guardian/verify").await;
    assert_eq!(
        (s, &body["intact"]),
        (200, &serde_json::Value::Bool(false)),
        "{body}"
    );
    assert!(
        body["findings"]
            .to_string()
            .contains("ProofChain head of epoch 1"),
        "{body}"
    );
    t.g.stop().await;
}
