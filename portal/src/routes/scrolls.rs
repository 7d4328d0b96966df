//! Scroll routes: the public listing and creation by an admin.

use super::json_reply;
use crate::params::parse_json;
use crate::state::Portal;
use ledger::api_error::ApiError;
use ledger::auth::must_be_admin;
use ledger::body::PendingBody;
use ledger::hash::to_hex;
use ledger::receipt::validate_scroll_name;
use ledger::storage::CheckpointStore;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

/// `GET /v1/scrolls`: every scroll with its size and latest checkpoint (public).
pub async fn list(p: Arc<Portal>) -> Result<Response, ApiError> {
    let scrolls = p.ctx.store.list_scrolls().await?;
    let latest: HashMap<String, ledger::store::StoredCheckpoint> = p
        .reads
        .latest_checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.scroll.clone(), c))
        .collect();
    let out: Vec<Value> = scrolls
        .iter()
        .map(|s| {
            let cp = latest.get(&s.name).map(|c| json!({"tree_size": c.tree_size, "root": to_hex(&c.root)}));
            json!({"name": s.name, "size": s.size, "tree_size": s.tree_size, "created_at": s.created_at, "latest_checkpoint": cp})
        })
        .collect();
    Ok(json_reply(StatusCode::OK, &json!({ "scrolls": out })))
}

/// `POST /v1/scrolls` (admin): creates a scroll.
pub async fn create(
    p: Arc<Portal>,
    auth: Option<String>,
    body: PendingBody,
) -> Result<Response, ApiError> {
    let key = p.auth.authenticate(auth.as_deref()).await?;
    must_be_admin(&key)?;
    if let Some(refusal) = p.ctx.governance.frozen() {
        return Err(refusal.into());
    }
    let body = body.json(4096, p.opts.body_read_timeout()).await?;
    let Value::Object(m) = parse_json(&body)? else {
        return Err(ApiError::bad(
            "invalid_body",
            "body: must be an object with `name`",
        ));
    };
    if let Some(extra) = m.keys().find(|k| *k != "name") {
        return Err(ApiError::bad(
            "unknown_field",
            format!("body.{extra}: unknown field (allowed: name)"),
        ));
    }
    let name = match m.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ApiError::bad("invalid_body", "body.name: must be a string")),
    };
    validate_scroll_name(&name)?;
    let s = p.ctx.store.create_scroll(&name).await?;
    crate::metrics::init_write_errors(&s.name);
    tracing::info!(scroll = %name, key_id = %key.id, "scroll created");
    Ok(json_reply(
        StatusCode::CREATED,
        &json!({"name": s.name, "size": s.size, "tree_size": s.tree_size, "created_at": s.created_at}),
    ))
}
