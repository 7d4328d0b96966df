//! `GET /v1/mesh/nodes` and `GET /v1/mesh/routes` (reader or admin keys), served by the
//! portal and the guardian from what the nodes wrote.

use crate::api_error::ApiError;
use crate::auth::Authenticator;
use crate::store::{NodeRow, Role, Store};
use serde_json::{json, Value};

/// The routes this module answers, for the services' route tables.
pub const ROUTES: [(&str, &str); 2] = [("GET", "/v1/mesh/nodes"), ("GET", "/v1/mesh/routes")];

/// The guardian's admin route that removes a node for good.
pub const REMOVE_ROUTE: (&str, &str) = ("DELETE", "/v1/mesh/nodes/{node_id}");

/// A node's status as listed: `healthy`, `unhealthy` (silent or not ready), `departed`
/// (silent long enough for the guardian to announce it), `left` (stopped on purpose) or
/// `removed` (by an admin, and silent since).
pub fn status(n: &NodeRow) -> &'static str {
    if n.removed() {
        "removed"
    } else if n.left_at.is_some() {
        "left"
    } else if n.healthy() {
        "healthy"
    } else if n.announced.as_deref() == Some("departed") {
        "departed"
    } else {
        "unhealthy"
    }
}

fn node_json(n: &NodeRow) -> Value {
    json!({
        "node_id": n.node_id,
        "service": n.service,
        "instance": n.instance,
        "role": n.role,
        "version": n.version,
        "mesh_id": n.mesh_id,
        "api_addr": n.api_addr,
        "metrics_addr": n.metrics_addr,
        "started_at": n.started_at,
        "last_seen": n.last_seen,
        "silence_ms": n.silence_ms(),
        "heartbeat_ms": n.heartbeat_ms,
        "ready": n.ready,
        "healthy": n.healthy(),
        "status": status(n),
        "left_at": n.left_at,
        "removed_at": n.removed_at,
        "removed_by": n.removed_by,
    })
}

/// `GET /v1/mesh/nodes`: every registered node with its health and last heartbeat.
pub async fn nodes(
    store: &Store,
    auth: &Authenticator,
    header: Option<&str>,
) -> Result<Value, ApiError> {
    auth.require(header, &[Role::Reader, Role::Admin]).await?;
    let nodes = store
        .nodes()
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading nodes: {e}")))?;
    let healthy = nodes.iter().filter(|n| n.healthy()).count();
    Ok(json!({
        "healthy": healthy,
        "nodes": nodes.iter().map(node_json).collect::<Vec<_>>(),
    }))
}

/// `GET /v1/mesh/routes`: every route's last probed state.
pub async fn routes(
    store: &Store,
    auth: &Authenticator,
    header: Option<&str>,
) -> Result<Value, ApiError> {
    auth.require(header, &[Role::Reader, Role::Admin]).await?;
    let routes = store
        .routes()
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading routes: {e}")))?;
    let unhealthy = routes.iter().filter(|r| !r.healthy).count();
    Ok(json!({"unhealthy": unhealthy, "routes": routes}))
}
