//! A streaming tree: leaves are pushed in order and the root of the prefix read at any size,
//! keeping only the O(log n) roots of the perfect subtrees that make up the prefix — what
//! a full recompute of a huge scroll needs to stay in bounded memory.

use crate::hash::{Hash, TreeHasher};
use sha3::digest::{consts::U32, Digest};
use std::marker::PhantomData;

/// The perfect-subtree roots of a prefix, largest (leftmost) first.
pub struct CompactTree<D> {
    /// `(height, root)`, heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
    size: u64,
    _digest: PhantomData<D>,
}

impl<D: Digest<OutputSize = U32>> Default for CompactTree<D> {
    fn default() -> Self {
        Self {
            stack: Vec::new(),
            size: 0,
            _digest: PhantomData,
        }
    }
}

impl<D: Digest<OutputSize = U32>> CompactTree<D> {
    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash, merging equal-height subtrees.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, TreeHasher::<D>::node(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// The RFC 6962 root of the leaves pushed so far: the perfect subtrees folded from the
    /// right (the empty tree's root when nothing was pushed).
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return TreeHasher::<D>::empty_root();
        };
        for (_, left) in it {
            acc = TreeHasher::<D>::node(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemoryTree;
    use sha3::Sha3_256;

    #[test]
    fn matches_the_in_memory_tree_at_every_size() {
        let leaves: Vec<Hash> = (0u32..300)
            .map(|i| TreeHasher::<Sha3_256>::leaf(&i.to_be_bytes()))
            .collect();
        let memory = MemoryTree::<Sha3_256>::new(leaves.clone());
        let mut compact = CompactTree::<Sha3_256>::default();
        assert_eq!(Some(compact.root()), memory.root(0));
        for (i, l) in leaves.iter().enumerate() {
            compact.push(*l);
            assert_eq!(
                Some(compact.root()),
                memory.root(i as u64 + 1),
                "size {}",
                i + 1
            );
        }
        assert!(compact.stack.len() <= 9);
    }
}
