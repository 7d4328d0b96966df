//! Integration: append the leaf hashes of new receipts to each scroll's stored tree, check the
//! new tree is consistent with the previous signed checkpoint, then sign and store a new
//! checkpoint. One query finds the scrolls that need it, so idle scrolls cost nothing.

use crate::error::GuardianError;
use ledger::checkpoint::Checkpoint;
use ledger::hash::{to_hex, Hash};
use ledger::merkle::verify_consistency;
use ledger::note::NoteSigner;
use ledger::store::{PendingScroll, Store};
use sha3::Sha3_256;

/// A checkpoint signed by one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Signed {
    /// Scroll name.
    pub scroll: String,
    /// Tree size.
    pub size: u64,
    /// Root.
    pub root: Hash,
}

/// Integrates and signs for every scroll that grew.
pub struct Integrator {
    /// The ledger.
    pub store: Store,
    /// The checkpoint key.
    pub signer: NoteSigner,
    /// Mesh id (checkpoint origin prefix).
    pub mesh: String,
    /// Most leaves per integration transaction.
    pub batch: u32,
}

impl Integrator {
    /// One pass over the scrolls that need it. A scroll whose history diverges is reported
    /// (and not signed) without stopping the others.
    pub async fn pass(&self) -> Result<(Vec<Signed>, Vec<GuardianError>), GuardianError> {
        let mut signed = Vec::new();
        let mut diverged = Vec::new();
        for pending in self.store.pending_checkpoints().await? {
            match self.scroll(&pending).await {
                Ok(Some(s)) => signed.push(s),
                Ok(None) => {}
                Err(e @ GuardianError::Divergence { .. }) => diverged.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok((signed, diverged))
    }

    async fn scroll(&self, p: &PendingScroll) -> Result<Option<Signed>, GuardianError> {
        let mut size = p.integrated;
        while size < p.written {
            let (_, to) = self.store.integrate(p.id, self.batch).await?;
            if to == size {
                break;
            }
            size = to;
        }
        let root = self.store.tree_root(p.id, size).await?;
        if let Some((prev_size, prev_root)) = p.checkpoint {
            if prev_size == size {
                return Ok(None);
            }
            let diverged = |detail: String| GuardianError::Divergence {
                scroll: p.name.clone(),
                size,
                detail,
            };
            if prev_size > size {
                return Err(diverged(format!(
                    "the stored tree ({size}) is smaller than the signed checkpoint ({prev_size})"
                )));
            }
            let proof = self.store.consistency_proof(p.id, prev_size, size).await?;
            verify_consistency::<Sha3_256>(prev_size, size, &proof.path, &prev_root, &root)
                .map_err(|e| {
                    diverged(format!(
                        "tree at {size} (root {}) is not consistent with the checkpoint at \
                         {prev_size} (root {}): {e}",
                        to_hex(&root),
                        to_hex(&prev_root)
                    ))
                })?;
        }
        let note = Checkpoint {
            origin: Checkpoint::origin_for(&self.mesh, &p.name),
            size,
            root,
        }
        .sign(&self.signer)?;
        self.store
            .insert_checkpoint(p.id, size, &root, &note)
            .await?;
        tracing::debug!(scroll = %p.name, size, root = %to_hex(&root), "checkpoint signed");
        Ok(Some(Signed {
            scroll: p.name.clone(),
            size,
            root,
        }))
    }
}
