//! High availability with two guardian processes: exactly one leads; the standby refuses to
//! anchor; when the leader is SIGKILLed the standby takes over within two integration
//! intervals and keeps signing.

mod common;

use common::{api_key, append, checkpoint_at, post};
use ledger::testing::{closed_port, http, redis_url, scratch_dir, wait_until_listening, TestDb};
use std::net::SocketAddr;
use std::path::Path;
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
        .args(["--log", "warn"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn guardian: {e}"));
    wait_until_listening(api, "guardian", Duration::from_secs(20)).await;
    (child, api)
}

async fn is_leader(api: SocketAddr) -> Option<bool> {
    let (status, body) = http(api, "GET", "/v1/guardian/state").await.ok()?;
    (status == 200).then_some(())?;
    serde_json::from_str::<serde_json::Value>(&body).ok()?["leader"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_within_two_intervals_of_the_leader_dying() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("guardian-ha");
    let key = dir.join("guardian.key");
    ledger::note::NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
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
