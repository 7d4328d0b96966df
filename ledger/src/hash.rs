//! Domain-separated tree hashing (RFC 6962 shape), generic over a 32-byte digest.
//!
//! VaultMesh uses SHA3-256; the same code runs with SHA-256 to check RFC 6962 vectors.

use sha3::digest::{consts::U32, Digest};
use std::fmt;
use std::marker::PhantomData;

/// A 32-byte tree hash.
pub type Hash = [u8; 32];

/// Tree hashing with digest `D`: leaves are `D(0x00‖data)`, nodes `D(0x01‖left‖right)`.
pub struct TreeHasher<D>(PhantomData<D>);

impl<D: Digest<OutputSize = U32>> TreeHasher<D> {
    /// Hash of the empty tree: `D("")`.
    pub fn empty_root() -> Hash {
        D::digest([]).into()
    }

    /// Leaf hash of `leaf` bytes.
    pub fn leaf(leaf: &[u8]) -> Hash {
        let mut d = D::new();
        d.update([0u8]);
        d.update(leaf);
        d.finalize().into()
    }

    /// Interior node hash of two children.
    pub fn node(left: &Hash, right: &Hash) -> Hash {
        let mut d = D::new();
        d.update([1u8]);
        d.update(left);
        d.update(right);
        d.finalize().into()
    }

    /// Plain digest of `data`, without a domain prefix.
    pub fn plain(data: &[u8]) -> Hash {
        D::digest(data).into()
    }
}

/// VaultMesh's hasher: SHA3-256.
pub type Sha3Hasher = TreeHasher<sha3::Sha3_256>;

/// The digest of every VaultMesh tree (for generic tree code such as `CompactTree`).
pub type Sha3Digest = sha3::Sha3_256;

/// Lowercase hex of a hash, the form used in every JSON document.
pub fn to_hex(h: &Hash) -> String {
    hex::encode(h)
}

/// Parses 64 hex digits (either case) into a hash.
pub fn from_hex(s: &str) -> Result<Hash, HashParseError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| HashParseError(s.chars().take(80).collect()))?;
    Ok(out)
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 32-byte hex hash: {0:?}")]
pub struct HashParseError(pub String);

/// Hex display wrapper for logs.
pub struct HexHash<'a>(pub &'a Hash);

impl fmt::Display for HexHash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// rs_merkle adapter: interior nodes as above, a lone right-edge node promoted unchanged,
/// which makes rs_merkle's roots equal to RFC 6962 roots.
pub struct RsMerkleHasher<D>(PhantomData<D>);

impl<D: Digest<OutputSize = U32>> Clone for RsMerkleHasher<D> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<D: Digest<OutputSize = U32> + 'static> rs_merkle::Hasher for RsMerkleHasher<D> {
    type Hash = Hash;

    fn hash(data: &[u8]) -> Hash {
        D::digest(data).into()
    }

    fn concat_and_hash(left: &Hash, right: Option<&Hash>) -> Hash {
        match right {
            Some(r) => TreeHasher::<D>::node(left, r),
            None => *left,
        }
    }

    fn hash_size() -> usize {
        32
    }
}

/// Root of a non-empty list of hashes using rs_merkle (bounded pieces only: tiles, epochs).
pub fn subtree_root<D: Digest<OutputSize = U32> + 'static>(hashes: &[Hash]) -> Hash {
    if hashes.is_empty() {
        return TreeHasher::<D>::empty_root();
    }
    rs_merkle::MerkleTree::<RsMerkleHasher<D>>::from_leaves(hashes)
        .root()
        .unwrap_or_else(TreeHasher::<D>::empty_root)
}
