//! ProofChain routes: anchor records with their signed heads (public).

use super::json_reply;
use crate::params::{number, MAX_PAGE};
use crate::state::Portal;
use ledger::api_error::ApiError;
use ledger::storage::AnchorStore;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

fn anchor_json(a: &ledger::store::StoredAnchor) -> Value {
    serde_json::to_value(&a.record).unwrap_or(Value::Null)
}

/// `GET /v1/anchors?from&limit`: the ProofChain (public).
pub async fn list(
    p: Arc<Portal>,
    q: Result<HashMap<String, String>, ApiError>,
) -> Result<Response, ApiError> {
    let q = q?;
    let from = number(&q, "from")?.unwrap_or(1);
    let limit = number(&q, "limit")?.unwrap_or(100);
    if limit == 0 || limit > u64::from(MAX_PAGE) {
        return Err(ApiError::bad(
            "invalid_query",
            format!("limit: must be 1 to {MAX_PAGE}"),
        ));
    }
    let list = p.reads.anchors(from, limit as u32).await?;
    let out: Vec<Value> = list.iter().map(anchor_json).collect();
    Ok(json_reply(StatusCode::OK, &json!({"anchors": out})))
}

/// `GET /v1/anchors/{epoch}`.
pub async fn get(p: Arc<Portal>, epoch: String) -> Result<Response, ApiError> {
    let epoch = crate::params::canonical_u64(&epoch)
        .filter(|e| *e >= 1)
        .ok_or_else(|| {
            ApiError::bad("invalid_epoch", "epoch: must be a positive decimal integer")
        })?;
    let a = p.reads.anchor(epoch).await?.ok_or_else(|| {
        ApiError::not_found("unknown_anchor", format!("no anchor for epoch {epoch}"))
    })?;
    Ok(json_reply(StatusCode::OK, &anchor_json(&a)))
}

/// `GET /v1/anchors/{epoch}/head`: the signed head with its witnesses' cosignatures appended.
pub async fn head(p: Arc<Portal>, epoch: String) -> Result<Response, ApiError> {
    let epoch = crate::params::canonical_u64(&epoch)
        .filter(|e| *e >= 1)
        .ok_or_else(|| {
            ApiError::bad("invalid_epoch", "epoch: must be a positive decimal integer")
        })?;
    let note = p
        .reads
        .anchor(epoch)
        .await?
        .and_then(|a| a.record.signature)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_anchor",
                format!("no signed head for epoch {epoch}"),
            )
        })?;
    let lines: Vec<String> = p
        .ctx
        .store
        .head_cosignatures(epoch)
        .await?
        .into_iter()
        .map(|c| c.line)
        .collect();
    Ok(warp::reply::with_header(
        ledger::cosignature::with_cosignatures(&note, &lines),
        "content-type",
        "text/plain; charset=utf-8",
    )
    .into_response())
}
