//! Proof routes: signed checkpoints, inclusion and consistency proofs (public), and proof
//! bundles (readers).

use super::json_reply;
use crate::params::{number, seq_param};
use crate::read_cache;
use crate::state::Portal;
use ledger::api_error::ApiError;
use ledger::hash::to_hex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// `GET /v1/scrolls/{scroll}/checkpoint`: the signed note (text), or JSON on Accept.
pub async fn checkpoint(
    p: Arc<Portal>,
    scroll: String,
    accept: Option<String>,
) -> Result<Response, ApiError> {
    let (_, cp) = read_cache::latest_checkpoint(&p, &scroll).await?;
    if accept.is_some_and(|a| a.contains("application/json")) {
        return Ok(json_reply(
            StatusCode::OK,
            &json!({"scroll": cp.scroll, "tree_size": cp.tree_size, "root": to_hex(&cp.root), "note": cp.note, "created_at": cp.created_at}),
        ));
    }
    Ok(
        warp::reply::with_header(cp.note, "content-type", "text/plain; charset=utf-8")
            .into_response(),
    )
}

/// `GET /v1/scrolls/{scroll}/proof/inclusion?seq&tree_size`.
pub async fn inclusion(
    p: Arc<Portal>,
    scroll: String,
    q: Result<HashMap<String, String>, ApiError>,
) -> Result<Response, ApiError> {
    let q = q?;
    let seq =
        number(&q, "seq")?.ok_or_else(|| ApiError::bad("invalid_query", "seq: is required"))?;
    let (scroll_id, cp) = read_cache::latest_checkpoint(&p, &scroll).await?;
    let size = number(&q, "tree_size")?.unwrap_or(cp.tree_size);
    if size > cp.tree_size {
        return Err(ApiError::bad(
            "beyond_checkpoint",
            format!(
                "tree_size {size} is beyond the latest signed checkpoint ({})",
                cp.tree_size
            ),
        ));
    }
    if seq >= size {
        return Err(ApiError::bad(
            "invalid_query",
            format!("seq {seq} is not below tree_size {size}"),
        ));
    }
    let proof = p.ctx.store.inclusion_proof(scroll_id, seq, size).await?;
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::to_value(&proof).unwrap_or(Value::Null),
    ))
}

/// `GET /v1/scrolls/{scroll}/proof/consistency?from&to`.
pub async fn consistency(
    p: Arc<Portal>,
    scroll: String,
    q: Result<HashMap<String, String>, ApiError>,
) -> Result<Response, ApiError> {
    let q = q?;
    let from =
        number(&q, "from")?.ok_or_else(|| ApiError::bad("invalid_query", "from: is required"))?;
    let (scroll_id, cp) = read_cache::latest_checkpoint(&p, &scroll).await?;
    let to = number(&q, "to")?.unwrap_or(cp.tree_size);
    if to > cp.tree_size {
        return Err(ApiError::bad(
            "beyond_checkpoint",
            format!(
                "to {to} is beyond the latest signed checkpoint ({})",
                cp.tree_size
            ),
        ));
    }
    if from > to {
        return Err(ApiError::bad(
            "invalid_query",
            format!("from {from} is greater than to {to}"),
        ));
    }
    let proof = p.ctx.store.consistency_proof(scroll_id, from, to).await?;
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::to_value(&proof).unwrap_or(Value::Null),
    ))
}

/// `GET /v1/scrolls/{scroll}/receipts/{seq}/bundle` (readers): everything to verify offline.
pub async fn bundle(
    p: Arc<Portal>,
    scroll: String,
    seq: String,
    auth: Option<String>,
) -> Result<Response, ApiError> {
    let key = super::receipts::reader_of(&p, auth, Some(&scroll), "bundle").await?;
    p.existing_scroll(&scroll).await?;
    let seq = seq_param(&seq)?;
    let vkey = p.vkey.clone().unwrap_or_default();
    let b = p
        .ctx
        .store
        .proof_bundle(&scroll, seq, &vkey)
        .await?
        .ok_or_else(|| ApiError::not_found("no_bundle", format!("receipt {seq} of {scroll:?} does not exist or is not in a signed checkpoint yet")))?;
    if let Ok(h) = ledger::hash::from_hex(&b.leaf_hash) {
        p.access.record(&key.id, &scroll, "bundle", &[(seq, h)]);
    }
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::to_value(&b).unwrap_or(Value::Null),
    ))
}
