//! Assembles offline proof bundles from stored receipts, tiles, checkpoints (with the
//! cosignatures witnesses gave them) and anchors.

use super::{Store, StoreError};
use crate::bundle::{ProofBundle, BUNDLE_FORMAT};
use crate::hash::to_hex;

impl Store {
    /// The bundle for receipt `seq` of `scroll`: proven against the checkpoint of the newest
    /// anchor covering it (carrying its signed head), or else against the latest checkpoint
    /// (then `anchor` is `None`; also while the newest epoch has no signed head yet, since an
    /// unsigned record is no evidence). `Ok(None)` if the receipt does not exist or no
    /// checkpoint covers it yet.
    pub(crate) async fn proof_bundle(
        &self,
        scroll: &str,
        seq: u64,
        vkey: &str,
    ) -> Result<Option<ProofBundle>, StoreError> {
        let Some(stored) = self.receipt(scroll, seq).await? else {
            return Ok(None);
        };
        let info = self.scroll(scroll).await?;
        let mut anchor = None;
        let mut checkpoint = None;
        let signed = self
            .latest_anchor()
            .await?
            .filter(|a| a.record.signature.is_some());
        if let Some(latest) = signed {
            if let Some(entry) = latest.record.scroll(scroll) {
                if entry.tree_size > seq {
                    checkpoint = self.checkpoint_at(scroll, entry.tree_size).await?;
                    if checkpoint
                        .as_ref()
                        .is_some_and(|c| to_hex(&c.root) == entry.root)
                    {
                        anchor = Some(latest.record.clone());
                    } else {
                        checkpoint = None;
                    }
                }
            }
        }
        if checkpoint.is_none() {
            checkpoint = self
                .latest_checkpoint(scroll)
                .await?
                .filter(|c| c.tree_size > seq);
        }
        let Some(cp) = checkpoint else {
            return Ok(None);
        };
        let inclusion =
            crate::storage::proofs::inclusion_proof(self, info.id, seq, cp.tree_size).await?;
        let lines: Vec<String> = self
            .cosignatures(scroll, cp.tree_size)
            .await?
            .into_iter()
            .map(|c| c.line)
            .collect();
        let leaf = String::from_utf8(stored.leaf.clone())
            .map_err(|_| StoreError::Integrity(format!("{scroll}/{seq}: leaf is not UTF-8")))?;
        Ok(Some(ProofBundle {
            format: BUNDLE_FORMAT.to_string(),
            receipt: stored.receipt.to_value(),
            leaf,
            leaf_hash: to_hex(&stored.leaf_hash),
            inclusion,
            checkpoint: crate::cosignature::with_cosignatures(&cp.note, &lines),
            vkey: vkey.to_string(),
            anchor,
        }))
    }
}
