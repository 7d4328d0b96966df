//! Public tiles: the C2SP tlog-tiles layout (height 8) over SHA3-256 tree hashes. Tile
//! `(level L, index N)` holds the roots of the full subtrees of height `8·L` numbered
//! `256·N` onwards, 32 bytes each, in order; a tile is full at 256 entries and partial
//! before. Its entries never change once complete, so a full tile may be cached forever and
//! a partial one is a prefix of every later version of it. [`TileSet`] computes roots and
//! RFC 9162 proofs for any tree size from fetched tiles, so a client needs no proof endpoint.

use super::proof::{ConsistencyProof, InclusionProof};
use super::range::{consistency_ranges, fold_range, inclusion_ranges, range_nodes, NodeId};
use crate::hash::{subtree_root, Hash};
use sha3::Sha3_256;
use std::collections::{BTreeSet, HashMap};

/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;
/// Entries in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Highest tile level a 64-bit tree size can reach (level 8 would hold subtrees of 2^64).
pub const MAX_TILE_LEVEL: u8 = 7;

/// A tile's coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level: its entries are subtrees of height `8·level`.
    pub level: u8,
    /// Position among the tiles of that level.
    pub index: u64,
}

/// Why tiles could not answer. Every variant is a refusal, never a guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// A tile's bytes are not whole 32-byte hashes, or more than a full tile.
    #[error("tile {level}/{index}: {len} bytes is not 1 to 256 hashes of 32 bytes")]
    Malformed {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// Bytes received.
        len: usize,
    },
    /// A tile was not fetched, or holds fewer entries than the tree size needs.
    #[error("tile {}/{} needed with at least {needed} entries, {have} held", .tile.level, .tile.index)]
    Missing {
        /// The tile.
        tile: TileId,
        /// Entries the computation needs.
        needed: u64,
        /// Entries held (0 when not fetched).
        have: u64,
    },
    /// The sizes do not describe a proof (index or old size beyond the tree).
    #[error("no proof for index or size {from} in a tree of {size}")]
    OutOfRange {
        /// Leaf index or older size.
        from: u64,
        /// Tree size.
        size: u64,
    },
}

/// Entries tile `tile` holds in a tree of `size` leaves: 0 when it does not exist yet,
/// [`TILE_WIDTH`] when full.
pub fn tile_width(tile: TileId, size: u64) -> u64 {
    if tile.level > MAX_TILE_LEVEL {
        return 0;
    }
    let complete = size >> (TILE_HEIGHT * u32::from(tile.level));
    match tile.index.checked_mul(TILE_WIDTH) {
        Some(first) => complete.saturating_sub(first).min(TILE_WIDTH),
        None => 0,
    }
}

/// Where a full subtree's root is found: its tile, and the run of entries (offset, count; a
/// power of two up to 128) whose perfect root it is.
pub fn locate(node: NodeId) -> (TileId, usize, usize) {
    let level = u32::from(node.level) / TILE_HEIGHT;
    let rest = u32::from(node.level) % TILE_HEIGHT;
    let first = node.index << rest;
    let tile = TileId {
        level: level as u8,
        index: first >> TILE_HEIGHT,
    };
    (tile, (first & (TILE_WIDTH - 1)) as usize, 1usize << rest)
}

/// The tiles, and the entries of each, that the roots of `ranges` read.
fn needs(ranges: &[(u64, u64)]) -> HashMap<TileId, u64> {
    let mut out: HashMap<TileId, u64> = HashMap::new();
    for &(start, end) in ranges {
        for node in range_nodes(start, end) {
            let (tile, offset, count) = locate(node);
            let need = (offset + count) as u64;
            let e = out.entry(tile).or_insert(0);
            *e = (*e).max(need);
        }
    }
    out
}

/// The tiles (beyond those `have` holds wide enough) that the roots of `ranges` read: pass
/// `inclusion_ranges`, `consistency_ranges` or `[(0, size)]` for a tree's root.
pub fn tiles_for(ranges: &[(u64, u64)], have: &TileSet) -> BTreeSet<TileId> {
    needs(ranges)
        .into_iter()
        .filter(|(tile, need)| have.width(*tile) < *need)
        .map(|(tile, _)| tile)
        .collect()
}

/// Tiles fetched by a client, answering roots and proofs.
#[derive(Debug, Default)]
pub struct TileSet {
    tiles: HashMap<TileId, Vec<Hash>>,
}

impl TileSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a tile from its served bytes.
    pub fn insert(&mut self, tile: TileId, bytes: &[u8]) -> Result<(), TileError> {
        let n = bytes.len() / 32;
        if bytes.is_empty() || !bytes.len().is_multiple_of(32) || n as u64 > TILE_WIDTH {
            return Err(TileError::Malformed {
                level: tile.level,
                index: tile.index,
                len: bytes.len(),
            });
        }
        let entries = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        self.tiles.insert(tile, entries);
        Ok(())
    }

    /// Entries held for `tile` (0 when not fetched).
    pub fn width(&self, tile: TileId) -> u64 {
        self.tiles.get(&tile).map_or(0, |t| t.len() as u64)
    }

    /// Root of the full subtree `node`.
    pub fn node(&self, node: NodeId) -> Result<Hash, TileError> {
        let (tile, offset, count) = locate(node);
        let entries = self
            .tiles
            .get(&tile)
            .and_then(|t| t.get(offset..offset + count))
            .ok_or(TileError::Missing {
                tile,
                needed: (offset + count) as u64,
                have: self.width(tile),
            })?;
        Ok(subtree_root::<Sha3_256>(entries))
    }

    /// Root of the leaf range `[start, end)` (aligned as proofs use).
    pub fn range_root(&self, start: u64, end: u64) -> Result<Hash, TileError> {
        let nodes = range_nodes(start, end)
            .into_iter()
            .map(|n| self.node(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(fold_range::<Sha3_256>(&nodes))
    }

    /// Root of the tree of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, TileError> {
        self.range_root(0, size)
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<InclusionProof, TileError> {
        if index >= size {
            return Err(TileError::OutOfRange { from: index, size });
        }
        let path = inclusion_ranges(index, size)
            .into_iter()
            .map(|(a, b)| self.range_root(a, b))
            .collect::<Result<_, _>>()?;
        Ok(InclusionProof {
            leaf_index: index,
            tree_size: size,
            path,
        })
    }

    /// Consistency proof from `from` to `to` leaves.
    pub fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, TileError> {
        if from > to {
            return Err(TileError::OutOfRange { from, size: to });
        }
        let path = consistency_ranges(from, to)
            .into_iter()
            .map(|(a, b)| self.range_root(a, b))
            .collect::<Result<_, _>>()?;
        Ok(ConsistencyProof {
            from_size: from,
            to_size: to,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Sha3Hasher;
    use crate::merkle::MemoryTree;

    fn leaf(i: u64) -> Hash {
        Sha3Hasher::leaf(&i.to_be_bytes())
    }

    /// The tiles of `tree` at `size`, as a server would serve them.
    fn serve(tree: &MemoryTree<Sha3_256>, size: u64) -> TileSet {
        let mut set = TileSet::new();
        for level in 0..=MAX_TILE_LEVEL {
            let mut index = 0;
            loop {
                let tile = TileId { level, index };
                let w = tile_width(tile, size);
                if w == 0 {
                    break;
                }
                let h = TILE_HEIGHT as u8 * level;
                let mut bytes = Vec::new();
                for i in 0..w {
                    let node = tree
                        .node(NodeId {
                            level: h,
                            index: index * TILE_WIDTH + i,
                        })
                        .unwrap_or_default();
                    bytes.extend_from_slice(&node);
                }
                set.insert(tile, &bytes).unwrap_or_default();
                index += 1;
            }
        }
        set
    }

    #[test]
    fn widths_follow_the_tree_size() {
        let t = |level, index| TileId { level, index };
        assert_eq!(tile_width(t(0, 0), 0), 0);
        assert_eq!(tile_width(t(0, 0), 1), 1);
        assert_eq!(tile_width(t(0, 0), 256), 256);
        assert_eq!(tile_width(t(0, 1), 256), 0);
        assert_eq!(tile_width(t(0, 1), 300), 44);
        assert_eq!(tile_width(t(1, 0), 255), 0);
        assert_eq!(tile_width(t(1, 0), 70_000), 256);
        assert_eq!(tile_width(t(1, 1), 70_000), 17);
        assert_eq!(tile_width(t(7, 0), u64::MAX), 255);
        assert_eq!(tile_width(t(8, 0), u64::MAX), 0);
        assert_eq!(tile_width(t(0, u64::MAX), u64::MAX), 0);
    }

    #[test]
    fn proofs_from_tiles_equal_the_trees() {
        let mut tree = MemoryTree::<Sha3_256>::new(Vec::new());
        for i in 0..70_000u64 {
            tree.push(leaf(i));
        }
        for size in [
            1u64, 2, 255, 256, 257, 511, 512, 65_535, 65_536, 65_537, 70_000,
        ] {
            let tiles = serve(&tree, size);
            assert_eq!(tiles.root(size).ok(), tree.root(size), "root {size}");
            for index in [0, size / 3, size / 2, size - 1] {
                let p = tiles.inclusion(index, size).map(|p| p.path);
                assert_eq!(
                    p.ok(),
                    tree.inclusion(index, size),
                    "inclusion {index}/{size}"
                );
            }
            for from in [1, size / 2, size - 1, size] {
                let p = tiles.consistency(from, size).map(|p| p.path);
                assert_eq!(
                    p.ok(),
                    tree.consistency(from, size),
                    "consistency {from}/{size}"
                );
            }
            assert!(tiles_for(&consistency_ranges(1, size), &tiles).is_empty());
            assert!(tiles_for(&[(0, size)], &tiles).is_empty());
        }
    }

    #[test]
    fn a_short_or_missing_tile_is_a_refusal() {
        let tree = MemoryTree::<Sha3_256>::new((0..300).map(leaf).collect());
        let mut tiles = serve(&tree, 300);
        let short: Vec<u8> = (0..10).flat_map(|i| leaf(i).to_vec()).collect();
        let _ = tiles.insert(TileId { level: 0, index: 1 }, &short);
        assert!(matches!(
            tiles.inclusion(299, 300),
            Err(TileError::Missing {
                needed: 43,
                have: 10,
                ..
            })
        ));
        assert_eq!(
            tiles_for(&inclusion_ranges(299, 300), &tiles),
            BTreeSet::from([TileId { level: 0, index: 1 }])
        );
        assert!(tiles
            .insert(TileId { level: 0, index: 2 }, &[0u8; 33])
            .is_err());
        assert!(tiles.insert(TileId { level: 0, index: 2 }, &[]).is_err());
        assert!(tiles
            .insert(TileId { level: 0, index: 2 }, &[0u8; 32 * 257])
            .is_err());
        assert!(TileSet::new().root(5).is_err());
        assert!(tiles.inclusion(300, 300).is_err());
        assert!(tiles.consistency(301, 300).is_err());
    }
}
