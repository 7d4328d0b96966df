//! Offline proof bundles: a receipt, its inclusion proof, the signed checkpoint, and the
//! anchor record that covers that checkpoint with its signed head — everything an auditor
//! needs, in one file.

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::hash::{from_hex, to_hex};
use crate::merkle::{verify_inclusion, InclusionProof, ProofError};
use crate::note::NoteVerifier;
use crate::proofchain::{AnchorError, AnchorRecord};
use crate::receipt::{leaf_hash, Receipt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `format` value of version-1 bundles.
pub const BUNDLE_FORMAT: &str = "vaultmesh-proof-bundle/v1";

/// Why a bundle does not verify.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Unknown `format`.
    #[error("unsupported bundle format {0:?}")]
    Format(String),
    /// `leaf` is not a receipt.
    #[error("leaf is not a receipt: {0}")]
    Leaf(String),
    /// `leaf_hash` differs from H(0x00‖leaf).
    #[error("leaf_hash does not match the leaf bytes")]
    LeafHash,
    /// The readable `receipt` copy differs from the leaf.
    #[error("receipt object differs from the leaf bytes")]
    ReceiptCopy,
    /// The checkpoint does not verify.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// Checkpoint origin, size or proof position disagree with the receipt.
    #[error("{0}")]
    Mismatch(String),
    /// The inclusion proof fails.
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
    /// The anchor record fails or does not cover the checkpoint.
    #[error("anchor: {0}")]
    Anchor(#[from] AnchorError),
}

/// A self-contained proof of one receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProofBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The exact leaf bytes (canonical receipt JSON) as a string.
    pub leaf: String,
    /// `H(0x00‖leaf)`, hex.
    pub leaf_hash: String,
    /// The receipt as an object, for reading (must equal `leaf`).
    pub receipt: Value,
    /// Inclusion proof of the leaf in the checkpoint's tree.
    pub inclusion: InclusionProof,
    /// Signed checkpoint note.
    pub checkpoint: String,
    /// The guardian's vkey that signed the checkpoint (informational; verify with your own copy).
    pub vkey: String,
    /// Anchor record (with its signed head in `signature`) whose entry for this scroll
    /// equals the checkpoint, if anchored yet.
    pub anchor: Option<AnchorRecord>,
}

/// What a verified bundle proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleVerdict {
    /// Scroll of the receipt.
    pub scroll: String,
    /// Position of the receipt.
    pub seq: u64,
    /// Size of the checkpoint that includes it.
    pub tree_size: u64,
    /// Epoch that anchors the checkpoint, if any.
    pub anchored_epoch: Option<u64>,
}

impl ProofBundle {
    /// Verifies everything in the bundle against `verifier` (the auditor's trusted vkey),
    /// the anchor record's signed head included: an anchor without a valid head fails.
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<BundleVerdict, BundleError> {
        if self.format != BUNDLE_FORMAT {
            return Err(BundleError::Format(self.format.clone()));
        }
        let leaf = self.leaf.as_bytes();
        let receipt = Receipt::from_leaf(leaf).map_err(|e| BundleError::Leaf(e.to_string()))?;
        let lh = leaf_hash(leaf);
        if from_hex(&self.leaf_hash).ok() != Some(lh) {
            return Err(BundleError::LeafHash);
        }
        let leaf_value: Value =
            serde_json::from_slice(leaf).map_err(|e| BundleError::Leaf(e.to_string()))?;
        if leaf_value != self.receipt {
            return Err(BundleError::ReceiptCopy);
        }
        let cp = Checkpoint::verify(&self.checkpoint, verifier, None)?;
        let suffix = format!("/{}", receipt.scroll);
        let Some(mesh) = cp.origin.strip_suffix(&suffix) else {
            return Err(BundleError::Mismatch(format!(
                "checkpoint origin {} is not for scroll {}",
                cp.origin, receipt.scroll
            )));
        };
        if self.inclusion.tree_size != cp.size || self.inclusion.leaf_index != receipt.seq {
            return Err(BundleError::Mismatch(
                "inclusion proof is not for this receipt and checkpoint".into(),
            ));
        }
        verify_inclusion::<sha3::Sha3_256>(
            &lh,
            receipt.seq,
            cp.size,
            &self.inclusion.path,
            &cp.root,
        )?;
        let anchored_epoch = match &self.anchor {
            None => None,
            Some(rec) => {
                rec.verify_signed(verifier)?;
                let entry = rec.scroll(&receipt.scroll).ok_or_else(|| {
                    BundleError::Mismatch(format!("epoch {} does not list this scroll", rec.epoch))
                })?;
                if rec.mesh != mesh || entry.tree_size != cp.size || entry.root != to_hex(&cp.root)
                {
                    return Err(BundleError::Mismatch(format!(
                        "epoch {} does not anchor this checkpoint",
                        rec.epoch
                    )));
                }
                Some(rec.epoch)
            }
        };
        Ok(BundleVerdict {
            scroll: receipt.scroll,
            seq: receipt.seq,
            tree_size: cp.size,
            anchored_epoch,
        })
    }
}
