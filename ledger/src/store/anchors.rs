//! ProofChain anchor records, their signed heads and sink results as stored: append-only,
//! one record per epoch. The record text never changes; its head lives in `anchor_heads`.

use super::{to_i64, Store, StoreError};
use crate::hash::from_hex;
use crate::proofchain::AnchorRecord;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// What one sink returned for one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkResult {
    /// Sink name (`journal`, `rfc3161`, …).
    pub sink: String,
    /// Whether the sink accepted the record.
    pub ok: bool,
    /// The sink's answer (receipt, token, or error reason).
    pub result: Value,
}

/// An anchor record with its signed head and sink results.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnchor {
    /// The record; `signature` filled from its head row (if any), `sinks` from the sink rows.
    pub record: AnchorRecord,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Stores an epoch's record (its JCS form without `sinks` and `signature`; sink answers
    /// live in their own rows) and, in the same transaction, its signed head when the record
    /// carries one, so a signed epoch is never visible without its head. Fails if the epoch
    /// exists, so two guardians cannot both anchor it.
    pub(crate) async fn insert_anchor(&self, record: &AnchorRecord) -> Result<(), StoreError> {
        let bad = |f: &str| StoreError::Integrity(format!("anchor {}: bad {f}", record.epoch));
        let anchor_hash = from_hex(&record.anchor_hash).map_err(|_| bad("anchor_hash"))?;
        let prev = from_hex(&record.prev_anchor_hash).map_err(|_| bad("prev_anchor_hash"))?;
        let root = from_hex(&record.epoch_root).map_err(|_| bad("epoch_root"))?;
        let at = DateTime::parse_from_rfc3339(&record.anchored_at)
            .map_err(|_| bad("anchored_at"))?
            .with_timezone(&Utc);
        let text = record.stored_text().map_err(|_| bad("record"))?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO anchors (epoch, record, anchor_hash, prev_anchor_hash, epoch_root, anchored_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&to_i64(record.epoch), &text, &&anchor_hash[..], &&prev[..], &&root[..], &at],
        )
        .await?;
        if let Some(note) = &record.signature {
            tx.execute(
                "INSERT INTO anchor_heads (epoch, note) VALUES ($1, $2)",
                &[&to_i64(record.epoch), note],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores the signed heads of epochs stored without one (epochs anchored before heads
    /// existed), all or none, in one transaction. Fails if an epoch has a head already or
    /// does not exist.
    pub(crate) async fn insert_anchor_heads(
        &self,
        heads: &[(u64, String)],
    ) -> Result<(), StoreError> {
        if heads.is_empty() {
            return Ok(());
        }
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        for (epoch, note) in heads {
            tx.execute(
                "INSERT INTO anchor_heads (epoch, note) VALUES ($1, $2)",
                &[&to_i64(*epoch), note],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Epochs, in order, stored without a signed head: what a guardian signs (after checking
    /// them) when it becomes leader.
    pub(crate) async fn epochs_without_head(&self) -> Result<Vec<u64>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT a.epoch FROM anchors a \
                 WHERE NOT EXISTS (SELECT 1 FROM anchor_heads h WHERE h.epoch = a.epoch) \
                 ORDER BY a.epoch",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| super::to_u64(r.get(0))).collect())
    }

    /// Records what a sink returned for an epoch.
    pub(crate) async fn insert_sink_result(
        &self,
        epoch: u64,
        result: &SinkResult,
    ) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        client
            .execute(
                "INSERT INTO anchor_sinks (epoch, sink, ok, result) VALUES ($1, $2, $3, $4)",
                &[&to_i64(epoch), &result.sink, &result.ok, &result.result],
            )
            .await?;
        Ok(())
    }

    /// Epochs, in order, that `sink` has not yet accepted (no successful result row): what a
    /// sink must catch up on, so a failed epoch is retried rather than lost.
    pub(crate) async fn epochs_pending_for_sink(&self, sink: &str) -> Result<Vec<u64>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT a.epoch FROM anchors a WHERE NOT EXISTS ( \
                   SELECT 1 FROM anchor_sinks k WHERE k.epoch = a.epoch AND k.sink = $1 AND k.ok) \
                 ORDER BY a.epoch",
                &[&sink],
            )
            .await?;
        Ok(rows.iter().map(|r| super::to_u64(r.get(0))).collect())
    }

    /// The record of one epoch, with its signed head and sink results.
    pub(crate) async fn anchor(&self, epoch: u64) -> Result<Option<StoredAnchor>, StoreError> {
        Ok(self
            .anchors_between(epoch, epoch, 1)
            .await?
            .into_iter()
            .next())
    }

    /// The newest record, if any.
    pub(crate) async fn latest_anchor(&self) -> Result<Option<StoredAnchor>, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_opt("SELECT max(epoch) FROM anchors", &[])
            .await?;
        let Some(Some(epoch)) = row.map(|r| r.get::<_, Option<i64>>(0)) else {
            return Ok(None);
        };
        drop(client);
        self.anchor(super::to_u64(epoch)).await
    }

    /// Up to `limit` records from epoch `from` on, in order, with signed heads and sink
    /// results.
    pub(crate) async fn anchors(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<StoredAnchor>, StoreError> {
        self.anchors_between(from, u64::MAX, limit).await
    }

    async fn anchors_between(
        &self,
        from: u64,
        to: u64,
        limit: u32,
    ) -> Result<Vec<StoredAnchor>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT a.epoch, a.record, a.created_at, \
                   COALESCE((SELECT jsonb_agg(jsonb_build_object('sink', k.sink, 'ok', k.ok, 'result', k.result) \
                                              ORDER BY k.id) \
                             FROM anchor_sinks k WHERE k.epoch = a.epoch), '[]'::jsonb), \
                   h.note \
                 FROM anchors a LEFT JOIN anchor_heads h ON h.epoch = a.epoch \
                 WHERE a.epoch >= $1 AND a.epoch <= $3 ORDER BY a.epoch LIMIT $2",
                &[&to_i64(from), &i64::from(limit), &to_i64(to)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let epoch: i64 = r.get(0);
            let text: String = r.get(1);
            let mut record: AnchorRecord = serde_json::from_str(&text).map_err(|e| {
                StoreError::Integrity(format!("anchor {epoch}: stored record does not parse: {e}"))
            })?;
            if let Value::Array(sinks) = r.get::<_, Value>(3) {
                record.sinks = sinks;
            }
            record.signature = r.get(4);
            out.push(StoredAnchor {
                record,
                created_at: r.get(2),
            });
        }
        Ok(out)
    }
}
