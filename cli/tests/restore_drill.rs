//! The backup and restore drill (ops/restore-drill.sh) on a ledger with checkpoints, two
//! anchored epochs and a journal: the backup restores into a scratch database and the
//! guardian verifies it against the journal; a backup whose journal was altered fails.

mod common;

use common::{arg, bin, repo, signing_key, spawn_guardian};
use ledger::storage::KeyStore;
use ledger::store::Role;
use ledger::testing::{append_receipts, call, scratch_dir, TestDb};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs the drill with `key` (`--signing-key` or `--vkey`); its exit code, the guardian's
/// JSON report and the script's log.
fn drill(db: &TestDb, journal: &Path, key: (&str, &Path)) -> (i32, serde_json::Value, String) {
    let out = Command::new("bash")
        .arg(repo().join("ops/restore-drill.sh"))
        .args(["--database-url", &db.owner_url])
        .args(["--journal", &arg(journal)])
        .args([key.0, &arg(key.1)])
        .args(["--mesh-id", "vaultmesh-e2e"])
        .args([
            "--bin",
            &arg(bin("vaultmesh-guardian").parent().unwrap_or(Path::new("."))),
        ])
        .output()
        .unwrap_or_else(|e| panic!("restore drill: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("report: {e}\nstdout: {stdout}\nlog: {log}"));
    (out.status.code().unwrap_or(-1), report, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_verifies_against_the_journal() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("restore-drill");
    let key = signing_key(&dir);
    let journal = dir.join("proofchain.jsonl");
    let admin = db
        .store
        .create_api_key(Role::Admin, None, "drill")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    let guardian = spawn_guardian(&db, &dir, &key, &journal).await;
    for (scroll, n) in [("drills", 40), ("compliance", 25)] {
        append_receipts(&db.store, scroll, "drill_completed", n).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, v) = call(
                guardian.api,
                "POST",
                "/v1/guardian/anchor",
                Some(&admin),
                &[],
                "",
            )
            .await;
            // An epoch anchors the latest checkpoints: wait until they cover what was appended.
            if s == 200 && v.to_string().contains(&format!("\"tree_size\":{n}")) {
                break;
            }
            assert!(s == 200 || s == 409, "{s} {v}");
            assert!(
                Instant::now() < deadline,
                "never anchored {scroll} at {n}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(guardian);

    // Checked with the public vkey alone, as an auditor would.
    let (code, report, log) = drill(&db, &journal, ("--vkey", &dir.join("guardian.vkey")));
    assert_eq!(code, 0, "{report}\n{log}");
    assert_eq!(report["intact"], true, "{report}");
    assert!(report["epochs"].as_u64().unwrap_or(0) >= 2, "{report}");
    assert!(report["scrolls"].as_u64().unwrap_or(0) >= 12, "{report}");
    assert!(log.contains("restore drill PASSED"), "{log}");
    assert!(!log.contains("differs from the source"), "{log}");

    // A backup whose journal was edited after the fact does not pass.
    let text = std::fs::read_to_string(&journal).unwrap_or_else(|e| panic!("{e}"));
    let forged = dir.join("forged.jsonl");
    std::fs::write(&forged, text.replacen("\"epoch\":1", "\"epoch\":1 ", 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, report, log) = drill(&db, &forged, ("--signing-key", &key));
    assert_eq!(code, 1, "{report}\n{log}");
    assert!(
        report["findings"]
            .to_string()
            .contains("journal line for epoch 1 differs"),
        "{report}"
    );
    assert!(log.contains("restore drill FAILED"), "{log}");

    // Another guardian's key does not verify the checkpoints.
    let other = scratch_dir("restore-drill-other");
    let (code, report, log) = drill(&db, &journal, ("--signing-key", &signing_key(&other)));
    assert_eq!(code, 1, "{report}\n{log}");

    // Scratch databases are dropped after each drill.
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let left = c
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'vaultmesh_drill_%'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(left.is_empty(), "{} drill databases left", left.len());
}
