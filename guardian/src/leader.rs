//! Leader election (the storage's leadership role, `ledger::storage::Leadership`): the
//! guardian holding a session-level Postgres advisory lock takes the next term of the lease
//! row (`guardian_lease`, see `ledger::store::LeaseTerm`) and then
//! integrates, signs and anchors; others stand by and retry every integration interval. The
//! lock lives on a connection of its own, so it is released as soon as the leader's process
//! or connection dies; the term lives in the data, so it survives a failover to a standby
//! where the lock never existed, and the database refuses every leader-only write made under
//! an older term. Before every sink write the leader re-checks both ([`Fence`]), so a deposed
//! guardian writes nothing more.

use crate::error::GuardianError;
use crate::metrics::sentinel;
use ledger::storage::{LeaderLease, Leadership as Election};
use std::sync::Arc;
use tokio::sync::Mutex;

/// The advisory-lock key every guardian of a database competes for ("VMGUARD").
pub const LOCK_KEY: i64 = ledger::storage::LEADER_LOCK_KEY;

/// This guardian's won election, if any.
#[derive(Default)]
pub struct Leadership {
    lease: Option<Box<dyn LeaderLease>>,
}

/// Who this guardian is in the lease row: host name and process id.
fn holder() -> String {
    format!("{}:{}", ledger::mesh::host_name(), std::process::id())
}

impl Leadership {
    /// Whether this guardian leads now: checks that a held lease is still current, or tries
    /// to win the election and take the next term.
    pub async fn ensure(&mut self, election: &dyn Election) -> bool {
        if self.confirm().await {
            return true;
        }
        match election.try_lead(&holder()).await {
            Ok(Some(lease)) => {
                let term = lease.term();
                self.lease = Some(lease);
                sentinel("leadership_acquired", "info");
                tracing::info!(
                    term,
                    "guardian lock and lease acquired: this guardian is the leader"
                );
                true
            }
            Ok(None) => false,
            Err(e) if e.is_unavailable() => false,
            Err(e) => {
                tracing::warn!(error = %e, "could not take the guardian lock and lease; standing by");
                false
            }
        }
    }

    /// Whether the lock is held (as of the last check).
    pub fn is_leader(&self) -> bool {
        self.lease.is_some()
    }

    /// The lease term this guardian leads under (0 when standing by).
    pub fn term(&self) -> i64 {
        self.lease.as_ref().map_or(0, |l| l.term())
    }

    /// Whether this guardian still holds the lock and the current term, asked now of the
    /// database; if not (or it does not answer), it stands down.
    pub async fn confirm(&mut self) -> bool {
        let Some(lease) = &self.lease else {
            return false;
        };
        match lease.confirm().await {
            Ok(true) => true,
            outcome => {
                self.stand_down(outcome.err().map(|e| e.to_string()));
                false
            }
        }
    }

    /// Gives up the election and the term (dropping the lease clears the sessions' term).
    fn stand_down(&mut self, error: Option<String>) {
        self.lease = None;
        sentinel("leadership_lost", "warning");
        tracing::warn!(error, "lost the guardian lock or lease term; standing by");
    }
}

/// A handle on this guardian's leadership for code that must not act once it is deposed.
#[derive(Clone)]
pub struct Fence {
    /// The leadership it checks.
    pub leadership: Arc<Mutex<Leadership>>,
}

impl Fence {
    /// Succeeds only if this guardian holds the lock and the current term right now (see
    /// [`Leadership::confirm`]).
    pub async fn check(&self) -> Result<(), GuardianError> {
        if self.leadership.lock().await.confirm().await {
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
