//! Scrolls: the named append-only logs, their sizes and their creation.

use super::{to_u64, Store, StoreError};
use crate::receipt::validate_scroll_name;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A scroll with its current sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScrollInfo {
    /// Database id.
    #[serde(skip)]
    pub id: i32,
    /// Scroll name.
    pub name: String,
    /// Receipts written (next seq).
    pub size: u64,
    /// Receipts integrated into the stored tree.
    pub tree_size: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl ScrollInfo {
    /// This scroll as storage operations name it.
    pub fn scroll_ref(&self) -> crate::storage::ScrollRef<'_> {
        crate::storage::ScrollRef {
            name: &self.name,
            id: self.id,
        }
    }
}

impl Store {
    /// All scrolls, by name.
    pub async fn list_scrolls(&self) -> Result<Vec<ScrollInfo>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT s.id, s.name, s.next_seq, t.size, s.created_at \
                 FROM scrolls s JOIN trees t ON t.scroll_id = s.id ORDER BY s.name",
                &[],
            )
            .await?;
        Ok(rows.iter().map(scroll_row).collect())
    }

    /// The scrolls among `names` that exist, by name, in one query (missing names are simply
    /// absent from the answer).
    pub async fn scrolls_named(&self, names: &[String]) -> Result<Vec<ScrollInfo>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT s.id, s.name, s.next_seq, t.size, s.created_at \
                 FROM scrolls s JOIN trees t ON t.scroll_id = s.id WHERE s.name = ANY($1) \
                 ORDER BY s.name",
                &[&names],
            )
            .await?;
        Ok(rows.iter().map(scroll_row).collect())
    }

    /// One scroll by name.
    pub async fn scroll(&self, name: &str) -> Result<ScrollInfo, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                "SELECT s.id, s.name, s.next_seq, t.size, s.created_at \
                 FROM scrolls s JOIN trees t ON t.scroll_id = s.id WHERE s.name = $1",
                &[&name],
            )
            .await?
            .ok_or_else(|| StoreError::UnknownScroll(name.to_string()))?;
        Ok(scroll_row(&row))
    }

    /// Creates a scroll (name validated first).
    pub async fn create_scroll(&self, name: &str) -> Result<ScrollInfo, StoreError> {
        validate_scroll_name(name).map_err(|_| StoreError::UnknownScroll(name.to_string()))?;
        let client = self.pool().get().await?;
        let inserted = client
            .query_opt(
                "INSERT INTO scrolls (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id",
                &[&name],
            )
            .await?;
        if inserted.is_none() {
            return Err(StoreError::ScrollExists(name.to_string()));
        }
        drop(client);
        self.scroll(name).await
    }
}

fn scroll_row(row: &tokio_postgres::Row) -> ScrollInfo {
    ScrollInfo {
        id: row.get(0),
        name: row.get(1),
        size: to_u64(row.get(2)),
        tree_size: to_u64(row.get(3)),
        created_at: row.get(4),
    }
}
