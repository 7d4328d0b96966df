//! Leader election: the guardian holding a session-level Postgres advisory lock integrates,
//! signs and anchors; others stand by and retry every integration interval. The lock lives
//! on a connection of its own, so it is released as soon as the leader's process or
//! connection dies.

use crate::metrics::sentinel;
use deadpool_postgres::ClientWrapper;
use ledger::store::Store;

/// The advisory-lock key every guardian of a database competes for ("VMGUARD").
pub const LOCK_KEY: i64 = 0x0056_4d47_5541_5244;

/// This guardian's hold on the lock, if any.
#[derive(Default)]
pub struct Leadership {
    client: Option<ClientWrapper>,
}

impl Leadership {
    /// Whether this guardian leads now: checks a held lock's connection is alive, or tries to
    /// take the lock.
    pub async fn ensure(&mut self, store: &Store) -> bool {
        if let Some(client) = &self.client {
            if client.simple_query("SELECT 1").await.is_ok() {
                return true;
            }
            self.client = None;
            sentinel("leadership_lost", "warning");
            tracing::warn!("lost the guardian lock (its connection failed); standing by");
        }
        let Ok(client) = store.dedicated_client().await else {
            return false;
        };
        match client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await
        {
            Ok(row) if row.get::<_, bool>(0) => {
                self.client = Some(client);
                sentinel("leadership_acquired", "info");
                tracing::info!("guardian lock acquired: this guardian is the leader");
                true
            }
            _ => false,
        }
    }

    /// Whether the lock is held (as of the last check).
    pub fn is_leader(&self) -> bool {
        self.client.is_some()
    }
}
