//! The receipt log role: gap-free appends of gate-admitted batches, and integrity-checked
//! reads of what was appended.

use super::StoreFuture;
use crate::bundle::ProofBundle;
use crate::gate::Admitted;
use crate::hash::Hash;
use crate::store::{AppendOutcome, RawReceipt, Store, StoredReceipt};

/// Appends receipts and reads them back.
pub trait ReceiptLog: Send + Sync {
    /// Appends a batch the append gate admitted, atomically. With `all_or_nothing`, an
    /// idempotency conflict aborts the whole batch; otherwise the conflicting items are
    /// reported and the rest written.
    fn append_receipts(
        &self,
        batch: Admitted,
        all_or_nothing: bool,
    ) -> StoreFuture<'_, Vec<AppendOutcome>>;

    /// Appends a keyless batch at position `expected` if the scroll's head is there;
    /// otherwise writes nothing and gives the batch back (`Err`).
    fn append_at(
        &self,
        expected: u64,
        batch: Admitted,
    ) -> StoreFuture<'_, Result<Vec<AppendOutcome>, Admitted>>;

    /// The receipt at `seq` of `scroll`.
    fn receipt<'a>(&'a self, scroll: &'a str, seq: u64) -> StoreFuture<'a, Option<StoredReceipt>>;

    /// The receipt whose leaf hash is `hash`.
    fn receipt_by_leaf_hash<'a>(&'a self, hash: &'a Hash)
        -> StoreFuture<'a, Option<StoredReceipt>>;

    /// Up to `limit` receipts of `scroll` from `from` on, in order.
    fn list_receipts<'a>(
        &'a self,
        scroll: &'a str,
        from: u64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<StoredReceipt>>;

    /// The offline-verification bundle of receipt `seq` of `scroll`, proven against the
    /// newest anchored (else latest) checkpoint covering it; `None` until one covers it.
    fn proof_bundle<'a>(
        &'a self,
        scroll: &'a str,
        seq: u64,
        vkey: &'a str,
    ) -> StoreFuture<'a, Option<ProofBundle>>;

    /// Streams the stored rows of scroll `scroll_id` with `from <= seq < to`, by seq and
    /// unverified (for a verifier that checks them itself), until `visit` returns false.
    fn scan_receipt_range<'a>(
        &'a self,
        scroll_id: i32,
        from: u64,
        to: u64,
        visit: &'a mut (dyn FnMut(RawReceipt) -> bool + Send),
    ) -> StoreFuture<'a, ()>;
}

impl ReceiptLog for Store {
    fn append_receipts(
        &self,
        batch: Admitted,
        all_or_nothing: bool,
    ) -> StoreFuture<'_, Vec<AppendOutcome>> {
        Box::pin(Store::append_receipts(self, batch, all_or_nothing))
    }

    fn append_at(
        &self,
        expected: u64,
        batch: Admitted,
    ) -> StoreFuture<'_, Result<Vec<AppendOutcome>, Admitted>> {
        Box::pin(Store::append_at(self, expected, batch))
    }

    fn receipt<'a>(&'a self, scroll: &'a str, seq: u64) -> StoreFuture<'a, Option<StoredReceipt>> {
        Box::pin(Store::receipt(self, scroll, seq))
    }

    fn receipt_by_leaf_hash<'a>(
        &'a self,
        hash: &'a Hash,
    ) -> StoreFuture<'a, Option<StoredReceipt>> {
        Box::pin(Store::receipt_by_leaf_hash(self, hash))
    }

    fn list_receipts<'a>(
        &'a self,
        scroll: &'a str,
        from: u64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<StoredReceipt>> {
        Box::pin(Store::list_receipts(self, scroll, from, limit))
    }

    fn proof_bundle<'a>(
        &'a self,
        scroll: &'a str,
        seq: u64,
        vkey: &'a str,
    ) -> StoreFuture<'a, Option<ProofBundle>> {
        Box::pin(Store::proof_bundle(self, scroll, seq, vkey))
    }

    fn scan_receipt_range<'a>(
        &'a self,
        scroll_id: i32,
        from: u64,
        to: u64,
        visit: &'a mut (dyn FnMut(RawReceipt) -> bool + Send),
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::scan_receipt_range(self, scroll_id, from, to, visit))
    }
}
