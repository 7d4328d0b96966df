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
    /// The session's `synchronous_commit` setting.
    pub fn synchronous_commit(self) -> &'static str {
        match self {
            Durability::Local => "local",
            Durability::Replicated => "on",
        }
    }
}

/// Whether the primary names a synchronous standby now, as this session sees it.
pub(super) const SYNC_STANDBY_NAMED: &str =
    "SELECT current_setting('synchronous_standby_names') <> ''";
