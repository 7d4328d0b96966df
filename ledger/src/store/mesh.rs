//! Mesh health rows (SPEC §13): each node's registration and heartbeat, and the last probed
//! state of each route it relies on. Times are the database's clock, so nodes on different
//! machines are compared on one clock.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What a node says about itself at each heartbeat.
#[derive(Debug, Clone)]
pub struct NodeHeartbeat {
    /// `<service>-<instance>`.
    pub node_id: String,
    /// `portal`, `guardian` or `oracle`.
    pub service: String,
    /// The instance name (host and port unless configured).
    pub instance: String,
    /// What the node does now (`api`, `leader`, `standby`, `oracle`).
    pub role: String,
    /// The running version.
    pub version: String,
    /// The mesh it belongs to.
    pub mesh_id: String,
    /// Where its API listens.
    pub api_addr: String,
    /// Where its `/metrics` listens.
    pub metrics_addr: String,
    /// When the process started.
    pub started_at: DateTime<Utc>,
    /// Whether its own readiness checks pass.
    pub ready: bool,
    /// Its heartbeat interval, in milliseconds.
    pub heartbeat_ms: u32,
}

/// A registered node as stored, with the database's clock at the time of reading.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// `<service>-<instance>`.
    pub node_id: String,
    /// `portal`, `guardian` or `oracle`.
    pub service: String,
    /// Instance name.
    pub instance: String,
    /// What the node does.
    pub role: String,
    /// Version.
    pub version: String,
    /// Mesh id.
    pub mesh_id: String,
    /// API address.
    pub api_addr: String,
    /// Metrics address.
    pub metrics_addr: String,
    /// Process start.
    pub started_at: DateTime<Utc>,
    /// Last heartbeat.
    pub last_seen: DateTime<Utc>,
    /// Readiness at the last heartbeat.
    pub ready: bool,
    /// Heartbeat interval in milliseconds.
    pub heartbeat_ms: u32,
    /// When it stopped on purpose (its last heartbeat said so), if it did.
    pub left_at: Option<DateTime<Utc>>,
    /// What the guardian last announced: `joined` or `departed`.
    pub announced: Option<String>,
    /// When it did.
    pub announced_at: Option<DateTime<Utc>>,
    /// When an admin removed it (it is removed while it has not heartbeated since).
    pub removed_at: Option<DateTime<Utc>>,
    /// The admin key that did.
    pub removed_by: Option<String>,
    /// The database's clock when the row was read.
    #[serde(skip)]
    pub now: DateTime<Utc>,
}

impl NodeRow {
    /// Milliseconds since the last heartbeat.
    pub fn silence_ms(&self) -> i64 {
        (self.now - self.last_seen).num_milliseconds().max(0)
    }

    /// Removed by an admin and silent since.
    pub fn removed(&self) -> bool {
        self.removed_at.is_some_and(|r| self.last_seen <= r)
    }

    /// Heartbeating (within three intervals), ready, and not stopped.
    pub fn healthy(&self) -> bool {
        self.ready
            && self.left_at.is_none()
            && self.silence_ms() <= 3 * i64::from(self.heartbeat_ms)
    }
}

/// One route's last probed state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteRow {
    /// `<node>-><target>`.
    pub route_id: String,
    /// The node that probes it.
    pub node_id: String,
    /// What it depends on (`postgres`, `redis`, `sink:journal`, `witness:<mesh>`, …).
    pub target: String,
    /// Whether the last probe succeeded.
    pub healthy: bool,
    /// Why the last probe failed (empty when healthy).
    pub detail: String,
    /// Last probe written.
    pub checked_at: DateTime<Utc>,
    /// When `healthy` last changed.
    pub changed_at: DateTime<Utc>,
}

const NODE_COLUMNS: &str = "node_id, service, instance, role, version, mesh_id, api_addr, \
    metrics_addr, started_at, last_seen, ready, heartbeat_ms, left_at, announced, announced_at, \
    removed_at, removed_by, now()";

fn node_row(r: &tokio_postgres::Row) -> Result<NodeRow, StoreError> {
    Ok(NodeRow {
        node_id: r.try_get(0)?,
        service: r.try_get(1)?,
        instance: r.try_get(2)?,
        role: r.try_get(3)?,
        version: r.try_get(4)?,
        mesh_id: r.try_get(5)?,
        api_addr: r.try_get(6)?,
        metrics_addr: r.try_get(7)?,
        started_at: r.try_get(8)?,
        last_seen: r.try_get(9)?,
        ready: r.try_get(10)?,
        heartbeat_ms: u32::try_from(r.try_get::<_, i32>(11)?).unwrap_or(1),
        left_at: r.try_get(12)?,
        announced: r.try_get(13)?,
        announced_at: r.try_get(14)?,
        removed_at: r.try_get(15)?,
        removed_by: r.try_get(16)?,
        now: r.try_get(17)?,
    })
}

fn route_row(r: &tokio_postgres::Row) -> Result<RouteRow, StoreError> {
    Ok(RouteRow {
        route_id: r.try_get(0)?,
        node_id: r.try_get(1)?,
        target: r.try_get(2)?,
        healthy: r.try_get(3)?,
        detail: r.try_get(4)?,
        checked_at: r.try_get(5)?,
        changed_at: r.try_get(6)?,
    })
}

impl Store {
    /// Registers the node or records its heartbeat (`last_seen` = now; a node that had left
    /// is back).
    pub async fn node_heartbeat(&self, h: &NodeHeartbeat) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        let heartbeat_ms = i32::try_from(h.heartbeat_ms).unwrap_or(i32::MAX);
        client
            .execute(
                "INSERT INTO mesh_nodes (node_id, service, instance, role, version, mesh_id, \
                 api_addr, metrics_addr, started_at, ready, heartbeat_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (node_id) DO UPDATE SET role = EXCLUDED.role, \
                 version = EXCLUDED.version, mesh_id = EXCLUDED.mesh_id, \
                 api_addr = EXCLUDED.api_addr, metrics_addr = EXCLUDED.metrics_addr, \
                 started_at = EXCLUDED.started_at, last_seen = now(), ready = EXCLUDED.ready, \
                 heartbeat_ms = EXCLUDED.heartbeat_ms, left_at = NULL",
                &[
                    &h.node_id,
                    &h.service,
                    &h.instance,
                    &h.role,
                    &h.version,
                    &h.mesh_id,
                    &h.api_addr,
                    &h.metrics_addr,
                    &h.started_at,
                    &h.ready,
                    &heartbeat_ms,
                ],
            )
            .await?;
        Ok(())
    }

    /// Marks the node as stopped on purpose (its last word before a graceful shutdown).
    pub async fn node_leave(&self, node_id: &str) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        client
            .execute(
                "UPDATE mesh_nodes SET left_at = now(), ready = false WHERE node_id = $1",
                &[&node_id],
            )
            .await?;
        Ok(())
    }

    /// Every registered node, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                &format!("SELECT {NODE_COLUMNS} FROM mesh_nodes ORDER BY node_id"),
                &[],
            )
            .await?;
        rows.iter().map(node_row).collect()
    }

    /// Records what the guardian announced about a node (`joined` or `departed`), only if
    /// it still stands as `expected` (so two guardians never announce one change twice).
    pub async fn announce_node(
        &self,
        node_id: &str,
        expected: Option<&str>,
        announced: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool().get().await?;
        let n = client
            .execute(
                "UPDATE mesh_nodes SET announced = $3, announced_at = now() \
                 WHERE node_id = $1 AND announced IS NOT DISTINCT FROM $2",
                &[&node_id, &expected, &announced],
            )
            .await?;
        Ok(n == 1)
    }

    /// Records an admin's removal of node `node_id` by key `by`; false if there is no such node.
    pub async fn mark_node_removed(&self, node_id: &str, by: &str) -> Result<bool, StoreError> {
        let client = self.pool().get().await?;
        let n = client
            .execute(
                "UPDATE mesh_nodes SET removed_at = now(), removed_by = $2 WHERE node_id = $1",
                &[&node_id, &by],
            )
            .await?;
        Ok(n == 1)
    }

    /// Every stored route, by id.
    pub async fn routes(&self) -> Result<Vec<RouteRow>, StoreError> {
        self.routes_where("TRUE", None).await
    }

    /// The stored routes of one node.
    pub async fn routes_of(&self, node_id: &str) -> Result<Vec<RouteRow>, StoreError> {
        self.routes_where("node_id = $1", Some(node_id)).await
    }

    async fn routes_where(
        &self,
        filter: &str,
        node_id: Option<&str>,
    ) -> Result<Vec<RouteRow>, StoreError> {
        let client = self.pool().get().await?;
        let sql = format!(
            "SELECT route_id, node_id, target, healthy, detail, checked_at, changed_at \
             FROM mesh_routes WHERE {filter} ORDER BY route_id"
        );
        let rows = match node_id {
            Some(id) => client.query(&sql, &[&id]).await?,
            None => client.query(&sql, &[]).await?,
        };
        rows.iter().map(route_row).collect()
    }

    /// Writes one node's probed routes (`(target, healthy, detail)`): `checked_at` = now,
    /// `changed_at` = now where `healthy` changed.
    pub async fn record_routes(
        &self,
        node_id: &str,
        probed: &[(String, bool, String)],
    ) -> Result<(), StoreError> {
        let targets: Vec<&str> = probed.iter().map(|p| p.0.as_str()).collect();
        let healthy: Vec<bool> = probed.iter().map(|p| p.1).collect();
        let details: Vec<&str> = probed.iter().map(|p| p.2.as_str()).collect();
        let client = self.pool().get().await?;
        client
            .execute(
                "INSERT INTO mesh_routes (route_id, node_id, target, healthy, detail) \
                 SELECT $1 || '->' || t, $1, t, h, d \
                 FROM unnest($2::text[], $3::bool[], $4::text[]) AS p(t, h, d) \
                 ON CONFLICT (route_id) DO UPDATE SET healthy = EXCLUDED.healthy, \
                 detail = EXCLUDED.detail, checked_at = now(), \
                 changed_at = CASE WHEN mesh_routes.healthy = EXCLUDED.healthy \
                 THEN mesh_routes.changed_at ELSE now() END",
                &[&node_id, &targets, &healthy, &details],
            )
            .await?;
        Ok(())
    }
}
