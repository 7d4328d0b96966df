//! The stored Merkle tree of each scroll in PostgreSQL: one row per tile of node hashes
//! (`tree_tiles`, layout in `merkle::stored_tiles`) and the integrated size (`trees`).
//! Integration appends under the tree row's lock; reads fetch the tiles a computation needs,
//! with the tree size, in one query (roots and proofs are computed in `storage::proofs`).
//! A tile is at most 512 bytes, small enough to stay inline, never TOASTed.

use super::{to_i64, to_u64, Store, StoreError};
use crate::hash::Hash;
use crate::merkle::stored_tiles::{partial_tiles, plan_append, TileKey};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;

impl Store {
    /// In one query: the integrated tree size and the tiles at `wants`' keys.
    pub(crate) async fn read_tiles(
        &self,
        scroll_id: i32,
        wants: &[(TileKey, usize)],
    ) -> Result<(u64, HashMap<TileKey, Vec<u8>>), StoreError> {
        let client = self.pool().get().await?;
        let levels: Vec<i16> = wants.iter().map(|(k, _)| k.0).collect();
        let idxs: Vec<i64> = wants.iter().map(|(k, _)| k.1).collect();
        let rows = client
            .query(
                "SELECT tr.size, t.level, t.idx, t.hashes FROM trees tr \
                 LEFT JOIN LATERAL ( \
                   SELECT t.level, t.idx, t.hashes FROM tree_tiles t \
                   JOIN UNNEST($2::smallint[], $3::bigint[]) AS k(level, idx) \
                     ON t.level = k.level AND t.idx = k.idx \
                   WHERE t.scroll_id = tr.scroll_id) t ON true \
                 WHERE tr.scroll_id = $1",
                &[&scroll_id, &levels, &idxs],
            )
            .await?;
        let size = rows
            .first()
            .map(|r| to_u64(r.get(0)))
            .ok_or_else(|| StoreError::UnknownScroll(format!("id {scroll_id}")))?;
        let mut tiles = HashMap::with_capacity(rows.len());
        for r in rows {
            if let (Some(level), Some(idx), Some(hashes)) = (
                r.get::<_, Option<i16>>(1),
                r.get::<_, Option<i64>>(2),
                r.get::<_, Option<Vec<u8>>>(3),
            ) {
                tiles.insert((level, idx), hashes);
            }
        }
        Ok((size, tiles))
    }
}

/// What one integration step did.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    /// Tree size before.
    pub from: u64,
    /// Tree size after.
    pub to: u64,
    /// The first receipt refused; it and every later one stay out of the tree.
    pub rejected: Option<RejectedLeaf>,
}

/// A receipt integration refused: its stored row is not what it claims to be.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedLeaf {
    /// The position the tree needed next.
    pub seq: u64,
    /// What is wrong with the row found there (or that none was).
    pub reason: String,
}

/// The shape of a receipt's leaf, parsed without building its payload: exactly the six
/// fields of SPEC §3, the payload an object (skipped, not kept), so integration stays a
/// streaming pass at hashing speed.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafShape<'a> {
    #[serde(borrow)]
    scroll: std::borrow::Cow<'a, str>,
    seq: u64,
    #[serde(rename = "type")]
    _kind: serde::de::IgnoredAny,
    #[serde(rename = "payload")]
    _payload: SkippedObject,
    #[serde(rename = "submitted_at")]
    _submitted_at: serde::de::IgnoredAny,
    #[serde(rename = "submitter")]
    _submitter: serde::de::IgnoredAny,
}

/// A JSON object, read and discarded.
struct SkippedObject;

impl<'de> serde::Deserialize<'de> for SkippedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SkippedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SkippedObject, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(SkippedObject)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Re-derives the leaf hash of the receipt row found where `expected` was due: its seq
/// must be `expected`, `H(0x00‖leaf)` must equal the stored hash, and the bytes must be a
/// receipt (the six fields, a payload object) naming `scroll` and `expected`. Returns the
/// hash, or why the row is refused.
pub fn check_leaf(
    scroll: &str,
    expected: u64,
    seq: u64,
    leaf: &[u8],
    stored_hash: &[u8],
) -> Result<Hash, String> {
    if seq != expected {
        return Err(format!(
            "receipt {seq} found where {expected} was expected (a receipt is missing)"
        ));
    }
    let hash = crate::receipt::leaf_hash(leaf);
    if stored_hash != hash.as_slice() {
        return Err("the stored leaf hash is not H(0x00 || leaf) of the stored bytes".into());
    }
    match serde_json::from_slice::<LeafShape>(leaf) {
        Ok(r) if r.scroll == scroll && r.seq == expected => Ok(hash),
        Ok(r) => Err(format!("its bytes name position {}/{}", r.scroll, r.seq)),
        Err(e) => Err(format!("its bytes are not a receipt: {e}")),
    }
}

impl Store {
    /// Appends leaf hashes to the scroll's stored tree, which must be at `expected_size`.
    /// Returns the new size. Runs in one transaction holding the tree row lock.
    pub(crate) async fn append_tree(
        &self,
        scroll_id: i32,
        expected_size: u64,
        leaves: Vec<Hash>,
    ) -> Result<u64, StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let size = lock_tree(&tx, scroll_id).await?;
        if size != expected_size {
            return Err(StoreError::TreeSizeMismatch {
                scroll_id,
                expected: expected_size,
                actual: size,
            });
        }
        let new_size = write_leaves(&tx, scroll_id, size, leaves).await?;
        tx.commit().await?;
        Ok(new_size)
    }

    /// Integrates up to `limit` receipts beyond the tree size, in one transaction holding the
    /// tree row lock. Each receipt's leaf hash is re-derived from its stored bytes and must
    /// equal the stored `leaf_hash`, and the bytes must be a receipt naming this scroll and
    /// its own seq, in an unbroken sequence; the first receipt that fails stops the step, and
    /// only those before it enter the tree.
    pub(crate) async fn integrate_step(
        &self,
        scroll_id: i32,
        limit: u32,
    ) -> Result<Integration, StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT t.size, s.name FROM trees t JOIN scrolls s ON s.id = t.scroll_id \
                 WHERE t.scroll_id = $1 FOR UPDATE OF t",
                &[&scroll_id],
            )
            .await?
            .ok_or_else(|| StoreError::UnknownScroll(format!("id {scroll_id}")))?;
        let size = to_u64(row.get(0));
        let name: String = row.get(1);
        let rows = tx
            .query(
                "SELECT seq, leaf, leaf_hash FROM receipts WHERE scroll_id = $1 AND seq >= $2 \
                 ORDER BY seq LIMIT $3",
                &[&scroll_id, &to_i64(size), &i64::from(limit)],
            )
            .await?;
        let mut leaves = Vec::with_capacity(rows.len());
        let mut rejected = None;
        for row in &rows {
            let expected = size + leaves.len() as u64;
            let seq = to_u64(row.get(0));
            match check_leaf(&name, expected, seq, row.get(1), row.get(2)) {
                Ok(hash) => leaves.push(hash),
                Err(reason) => {
                    rejected = Some(RejectedLeaf {
                        seq: expected,
                        reason,
                    });
                    break;
                }
            }
        }
        let new_size = write_leaves(&tx, scroll_id, size, leaves).await?;
        tx.commit().await?;
        Ok(Integration {
            from: size,
            to: new_size,
            rejected,
        })
    }
}

async fn lock_tree(client: &impl GenericClient, scroll_id: i32) -> Result<u64, StoreError> {
    let row = client
        .query_opt(
            "SELECT size FROM trees WHERE scroll_id = $1 FOR UPDATE",
            &[&scroll_id],
        )
        .await?
        .ok_or_else(|| StoreError::UnknownScroll(format!("id {scroll_id}")))?;
    Ok(to_u64(row.get(0)))
}

async fn write_leaves(
    client: &impl GenericClient,
    scroll_id: i32,
    size: u64,
    leaves: Vec<Hash>,
) -> Result<u64, StoreError> {
    if leaves.is_empty() {
        return Ok(size);
    }
    let new_size = size + leaves.len() as u64;
    let partial_keys = partial_tiles(size);
    let mut partial = HashMap::new();
    if !partial_keys.is_empty() {
        let levels: Vec<i16> = partial_keys.iter().map(|k| k.0).collect();
        let idxs: Vec<i64> = partial_keys.iter().map(|k| k.1).collect();
        let rows = client
            .query(
                "SELECT t.level, t.idx, t.hashes FROM tree_tiles t \
                 JOIN UNNEST($2::smallint[], $3::bigint[]) AS k(level, idx) \
                   ON t.level = k.level AND t.idx = k.idx \
                 WHERE t.scroll_id = $1",
                &[&scroll_id, &levels, &idxs],
            )
            .await?;
        for r in rows {
            partial.insert(
                (r.get::<_, i16>(0), r.get::<_, i64>(1)),
                r.get::<_, Vec<u8>>(2),
            );
        }
    }
    let writes = plan_append(size, leaves, &partial)
        .map_err(|e| StoreError::Integrity(format!("scroll {scroll_id}: {e}")))?;
    let levels: Vec<i16> = writes.iter().map(|w| w.0 .0).collect();
    let idxs: Vec<i64> = writes.iter().map(|w| w.0 .1).collect();
    let blobs: Vec<&[u8]> = writes.iter().map(|w| w.1.as_slice()).collect();
    client
        .execute(
            "INSERT INTO tree_tiles (scroll_id, level, idx, hashes) \
             SELECT $1, * FROM UNNEST($2::smallint[], $3::bigint[], $4::bytea[]) \
             ON CONFLICT (scroll_id, level, idx) DO UPDATE SET hashes = EXCLUDED.hashes",
            &[&scroll_id, &levels, &idxs, &blobs],
        )
        .await?;
    client
        .execute(
            "UPDATE trees SET size = $2, updated_at = now() WHERE scroll_id = $1",
            &[&scroll_id, &to_i64(new_size)],
        )
        .await?;
    Ok(new_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leaf is accepted only with its own hash, its own position and a receipt's shape.
    #[test]
    fn check_leaf_refuses_what_is_not_the_receipt_it_claims_to_be() {
        let leaf = |scroll: &str, seq: u64| {
            crate::receipt::ReceiptDraft::new("t", serde_json::json!({"n": {"deep": [1, 2]}}))
                .unwrap_or_else(|e| panic!("{e}"))
                .leaf_at(scroll, seq, "2026-01-01T00:00:00.000000Z", "key_x")
        };
        let good = leaf("drills", 5);
        let hash = crate::receipt::leaf_hash(&good);
        assert_eq!(check_leaf("drills", 5, 5, &good, &hash), Ok(hash));
        let refused =
            |scroll: &str, expected: u64, seq: u64, bytes: &[u8], stored: &[u8]| match check_leaf(
                scroll, expected, seq, bytes, stored,
            ) {
                Err(why) => why,
                Ok(_) => panic!("accepted {}", String::from_utf8_lossy(bytes)),
            };
        assert!(refused("drills", 5, 6, &good, &hash).contains("found where 5"));
        assert!(refused("drills", 5, 5, &good, &[0; 32]).contains("stored leaf hash"));
        assert!(refused("drills", 5, 5, &good, &hash[..31]).contains("stored leaf hash"));
        let other = leaf("drills", 7);
        let h = crate::receipt::leaf_hash(&other);
        assert!(refused("drills", 5, 5, &other, &h).contains("name position drills/7"));
        let other = leaf("audits", 5);
        let h = crate::receipt::leaf_hash(&other);
        assert!(refused("drills", 5, 5, &other, &h).contains("name position audits/5"));
        for bytes in [
            br#"{"scroll":"drills","seq":5}"#.to_vec(),
            br#"{"payload":[],"scroll":"drills","seq":5,"submitted_at":"x","submitter":"k","type":"t"}"#.to_vec(),
            br#"{"extra":1,"payload":{},"scroll":"drills","seq":5,"submitted_at":"x","submitter":"k","type":"t"}"#.to_vec(),
            br#"{"payload":{},"scroll":"audits","scroll":"drills","seq":5,"submitted_at":"x","submitter":"k","type":"t"}"#.to_vec(),
            b"not json".to_vec(),
        ] {
            let h = crate::receipt::leaf_hash(&bytes);
            let why = refused("drills", 5, 5, &bytes, &h);
            assert!(why.contains("not a receipt"), "{why}");
        }
    }
}
