//! The storage seam: what the services ask of storage, one trait per role — the receipt log
//! ([`ReceiptLog`]), the tree's tiles and the proofs made from them ([`TileStore`]),
//! checkpoints ([`CheckpointStore`]), anchors ([`AnchorStore`]), API keys ([`KeyStore`]) and
//! the guardian's leadership ([`Leadership`]). PostgreSQL (`crate::store::Store`) implements
//! every role; [`Reads`] routes immutable reads between a primary and a read replica (the one
//! place that decides it); [`CachedTiles`] puts the process memo and Redis in front of any
//! tile store, and [`CachedReceipts`] puts Redis in front of any receipt log. Proofs are computed from tiles in [`proofs`], for every backend alike, and the
//! tiles' layout is `merkle::stored_tiles`. The methods return boxed futures so that a
//! service can hold any backend as `Arc<dyn Storage>`.

mod anchor_store;
mod cached_receipts;
mod cached_tiles;
mod checkpoint_store;
mod key_store;
mod leadership;
pub mod proofs;
mod read_replica;
mod receipt_log;
mod tile_store;

pub use anchor_store::AnchorStore;
pub use cached_receipts::CachedReceipts;
pub use cached_tiles::CachedTiles;
pub use checkpoint_store::CheckpointStore;
pub use key_store::KeyStore;
pub use leadership::{LeaderLease, Leadership, LEADER_LOCK_KEY};
pub use read_replica::{Reads, REPLICA_READS};
pub use receipt_log::ReceiptLog;
pub use tile_store::TileStore;

use crate::store::StoreError;
use std::future::Future;
use std::pin::Pin;

/// What every storage operation returns: a future a service can hold across threads.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A scroll as storage operations name it: its name (by which reads are routed) and its id.
#[derive(Debug, Clone, Copy)]
pub struct ScrollRef<'a> {
    /// The scroll's name.
    pub name: &'a str,
    /// The scroll's id.
    pub id: i32,
}

/// Every role but leadership: what a service's handlers hold (`Arc<dyn Storage>`).
pub trait Storage: ReceiptLog + TileStore + CheckpointStore + AnchorStore + KeyStore {}

impl<T: ReceiptLog + TileStore + CheckpointStore + AnchorStore + KeyStore + ?Sized> Storage for T {}
