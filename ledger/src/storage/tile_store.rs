//! The tile role: the stored tree of each scroll as tiles (`merkle::stored_tiles`),
//! integration of receipts into it, and the roots, proofs and public tiles computed from it.

use super::{proofs, ScrollRef, StoreFuture};
use crate::hash::Hash;
use crate::merkle::stored_tiles::{TileBag, TileKey};
use crate::merkle::tiles::TileId;
use crate::merkle::{ConsistencyProof, InclusionProof};
use crate::store::tree::Integration;
use crate::store::{Store, StoreError};

/// Keeps each scroll's tree as tiles and answers from them. A backend provides the first
/// four methods; roots, proofs and public tiles then follow from [`TileStore::tiles`]
/// (`storage::proofs`), and a router may override them to choose where they are read.
pub trait TileStore: Send + Sync {
    /// In one read: at least the wanted number of entries of each wanted tile (fewer only
    /// where fewer are stored), with the integrated tree size when storage was asked
    /// (`None` when everything came from a cache: a tile entry is only ever stored once
    /// every leaf below it is integrated, so a cached entry needs no size check).
    fn tiles<'a>(
        &'a self,
        scroll_id: i32,
        wants: &'a [(TileKey, usize)],
    ) -> StoreFuture<'a, (Option<u64>, TileBag)>;

    /// Integrates up to `limit` receipts beyond the tree into it, atomically, re-deriving
    /// each leaf hash from the stored bytes; stops at the first receipt that is not what it
    /// claims to be.
    fn integrate_step(&self, scroll_id: i32, limit: u32) -> StoreFuture<'_, Integration>;

    /// Appends leaf hashes to a tree that must be at `expected_size`; returns the new size.
    fn append_tree(
        &self,
        scroll_id: i32,
        expected_size: u64,
        leaves: Vec<Hash>,
    ) -> StoreFuture<'_, u64>;

    /// The roots of the perfect subtrees making up the first `size` leaves, largest first,
    /// each with its height, read from the backend itself and never a cache (for checks that
    /// must not trust one).
    fn stored_frontier(&self, scroll_id: i32, size: u64) -> StoreFuture<'_, Vec<(u8, Hash)>>;

    /// [`TileStore::integrate_step`], failing when the first receipt beyond the tree is
    /// refused. Returns `(old size, new size)`.
    fn integrate(&self, scroll_id: i32, limit: u32) -> StoreFuture<'_, (u64, u64)> {
        Box::pin(async move {
            let step = self.integrate_step(scroll_id, limit).await?;
            match step.rejected {
                Some(r) if step.to == step.from => Err(StoreError::Integrity(format!(
                    "scroll {scroll_id}: receipt {}: {}",
                    r.seq, r.reason
                ))),
                _ => Ok((step.from, step.to)),
            }
        })
    }

    /// Root of the scroll's first `size` leaves.
    fn tree_root<'a>(&'a self, scroll: ScrollRef<'a>, size: u64) -> StoreFuture<'a, Hash> {
        Box::pin(proofs::tree_root(self, scroll.id, size))
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    fn inclusion_proof<'a>(
        &'a self,
        scroll: ScrollRef<'a>,
        index: u64,
        size: u64,
    ) -> StoreFuture<'a, InclusionProof> {
        Box::pin(proofs::inclusion_proof(self, scroll.id, index, size))
    }

    /// Inclusion proofs of several leaves in the tree of `size` leaves of one scroll.
    fn inclusion_proofs<'a>(
        &'a self,
        scroll: ScrollRef<'a>,
        size: u64,
        indices: &'a [u64],
    ) -> StoreFuture<'a, Vec<InclusionProof>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(indices.len());
            for index in indices {
                out.push(self.inclusion_proof(scroll, *index, size).await?);
            }
            Ok(out)
        })
    }

    /// Consistency proof between tree sizes `from` ≤ `to`.
    fn consistency_proof<'a>(
        &'a self,
        scroll: ScrollRef<'a>,
        from: u64,
        to: u64,
    ) -> StoreFuture<'a, ConsistencyProof> {
        Box::pin(proofs::consistency_proof(self, scroll.id, from, to))
    }

    /// The first `width` entries of public tile `tile` (height 8), a tile within a signed
    /// checkpoint of `size` leaves (which bounds `width`).
    fn public_tile<'a>(
        &'a self,
        scroll: ScrollRef<'a>,
        tile: TileId,
        width: u64,
        size: u64,
    ) -> StoreFuture<'a, Vec<u8>> {
        let _ = size;
        Box::pin(proofs::public_tile(self, scroll.id, tile, width))
    }
}

impl TileStore for Store {
    fn tiles<'a>(
        &'a self,
        scroll_id: i32,
        wants: &'a [(TileKey, usize)],
    ) -> StoreFuture<'a, (Option<u64>, TileBag)> {
        Box::pin(async move {
            let (size, raw) = self.read_tiles(scroll_id, wants).await?;
            Ok((Some(size), TileBag::from_raw(raw)))
        })
    }

    fn integrate_step(&self, scroll_id: i32, limit: u32) -> StoreFuture<'_, Integration> {
        Box::pin(Store::integrate_step(self, scroll_id, limit))
    }

    fn append_tree(
        &self,
        scroll_id: i32,
        expected_size: u64,
        leaves: Vec<Hash>,
    ) -> StoreFuture<'_, u64> {
        Box::pin(Store::append_tree(self, scroll_id, expected_size, leaves))
    }

    fn stored_frontier(&self, scroll_id: i32, size: u64) -> StoreFuture<'_, Vec<(u8, Hash)>> {
        Box::pin(proofs::stored_frontier(self, scroll_id, size))
    }
}
