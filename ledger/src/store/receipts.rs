//! Receipts: gap-free batched appends with idempotency keys, and integrity-checked reads.
//!
//! Rows are written with `COPY … FROM STDIN BINARY` (the cheapest bulk path). An append
//! locks the scroll's head row (`scrolls.next_seq`) for the length of one
//! transaction, so concurrent writers — in one process or many — get consecutive,
//! gap-free positions, and a failed transaction gives its positions back.

use super::{to_hash, to_i64, to_u64, Store, StoreError};
use crate::gate::Admitted;
use crate::hash::Hash;
use crate::receipt::{format_timestamp, leaf_hash, truncate_micros, Receipt, ReceiptDraft};
use chrono::Utc;
use std::collections::HashMap;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// One receipt to append.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    /// Validated type and payload.
    pub draft: ReceiptDraft,
    /// Id of the API key writing it.
    pub submitter: String,
    /// Client's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Hash of the request body, compared on idempotent replays.
    pub request_hash: Option<Hash>,
}

/// A receipt as stored: the parsed receipt, its exact leaf bytes, and its leaf hash.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// Exact leaf bytes (canonical JSON).
    pub leaf: Vec<u8>,
    /// `H(0x00‖leaf)`.
    pub leaf_hash: Hash,
}

/// What happened to one item of an append.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    /// Newly written.
    Created(StoredReceipt),
    /// The idempotency key was seen with the same request: the original receipt.
    Replayed(StoredReceipt),
    /// The idempotency key was seen with a different request; nothing written for it.
    Conflict(String),
}

const SELECT_COLUMNS: &str = "s.name, r.seq, r.leaf, r.leaf_hash";

/// Column types of the `COPY receipts … FROM STDIN BINARY` in an append.
const COPY_TYPES: [Type; 9] = [
    Type::INT4,
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
];

/// Per-row values of a new receipt that are not in its [`StoredReceipt`].
struct Row {
    seq: i64,
    idempotency_key: Option<String>,
    request_hash: Option<Vec<u8>>,
    index: usize,
}

impl Store {
    /// Appends a batch the append gate admitted, in one transaction. With `all_or_nothing`,
    /// any idempotency conflict aborts the whole batch with
    /// [`StoreError::IdempotencyConflict`]; otherwise the conflicting items are reported and the
    /// rest are written. Idempotency keys are scoped to (scroll, submitter).
    pub(crate) async fn append_receipts(
        &self,
        batch: Admitted,
        all_or_nothing: bool,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let (scroll, items) = batch.into_parts();
        let scroll = scroll.as_str();
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        if self.durability() == super::Durability::Replicated {
            let named: bool = tx
                .query_one(super::durability::SYNC_STANDBY_NAMED, &[])
                .await?
                .get(0);
            if !named {
                return Err(StoreError::NoSynchronousStandby);
            }
        }
        let keyless = items.iter().all(|i| i.idempotency_key.is_none());
        // Without idempotency keys every item is written, so the head row can be locked and
        // the positions allocated in one statement; otherwise lock, look the keys up, and
        // advance the head after the insert.
        let head = if keyless {
            let stmt = tx
                .prepare_cached(
                    "UPDATE scrolls SET next_seq = next_seq + $2 WHERE name = $1 \
                     RETURNING id, next_seq - $2",
                )
                .await?;
            tx.query_opt(&stmt, &[&scroll, &to_i64(items.len() as u64)])
                .await?
        } else {
            let stmt = tx
                .prepare_cached("SELECT id, next_seq FROM scrolls WHERE name = $1 FOR UPDATE")
                .await?;
            tx.query_opt(&stmt, &[&scroll]).await?
        };
        let head = head.ok_or_else(|| StoreError::UnknownScroll(scroll.to_string()))?;
        let scroll_id: i32 = head.get(0);
        let mut next_seq = to_u64(head.get(1));

        let (submitters, keys): (Vec<&str>, Vec<&str>) = items
            .iter()
            .filter_map(|i| Some((i.submitter.as_str(), i.idempotency_key.as_deref()?)))
            .unzip();
        type Seen = HashMap<(String, String), (Option<Vec<u8>>, StoredReceipt)>;
        let mut seen: Seen = HashMap::new();
        if !keys.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "SELECT r.submitter, r.idempotency_key, r.request_hash, s.name, r.seq, r.leaf, \
                     r.leaf_hash FROM receipts r JOIN scrolls s ON s.id = r.scroll_id \
                     JOIN UNNEST($2::text[], $3::text[]) AS k(submitter, key) \
                       ON r.submitter = k.submitter AND r.idempotency_key = k.key \
                     WHERE r.scroll_id = $1",
                )
                .await?;
            let rows = tx.query(&stmt, &[&scroll_id, &submitters, &keys]).await?;
            for row in rows {
                let who: String = row.get(0);
                let key: String = row.get(1);
                let req: Option<Vec<u8>> = row.get(2);
                let stored = stored_from_parts(row.get(3), row.get(4), row.get(5), row.get(6))?;
                seen.insert((who, key), (req, stored));
            }
        }

        let at = truncate_micros(Utc::now());
        let stamp = format_timestamp(at);
        let mut outcomes = Vec::with_capacity(items.len());
        let mut rows: Vec<Row> = Vec::with_capacity(items.len());
        for item in items {
            if let Some(key) = &item.idempotency_key {
                if let Some((req, original)) = seen.get(&(item.submitter.clone(), key.clone())) {
                    let same = req.as_deref() == item.request_hash.as_ref().map(|h| &h[..]);
                    if same {
                        outcomes.push(AppendOutcome::Replayed(original.clone()));
                        continue;
                    }
                    if all_or_nothing {
                        return Err(StoreError::IdempotencyConflict(key.clone()));
                    }
                    outcomes.push(AppendOutcome::Conflict(key.clone()));
                    continue;
                }
            }
            let leaf = item
                .draft
                .leaf_at(scroll, next_seq, &stamp, &item.submitter);
            let lh = leaf_hash(&leaf);
            let receipt = Receipt::new(scroll, next_seq, item.draft, at, &item.submitter);
            let stored = StoredReceipt {
                receipt,
                leaf,
                leaf_hash: lh,
            };
            let request_hash = item.request_hash.map(|h| h.to_vec());
            if let Some(key) = &item.idempotency_key {
                seen.insert(
                    (item.submitter.clone(), key.clone()),
                    (request_hash.clone(), stored.clone()),
                );
            }
            rows.push(Row {
                seq: to_i64(next_seq),
                idempotency_key: item.idempotency_key,
                request_hash,
                index: outcomes.len(),
            });
            outcomes.push(AppendOutcome::Created(stored));
            next_seq += 1;
        }

        if !rows.is_empty() {
            let copy = tx
                .prepare_cached(
                    "COPY receipts (scroll_id, seq, leaf, leaf_hash, type, submitted_at, submitter, \
                     idempotency_key, request_hash) FROM STDIN BINARY",
                )
                .await?;
            let sink = tx.copy_in(&copy).await?;
            let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
            tokio::pin!(writer);
            for row in &rows {
                let AppendOutcome::Created(stored) = &outcomes[row.index] else {
                    continue;
                };
                let hash: &[u8] = &stored.leaf_hash;
                let values: [&(dyn ToSql + Sync); 9] = [
                    &scroll_id,
                    &row.seq,
                    &stored.leaf,
                    &hash,
                    &stored.receipt.kind,
                    &at,
                    &stored.receipt.submitter,
                    &row.idempotency_key,
                    &row.request_hash,
                ];
                writer.as_mut().write(&values).await?;
            }
            writer.finish().await?;
        }
        if !keyless && !rows.is_empty() {
            let stmt = tx
                .prepare_cached("UPDATE scrolls SET next_seq = $2 WHERE id = $1")
                .await?;
            tx.execute(&stmt, &[&scroll_id, &to_i64(next_seq)]).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Appends a keyless admitted batch at positions `expected..`, in one statement and one
    /// round trip (an implicit transaction), provided the scroll's head is exactly at
    /// `expected` when the statement takes the head-row lock (and, under `replicated`
    /// durability, the primary names a synchronous standby). Otherwise nothing is written
    /// and the items come back (`Err(items)`), for the caller to retry with
    /// [`Store::append_receipts`]. Several of these may be in flight for one scroll with
    /// consecutive expectations: each waits for the previous one's lock and then matches.
    pub(crate) async fn append_at(
        &self,
        expected: u64,
        batch: Admitted,
    ) -> Result<Result<Vec<AppendOutcome>, Admitted>, StoreError> {
        if batch.is_empty() || batch.items().iter().any(|i| i.idempotency_key.is_some()) {
            return Ok(Err(batch));
        }
        let (scroll, items) = batch.into_parts();
        let scroll = scroll.as_str();
        let at = truncate_micros(Utc::now());
        let stamp = format_timestamp(at);
        let mut leaves = Vec::with_capacity(items.len());
        let mut hashes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let leaf = item
                .draft
                .leaf_at(scroll, expected + i as u64, &stamp, &item.submitter);
            hashes.push(leaf_hash(&leaf));
            leaves.push(leaf);
        }
        let hash_refs: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        let kinds: Vec<&str> = items.iter().map(|i| i.draft.kind.as_str()).collect();
        let submitters: Vec<&str> = items.iter().map(|i| i.submitter.as_str()).collect();
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_cached(
                "WITH locked AS (SELECT id, next_seq FROM scrolls WHERE name = $1 \
                   AND (NOT $9 OR current_setting('synchronous_standby_names') <> '') FOR UPDATE), \
                 head AS (UPDATE scrolls s SET next_seq = locked.next_seq + $3 FROM locked \
                   WHERE s.id = locked.id AND locked.next_seq = $2 RETURNING s.id) \
                 INSERT INTO receipts (scroll_id, seq, leaf, leaf_hash, type, submitted_at, submitter) \
                 SELECT head.id, $2 + t.n - 1, t.leaf, t.leaf_hash, t.type, $4, t.submitter \
                 FROM head, unnest($5::bytea[], $6::bytea[], $7::text[], $8::text[]) \
                   WITH ORDINALITY AS t(leaf, leaf_hash, type, submitter, n)",
            )
            .await?;
        let written = client
            .execute(
                &stmt,
                &[
                    &scroll,
                    &to_i64(expected),
                    &to_i64(items.len() as u64),
                    &at,
                    &leaves,
                    &hash_refs,
                    &kinds,
                    &submitters,
                    &(self.durability() == super::Durability::Replicated),
                ],
            )
            .await?;
        if written == 0 {
            return Ok(Err(Admitted::from_parts(scroll.to_string(), items)));
        }
        if written != items.len() as u64 {
            return Err(StoreError::Integrity(format!(
                "{scroll}: append at {expected} wrote {written} of {} rows",
                items.len()
            )));
        }
        Ok(Ok(items
            .into_iter()
            .zip(leaves.into_iter().zip(hashes))
            .enumerate()
            .map(|(i, (item, (leaf, lh)))| {
                AppendOutcome::Created(StoredReceipt {
                    receipt: Receipt::new(
                        scroll,
                        expected + i as u64,
                        item.draft,
                        at,
                        &item.submitter,
                    ),
                    leaf,
                    leaf_hash: lh,
                })
            })
            .collect()))
    }

    /// The receipt at `seq` in `scroll`, integrity-checked.
    pub(crate) async fn receipt(
        &self,
        scroll: &str,
        seq: u64,
    ) -> Result<Option<StoredReceipt>, StoreError> {
        let found = self
            .select_receipts("s.name = $1 AND r.seq = $2", &[&scroll, &to_i64(seq)])
            .await?;
        Ok(found.into_iter().next())
    }

    /// The receipt with this leaf hash, integrity-checked.
    pub(crate) async fn receipt_by_leaf_hash(
        &self,
        hash: &Hash,
    ) -> Result<Option<StoredReceipt>, StoreError> {
        let found = self
            .select_receipts("r.leaf_hash = $1 LIMIT 1", &[&&hash[..]])
            .await?;
        Ok(found.into_iter().next())
    }

    /// Every receipt of type `kind` in `scroll`, in order, integrity-checked.
    pub async fn receipts_of_type(
        &self,
        scroll: &str,
        kind: &str,
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        self.select_receipts(
            "s.name = $1 AND r.type = $2 ORDER BY r.seq",
            &[&scroll, &kind],
        )
        .await
    }

    /// Up to `limit` receipts of `scroll` from `from` on, in order, integrity-checked.
    pub(crate) async fn list_receipts(
        &self,
        scroll: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        self.select_receipts(
            "s.name = $1 AND r.seq >= $2 ORDER BY r.seq LIMIT $3",
            &[&scroll, &to_i64(from), &i64::from(limit)],
        )
        .await
    }

    /// The receipts matching `condition` (over `r`, receipts, and `s`, scrolls), each rebuilt
    /// and integrity-checked.
    async fn select_receipts(
        &self,
        condition: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {SELECT_COLUMNS} FROM receipts r JOIN scrolls s ON s.id = r.scroll_id \
                     WHERE {condition}"
                ),
                params,
            )
            .await?;
        rows.iter()
            .map(|r| stored_from_parts(r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }
}

/// Rebuilds a stored receipt and checks that its bytes, hash and position agree.
fn stored_from_parts(
    scroll: String,
    seq: i64,
    leaf: Vec<u8>,
    stored_hash: Vec<u8>,
) -> Result<StoredReceipt, StoreError> {
    let seq = to_u64(seq);
    let where_ = || format!("{scroll}/{seq}");
    let stored_hash = to_hash(&stored_hash, "leaf_hash")?;
    if leaf_hash(&leaf) != stored_hash {
        return Err(StoreError::Integrity(format!(
            "{}: stored leaf hash does not match the stored bytes",
            where_()
        )));
    }
    let receipt = Receipt::from_leaf(&leaf)
        .map_err(|e| StoreError::Integrity(format!("{}: leaf is not a receipt: {e}", where_())))?;
    if receipt.scroll != scroll || receipt.seq != seq {
        return Err(StoreError::Integrity(format!(
            "{}: leaf names position {}/{}",
            where_(),
            receipt.scroll,
            receipt.seq
        )));
    }
    Ok(StoredReceipt {
        receipt,
        leaf,
        leaf_hash: stored_hash,
    })
}
