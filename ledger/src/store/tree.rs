//! The stored Merkle tree of each scroll, as 16-wide tiles of node hashes (the C2SP
//! tlog-tiles layout with height 4): tile level `L` holds the nodes at height `4·L`. Any full
//! subtree's root is the root of at most 8 consecutive entries of one tile, so roots and
//! proofs for any size up to the integrated size read O(log n) rows of at most 512 bytes
//! (small enough to stay inline, never TOASTed) in one query, and never the whole tree.

use super::{to_hash, to_i64, to_u64, Store, StoreError};
use crate::hash::{subtree_root, Hash, Sha3Hasher};
use crate::merkle::tiles::{TileId, TILE_HEIGHT};
use crate::merkle::{
    consistency_ranges, fold_range, inclusion_ranges, range_nodes, ConsistencyProof,
    InclusionProof, NodeId,
};
use deadpool_postgres::GenericClient;
use sha3::Sha3_256;
use std::collections::{BTreeSet, HashMap};

/// Entries per tile.
pub const TILE_WIDTH: u64 = 1 << TILE_BITS;
/// Tree levels per tile level.
pub const TILE_BITS: u32 = 4;

/// Where a full subtree's root lives: which tile, and which run of entries in it.
fn locate(node: NodeId) -> (TileKey, usize, usize) {
    let tile_level = u32::from(node.level) / TILE_BITS;
    let rest = u32::from(node.level) % TILE_BITS;
    let first = node.index << rest;
    let tile = first >> TILE_BITS;
    let offset = (first & (TILE_WIDTH - 1)) as usize;
    ((tile_level as i16, to_i64(tile)), offset, 1usize << rest)
}

/// In one query: the integrated tree size and the tiles at `keys`.
async fn read_tiles(
    client: &impl GenericClient,
    scroll_id: i32,
    keys: &BTreeSet<TileKey>,
) -> Result<(u64, HashMap<TileKey, Vec<u8>>), StoreError> {
    let levels: Vec<i16> = keys.iter().map(|k| k.0).collect();
    let idxs: Vec<i64> = keys.iter().map(|k| k.1).collect();
    let rows = client
        .query(
            "SELECT tr.size, t.level, t.idx, t.hashes FROM trees tr \
             LEFT JOIN LATERAL ( \
               SELECT t.level, t.idx, t.hashes FROM tree_tiles t \
               JOIN UNNEST($2::smallint[], $3::bigint[]) AS k(level, idx) \
                 ON t.level = k.level AND t.idx = k.idx \
               WHERE t.scroll_id = tr.scroll_id) t ON true \
             WHERE tr.scroll_id = $1",
            &[&scroll_id, &levels, &idxs],
        )
        .await?;
    let size = rows
        .first()
        .map(|r| to_u64(r.get(0)))
        .ok_or_else(|| StoreError::UnknownScroll(format!("id {scroll_id}")))?;
    let mut tiles = HashMap::with_capacity(rows.len());
    for r in rows {
        if let (Some(level), Some(idx), Some(hashes)) = (
            r.get::<_, Option<i16>>(1),
            r.get::<_, Option<i64>>(2),
            r.get::<_, Option<Vec<u8>>>(3),
        ) {
            tiles.insert((level, idx), hashes);
        }
    }
    Ok((size, tiles))
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
struct ExpandedTile([Hash; 30]);

/// Where each height's nodes start in an [`ExpandedTile`].
const EXPANDED_START: [usize; 4] = [0, 16, 24, 28];

impl ExpandedTile {
    fn new(full: &[u8]) -> Self {
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
    fn entries(&self) -> Vec<u8> {
        self.0[..TILE_WIDTH as usize].concat()
    }

    /// The root of `count` (a power of two ≤ 8) entries from `offset`.
    fn node(&self, offset: usize, count: usize) -> Option<Hash> {
        let height = count.trailing_zeros() as usize;
        let start = EXPANDED_START.get(height)?;
        self.0.get(start + (offset >> height)).copied()
    }
}

/// Tiles gathered for one request: expanded ones from the memo, raw bytes from Redis or
/// Postgres.
#[derive(Default)]
struct Tiles {
    expanded: HashMap<TileKey, std::sync::Arc<ExpandedTile>>,
    raw: HashMap<TileKey, Vec<u8>>,
}

impl Tiles {
    /// Whether every entry `node` needs is here.
    fn covers(&self, node: NodeId) -> bool {
        let (key, offset, count) = locate(node);
        self.expanded.contains_key(&key)
            || self
                .raw
                .get(&key)
                .is_some_and(|t| t.len() >= (offset + count) * 32)
    }

    /// The hash of `node`.
    fn node_hash(&self, scroll_id: i32, node: NodeId) -> Result<Hash, StoreError> {
        let (key, offset, count) = locate(node);
        if let Some(h) = self.expanded.get(&key).and_then(|t| t.node(offset, count)) {
            return Ok(h);
        }
        let bytes = self.raw.get(&key).ok_or_else(|| {
            StoreError::Integrity(format!("scroll {scroll_id}: tile {key:?} is missing"))
        })?;
        let slice = bytes
            .get(offset * 32..(offset + count) * 32)
            .ok_or_else(|| {
                StoreError::Integrity(format!("scroll {scroll_id}: tile {key:?} is too short"))
            })?;
        Ok(perfect_root(slice))
    }
}

/// Whether `bytes` can be a stored tile: whole 32-byte entries, at most [`TILE_WIDTH`] of
/// them (anything else from the cache is ignored, as a miss).
fn is_tile_shaped(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len().is_multiple_of(32) && bytes.len() <= FULL_TILE_BYTES
}

fn tile_cache_key(scroll_id: i32, key: TileKey) -> String {
    format!("tile:{scroll_id}:{}:{}", key.0, key.1)
}

/// Bytes of a full tile: only these are kept in process memory (they never change).
const FULL_TILE_BYTES: usize = 32 * TILE_WIDTH as usize;

/// An in-process, bounded map of full tiles in front of Redis: the hot upper levels of every
/// proof are served without a round trip. When full, the oldest entry makes room. It is fed
/// only with tiles read from Postgres or authenticated by the cache (`Cache::get_many` returns
/// only entries sealed under this deployment's secret for that very key), and only with
/// tiles of exactly [`FULL_TILE_BYTES`].
pub(crate) struct TileMemo {
    inner: std::sync::Mutex<MemoInner>,
    capacity: usize,
}

#[derive(Default)]
struct MemoInner {
    tiles: HashMap<(i32, TileKey), std::sync::Arc<ExpandedTile>>,
    order: std::collections::VecDeque<(i32, TileKey)>,
}

impl TileMemo {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: std::sync::Mutex::new(MemoInner::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, scroll_id: i32, key: TileKey) -> Option<std::sync::Arc<ExpandedTile>> {
        self.lock().tiles.get(&(scroll_id, key)).cloned()
    }

    fn put(&self, scroll_id: i32, key: TileKey, bytes: &[u8]) {
        if bytes.len() != FULL_TILE_BYTES || self.capacity == 0 {
            return;
        }
        let tile = std::sync::Arc::new(ExpandedTile::new(bytes));
        let mut memo = self.lock();
        if memo.tiles.insert((scroll_id, key), tile).is_some() {
            return;
        }
        memo.order.push_back((scroll_id, key));
        while memo.order.len() > self.capacity {
            if let Some(oldest) = memo.order.pop_front() {
                memo.tiles.remove(&oldest);
            }
        }
    }
}

impl Store {
    /// Keeps tiles read from Postgres in the memo (full ones) and, sealed, in Redis.
    async fn remember_tiles(&self, scroll_id: i32, fetched: &HashMap<TileKey, Vec<u8>>) {
        if let Some((cache, memo)) = &self.tile_cache {
            let items: Vec<(String, Vec<u8>)> = fetched
                .iter()
                .map(|(k, v)| {
                    memo.put(scroll_id, *k, v);
                    (tile_cache_key(scroll_id, *k), v.clone())
                })
                .collect();
            cache.put_many(&items).await;
        }
    }

    /// Roots of each range, reading the nodes they need from the tile cache and the rest
    /// (with the tree size) in one query; fails with [`StoreError::BeyondTree`] if `size`
    /// exceeds the integrated size. When the cache holds every node, the size needs no
    /// check: a node is only ever stored once all its leaves are integrated.
    async fn range_roots(
        &self,
        scroll_id: i32,
        size: u64,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<Hash>, StoreError> {
        let per_range: Vec<Vec<NodeId>> = ranges.iter().map(|(a, b)| range_nodes(*a, *b)).collect();
        let all: Vec<NodeId> = per_range.iter().flatten().copied().collect();
        let mut tiles = Tiles::default();
        if let Some((cache, memo)) = &self.tile_cache {
            let mut keys: Vec<TileKey> = Vec::new();
            for key in all.iter().map(|n| locate(*n).0).collect::<BTreeSet<_>>() {
                match memo.get(scroll_id, key) {
                    Some(tile) => {
                        tiles.expanded.insert(key, tile);
                    }
                    None => keys.push(key),
                }
            }
            if all.iter().any(|n| !tiles.covers(*n)) {
                let names: Vec<String> =
                    keys.iter().map(|k| tile_cache_key(scroll_id, *k)).collect();
                for (key, hit) in keys.into_iter().zip(cache.get_many(&names).await) {
                    if let Some(bytes) = hit.filter(|b| is_tile_shaped(b)) {
                        memo.put(scroll_id, key, &bytes);
                        tiles.raw.insert(key, bytes);
                    }
                }
            }
        }
        let missing: BTreeSet<TileKey> = all
            .iter()
            .filter(|n| !tiles.covers(**n))
            .map(|n| locate(*n).0)
            .collect();
        if !missing.is_empty() || all.is_empty() {
            let client = self.pool().get().await?;
            let (available, fetched) = read_tiles(&client, scroll_id, &missing).await?;
            check_size(size, available)?;
            self.remember_tiles(scroll_id, &fetched).await;
            tiles.raw.extend(fetched);
        }
        let hashes: HashMap<NodeId, Hash> = all
            .iter()
            .map(|n| Ok((*n, tiles.node_hash(scroll_id, *n)?)))
            .collect::<Result<_, StoreError>>()?;
        per_range
            .iter()
            .map(|nodes| {
                let hs: Vec<Hash> = nodes
                    .iter()
                    .map(|n| {
                        hashes
                            .get(n)
                            .copied()
                            .ok_or_else(|| StoreError::Integrity(format!("node {n:?} missing")))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(fold_range::<Sha3_256>(&hs))
            })
            .collect()
    }
}

async fn tree_size_of(client: &impl GenericClient, scroll_id: i32) -> Result<u64, StoreError> {
    let row = client
        .query_opt("SELECT size FROM trees WHERE scroll_id = $1", &[&scroll_id])
        .await?
        .ok_or_else(|| StoreError::UnknownScroll(format!("id {scroll_id}")))?;
    Ok(to_u64(row.get(0)))
}

fn check_size(requested: u64, available: u64) -> Result<(), StoreError> {
    if requested > available {
        return Err(StoreError::BeyondTree {
            requested,
            available,
        });
    }
    Ok(())
}

/// What one integration step did.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    /// Tree size before.
    pub from: u64,
    /// Tree size after.
    pub to: u64,
    /// The first receipt refused; it and every later one stay out of the tree.
    pub rejected: Option<RejectedLeaf>,
}

/// A receipt integration refused: its stored row is not what it claims to be.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedLeaf {
    /// The position the tree needed next.
    pub seq: u64,
    /// What is wrong with the row found there (or that none was).
    pub reason: String,
}

/// The shape of a receipt's leaf, parsed without building its payload: exactly the six
/// fields of SPEC §3, the payload an object (skipped, not kept), so integration stays a
/// streaming pass at hashing speed.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafShape<'a> {
    #[serde(borrow)]
    scroll: std::borrow::Cow<'a, str>,
    seq: u64,
    #[serde(rename = "type")]
    _kind: serde::de::IgnoredAny,
    #[serde(rename = "payload")]
    _payload: SkippedObject,
    #[serde(rename = "submitted_at")]
    _submitted_at: serde::de::IgnoredAny,
    #[serde(rename = "submitter")]
    _submitter: serde::de::IgnoredAny,
}

/// A JSON object, read and discarded.
struct SkippedObject;

impl<'de> serde::Deserialize<'de> for SkippedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SkippedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SkippedObject, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(SkippedObject)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Re-derives the leaf hash of the receipt row found where `expected` was due: its seq
/// must be `expected`, `H(0x00‖leaf)` must equal the stored hash, and the bytes must be a
/// receipt (the six fields, a payload object) naming `scroll` and `expected`. Returns the
/// hash, or why the row is refused.
pub fn check_leaf(
    scroll: &str,
    expected: u64,
    seq: u64,
    leaf: &[u8],
    stored_hash: &[u8],
) -> Result<Hash, String> {
    if seq != expected {
        return Err(format!(
            "receipt {seq} found where {expected} was expected (a receipt is missing)"
        ));
    }
    let hash = crate::receipt::leaf_hash(leaf);
    if stored_hash != hash.as_slice() {
        return Err("the stored leaf hash is not H(0x00 || leaf) of the stored bytes".into());
    }
    match serde_json::from_slice::<LeafShape>(leaf) {
        Ok(r) if r.scroll == scroll && r.seq == expected => Ok(hash),
        Ok(r) => Err(format!("its bytes name position {}/{}", r.scroll, r.seq)),
        Err(e) => Err(format!("its bytes are not a receipt: {e}")),
    }
}

/// Tile key: (tile level, tile index).
pub type TileKey = (i16, i64);

/// The tile rows to write when `new` leaf hashes are appended to a tree of `size` leaves,
/// given the current partial tile at each level (pure: used by the store and benchmarks).
pub fn plan_append(
    size: u64,
    new: Vec<Hash>,
    partial: &HashMap<TileKey, Vec<u8>>,
) -> Result<Vec<(TileKey, Vec<u8>)>, StoreError> {
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
                .ok_or_else(|| {
                    StoreError::Integrity(format!("partial tile {key:?} has wrong width"))
                })?;
            combined.extend_from_slice(existing);
        }
        for e in &entries {
            combined.extend_from_slice(e);
        }
        let mut next = Vec::new();
        for (i, chunk) in combined.chunks(TILE_WIDTH as usize * 32).enumerate() {
            let tile_key = (level as i16, to_i64(first_tile + i as u64));
            if chunk.len() == TILE_WIDTH as usize * 32 {
                let hashes: Vec<Hash> = chunk
                    .chunks_exact(32)
                    .map(|c| to_hash(c, "tile entry"))
                    .collect::<Result<_, _>>()?;
                next.push(subtree_root::<Sha3_256>(&hashes));
            }
            writes.push((tile_key, chunk.to_vec()));
        }
        entries = next;
        level += 1;
    }
    Ok(writes)
}

impl Store {
    /// Integrated tree size of a scroll.
    pub async fn tree_size(&self, scroll_id: i32) -> Result<u64, StoreError> {
        let client = self.pool().get().await?;
        tree_size_of(&client, scroll_id).await
    }

    /// Appends leaf hashes to the scroll's stored tree, which must be at `expected_size`.
    /// Returns the new size. Runs in one transaction holding the tree row lock.
    pub async fn append_tree(
        &self,
        scroll_id: i32,
        expected_size: u64,
        leaves: Vec<Hash>,
    ) -> Result<u64, StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let size = lock_tree(&tx, scroll_id).await?;
        if size != expected_size {
            return Err(StoreError::TreeSizeMismatch {
                scroll_id,
                expected: expected_size,
                actual: size,
            });
        }
        let new_size = write_leaves(&tx, scroll_id, size, leaves).await?;
        tx.commit().await?;
        Ok(new_size)
    }

    /// Integrates up to `limit` receipts beyond the tree size into the tree (see
    /// [`Store::integrate_step`]). Returns `(old_size, new_size)`; fails if the first receipt
    /// beyond the tree is refused (those before a refused one are integrated).
    pub async fn integrate(&self, scroll_id: i32, limit: u32) -> Result<(u64, u64), StoreError> {
        let step = self.integrate_step(scroll_id, limit).await?;
        match step.rejected {
            Some(r) if step.to == step.from => Err(StoreError::Integrity(format!(
                "scroll {scroll_id}: receipt {}: {}",
                r.seq, r.reason
            ))),
            _ => Ok((step.from, step.to)),
        }
    }

    /// Integrates up to `limit` receipts beyond the tree size, in one transaction holding the
    /// tree row lock. Each receipt's leaf hash is re-derived from its stored bytes and must
    /// equal the stored `leaf_hash`, and the bytes must be a receipt naming this scroll and
    /// its own seq, in an unbroken sequence; the first receipt that fails stops the step, and
    /// only those before it enter the tree.
    pub async fn integrate_step(
        &self,
        scroll_id: i32,
        limit: u32,
    ) -> Result<Integration, StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT t.size, s.name FROM trees t JOIN scrolls s ON s.id = t.scroll_id \
                 WHERE t.scroll_id = $1 FOR UPDATE OF t",
                &[&scroll_id],
            )
            .await?
            .ok_or_else(|| StoreError::UnknownScroll(format!("id {scroll_id}")))?;
        let size = to_u64(row.get(0));
        let name: String = row.get(1);
        let rows = tx
            .query(
                "SELECT seq, leaf, leaf_hash FROM receipts WHERE scroll_id = $1 AND seq >= $2 \
                 ORDER BY seq LIMIT $3",
                &[&scroll_id, &to_i64(size), &i64::from(limit)],
            )
            .await?;
        let mut leaves = Vec::with_capacity(rows.len());
        let mut rejected = None;
        for row in &rows {
            let expected = size + leaves.len() as u64;
            let seq = to_u64(row.get(0));
            match check_leaf(&name, expected, seq, row.get(1), row.get(2)) {
                Ok(hash) => leaves.push(hash),
                Err(reason) => {
                    rejected = Some(RejectedLeaf {
                        seq: expected,
                        reason,
                    });
                    break;
                }
            }
        }
        let new_size = write_leaves(&tx, scroll_id, size, leaves).await?;
        tx.commit().await?;
        Ok(Integration {
            from: size,
            to: new_size,
            rejected,
        })
    }

    /// The roots of the perfect subtrees that make up the scroll's first `size` leaves,
    /// largest first, each with its height: read from Postgres alone (never a cache), for
    /// checks that must not trust one. Fails if the tree is smaller than `size` or a tile it
    /// needs is missing or short.
    pub async fn stored_frontier(
        &self,
        scroll_id: i32,
        size: u64,
    ) -> Result<Vec<(u8, Hash)>, StoreError> {
        let nodes = range_nodes(0, size);
        let keys: BTreeSet<TileKey> = nodes.iter().map(|n| locate(*n).0).collect();
        let client = self.pool().get().await?;
        let (available, raw) = read_tiles(&client, scroll_id, &keys).await?;
        check_size(size, available)?;
        let tiles = Tiles {
            raw,
            ..Tiles::default()
        };
        nodes
            .iter()
            .map(|n| Ok((n.level, tiles.node_hash(scroll_id, *n)?)))
            .collect()
    }

    /// Root of the scroll's first `size` leaves, from stored tiles.
    pub async fn tree_root(&self, scroll_id: i32, size: u64) -> Result<Hash, StoreError> {
        let roots = self.range_roots(scroll_id, size, &[(0, size)]).await?;
        roots
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Integrity("no root computed".into()))
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    pub async fn inclusion_proof(
        &self,
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
        let path = self
            .range_roots(scroll_id, size, &inclusion_ranges(index, size))
            .await?;
        Ok(InclusionProof {
            leaf_index: index,
            tree_size: size,
            path,
        })
    }

    /// Consistency proof between sizes `from` ≤ `to`.
    pub async fn consistency_proof(
        &self,
        scroll_id: i32,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, StoreError> {
        check_size(from, to)?;
        let path = self
            .range_roots(scroll_id, to, &consistency_ranges(from, to))
            .await?;
        Ok(ConsistencyProof {
            from_size: from,
            to_size: to,
            path,
        })
    }
}

impl Store {
    /// The first `width` entries of public tile `tile` (height 8, `merkle::tiles`), from the
    /// stored tiles (height 4) of level `2·L` that hold them — through the same memo and
    /// Redis cache as proofs, the rest from Postgres in one query. The caller bounds `width`
    /// by a signed checkpoint (`merkle::tiles::tile_width`); fewer stored entries than that
    /// is an integrity error.
    pub async fn public_tile(
        &self,
        scroll_id: i32,
        tile: TileId,
        width: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let width = width as usize;
        let per_stored = TILE_WIDTH as usize;
        let level = i16::from(tile.level) * (TILE_HEIGHT / TILE_BITS) as i16;
        let first = to_i64(tile.index << (TILE_HEIGHT - TILE_BITS));
        // (stored tile, entries needed from it), left to right.
        let parts: Vec<(TileKey, usize)> = (0..width.div_ceil(per_stored))
            .map(|i| {
                (
                    (level, first + i as i64),
                    (width - i * per_stored).min(per_stored),
                )
            })
            .collect();
        let mut have: HashMap<TileKey, Vec<u8>> = HashMap::with_capacity(parts.len());
        if let Some((cache, memo)) = &self.tile_cache {
            let mut ask = Vec::new();
            for (key, _) in &parts {
                match memo.get(scroll_id, *key) {
                    Some(t) => {
                        have.insert(*key, t.entries());
                    }
                    None => ask.push(*key),
                }
            }
            let names: Vec<String> = ask.iter().map(|k| tile_cache_key(scroll_id, *k)).collect();
            for (key, hit) in ask.into_iter().zip(cache.get_many(&names).await) {
                if let Some(bytes) = hit.filter(|b| is_tile_shaped(b)) {
                    memo.put(scroll_id, key, &bytes);
                    have.insert(key, bytes);
                }
            }
        }
        let short = |have: &HashMap<TileKey, Vec<u8>>, (key, need): &(TileKey, usize)| {
            have.get(key).is_none_or(|b| b.len() < need * 32)
        };
        let missing: BTreeSet<TileKey> = parts
            .iter()
            .filter(|p| short(&have, p))
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() {
            let client = self.pool().get().await?;
            let (_, fetched) = read_tiles(&client, scroll_id, &missing).await?;
            self.remember_tiles(scroll_id, &fetched).await;
            have.extend(fetched);
        }
        let mut out = Vec::with_capacity(width * 32);
        for part in &parts {
            if short(&have, part) {
                return Err(StoreError::Integrity(format!(
                    "stored tile {:?} holds too few entries for {width} of public tile {}/{}",
                    part.0, tile.level, tile.index
                )));
            }
            if let Some(bytes) = have.get(&part.0) {
                out.extend_from_slice(&bytes[..part.1 * 32]);
            }
        }
        Ok(out)
    }
}

async fn lock_tree(client: &impl GenericClient, scroll_id: i32) -> Result<u64, StoreError> {
    let row = client
        .query_opt(
            "SELECT size FROM trees WHERE scroll_id = $1 FOR UPDATE",
            &[&scroll_id],
        )
        .await?
        .ok_or_else(|| StoreError::UnknownScroll(format!("id {scroll_id}")))?;
    Ok(to_u64(row.get(0)))
}

async fn write_leaves(
    client: &impl GenericClient,
    scroll_id: i32,
    size: u64,
    leaves: Vec<Hash>,
) -> Result<u64, StoreError> {
    if leaves.is_empty() {
        return Ok(size);
    }
    let new_size = size + leaves.len() as u64;
    let mut partial_keys = Vec::new();
    let mut level = 0u32;
    while (size >> (TILE_BITS * level)) > 0 {
        let count = size >> (TILE_BITS * level);
        if count & (TILE_WIDTH - 1) != 0 {
            partial_keys.push((level as i16, to_i64(count >> TILE_BITS)));
        }
        level += 1;
    }
    let mut partial = HashMap::new();
    if !partial_keys.is_empty() {
        let levels: Vec<i16> = partial_keys.iter().map(|k| k.0).collect();
        let idxs: Vec<i64> = partial_keys.iter().map(|k| k.1).collect();
        let rows = client
            .query(
                "SELECT t.level, t.idx, t.hashes FROM tree_tiles t \
                 JOIN UNNEST($2::smallint[], $3::bigint[]) AS k(level, idx) \
                   ON t.level = k.level AND t.idx = k.idx \
                 WHERE t.scroll_id = $1",
                &[&scroll_id, &levels, &idxs],
            )
            .await?;
        for r in rows {
            partial.insert(
                (r.get::<_, i16>(0), r.get::<_, i64>(1)),
                r.get::<_, Vec<u8>>(2),
            );
        }
    }
    let writes = plan_append(size, leaves, &partial)?;
    let levels: Vec<i16> = writes.iter().map(|w| w.0 .0).collect();
    let idxs: Vec<i64> = writes.iter().map(|w| w.0 .1).collect();
    let blobs: Vec<&[u8]> = writes.iter().map(|w| w.1.as_slice()).collect();
    client
        .execute(
            "INSERT INTO tree_tiles (scroll_id, level, idx, hashes) \
             SELECT $1, * FROM UNNEST($2::smallint[], $3::bigint[], $4::bytea[]) \
             ON CONFLICT (scroll_id, level, idx) DO UPDATE SET hashes = EXCLUDED.hashes",
            &[&scroll_id, &levels, &idxs, &blobs],
        )
        .await?;
    client
        .execute(
            "UPDATE trees SET size = $2, updated_at = now() WHERE scroll_id = $1",
            &[&scroll_id, &to_i64(new_size)],
        )
        .await?;
    Ok(new_size)
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

    /// A leaf is accepted only with its own hash, its own position and a receipt's shape.
    #[test]
    fn check_leaf_refuses_what_is_not_the_receipt_it_claims_to_be() {
        let leaf = |scroll: &str, seq: u64| {
            crate::receipt::ReceiptDraft::new("t", serde_json::json!({"n": {"deep": [1, 2]}}))
                .unwrap_or_else(|e| panic!("{e}"))
                .leaf_at(scroll, seq, "2026-01-01T00:00:00.000000Z", "key_x")
        };
        let good = leaf("drills", 5);
        let hash = crate::receipt::leaf_hash(&good);
        assert_eq!(check_leaf("drills", 5, 5, &good, &hash), Ok(hash));
        let refused =
            |scroll: &str, expected: u64, seq: u64, bytes: &[u8], stored: &[u8]| match check_leaf(
                scroll, expected, seq, bytes, stored,
            ) {
                Err(why) => why,
                Ok(_) => panic!("accepted {}", String::from_utf8_lossy(bytes)),
            };
        assert!(refused("drills", 5, 6, &good, &hash).contains("found where 5"));
        assert!(refused("drills", 5, 5, &good, &[0; 32]).contains("stored leaf hash"));
        assert!(refused("drills", 5, 5, &good, &hash[..31]).contains("stored leaf hash"));
        let other = leaf("drills", 7);
        let h = crate::receipt::leaf_hash(&other);
        assert!(refused("drills", 5, 5, &other, &h).contains("name position drills/7"));
        let other = leaf("audits", 5);
        let h = crate::receipt::leaf_hash(&other);
        assert!(refused("drills", 5, 5, &other, &h).contains("name position audits/5"));
        for bytes in [
            br#"{"scroll":"drills","seq":5}"#.to_vec(),
            br#"{"payload":[],"scroll":"drills","seq":5,"submitted_at":"x","submitter":"k","type":"t"}"#.to_vec(),
            br#"{"extra":1,"payload":{},"scroll":"drills","seq":5,"submitted_at":"x","submitter":"k","type":"t"}"#.to_vec(),
            br#"{"payload":{},"scroll":"audits","scroll":"drills","seq":5,"submitted_at":"x","submitter":"k","type":"t"}"#.to_vec(),
            b"not json".to_vec(),
        ] {
            let h = crate::receipt::leaf_hash(&bytes);
            let why = refused("drills", 5, 5, &bytes, &h);
            assert!(why.contains("not a receipt"), "{why}");
        }
    }

    /// Applies appends to an in-memory tile map and checks every node against memory.
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
            for (k, v) in plan_append(size, leaves, &tiles).unwrap_or_default() {
                tiles.insert(k, v);
            }
            size += *batch as u64;
        }
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
            let (key, offset, count) = locate(node);
            let bytes = &tiles[&key][offset * 32..(offset + count) * 32];
            let entries: Vec<Hash> = bytes
                .chunks_exact(32)
                .map(|c| c.try_into().unwrap_or([0; 32]))
                .collect();
            assert_eq!(
                Some(subtree_root::<Sha3_256>(&entries)),
                mem.node(node),
                "{node:?}"
            );
        }
    }
}
