//! Read replicas: the one place that decides whether a read may be answered by a replica
//! (`--read-database-url`) or must go to the primary. Only immutable data goes to a replica:
//! receipts by position or leaf hash, anchors, bundles, and tiles and proofs up to a signed
//! checkpoint the replica already holds (a checkpoint is committed after its tiles, so a
//! replica that has replayed it has them). Anything the replica does not have yet, or a
//! replica that does not answer, falls back to the primary, so a lagging replica never turns
//! into a 404 for something that exists. Checkpoints never go backwards for one process: the
//! largest size served per scroll is a floor below which the replica's answer is not used.
//! Writes, keys and everything mutable go to the primary. [`Reads`] implements every role,
//! so a service holds it as its storage whether or not a replica is configured.

use super::{
    AnchorStore, CachedTiles, CheckpointStore, KeyStore, ReceiptLog, ScrollRef, Storage,
    StoreFuture, TileStore,
};
use crate::bundle::ProofBundle;
use crate::gate::Admitted;
use crate::hash::Hash;
use crate::merkle::stored_tiles::{TileBag, TileKey};
use crate::merkle::tiles::TileId;
use crate::merkle::{ConsistencyProof, InclusionProof};
use crate::proofchain::AnchorRecord;
use crate::store::tree::Integration;
use crate::store::{
    ApiKey, AppendOutcome, NewApiKey, PendingScroll, RawReceipt, Role, SinkResult, StoreError,
    StoredAnchor, StoredCheckpoint, StoredReceipt,
};
use prometheus::IntCounterVec;
use std::collections::HashMap;
use std::future::Future;
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

/// One backend as the router uses it: all its roles, and its tiles as read (possibly
/// through a cache).
#[derive(Clone)]
struct Side {
    storage: Arc<dyn Storage>,
    tiles: Arc<dyn TileStore>,
}

impl Side {
    fn new(storage: Arc<dyn Storage>) -> Self {
        let tiles: Arc<dyn TileStore> = storage.clone();
        Self { storage, tiles }
    }

    fn cached(self, cache: &crate::cache::Cache, memo_tiles: usize) -> Self {
        let tiles: Arc<dyn TileStore> = Arc::new(CachedTiles::new(
            self.storage.clone(),
            cache.clone(),
            memo_tiles,
        ));
        Self { tiles, ..self }
    }
}

/// Routes immutable reads to a replica first (see the module documentation).
#[derive(Clone)]
pub struct Reads {
    primary: Side,
    replica: Option<Side>,
    floor: Arc<Mutex<HashMap<String, u64>>>,
}

/// What one attempt on the replica gave.
enum Tried<T> {
    Answered(T),
    FallBack,
}

impl Reads {
    /// Reads over `primary`, and `replica` when configured.
    pub fn new(primary: Arc<dyn Storage>, replica: Option<Arc<dyn Storage>>) -> Self {
        Self {
            primary: Side::new(primary),
            replica: replica.map(Side::new),
            floor: Arc::default(),
        }
    }

    /// These reads with tiles read through up to `memo_tiles` full tiles in memory and the
    /// Redis `cache` ([`CachedTiles`]), on the primary and on the replica alike.
    pub fn with_tile_cache(self, cache: &crate::cache::Cache, memo_tiles: usize) -> Self {
        Self {
            primary: self.primary.cached(cache, memo_tiles),
            replica: self.replica.map(|r| r.cached(cache, memo_tiles)),
            floor: self.floor,
        }
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

    /// Asks `replica` (when there is one and `eligible`), serving its answer if `usable`
    /// accepts it; otherwise, or when it is missing (`None`) or the replica does not answer,
    /// asks `primary`. Any other error from the replica is the answer.
    async fn route<'a, T, R, P>(
        &'a self,
        read: &str,
        eligible: bool,
        replica: impl FnOnce(&'a Side) -> R,
        usable: impl FnOnce(&T) -> bool,
        primary: impl FnOnce(&'a Side) -> P,
    ) -> Result<T, StoreError>
    where
        R: Future<Output = Result<Option<T>, StoreError>>,
        P: Future<Output = Result<T, StoreError>>,
    {
        if let Some(side) = self.replica.as_ref().filter(|_| eligible) {
            if let Tried::Answered(v) = Self::judge(read, replica(side).await, usable)? {
                return Ok(v);
            }
        }
        Self::count(read, "primary");
        primary(&self.primary).await
    }

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

    /// A computation over the tree of `size` leaves of `scroll`: on the replica's tiles when
    /// the replica holds a checkpoint that covers it, else on the primary's.
    async fn route_tree<'a, T>(
        &'a self,
        read: &str,
        scroll: ScrollRef<'a>,
        size: u64,
        ask: impl Fn(&'a dyn TileStore) -> StoreFuture<'a, T>,
    ) -> Result<T, StoreError> {
        let held = self.replica_holds(scroll.name, size).await;
        self.route_tiles(read, held, ask).await
    }

    /// [`Reads::route`] for a computation over tiles: on the replica's tiles when `held`
    /// (the replica holds a checkpoint covering it), else on the primary's.
    async fn route_tiles<'a, T>(
        &'a self,
        read: &str,
        held: bool,
        ask: impl Fn(&'a dyn TileStore) -> StoreFuture<'a, T>,
    ) -> Result<T, StoreError> {
        let ask = &ask;
        self.route(
            read,
            held,
            move |r| async move { ask(r.tiles.as_ref()).await.map(Some) },
            |_| true,
            move |p| ask(p.tiles.as_ref()),
        )
        .await
    }

    /// The latest signed checkpoint of `scroll` as the primary has it (for a caller that
    /// knows of a newer one than it was served).
    pub async fn latest_checkpoint_on_primary(
        &self,
        scroll: &str,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        Self::count("checkpoint", "primary");
        let cp = self.primary.storage.latest_checkpoint(scroll).await?;
        if let Some(cp) = &cp {
            self.note_served(cp);
        }
        Ok(cp)
    }

    async fn latest_checkpoint_routed(
        &self,
        scroll: &str,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        if let Some(r) = &self.replica {
            let floor = self.served_floor(scroll);
            let answer = r.storage.latest_checkpoint(scroll).await;
            if let Tried::Answered(cp) =
                Self::judge("checkpoint", answer, |cp| cp.tree_size >= floor)?
            {
                self.note_served(&cp);
                return Ok(Some(cp));
            }
        }
        self.latest_checkpoint_on_primary(scroll).await
    }

    /// Whether the replica holds a signed checkpoint of `scroll` of at least `size` (and so
    /// every tile below it); false without a replica.
    async fn replica_holds(&self, scroll: &str, size: u64) -> bool {
        let Some(r) = &self.replica else {
            return false;
        };
        matches!(r.storage.latest_checkpoint(scroll).await, Ok(Some(cp)) if cp.tree_size >= size)
    }
}

impl ReceiptLog for Reads {
    fn append_receipts(
        &self,
        batch: Admitted,
        all_or_nothing: bool,
    ) -> StoreFuture<'_, Vec<AppendOutcome>> {
        self.primary.storage.append_receipts(batch, all_or_nothing)
    }

    fn append_at(
        &self,
        expected: u64,
        batch: Admitted,
    ) -> StoreFuture<'_, Result<Vec<AppendOutcome>, Admitted>> {
        self.primary.storage.append_at(expected, batch)
    }

    fn receipt<'a>(&'a self, scroll: &'a str, seq: u64) -> StoreFuture<'a, Option<StoredReceipt>> {
        Box::pin(self.route(
            "receipt",
            true,
            move |r| async move { Ok(r.storage.receipt(scroll, seq).await?.map(Some)) },
            |_| true,
            move |p| p.storage.receipt(scroll, seq),
        ))
    }

    fn receipt_by_leaf_hash<'a>(
        &'a self,
        hash: &'a Hash,
    ) -> StoreFuture<'a, Option<StoredReceipt>> {
        Box::pin(self.route(
            "receipt_by_hash",
            true,
            move |r| async move { Ok(r.storage.receipt_by_leaf_hash(hash).await?.map(Some)) },
            |_| true,
            move |p| p.storage.receipt_by_leaf_hash(hash),
        ))
    }

    /// A short page from the replica may only be behind, so the primary completes it.
    fn list_receipts<'a>(
        &'a self,
        scroll: &'a str,
        from: u64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<StoredReceipt>> {
        Box::pin(self.route(
            "list",
            true,
            move |r| async move { r.storage.list_receipts(scroll, from, limit).await.map(Some) },
            move |rows: &Vec<StoredReceipt>| rows.len() == limit as usize,
            move |p| p.storage.list_receipts(scroll, from, limit),
        ))
    }

    fn proof_bundle<'a>(
        &'a self,
        scroll: &'a str,
        seq: u64,
        vkey: &'a str,
    ) -> StoreFuture<'a, Option<ProofBundle>> {
        Box::pin(self.route(
            "bundle",
            true,
            move |r| async move { Ok(r.storage.proof_bundle(scroll, seq, vkey).await?.map(Some)) },
            |_| true,
            move |p| p.storage.proof_bundle(scroll, seq, vkey),
        ))
    }

    fn scan_receipt_range<'a>(
        &'a self,
        scroll_id: i32,
        from: u64,
        to: u64,
        visit: &'a mut (dyn FnMut(RawReceipt) -> bool + Send),
    ) -> StoreFuture<'a, ()> {
        self.primary
            .storage
            .scan_receipt_range(scroll_id, from, to, visit)
    }
}

impl TileStore for Reads {
    fn tiles<'a>(
        &'a self,
        scroll_id: i32,
        wants: &'a [(TileKey, usize)],
    ) -> StoreFuture<'a, (Option<u64>, TileBag)> {
        self.primary.tiles.tiles(scroll_id, wants)
    }

    fn integrate_step(&self, scroll_id: i32, limit: u32) -> StoreFuture<'_, Integration> {
        self.primary.storage.integrate_step(scroll_id, limit)
    }

    fn append_tree(
        &self,
        scroll_id: i32,
        expected_size: u64,
        leaves: Vec<Hash>,
    ) -> StoreFuture<'_, u64> {
        self.primary
            .storage
            .append_tree(scroll_id, expected_size, leaves)
    }

    fn stored_frontier(&self, scroll_id: i32, size: u64) -> StoreFuture<'_, Vec<(u8, Hash)>> {
        self.primary.storage.stored_frontier(scroll_id, size)
    }

    fn tree_root<'a>(&'a self, scroll: ScrollRef<'a>, size: u64) -> StoreFuture<'a, Hash> {
        Box::pin(self.route_tree("root", scroll, size, move |t| t.tree_root(scroll, size)))
    }

    fn inclusion_proof<'a>(
        &'a self,
        scroll: ScrollRef<'a>,
        index: u64,
        size: u64,
    ) -> StoreFuture<'a, InclusionProof> {
        Box::pin(self.route_tree("inclusion_proof", scroll, size, move |t| {
            t.inclusion_proof(scroll, index, size)
        }))
    }

    /// One coverage check on the replica for all of them.
    fn inclusion_proofs<'a>(
        &'a self,
        scroll: ScrollRef<'a>,
        size: u64,
        indices: &'a [u64],
    ) -> StoreFuture<'a, Vec<InclusionProof>> {
        Box::pin(async move {
            let held = self.replica_holds(scroll.name, size).await;
            let mut out = Vec::with_capacity(indices.len());
            for index in indices {
                let index = *index;
                out.push(
                    self.route_tiles("inclusion_proof", held, move |t| {
                        t.inclusion_proof(scroll, index, size)
                    })
                    .await?,
                );
            }
            Ok(out)
        })
    }

    fn consistency_proof<'a>(
        &'a self,
        scroll: ScrollRef<'a>,
        from: u64,
        to: u64,
    ) -> StoreFuture<'a, ConsistencyProof> {
        Box::pin(self.route_tree("consistency_proof", scroll, to, move |t| {
            t.consistency_proof(scroll, from, to)
        }))
    }

    fn public_tile<'a>(
        &'a self,
        scroll: ScrollRef<'a>,
        tile: TileId,
        width: u64,
        size: u64,
    ) -> StoreFuture<'a, Vec<u8>> {
        Box::pin(self.route_tree("tile", scroll, size, move |t| {
            t.public_tile(scroll, tile, width, size)
        }))
    }
}

impl CheckpointStore for Reads {
    fn insert_checkpoint<'a>(
        &'a self,
        scroll_id: i32,
        tree_size: u64,
        root: &'a Hash,
        note: &'a str,
    ) -> StoreFuture<'a, ()> {
        self.primary
            .storage
            .insert_checkpoint(scroll_id, tree_size, root, note)
    }

    /// Never smaller than one served before.
    fn latest_checkpoint<'a>(
        &'a self,
        scroll: &'a str,
    ) -> StoreFuture<'a, Option<StoredCheckpoint>> {
        Box::pin(self.latest_checkpoint_routed(scroll))
    }

    fn checkpoint_at<'a>(
        &'a self,
        scroll: &'a str,
        tree_size: u64,
    ) -> StoreFuture<'a, Option<StoredCheckpoint>> {
        self.primary.storage.checkpoint_at(scroll, tree_size)
    }

    fn latest_checkpoints(&self) -> StoreFuture<'_, Vec<StoredCheckpoint>> {
        self.primary.storage.latest_checkpoints()
    }

    fn latest_checkpoints_of<'a>(
        &'a self,
        scrolls: &'a [String],
    ) -> StoreFuture<'a, Vec<StoredCheckpoint>> {
        self.primary.storage.latest_checkpoints_of(scrolls)
    }

    fn pending_checkpoints(&self) -> StoreFuture<'_, Vec<PendingScroll>> {
        self.primary.storage.pending_checkpoints()
    }
}

impl AnchorStore for Reads {
    fn insert_anchor<'a>(&'a self, record: &'a AnchorRecord) -> StoreFuture<'a, ()> {
        self.primary.storage.insert_anchor(record)
    }

    fn insert_anchor_heads<'a>(&'a self, heads: &'a [(u64, String)]) -> StoreFuture<'a, ()> {
        self.primary.storage.insert_anchor_heads(heads)
    }

    fn epochs_without_head(&self) -> StoreFuture<'_, Vec<u64>> {
        self.primary.storage.epochs_without_head()
    }

    fn insert_sink_result<'a>(&'a self, epoch: u64, result: &'a SinkResult) -> StoreFuture<'a, ()> {
        self.primary.storage.insert_sink_result(epoch, result)
    }

    fn epochs_pending_for_sink<'a>(&'a self, sink: &'a str) -> StoreFuture<'a, Vec<u64>> {
        self.primary.storage.epochs_pending_for_sink(sink)
    }

    fn anchor(&self, epoch: u64) -> StoreFuture<'_, Option<StoredAnchor>> {
        Box::pin(self.route(
            "anchor",
            true,
            move |r| async move { Ok(r.storage.anchor(epoch).await?.map(Some)) },
            |_| true,
            move |p| p.storage.anchor(epoch),
        ))
    }

    fn latest_anchor(&self) -> StoreFuture<'_, Option<StoredAnchor>> {
        self.primary.storage.latest_anchor()
    }

    /// A short page from the replica may only be behind, so the primary completes it.
    fn anchors(&self, from: u64, limit: u32) -> StoreFuture<'_, Vec<StoredAnchor>> {
        Box::pin(self.route(
            "anchors",
            true,
            move |r| async move { r.storage.anchors(from, limit).await.map(Some) },
            move |rows: &Vec<StoredAnchor>| rows.len() == limit as usize,
            move |p| p.storage.anchors(from, limit),
        ))
    }
}

impl KeyStore for Reads {
    fn create_api_key<'a>(
        &'a self,
        role: Role,
        scrolls: Option<Vec<String>>,
        label: &'a str,
    ) -> StoreFuture<'a, NewApiKey> {
        self.primary.storage.create_api_key(role, scrolls, label)
    }

    fn api_key_by_token<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<ApiKey>> {
        self.primary.storage.api_key_by_token(token)
    }

    fn list_api_keys(&self) -> StoreFuture<'_, Vec<ApiKey>> {
        self.primary.storage.list_api_keys()
    }

    fn revoke_api_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        self.primary.storage.revoke_api_key(id)
    }
}
