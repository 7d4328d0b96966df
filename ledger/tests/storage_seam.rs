//! The storage seam with a second backend: tiles kept in process memory, built with the
//! same layout code as PostgreSQL (`merkle::stored_tiles`). Roots, proofs and public tiles
//! come from `storage::proofs` for both, so they must agree byte for byte with each other and
//! with an independent in-memory tree; the Redis read-through wraps either; and a backend
//! whose tiles are missing, short or behind is refused, never believed.

use ledger::cache::{Cache, CacheOptions};
use ledger::hash::{Hash, Sha3Hasher};
use ledger::merkle::stored_tiles::{partial_tiles, plan_append, TileBag, TileKey};
use ledger::merkle::tiles::{tile_width, TileId};
use ledger::merkle::{verify_consistency, verify_inclusion, MemoryTree};
use ledger::storage::{proofs, CachedTiles, ScrollRef, StoreFuture, TileStore};
use ledger::store::tree::Integration;
use ledger::store::StoreError;
use ledger::testing::{Rng, TestDb};
use sha3::Sha3_256;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One tree: its size and its tiles.
type Tree = (u64, HashMap<TileKey, Vec<u8>>);

/// A tile store in process memory: one tree per scroll id.
#[derive(Default)]
struct MemoryTiles {
    trees: Mutex<HashMap<i32, Tree>>,
    reads: AtomicUsize,
}

impl MemoryTiles {
    fn with_tree<T>(&self, scroll_id: i32, f: impl FnOnce(&mut Tree) -> T) -> T {
        let mut trees = self.trees.lock().unwrap_or_else(|e| e.into_inner());
        f(trees.entry(scroll_id).or_default())
    }
}

impl TileStore for MemoryTiles {
    fn tiles<'a>(
        &'a self,
        scroll_id: i32,
        wants: &'a [(TileKey, usize)],
    ) -> StoreFuture<'a, (Option<u64>, TileBag)> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let answer = self.with_tree(scroll_id, |(size, tiles)| {
            let raw = wants
                .iter()
                .filter_map(|(k, _)| tiles.get(k).map(|t| (*k, t.clone())))
                .collect();
            (Some(*size), TileBag::from_raw(raw))
        });
        Box::pin(async move { Ok(answer) })
    }

    fn integrate_step(&self, scroll_id: i32, _limit: u32) -> StoreFuture<'_, Integration> {
        let size = self.with_tree(scroll_id, |(size, _)| *size);
        Box::pin(async move {
            Ok(Integration {
                from: size,
                to: size,
                rejected: None,
            })
        })
    }

    fn append_tree(
        &self,
        scroll_id: i32,
        expected_size: u64,
        leaves: Vec<Hash>,
    ) -> StoreFuture<'_, u64> {
        let outcome = self.with_tree(scroll_id, |(size, tiles)| {
            if *size != expected_size {
                return Err(StoreError::TreeSizeMismatch {
                    scroll_id,
                    expected: expected_size,
                    actual: *size,
                });
            }
            let partial: HashMap<TileKey, Vec<u8>> = partial_tiles(*size)
                .into_iter()
                .filter_map(|k| tiles.get(&k).map(|t| (k, t.clone())))
                .collect();
            let added = leaves.len() as u64;
            let writes = plan_append(*size, leaves, &partial)
                .map_err(|e| StoreError::Integrity(e.to_string()))?;
            tiles.extend(writes);
            *size += added;
            Ok(*size)
        });
        Box::pin(async move { outcome })
    }

    fn stored_frontier(&self, scroll_id: i32, size: u64) -> StoreFuture<'_, Vec<(u8, Hash)>> {
        Box::pin(proofs::stored_frontier(self, scroll_id, size))
    }
}

async fn db() -> TestDb {
    TestDb::new()
        .await
        .unwrap_or_else(|e| panic!("test database: {e}"))
}

fn ok<T>(r: Result<T, StoreError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// The integrity error a computation over damaged tiles must end in.
fn refused<T>(r: Result<T, StoreError>, what: &str) -> String {
    match r {
        Err(StoreError::Integrity(why)) => why,
        Err(e) => panic!("{what}: {e}"),
        Ok(_) => panic!("{what}: answered from damaged tiles"),
    }
}

/// Grows the same tree in Postgres, in memory tiles and in an independent memory tree.
async fn grow(
    pg: &dyn TileStore,
    pg_id: i32,
    mem: &MemoryTiles,
    reference: &mut MemoryTree<Sha3_256>,
    steps: &[u64],
) -> u64 {
    let mut size = 0u64;
    for step in steps {
        let leaves: Vec<Hash> = (size..size + step)
            .map(|i| Sha3Hasher::leaf(&i.to_be_bytes()))
            .collect();
        for l in &leaves {
            reference.push(*l);
        }
        let grown = ok(pg.append_tree(pg_id, size, leaves.clone()).await);
        assert_eq!(ok(mem.append_tree(1, size, leaves).await), grown);
        size = grown;
    }
    size
}

#[tokio::test]
async fn every_backend_gives_the_same_roots_proofs_and_tiles() {
    let db = db().await;
    let scroll = ok(db.store.scroll("drills").await);
    let pg = db.store.clone();
    let mem = MemoryTiles::default();
    let mut reference = MemoryTree::<Sha3_256>::new(Vec::new());
    let size = grow(
        &pg,
        scroll.id,
        &mem,
        &mut reference,
        &[1, 15, 16, 240, 529, 3],
    )
    .await;
    assert_eq!(size, 804);
    let on_mem = ScrollRef {
        name: "drills",
        id: 1,
    };
    let mut rng = Rng(11);
    for _ in 0..60 {
        let n = 1 + rng.below(size);
        let root = reference.root(n).unwrap_or_else(|| panic!("root {n}"));
        assert_eq!(ok(pg.tree_root(scroll.scroll_ref(), n).await), root);
        assert_eq!(ok(mem.tree_root(on_mem, n).await), root);
        let i = rng.below(n);
        let from_pg = ok(pg.inclusion_proof(scroll.scroll_ref(), i, n).await);
        let from_mem = ok(mem.inclusion_proof(on_mem, i, n).await);
        assert_eq!(from_pg, from_mem, "inclusion {i} in {n}");
        assert_eq!(Some(from_mem.path.clone()), reference.inclusion(i, n));
        let leaf = Sha3Hasher::leaf(&i.to_be_bytes());
        assert!(verify_inclusion::<Sha3_256>(&leaf, i, n, &from_mem.path, &root).is_ok());
        let m = 1 + rng.below(n);
        let c_pg = ok(pg.consistency_proof(scroll.scroll_ref(), m, n).await);
        let c_mem = ok(mem.consistency_proof(on_mem, m, n).await);
        assert_eq!(c_pg, c_mem, "consistency {m}..{n}");
        let old = reference.root(m).unwrap_or_else(|| panic!("root {m}"));
        assert!(verify_consistency::<Sha3_256>(m, n, &c_mem.path, &old, &root).is_ok());
    }
    let several = [0u64, 17, 255, 256, 803];
    let batch = ok(mem.inclusion_proofs(on_mem, size, &several).await);
    for (p, i) in batch.iter().zip(several) {
        assert_eq!(
            p,
            &ok(pg.inclusion_proof(scroll.scroll_ref(), i, size).await)
        );
    }
    for tile in [
        TileId { level: 0, index: 0 },
        TileId { level: 0, index: 3 },
        TileId { level: 1, index: 0 },
    ] {
        let width = tile_width(tile, size);
        let a = ok(pg.public_tile(scroll.scroll_ref(), tile, width, size).await);
        let b = ok(mem.public_tile(on_mem, tile, width, size).await);
        assert_eq!(a, b, "tile {tile:?}");
        assert_eq!(a.len() as u64, width * 32);
    }
    assert_eq!(
        ok(pg.stored_frontier(scroll.id, size).await),
        ok(mem.stored_frontier(1, size).await)
    );
}

#[tokio::test]
async fn a_backend_with_missing_short_or_lagging_tiles_is_refused() {
    let mem = MemoryTiles::default();
    let mut reference = MemoryTree::<Sha3_256>::new(Vec::new());
    let leaves: Vec<Hash> = (0u64..300)
        .map(|i| Sha3Hasher::leaf(&i.to_be_bytes()))
        .collect();
    for l in &leaves {
        reference.push(*l);
    }
    ok(mem.append_tree(1, 0, leaves).await);
    let at = ScrollRef { name: "x", id: 1 };
    // Beyond the tree: refused, whichever tiles exist.
    assert!(matches!(
        mem.inclusion_proof(at, 0, 301).await,
        Err(StoreError::BeyondTree {
            requested: 301,
            available: 300
        })
    ));
    assert!(matches!(
        mem.consistency_proof(at, 301, 300).await,
        Err(StoreError::BeyondTree { .. })
    ));
    // The right edge's tile gone: every computation that needs it is an integrity error.
    let saved = mem.with_tree(1, |(_, tiles)| tiles.remove(&(0, 18)));
    let why = refused(mem.tree_root(at, 300).await, "missing tile");
    assert!(why.contains("(0, 18)") && why.contains("missing"), "{why}");
    refused(
        mem.inclusion_proof(at, 299, 300).await,
        "missing tile in a proof",
    );
    refused(
        mem.public_tile(at, TileId { level: 0, index: 1 }, 44, 300)
            .await,
        "missing tile for a public tile",
    );
    refused(
        mem.stored_frontier(1, 300).await,
        "missing tile in a frontier",
    );
    // Proofs that do not need it are still answered, and right.
    let p = ok(mem.inclusion_proof(at, 3, 256).await);
    assert_eq!(Some(p.path), reference.inclusion(3, 256));
    // Cut short: refused too.
    mem.with_tree(1, |(_, tiles)| {
        if let Some(t) = saved {
            tiles.insert((0, 18), t[..64].to_vec());
        }
    });
    let why = refused(mem.tree_root(at, 300).await, "short tile");
    assert!(why.contains("too short"), "{why}");
    refused(
        mem.public_tile(at, TileId { level: 0, index: 1 }, 44, 300)
            .await,
        "short tile for a public tile",
    );
    // The size a backend reports bounds everything it is asked: a backend behind a
    // checkpoint answers "beyond the tree", never a proof for leaves it does not hold.
    mem.with_tree(1, |(size, _)| *size = 100);
    assert!(matches!(
        mem.inclusion_proof(at, 5, 200).await,
        Err(StoreError::BeyondTree {
            requested: 200,
            available: 100
        })
    ));
    // An append that does not extend the stored partial tile is refused.
    mem.with_tree(1, |(size, tiles)| {
        *size = 300;
        tiles.insert((0, 18), vec![0u8; 32]);
    });
    assert!(matches!(
        mem.append_tree(1, 300, vec![[0u8; 32]]).await,
        Err(StoreError::Integrity(_))
    ));
}

#[tokio::test]
async fn the_redis_read_through_wraps_any_backend() {
    let mem = Arc::new(MemoryTiles::default());
    let mut reference = MemoryTree::<Sha3_256>::new(Vec::new());
    let leaves: Vec<Hash> = (0u64..1000)
        .map(|i| Sha3Hasher::leaf(&i.to_be_bytes()))
        .collect();
    for l in &leaves {
        reference.push(*l);
    }
    ok(mem.append_tree(7, 0, leaves).await);
    let prefix = format!("vmtest:seam:{}:{}:", std::process::id(), rand_suffix());
    let cache = Cache::new(
        Some(&ledger::testing::redis_url()),
        CacheOptions {
            prefix,
            ..Default::default()
        },
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let backend: Arc<dyn TileStore> = mem.clone();
    let cached = CachedTiles::new(backend, cache.clone(), 64);
    let at = ScrollRef { name: "x", id: 7 };
    for i in (0..1000).step_by(37) {
        let p = ok(cached.inclusion_proof(at, i, 1000).await);
        assert_eq!(Some(p.path), reference.inclusion(i, 1000));
    }
    let reads = mem.reads.load(Ordering::SeqCst);
    // The full tiles are in the memo now: proofs in the complete part of the tree are served
    // without asking the backend.
    for i in (0..992).step_by(37) {
        let p = ok(cached.inclusion_proof(at, i, 992).await);
        assert_eq!(Some(p.path), reference.inclusion(i, 992));
    }
    assert_eq!(
        mem.reads.load(Ordering::SeqCst),
        reads,
        "served from the memo"
    );
    // A fresh wrapper (an empty memo) over a backend that lost its tiles is still answered
    // from Redis, whose entries are sealed under this deployment's key.
    let keep = mem.with_tree(7, |(_, tiles)| std::mem::take(tiles));
    let fresh = CachedTiles::new(mem.clone(), cache, 0);
    for i in (0..992).step_by(37) {
        let p = ok(fresh.inclusion_proof(at, i, 992).await);
        assert_eq!(Some(p.path), reference.inclusion(i, 992));
    }
    // Stored data still decides what the cache cannot: the frontier is never cached.
    assert!(fresh.stored_frontier(7, 992).await.is_err());
    mem.with_tree(7, |(_, tiles)| *tiles = keep);
    assert_eq!(
        ok(fresh.stored_frontier(7, 992).await),
        ok(mem.stored_frontier(7, 992).await)
    );
}

/// A suffix that keeps this run's Redis keys apart from other runs'.
fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
