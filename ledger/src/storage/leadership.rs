//! The leadership role: which guardian integrates, signs and anchors. A backend elects one
//! holder at a time and fences it with a term that lives in the data, so that a deposed
//! leader's writes are refused even where the election itself was lost (a failover). In
//! PostgreSQL the election is a session advisory lock on a connection of its own and the
//! fence is the `guardian_lease` term every pooled session carries (`store::lease`).

use super::StoreFuture;
use crate::store::{Lease, LeaseTerm, Store};
use deadpool_postgres::ClientWrapper;

/// The advisory-lock key every guardian of a database competes for ("VMGUARD").
pub const LEADER_LOCK_KEY: i64 = 0x0056_4d47_5541_5244;

/// Elects one leader among the guardians of a mesh.
pub trait Leadership: Send + Sync {
    /// Tries to lead as `holder`: wins the election if nobody holds it, then takes the next
    /// term, which this process's writes carry from then on. `None` while another leads.
    /// Dropping the returned lease gives up the election and the term.
    fn try_lead<'a>(&'a self, holder: &'a str) -> StoreFuture<'a, Option<Box<dyn LeaderLease>>>;

    /// The lease as stored (its term and holder), for status pages.
    fn lease(&self) -> StoreFuture<'_, Lease>;
}

/// One won election: valid until [`LeaderLease::confirm`] says otherwise.
pub trait LeaderLease: Send + Sync {
    /// The term this leader holds.
    fn term(&self) -> i64;

    /// Whether this leader still holds the election and the current term, asked of the
    /// backend now.
    fn confirm(&self) -> StoreFuture<'_, bool>;
}

/// A PostgreSQL leadership: the advisory lock's own connection, and the term the pool's
/// sessions carry (cleared when dropped, unless a newer lease has set another).
struct PgLease {
    client: ClientWrapper,
    term: i64,
    sessions: LeaseTerm,
}

impl Drop for PgLease {
    fn drop(&mut self) {
        self.sessions.clear_if(self.term);
    }
}

impl LeaderLease for PgLease {
    fn term(&self) -> i64 {
        self.term
    }

    fn confirm(&self) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let row = self
                .client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                     AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
                     AND classid = ($1::bigint >> 32)::oid \
                     AND objid = ($1::bigint & 4294967295)::oid) \
                     AND (SELECT term FROM guardian_lease) = $2",
                    &[&LEADER_LOCK_KEY, &self.term],
                )
                .await?;
            Ok(row.get::<_, bool>(0))
        })
    }
}

impl Leadership for Store {
    fn try_lead<'a>(&'a self, holder: &'a str) -> StoreFuture<'a, Option<Box<dyn LeaderLease>>> {
        Box::pin(async move {
            let client = self.dedicated_client().await?;
            let won: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK_KEY])
                .await?
                .get(0);
            if !won {
                return Ok(None);
            }
            let term = Store::take_lease(&client, holder).await?;
            self.lease_term().set(term);
            let lease: Box<dyn LeaderLease> = Box::new(PgLease {
                client,
                term,
                sessions: self.lease_term().clone(),
            });
            Ok(Some(lease))
        })
    }

    fn lease(&self) -> StoreFuture<'_, Lease> {
        Box::pin(Store::lease(self))
    }
}
