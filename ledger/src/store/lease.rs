//! The guardian lease: leadership fenced in the data (migration V8). The guardian holding the
//! advisory lock takes the next term of `guardian_lease`; every session of its pool then
//! carries that term in `vaultmesh.lease_term`, and the database refuses a guardian's write
//! to a leader-only table under any term but the current one. So after a takeover, even one
//! on a promoted standby where the old advisory lock never existed, an old leader writes
//! nothing more.

use super::{Store, StoreError};
use deadpool_postgres::{ClientWrapper, HookError};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// SQLSTATE of a guardian write under a term that is not (or no longer) current.
pub const STALE_TERM: &str = "VML01";

/// Longest a takeover waits for writes in flight under the previous term (below the default
/// statement and response timeouts, so that this limit is the one that ends the wait).
pub const TAKEOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Value of a [`LeaseTerm`] whose sessions are not fenced (the portal, the oracle).
const UNFENCED: i64 = -1;

/// The lease term a store's sessions carry: shared by the store's pool (which sets it on
/// every connection it hands out) and the guardian's leadership (which changes it).
#[derive(Clone, Debug)]
pub struct LeaseTerm(Arc<AtomicI64>);

impl Default for LeaseTerm {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(UNFENCED)))
    }
}

impl LeaseTerm {
    /// The term sessions carry now: `None` when unfenced, `Some(0)` for no term.
    pub fn get(&self) -> Option<i64> {
        Some(self.0.load(Ordering::SeqCst)).filter(|t| *t != UNFENCED)
    }

    /// Sessions handed out from now on carry `term` (0: none, so fenced writes fail).
    pub fn set(&self, term: i64) {
        self.0.store(term.max(0), Ordering::SeqCst);
    }

    /// Sessions carry no term from now on, if they still carry `term` (a lease given up never
    /// clears a newer one).
    pub fn clear_if(&self, term: i64) {
        let _ = self
            .0
            .compare_exchange(term, 0, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Brings a session's `vaultmesh.lease_term` in line with this term (no round trip when
    /// unfenced). Runs on every connection the pool hands out.
    pub(super) async fn apply(&self, client: &mut ClientWrapper) -> Result<(), HookError> {
        let Some(term) = self.get() else {
            return Ok(());
        };
        let value = if term > 0 {
            term.to_string()
        } else {
            String::new()
        };
        client
            .simple_query(&format!("SET vaultmesh.lease_term = '{value}'"))
            .await
            .map(|_| ())
            .map_err(HookError::Backend)
    }
}

/// The lease row as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    /// Current term (0 before any guardian led).
    pub term: i64,
    /// Who took it (`<host>:<pid>` of the guardian).
    pub holder: Option<String>,
    /// When it was taken, RFC 3339.
    pub taken_at: Option<String>,
}

impl Store {
    /// This store's session term (see [`LeaseTerm`]).
    pub fn lease_term(&self) -> &LeaseTerm {
        &self.lease_term
    }

    /// Takes the next lease term for `holder`, on `client` (the advisory lock's own
    /// connection). Waits for writes in flight under the previous term to finish, at most
    /// [`TAKEOVER_WAIT`]: a write stuck under the old term fails the takeover (the caller
    /// gives up the lock and tries again later) rather than stalling it.
    pub async fn take_lease(client: &ClientWrapper, holder: &str) -> Result<i64, StoreError> {
        client
            .batch_execute(&format!(
                "SET lock_timeout = '{}ms'",
                TAKEOVER_WAIT.as_millis()
            ))
            .await?;
        let taken = client
            .query_one(
                "UPDATE guardian_lease SET term = term + 1, holder = $1, taken_at = now() \
                 RETURNING term",
                &[&holder],
            )
            .await;
        client.batch_execute("RESET lock_timeout").await?;
        Ok(taken?.get(0))
    }

    /// The lease row, for status pages.
    pub(crate) async fn lease(&self) -> Result<Lease, StoreError> {
        let client = self.pool().get().await?;
        let row = client
            .query_one(
                "SELECT term, holder, \
                 to_char(taken_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
                 FROM guardian_lease",
                &[],
            )
            .await?;
        Ok(Lease {
            term: row.get(0),
            holder: row.get(1),
            taken_at: row.get(2),
        })
    }
}

impl StoreError {
    /// Whether the database refused a guardian write because its lease term is stale.
    pub fn is_stale_term(&self) -> bool {
        self.sqlstate() == Some(STALE_TERM)
    }
}

#[cfg(test)]
mod tests {
    use super::LeaseTerm;

    /// A lease given up clears only its own term: a newer leader's term stays.
    #[test]
    fn an_old_lease_never_clears_a_newer_term() {
        let sessions = LeaseTerm::default();
        assert_eq!(sessions.get(), None);
        sessions.set(5);
        sessions.clear_if(4);
        assert_eq!(sessions.get(), Some(5));
        sessions.clear_if(5);
        assert_eq!(sessions.get(), Some(0));
    }
}
