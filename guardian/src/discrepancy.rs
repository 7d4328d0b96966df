//! Federation discrepancies (SPEC §13): evidence a remote mesh produced itself — checkpoints
//! validly signed by its guardian's key, and what its own portal serves — that contradicts
//! what this witness cosigned. Each is recorded once (per remote, type, origin and size) with
//! its evidence, written as a `federation_discrepancy` receipt in `federation`, counted as a
//! sentinel event, and holds `vaultmesh_federation_discrepancy_detected{remote_mesh,
//! discrepancy_type}` at 1 until an admin acknowledges it by id.

use crate::anchor::append_receipt;
use crate::error::GuardianError;
use crate::metrics::{sentinel, DISCREPANCY_DETECTED};
use ledger::store::{Discrepancy, Store};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The scroll discrepancies and their acknowledgements are written to.
pub const FEDERATION_SCROLL: &str = "federation";

/// Every discrepancy type.
pub const TYPES: [&str; 5] = [
    "fork",
    "split_view",
    "rollback",
    "bad_signature",
    "bad_proof",
];

/// A discrepancy about to be raised.
#[derive(Debug, Clone)]
pub struct NewDiscrepancy {
    /// The remote mesh at fault.
    pub remote_mesh: String,
    /// One of [`TYPES`].
    pub kind: &'static str,
    /// The origin concerned.
    pub origin: String,
    /// The tree size concerned.
    pub tree_size: u64,
    /// Signed notes, proofs and where they were served.
    pub evidence: Value,
}

/// Why an acknowledgement was refused.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// No ids were given, or too many.
    #[error("name between 1 and 1000 discrepancy ids")]
    Count,
    /// An id is unknown or already acknowledged (nothing was acknowledged).
    #[error("discrepancy {0} is unknown or already acknowledged")]
    NotOpen(i64),
    /// The store or the receipt failed.
    #[error(transparent)]
    Ledger(#[from] GuardianError),
}

/// Raises and acknowledges discrepancies.
pub struct Discrepancies {
    /// The ledger.
    pub store: Store,
    /// The append gate the receipts go through.
    pub gate: ledger::gate::AppendGate,
}

impl Discrepancies {
    /// Records `d` (once) and, when it is new, writes its receipt, counts a sentinel event and
    /// sets the gauge. Failures are logged: detection carries on.
    pub async fn raise(&self, d: NewDiscrepancy) {
        let id = match self
            .store
            .insert_discrepancy(&d.remote_mesh, d.kind, &d.origin, d.tree_size, &d.evidence)
            .await
        {
            Ok(Some(id)) => id,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, remote = %d.remote_mesh, kind = d.kind,
                    "could not record a federation discrepancy; retried at the next check");
                return;
            }
        };
        DISCREPANCY_DETECTED
            .with_label_values(&[&d.remote_mesh, d.kind])
            .set(1.0);
        sentinel("federation_discrepancy", "critical");
        tracing::error!(id, remote = %d.remote_mesh, kind = d.kind, origin = %d.origin,
            size = d.tree_size, "federation discrepancy: the remote mesh's own evidence \
            contradicts what this witness cosigned");
        let payload = json!({
            "discrepancy_id": id,
            "remote_mesh": d.remote_mesh,
            "discrepancy_type": d.kind,
            "origin": d.origin,
            "tree_size": d.tree_size,
            "evidence": d.evidence,
        });
        if let Err(e) = self.append("federation_discrepancy", payload).await {
            tracing::error!(id, error = %e, "could not write the federation_discrepancy receipt");
        }
    }

    async fn append(&self, kind: &str, payload: Value) -> Result<(), GuardianError> {
        append_receipt(&self.store, &self.gate, FEDERATION_SCROLL, kind, payload).await
    }

    /// Sets the gauge from what is stored: 1 for every (remote, type) with an open
    /// discrepancy, 0 for the others known.
    pub async fn refresh(&self) -> Result<(), GuardianError> {
        let all = self.store.discrepancies().await?;
        let open: BTreeSet<(&str, &str)> = all
            .iter()
            .filter(|d| d.acknowledged_at.is_none())
            .map(|d| (d.remote_mesh.as_str(), d.discrepancy_type.as_str()))
            .collect();
        for d in &all {
            let value = open.contains(&(d.remote_mesh.as_str(), d.discrepancy_type.as_str()));
            DISCREPANCY_DETECTED
                .with_label_values(&[&d.remote_mesh, &d.discrepancy_type])
                .set(if value { 1.0 } else { 0.0 });
        }
        Ok(())
    }

    /// Every discrepancy known.
    pub async fn list(&self) -> Result<Vec<Discrepancy>, GuardianError> {
        Ok(self.store.discrepancies().await?)
    }

    /// Acknowledges exactly `ids` (each named once; all must be open, or nothing happens)
    /// by admin key `by`: the `federation_discrepancy_acknowledged` receipt is written first,
    /// so an acknowledgement that cannot be receipted is not made; then the rows are marked
    /// and the gauge lowered where nothing open remains.
    pub async fn acknowledge(&self, ids: &[i64], by: &str) -> Result<Vec<i64>, AckError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() || ids.len() > 1000 {
            return Err(AckError::Count);
        }
        let open: BTreeSet<i64> = self
            .store
            .discrepancies()
            .await
            .map_err(GuardianError::from)?
            .into_iter()
            .filter(|d| d.acknowledged_at.is_none())
            .map(|d| d.id)
            .collect();
        if let Some(id) = ids.iter().find(|id| !open.contains(id)) {
            return Err(AckError::NotOpen(*id));
        }
        self.append(
            "federation_discrepancy_acknowledged",
            json!({"discrepancy_ids": ids, "acknowledged_by": by}),
        )
        .await?;
        let done = match self
            .store
            .acknowledge_discrepancies(&ids, by)
            .await
            .map_err(GuardianError::from)?
        {
            Ok(done) => done,
            Err(id) => return Err(AckError::NotOpen(id)),
        };
        self.refresh().await?;
        Ok(done)
    }
}
