//! Roots, proofs and public tiles computed from any [`TileStore`]'s tiles: the one
//! implementation every backend shares, so none of them does tree arithmetic of its own.

use super::TileStore;
use crate::hash::Hash;
use crate::merkle::stored_tiles::{locate, public_tile_parts, StoredTileError, TileKey};
use crate::merkle::tiles::TileId;
use crate::merkle::{
    consistency_ranges, fold_range, inclusion_ranges, range_nodes, ConsistencyProof,
    InclusionProof, NodeId,
};
use crate::store::StoreError;
use sha3::Sha3_256;
use std::collections::BTreeMap;

/// The tiles `nodes` live in, each with the entries needed from it.
fn wants_of(nodes: &[NodeId]) -> Vec<(TileKey, usize)> {
    let mut wants: BTreeMap<TileKey, usize> = BTreeMap::new();
    for node in nodes {
        let (key, offset, count) = locate(*node);
        let need = wants.entry(key).or_insert(0);
        *need = (*need).max(offset + count);
    }
    wants.into_iter().collect()
}

fn damaged(scroll_id: i32) -> impl Fn(StoredTileError) -> StoreError {
    move |e| StoreError::Integrity(format!("scroll {scroll_id}: {e}"))
}

/// Fails with [`StoreError::BeyondTree`] if `requested` exceeds `available`.
fn check_size(requested: u64, available: u64) -> Result<(), StoreError> {
    if requested > available {
        return Err(StoreError::BeyondTree {
            requested,
            available,
        });
    }
    Ok(())
}

/// Roots of each range of the tree of `size` leaves, from one read of the tiles they need;
/// fails with [`StoreError::BeyondTree`] if the store says the tree is smaller.
async fn range_roots<T: TileStore + ?Sized>(
    src: &T,
    scroll_id: i32,
    size: u64,
    ranges: &[(u64, u64)],
) -> Result<Vec<Hash>, StoreError> {
    let per_range: Vec<Vec<NodeId>> = ranges.iter().map(|(a, b)| range_nodes(*a, *b)).collect();
    let all: Vec<NodeId> = per_range.iter().flatten().copied().collect();
    let (available, tiles) = src.tiles(scroll_id, &wants_of(&all)).await?;
    if let Some(available) = available {
        check_size(size, available)?;
    }
    per_range
        .iter()
        .map(|nodes| {
            let hashes: Vec<Hash> = nodes
                .iter()
                .map(|n| tiles.node_hash(*n))
                .collect::<Result<_, _>>()
                .map_err(damaged(scroll_id))?;
            Ok(fold_range::<Sha3_256>(&hashes))
        })
        .collect()
}

/// Root of the first `size` leaves.
pub async fn tree_root<T: TileStore + ?Sized>(
    src: &T,
    scroll_id: i32,
    size: u64,
) -> Result<Hash, StoreError> {
    range_roots(src, scroll_id, size, &[(0, size)])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Integrity("no root computed".into()))
}

/// Inclusion proof of leaf `index` in the tree of `size` leaves.
pub async fn inclusion_proof<T: TileStore + ?Sized>(
    src: &T,
    scroll_id: i32,
    index: u64,
    size: u64,
) -> Result<InclusionProof, StoreError> {
    if index >= size {
        return Err(StoreError::BeyondTree {
            requested: index + 1,
            available: size,
        });
    }
    let path = range_roots(src, scroll_id, size, &inclusion_ranges(index, size)).await?;
    Ok(InclusionProof {
        leaf_index: index,
        tree_size: size,
        path,
    })
}

/// Consistency proof between sizes `from` ≤ `to`.
pub async fn consistency_proof<T: TileStore + ?Sized>(
    src: &T,
    scroll_id: i32,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, StoreError> {
    check_size(from, to)?;
    let path = range_roots(src, scroll_id, to, &consistency_ranges(from, to)).await?;
    Ok(ConsistencyProof {
        from_size: from,
        to_size: to,
        path,
    })
}

/// The perfect-subtree roots of the first `size` leaves with their heights, largest first.
pub async fn stored_frontier<T: TileStore + ?Sized>(
    src: &T,
    scroll_id: i32,
    size: u64,
) -> Result<Vec<(u8, Hash)>, StoreError> {
    let nodes = range_nodes(0, size);
    let (available, tiles) = src.tiles(scroll_id, &wants_of(&nodes)).await?;
    match available {
        Some(available) => check_size(size, available)?,
        None => {
            return Err(StoreError::Integrity(
                "a frontier must be read from storage, not a cache".into(),
            ))
        }
    }
    nodes
        .iter()
        .map(|n| Ok((n.level, tiles.node_hash(*n).map_err(damaged(scroll_id))?)))
        .collect()
}

/// The first `width` entries of public tile `tile` (height 8), from the stored tiles (height
/// 4) of level `2·L` that hold them. The caller bounds `width` by a signed checkpoint
/// (`merkle::tiles::tile_width`); fewer stored entries than that is an integrity error.
pub async fn public_tile<T: TileStore + ?Sized>(
    src: &T,
    scroll_id: i32,
    tile: TileId,
    width: u64,
) -> Result<Vec<u8>, StoreError> {
    let parts = public_tile_parts(tile, width);
    let (_, have) = src.tiles(scroll_id, &parts).await?;
    let mut out = Vec::with_capacity(width as usize * 32);
    for (key, need) in &parts {
        let bytes = have.entries(*key, *need).ok_or_else(|| {
            StoreError::Integrity(format!(
                "stored tile {key:?} holds too few entries for {width} of public tile {}/{}",
                tile.level, tile.index
            ))
        })?;
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}
