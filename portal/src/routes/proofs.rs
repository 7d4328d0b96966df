//! Proof routes: signed checkpoints, inclusion and consistency proofs (public), and proof
//! bundles (readers).

use super::json_reply;
use crate::params::{canonical_u64, number, seq_param};
use crate::read_cache;
use crate::state::Portal;
use ledger::api_error::ApiError;
use ledger::hash::{to_hex, Sha3Hasher};
use ledger::merkle::tiles::{tile_width, TileId, MAX_TILE_LEVEL, TILE_WIDTH};
use ledger::storage::{ReceiptLog, ScrollRef, TileStore};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// `GET /v1/scrolls/{scroll}/checkpoint[?witnessed=K]`: the latest signed checkpoint (or with
/// `witnessed`, the latest holding cosignatures from at least K witnesses) as a signed note
/// with the cosignatures appended (text), or on Accept as JSON listing them.
pub async fn checkpoint(
    p: Arc<Portal>,
    scroll: String,
    accept: Option<String>,
    q: Result<HashMap<String, String>, ApiError>,
) -> Result<Response, ApiError> {
    let witnessed = number(&q?, "witnessed")?;
    let cp = match witnessed {
        None | Some(0) => read_cache::latest_checkpoint(&p, &scroll).await?.1,
        Some(k) => {
            p.existing_scroll(&scroll).await?;
            let k = u32::try_from(k).unwrap_or(u32::MAX);
            p.ctx
                .store
                .latest_witnessed_checkpoint(&scroll, k)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(
                        "not_witnessed",
                        format!("no checkpoint of {scroll:?} holds {k} cosignatures yet"),
                    )
                })?
        }
    };
    let cosignatures = p.ctx.store.cosignatures(&scroll, cp.tree_size).await?;
    if accept.is_some_and(|a| a.contains("application/json")) {
        let listed: Vec<Value> = cosignatures
            .iter()
            .map(|c| json!({"witness": c.witness, "line": c.line}))
            .collect();
        return Ok(json_reply(
            StatusCode::OK,
            &json!({"scroll": cp.scroll, "tree_size": cp.tree_size, "root": to_hex(&cp.root), "note": cp.note, "created_at": cp.created_at, "cosignatures": listed}),
        ));
    }
    let lines: Vec<String> = cosignatures.into_iter().map(|c| c.line).collect();
    Ok(warp::reply::with_header(
        ledger::cosignature::with_cosignatures(&cp.note, &lines),
        "content-type",
        "text/plain; charset=utf-8",
    )
    .into_response())
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
    let asked = number(&q, "tree_size")?;
    let (scroll_id, cp) = read_cache::latest_checkpoint_covering(&p, &scroll, asked).await?;
    let size = asked.unwrap_or(cp.tree_size);
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
    let proof = p
        .reads
        .inclusion_proof(
            ScrollRef {
                name: &scroll,
                id: scroll_id,
            },
            seq,
            size,
        )
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::to_value(&proof).unwrap_or(Value::Null),
    ))
}

/// `Cache-Control` of a full tile: it never changes.
const FULL_TILE_CACHE: &str = "public, max-age=31536000, immutable";

/// The path parameters of a tile request.
pub struct TileRequest {
    /// Scroll name.
    pub scroll: String,
    /// Tile level, as sent.
    pub level: String,
    /// Tile index, as sent.
    pub index: String,
}

/// `GET /v1/scrolls/{scroll}/tiles/{level}/{index}[?width=W]`: a public tile
/// (`ledger::merkle::tiles`) of the tree at the latest signed checkpoint, as raw concatenated
/// hashes, with an ETag (answered 304 on a matching `If-None-Match`) and cache headers for
/// HTTP caches. With `width`, exactly its first `width` entries: a prefix never changes, so
/// it is as immutable as a full tile.
pub async fn tile(
    p: Arc<Portal>,
    req: TileRequest,
    q: Result<HashMap<String, String>, ApiError>,
    if_none_match: Option<String>,
) -> Result<Response, ApiError> {
    let q = q?;
    let tile = TileId {
        level: tile_number("level", &req.level, 0..=u64::from(MAX_TILE_LEVEL))? as u8,
        index: tile_number("index", &req.index, 0..=u64::MAX)?,
    };
    let asked = q
        .get("width")
        .map(|w| tile_number("width", w, 1..=TILE_WIDTH))
        .transpose()?;
    let (scroll_id, cp) = read_cache::latest_checkpoint(&p, &req.scroll).await?;
    let width = tile_width(tile, cp.tree_size);
    let served = asked.unwrap_or(width);
    if width == 0 || served > width {
        return Err(ApiError::not_found(
            "no_tile",
            format!(
                "tile {}/{} has {width} entries in the latest signed checkpoint (size {})",
                tile.level, tile.index, cp.tree_size
            ),
        ));
    }
    let body = p
        .reads
        .public_tile(
            ScrollRef {
                name: &req.scroll,
                id: scroll_id,
            },
            tile,
            served,
            cp.tree_size,
        )
        .await?;
    let etag = format!("\"{}\"", to_hex(&Sha3Hasher::plain(&body)));
    let cache = if asked.is_some() || width == TILE_WIDTH {
        FULL_TILE_CACHE.to_string()
    } else {
        format!("public, max-age={}", p.opts.partial_tile_max_age_secs)
    };
    let matched = if_none_match.is_some_and(|h| {
        h.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag)
    });
    let mut response = if matched {
        warp::reply::with_status(Vec::new(), StatusCode::NOT_MODIFIED).into_response()
    } else {
        warp::reply::with_header(body, "content-type", "application/octet-stream").into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in [("etag", etag), ("cache-control", cache)] {
        if let Ok(v) = warp::http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    Ok(response)
}

/// A tile coordinate or width: a canonical decimal in `range`, else 400 `invalid_tile`
/// naming it.
fn tile_number(
    name: &str,
    text: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ApiError> {
    canonical_u64(text)
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ApiError::bad(
                "invalid_tile",
                format!(
                    "{name}: must be a decimal integer from {} to {}, without sign or leading zeros",
                    range.start(),
                    range.end()
                ),
            )
        })
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
    let asked = number(&q, "to")?;
    let (scroll_id, cp) = read_cache::latest_checkpoint_covering(&p, &scroll, asked).await?;
    let to = asked.unwrap_or(cp.tree_size);
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
    let proof = p
        .reads
        .consistency_proof(
            ScrollRef {
                name: &scroll,
                id: scroll_id,
            },
            from,
            to,
        )
        .await?;
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
        .reads
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
