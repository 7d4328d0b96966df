//! The read-through cache in front of a tile store: full tiles in process memory (expanded,
//! so the hot upper levels of every proof need no round trip), then Redis, then the store
//! itself for what is still missing. Stored tile entries never change once written and a
//! partial tile only grows, so a cached tile is good for as many entries as it holds.

use super::{StoreFuture, TileStore};
use crate::cache::Cache;
use crate::hash::Hash;
use crate::merkle::stored_tiles::{
    is_tile_shaped, ExpandedTile, TileBag, TileKey, FULL_TILE_BYTES,
};
use crate::store::tree::Integration;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A tile store read through the memo and Redis (for serving proofs; checks that must not
/// trust a cache use [`TileStore::stored_frontier`], which goes to the store itself).
#[derive(Clone)]
pub struct CachedTiles {
    inner: Arc<dyn TileStore>,
    cache: Cache,
    memo: Arc<TileMemo>,
}

impl CachedTiles {
    /// `inner` read through up to `memo_tiles` full tiles in memory (512 bytes each) and
    /// `cache`.
    pub fn new(inner: Arc<dyn TileStore>, cache: Cache, memo_tiles: usize) -> Self {
        Self {
            inner,
            cache,
            memo: Arc::new(TileMemo::new(memo_tiles)),
        }
    }

    /// Keeps tiles read from the store in the memo (full ones) and, sealed, in Redis.
    async fn remember(&self, scroll_id: i32, fetched: &HashMap<TileKey, Vec<u8>>) {
        let items: Vec<(String, Vec<u8>)> = fetched
            .iter()
            .map(|(k, v)| {
                self.memo.put(scroll_id, *k, v);
                (cache_key(scroll_id, *k), v.clone())
            })
            .collect();
        self.cache.put_many(&items).await;
    }

    async fn read(
        &self,
        scroll_id: i32,
        wants: &[(TileKey, usize)],
    ) -> Result<(Option<u64>, TileBag), crate::store::StoreError> {
        let mut bag = TileBag::default();
        let mut ask = Vec::new();
        for (key, _) in wants {
            match self.memo.get(scroll_id, *key) {
                Some(tile) => {
                    bag.expanded.insert(*key, tile);
                }
                None => ask.push(*key),
            }
        }
        if wants.iter().any(|(k, n)| !bag.holds(*k, *n)) {
            let names: Vec<String> = ask.iter().map(|k| cache_key(scroll_id, *k)).collect();
            for (key, hit) in ask.into_iter().zip(self.cache.get_many(&names).await) {
                if let Some(bytes) = hit.filter(|b| is_tile_shaped(b)) {
                    self.memo.put(scroll_id, key, &bytes);
                    bag.raw.insert(key, bytes);
                }
            }
        }
        let missing: Vec<(TileKey, usize)> = wants
            .iter()
            .filter(|(k, n)| !bag.holds(*k, *n))
            .copied()
            .collect();
        if missing.is_empty() && !wants.is_empty() {
            return Ok((None, bag));
        }
        let (size, fetched) = self.inner.tiles(scroll_id, &missing).await?;
        self.remember(scroll_id, &fetched.raw).await;
        bag.extend(fetched);
        Ok((size, bag))
    }
}

impl TileStore for CachedTiles {
    fn tiles<'a>(
        &'a self,
        scroll_id: i32,
        wants: &'a [(TileKey, usize)],
    ) -> StoreFuture<'a, (Option<u64>, TileBag)> {
        Box::pin(self.read(scroll_id, wants))
    }

    fn integrate_step(&self, scroll_id: i32, limit: u32) -> StoreFuture<'_, Integration> {
        self.inner.integrate_step(scroll_id, limit)
    }

    fn append_tree(
        &self,
        scroll_id: i32,
        expected_size: u64,
        leaves: Vec<Hash>,
    ) -> StoreFuture<'_, u64> {
        self.inner.append_tree(scroll_id, expected_size, leaves)
    }

    fn stored_frontier(&self, scroll_id: i32, size: u64) -> StoreFuture<'_, Vec<(u8, Hash)>> {
        self.inner.stored_frontier(scroll_id, size)
    }
}

/// The Redis key of a stored tile.
fn cache_key(scroll_id: i32, key: TileKey) -> String {
    format!("tile:{scroll_id}:{}:{}", key.0, key.1)
}

/// A bounded map of full tiles, expanded; when full, the oldest entry makes room. It is fed
/// only with tiles read from the store or authenticated by the cache (`Cache::get_many`
/// returns only entries sealed under this deployment's secret for that very key), and only
/// with tiles of exactly [`FULL_TILE_BYTES`].
struct TileMemo {
    inner: Mutex<MemoInner>,
    capacity: usize,
}

#[derive(Default)]
struct MemoInner {
    tiles: HashMap<(i32, TileKey), Arc<ExpandedTile>>,
    order: VecDeque<(i32, TileKey)>,
}

impl TileMemo {
    fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(MemoInner::default()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemoInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, scroll_id: i32, key: TileKey) -> Option<Arc<ExpandedTile>> {
        self.lock().tiles.get(&(scroll_id, key)).cloned()
    }

    fn put(&self, scroll_id: i32, key: TileKey, bytes: &[u8]) {
        if bytes.len() != FULL_TILE_BYTES || self.capacity == 0 {
            return;
        }
        let tile = Arc::new(ExpandedTile::new(bytes));
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
