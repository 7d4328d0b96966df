//! The portal's read-through cache: every Redis key of its own is named here, once, and every
//! value read back is checked before it is used. The cache itself authenticates entries
//! (`ledger::cache`); on top of that a remembered idempotent submission belongs to the same
//! API key, and a cached checkpoint must verify under the guardian's key before it is served
//! or memoised. Receipts are read through `ledger::storage::CachedReceipts`, which serves a
//! cached receipt only if it hashes to its leaf hash and names its position.

use crate::state::Portal;
use ledger::api_error::ApiError;
use ledger::checkpoint::Checkpoint;
use ledger::hash::{to_hex, Hash, Sha3Hasher};
use ledger::storage::{CheckpointStore, ReceiptLog};
use ledger::store::{StoreError, StoredCheckpoint, StoredReceipt};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// How long the latest checkpoint of a scroll is served from Redis: a new checkpoint shows
/// up within this time (checkpoints are signed about once a second).
const CHECKPOINT_CACHE_TTL: Duration = Duration::from_secs(1);
/// How long a checkpoint just read is reused from process memory, before Redis is asked.
const CHECKPOINT_MEMO_TTL: Duration = Duration::from_millis(250);

/// Key of an idempotent submission's entry (request hash ‖ seq), scoped to (scroll, API key).
fn idempotency_key(scroll: &str, key_id: &str, idempotency_key: &str) -> String {
    let mut material = key_id.as_bytes().to_vec();
    material.push(0);
    material.extend_from_slice(idempotency_key.as_bytes());
    format!("idem:{scroll}:{}", to_hex(&Sha3Hasher::plain(&material)))
}

/// Key of a scroll's latest signed checkpoint.
fn checkpoint_key(scroll: &str) -> String {
    format!("checkpoint:{scroll}")
}

/// The latest checkpoint per scroll as last read, with when it was read.
#[derive(Clone, Default)]
pub struct CheckpointMemo(Arc<RwLock<HashMap<String, (Instant, StoredCheckpoint)>>>);

impl CheckpointMemo {
    fn recent(&self, scroll: &str) -> Option<StoredCheckpoint> {
        let memo = self.0.read().unwrap_or_else(PoisonError::into_inner);
        memo.get(scroll)
            .filter(|(at, _)| at.elapsed() < CHECKPOINT_MEMO_TTL)
            .map(|(_, cp)| cp.clone())
    }

    fn remember(&self, cp: &StoredCheckpoint) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cp.scroll.clone(), (Instant::now(), cp.clone()));
    }
}

/// [`latest_checkpoint`], read again from Postgres when the cached one is smaller than the
/// `size` a caller asks about: a client may know a newer checkpoint (from `?witnessed=K`, a
/// witness, or another portal replica), and a proof up to it must not be refused because this
/// portal's short cache is behind. At most one extra query, only for such requests.
pub async fn latest_checkpoint_covering(
    p: &Portal,
    scroll: &str,
    size: Option<u64>,
) -> Result<(i32, StoredCheckpoint), ApiError> {
    let (id, cached) = latest_checkpoint(p, scroll).await?;
    if size.is_none_or(|s| s <= cached.tree_size) {
        return Ok((id, cached));
    }
    match p.reads.latest_checkpoint_on_primary(scroll).await? {
        Some(fresh) if fresh.tree_size > cached.tree_size => {
            p.checkpoints.remember(&fresh);
            Ok((id, fresh))
        }
        _ => Ok((id, cached)),
    }
}

/// A receipt through the Redis read-through (`ledger::storage::CachedReceipts`), or 404.
pub async fn receipt(p: &Portal, scroll: &str, seq: u64) -> Result<StoredReceipt, ApiError> {
    p.receipts.receipt(scroll, seq).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_receipt",
            format!("scroll {scroll:?} has no receipt {seq}"),
        )
    })
}

/// Remembers that `key_id` wrote `stored` with idempotency key `key` and `request_hash`.
pub async fn remember_submission(
    p: &Portal,
    key_id: &str,
    key: &str,
    request_hash: &Hash,
    stored: &StoredReceipt,
) {
    let mut entry = request_hash.to_vec();
    entry.extend_from_slice(&stored.receipt.seq.to_be_bytes());
    let scroll = &stored.receipt.scroll;
    p.ctx
        .cache
        .put(&idempotency_key(scroll, key_id, key), &entry)
        .await;
    p.receipts.remember(stored).await;
}

/// Idempotency fast path: a key this API key already used on this scroll answers a replay
/// with the original receipt, or a different body with 409, without joining the group
/// commit. The original must still be the same writer's receipt; anything odd (a miss,
/// Redis down, another submitter) falls through to the check inside the append transaction.
pub async fn remembered_submission(
    p: &Portal,
    scroll: &str,
    key_id: &str,
    key: &str,
    request_hash: &Hash,
) -> Result<Option<StoredReceipt>, ApiError> {
    let Some(entry) = p.ctx.cache.get(&idempotency_key(scroll, key_id, key)).await else {
        return Ok(None);
    };
    let (Some(hash), Some(seq)) = (
        entry.get(..32),
        entry
            .get(32..40)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes),
    ) else {
        return Ok(None);
    };
    let Ok(original) = receipt(p, scroll, seq).await else {
        return Ok(None);
    };
    if original.receipt.submitter != key_id {
        return Ok(None);
    }
    if hash != &request_hash[..] {
        return Err(ApiError::from(StoreError::IdempotencyConflict(
            key.to_string(),
        )));
    }
    Ok(Some(original))
}

/// The scroll's id and latest signed checkpoint: from process memory, then Redis (only if it
/// verifies under the guardian's key), then Postgres.
pub async fn latest_checkpoint(
    p: &Portal,
    scroll: &str,
) -> Result<(i32, StoredCheckpoint), ApiError> {
    let id = p.existing_scroll(scroll).await?;
    // Never older than a checkpoint this process served already (a read replica or a
    // shared cache may be behind it).
    let floor = p.reads.served_floor(scroll);
    if let Some(cp) = p
        .checkpoints
        .recent(scroll)
        .filter(|cp| cp.tree_size >= floor)
    {
        return Ok((id, cp));
    }
    let key = checkpoint_key(scroll);
    if let Some(cp) = p
        .ctx
        .cache
        .get(&key)
        .await
        .and_then(|b| serde_json::from_slice::<StoredCheckpoint>(&b).ok())
        .filter(|cp| checkpoint_verifies(p, scroll, cp) && cp.tree_size >= floor)
    {
        p.reads.note_served(&cp);
        p.checkpoints.remember(&cp);
        return Ok((id, cp));
    }
    let cp = p.reads.latest_checkpoint(scroll).await?.ok_or_else(|| {
        ApiError::not_found(
            "no_checkpoint",
            format!("scroll {scroll:?} has no signed checkpoint yet"),
        )
    })?;
    if let Ok(bytes) = serde_json::to_vec(&cp) {
        p.ctx
            .cache
            .put_ttl(&key, &bytes, CHECKPOINT_CACHE_TTL)
            .await;
    }
    p.checkpoints.remember(&cp);
    Ok((id, cp))
}

/// Whether a cached checkpoint is the guardian's, for this scroll, with the size and root it
/// claims. Without a configured vkey nothing from the cache is trusted.
fn checkpoint_verifies(p: &Portal, scroll: &str, cp: &StoredCheckpoint) -> bool {
    let Some(verifier) = &p.verifier else {
        return false;
    };
    let origin = Checkpoint::origin_for(&p.ctx.config.mesh_id, scroll);
    match Checkpoint::verify(&cp.note, verifier, Some(&origin)) {
        Ok(signed) => signed.size == cp.tree_size && signed.root == cp.root && cp.scroll == scroll,
        Err(_) => false,
    }
}
