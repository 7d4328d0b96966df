//! Leader election: the guardian holding a session-level Postgres advisory lock takes the
//! next term of the lease row (`guardian_lease`, see `ledger::store::LeaseTerm`) and then
//! integrates, signs and anchors; others stand by and retry every integration interval. The
//! lock lives on a connection of its own, so it is released as soon as the leader's process
//! or connection dies; the term lives in the data, so it survives a failover to a standby
//! where the lock never existed, and the database refuses every leader-only write made under
//! an older term. Before every sink write the leader re-checks both ([`Fence`]), so a deposed
//! guardian writes nothing more.

use crate::error::GuardianError;
use crate::metrics::sentinel;
use deadpool_postgres::ClientWrapper;
use ledger::store::{LeaseTerm, Store};
use std::sync::Arc;
use tokio::sync::Mutex;

/// The advisory-lock key every guardian of a database competes for ("VMGUARD").
pub const LOCK_KEY: i64 = 0x0056_4d47_5541_5244;

/// This guardian's hold on the lock and its lease term, if any.
#[derive(Default)]
pub struct Leadership {
    client: Option<ClientWrapper>,
    term: i64,
}

/// Who this guardian is in the lease row: host name and process id.
fn holder() -> String {
    format!("{}:{}", ledger::mesh::host_name(), std::process::id())
}

impl Leadership {
    /// Whether this guardian leads now: checks a held lock's connection is alive and its term
    /// still current, or tries to take the lock and then the next term.
    pub async fn ensure(&mut self, store: &Store) -> bool {
        if let Some(client) = &self.client {
            match Store::current_term(client).await {
                Ok(term) if term == self.term => return true,
                outcome => {
                    self.stand_down(store.lease_term(), outcome.err().map(|e| e.to_string()))
                }
            }
        }
        let Ok(client) = store.dedicated_client().await else {
            return false;
        };
        match client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await
        {
            Ok(row) if row.get::<_, bool>(0) => {}
            _ => return false,
        }
        match Store::take_lease(&client, &holder()).await {
            Ok(term) => {
                self.client = Some(client);
                self.term = term;
                store.lease_term().set(term);
                sentinel("leadership_acquired", "info");
                tracing::info!(
                    term,
                    "guardian lock and lease acquired: this guardian is the leader"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "took the guardian lock but not the lease; standing by");
                false
            }
        }
    }

    /// Whether the lock is held (as of the last check).
    pub fn is_leader(&self) -> bool {
        self.client.is_some()
    }

    /// The lease term this guardian leads under (0 when standing by).
    pub fn term(&self) -> i64 {
        self.term
    }

    /// Whether this guardian still holds the lock and the current term, asked now on the
    /// lock's own connection; if not (or the connection is gone), it stands down.
    pub async fn confirm(&mut self, sessions: &LeaseTerm) -> bool {
        let Some(client) = &self.client else {
            return false;
        };
        let held = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
                 AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid) \
                 AND (SELECT term FROM guardian_lease) = $2",
                &[&LOCK_KEY, &self.term],
            )
            .await
            .map(|row| row.get::<_, bool>(0));
        match held {
            Ok(true) => true,
            outcome => {
                self.stand_down(sessions, outcome.err().map(|e| e.to_string()));
                false
            }
        }
    }

    /// Gives up the lock's connection (releasing the lock) and the term.
    fn stand_down(&mut self, sessions: &LeaseTerm, error: Option<String>) {
        self.client = None;
        self.term = 0;
        sessions.set(0);
        sentinel("leadership_lost", "warning");
        tracing::warn!(error, "lost the guardian lock or lease term; standing by");
    }
}

/// A handle on this guardian's leadership for code that must not act once it is deposed.
#[derive(Clone)]
pub struct Fence {
    /// The leadership it checks.
    pub leadership: Arc<Mutex<Leadership>>,
    /// The term the store's sessions carry (cleared when the check fails).
    pub sessions: LeaseTerm,
}

impl Fence {
    /// Succeeds only if this guardian holds the lock and the current term right now (see
    /// [`Leadership::confirm`]).
    pub async fn check(&self) -> Result<(), GuardianError> {
        if self.leadership.lock().await.confirm(&self.sessions).await {
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
