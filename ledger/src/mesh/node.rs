//! A node's registration and heartbeat: every interval it writes its identity, role and
//! readiness with `last_seen` = the database's now; on a graceful stop it says it left, so
//! that only a silent node counts as down.

use crate::context::ServiceContext;
use crate::store::NodeHeartbeat;
use std::sync::Arc;

/// What the node does right now (the guardian's changes with its leadership).
pub type RoleFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Heartbeats until the stop signal, then marks the node as left.
pub async fn run(ctx: ServiceContext, base: NodeHeartbeat, role: RoleFn) {
    let mut ticks = tokio::time::interval(ctx.config.mesh.heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = ctx.shutdown.wait();
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let ready = ctx.dependencies().await.iter()
                    .all(|d| !d.required || d.state == "up");
                let beat = NodeHeartbeat { role: role(), ready, ..base.clone() };
                match ctx.store.node_heartbeat(&beat).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!(node = %base.node_id, "heartbeats written again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(node = %base.node_id, error = %e, "heartbeat not written");
                    }
                    Err(_) => {}
                }
            }
            _ = &mut stop => break,
        }
    }
    let leave = ctx.store.node_leave(&base.node_id);
    match tokio::time::timeout(std::time::Duration::from_secs(2), leave).await {
        Ok(Ok(())) => tracing::info!(node = %base.node_id, "node left the mesh"),
        _ => tracing::warn!(node = %base.node_id, "could not record leaving the mesh"),
    }
}
