//! Durability levels: what a 201 (or any committed write) promises about copies of the data.
//! `local` commits once the primary has flushed its WAL; `replicated` commits once a
//! synchronous standby has flushed it too (Postgres `synchronous_commit = on` with the
//! primary's `synchronous_standby_names`, e.g. `ANY 1 (...)`), and refuses to write at all
//! while the primary names no synchronous standby.

use serde::{Deserialize, Serialize};

/// How durable a committed write is before the service answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Flushed on the primary (`synchronous_commit = local`): never waits for a standby.
    #[default]
    Local,
    /// Flushed on the primary and on a synchronous standby (`synchronous_commit = on`).
    Replicated,
}

impl Durability {
    /// The session's startup settings: `synchronous_commit`, and under `replicated` a check
    /// every second of a client that went away, so that a backend whose client gave up waiting
    /// for a standby ends (committed locally) instead of holding its locks until one returns.
    pub fn session_options(self) -> &'static str {
        match self {
            Durability::Local => "-c synchronous_commit=local",
            Durability::Replicated => {
                "-c synchronous_commit=on -c client_connection_check_interval=1000"
            }
        }
    }
}

/// Whether the primary names a synchronous standby now, as this session sees it.
pub(super) const SYNC_STANDBY_NAMED: &str =
    "SELECT current_setting('synchronous_standby_names') <> ''";

/// The readiness query under `replicated` durability: the standby set is named, and a commit
/// completes (the upsert of this role's row in `durability_probes` makes its commit wait for a
/// synchronous standby, as every write does).
pub(super) const REPLICATED_PING: &str =
    "INSERT INTO durability_probes (probed_at) VALUES (now()) \
     ON CONFLICT (role) DO UPDATE SET probed_at = excluded.probed_at \
     RETURNING current_setting('synchronous_standby_names') <> ''";
