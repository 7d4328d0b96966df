//! Merkle trees of RFC 6962/9162 shape: ranges, proofs, verification and an in-memory tree.
//!
//! Every proof element is the root of a range `[start, end)` whose start is aligned; such a
//! range decomposes into full (perfect) subtrees, so any node source that can return full
//! subtree roots — memory, or tiles stored in Postgres — can answer roots and proofs.

pub mod compact;
pub mod memory;
pub mod proof;
pub mod range;
pub mod stored_tiles;
pub mod tiles;

pub use compact::CompactTree;
pub use memory::MemoryTree;
pub use proof::{
    verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof, ProofError,
};
pub use range::{consistency_ranges, fold_range, inclusion_ranges, range_nodes, NodeId};
pub use tiles::{tile_width, TileError, TileId, TileSet};
