//! Read replicas: the one place that decides whether a read may be answered by a Postgres
//! standby (`--read-database-url`) or must go to the primary. Only immutable data goes to a
//! replica: receipts by position or leaf hash, anchors, bundles, and tiles and proofs up to a
//! signed checkpoint the replica already holds (a checkpoint is committed after its tiles, so
//! a replica that has replayed it has them). Anything the replica does not have yet, or a
//! replica that does not answer, falls back to the primary, so a lagging replica never turns
//! into a 404 for something that exists. Checkpoints never go backwards for one process: the
//! largest size served per scroll is a floor below which the replica's answer is not used.

use super::{Store, StoreError, StoredAnchor, StoredCheckpoint, StoredReceipt};
use crate::bundle::ProofBundle;
use crate::merkle::tiles::TileId;
use crate::merkle::{ConsistencyProof, InclusionProof};
use prometheus::IntCounterVec;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// Reads answered, by kind of read and by where: `replica`, or `primary` (no replica
/// configured, or it lacked the data or did not answer).
pub static REPLICA_READS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        prometheus::Opts::new(
            "vaultmesh_replica_reads_total",
            "Immutable reads by kind and by the database that answered (replica or primary)",
        ),
        &["read", "source"],
    )
    .unwrap_or_else(|e| unreachable!("static metric definition: {e}"))
});

/// Routes immutable reads to a replica first (see the module documentation).
#[derive(Clone)]
pub struct Reads {
    primary: Store,
    replica: Option<Store>,
    floor: Arc<Mutex<HashMap<String, u64>>>,
}

/// What one attempt on the replica gave.
enum Tried<T> {
    Answered(T),
    FallBack,
}

impl Reads {
    /// Reads over `primary`, and `replica` when configured.
    pub fn new(primary: Store, replica: Option<Store>) -> Self {
        Self {
            primary,
            replica,
            floor: Arc::default(),
        }
    }

    /// The primary (for everything that is not an immutable read).
    pub fn primary(&self) -> &Store {
        &self.primary
    }

    /// Whether a replica is configured.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// The largest checkpoint size of `scroll` served so far.
    pub fn served_floor(&self, scroll: &str) -> u64 {
        let floor = self.floor.lock().unwrap_or_else(PoisonError::into_inner);
        floor.get(scroll).copied().unwrap_or(0)
    }

    /// Records that `cp` was served (from anywhere, caches included).
    pub fn note_served(&self, cp: &StoredCheckpoint) {
        let mut floor = self.floor.lock().unwrap_or_else(PoisonError::into_inner);
        let f = floor.entry(cp.scroll.clone()).or_insert(0);
        *f = (*f).max(cp.tree_size);
    }

    fn count(read: &str, source: &str) {
        REPLICA_READS.with_label_values(&[read, source]).inc();
    }

    /// Interprets the replica's answer: a value that `usable` accepts is served; a missing
    /// value or an unreachable replica falls back; any other error is the answer.
    fn judge<T>(
        read: &str,
        answer: Result<Option<T>, StoreError>,
        usable: impl FnOnce(&T) -> bool,
    ) -> Result<Tried<T>, StoreError> {
        match answer {
            Ok(Some(v)) if usable(&v) => {
                Self::count(read, "replica");
                Ok(Tried::Answered(v))
            }
            Ok(_) => Ok(Tried::FallBack),
            Err(e) if e.is_unavailable() => Ok(Tried::FallBack),
            Err(e) => Err(e),
        }
    }

    /// The latest signed checkpoint of `scroll`, never smaller than one served before.
    pub async fn latest_checkpoint(
        &self,
        scroll: &str,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        if let Some(r) = &self.replica {
            let floor = self.served_floor(scroll);
            let answer = r.latest_checkpoint(scroll).await;
            if let Tried::Answered(cp) =
                Self::judge("checkpoint", answer, |cp| cp.tree_size >= floor)?
            {
                self.note_served(&cp);
                return Ok(Some(cp));
            }
        }
        self.latest_checkpoint_on_primary(scroll).await
    }

    /// The latest signed checkpoint of `scroll` as the primary has it (for a caller that
    /// knows of a newer one than it was served).
    pub async fn latest_checkpoint_on_primary(
        &self,
        scroll: &str,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        Self::count("checkpoint", "primary");
        let cp = self.primary.latest_checkpoint(scroll).await?;
        if let Some(cp) = &cp {
            self.note_served(cp);
        }
        Ok(cp)
    }

    /// The receipt at `seq` of `scroll`.
    pub async fn receipt(
        &self,
        scroll: &str,
        seq: u64,
    ) -> Result<Option<StoredReceipt>, StoreError> {
        if let Some(r) = &self.replica {
            if let Tried::Answered(v) =
                Self::judge("receipt", r.receipt(scroll, seq).await, |_| true)?
            {
                return Ok(Some(v));
            }
        }
        Self::count("receipt", "primary");
        self.primary.receipt(scroll, seq).await
    }

    /// The receipt whose leaf hash is `hash`.
    pub async fn receipt_by_leaf_hash(
        &self,
        hash: &crate::hash::Hash,
    ) -> Result<Option<StoredReceipt>, StoreError> {
        if let Some(r) = &self.replica {
            let answer = r.receipt_by_leaf_hash(hash).await;
            if let Tried::Answered(v) = Self::judge("receipt_by_hash", answer, |_| true)? {
                return Ok(Some(v));
            }
        }
        Self::count("receipt_by_hash", "primary");
        self.primary.receipt_by_leaf_hash(hash).await
    }

    /// Up to `limit` receipts of `scroll` from `from` (the primary completes a short page).
    pub async fn list_receipts(
        &self,
        scroll: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        if let Some(r) = &self.replica {
            let answer = r.list_receipts(scroll, from, limit).await.map(Some);
            if let Tried::Answered(v) =
                Self::judge("list", answer, |rows| rows.len() == limit as usize)?
            {
                return Ok(v);
            }
        }
        Self::count("list", "primary");
        self.primary.list_receipts(scroll, from, limit).await
    }

    /// The anchor of `epoch`.
    pub async fn anchor(&self, epoch: u64) -> Result<Option<StoredAnchor>, StoreError> {
        if let Some(r) = &self.replica {
            if let Tried::Answered(v) = Self::judge("anchor", r.anchor(epoch).await, |_| true)? {
                return Ok(Some(v));
            }
        }
        Self::count("anchor", "primary");
        self.primary.anchor(epoch).await
    }

    /// Up to `limit` anchors from `from` (the primary completes a short page).
    pub async fn anchors(&self, from: u64, limit: u32) -> Result<Vec<StoredAnchor>, StoreError> {
        if let Some(r) = &self.replica {
            let answer = r.anchors(from, limit).await.map(Some);
            if let Tried::Answered(v) =
                Self::judge("anchors", answer, |rows| rows.len() == limit as usize)?
            {
                return Ok(v);
            }
        }
        Self::count("anchors", "primary");
        self.primary.anchors(from, limit).await
    }

    /// The offline-verification bundle of a receipt.
    pub async fn proof_bundle(
        &self,
        scroll: &str,
        seq: u64,
        vkey: &str,
    ) -> Result<Option<ProofBundle>, StoreError> {
        if let Some(r) = &self.replica {
            let answer = r.proof_bundle(scroll, seq, vkey).await;
            if let Tried::Answered(v) = Self::judge("bundle", answer, |_| true)? {
                return Ok(Some(v));
            }
        }
        Self::count("bundle", "primary");
        self.primary.proof_bundle(scroll, seq, vkey).await
    }

    /// The replica, if it holds a signed checkpoint of `scroll` of at least `size` (and so
    /// every tile below it).
    async fn replica_covering(&self, scroll: &str, size: u64) -> Option<&Store> {
        let r = self.replica.as_ref()?;
        match r.latest_checkpoint(scroll).await {
            Ok(Some(cp)) if cp.tree_size >= size => Some(r),
            _ => None,
        }
    }

    /// Whether the replica holds the tree of `scroll` up to `size` (one query on the
    /// replica; false without one), for a caller about to ask several proofs in that tree.
    pub async fn replica_holds(&self, scroll: &str, size: u64) -> bool {
        self.replica_covering(scroll, size).await.is_some()
    }

    /// An inclusion proof of `index` in the tree of `size` of `scroll`.
    pub async fn inclusion_proof(
        &self,
        scroll: &str,
        scroll_id: i32,
        index: u64,
        size: u64,
    ) -> Result<InclusionProof, StoreError> {
        let held = self.replica_holds(scroll, size).await;
        self.inclusion_proof_from(held, scroll_id, index, size)
            .await
    }

    /// An inclusion proof, from the replica when `held` (as [`Reads::replica_holds`] found)
    /// and it answers, else from the primary.
    pub async fn inclusion_proof_from(
        &self,
        held: bool,
        scroll_id: i32,
        index: u64,
        size: u64,
    ) -> Result<InclusionProof, StoreError> {
        if let Some(r) = self.replica.as_ref().filter(|_| held) {
            let answer = r.inclusion_proof(scroll_id, index, size).await.map(Some);
            if let Tried::Answered(v) = Self::judge("inclusion_proof", answer, |_| true)? {
                return Ok(v);
            }
        }
        Self::count("inclusion_proof", "primary");
        self.primary.inclusion_proof(scroll_id, index, size).await
    }

    /// A consistency proof from `from` to `to` of `scroll`.
    pub async fn consistency_proof(
        &self,
        scroll: &str,
        scroll_id: i32,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, StoreError> {
        if let Some(r) = self.replica_covering(scroll, to).await {
            let answer = r.consistency_proof(scroll_id, from, to).await.map(Some);
            if let Tried::Answered(v) = Self::judge("consistency_proof", answer, |_| true)? {
                return Ok(v);
            }
        }
        Self::count("consistency_proof", "primary");
        self.primary.consistency_proof(scroll_id, from, to).await
    }

    /// The first `width` entries of `tile` of `scroll`, a tile within a checkpoint of `size`.
    pub async fn public_tile(
        &self,
        scroll: &str,
        scroll_id: i32,
        tile: TileId,
        width: u64,
        size: u64,
    ) -> Result<Vec<u8>, StoreError> {
        if let Some(r) = self.replica_covering(scroll, size).await {
            let answer = r.public_tile(scroll_id, tile, width).await.map(Some);
            if let Tried::Answered(v) = Self::judge("tile", answer, |_| true)? {
                return Ok(v);
            }
        }
        Self::count("tile", "primary");
        self.primary.public_tile(scroll_id, tile, width).await
    }
}
