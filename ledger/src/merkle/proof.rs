//! RFC 9162 inclusion and consistency proofs and their verification (§2.1.3.2, §2.1.4.2).

use crate::hash::{Hash, TreeHasher};
use serde::{Deserialize, Serialize};
use sha3::digest::{consts::U32, Digest};

/// Why a proof does not verify. Every variant is a rejection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Claimed leaf index.
        index: u64,
        /// Claimed tree size.
        size: u64,
    },
    /// The first size of a consistency proof exceeds the second.
    #[error("consistency from size {from} to smaller size {to}")]
    SizesReversed {
        /// Older size.
        from: u64,
        /// Newer size.
        to: u64,
    },
    /// A consistency proof from the empty tree: every tree extends it, so such a proof
    /// proves nothing and is refused (callers starting from size 0 skip the check).
    #[error("consistency proofs from size 0 are refused: every tree extends the empty tree")]
    FromEmptyTree,
    /// The path has the wrong number of elements for these sizes.
    #[error("proof path has the wrong length")]
    WrongPathLength,
    /// The recomputed root differs from the claimed root.
    #[error("recomputed root does not match")]
    RootMismatch,
}

/// An inclusion proof of one leaf in a tree of `tree_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Leaf index (the receipt's seq).
    pub leaf_index: u64,
    /// Tree size the proof is for.
    pub tree_size: u64,
    /// Audit path, leaf side first.
    #[serde(with = "hex_hashes")]
    pub path: Vec<Hash>,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// Older tree size.
    pub from_size: u64,
    /// Newer tree size.
    pub to_size: u64,
    /// Consistency path.
    #[serde(with = "hex_hashes")]
    pub path: Vec<Hash>,
}

/// Serde for `Vec<Hash>` as lowercase hex strings.
pub mod hex_hashes {
    use crate::hash::{from_hex, Hash};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes hashes as hex strings.
    pub fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    /// Reads hashes from hex strings.
    pub fn deserialize<'de, De: Deserializer<'de>>(d: De) -> Result<Vec<Hash>, De::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        strings
            .iter()
            .map(|s| from_hex(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Verifies that `leaf_hash` is at `index` in the tree of `size` leaves with root `root`.
pub fn verify_inclusion<D: Digest<OutputSize = U32>>(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in path {
        if snode == 0 {
            return Err(ProofError::WrongPathLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = TreeHasher::<D>::node(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = TreeHasher::<D>::node(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongPathLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `to` leaves with `new_root` extends the tree of `from` leaves
/// with `old_root` (RFC 9162 §2.1.4.2). `from` must be at least 1: any proof from size 0,
/// even an empty one, is refused with [`ProofError::FromEmptyTree`], so a caller that starts
/// from the empty tree must skip this check (after checking its old root is the empty root).
/// Equal sizes (`from == to >= 1`) need an empty path and equal roots.
pub fn verify_consistency<D: Digest<OutputSize = U32>>(
    from: u64,
    to: u64,
    path: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if from == 0 {
        return Err(ProofError::FromEmptyTree);
    }
    if from > to {
        return Err(ProofError::SizesReversed { from, to });
    }
    if from == to {
        if !path.is_empty() {
            return Err(ProofError::WrongPathLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let (fr, sr) = consistency_roots::<D>(from, to, path, old_root)?;
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The old and new roots a consistency path from `from` to `to` (`1 <= from < to`) commits
/// to (RFC 9162 §2.1.4.2), taking `old_root` as the first node when `from` is a power of two.
/// A verifier that finds the new root right but the old one wrong knows the path is sound and
/// the trees differ; a wrong new root means the path itself is wrong.
pub fn consistency_roots<D: Digest<OutputSize = U32>>(
    from: u64,
    to: u64,
    path: &[Hash],
    old_root: &Hash,
) -> Result<(Hash, Hash), ProofError> {
    if from == 0 {
        return Err(ProofError::FromEmptyTree);
    }
    if from >= to {
        return Err(ProofError::SizesReversed { from, to });
    }
    if path.is_empty() {
        return Err(ProofError::WrongPathLength);
    }
    let mut items: Vec<Hash> = Vec::with_capacity(path.len() + 1);
    if from.is_power_of_two() {
        items.push(*old_root);
    }
    items.extend_from_slice(path);
    let (mut fnode, mut snode) = (from - 1, to - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (items[0], items[0]);
    for c in &items[1..] {
        if snode == 0 {
            return Err(ProofError::WrongPathLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = TreeHasher::<D>::node(c, &fr);
            sr = TreeHasher::<D>::node(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = TreeHasher::<D>::node(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongPathLength);
    }
    Ok((fr, sr))
}
