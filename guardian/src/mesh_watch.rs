//! The leading guardian's view of the mesh's nodes: it exports
//! `vaultmesh_mesh_node_healthy{node_id}` and `vaultmesh_mesh_node_last_seen_timestamp{node_id}`
//! for every registered node (a silent node keeps its last-seen exported, so `NodeDown` can
//! fire, until an admin removes it or the retention passes; one that stopped on purpose stays
//! exported, unhealthy, for a short retention of its own), and
//! announces joins and departures as `node_joined` / `node_departed` receipts in `mesh`
//! (receipt first, then the row, so no change goes unreceipted); an admin's removal is a
//! `node_removed` receipt ([`remove`]).

use crate::anchor::append_receipt;
use crate::metrics::{NODE_HEALTHY, NODE_LAST_SEEN};
use ledger::mesh::MESH_SCROLL;
use ledger::store::{NodeRow, Store};
use serde_json::json;
use std::time::Duration;

/// What the guardian should announce about `n`, if anything: `(receipt type, new state,
/// reason)`.
pub fn announcement(
    n: &NodeRow,
    departure: Duration,
) -> Option<(&'static str, &'static str, &'static str)> {
    let silent = n.silence_ms() > i64::try_from(departure.as_millis()).unwrap_or(i64::MAX);
    let present = n.left_at.is_none() && !silent;
    match (n.announced.as_deref(), present) {
        (Some("joined"), false) if n.left_at.is_some() => {
            Some(("node_departed", "departed", "left"))
        }
        (Some("joined"), false) => Some(("node_departed", "departed", "silent")),
        (Some("joined"), true) => None,
        (_, true) => Some(("node_joined", "joined", "heartbeat")),
        (_, false) => None,
    }
}

/// Whether `n` is down: announced departed after falling silent (not stopped on purpose),
/// not removed, within the retention.
pub fn is_down(n: &NodeRow, retention: Duration) -> bool {
    n.announced.as_deref() == Some("departed")
        && n.left_at.is_none()
        && !n.removed()
        && n.silence_ms() <= i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)
}

/// Why an admin's removal of a node was refused.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// No node has this id.
    #[error("node {0} is not registered")]
    Unknown(String),
    /// The node still heartbeats: it would be back at its next heartbeat.
    #[error("node {0} still heartbeats; stop it before removing it")]
    Alive(String),
    /// The receipt or the store failed.
    #[error(transparent)]
    Ledger(#[from] crate::error::GuardianError),
}

/// Removes node `node_id` for admin key `by`: the `node_removed` receipt first, then the row.
/// Its series are retired at the next pass; if it heartbeats again it joins again.
pub async fn remove(
    store: &Store,
    gate: &ledger::gate::AppendGate,
    node_id: &str,
    by: &str,
) -> Result<NodeRow, RemoveError> {
    let nodes = store
        .nodes()
        .await
        .map_err(crate::error::GuardianError::from)?;
    let Some(n) = nodes.into_iter().find(|n| n.node_id == node_id) else {
        return Err(RemoveError::Unknown(node_id.to_string()));
    };
    if n.silence_ms() <= 3 * i64::from(n.heartbeat_ms) && n.left_at.is_none() {
        return Err(RemoveError::Alive(node_id.to_string()));
    }
    append_receipt(
        store,
        gate,
        MESH_SCROLL,
        "node_removed",
        json!({
            "node_id": n.node_id,
            "service": n.service,
            "last_seen": n.last_seen,
            "left_at": n.left_at,
            "removed_by": by,
        }),
    )
    .await?;
    store
        .mark_node_removed(node_id, by)
        .await
        .map_err(crate::error::GuardianError::from)?;
    Ok(n)
}

/// How long stopped nodes stay exported.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A node that fell silent.
    pub silent: Duration,
    /// A node that stopped on purpose.
    pub left: Duration,
}

/// One pass as leader over `nodes`: metrics, then announcements.
pub async fn pass(
    store: &Store,
    gate: &ledger::gate::AppendGate,
    nodes: &[NodeRow],
    departure: Duration,
    retention: Retention,
) {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    for n in nodes {
        let kept = if n.left_at.is_some() {
            retention.left
        } else {
            retention.silent
        };
        if n.removed() || n.silence_ms() > ms(kept) {
            let _ = NODE_HEALTHY.remove_label_values(&[&n.node_id]);
            let _ = NODE_LAST_SEEN.remove_label_values(&[&n.node_id]);
        } else {
            NODE_HEALTHY
                .with_label_values(&[&n.node_id])
                .set(if n.healthy() { 1.0 } else { 0.0 });
            NODE_LAST_SEEN
                .with_label_values(&[&n.node_id])
                .set(n.last_seen.timestamp_millis() as f64 / 1000.0);
        }
        let Some((kind, state, reason)) = announcement(n, departure) else {
            continue;
        };
        let payload = json!({
            "node_id": n.node_id,
            "service": n.service,
            "instance": n.instance,
            "role": n.role,
            "version": n.version,
            "api_addr": n.api_addr,
            "started_at": n.started_at,
            "last_seen": n.last_seen,
            "reason": reason,
        });
        if let Err(e) = append_receipt(store, gate, MESH_SCROLL, kind, payload).await {
            tracing::warn!(node = %n.node_id, error = %e, "{kind} not receipted; retried");
            continue;
        }
        match store
            .announce_node(&n.node_id, n.announced.as_deref(), state)
            .await
        {
            Ok(_) => tracing::info!(node = %n.node_id, reason, "{kind}"),
            Err(e) => tracing::warn!(node = %n.node_id, error = %e, "announcement not stored"),
        }
    }
}

/// Retires every node series (this guardian no longer leads).
pub fn retire_all() {
    NODE_HEALTHY.reset();
    NODE_LAST_SEEN.reset();
}
