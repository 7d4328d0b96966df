//! The guardian lease against writes in flight: a takeover waits for a leader-only write
//! already running under the old term (so it lands before the new term exists, never after),
//! every later write under the old term is refused, and a write stuck under the old term
//! makes the takeover give up after `TAKEOVER_WAIT` instead of stalling it.

use ledger::storage::Leadership;
use ledger::store::{DbRole, Store, STALE_TERM, TAKEOVER_WAIT};
use ledger::testing::TestDb;
use std::time::{Duration, Instant};

/// A guardian-role session in a transaction that wrote a leader-only table under the current
/// term (and so holds a share lock on the lease row until it ends).
async fn write_in_flight(db: &TestDb) -> (tokio_postgres::Client, i64) {
    let c = db
        .role_client(DbRole::Guardian)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let term: i64 = c
        .query_one(
            "UPDATE guardian_lease SET term = term + 1, holder = 'old', taken_at = now() \
             RETURNING term",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    c.batch_execute(&format!(
        "BEGIN; SET LOCAL vaultmesh.lease_term = '{term}'; \
         UPDATE trees SET updated_at = updated_at WHERE false"
    ))
    .await
    .unwrap_or_else(|e| panic!("the current term writes: {e}"));
    (c, term)
}

/// A guardian-role connection of its own, as the leadership's lock connection is.
async fn lock_connection(db: &TestDb) -> deadpool_postgres::ClientWrapper {
    db.role_store(DbRole::Guardian)
        .unwrap_or_else(|e| panic!("{e}"))
        .dedicated_client()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the backend `pid` waits for a lock.
async fn waiting(db: &TestDb, pid: i32) -> bool {
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let n: i64 = owner
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
            &[&pid],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    n > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_for_a_write_in_flight_and_then_fences_it() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let (old, term) = write_in_flight(&db).await;
    let lock = lock_connection(&db).await;
    let pid: i32 = lock
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    let takeover = tokio::spawn(async move { Store::take_lease(&lock, "new").await });
    let deadline = Instant::now() + TAKEOVER_WAIT;
    while !waiting(&db, pid).await {
        assert!(Instant::now() < deadline, "the takeover never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!takeover.is_finished(), "the takeover must wait");
    old.batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("the write in flight lands: {e}"));
    let new = takeover
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(new, term + 1);
    // The old term writes nothing more.
    old.batch_execute(&format!("SET vaultmesh.lease_term = '{term}'"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = old
        .batch_execute("UPDATE trees SET updated_at = updated_at WHERE false")
        .await
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_string()));
    assert_eq!(refused.as_deref(), Some(STALE_TERM));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_stuck_under_the_old_term_fails_the_takeover_instead_of_stalling_it() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let (old, term) = write_in_flight(&db).await;
    let lock = lock_connection(&db).await;
    let started = Instant::now();
    let taken = Store::take_lease(&lock, "new").await;
    let waited = started.elapsed();
    assert!(taken.is_err(), "{taken:?}");
    assert!(
        waited >= TAKEOVER_WAIT && waited < TAKEOVER_WAIT + Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(
        db.store
            .lease()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .term,
        term,
        "the term did not move"
    );
    // The lock's connection is usable again, without the takeover's time limit.
    old.batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let next = Store::take_lease(&lock, "new")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next, term + 1);
}
