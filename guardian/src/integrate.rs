//! Integration: append the leaf hashes of new receipts to each scroll's stored tree, then
//! sign a checkpoint over a tree the guardian built itself. The stored tiles at the last
//! signed checkpoint must give its signed root; tiles beyond it that an earlier pass (or
//! anyone else) wrote are re-verified from the receipts' bytes; new leaves are hashed from the
//! receipts' bytes (which must name their own scroll and seq) and written, in this pass's own
//! transactions, on top of that verified tree — so the root signed is one this pass computed.
//! Any disagreement is a divergence finding for that scroll, never a signature, and the other
//! scrolls carry on. One query finds the scrolls that need a pass, so idle scrolls cost
//! nothing.

use crate::divergence::Finding;
use crate::error::GuardianError;
use crate::frontier::Frontier;
use ledger::checkpoint::Checkpoint;
use ledger::hash::{to_hex, Hash, Sha3Hasher};
use ledger::note::NoteSigner;
use ledger::storage::Storage;
use ledger::store::tree::check_leaf;
use ledger::store::{PendingScroll, RawReceipt, StoreError};

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

/// What one integration pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Checkpoints signed.
    pub signed: Vec<Signed>,
    /// Divergence found (each scroll with a finding was not signed beyond it).
    pub findings: Vec<Finding>,
}

/// Integrates and signs for every scroll that grew.
pub struct Integrator {
    /// The ledger.
    pub store: std::sync::Arc<dyn Storage>,
    /// The checkpoint key.
    pub signer: NoteSigner,
    /// Mesh id (checkpoint origin prefix).
    pub mesh: String,
    /// Most leaves per integration transaction.
    pub batch: u32,
}

/// A scroll's pass, stopped by a divergence finding.
type Checked<T> = Result<T, Finding>;

impl Integrator {
    /// One pass over the scrolls that need it. A scroll whose history diverges is reported
    /// (and not signed beyond what was verified) without stopping the others.
    pub async fn pass(&self) -> Result<Pass, GuardianError> {
        let mut pass = Pass::default();
        for pending in self.store.pending_checkpoints().await? {
            let (signed, finding) = self.scroll(&pending).await?;
            pass.signed.extend(signed);
            pass.findings.extend(finding);
        }
        Ok(pass)
    }

    async fn scroll(
        &self,
        p: &PendingScroll,
    ) -> Result<(Option<Signed>, Option<Finding>), GuardianError> {
        let mut size = match self.verified_size(p).await? {
            Ok(size) => size,
            Err(finding) => return Ok((None, Some(finding))),
        };
        let mut rejected = None;
        while size < p.written {
            let step = match self.store.integrate_step(p.id, self.batch).await {
                Ok(step) => step,
                Err(StoreError::Integrity(e)) => {
                    let detail = format!("the stored tree cannot be extended at {size}: {e}");
                    return Ok((None, Some(self.finding(p, size, detail))));
                }
                Err(e) => return Err(e.into()),
            };
            if step.from != size {
                tracing::warn!(
                    scroll = %p.name,
                    expected = size,
                    found = step.from,
                    "the stored tree moved during this pass; it is re-verified next pass"
                );
                return Ok((None, None));
            }
            let grew = step.to > step.from;
            size = step.to;
            if let Some(r) = step.rejected {
                let detail = format!("receipt {}: {}", r.seq, r.reason);
                rejected = Some(self.finding(p, r.seq, detail));
                break;
            }
            if !grew {
                break;
            }
        }
        if p.checkpoint.is_some_and(|(signed, _)| signed == size) {
            return Ok((None, rejected));
        }
        let root = match self.stored_frontier(p, size).await? {
            Ok(f) => f.root(),
            Err(finding) => return Ok((None, Some(finding))),
        };
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
        let signed = Signed {
            scroll: p.name.clone(),
            size,
            root,
        };
        Ok((Some(signed), rejected))
    }

    /// The stored tree's size, once what is stored is verified: the stored tiles at the last
    /// checkpoint must give its signed root, and every leaf beyond it already in the tree
    /// (written by a pass that crashed before signing, or by anyone else with the
    /// guardian's role) is re-derived from its receipt, and the tiles must give the root
    /// those leaves make.
    async fn verified_size(&self, p: &PendingScroll) -> Result<Checked<u64>, GuardianError> {
        let (signed_size, signed_root) = p.checkpoint.unwrap_or((0, Sha3Hasher::empty_root()));
        if p.integrated < signed_size {
            return Ok(Err(self.finding(
                p,
                p.integrated,
                format!(
                    "the stored tree ({}) is smaller than the signed checkpoint ({signed_size})",
                    p.integrated
                ),
            )));
        }
        let mut frontier = match self.stored_frontier(p, signed_size).await? {
            Ok(f) => f,
            Err(finding) => return Ok(Err(finding)),
        };
        if frontier.root() != signed_root {
            return Ok(Err(self.finding(
                p,
                signed_size,
                format!(
                    "the stored tree at {signed_size} has root {}, not the signed checkpoint's {}",
                    to_hex(&frontier.root()),
                    to_hex(&signed_root)
                ),
            )));
        }
        if p.integrated == signed_size {
            return Ok(Ok(signed_size));
        }
        let mut bad = None;
        let mut visit = |row: RawReceipt| match check_leaf(
            &p.name,
            frontier.size(),
            row.seq,
            &row.leaf,
            &row.leaf_hash,
        ) {
            Ok(hash) => {
                frontier.push(hash);
                true
            }
            Err(reason) => {
                bad = Some((frontier.size(), reason));
                false
            }
        };
        self.store
            .scan_receipt_range(p.id, signed_size, p.integrated, &mut visit)
            .await?;
        if let Some((seq, reason)) = bad {
            return Ok(Err(self.finding(
                p,
                seq,
                format!("receipt {seq} (already in the stored tree): {reason}"),
            )));
        }
        if frontier.size() < p.integrated {
            return Ok(Err(self.finding(
                p,
                p.integrated,
                format!(
                    "the stored tree holds {} leaves but only {} receipts are stored in sequence",
                    p.integrated,
                    frontier.size()
                ),
            )));
        }
        let root = frontier.root();
        Ok(self
            .tiles_agree(p, p.integrated, &root)
            .await?
            .map(|()| p.integrated))
    }

    /// The stored tiles' frontier at `size` (read from Postgres, not a cache).
    async fn stored_frontier(
        &self,
        p: &PendingScroll,
        size: u64,
    ) -> Result<Checked<Frontier>, GuardianError> {
        let nodes = match self.store.stored_frontier(p.id, size).await {
            Ok(n) => n,
            Err(e @ (StoreError::Integrity(_) | StoreError::BeyondTree { .. })) => {
                return Ok(Err(self.finding(
                    p,
                    size,
                    format!("the stored tree at {size}: {e}"),
                )));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Frontier::new(size, nodes).ok_or_else(|| {
            self.finding(
                p,
                size,
                format!("the stored tree at {size} has a malformed frontier"),
            )
        }))
    }

    /// Whether the stored tiles give `root` at `size`: proofs are served from them, so a
    /// root is only signed when they agree with it.
    async fn tiles_agree(
        &self,
        p: &PendingScroll,
        size: u64,
        root: &Hash,
    ) -> Result<Checked<()>, GuardianError> {
        let stored = match self.stored_frontier(p, size).await? {
            Ok(f) => f.root(),
            Err(finding) => return Ok(Err(finding)),
        };
        if stored != *root {
            return Ok(Err(self.finding(
                p,
                size,
                format!(
                    "the stored tiles give root {} at {size}, but the receipts give {}",
                    to_hex(&stored),
                    to_hex(root)
                ),
            )));
        }
        Ok(Ok(()))
    }

    fn finding(&self, p: &PendingScroll, size: u64, detail: String) -> Finding {
        Finding {
            scroll: Some(p.name.clone()),
            size: Some(size),
            detail,
        }
    }
}
