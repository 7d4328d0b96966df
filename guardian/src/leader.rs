//! Leader election: the guardian holding a session-level Postgres advisory lock integrates,
//! signs and anchors; others stand by and retry every integration interval. The lock lives
//! on a connection of its own, so it is released as soon as the leader's process or
//! connection dies. Before every sink write the leader re-checks, on that connection, that it
//! still holds the lock ([`Fence`]), so a deposed guardian writes nothing more.

use crate::error::GuardianError;
use crate::metrics::sentinel;
use deadpool_postgres::ClientWrapper;
use ledger::store::Store;
use std::sync::Arc;
use tokio::sync::Mutex;

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

    /// Whether this guardian still holds the lock, asked now on the lock's own connection;
    /// if not (or the connection is gone), it stands down.
    pub async fn confirm(&mut self) -> bool {
        let Some(client) = &self.client else {
            return false;
        };
        let held = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
                 AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid)",
                &[&LOCK_KEY],
            )
            .await
            .map(|row| row.get::<_, bool>(0));
        match held {
            Ok(true) => true,
            outcome => {
                self.client = None;
                sentinel("leadership_lost", "warning");
                tracing::warn!(
                    error = outcome.err().map(|e| e.to_string()),
                    "lost the guardian lock (found before a sink write); standing by"
                );
                false
            }
        }
    }
}

/// A handle on this guardian's leadership for code that must not act once it is deposed.
#[derive(Clone, Default)]
pub struct Fence(pub Arc<Mutex<Leadership>>);

impl Fence {
    /// Succeeds only if this guardian holds the lock right now (see
    /// [`Leadership::confirm`]).
    pub async fn check(&self) -> Result<(), GuardianError> {
        if self.0.lock().await.confirm().await {
            Ok(())
        } else {
            Err(GuardianError::NotLeader)
        }
    }
}

/// Runs `pass` every `interval` until `shutdown`, each time only while this guardian leads:
/// the loops of work only the leader does besides integration (cosigning, remote checks).
pub async fn while_leading<F, Fut>(
    leadership: &Mutex<Leadership>,
    interval: std::time::Duration,
    shutdown: ledger::service::Shutdown,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if leadership.lock().await.is_leader() {
                    pass().await;
                }
            }
            _ = &mut stop => break,
        }
    }
}
