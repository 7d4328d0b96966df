//! Shared by the end-to-end tests that run the services as processes.

#![allow(dead_code)]

use ledger::testing::{closed_port, redis_url, wait_until_listening, TestDb};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A workspace binary beside this package's own (built by `cargo test --workspace`).
pub fn bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_vaultmesh")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (ops/test.sh)",
        path.display()
    );
    path
}

/// A service process and where it listens.
pub struct Service {
    /// Kills the process when dropped.
    pub child: Child,
    /// Its API address.
    pub api: SocketAddr,
    /// Its metrics port (127.0.0.1).
    pub metrics: u16,
}

/// Starts `vaultmesh-{name}` on free loopback ports against `db`, logging to `dir/{name}.log`,
/// and waits until its API listens.
pub async fn spawn(name: &str, db: &TestDb, dir: &Path, extra: &[String]) -> Service {
    let api = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    let metrics = closed_port().await;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))
        .unwrap_or_else(|e| panic!("log file: {e}"));
    let child = Command::new(bin(&format!("vaultmesh-{name}")))
        .args(["--api-addr", &api.to_string()])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--database-url", &db.app_url])
        .args(["--redis-url", &redis_url()])
        .args(["--mesh-id", "vaultmesh-e2e"])
        .args(["--log", "warn"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    wait_until_listening(api, name, Duration::from_secs(30)).await;
    Service {
        child,
        api,
        metrics,
    }
}

/// Starts a guardian signing with `key`, journaling to `journal`, integrating every 100 ms.
pub async fn spawn_guardian(db: &TestDb, dir: &Path, key: &Path, journal: &Path) -> Service {
    let args = [
        "--signing-key-file".into(),
        arg(key),
        "--journal-path".into(),
        arg(journal),
        "--integrate-interval-ms".into(),
        "100".into(),
    ];
    spawn("guardian", db, dir, &args).await
}

/// A guardian signing key in `dir` (and its vkey file beside it).
pub fn signing_key(dir: &Path) -> PathBuf {
    let key = dir.join("guardian.key");
    let signer = ledger::note::NoteSigner::generate_to_file("vaultmesh-e2e/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("guardian.vkey"), signer.verifier().to_vkey())
        .unwrap_or_else(|e| panic!("{e}"));
    key
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
