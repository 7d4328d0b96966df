//! The anchor role: the ProofChain's records, their signed heads and what each sink
//! accepted.

use super::StoreFuture;
use crate::proofchain::AnchorRecord;
use crate::store::{SinkResult, Store, StoredAnchor};

/// Stores and reads anchors.
pub trait AnchorStore: Send + Sync {
    /// Stores the record of a new epoch (append-only).
    fn insert_anchor<'a>(&'a self, record: &'a AnchorRecord) -> StoreFuture<'a, ()>;

    /// Stores signed heads, `(epoch, head)`, of epochs that have none yet.
    fn insert_anchor_heads<'a>(&'a self, heads: &'a [(u64, String)]) -> StoreFuture<'a, ()>;

    /// Epochs whose record has no signed head yet.
    fn epochs_without_head(&self) -> StoreFuture<'_, Vec<u64>>;

    /// Records what a sink answered for `epoch`.
    fn insert_sink_result<'a>(&'a self, epoch: u64, result: &'a SinkResult) -> StoreFuture<'a, ()>;

    /// Epochs `sink` has not accepted yet, oldest first.
    fn epochs_pending_for_sink<'a>(&'a self, sink: &'a str) -> StoreFuture<'a, Vec<u64>>;

    /// The anchor of `epoch`.
    fn anchor(&self, epoch: u64) -> StoreFuture<'_, Option<StoredAnchor>>;

    /// The newest anchor.
    fn latest_anchor(&self) -> StoreFuture<'_, Option<StoredAnchor>>;

    /// Up to `limit` anchors from epoch `from` on.
    fn anchors(&self, from: u64, limit: u32) -> StoreFuture<'_, Vec<StoredAnchor>>;
}

impl AnchorStore for Store {
    fn insert_anchor<'a>(&'a self, record: &'a AnchorRecord) -> StoreFuture<'a, ()> {
        Box::pin(Store::insert_anchor(self, record))
    }

    fn insert_anchor_heads<'a>(&'a self, heads: &'a [(u64, String)]) -> StoreFuture<'a, ()> {
        Box::pin(Store::insert_anchor_heads(self, heads))
    }

    fn epochs_without_head(&self) -> StoreFuture<'_, Vec<u64>> {
        Box::pin(Store::epochs_without_head(self))
    }

    fn insert_sink_result<'a>(&'a self, epoch: u64, result: &'a SinkResult) -> StoreFuture<'a, ()> {
        Box::pin(Store::insert_sink_result(self, epoch, result))
    }

    fn epochs_pending_for_sink<'a>(&'a self, sink: &'a str) -> StoreFuture<'a, Vec<u64>> {
        Box::pin(Store::epochs_pending_for_sink(self, sink))
    }

    fn anchor(&self, epoch: u64) -> StoreFuture<'_, Option<StoredAnchor>> {
        Box::pin(Store::anchor(self, epoch))
    }

    fn latest_anchor(&self) -> StoreFuture<'_, Option<StoredAnchor>> {
        Box::pin(Store::latest_anchor(self))
    }

    fn anchors(&self, from: u64, limit: u32) -> StoreFuture<'_, Vec<StoredAnchor>> {
        Box::pin(Store::anchors(self, from, limit))
    }
}
