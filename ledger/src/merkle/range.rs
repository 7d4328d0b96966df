//! The arithmetic of RFC 9162 proofs, expressed as leaf ranges and full-subtree node ids.

use crate::hash::{Hash, TreeHasher};
use sha3::digest::{consts::U32, Digest};

/// A full subtree: `2^level` leaves starting at leaf `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 = a leaf hash).
    pub level: u8,
    /// Position among the nodes of that level.
    pub index: u64,
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The full subtrees covering `[start, end)`, left to right (sizes non-increasing for the
/// aligned ranges that proofs use).
pub fn range_nodes(mut start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    while start < end {
        let align = if start == 0 {
            63
        } else {
            start.trailing_zeros()
        };
        let fit = 63 - (end - start).leading_zeros();
        let level = align.min(fit);
        out.push(NodeId {
            level: level as u8,
            index: start >> level,
        });
        start += 1u64 << level;
    }
    out
}

/// Root of a range from the roots of its full subtrees (right fold), or the empty root.
pub fn fold_range<D: Digest<OutputSize = U32>>(nodes: &[Hash]) -> Hash {
    let mut iter = nodes.iter().rev();
    let Some(last) = iter.next() else {
        return TreeHasher::<D>::empty_root();
    };
    iter.fold(*last, |acc, left| TreeHasher::<D>::node(left, &acc))
}

/// Ranges whose roots form the inclusion path of leaf `index` in a tree of `size`, leaf first.
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut path = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            path.push((lo + k, hi));
            hi = lo + k;
        } else {
            path.push((lo, lo + k));
            lo += k;
        }
    }
    path.reverse();
    path
}

/// Ranges whose roots form the RFC 9162 consistency proof from `old` to `new` leaves.
/// Empty when `old == 0` or `old == new`.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    let mut path = Vec::new();
    if old == 0 || old >= new {
        return path;
    }
    let (mut lo, mut hi, mut m, mut complete) = (0u64, new, old, true);
    while m != hi - lo {
        let k = split_point(hi - lo);
        if m <= k {
            path.push((lo + k, hi));
            hi = lo + k;
        } else {
            path.push((lo, lo + k));
            lo += k;
            m -= k;
            complete = false;
        }
    }
    if !complete {
        path.push((lo, hi));
    }
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
    }

    #[test]
    fn ranges_decompose_into_aligned_full_subtrees() {
        for start_pow in 0..6u32 {
            for len in 1..200u64 {
                let start = (1u64 << start_pow) * 3;
                let nodes = range_nodes(start, start + len);
                let mut at = start;
                for n in nodes {
                    assert_eq!(n.index << n.level, at);
                    at += 1 << n.level;
                }
                assert_eq!(at, start + len);
            }
        }
    }

    #[test]
    fn rfc9162_consistency_example_shape() {
        // RFC 9162 §2.1.5: proof between 3 and 7 leaves is [c, d, g, l] = [2,3), [3,4)... in
        // range terms: leaf 2, leaf 3, [0,2), [4,7).
        assert_eq!(
            consistency_ranges(3, 7),
            vec![(2, 3), (3, 4), (0, 2), (4, 7)]
        );
        assert_eq!(consistency_ranges(4, 7), vec![(4, 7)]);
        assert_eq!(consistency_ranges(6, 7), vec![(4, 6), (6, 7), (0, 4)]);
        assert_eq!(inclusion_ranges(3, 7), vec![(2, 3), (0, 2), (4, 7)]);
        assert!(inclusion_ranges(0, 1).is_empty());
    }
}
