//! High availability with real guardian processes: exactly one leads; the standby refuses to
//! anchor; when the leader is SIGKILLed the standby takes over within two integration
//! intervals and keeps signing. A leader that loses the lock in the middle of an epoch
//! writes no journal line after losing it; an epoch stored but not yet journaled when its
//! guardian was SIGKILLed is journaled as soon as a guardian leads again, not at the next
//! epoch.

mod common;

use common::{api_key, append, checkpoint_at, post};
use ledger::storage::{AnchorStore, CheckpointStore, Leadership};
use ledger::testing::{
    closed_port, http, redis_url, request, scratch_dir, wait_until_listening, TestDb,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const INTERVAL_MS: u64 = 300;

async fn spawn(db: &TestDb, key: &Path, journal: &Path) -> (Child, SocketAddr) {
    let api = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    let metrics = closed_port().await;
    let child = Command::new(env!("CARGO_BIN_EXE_vaultmesh-guardian"))
        .args(["--api-addr", &api.to_string()])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--database-url", &db.url(ledger::store::DbRole::Guardian)])
        .args(["--redis-url", &redis_url()])
        .args(["--mesh-id", "vaultmesh-test"])
        .arg("--signing-key-file")
        .arg(key)
        .arg("--journal-path")
        .arg(journal)
        .args(["--integrate-interval-ms", &INTERVAL_MS.to_string()])
        .args(["--epoch-interval-secs", "3600"])
        .args(["--log", "warn"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn guardian: {e}"));
    wait_until_listening(api, "guardian", Duration::from_secs(20)).await;
    (child, api)
}

/// A fresh database, a scratch directory and a signing key in it.
async fn setup(tag: &str) -> (TestDb, PathBuf, PathBuf) {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir(tag);
    let key = dir.join("guardian.key");
    ledger::note::NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    (db, dir, key)
}

/// Waits until `api` reports `leader`.
async fn wait_leader(api: SocketAddr, leader: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while is_leader(api).await != Some(leader) {
        assert!(
            Instant::now() < deadline,
            "{api} never had leader = {leader}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Index of the one guardian that leads.
async fn one_leader(apis: [SocketAddr; 2]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states = [is_leader(apis[0]).await, is_leader(apis[1]).await];
        match states {
            [Some(true), Some(false)] => return 0,
            [Some(false), Some(true)] => return 1,
            [Some(true), Some(true)] => panic!("two leaders"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no leader: {states:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `sql` (one row, one bigint) as the schema owner until it is at least 1.
async fn wait_for_row(db: &TestDb, sql: &str, what: &str) {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = c
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0);
        if n >= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A session of the schema owner queued for the guardian lock (behind whoever holds it);
/// the task ends, with the session, once it holds the lock.
async fn queue_for_lock(db: &TestDb) -> tokio::task::JoinHandle<impl Send + 'static> {
    let holder = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let held = tokio::spawn(async move {
        holder
            .query_one("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        holder
    });
    wait_for_row(
        db,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        "the test queued for the lock",
    )
    .await;
    held
}

/// An admin `POST /v1/guardian/anchor` that returns the status, or 0 if the guardian died.
async fn anchor(api: SocketAddr, admin: &str) -> u16 {
    let auth = format!("Bearer {admin}");
    request(
        api,
        "POST",
        "/v1/guardian/anchor",
        &[("authorization", &auth)],
        b"",
    )
    .await
    .map_or(0, |(status, _)| status)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn is_leader(api: SocketAddr) -> Option<bool> {
    let (status, body) = http(api, "GET", "/v1/guardian/state").await.ok()?;
    (status == 200).then_some(())?;
    serde_json::from_str::<serde_json::Value>(&body).ok()?["leader"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_within_two_intervals_of_the_leader_dying() {
    let (db, dir, key) = setup("guardian-ha").await;
    let journal = dir.join("proofchain.jsonl");
    let (a, a_api) = spawn(&db, &key, &journal).await;
    let (b, b_api) = spawn(&db, &key, &journal).await;
    let mut children = [Some(a), Some(b)];
    let apis = [a_api, b_api];

    // Exactly one leads.
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        let states = [is_leader(a_api).await, is_leader(b_api).await];
        match states {
            [Some(true), Some(false)] => break 0,
            [Some(false), Some(true)] => break 1,
            [Some(true), Some(true)] => panic!("two leaders"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no leader: {states:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let standby = 1 - leader;
    append(&db.store, "drills", 10).await;
    checkpoint_at(&db.store, "drills", 10).await;
    let admin = api_key(&db.store, ledger::store::Role::Admin).await;
    let (status, body) = post(apis[standby], "/v1/guardian/anchor", Some(&admin)).await;
    assert_eq!(status, 409, "the standby never anchors: {body}");
    assert_eq!(body["error"]["code"], "not_leader", "{body}");

    // Kill the leader; the standby must lead within two intervals.
    let mut dead = children[leader].take().unwrap_or_else(|| unreachable!());
    let killed_at = Instant::now();
    dead.start_kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = dead.wait().await;
    while is_leader(apis[standby]).await != Some(true) {
        assert!(
            killed_at.elapsed() < Duration::from_millis(2 * INTERVAL_MS),
            "standby did not take over within two intervals"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = killed_at.elapsed();
    eprintln!("takeover after {took:?}");
    append(&db.store, "drills", 5).await;
    checkpoint_at(&db.store, "drills", 15).await;
    drop(children);
}

/// The advisory-lock key guardians compete for.
const LOCK_KEY: i64 = guardian::leader::LOCK_KEY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_deposed_mid_epoch_writes_no_journal_line() {
    let (db, dir, key) = setup("guardian-fence").await;
    let journals = [dir.join("a.jsonl"), dir.join("b.jsonl")];
    let (a, a_api) = spawn(&db, &key, &journals[0]).await;
    let (b, b_api) = spawn(&db, &key, &journals[1]).await;
    let mut children = [Some(a), Some(b)];
    let apis = [a_api, b_api];
    let leader = one_leader(apis).await;
    append(&db.store, "drills", 5).await;
    checkpoint_at(&db.store, "drills", 5).await;
    let admin = api_key(&db.store, ledger::store::Role::Admin).await;
    assert_eq!(anchor(apis[leader], &admin).await, 200);
    let before = read(&journals[leader]);
    assert_eq!(before.lines().count(), 1, "epoch 1 journaled");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !db
        .store
        .pending_checkpoints()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the guardian's own receipts never signed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The leader starts epoch 2 and stalls on the anchors table, which the owner holds.
    let mut owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let table = owner.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    table
        .batch_execute("LOCK TABLE anchors IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let epoch = tokio::spawn({
        let (api, admin) = (apis[leader], admin.clone());
        async move { anchor(api, &admin).await }
    });
    wait_for_row(
        &db,
        "SELECT count(*) FROM pg_locks WHERE relation = 'anchors'::regclass AND NOT granted",
        "the leader waiting on the anchors table",
    )
    .await;

    // It loses the lock for real: its lock connection is terminated, and the lock goes to a
    // session that queued for it first (so neither guardian can take it back).
    let held = queue_for_lock(&db).await;
    // (A role may terminate its own sessions; the schema owner is no superuser here.)
    let killer = db
        .role_client(ledger::store::DbRole::Guardian)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let terminated: i64 = killer
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) t",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(terminated, 1, "the leader's lock connection");
    let holder = held.await.unwrap_or_else(|e| panic!("{e}"));

    // The stalled epoch resumes: it is stored, but no sink line is written.
    table.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let status = epoch.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        status, 409,
        "the deposed leader reports it is not the leader"
    );
    let stored = db
        .store
        .latest_anchor()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|a| a.record.epoch);
    assert_eq!(stored, Some(2), "epoch 2 was stored mid-way");
    assert_eq!(
        read(&journals[leader]),
        before,
        "no line after losing the lock"
    );
    assert_eq!(is_leader(apis[leader]).await, Some(false));

    // The deposed one goes; the other takes the lock once it is free, and the journal of the
    // deposed one never changes.
    let mut deposed = children[leader].take().unwrap_or_else(|| unreachable!());
    deposed.start_kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = deposed.wait().await;
    drop(holder);
    wait_leader(apis[1 - leader], true).await;
    assert_eq!(read(&journals[leader]), before);
    drop(children);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_stored_but_not_journaled_at_a_sigkill_is_journaled_at_start() {
    let (db, dir, key) = setup("guardian-catch-up").await;
    let journal = dir.join("proofchain.jsonl");
    let (mut g, api) = spawn(&db, &key, &journal).await;
    wait_leader(api, true).await;
    append(&db.store, "drills", 5).await;
    checkpoint_at(&db.store, "drills", 5).await;
    let admin = api_key(&db.store, ledger::store::Role::Admin).await;

    // Another process holds the journal's lock: the epoch is stored, and the sink waits.
    let blocker = std::fs::File::create(&journal).unwrap_or_else(|e| panic!("{e}"));
    blocker.lock().unwrap_or_else(|e| panic!("{e}"));
    let epoch = tokio::spawn({
        let admin = admin.clone();
        async move { anchor(api, &admin).await }
    });
    wait_for_row(&db, "SELECT count(*) FROM anchors", "epoch 1 stored").await;

    // SIGKILL between storing the anchor and journaling it.
    g.start_kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = g.wait().await;
    assert_eq!(epoch.await.unwrap_or_else(|e| panic!("{e}")), 0);
    drop(blocker);
    assert_eq!(read(&journal), "", "nothing journaled");
    let accepted = db
        .store
        .epochs_accepted_by_sink("journal")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(accepted.is_empty(), "{accepted:?}");

    // A guardian starts (epochs are an hour apart): it journals epoch 1 at once.
    let (g, _api) = spawn(&db, &key, &journal).await;
    let stored = db
        .store
        .anchor(1)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no epoch 1"))
        .record
        .stored_text()
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while read(&journal) != format!("{stored}\n") {
        assert!(
            Instant::now() < deadline,
            "not journaled: {:?}",
            read(&journal)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_row(
        &db,
        "SELECT count(*) FROM receipts r JOIN scrolls s ON s.id = r.scroll_id \
         WHERE s.name = 'guardian' AND r.type = 'anchor_success' \
         AND convert_from(r.leaf, 'UTF8')::jsonb -> 'payload' ->> 'catch_up' = 'true'",
        "an anchor_success receipt for the catch-up",
    )
    .await;
    let latest = db
        .store
        .latest_anchor()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|a| a.record.epoch);
    assert_eq!(latest, Some(1), "no new epoch was needed");
    drop(g);
}

/// The lease term in `/v1/guardian/state`, if the guardian answers and leads.
async fn lease_term(api: SocketAddr) -> Option<i64> {
    let (status, body) = http(api, "GET", "/v1/guardian/state").await.ok()?;
    (status == 200).then_some(())?;
    serde_json::from_str::<serde_json::Value>(&body).ok()?["lease_term"].as_i64()
}

/// The SQLSTATE of a guardian-role statement on a leader-only table under `term` ("" for
/// none), or "ok".
async fn fenced_write(db: &TestDb, term: &str) -> String {
    let c = db
        .role_client(ledger::store::DbRole::Guardian)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if !term.is_empty() {
        c.batch_execute(&format!("SET vaultmesh.lease_term = '{term}'"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    match c
        .batch_execute("UPDATE trees SET updated_at = updated_at WHERE false")
        .await
    {
        Ok(()) => "ok".into(),
        Err(e) => e
            .as_db_error()
            .map(|d| d.code().code().to_string())
            .unwrap_or_else(|| panic!("{e}")),
    }
}

/// What a failover does to a leader that is still alive: the advisory lock it holds is on a
/// server that no longer counts, and a guardian on the promoted standby takes the next lease
/// term. Simulated here by a session that bumps the term while the leader keeps its lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_term_moved_on_writes_nothing_more() {
    let (db, dir, key) = setup("guardian-lease").await;
    let (g, api) = spawn(&db, &key, &dir.join("proofchain.jsonl")).await;
    wait_leader(api, true).await;
    append(&db.store, "drills", 5).await;
    checkpoint_at(&db.store, "drills", 5).await;
    let term = db.store.lease().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(term.term >= 1, "{term:?}");
    assert_eq!(lease_term(api).await, Some(term.term));
    let pid = g.id().unwrap_or_else(|| panic!("guardian pid"));
    assert!(
        term.holder
            .as_deref()
            .is_some_and(|h| h.ends_with(&format!(":{pid}"))),
        "{term:?}"
    );

    // The database refuses a guardian's leader-only write under no term or a stale one.
    let current = term.term.to_string();
    assert_eq!(fenced_write(&db, "").await, "VML01");
    assert_eq!(fenced_write(&db, "0").await, "VML01");
    assert_eq!(fenced_write(&db, "x; DROP TABLE trees").await, "VML01");
    assert_eq!(
        fenced_write(&db, &(term.term + 1).to_string()).await,
        "VML01"
    );
    assert_eq!(fenced_write(&db, &current).await, "ok");
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute("UPDATE trees SET updated_at = updated_at WHERE false")
        .await
        .unwrap_or_else(|e| panic!("the owner is not fenced: {e}"));
    // Terms only grow, and the lease row stays.
    let guardian_role = db
        .role_client(ledger::store::DbRole::Guardian)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for sql in [
        "UPDATE guardian_lease SET term = term - 1",
        "DELETE FROM guardian_lease",
    ] {
        assert!(guardian_role.batch_execute(sql).await.is_err(), "{sql}");
    }

    // A session queues for the lock (so the deposed leader cannot take it back), then the
    // term moves on while the leader still holds its lock.
    let held = queue_for_lock(&db).await;
    guardian_role
        .batch_execute(
            "UPDATE guardian_lease SET term = term + 1, holder = 'promoted-standby', \
             taken_at = now()",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_leader(api, false).await;
    assert_eq!(fenced_write(&db, &current).await, "VML01");
    let holder = held.await.unwrap_or_else(|e| panic!("{e}"));

    // Receipts keep arriving; nobody leads, so nothing is signed beyond 5.
    append(&db.store, "drills", 3).await;
    let signed = |db: &TestDb| {
        let store = db.store.clone();
        async move {
            store
                .latest_checkpoints()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .find(|c| c.scroll == "drills")
                .map(|c| c.tree_size)
        }
    };
    // (An absence: three integration intervals with nothing signed.)
    tokio::time::sleep(Duration::from_millis(3 * INTERVAL_MS)).await;
    assert_eq!(signed(&db).await, Some(5));

    // The lock comes free: the guardian leads again under a newer term and signs on.
    drop(holder);
    wait_leader(api, true).await;
    checkpoint_at(&db.store, "drills", 8).await;
    let now = db.store.lease().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(now.term, term.term + 2, "{now:?}");
    assert_eq!(lease_term(api).await, Some(now.term));
    drop(g);
}
