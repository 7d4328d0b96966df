//! Psi rows (SPEC §13): the phase, the critical conditions it was derived from, and the
//! transmutations admins open and close. Only the guardian's role writes them.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The stored phase.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PsiState {
    /// `nigredo`, `albedo`, `citrinitas` or `rubedo`.
    pub phase: String,
    /// When the phase began.
    pub since: DateTime<Utc>,
    /// Why it is in that phase.
    pub reason: String,
}

/// A critical condition psi has seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PsiCondition {
    /// Stable key (`divergence:<id>`, `node_down:<node>`, …).
    pub key: String,
    /// `divergence`, `federation_discrepancy`, `emergency`, `anchor_failing`, `node_down`.
    pub kind: String,
    /// What it is about.
    pub detail: String,
    /// First seen.
    pub opened_at: DateTime<Utc>,
    /// When it was seen acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it cleared.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A transmutation (a remediation opened by an admin).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Transmutation {
    /// Its id.
    pub id: i64,
    /// What the remediation is.
    pub description: String,
    /// Admin key that opened it.
    pub opened_by: String,
    /// When.
    pub opened_at: DateTime<Utc>,
    /// `in_progress`, `completed` or `abandoned`.
    pub status: String,
    /// Admin key that closed it.
    pub closed_by: Option<String>,
    /// When.
    pub closed_at: Option<DateTime<Utc>>,
    /// The closing note.
    pub note: Option<String>,
}

fn condition_row(r: &tokio_postgres::Row) -> Result<PsiCondition, StoreError> {
    Ok(PsiCondition {
        key: r.try_get(0)?,
        kind: r.try_get(1)?,
        detail: r.try_get(2)?,
        opened_at: r.try_get(3)?,
        acknowledged_at: r.try_get(4)?,
        resolved_at: r.try_get(5)?,
    })
}

fn transmutation_row(r: &tokio_postgres::Row) -> Result<Transmutation, StoreError> {
    Ok(Transmutation {
        id: r.try_get(0)?,
        description: r.try_get(1)?,
        opened_by: r.try_get(2)?,
        opened_at: r.try_get(3)?,
        status: r.try_get(4)?,
        closed_by: r.try_get(5)?,
        closed_at: r.try_get(6)?,
        note: r.try_get(7)?,
    })
}

const TRANSMUTATION_COLUMNS: &str =
    "id, description, opened_by, opened_at, status, closed_by, closed_at, note";

impl Store {
    /// The stored phase, if psi ever ran.
    pub async fn psi_state(&self) -> Result<Option<PsiState>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt("SELECT phase, since, reason FROM psi_state", &[])
            .await?;
        row.map(|r| {
            Ok(PsiState {
                phase: r.try_get(0)?,
                since: r.try_get(1)?,
                reason: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Moves the phase (`since` = now) and returns the stored state.
    pub async fn set_psi_state(&self, phase: &str, reason: &str) -> Result<PsiState, StoreError> {
        let client = self.pool().get().await?;
        let r = client
            .query_one(
                "INSERT INTO psi_state (phase, since, reason) VALUES ($1, now(), $2) \
                 ON CONFLICT (singleton) DO UPDATE SET phase = EXCLUDED.phase, \
                 since = EXCLUDED.since, reason = EXCLUDED.reason, updated_at = now() \
                 RETURNING phase, since, reason",
                &[&phase, &reason],
            )
            .await?;
        Ok(PsiState {
            phase: r.try_get(0)?,
            since: r.try_get(1)?,
            reason: r.try_get(2)?,
        })
    }

    /// Every condition not resolved yet, oldest first.
    pub async fn open_psi_conditions(&self) -> Result<Vec<PsiCondition>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT key, kind, detail, opened_at, acknowledged_at, resolved_at \
                 FROM psi_conditions WHERE resolved_at IS NULL ORDER BY opened_at, key",
                &[],
            )
            .await?;
        rows.iter().map(condition_row).collect()
    }

    /// Records conditions seen for the first time (`(key, kind, detail)`); known keys are
    /// left as they are (a resolved condition is never reopened).
    pub async fn record_psi_conditions(
        &self,
        seen: &[(String, String, String)],
    ) -> Result<u64, StoreError> {
        if seen.is_empty() {
            return Ok(0);
        }
        let keys: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        let kinds: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
        let details: Vec<&str> = seen.iter().map(|s| s.2.as_str()).collect();
        let client = self.pool().get().await?;
        Ok(client
            .execute(
                "INSERT INTO psi_conditions (key, kind, detail) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) \
                 ON CONFLICT (key) DO NOTHING",
                &[&keys, &kinds, &details],
            )
            .await?)
    }

    /// Marks the open conditions named acknowledged now (those not yet acknowledged).
    pub async fn acknowledge_psi_conditions(&self, keys: &[String]) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let client = self.pool().get().await?;
        Ok(client
            .execute(
                "UPDATE psi_conditions SET acknowledged_at = now() WHERE key = ANY($1) \
                 AND acknowledged_at IS NULL AND resolved_at IS NULL",
                &[&keys],
            )
            .await?)
    }

    /// Marks the open conditions named resolved now.
    pub async fn resolve_psi_conditions(&self, keys: &[String]) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let client = self.pool().get().await?;
        Ok(client
            .execute(
                "UPDATE psi_conditions SET resolved_at = now() WHERE key = ANY($1) \
                 AND resolved_at IS NULL",
                &[&keys],
            )
            .await?)
    }

    /// The database's clock now.
    pub async fn db_now(&self) -> Result<DateTime<Utc>, StoreError> {
        let client = self.pool().get().await?;
        Ok(client.query_one("SELECT now()", &[]).await?.try_get(0)?)
    }

    /// A fresh transmutation id (taken before its receipt is written, so the receipt names it).
    pub async fn next_transmutation_id(&self) -> Result<i64, StoreError> {
        let client = self.pool().get().await?;
        Ok(client
            .query_one("SELECT nextval('psi_transmutations_id_seq')", &[])
            .await?
            .try_get(0)?)
    }

    /// Opens transmutation `id`; `None` if one is already in progress.
    pub async fn open_transmutation(
        &self,
        id: i64,
        description: &str,
        by: &str,
    ) -> Result<Option<Transmutation>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                &format!(
                    "INSERT INTO psi_transmutations (id, description, opened_by) VALUES ($1, $2, $3) \
                     ON CONFLICT ((true)) WHERE status = 'in_progress' DO NOTHING \
                     RETURNING {TRANSMUTATION_COLUMNS}"
                ),
                &[&id, &description, &by],
            )
            .await?;
        row.as_ref().map(transmutation_row).transpose()
    }

    /// Closes transmutation `id` as `status` (`completed` or `abandoned`) if it is in
    /// progress; `None` otherwise.
    pub async fn close_transmutation(
        &self,
        id: i64,
        status: &str,
        by: &str,
        note: Option<&str>,
    ) -> Result<Option<Transmutation>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE psi_transmutations SET status = $2, closed_by = $3, \
                     closed_at = now(), note = $4 WHERE id = $1 AND status = 'in_progress' \
                     RETURNING {TRANSMUTATION_COLUMNS}"
                ),
                &[&id, &status, &by, &note],
            )
            .await?;
        row.as_ref().map(transmutation_row).transpose()
    }

    /// One transmutation by id.
    pub async fn transmutation(&self, id: i64) -> Result<Option<Transmutation>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {TRANSMUTATION_COLUMNS} FROM psi_transmutations WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(transmutation_row).transpose()
    }

    /// The newest `limit` transmutations, newest first.
    pub async fn transmutations(&self, limit: i64) -> Result<Vec<Transmutation>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {TRANSMUTATION_COLUMNS} FROM psi_transmutations \
                     ORDER BY id DESC LIMIT $1"
                ),
                &[&limit],
            )
            .await?;
        rows.iter().map(transmutation_row).collect()
    }
}
