//! Rows written behind the services' backs, as an insider with database credentials would:
//! receipts inserted by SQL (as the schema owner or a service role), with any bytes, hash,
//! submitter and — for the owner — recorded database role.
#![allow(dead_code)] // each test binary uses its own subset

use deadpool_postgres::tokio_postgres::types::ToSql;
use deadpool_postgres::tokio_postgres::Client;
use ledger::receipt::ReceiptDraft;
use ledger::testing::TestDb;
use serde_json::Value;

/// The canonical leaf bytes of a receipt at `scroll`/`seq`.
pub fn leaf(scroll: &str, seq: u64, kind: &str, payload: Value, submitter: &str) -> Vec<u8> {
    ReceiptDraft::new(kind, payload)
        .unwrap_or_else(|e| panic!("{e}"))
        .leaf_at(scroll, seq, "2026-01-01T00:00:00.000000Z", submitter)
}

/// The next free seq of `scroll`.
pub async fn next_seq(db: &TestDb, scroll: &str) -> u64 {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let row = c
        .query_one("SELECT next_seq FROM scrolls WHERE name = $1", &[&scroll])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    u64::try_from(row.get::<_, i64>(0)).unwrap_or_default()
}

/// One receipt row to insert by SQL.
pub struct Row<'a> {
    /// Scroll name.
    pub scroll: &'a str,
    /// Position.
    pub seq: u64,
    /// Stored bytes.
    pub leaf: Vec<u8>,
    /// Stored `leaf_hash` (need not match the bytes).
    pub leaf_hash: Vec<u8>,
    /// `type` column.
    pub kind: &'a str,
    /// `submitter` column.
    pub submitter: &'a str,
}

impl<'a> Row<'a> {
    /// A well-formed row: canonical bytes at `scroll`/`seq` and their true hash.
    pub fn honest(
        scroll: &'a str,
        seq: u64,
        kind: &'a str,
        payload: Value,
        submitter: &'a str,
    ) -> Self {
        let leaf = leaf(scroll, seq, kind, payload, submitter);
        let leaf_hash = ledger::receipt::leaf_hash(&leaf).to_vec();
        Self {
            scroll,
            seq,
            leaf,
            leaf_hash,
            kind,
            submitter,
        }
    }
}

/// Inserts `row` through `client` (whatever role it is connected as) and moves the scroll's
/// head past it; `db_role`, when given, is written into the column explicitly (only the
/// schema owner may).
pub async fn insert(client: &Client, row: &Row<'_>, db_role: Option<&str>) {
    let seq = i64::try_from(row.seq).unwrap_or(i64::MAX);
    let next = seq + 1;
    let columns: [&(dyn ToSql + Sync); 6] = [
        &row.scroll,
        &seq,
        &row.leaf,
        &row.leaf_hash,
        &row.kind,
        &row.submitter,
    ];
    let inserted =
        match db_role {
            Some(role) => {
                let mut with_role = columns.to_vec();
                with_role.push(&role);
                client
                .execute(
                    "INSERT INTO receipts (scroll_id, seq, leaf, leaf_hash, type, submitted_at, \
                     submitter, db_role) VALUES ((SELECT id FROM scrolls WHERE name = $1), $2, \
                     $3, $4, $5, now(), $6, $7)",
                    &with_role,
                )
                .await
            }
            None => client
                .execute(
                    "INSERT INTO receipts (scroll_id, seq, leaf, leaf_hash, type, submitted_at, \
                     submitter) VALUES ((SELECT id FROM scrolls WHERE name = $1), $2, $3, $4, \
                     $5, now(), $6)",
                    &columns,
                )
                .await,
        };
    inserted.unwrap_or_else(|e| panic!("insert {}/{}: {e}", row.scroll, row.seq));
    client
        .execute(
            "UPDATE scrolls SET next_seq = GREATEST(next_seq, $2) WHERE name = $1",
            &[&row.scroll, &next],
        )
        .await
        .unwrap_or_else(|e| panic!("move the head of {}: {e}", row.scroll));
}
