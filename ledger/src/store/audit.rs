//! Raw reads for auditing: stored rows exactly as they are, with nothing checked or trusted,
//! so that the guardian's divergence pass can check them itself.

use super::checkpoints::{checkpoint_row, StoredCheckpoint, COLUMNS};
use super::{to_u64, Store, StoreError};
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
    pub async fn scan_receipts<F>(&self, scroll_id: i32, mut visit: F) -> Result<(), StoreError>
    where
        F: FnMut(RawReceipt) -> bool,
    {
        use futures_util::StreamExt;
        let client = self.pool().get().await?;
        let stream = client
            .copy_out(&format!(
                "COPY (SELECT seq, leaf, leaf_hash FROM receipts WHERE scroll_id = {scroll_id} \
                 ORDER BY seq) TO STDOUT BINARY"
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
