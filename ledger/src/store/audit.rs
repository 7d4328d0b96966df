//! Raw reads for auditing: stored rows exactly as they are, with nothing checked or trusted,
//! so that the guardian's divergence pass can check them itself.

use super::checkpoints::{checkpoint_row, StoredCheckpoint, COLUMNS};
use super::tree::check_leaf;
use super::{to_i64, to_u64, Store, StoreError, StoredReceipt};
use crate::receipt::Receipt;
use tokio_postgres::types::Type;

/// One stored receipt row, unverified.
#[derive(Debug, Clone)]
pub struct RawReceipt {
    /// `seq` column.
    pub seq: u64,
    /// `leaf` column (the bytes the leaf hash should cover).
    pub leaf: Vec<u8>,
    /// `leaf_hash` column.
    pub leaf_hash: Vec<u8>,
}

impl Store {
    /// Streams every receipt row of a scroll, by `seq`, unverified, through one
    /// `COPY … TO STDOUT BINARY` (one query, bounded memory); `visit` returns `false` to stop.
    pub async fn scan_receipts<F>(&self, scroll_id: i32, visit: F) -> Result<(), StoreError>
    where
        F: FnMut(RawReceipt) -> bool,
    {
        self.scan_receipt_range(scroll_id, 0, u64::MAX, visit).await
    }

    /// Streams the receipt rows of a scroll with `from <= seq < to`, by `seq`, unverified, as
    /// [`Store::scan_receipts`] does.
    pub(crate) async fn scan_receipt_range<F>(
        &self,
        scroll_id: i32,
        from: u64,
        to: u64,
        mut visit: F,
    ) -> Result<(), StoreError>
    where
        F: FnMut(RawReceipt) -> bool,
    {
        use futures_util::StreamExt;
        let (from, to) = (to_i64(from), to_i64(to));
        let client = self.pool().get().await?;
        let stream = client
            .copy_out(&format!(
                "COPY (SELECT seq, leaf, leaf_hash FROM receipts WHERE scroll_id = {scroll_id} \
                 AND seq >= {from} AND seq < {to} ORDER BY seq) TO STDOUT BINARY"
            ))
            .await?;
        let rows = tokio_postgres::binary_copy::BinaryCopyOutStream::new(
            stream,
            &[Type::INT8, Type::BYTEA, Type::BYTEA],
        );
        futures_util::pin_mut!(rows);
        while let Some(row) = rows.next().await {
            let row = row?;
            let keep_going = visit(RawReceipt {
                seq: to_u64(row.try_get(0)?),
                leaf: row.try_get(1)?,
                leaf_hash: row.try_get(2)?,
            });
            if !keep_going {
                break;
            }
        }
        Ok(())
    }

    /// The `kind` receipts of `scroll`, by `seq`, each with the database role that inserted
    /// it (`db_role`, which no service role can set), for callers that must know who wrote
    /// a receipt. Rows whose bytes, stored hash or position disagree are left out (the
    /// divergence pass reports those).
    pub async fn receipts_of_type_with_role(
        &self,
        scroll: &str,
        kind: &str,
    ) -> Result<Vec<(StoredReceipt, String)>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT r.seq, r.leaf, r.leaf_hash, r.db_role FROM receipts r \
                 JOIN scrolls s ON s.id = r.scroll_id WHERE s.name = $1 AND r.type = $2 \
                 ORDER BY r.seq",
                &[&scroll, &kind],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq = to_u64(row.get(0));
            let leaf: Vec<u8> = row.get(1);
            let stored_hash: Vec<u8> = row.get(2);
            let Ok(leaf_hash) = check_leaf(scroll, seq, seq, &leaf, &stored_hash) else {
                continue;
            };
            let Ok(receipt) = Receipt::from_leaf(&leaf) else {
                continue;
            };
            let stored = StoredReceipt {
                receipt,
                leaf,
                leaf_hash,
            };
            out.push((stored, row.get(3)));
        }
        Ok(out)
    }

    /// Every checkpoint of a scroll, by size.
    pub async fn checkpoints_of(
        &self,
        scroll_id: i32,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM checkpoints c JOIN scrolls s ON s.id = c.scroll_id \
                     WHERE c.scroll_id = $1 ORDER BY c.tree_size"
                ),
                &[&scroll_id],
            )
            .await?;
        rows.iter().map(checkpoint_row).collect()
    }

    /// The newest anchored epoch's number (0 before the first), without reading its record.
    pub async fn latest_epoch(&self) -> Result<u64, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_one("SELECT COALESCE(max(epoch), 0) FROM anchors", &[])
            .await?;
        Ok(to_u64(row.get(0)))
    }

    /// Epochs the named sink accepted, in order.
    pub async fn epochs_accepted_by_sink(&self, sink: &str) -> Result<Vec<u64>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT DISTINCT epoch FROM anchor_sinks WHERE sink = $1 AND ok ORDER BY epoch",
                &[&sink],
            )
            .await?;
        Ok(rows.iter().map(|r| to_u64(r.get(0))).collect())
    }
}
