//! The read-through cache in front of a receipt log: a receipt read by position is kept in
//! Redis as its leaf hash followed by its leaf bytes. A cached entry is served only if the
//! cache authenticates it (sealed under this deployment's secret for that very key), its
//! bytes hash to the hash beside them and the receipt names the position asked for;
//! anything else falls through to the log, which checks integrity itself. Appends and every
//! other read go straight to the log.

use super::{ReceiptLog, StoreFuture};
use crate::bundle::ProofBundle;
use crate::cache::Cache;
use crate::gate::Admitted;
use crate::hash::Hash;
use crate::receipt::{leaf_hash, Receipt};
use crate::store::{AppendOutcome, RawReceipt, StoreError, StoredReceipt};
use std::sync::Arc;

/// A receipt log read through Redis (see the module documentation).
#[derive(Clone)]
pub struct CachedReceipts {
    inner: Arc<dyn ReceiptLog>,
    cache: Cache,
}

/// The Redis key of a receipt's entry.
fn receipt_key(scroll: &str, seq: u64) -> String {
    format!("receipt:{scroll}:{seq}")
}

/// The receipt in a cache entry, if the entry is what it claims to be.
fn receipt_from_entry(entry: &[u8], scroll: &str, seq: u64) -> Option<StoredReceipt> {
    let (stored_hash, leaf) = entry.split_at_checked(32)?;
    let hash = leaf_hash(leaf);
    if hash[..] != *stored_hash || leaf.is_empty() {
        return None;
    }
    let receipt = Receipt::from_leaf(leaf).ok()?;
    (receipt.scroll == scroll && receipt.seq == seq).then(|| StoredReceipt {
        receipt,
        leaf: leaf.to_vec(),
        leaf_hash: hash,
    })
}

impl CachedReceipts {
    /// `inner` read through `cache`.
    pub fn new(inner: Arc<dyn ReceiptLog>, cache: Cache) -> Self {
        Self { inner, cache }
    }

    /// Keeps a receipt the caller has from the log (read or just written).
    pub async fn remember(&self, r: &StoredReceipt) {
        let mut entry = r.leaf_hash.to_vec();
        entry.extend_from_slice(&r.leaf);
        self.cache
            .put(&receipt_key(&r.receipt.scroll, r.receipt.seq), &entry)
            .await;
    }

    async fn read_through(
        &self,
        scroll: &str,
        seq: u64,
    ) -> Result<Option<StoredReceipt>, StoreError> {
        if let Some(entry) = self.cache.get(&receipt_key(scroll, seq)).await {
            if let Some(r) = receipt_from_entry(&entry, scroll, seq) {
                return Ok(Some(r));
            }
        }
        let found = self.inner.receipt(scroll, seq).await?;
        if let Some(r) = &found {
            self.remember(r).await;
        }
        Ok(found)
    }
}

impl ReceiptLog for CachedReceipts {
    fn append_receipts(
        &self,
        batch: Admitted,
        all_or_nothing: bool,
    ) -> StoreFuture<'_, Vec<AppendOutcome>> {
        self.inner.append_receipts(batch, all_or_nothing)
    }

    fn append_at(
        &self,
        expected: u64,
        batch: Admitted,
    ) -> StoreFuture<'_, Result<Vec<AppendOutcome>, Admitted>> {
        self.inner.append_at(expected, batch)
    }

    fn receipt<'a>(&'a self, scroll: &'a str, seq: u64) -> StoreFuture<'a, Option<StoredReceipt>> {
        Box::pin(self.read_through(scroll, seq))
    }

    fn receipt_by_leaf_hash<'a>(
        &'a self,
        hash: &'a Hash,
    ) -> StoreFuture<'a, Option<StoredReceipt>> {
        self.inner.receipt_by_leaf_hash(hash)
    }

    fn list_receipts<'a>(
        &'a self,
        scroll: &'a str,
        from: u64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<StoredReceipt>> {
        self.inner.list_receipts(scroll, from, limit)
    }

    fn proof_bundle<'a>(
        &'a self,
        scroll: &'a str,
        seq: u64,
        vkey: &'a str,
    ) -> StoreFuture<'a, Option<ProofBundle>> {
        self.inner.proof_bundle(scroll, seq, vkey)
    }

    fn scan_receipt_range<'a>(
        &'a self,
        scroll_id: i32,
        from: u64,
        to: u64,
        visit: &'a mut (dyn FnMut(RawReceipt) -> bool + Send),
    ) -> StoreFuture<'a, ()> {
        self.inner.scan_receipt_range(scroll_id, from, to, visit)
    }
}
