//! Replicated PostgreSQL end to end, with real processes: `ops/ha/up.sh` (a pg_auto_failover
//! monitor, a primary and two synchronous standbys; two portals, two guardians and the oracle
//! on one multi-host URL) with this build's binaries, its own state directory and ports.
//! - The failover drill (`vaultmesh drill failover`, as `ops/ha/drill.sh` runs it): 16
//!   clients write through both portals while the primary, a standby, the primary again and
//!   the monitor are SIGKILLed (keeper and postmaster) and started again. Nothing
//!   acknowledged is lost, the scroll has no gap, every checkpoint seen is consistent with the
//!   last and no size is signed with two roots, `verify log` passes after each repetition,
//!   and the leader's verification pass is clean; writes come back within 30 s.
//! - `replicated` durability: with both standbys killed a write is never acknowledged (503
//!   JSON) and readiness is 503, while a portal at `local` durability on the same formation
//!   still answers 201 (on another scroll: a commit waiting for a standby keeps its scroll's
//!   head row locked); with the standbys back, the replicated portal acknowledges again.
//! - A read replica: a portal with `--read-database-url` on a standby reads what the standby
//!   has from it, and, with the standby's replay paused, reads a fresh receipt and a proof up
//!   to a fresh checkpoint from the primary; it never serves an older checkpoint than one it
//!   already served. An oracle with the same option reads its evidence's inclusion proofs
//!   from the standby once it holds the checkpoint.
//! - No statement ever reached a standby (the connector skips read-only servers).

mod common;

use common::{bin, repo, sample, stop_script};
use ledger::testing::{call, scratch_dir, wait_until_listening};
use serde_json::Value;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The `export K=V` lines of an env file (quotes around a value removed).
fn env_file(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// A base port with the formation's four ports, the services' and their metrics' free now,
/// below the kernel's ephemeral range (32768 up), which outgoing connections draw from.
fn free_base() -> u16 {
    let start = 22_000 + (std::process::id() % 300) as u16 * 20;
    (0..100)
        .map(|i| (start + i * 41 - 22_000) % 10_000 + 22_000)
        .find(|base| (0..131).all(|o| TcpListener::bind(("127.0.0.1", base + o)).is_ok()))
        .unwrap_or_else(|| panic!("no free port range"))
}

/// Runs the formation control command with `args`; returns its output.
async fn ctl(command: &str, args: &[&str]) -> String {
    let mut parts = command.split_whitespace();
    let program = parts.next().unwrap_or_else(|| panic!("empty ctl"));
    let out = Command::new(program)
        .args(parts)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    assert!(
        out.status.success(),
        "{command} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A service role's multi-host URL over the formation's three nodes (dev passwords).
fn role_url(base: u16, role: &str) -> String {
    format!(
        "postgres://vaultmesh_{role}:vaultmesh_{role}@127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/vaultmesh?target_session_attrs=read-write",
        base + 1,
        base + 2,
        base + 3
    )
}

/// A service role's URL of one node (a standby, for `--read-database-url`).
fn node_url(port: u16, role: &str) -> String {
    format!("postgres://vaultmesh_{role}:vaultmesh_{role}@127.0.0.1:{port}/vaultmesh")
}

/// Starts `vaultmesh-<service>` on `api` (metrics on `metrics`) without Redis or mesh
/// membership, with `args` added, and waits until it listens.
async fn service(service: &str, api: SocketAddr, metrics: u16, args: &[String]) -> Child {
    let child = Command::new(bin(&format!("vaultmesh-{service}")))
        .args(["--api-addr", &api.to_string()])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--redis-url", "", "--mesh-node", "false", "--log", "warn"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{service}: {e}"));
    wait_until_listening(api, service, Duration::from_secs(30)).await;
    child
}

/// Runs `sql` as the superuser on the node at `port`; its unaligned output, or psql's error.
async fn node_sql(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-U", "postgres", "-d", "vaultmesh", "-c", sql])
        .output()
        .await
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("{sql}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `vaultmesh_replica_reads_total{read, source}` of the service whose metrics are on `port`.
async fn replica_reads(port: u16, read: &str, source: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    sample(
        &text,
        "vaultmesh_replica_reads_total",
        &format!("read=\"{read}\",source=\"{source}\""),
    )
    .unwrap_or(0.0)
}

/// A portal's latest checkpoint of `drills`, as JSON.
async fn drills_checkpoint(portal: SocketAddr) -> (u16, Value) {
    call(
        portal,
        "GET",
        "/v1/scrolls/drills/checkpoint",
        None,
        &[("accept", "application/json")],
        "",
    )
    .await
}

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

async fn write(portal: SocketAddr, key: &str, n: u32) -> (u16, Value) {
    write_to(portal, key, "drills", "drill_durability", n).await
}

async fn write_to(portal: SocketAddr, key: &str, scroll: &str, kind: &str, n: u32) -> (u16, Value) {
    call(
        portal,
        "POST",
        &format!("/v1/scrolls/{scroll}/receipts"),
        Some(key),
        &[],
        &format!(r#"{{"type":"{kind}","payload":{{"n":{n}}}}}"#),
    )
    .await
}

/// Stops whatever a failed run left behind: the services (their command lines name the state
/// directory or, for the oracle, its address) and the formation.
struct Leftovers {
    state: std::path::PathBuf,
    oracle: String,
    base: u16,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pattern in [self.state.display().to_string(), self.oracle.clone()] {
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-f", "--", &pattern])
                .status();
        }
        let _ = std::process::Command::new("bash")
            .arg(repo().join("ops/ha/ctl.sh"))
            .arg(self.state.join("pg"))
            .arg(self.base.to_string())
            .arg("stop")
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_dies_without_losing_one_acknowledged_receipt() {
    let dir = scratch_dir("ha-stack");
    let state = dir.join("state");
    let base = free_base();
    let _leftovers = Leftovers {
        state: state.clone(),
        oracle: format!("--api-addr 127.0.0.1:{}", base + 30),
        base,
    };
    let bin_dir = bin("vaultmesh").parent().unwrap_or(&dir).to_path_buf();
    let mut up = Command::new("bash")
        .arg(repo().join("ops/ha/up.sh"))
        .env("VAULTMESH_HA_STATE_DIR", &state)
        .env("VAULTMESH_HA_BASE_PORT", base.to_string())
        .env("VAULTMESH_HA_SERVICE_PORT", (base + 10).to_string())
        .env("VAULTMESH_HA_PORTALS", "2")
        .env("VAULTMESH_HA_GUARDIANS", "2")
        .env("VAULTMESH_INTEGRATE_INTERVAL_MS", "200")
        .env("VAULTMESH_EPOCH_INTERVAL_SECS", "5")
        .env("VAULTMESH_BIN_DIR", &bin_dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("up.log")).unwrap_or_else(|e| panic!("{e}")))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("ops/ha/up.sh: {e}"));
    let env_path = state.join("ha.env");
    let deadline = Instant::now() + Duration::from_secs(240);
    while !env_path.exists() {
        if let Ok(Some(status)) = up.try_wait() {
            panic!(
                "ops/ha/up.sh exited ({status}): {}",
                std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "ops/ha/up.sh never came up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let env = env_file(&env_path);
    let ctl_cmd = env["VAULTMESH_HA_CTL"].clone();
    let portals: Vec<String> = env["VAULTMESH_PORTAL_URLS"]
        .split_whitespace()
        .map(String::from)
        .collect();
    let guardians: Vec<String> = env["VAULTMESH_GUARDIAN_URLS"]
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!((portals.len(), guardians.len()), (2, 2), "{env:?}");

    // The drill: four repetitions (primary, standby, primary, monitor).
    let summary = dir.join("drill.json");
    let mut drill = Command::new(bin("vaultmesh"));
    drill.args([
        "drill",
        "failover",
        "--repetitions",
        "4",
        "--warm-writes",
        "100",
    ]);
    for p in &portals {
        drill.args(["--portal", p]);
    }
    for g in &guardians {
        drill.args(["--guardian", g]);
    }
    let status = drill
        .args(["--ctl", &ctl_cmd, "--max-window-secs", "30"])
        .arg("--verify-state")
        .arg(dir.join("verify.json"))
        .arg("--json-out")
        .arg(&summary)
        .env("VAULTMESH_WRITER_KEY", &env["VAULTMESH_WRITER_KEY"])
        .env("VAULTMESH_READER_KEY", &env["VAULTMESH_READER_KEY"])
        .env("VAULTMESH_ADMIN_KEY", &env["VAULTMESH_ADMIN_KEY"])
        .env("VAULTMESH_GUARDIAN_VKEY", &env["VAULTMESH_GUARDIAN_VKEY"])
        .status()
        .await
        .unwrap_or_else(|e| panic!("vaultmesh drill: {e}"));
    let figures: Value = serde_json::from_slice(
        &std::fs::read(&summary).unwrap_or_else(|e| panic!("{}: {e}", summary.display())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "the drill found a problem: {figures:#}");
    assert_eq!(figures["lost"], 0, "{figures:#}");
    assert_eq!(figures["gaps"], 0, "{figures:#}");
    assert_eq!(figures["conflicting_checkpoints"], 0, "{figures:#}");
    assert_eq!(figures["inconsistent_checkpoints"], 0, "{figures:#}");
    assert!(
        figures["acknowledged"].as_u64().unwrap_or(0) >= 800,
        "{figures:#}"
    );
    let targets: Vec<&str> = figures["repetitions"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["target"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(targets, ["primary", "standby", "primary", "monitor"]);
    for r in figures["repetitions"].as_array().into_iter().flatten() {
        if r["target"] == "primary" {
            // A real failover: writes were refused for a while, then came back.
            assert!(r["failed_requests"].as_u64().unwrap_or(0) > 0, "{r}");
        }
        assert!(r["window_secs"].as_f64().unwrap_or(f64::MAX) < 30.0, "{r}");
    }

    // A read replica: a portal reading from a standby whose replay is paused.
    let reader = env["VAULTMESH_READER_KEY"].clone();
    let writer = env["VAULTMESH_WRITER_KEY"].clone();
    let secondary = ctl(&ctl_cmd, &["state"])
        .await
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("secondary"))
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| panic!("no standby"));
    let standby_port = base
        + secondary
            .trim_start_matches("node")
            .parse::<u16>()
            .unwrap_or(0);
    let via_replica = SocketAddr::from(([127, 0, 0, 1], base + 6));
    let replica_metrics = base + 106;
    let vkey_file = state.join("guardian.vkey").display().to_string();
    let mut replica_portal = service(
        "portal",
        via_replica,
        replica_metrics,
        &[
            "--database-url".into(),
            role_url(base, "portal"),
            "--read-database-url".into(),
            node_url(standby_port, "portal"),
            "--guardian-vkey-file".into(),
            vkey_file.clone(),
        ],
    )
    .await;
    let (s, v) = call(
        via_replica,
        "GET",
        "/v1/scrolls/drills/receipts/0",
        Some(&reader),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        replica_reads(replica_metrics, "receipt", "replica").await,
        1.0,
        "receipt 0 is on the replica"
    );
    let (s, before) = drills_checkpoint(via_replica).await;
    assert_eq!(s, 200, "{before}");
    node_sql(standby_port, "SELECT pg_wal_replay_pause()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (s, fresh) = write(addr(&portals[0]), &writer, 1_000).await;
    assert_eq!(s, 201, "{fresh}");
    let seq = fresh["seq"].as_u64().unwrap_or_else(|| panic!("{fresh}"));
    let (s, v) = call(
        via_replica,
        "GET",
        &format!("/v1/scrolls/drills/receipts/{seq}"),
        Some(&reader),
        &[],
        "",
    )
    .await;
    assert_eq!(
        s, 200,
        "a receipt the replica has not replayed is read from the primary: {v}"
    );
    assert_eq!(v["leaf_hash"], fresh["leaf_hash"]);
    assert!(replica_reads(replica_metrics, "receipt", "primary").await >= 1.0);
    // The guardian signs a checkpoint covering it; a proof up to it comes from the primary.
    let signed = common::eventually("a checkpoint covering the new receipt", 60, || async {
        let (_, cp) = drills_checkpoint(addr(&portals[0])).await;
        cp["tree_size"].as_u64().filter(|n| *n > seq)
    })
    .await;
    let path = format!("/v1/scrolls/drills/proof/inclusion?seq={seq}&tree_size={signed}");
    let (s, from_replica_portal) = call(via_replica, "GET", &path, None, &[], "").await;
    assert_eq!(s, 200, "{from_replica_portal}");
    let (_, from_primary_portal) = call(addr(&portals[0]), "GET", &path, None, &[], "").await;
    assert_eq!(from_replica_portal, from_primary_portal);
    // Having served a checkpoint of `signed`, this portal never serves an older one, though
    // its replica still holds only the older one.
    for _ in 0..3 {
        let (s, cp) = drills_checkpoint(via_replica).await;
        assert_eq!(s, 200, "{cp}");
        assert!(
            cp["tree_size"].as_u64().unwrap_or(0) >= signed,
            "went backwards: {cp} after {signed}"
        );
    }
    assert!(
        before["tree_size"].as_u64().unwrap_or(u64::MAX) < signed,
        "{before}"
    );
    node_sql(standby_port, "SELECT pg_wal_replay_resume()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = replica_portal.start_kill();
    let _ = replica_portal.wait().await;

    // The oracle proves its evidence from the replica once the replica holds the checkpoint.
    let (s, evidence) = write_to(
        addr(&portals[0]),
        &writer,
        "observability",
        "log_integrity_check",
        1,
    )
    .await;
    assert_eq!(s, 201, "{evidence}");
    let covering = evidence["seq"].as_u64().unwrap_or(0) + 1;
    common::eventually(
        "the standby replaying a checkpoint covering the evidence",
        60,
        || async move {
            let sql = format!(
                "SELECT coalesce(max(c.tree_size), 0) >= {covering} FROM checkpoints c \
                 JOIN scrolls s ON s.id = c.scroll_id WHERE s.name = 'observability'"
            );
            node_sql(standby_port, &sql)
                .await
                .ok()
                .filter(|out| out == "t")
        },
    )
    .await;
    let oracle_at = SocketAddr::from(([127, 0, 0, 1], base + 7));
    let oracle_metrics = base + 107;
    let mut oracle = service(
        "oracle",
        oracle_at,
        oracle_metrics,
        &[
            "--database-url".into(),
            role_url(base, "oracle"),
            "--read-database-url".into(),
            node_url(standby_port, "oracle"),
        ],
    )
    .await;
    let (s, answer) = call(
        oracle_at,
        "POST",
        "/v1/oracle/query",
        Some(&reader),
        &[],
        r#"{"question":"How are records protected from falsification?","frameworks":["iso27001"],"scrolls":["observability"]}"#,
    )
    .await;
    assert_eq!(s, 200, "{answer}");
    let proven = answer["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["leaf_hash"] == evidence["leaf_hash"])
        .unwrap_or_else(|| panic!("the evidence is cited: {answer}"));
    assert!(
        proven["proof"]["tree_size"].as_u64().unwrap_or(0) >= covering,
        "{proven}"
    );
    assert!(
        replica_reads(oracle_metrics, "inclusion_proof", "replica").await >= 1.0,
        "the oracle's proofs came from the replica"
    );
    let _ = oracle.start_kill();
    let _ = oracle.wait().await;

    // Replicated durability: with no standby, never a 201.
    let replicated = addr(&portals[0]);
    let (s, v) = write(replicated, &writer, 0).await;
    assert_eq!(s, 201, "{v}");
    let standbys: Vec<String> = ctl(&ctl_cmd, &["state"])
        .await
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("secondary"))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert_eq!(standbys.len(), 2, "{standbys:?}");
    for s in &standbys {
        ctl(&ctl_cmd, &["kill", s]).await;
    }
    // A portal at local durability on the same formation.
    let local = SocketAddr::from(([127, 0, 0, 1], base + 5));

    let mut local_portal = service(
        "portal",
        local,
        base + 105,
        &[
            "--database-url".into(),
            role_url(base, "portal"),
            "--durability".into(),
            "local".into(),
            "--guardian-vkey-file".into(),
            vkey_file,
        ],
    )
    .await;
    for n in 1..=3 {
        let started = Instant::now();
        let (s, v) = write(replicated, &writer, n).await;
        assert_eq!(s, 503, "replicated, no standby: {v}");
        assert_eq!(v["error"]["code"], "database_unavailable", "{v}");
        assert!(started.elapsed() < Duration::from_secs(15), "{v}");
        // (Another scroll: a commit waiting for a standby holds its scroll's head row.)
        let (s, v) = write_to(local, &writer, "compliance", "audit_durability", n).await;
        assert_eq!(s, 201, "local durability needs no standby: {v}");
    }
    let (s, v) = call(replicated, "GET", "/v1/ready", None, &[], "").await;
    assert_eq!(s, 503, "not ready without a synchronous standby: {v}");
    for s in &standbys {
        ctl(&ctl_cmd, &["start", s]).await;
    }
    ctl(&ctl_cmd, &["wait-healthy", "120"]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = write(replicated, &writer, 200).await;
        if s == 201 {
            break;
        }
        assert_eq!(s, 503, "{v}");
        assert!(
            Instant::now() < deadline,
            "replicated writes never came back: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = local_portal.start_kill();
    let _ = local_portal.wait().await;

    // Nothing was ever sent to a standby (nor to a primary being demoted).
    for node in ["node1", "node2", "node3"] {
        let logs = state.join("pg").join(node).join("log");
        for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(
                !text.contains("read-only transaction"),
                "{node}: a statement reached a read-only server"
            );
        }
    }
    // SIGTERM stops the services and the formation.
    stop_script(&mut up, "ops/ha/up.sh").await;
    let pg = state.join("pg");
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("pg_autoctl run --pgdata {}", pg.display())])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        left.stdout.is_empty(),
        "formation members still running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
