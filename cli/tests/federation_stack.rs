//! `ops/federation/up.sh` with this build's binaries, its own state directory, databases and
//! ports: three meshes come up witnessing one another, each mesh's env file lets a script
//! drive it, a receipt written to one mesh ends in a checkpoint the two others cosigned, the
//! federation Prometheus configuration scrapes all six services with their `mesh` label, and
//! SIGTERM stops everything.

mod common;

use common::{bin, repo, sum, Prometheus};
use ledger::testing::{call, scratch_dir, wait_until_listening};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The `export K=V` lines of an env file.
fn env_file(path: &std::path::Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A base port whose 27 successors are all free now.
fn free_base() -> u16 {
    let start = 20_000 + (std::process::id() % 2000) as u16 * 10;
    (0..200)
        .map(|i| start + i * 37)
        .find(|base| (0..27).all(|o| TcpListener::bind(("127.0.0.1", base + o)).is_ok()))
        .unwrap_or_else(|| panic!("no free port range"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_federation_up_brings_up_three_meshes_witnessing_one_another() {
    let dir = scratch_dir("federation-stack");
    let state = dir.join("state");
    let prefix = format!("vm_fedstack_{}", std::process::id());
    let base = free_base();
    let start = || {
        let mut up = Command::new("bash");
        up.arg(repo().join("ops/federation/up.sh"))
            .env("VAULTMESH_FEDERATION_STATE_DIR", &state)
            .env("VAULTMESH_FEDERATION_DATABASE_PREFIX", &prefix)
            .env("VAULTMESH_FEDERATION_BASE_PORT", base.to_string())
            .env("VAULTMESH_INTEGRATE_INTERVAL_MS", "100")
            .env("VAULTMESH_REMOTE_POLL_INTERVAL_MS", "200")
            .env(
                "VAULTMESH_BIN_DIR",
                bin("vaultmesh").parent().unwrap_or(&dir),
            )
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("up.log"))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .kill_on_drop(true);
        up.spawn()
            .unwrap_or_else(|e| panic!("ops/federation/up.sh: {e}"))
    };
    let mut up = start();
    let addr =
        |mesh: u16, offset: u16| SocketAddr::from(([127, 0, 0, 1], base + 10 * mesh + offset));
    for mesh in 0..3 {
        for offset in [0, 1] {
            wait_until_listening(
                addr(mesh, offset),
                "federation stack",
                Duration::from_secs(90),
            )
            .await;
        }
    }
    let envs: Vec<HashMap<String, String>> = ["mesh-a", "mesh-b", "mesh-c"]
        .iter()
        .map(|m| env_file(&state.join(format!("{m}.env"))))
        .collect();
    for (i, env) in envs.iter().enumerate() {
        for k in [
            "VAULTMESH_PORTAL_URL",
            "VAULTMESH_GUARDIAN_URL",
            "VAULTMESH_PORTAL_METRICS_URL",
            "VAULTMESH_GUARDIAN_METRICS_URL",
            "VAULTMESH_ADMIN_KEY",
            "VAULTMESH_WRITER_KEY",
            "VAULTMESH_READER_KEY",
            "VAULTMESH_GUARDIAN_VKEY",
            "VAULTMESH_WITNESS_VKEY",
        ] {
            assert!(env.contains_key(k), "mesh {i}: {k} missing");
        }
        assert_eq!(
            env["VAULTMESH_PORTAL_URL"],
            format!("http://{}", addr(i as u16, 0))
        );
    }
    // A receipt to mesh-b: its checkpoint is cosigned by mesh-a's and mesh-c's witnesses.
    let b = &envs[1];
    let (s, v) = call(
        addr(1, 0),
        "POST",
        "/v1/scrolls/drills/receipts",
        Some(&b["VAULTMESH_WRITER_KEY"]),
        &[],
        r#"{"type":"drill_completed","payload":{"drill_id":"fed-1","outcome":"pass"}}"#,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = call(
            addr(1, 0),
            "GET",
            "/v1/scrolls/drills/checkpoint?witnessed=2",
            None,
            &[("accept", "application/json")],
            "",
        )
        .await;
        if s == 200 && v["tree_size"] == 1 {
            let lines = v["cosignatures"].as_array().map_or(0, Vec::len);
            assert_eq!(lines, 2, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "never witnessed: {s} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The federation Prometheus configuration, pointed at this stack's ports.
    let config = std::fs::read_to_string(repo().join("ops/prometheus/prometheus-federation.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = std::fs::canonicalize(repo().join("ops/prometheus/rules"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = config
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("rules/*.yaml", &format!("{}/*.yaml", rules.display()));
    for mesh in 0..3u16 {
        for offset in [5u16, 6] {
            let from = format!("'127.0.0.1:{}'", 8180 + 10 * mesh + offset);
            assert!(config.contains(&from), "{from}");
            config = config.replace(&from, &format!("'{}'", addr(mesh, offset)));
        }
    }
    let prom = Prometheus::start(&dir, &config).await;
    prom.wait_for(r#"up{job=~"vaultmesh-.*",mesh=~"mesh-.*"} == 1"#, |s| {
        s.len() == 6
    })
    .await;
    prom.wait_for(
        r#"sum(vaultmesh_federation_cosignatures_total{job="vaultmesh-guardian",mesh="mesh-b"})"#,
        |s| sum(s) >= 2.0,
    )
    .await;

    common::stop_script(&mut up, "ops/federation/up.sh").await;
    for mesh in 0..3 {
        for offset in [0, 1] {
            assert!(
                TcpListener::bind(addr(mesh, offset)).is_ok(),
                "port {} still taken",
                addr(mesh, offset)
            );
        }
    }
    // Run again: the same keys, API keys and data are reused.
    let mut up = start();
    for mesh in 0..3 {
        for offset in [0, 1] {
            wait_until_listening(
                addr(mesh, offset),
                "federation stack",
                Duration::from_secs(90),
            )
            .await;
        }
    }
    for (i, m) in ["mesh-a", "mesh-b", "mesh-c"].iter().enumerate() {
        let again = env_file(&state.join(format!("{m}.env")));
        assert_eq!(again, envs[i], "{m}: the state was not reused");
    }
    let (s, v) = call(
        addr(1, 0),
        "GET",
        "/v1/scrolls/drills/checkpoint?witnessed=2",
        None,
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(
        (s, v["tree_size"].clone()),
        (200, serde_json::json!(1)),
        "{v}"
    );
    common::stop_script(&mut up, "ops/federation/up.sh").await;
    // The three databases the script made are dropped (their owner, the schema owner role,
    // may drop them from any database it reaches).
    let scratch = ledger::testing::TestDb::new()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = scratch
        .owner_client()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for m in ["a", "b", "c"] {
        let _ = client
            .execute(
                &format!("DROP DATABASE IF EXISTS {prefix}_{m} WITH (FORCE)"),
                &[],
            )
            .await;
    }
}
