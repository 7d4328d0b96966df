//! Raw reads for auditing: stored rows exactly as they are, with nothing checked or trusted,
//! so that the guardian's divergence pass can check them itself.

use super::checkpoints::{checkpoint_row, StoredCheckpoint, COLUMNS};
use super::{to_i64, to_u64, Store, StoreError};

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
    /// Up to `limit` receipt rows of a scroll from `from` on, by `seq`, unverified.
    pub async fn raw_receipts(
        &self,
        scroll_id: i32,
        from: u64,
        limit: u32,
    ) -> Result<Vec<RawReceipt>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT seq, leaf, leaf_hash FROM receipts WHERE scroll_id = $1 AND seq >= $2 \
                 ORDER BY seq LIMIT $3",
                &[&scroll_id, &to_i64(from), &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| RawReceipt {
                seq: to_u64(r.get(0)),
                leaf: r.get(1),
                leaf_hash: r.get(2),
            })
            .collect())
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
