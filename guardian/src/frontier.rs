//! The right edge of a Merkle tree: the roots of the perfect subtrees that make up a prefix
//! (O(log n) hashes). Seeded from stored tiles that were checked against a signed root and
//! extended with leaf hashes re-derived from the receipts, it gives the root those receipts
//! make — what tiles written beyond a checkpoint by someone else must agree with.

use ledger::hash::{Hash, Sha3Hasher};
use ledger::merkle::fold_range;
use sha3::Sha3_256;

/// Perfect-subtree roots of a prefix, largest (leftmost) first.
#[derive(Debug, Clone)]
pub struct Frontier {
    /// `(height, root)`, heights strictly decreasing.
    stack: Vec<(u8, Hash)>,
    size: u64,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves from its perfect-subtree roots (as
    /// `Store::stored_frontier` returns them); `None` if they cannot make up `size` leaves.
    pub fn new(size: u64, nodes: Vec<(u8, Hash)>) -> Option<Self> {
        let covered = nodes.iter().try_fold(0u64, |acc, (h, _)| {
            acc.checked_add(1u64.checked_shl(u32::from(*h))?)
        })?;
        let decreasing = nodes.windows(2).all(|w| w[0].0 > w[1].0);
        (covered == size && decreasing).then_some(Self { stack: nodes, size })
    }

    /// Leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash, merging equal-height subtrees.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u8, leaf);
        while let Some(&(h, left)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, Sha3Hasher::node(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// The RFC 6962 root of the leaves covered (the empty root for none).
    pub fn root(&self) -> Hash {
        let hashes: Vec<Hash> = self.stack.iter().map(|(_, h)| *h).collect();
        fold_range::<Sha3_256>(&hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::merkle::MemoryTree;

    #[test]
    fn a_seeded_frontier_extends_to_the_memory_tree_root() {
        let leaves: Vec<Hash> = (0u32..100)
            .map(|i| Sha3Hasher::leaf(&i.to_be_bytes()))
            .collect();
        let memory = MemoryTree::<Sha3_256>::new(leaves.clone());
        for start in [0u64, 1, 7, 16, 37, 64] {
            let nodes = ledger::merkle::range_nodes(0, start)
                .into_iter()
                .map(|n| (n.level, memory.node(n).unwrap_or_default()))
                .collect();
            let mut f = Frontier::new(start, nodes).unwrap_or_else(|| panic!("{start}"));
            assert_eq!(Some(f.root()), memory.root(start));
            for (i, l) in leaves.iter().enumerate().skip(start as usize) {
                f.push(*l);
                assert_eq!(Some(f.root()), memory.root(i as u64 + 1), "{start}..{i}");
            }
        }
        assert!(Frontier::new(3, vec![(0, [0; 32]), (1, [0; 32])]).is_none());
    }
}
