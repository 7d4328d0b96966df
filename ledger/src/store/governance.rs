//! Governance state as the ledger holds it: the newest `constitution_adopted` and emergency
//! receipts of the `governance` scroll, written by a role trusted with them, and the
//! notification that tells every service to reload.

use super::tree::check_leaf;
use super::{to_u64, Store, StoreError, StoredReceipt};
use crate::receipt::Receipt;

/// The channel every service listens on for governance changes.
pub const GOVERNANCE_CHANNEL: &str = "vaultmesh_governance";

/// Receipts of the `governance` scroll that change what the gate enforces.
pub const STATE_TYPES: [&str; 3] = [
    "constitution_adopted",
    "emergency_raised",
    "emergency_lifted",
];

/// Database roles whose governance receipts count: the services that serve the governance
/// API, and the schema owner (which can do anything anyway). A receipt inserted by the
/// oracle's role, or any other, is ignored, so that role cannot forge a constitution.
const TRUSTED_ROLES: &str = "r.db_role IN ('vaultmesh_portal', 'vaultmesh_guardian') \
     OR r.db_role = (SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() \
     AND tablename = 'receipts')";

/// The newest state-changing governance receipt's `seq` (NULL before the first): one lookup
/// in the partial index of migration V5.
pub const GOVERNANCE_MARKER_SQL: &str = "SELECT max(r.seq) FROM receipts r WHERE r.scroll_id = \
     (SELECT id FROM scrolls WHERE name = 'governance') AND r.type IN \
     ('constitution_adopted', 'emergency_raised', 'emergency_lifted')";

/// The marker in a row of [`GOVERNANCE_MARKER_SQL`].
pub fn governance_marker_of(row: &tokio_postgres::Row) -> Option<u64> {
    row.get::<_, Option<i64>>(0).map(to_u64)
}

impl Store {
    /// The `seq` of the newest state-changing governance receipt (`None` before the first):
    /// a cheap probe that tells a poller whether to reload.
    pub async fn governance_marker(&self) -> Result<Option<u64>, StoreError> {
        let client = self.pool().get().await?;
        let row = client.query_one(GOVERNANCE_MARKER_SQL, &[]).await?;
        Ok(governance_marker_of(&row))
    }

    /// The newest receipt of the `governance` scroll whose type is one of `kinds`, written by
    /// a trusted role, integrity-checked; forged or damaged rows are skipped.
    pub async fn latest_governance_receipt(
        &self,
        kinds: &[&str],
    ) -> Result<Option<StoredReceipt>, StoreError> {
        Ok(self
            .latest_governance_receipts(kinds, 1)
            .await?
            .into_iter()
            .next())
    }

    /// Up to `limit` of the newest such receipts, newest first.
    pub async fn latest_governance_receipts(
        &self,
        kinds: &[&str],
        limit: usize,
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        let literals: Vec<String> = kinds
            .iter()
            .filter(|k| STATE_TYPES.contains(k))
            .map(|k| format!("'{k}'"))
            .collect();
        if literals.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.pool().get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT r.seq, r.leaf, r.leaf_hash FROM receipts r WHERE r.scroll_id = \
                     (SELECT id FROM scrolls WHERE name = 'governance') AND r.type IN ({}) \
                     AND ({TRUSTED_ROLES}) ORDER BY r.seq DESC LIMIT $1",
                    literals.join(", ")
                ),
                &[&(i64::try_from(limit).unwrap_or(i64::MAX).saturating_mul(4))],
            )
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let seq = to_u64(row.get(0));
            let leaf: Vec<u8> = row.get(1);
            let stored_hash: Vec<u8> = row.get(2);
            let Ok(leaf_hash) = check_leaf("governance", seq, seq, &leaf, &stored_hash) else {
                tracing::error!(seq, "governance receipt fails its integrity check; skipped");
                continue;
            };
            let Ok(receipt) = Receipt::from_leaf(&leaf) else {
                continue;
            };
            if !matches!(receipt.submitter.as_str(), "portal" | "guardian") {
                tracing::error!(seq, submitter = %receipt.submitter, "governance receipt from an unexpected submitter; skipped");
                continue;
            }
            out.push(StoredReceipt {
                receipt,
                leaf,
                leaf_hash,
            });
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Tells every service listening that governance state changed (best effort: pollers
    /// catch a lost notification).
    pub async fn notify_governance(&self) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        client
            .execute("SELECT pg_notify($1, '')", &[&GOVERNANCE_CHANNEL])
            .await?;
        Ok(())
    }
}

/// Advisory-lock key that serialises governance changes across every service ("VMGOVERN").
const CHANGE_LOCK_KEY: i64 = 0x564d_474f_5645_524e;

/// A connection holding the mesh-wide governance change lock. Dropping it closes the
/// connection, which releases the lock (also if the process dies while holding it).
pub struct GovernanceChangeLock {
    _client: deadpool_postgres::ClientWrapper,
}

impl Store {
    /// Takes the governance change lock, waiting at most `wait` for another service's change
    /// to finish: an adoption or a raise/lift re-reads the state and writes its receipt while
    /// holding it, so two admins acting at once never both pass the same check.
    pub async fn lock_governance_changes(
        &self,
        wait: std::time::Duration,
    ) -> Result<GovernanceChangeLock, StoreError> {
        let client = self.dedicated_client().await?;
        let ms = wait.as_millis().max(1);
        client
            .batch_execute(&format!("SET lock_timeout = {ms}"))
            .await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&CHANGE_LOCK_KEY])
            .await?;
        Ok(GovernanceChangeLock { _client: client })
    }
}
