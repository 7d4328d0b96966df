//! Receipt routes: submission (single and batch, through the append gate and the group
//! commit) and reads of receipt contents (readers and admins).

use super::json_reply;
use crate::params::{number, parse_json, seq_param, MAX_PAGE};
use crate::read_cache;
use crate::state::Portal;
use ledger::api_error::ApiError;
use ledger::auth::{may_read, may_write};
use ledger::body::PendingBody;
use ledger::gate::Writer;
use ledger::hash::{from_hex, to_hex, Sha3Hasher};
use ledger::receipt::{validate_scroll_name, ReceiptDraft};
use ledger::storage::ReceiptLog;
use ledger::store::{AppendOutcome, NewReceipt, StoredReceipt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

/// `{"type", "payload"}` → a validated draft and the hash of its canonical request form.
fn parse_submission(v: Value, at: &str) -> Result<(ReceiptDraft, [u8; 32]), ApiError> {
    let Value::Object(mut m) = v else {
        return Err(ApiError::bad(
            "invalid_body",
            format!("{at}: must be a JSON object with `type` and `payload`"),
        ));
    };
    if let Some(extra) = m.keys().find(|k| *k != "type" && *k != "payload") {
        return Err(ApiError::bad(
            "unknown_field",
            format!("{at}.{extra}: unknown field (allowed: type, payload)"),
        ));
    }
    let kind = match m.remove("type") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ApiError::bad(
                "invalid_type",
                format!("{at}.type: must be a string"),
            ))
        }
        None => {
            return Err(ApiError::bad(
                "invalid_type",
                format!("{at}.type: is required"),
            ))
        }
    };
    let payload = m
        .remove("payload")
        .ok_or_else(|| ApiError::bad("invalid_payload", format!("{at}.payload: is required")))?;
    let draft = ReceiptDraft::new(&kind, payload)?;
    let mut request = kind.into_bytes();
    request.push(0);
    request.extend_from_slice(draft.canonical_payload());
    Ok((draft, Sha3Hasher::plain(&request)))
}

pub(crate) fn receipt_json(stored: &StoredReceipt) -> Value {
    let mut v = stored.receipt.to_value();
    if let Value::Object(m) = &mut v {
        m.insert("leaf_hash".into(), Value::String(to_hex(&stored.leaf_hash)));
    }
    v
}

/// Everything a submission must pass before its body is read: a key that may write to an
/// existing `scroll`, and a well-formed idempotency key if one is given.
async fn writer_of(
    p: &Portal,
    scroll: &str,
    auth: Option<String>,
    idempotency_key: Option<&str>,
) -> Result<ledger::store::ApiKey, ApiError> {
    let key = p.auth.authenticate(auth.as_deref()).await?;
    validate_scroll_name(scroll)?;
    may_write(&key, scroll)?;
    p.existing_scroll(scroll).await?;
    if let Some(k) = idempotency_key {
        ledger::gate::validate_idempotency_key(k)?;
    }
    Ok(key)
}

/// `POST /v1/scrolls/{scroll}/receipts`: one receipt, 201 once durable (200 for a replay).
pub async fn submit_one(
    p: Arc<Portal>,
    scroll: String,
    auth: Option<String>,
    idempotency_key: Option<String>,
    body: PendingBody,
) -> Result<Response, ApiError> {
    let key = writer_of(&p, &scroll, auth, idempotency_key.as_deref()).await?;
    let body = body
        .json(p.opts.max_receipt_body, p.opts.body_read_timeout())
        .await?;
    let (draft, request_hash) = parse_submission(parse_json(&body)?, "body")?;
    let item = NewReceipt {
        draft,
        submitter: key.id.clone(),
        idempotency_key: idempotency_key.clone(),
        request_hash: Some(request_hash),
    };
    let admitted = p.gate.admit(&Writer::client(&key), &scroll, vec![item])?;
    if let Some(k) = &idempotency_key {
        if let Some(original) =
            read_cache::remembered_submission(&p, &scroll, &key.id, k, &request_hash).await?
        {
            return Ok(json_reply(StatusCode::OK, &receipt_json(&original)));
        }
    }
    let (status, stored) = match p.ingest.submit(admitted).await? {
        AppendOutcome::Created(r) => (StatusCode::CREATED, r),
        AppendOutcome::Replayed(r) => (StatusCode::OK, r),
        AppendOutcome::Conflict(k) => {
            return Err(ApiError::from(
                ledger::store::StoreError::IdempotencyConflict(k),
            ))
        }
    };
    if let Some(k) = &idempotency_key {
        read_cache::remember_submission(&p, &key.id, k, &request_hash, &stored).await;
    }
    Ok(json_reply(status, &receipt_json(&stored)))
}

/// `POST /v1/scrolls/{scroll}/receipts/batch`: all or nothing.
pub async fn submit_batch(
    p: Arc<Portal>,
    scroll: String,
    auth: Option<String>,
    idempotency_key: Option<String>,
    body: PendingBody,
) -> Result<Response, ApiError> {
    let key = writer_of(&p, &scroll, auth, idempotency_key.as_deref()).await?;
    let body = body
        .json(p.opts.max_batch_body, p.opts.body_read_timeout())
        .await?;
    let v = parse_json(&body)?;
    let Value::Object(mut m) = v else {
        return Err(ApiError::bad(
            "invalid_body",
            "body: must be an object with a `receipts` array",
        ));
    };
    if let Some(extra) = m.keys().find(|k| *k != "receipts") {
        return Err(ApiError::bad(
            "unknown_field",
            format!("body.{extra}: unknown field (allowed: receipts)"),
        ));
    }
    let Some(Value::Array(list)) = m.remove("receipts") else {
        return Err(ApiError::bad(
            "invalid_body",
            "body.receipts: must be an array",
        ));
    };
    if list.is_empty() || list.len() > p.opts.max_batch {
        return Err(ApiError::bad(
            "batch_size",
            format!(
                "body.receipts: must hold 1 to {} receipts, got {}",
                p.opts.max_batch,
                list.len()
            ),
        ));
    }
    let mut items = Vec::with_capacity(list.len());
    let mut request = Vec::with_capacity(list.len() * 32);
    for (i, v) in list.into_iter().enumerate() {
        let (draft, item_hash) = parse_submission(v, &format!("body.receipts[{i}]"))?;
        request.extend_from_slice(&item_hash);
        items.push(NewReceipt {
            draft,
            submitter: key.id.clone(),
            idempotency_key: None,
            request_hash: None,
        });
    }
    let writer = Writer::client(&key);
    let outcomes = match idempotency_key {
        None => {
            let admitted = p.gate.admit(&writer, &scroll, items)?;
            p.ingest.submit_batch(admitted).await?
        }
        Some(k) => {
            let batch_hash = Sha3Hasher::plain(&request);
            let admitted = p
                .gate
                .admit_keyed(&writer, &scroll, items, &k, batch_hash)?;
            let _slot = p
                .keyed_batches
                .acquire()
                .await
                .map_err(|_| ApiError::Unavailable("the portal is stopping".into()))?;
            p.ingest.submit_keyed_batch(admitted).await?
        }
    };
    let replayed = outcomes
        .iter()
        .all(|o| matches!(o, AppendOutcome::Replayed(_)));
    let receipts: Vec<Value> = outcomes
        .iter()
        .filter_map(|o| match o {
            AppendOutcome::Created(r) | AppendOutcome::Replayed(r) => Some(receipt_json(r)),
            AppendOutcome::Conflict(_) => None,
        })
        .collect();
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_reply(status, &json!({ "receipts": receipts })))
}

/// A key allowed to read receipt contents; a refusal (401, 403, 429) is counted as a denied
/// read of `scroll` (by its label when known to exist).
pub(crate) async fn reader_of(
    p: &Portal,
    auth: Option<String>,
    scroll: Option<&str>,
    action: &'static str,
) -> Result<ledger::store::ApiKey, ApiError> {
    let checked = match p.auth.authenticate(auth.as_deref()).await {
        Ok(key) => may_read(&key).map(|()| key),
        Err(e) => Err(e),
    };
    if checked.is_ok() && p.access.backlog_full() {
        return Err(ApiError::Unavailable(
            "the read audit cannot be written; reads of receipt contents wait for it".into(),
        ));
    }
    if checked.is_err() {
        let label = match scroll {
            Some(s) => p.scroll_label(s).await,
            None => crate::access_log::UNKNOWN_SCROLL.to_string(),
        };
        p.access.denied(&label, action);
    }
    checked
}

/// `GET /v1/scrolls/{scroll}/receipts?from&limit`.
pub async fn list(
    p: Arc<Portal>,
    scroll: String,
    auth: Option<String>,
    q: Result<HashMap<String, String>, ApiError>,
) -> Result<Response, ApiError> {
    let key = reader_of(&p, auth, Some(&scroll), "list").await?;
    p.existing_scroll(&scroll).await?;
    let q = q?;
    let from = number(&q, "from")?.unwrap_or(0);
    let limit = number(&q, "limit")?.unwrap_or(100);
    if limit == 0 || limit > u64::from(MAX_PAGE) {
        return Err(ApiError::bad(
            "invalid_query",
            format!("limit: must be 1 to {MAX_PAGE}"),
        ));
    }
    let rows = p.reads.list_receipts(&scroll, from, limit as u32).await?;
    let next = rows.last().map(|r| r.receipt.seq + 1);
    let read: Vec<(u64, ledger::hash::Hash)> =
        rows.iter().map(|r| (r.receipt.seq, r.leaf_hash)).collect();
    p.access.record(&key.id, &scroll, "list", &read);
    let receipts: Vec<Value> = rows.iter().map(receipt_json).collect();
    Ok(json_reply(
        StatusCode::OK,
        &json!({"receipts": receipts, "next": next}),
    ))
}

/// `GET /v1/scrolls/{scroll}/receipts/{seq}`.
pub async fn get(
    p: Arc<Portal>,
    scroll: String,
    seq: String,
    auth: Option<String>,
) -> Result<Response, ApiError> {
    let key = reader_of(&p, auth, Some(&scroll), "get").await?;
    p.existing_scroll(&scroll).await?;
    let seq = seq_param(&seq)?;
    let r = read_cache::receipt(&p, &scroll, seq).await?;
    p.access
        .record(&key.id, &scroll, "get", &[(r.receipt.seq, r.leaf_hash)]);
    Ok(json_reply(StatusCode::OK, &receipt_json(&r)))
}

/// `GET /v1/receipts/{leaf_hash}`.
pub async fn by_hash(
    p: Arc<Portal>,
    hash: String,
    auth: Option<String>,
) -> Result<Response, ApiError> {
    let key = reader_of(&p, auth, None, "by_hash").await?;
    let lowercase = hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let h = from_hex(&hash).ok().filter(|_| lowercase).ok_or_else(|| {
        ApiError::bad("invalid_hash", "leaf_hash: must be 64 lowercase hex digits")
    })?;
    let r =
        p.reads.receipt_by_leaf_hash(&h).await?.ok_or_else(|| {
            ApiError::not_found("unknown_receipt", "no receipt has this leaf hash")
        })?;
    p.access.record(
        &key.id,
        &r.receipt.scroll,
        "by_hash",
        &[(r.receipt.seq, r.leaf_hash)],
    );
    Ok(json_reply(StatusCode::OK, &receipt_json(&r)))
}
