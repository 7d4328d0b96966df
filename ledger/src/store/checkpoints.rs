//! Signed checkpoints as stored: append-only, one per (scroll, size).

use super::{to_hash, to_i64, to_u64, Store, StoreError};
use crate::hash::Hash;
use chrono::{DateTime, Utc};

/// A checkpoint row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredCheckpoint {
    /// Scroll name.
    pub scroll: String,
    /// Tree size.
    pub tree_size: u64,
    /// Root hash.
    pub root: Hash,
    /// Signed note text.
    pub note: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

pub(crate) const COLUMNS: &str = "s.name, c.tree_size, c.root, c.note, c.created_at";

/// A scroll that needs integrating or a new checkpoint: receipts beyond its tree, or a tree
/// beyond its latest checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingScroll {
    /// Database id.
    pub id: i32,
    /// Scroll name.
    pub name: String,
    /// Receipts written.
    pub written: u64,
    /// Receipts integrated into the stored tree.
    pub integrated: u64,
    /// Latest checkpoint's size and root, if any.
    pub checkpoint: Option<(u64, Hash)>,
}

impl Store {
    /// Stores a signed checkpoint. Idempotent for an identical note at the same size.
    pub(crate) async fn insert_checkpoint(
        &self,
        scroll_id: i32,
        tree_size: u64,
        root: &Hash,
        note: &str,
    ) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        client
            .execute(
                "INSERT INTO checkpoints (scroll_id, tree_size, root, note) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (scroll_id, tree_size) DO NOTHING",
                &[&scroll_id, &to_i64(tree_size), &&root[..], &note],
            )
            .await?;
        Ok(())
    }

    /// The largest checkpoint of a scroll.
    pub(crate) async fn latest_checkpoint(
        &self,
        scroll: &str,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM checkpoints c JOIN scrolls s ON s.id = c.scroll_id \
                     WHERE s.name = $1 ORDER BY c.tree_size DESC LIMIT 1"
                ),
                &[&scroll],
            )
            .await?;
        row.map(|r| checkpoint_row(&r)).transpose()
    }

    /// The checkpoint of a scroll at exactly `tree_size`.
    pub(crate) async fn checkpoint_at(
        &self,
        scroll: &str,
        tree_size: u64,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM checkpoints c JOIN scrolls s ON s.id = c.scroll_id \
                     WHERE s.name = $1 AND c.tree_size = $2"
                ),
                &[&scroll, &to_i64(tree_size)],
            )
            .await?;
        row.map(|r| checkpoint_row(&r)).transpose()
    }

    /// In one query, every scroll with receipts beyond its tree or a tree beyond its latest
    /// checkpoint (a scroll without a checkpoint is pending, so each gets one, empty or not).
    pub(crate) async fn pending_checkpoints(&self) -> Result<Vec<PendingScroll>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT s.id, s.name, s.next_seq, t.size, c.tree_size, c.root \
                 FROM scrolls s JOIN trees t ON t.scroll_id = s.id \
                 LEFT JOIN LATERAL (SELECT tree_size, root FROM checkpoints \
                   WHERE scroll_id = s.id ORDER BY tree_size DESC LIMIT 1) c ON true \
                 WHERE s.next_seq > t.size OR c.tree_size IS NULL OR t.size > c.tree_size \
                 ORDER BY s.name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let checkpoint = match (r.get::<_, Option<i64>>(4), r.get::<_, Option<Vec<u8>>>(5))
                {
                    (Some(size), Some(root)) => {
                        Some((to_u64(size), to_hash(&root, "checkpoint root")?))
                    }
                    _ => None,
                };
                Ok(PendingScroll {
                    id: r.get(0),
                    name: r.get(1),
                    written: to_u64(r.get(2)),
                    integrated: to_u64(r.get(3)),
                    checkpoint,
                })
            })
            .collect()
    }

    /// The latest checkpoint of every scroll that has one, by scroll name: one index probe
    /// per scroll on the `(scroll_id, tree_size)` primary key, whatever the number of
    /// checkpoints stored (the public `GET /v1/scrolls` and every anchor epoch ask for it).
    pub(crate) async fn latest_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let client = self.pool().get().await?;
        let stmt = client.prepare_cached(LATEST_CHECKPOINTS).await?;
        let rows = client.query(&stmt, &[]).await?;
        rows.iter().map(checkpoint_row).collect()
    }

    /// [`Store::latest_checkpoints`] of the scrolls named, in one query.
    pub(crate) async fn latest_checkpoints_of(
        &self,
        scrolls: &[String],
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        if scrolls.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool().get().await?;
        let stmt = client.prepare_cached(LATEST_CHECKPOINTS_OF).await?;
        let rows = client.query(&stmt, &[&scrolls]).await?;
        rows.iter().map(checkpoint_row).collect()
    }

    /// The plan Postgres chooses for [`Store::latest_checkpoints`] (`EXPLAIN`, text), for
    /// tests that hold the query to its index.
    #[cfg(feature = "testing")]
    pub async fn explain_latest_checkpoints(&self) -> Result<String, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(&format!("EXPLAIN (COSTS OFF) {LATEST_CHECKPOINTS}"), &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// Each scroll's largest checkpoint: a backward scan of the primary key, one row per scroll.
const LATEST_CHECKPOINTS: &str = "SELECT s.name, c.tree_size, c.root, c.note, c.created_at \
     FROM scrolls s CROSS JOIN LATERAL (SELECT tree_size, root, note, created_at \
       FROM checkpoints WHERE scroll_id = s.id ORDER BY tree_size DESC LIMIT 1) c \
     ORDER BY s.name";

/// [`LATEST_CHECKPOINTS`] for the scrolls named in `$1`.
const LATEST_CHECKPOINTS_OF: &str = "SELECT s.name, c.tree_size, c.root, c.note, c.created_at \
     FROM scrolls s CROSS JOIN LATERAL (SELECT tree_size, root, note, created_at \
       FROM checkpoints WHERE scroll_id = s.id ORDER BY tree_size DESC LIMIT 1) c \
     WHERE s.name = ANY($1) ORDER BY s.name";

pub(crate) fn checkpoint_row(r: &tokio_postgres::Row) -> Result<StoredCheckpoint, StoreError> {
    let root: Vec<u8> = r.get(2);
    Ok(StoredCheckpoint {
        scroll: r.get(0),
        tree_size: to_u64(r.get(1)),
        root: to_hash(&root, "checkpoint root")?,
        note: r.get(3),
        created_at: r.get(4),
    })
}
