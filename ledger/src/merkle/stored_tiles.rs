//! The stored tree's layout: 16-wide tiles of node hashes (the C2SP tlog-tiles layout with
//! height 4), as any storage backend keeps them. Tile level `L` holds the nodes at height
//! `4·L`; any full subtree's root is the root of at most 8 consecutive entries of one tile,
//! so roots and proofs for any size read O(log n) tiles of at most 512 bytes. Pure: which
//! tiles a computation needs, what an append writes, and how nodes are read out of tiles.

use super::range::NodeId;
use super::tiles::{TileId, TILE_HEIGHT};
use crate::hash::{subtree_root, Hash, Sha3Hasher};
use sha3::Sha3_256;
use std::collections::HashMap;
use std::sync::Arc;

/// Tree levels per stored tile level.
pub const TILE_BITS: u32 = 4;
/// Entries per stored tile.
pub const TILE_WIDTH: u64 = 1 << TILE_BITS;
/// Bytes of a full stored tile.
pub const FULL_TILE_BYTES: usize = 32 * TILE_WIDTH as usize;

/// A stored tile's key: (tile level, tile index).
pub type TileKey = (i16, i64);

/// Why stored tiles cannot give what was asked: always a sign of damaged or missing data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredTileError {
    /// A partial tile an append extends does not hold the entries the tree size implies.
    #[error("partial tile {0:?} has wrong width")]
    PartialWidth(TileKey),
    /// A tile a node lives in was not read.
    #[error("tile {0:?} is missing")]
    Missing(TileKey),
    /// A tile holds fewer entries than a node needs.
    #[error("tile {0:?} is too short")]
    TooShort(TileKey),
}

/// Where a full subtree's root lives: which tile, and which run of entries in it (offset,
/// count; a power of two up to 8).
pub fn locate(node: NodeId) -> (TileKey, usize, usize) {
    let tile_level = u32::from(node.level) / TILE_BITS;
    let rest = u32::from(node.level) % TILE_BITS;
    let first = node.index << rest;
    let tile = first >> TILE_BITS;
    let offset = (first & (TILE_WIDTH - 1)) as usize;
    ((tile_level as i16, to_i64(tile)), offset, 1usize << rest)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Root of a run of 1, 2, 4 or 8 consecutive 32-byte entries (a perfect subtree).
fn perfect_root(entries: &[u8]) -> Hash {
    let mut level = [[0u8; 32]; 8];
    let mut n = 0;
    for (slot, chunk) in level.iter_mut().zip(entries.chunks_exact(32)) {
        slot.copy_from_slice(chunk);
        n += 1;
    }
    while n > 1 {
        for i in 0..n / 2 {
            level[i] = Sha3Hasher::node(&level[2 * i], &level[2 * i + 1]);
        }
        n /= 2;
    }
    level[0]
}

/// A full tile with the nodes inside it: its 16 entries, then the 8, 4 and 2 nodes of the
/// three heights above them, so that any node a proof needs from it is a lookup.
pub struct ExpandedTile([Hash; 30]);

/// Where each height's nodes start in an [`ExpandedTile`].
const EXPANDED_START: [usize; 4] = [0, 16, 24, 28];

impl ExpandedTile {
    /// Expands a full tile's bytes ([`FULL_TILE_BYTES`]).
    pub fn new(full: &[u8]) -> Self {
        let mut nodes = [[0u8; 32]; 30];
        for (slot, chunk) in nodes.iter_mut().zip(full.chunks_exact(32)) {
            slot.copy_from_slice(chunk);
        }
        for h in 1..4 {
            let (below, here) = (EXPANDED_START[h - 1], EXPANDED_START[h]);
            for i in 0..(16 >> h) {
                nodes[here + i] =
                    Sha3Hasher::node(&nodes[below + 2 * i], &nodes[below + 2 * i + 1]);
            }
        }
        Self(nodes)
    }

    /// The tile's 16 entries, as stored.
    pub fn entries(&self) -> Vec<u8> {
        self.0[..TILE_WIDTH as usize].concat()
    }

    /// The root of `count` (a power of two ≤ 8) entries from `offset`.
    fn node(&self, offset: usize, count: usize) -> Option<Hash> {
        let height = count.trailing_zeros() as usize;
        let start = EXPANDED_START.get(height)?;
        self.0.get(start + (offset >> height)).copied()
    }
}

/// Stored tiles gathered for one computation: full ones already expanded, others as raw
/// bytes (a prefix of the tile: partial tiles only grow).
#[derive(Default)]
pub struct TileBag {
    /// Full tiles, expanded.
    pub expanded: HashMap<TileKey, Arc<ExpandedTile>>,
    /// Tiles as read, whole 32-byte entries.
    pub raw: HashMap<TileKey, Vec<u8>>,
}

impl TileBag {
    /// Raw tiles as read from storage.
    pub fn from_raw(raw: HashMap<TileKey, Vec<u8>>) -> Self {
        Self {
            raw,
            ..Self::default()
        }
    }

    /// Whether at least `need` entries of `key` are here.
    pub fn holds(&self, key: TileKey, need: usize) -> bool {
        self.expanded.contains_key(&key) || self.raw.get(&key).is_some_and(|t| t.len() >= need * 32)
    }

    /// Whether every entry `node` needs is here.
    pub fn covers(&self, node: NodeId) -> bool {
        let (key, offset, count) = locate(node);
        self.holds(key, offset + count)
    }

    /// The first `need` entries of `key`, if held.
    pub fn entries(&self, key: TileKey, need: usize) -> Option<Vec<u8>> {
        if let Some(t) = self.expanded.get(&key) {
            return t.entries().get(..need * 32).map(<[u8]>::to_vec);
        }
        self.raw.get(&key)?.get(..need * 32).map(<[u8]>::to_vec)
    }

    /// Adds another bag's tiles.
    pub fn extend(&mut self, other: TileBag) {
        self.expanded.extend(other.expanded);
        self.raw.extend(other.raw);
    }

    /// The hash of `node`.
    pub fn node_hash(&self, node: NodeId) -> Result<Hash, StoredTileError> {
        let (key, offset, count) = locate(node);
        if let Some(h) = self.expanded.get(&key).and_then(|t| t.node(offset, count)) {
            return Ok(h);
        }
        let bytes = self.raw.get(&key).ok_or(StoredTileError::Missing(key))?;
        let slice = bytes
            .get(offset * 32..(offset + count) * 32)
            .ok_or(StoredTileError::TooShort(key))?;
        Ok(perfect_root(slice))
    }
}

/// Whether `bytes` can be a stored tile: whole 32-byte entries, at most [`TILE_WIDTH`] of
/// them (anything else from a cache is ignored, as a miss).
pub fn is_tile_shaped(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len().is_multiple_of(32) && bytes.len() <= FULL_TILE_BYTES
}

/// The partial tiles (one per level at most) of a tree of `size` leaves: those an append
/// extends.
pub fn partial_tiles(size: u64) -> Vec<TileKey> {
    let mut keys = Vec::new();
    let mut level = 0u32;
    while TILE_BITS * level < u64::BITS && (size >> (TILE_BITS * level)) > 0 {
        let count = size >> (TILE_BITS * level);
        if count & (TILE_WIDTH - 1) != 0 {
            keys.push((level as i16, to_i64(count >> TILE_BITS)));
        }
        level += 1;
    }
    keys
}

/// The tile rows to write when `new` leaf hashes are appended to a tree of `size` leaves,
/// given the current partial tile at each level ([`partial_tiles`]).
pub fn plan_append(
    size: u64,
    new: Vec<Hash>,
    partial: &HashMap<TileKey, Vec<u8>>,
) -> Result<Vec<(TileKey, Vec<u8>)>, StoredTileError> {
    let mut writes = Vec::new();
    let mut entries = new;
    let mut level: u32 = 0;
    while !entries.is_empty() {
        let before = size >> (TILE_BITS * level);
        let first_tile = before >> TILE_BITS;
        let offset = (before & (TILE_WIDTH - 1)) as usize;
        let key = (level as i16, to_i64(first_tile));
        let mut combined: Vec<u8> = Vec::with_capacity((offset + entries.len()) * 32);
        if offset > 0 {
            let existing = partial
                .get(&key)
                .filter(|t| t.len() == offset * 32)
                .ok_or(StoredTileError::PartialWidth(key))?;
            combined.extend_from_slice(existing);
        }
        for e in &entries {
            combined.extend_from_slice(e);
        }
        let mut next = Vec::new();
        for (i, chunk) in combined.chunks(FULL_TILE_BYTES).enumerate() {
            let tile_key = (level as i16, to_i64(first_tile + i as u64));
            if chunk.len() == FULL_TILE_BYTES {
                let hashes: Vec<Hash> = chunk
                    .chunks_exact(32)
                    .map(|c| {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(c);
                        h
                    })
                    .collect();
                next.push(subtree_root::<Sha3_256>(&hashes));
            }
            writes.push((tile_key, chunk.to_vec()));
        }
        entries = next;
        level += 1;
    }
    Ok(writes)
}

/// The stored tiles that hold the first `width` entries of public tile `tile` (height 8,
/// `merkle::tiles`), left to right, each with the number of its entries needed.
pub fn public_tile_parts(tile: TileId, width: u64) -> Vec<(TileKey, usize)> {
    let width = width as usize;
    let per_stored = TILE_WIDTH as usize;
    let level = i16::from(tile.level) * (TILE_HEIGHT / TILE_BITS) as i16;
    let first = to_i64(tile.index << (TILE_HEIGHT - TILE_BITS));
    (0..width.div_ceil(per_stored))
        .map(|i| {
            (
                (level, first + i as i64),
                (width - i * per_stored).min(per_stored),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemoryTree;

    /// Every node inside a full tile, read from its expansion or folded from raw entries,
    /// equals the rs_merkle root of the same entries.
    #[test]
    fn expanded_tiles_and_folds_agree_with_rs_merkle() {
        let entries: Vec<Hash> = (0u8..16).map(|i| Sha3Hasher::leaf(&[i])).collect();
        let raw: Vec<u8> = entries.concat();
        let tile = ExpandedTile::new(&raw);
        for height in 0..4 {
            let count = 1usize << height;
            for offset in (0..16).step_by(count) {
                let want = subtree_root::<Sha3_256>(&entries[offset..offset + count]);
                assert_eq!(tile.node(offset, count), Some(want), "{offset}+{count}");
                assert_eq!(perfect_root(&raw[offset * 32..(offset + count) * 32]), want);
            }
        }
    }

    /// Applies appends to an in-memory tile map and checks every node against memory; the
    /// partial tiles named before each append are exactly those the plan extends.
    #[test]
    fn planned_tiles_hold_the_right_nodes() {
        let mut tiles: HashMap<TileKey, Vec<u8>> = HashMap::new();
        let mut mem = MemoryTree::<Sha3_256>::new(Vec::new());
        let mut size = 0u64;
        for (step, batch) in [1usize, 255, 1, 300, 65_000, 700, 3].iter().enumerate() {
            let leaves: Vec<Hash> = (0..*batch)
                .map(|i| Sha3Hasher::leaf(format!("{step}-{i}").as_bytes()))
                .collect();
            for l in &leaves {
                mem.push(*l);
            }
            let partial: HashMap<TileKey, Vec<u8>> = partial_tiles(size)
                .into_iter()
                .filter_map(|k| tiles.get(&k).map(|t| (k, t.clone())))
                .collect();
            for (k, v) in plan_append(size, leaves, &partial).unwrap_or_default() {
                tiles.insert(k, v);
            }
            size += *batch as u64;
        }
        let bag = TileBag::from_raw(tiles);
        for node in [
            NodeId { level: 0, index: 0 },
            NodeId { level: 8, index: 0 },
            NodeId { level: 9, index: 1 },
            NodeId {
                level: 16,
                index: 0,
            },
            NodeId {
                level: 3,
                index: 2000,
            },
            NodeId {
                level: 10,
                index: 63,
            },
        ] {
            assert!(bag.covers(node), "{node:?}");
            assert_eq!(bag.node_hash(node).ok(), mem.node(node), "{node:?}");
        }
    }

    /// An append refuses a partial tile of the wrong width; a bag refuses a node whose tile is
    /// missing or short.
    #[test]
    fn damaged_tiles_are_refused() {
        let leaf = Sha3Hasher::leaf(b"x");
        let mut partial = HashMap::new();
        partial.insert((0, 0), vec![0u8; 64]);
        assert_eq!(
            plan_append(3, vec![leaf], &partial),
            Err(StoredTileError::PartialWidth((0, 0)))
        );
        let node = NodeId { level: 1, index: 1 };
        assert_eq!(
            TileBag::default().node_hash(node),
            Err(StoredTileError::Missing((0, 0)))
        );
        let short = TileBag::from_raw(HashMap::from([((0, 0), vec![0u8; 96])]));
        assert!(!short.covers(node));
        assert_eq!(
            short.node_hash(node),
            Err(StoredTileError::TooShort((0, 0)))
        );
    }

    /// A public tile of height 8 is made of 16 stored tiles of level 2·L.
    #[test]
    fn public_tiles_map_onto_stored_tiles() {
        let parts = public_tile_parts(TileId { level: 1, index: 2 }, 40);
        assert_eq!(parts, vec![((2, 32), 16), ((2, 33), 16), ((2, 34), 8)]);
        assert!(public_tile_parts(TileId { level: 0, index: 0 }, 0).is_empty());
        assert_eq!(partial_tiles(0), Vec::<TileKey>::new());
        assert_eq!(partial_tiles(17), vec![(0, 1), (1, 0)]);
        assert_eq!(partial_tiles(256), vec![(2, 0)]);
    }
}
