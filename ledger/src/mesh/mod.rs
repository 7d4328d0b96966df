//! Mesh health (SPEC §13): every service process is a node that registers and heartbeats
//! into Postgres ([`node`]) and probes the routes it relies on ([`route`]); both are listed
//! by `GET /v1/mesh/nodes` and `GET /v1/mesh/routes` ([`api`]). Route changes are receipts
//! in the `mesh` scroll; joins and departures are announced by the leading guardian.

pub mod api;
pub mod node;
pub mod route;

use std::time::Duration;

/// The scroll mesh receipts go to.
pub const MESH_SCROLL: &str = "mesh";

/// How a node heartbeats and probes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeshSettings {
    /// Whether this process is a node at all.
    pub enabled: bool,
    /// The instance part of the node id (`<service>-<instance>`); host and API port if unset.
    pub instance: Option<String>,
    /// Time between heartbeats.
    #[serde(with = "crate::config::millis_serde")]
    pub heartbeat: Duration,
    /// Time between two probes of every route.
    #[serde(with = "crate::config::millis_serde")]
    pub probe_interval: Duration,
}

impl Default for MeshSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            instance: None,
            heartbeat: Duration::from_secs(5),
            probe_interval: Duration::from_secs(5),
        }
    }
}

impl MeshSettings {
    /// How long one probe may take: the probe interval, at most 2 s.
    pub fn probe_timeout(&self) -> Duration {
        self.probe_interval.min(Duration::from_secs(2))
    }
}

/// The host name of this machine (`/proc/sys/kernel/hostname`, `$HOSTNAME`, or `localhost`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// Whether `instance` can name a node (and sit in a URL path as it is): 1 to 200 ASCII
/// letters, digits and `-._:@`.
pub fn valid_instance(instance: &str) -> bool {
    (1..=200).contains(&instance.len())
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:@".contains(&b))
}
