//! An in-memory tree that keeps every full node level: proofs for bounded trees (epoch
//! roots, bundles, tests). Large scrolls use the stored tiles instead.

use super::range::{consistency_ranges, fold_range, inclusion_ranges, range_nodes, NodeId};
use crate::hash::{Hash, TreeHasher};
use sha3::digest::{consts::U32, Digest};
use std::marker::PhantomData;

/// Leaf hashes and every full interior node above them.
pub struct MemoryTree<D> {
    levels: Vec<Vec<Hash>>,
    _digest: PhantomData<D>,
}

impl<D: Digest<OutputSize = U32>> MemoryTree<D> {
    /// A tree over these leaf hashes.
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut tree = Self {
            levels: vec![Vec::with_capacity(leaves.len())],
            _digest: PhantomData,
        };
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Appends one leaf hash, completing any full nodes it closes.
    pub fn push(&mut self, leaf: Hash) {
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let parent =
                TreeHasher::<D>::node(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    /// Root of the full subtree `node`, if it is complete in this tree.
    pub fn node(&self, node: NodeId) -> Option<Hash> {
        self.levels
            .get(usize::from(node.level))?
            .get(usize::try_from(node.index).ok()?)
            .copied()
    }

    /// Root of the leaf range `[start, end)` (aligned as proofs use), if within the tree.
    pub fn range_root(&self, start: u64, end: u64) -> Option<Hash> {
        let hashes: Option<Vec<Hash>> = range_nodes(start, end)
            .into_iter()
            .map(|n| self.node(n))
            .collect();
        Some(fold_range::<D>(&hashes?))
    }

    /// Root of the tree's first `size` leaves (`None` beyond the tree).
    pub fn root(&self, size: u64) -> Option<Hash> {
        self.range_root(0, size)
    }

    /// Inclusion path of leaf `index` in the tree of `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.size() {
            return None;
        }
        inclusion_ranges(index, size)
            .into_iter()
            .map(|(a, b)| self.range_root(a, b))
            .collect()
    }

    /// Consistency path from `old` to `new` leaves.
    pub fn consistency(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if old > new || new > self.size() {
            return None;
        }
        consistency_ranges(old, new)
            .into_iter()
            .map(|(a, b)| self.range_root(a, b))
            .collect()
    }
}
