//! Federation state: the witness's latest cosigned checkpoint per remote origin (changed only
//! atomically with its history), and the cosignatures this mesh's checkpoints collected.

use super::checkpoints::{checkpoint_row, StoredCheckpoint, COLUMNS};
use super::{to_hash, to_i64, to_u64, Store, StoreError};
use crate::hash::Hash;

/// The latest checkpoint a witness cosigned for one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessState {
    /// The log's origin line.
    pub origin: String,
    /// Tree size cosigned.
    pub tree_size: u64,
    /// Root cosigned.
    pub root: Hash,
    /// The log's signed checkpoint as it was submitted.
    pub note: String,
    /// The cosignature line given.
    pub cosignature: String,
}

/// One cosignature collected for a checkpoint of this mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedCosignature {
    /// The witness's vkey.
    pub witness: String,
    /// The signature line, ending in a newline.
    pub line: String,
}

impl Store {
    /// Decides and persists one witness step for `origin` atomically: under a transaction
    /// lock on the origin, `decide` sees the current state (`None` before the first
    /// cosignature) and either returns the new state, which is written with a history row
    /// before the commit (unless it is the current state unchanged), or refuses (nothing is
    /// written). Concurrent calls for one origin
    /// run one after the other, so no decision is made on a state another has changed.
    pub async fn witness_advance<E>(
        &self,
        origin: &str,
        decide: impl FnOnce(Option<&WitnessState>) -> Result<WitnessState, E>,
    ) -> Result<Result<WitnessState, E>, StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('vaultmesh-witness:' || $1, 0))",
            &[&origin],
        )
        .await?;
        let row = tx.query_opt(STATE_OF_ORIGIN, &[&origin]).await?;
        let current = row.map(|r| witness_row(&r)).transpose()?;
        let next = match decide(current.as_ref()) {
            Ok(next) => next,
            Err(refused) => return Ok(Err(refused)),
        };
        if current.as_ref() == Some(&next) {
            return Ok(Ok(next));
        }
        let size = to_i64(next.tree_size);
        let row: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &origin,
            &size,
            &&next.root[..],
            &next.note,
            &next.cosignature,
        ];
        tx.execute(
            "INSERT INTO witness_state (origin, tree_size, root, note, cosignature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (origin) DO UPDATE SET \
             tree_size = EXCLUDED.tree_size, root = EXCLUDED.root, note = EXCLUDED.note, \
             cosignature = EXCLUDED.cosignature, updated_at = now()",
            &row,
        )
        .await?;
        tx.execute(
            "INSERT INTO witness_history (origin, tree_size, root, note, cosignature) \
             VALUES ($1, $2, $3, $4, $5)",
            &row,
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(next))
    }

    /// The witness's latest cosigned checkpoint for `origin`.
    pub async fn witness_state(&self, origin: &str) -> Result<Option<WitnessState>, StoreError> {
        let client = self.pool().get().await?;
        let row = client.query_opt(STATE_OF_ORIGIN, &[&origin]).await?;
        row.map(|r| witness_row(&r)).transpose()
    }

    /// Every (size, root) the witness ever cosigned for `origin`, in the order given.
    pub async fn witness_history(&self, origin: &str) -> Result<Vec<(u64, Hash)>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT tree_size, root FROM witness_history WHERE origin = $1 ORDER BY id",
                &[&origin],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((to_u64(r.get(0)), to_hash(r.get(1), "witness root")?)))
            .collect()
    }

    /// Stores a cosignature of checkpoint (`scroll_id`, `tree_size`) by `witness` (its
    /// vkey); false if that witness already has one stored for it (the first is kept).
    pub async fn insert_cosignature(
        &self,
        scroll_id: i32,
        tree_size: u64,
        witness: &str,
        line: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool().get().await?;
        let n = client
            .execute(
                "INSERT INTO checkpoint_cosignatures (scroll_id, tree_size, witness, line) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&scroll_id, &to_i64(tree_size), &witness, &line],
            )
            .await?;
        Ok(n == 1)
    }

    /// The largest size of `scroll_id` that `witness` cosigned, as stored here.
    pub async fn cosigned_size(
        &self,
        scroll_id: i32,
        witness: &str,
    ) -> Result<Option<u64>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_one(
                "SELECT max(tree_size) FROM checkpoint_cosignatures \
                 WHERE scroll_id = $1 AND witness = $2",
                &[&scroll_id, &witness],
            )
            .await?;
        Ok(row.get::<_, Option<i64>>(0).map(to_u64))
    }

    /// The cosignatures stored for a scroll's checkpoint at `tree_size`, by witness.
    pub async fn cosignatures(
        &self,
        scroll: &str,
        tree_size: u64,
    ) -> Result<Vec<CollectedCosignature>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT c.witness, c.line FROM checkpoint_cosignatures c \
                 JOIN scrolls s ON s.id = c.scroll_id \
                 WHERE s.name = $1 AND c.tree_size = $2 ORDER BY c.witness",
                &[&scroll, &to_i64(tree_size)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| CollectedCosignature {
                witness: r.get(0),
                line: r.get(1),
            })
            .collect())
    }

    /// Stores a cosignature of the ProofChain head of `epoch` by `witness` (its vkey); false
    /// if that witness already has one stored for it.
    pub async fn insert_head_cosignature(
        &self,
        epoch: u64,
        witness: &str,
        line: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool().get().await?;
        let n = client
            .execute(
                "INSERT INTO anchor_head_cosignatures (epoch, witness, line) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&to_i64(epoch), &witness, &line],
            )
            .await?;
        Ok(n == 1)
    }

    /// The largest epoch whose head `witness` cosigned, as stored here.
    pub async fn cosigned_head_epoch(&self, witness: &str) -> Result<Option<u64>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_one(
                "SELECT max(epoch) FROM anchor_head_cosignatures WHERE witness = $1",
                &[&witness],
            )
            .await?;
        Ok(row.get::<_, Option<i64>>(0).map(to_u64))
    }

    /// The cosignatures stored for the ProofChain head of `epoch`, by witness.
    pub async fn head_cosignatures(
        &self,
        epoch: u64,
    ) -> Result<Vec<CollectedCosignature>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT witness, line FROM anchor_head_cosignatures WHERE epoch = $1 \
                 ORDER BY witness",
                &[&to_i64(epoch)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| CollectedCosignature {
                witness: r.get(0),
                line: r.get(1),
            })
            .collect())
    }

    /// The largest checkpoint of `scroll` holding cosignatures from at least `k` witnesses.
    pub async fn latest_witnessed_checkpoint(
        &self,
        scroll: &str,
        k: u32,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM checkpoints c JOIN scrolls s ON s.id = c.scroll_id \
                     WHERE s.name = $1 AND (SELECT count(*) FROM checkpoint_cosignatures w \
                       WHERE w.scroll_id = c.scroll_id AND w.tree_size = c.tree_size) >= $2 \
                     ORDER BY c.tree_size DESC LIMIT 1"
                ),
                &[&scroll, &i64::from(k)],
            )
            .await?;
        row.map(|r| checkpoint_row(&r)).transpose()
    }
}

/// The witness's state for origin `$1`.
const STATE_OF_ORIGIN: &str =
    "SELECT origin, tree_size, root, note, cosignature FROM witness_state WHERE origin = $1";

fn witness_row(r: &tokio_postgres::Row) -> Result<WitnessState, StoreError> {
    Ok(WitnessState {
        origin: r.get(0),
        tree_size: to_u64(r.get(1)),
        root: to_hash(r.get(2), "witness root")?,
        note: r.get(3),
        cosignature: r.get(4),
    })
}

/// A discrepancy found in a remote mesh's own evidence, as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Discrepancy {
    /// Its id (what an acknowledgement names).
    pub id: i64,
    /// The remote mesh at fault.
    pub remote_mesh: String,
    /// `fork`, `split_view`, `rollback`, `bad_signature` or `bad_proof`.
    pub discrepancy_type: String,
    /// The log origin concerned.
    pub origin: String,
    /// The tree size concerned.
    pub tree_size: u64,
    /// The evidence (signed notes, proofs, where they were served).
    pub evidence: serde_json::Value,
    /// When it was found.
    pub detected_at: chrono::DateTime<chrono::Utc>,
    /// When an admin acknowledged it.
    pub acknowledged_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The admin key that did.
    pub acknowledged_by: Option<String>,
}

impl Store {
    /// The note and root the witness cosigned for `origin` at `tree_size`, if it ever did.
    pub async fn witness_cosigned_at(
        &self,
        origin: &str,
        tree_size: u64,
    ) -> Result<Option<(Hash, String)>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                "SELECT root, note FROM witness_history WHERE origin = $1 AND tree_size = $2 \
                 ORDER BY id LIMIT 1",
                &[&origin, &to_i64(tree_size)],
            )
            .await?;
        row.map(|r| Ok((to_hash(r.get(0), "witness root")?, r.get(1))))
            .transpose()
    }

    /// The largest size (and its note) the witness cosigned for `origin` at least `age` ago.
    pub async fn witness_cosigned_before(
        &self,
        origin: &str,
        age: std::time::Duration,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                "SELECT tree_size, note FROM witness_history WHERE origin = $1 \
                 AND cosigned_at <= now() - make_interval(secs => $2) \
                 ORDER BY id DESC LIMIT 1",
                &[&origin, &age.as_secs_f64()],
            )
            .await?;
        Ok(row.map(|r| (to_u64(r.get(0)), r.get(1))))
    }

    /// Every origin of `remote_mesh` the witness holds state for, with that state.
    pub async fn witness_states_of(
        &self,
        remote_mesh: &str,
    ) -> Result<Vec<WitnessState>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT origin, tree_size, root, note, cosignature FROM witness_state \
                 WHERE starts_with(origin, $1 || '/') ORDER BY origin",
                &[&remote_mesh],
            )
            .await?;
        rows.iter().map(witness_row).collect()
    }

    /// Records a discrepancy; `None` when the same evidence of the same type is known.
    pub async fn insert_discrepancy(
        &self,
        remote_mesh: &str,
        discrepancy_type: &str,
        origin: &str,
        tree_size: u64,
        evidence: &serde_json::Value,
    ) -> Result<Option<i64>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                "INSERT INTO federation_discrepancies \
                 (remote_mesh, discrepancy_type, origin, tree_size, evidence) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
                &[
                    &remote_mesh,
                    &discrepancy_type,
                    &origin,
                    &to_i64(tree_size),
                    &evidence,
                ],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Every discrepancy recorded, oldest first.
    pub async fn discrepancies(&self) -> Result<Vec<Discrepancy>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT id, remote_mesh, discrepancy_type, origin, tree_size, evidence, \
                 detected_at, acknowledged_at, acknowledged_by FROM federation_discrepancies \
                 ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Discrepancy {
                id: r.get(0),
                remote_mesh: r.get(1),
                discrepancy_type: r.get(2),
                origin: r.get(3),
                tree_size: to_u64(r.get(4)),
                evidence: r.get(5),
                detected_at: r.get(6),
                acknowledged_at: r.get(7),
                acknowledged_by: r.get(8),
            })
            .collect())
    }

    /// Acknowledges the discrepancies `ids` (each must exist and be open) by admin key `by`,
    /// all or none; returns the ids acknowledged.
    pub async fn acknowledge_discrepancies(
        &self,
        ids: &[i64],
        by: &str,
    ) -> Result<Result<Vec<i64>, i64>, StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let mut done = Vec::with_capacity(ids.len());
        for id in ids {
            let n = tx
                .execute(
                    "UPDATE federation_discrepancies SET acknowledged_at = now(), \
                     acknowledged_by = $2 WHERE id = $1 AND acknowledged_at IS NULL",
                    &[id, &by],
                )
                .await?;
            if n != 1 {
                return Ok(Err(*id));
            }
            done.push(*id);
        }
        tx.commit().await?;
        Ok(Ok(done))
    }
}
