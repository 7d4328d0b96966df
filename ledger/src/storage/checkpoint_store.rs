//! The checkpoint role: signed checkpoints as stored, and the scrolls waiting for one.

use super::StoreFuture;
use crate::hash::Hash;
use crate::store::{PendingScroll, Store, StoredCheckpoint};

/// Stores and reads signed checkpoints.
pub trait CheckpointStore: Send + Sync {
    /// Stores a signed checkpoint (idempotent for the same note at the same size).
    fn insert_checkpoint<'a>(
        &'a self,
        scroll_id: i32,
        tree_size: u64,
        root: &'a Hash,
        note: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// The largest checkpoint of `scroll`.
    fn latest_checkpoint<'a>(
        &'a self,
        scroll: &'a str,
    ) -> StoreFuture<'a, Option<StoredCheckpoint>>;

    /// The checkpoint of `scroll` at exactly `tree_size`.
    fn checkpoint_at<'a>(
        &'a self,
        scroll: &'a str,
        tree_size: u64,
    ) -> StoreFuture<'a, Option<StoredCheckpoint>>;

    /// The latest checkpoint of every scroll that has one.
    fn latest_checkpoints(&self) -> StoreFuture<'_, Vec<StoredCheckpoint>>;

    /// The latest checkpoint of each of `scrolls` that has one.
    fn latest_checkpoints_of<'a>(
        &'a self,
        scrolls: &'a [String],
    ) -> StoreFuture<'a, Vec<StoredCheckpoint>>;

    /// Scrolls whose receipts, tree or checkpoint are ahead of one another (work for the
    /// integrator).
    fn pending_checkpoints(&self) -> StoreFuture<'_, Vec<PendingScroll>>;
}

impl CheckpointStore for Store {
    fn insert_checkpoint<'a>(
        &'a self,
        scroll_id: i32,
        tree_size: u64,
        root: &'a Hash,
        note: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::insert_checkpoint(
            self, scroll_id, tree_size, root, note,
        ))
    }

    fn latest_checkpoint<'a>(
        &'a self,
        scroll: &'a str,
    ) -> StoreFuture<'a, Option<StoredCheckpoint>> {
        Box::pin(Store::latest_checkpoint(self, scroll))
    }

    fn checkpoint_at<'a>(
        &'a self,
        scroll: &'a str,
        tree_size: u64,
    ) -> StoreFuture<'a, Option<StoredCheckpoint>> {
        Box::pin(Store::checkpoint_at(self, scroll, tree_size))
    }

    fn latest_checkpoints(&self) -> StoreFuture<'_, Vec<StoredCheckpoint>> {
        Box::pin(Store::latest_checkpoints(self))
    }

    fn latest_checkpoints_of<'a>(
        &'a self,
        scrolls: &'a [String],
    ) -> StoreFuture<'a, Vec<StoredCheckpoint>> {
        Box::pin(Store::latest_checkpoints_of(self, scrolls))
    }

    fn pending_checkpoints(&self) -> StoreFuture<'_, Vec<PendingScroll>> {
        Box::pin(Store::pending_checkpoints(self))
    }
}
