//! The README's first command, `ops/up.sh`, with this build's binaries, its own state
//! directory, database and ports: the stack comes up, the walk-through's steps work (submit,
//! read, checkpoint, anchor, journal, bundle verified offline, oracle), the dev-stack
//! Prometheus configuration scrapes all three services, and SIGTERM stops everything.

mod common;

use common::{arg, bin, repo, sum, Prometheus};
use ledger::testing::{call, closed_port, scratch_dir, wait_until_listening, TestDb};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The `export K=V` lines of the stack's `dev.env`.
fn dev_env(path: &std::path::Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_up_brings_up_a_working_stack_and_stops_it() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("dev-stack");
    let state = dir.join("state");
    let mut ports = Vec::new();
    for _ in 0..6 {
        ports.push(closed_port().await);
    }
    let names = ["PORTAL", "GUARDIAN", "ORACLE"];
    let mut up = Command::new("bash");
    up.arg(repo().join("ops/up.sh"))
        .env("VAULTMESH_STATE_DIR", &state)
        .env("VAULTMESH_DEV_DATABASE", &db.name)
        .env(
            "VAULTMESH_BIN_DIR",
            bin("vaultmesh").parent().unwrap_or(&dir),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("up.log")).unwrap_or_else(|e| panic!("{e}")))
        .kill_on_drop(true);
    for (i, name) in names.iter().enumerate() {
        up.env(format!("VAULTMESH_{name}_PORT"), ports[i].to_string());
        up.env(
            format!("VAULTMESH_{name}_METRICS_PORT"),
            ports[i + 3].to_string(),
        );
    }
    let mut up = up.spawn().unwrap_or_else(|e| panic!("ops/up.sh: {e}"));
    let [portal, guardian, oracle] =
        [0, 1, 2].map(|i| SocketAddr::from(([127, 0, 0, 1], ports[i])));
    for (addr, name) in [
        (portal, "portal"),
        (guardian, "guardian"),
        (oracle, "oracle"),
    ] {
        wait_until_listening(addr, name, Duration::from_secs(60)).await;
    }
    let env = dev_env(&state.join("dev.env"));
    let key = |k: &str| {
        env.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("dev.env lacks {k}"))
    };
    let (writer, reader, admin) = (
        key("VAULTMESH_WRITER_KEY"),
        key("VAULTMESH_READER_KEY"),
        key("VAULTMESH_ADMIN_KEY"),
    );
    assert_eq!(key("VAULTMESH_PORTAL_URL"), format!("http://{portal}"));

    // ops/up.sh adopts ops/governance/constitution.json once the services listen: it comes
    // into force, and refuses what the walk-through shows it refusing.
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("ops/governance/constitution.json"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("constitution.json: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = call(portal, "GET", "/v1/governance/constitution", None, &[], "").await;
        if s == 200 {
            assert_eq!(
                v["constitution"], file,
                "the dev constitution is the one in force"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no constitution adopted: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lunch = r#"{"type":"lunch_ordered","payload":{}}"#;
    let (s, v) = call(
        portal,
        "POST",
        "/v1/scrolls/drills/receipts",
        Some(&writer),
        &[],
        lunch,
    )
    .await;
    assert_eq!(
        (s, v["error"]["rule"].as_str()),
        (422, Some("drills.types")),
        "{v}"
    );

    // The walk-through: submit, read back, wait for the checkpoint, anchor, get a bundle.
    let receipt = r#"{"type":"drill_completed","payload":{"drill":"fire","ok":true}}"#;
    let idem = [("idempotency-key", "walkthrough-1")];
    let path = "/v1/scrolls/drills/receipts";
    let (s, v) = call(portal, "POST", path, Some(&writer), &idem, receipt).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(portal, "POST", path, Some(&writer), &idem, receipt).await;
    assert_eq!(s, 200, "a replay: {v}");
    let (s, v) = call(
        portal,
        "GET",
        "/v1/scrolls/drills/receipts/0",
        Some(&reader),
        &[],
        "",
    )
    .await;
    assert_eq!((s, &v["payload"]["drill"]), (200, &"fire".into()), "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = call(
            portal,
            "GET",
            "/v1/scrolls/drills/proof/inclusion?seq=0",
            None,
            &[],
            "",
        )
        .await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never checkpointed: {s} {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = call(
        guardian,
        "POST",
        "/v1/guardian/anchor",
        Some(&admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let journal = std::fs::read_to_string(state.join("proofchain.jsonl")).unwrap_or_default();
    assert_eq!(journal.lines().count(), 1, "{journal}");
    let (s, bundle) = call(
        portal,
        "GET",
        "/v1/scrolls/drills/receipts/0/bundle",
        Some(&reader),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{bundle}");
    let bundle_file = dir.join("bundle.json");
    std::fs::write(&bundle_file, bundle.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let verified = std::process::Command::new(bin("vaultmesh"))
        .args([
            "verify",
            "bundle",
            &arg(&bundle_file),
            "--vkey",
            &arg(&state.join("guardian.vkey")),
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let q = r#"{"question":"How long must AI system logs be kept?","frameworks":["eu_ai_act"]}"#;
    let (s, v) = call(oracle, "POST", "/v1/oracle/query", Some(&reader), &[], q).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !v["citations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .is_empty(),
        "{v}"
    );

    // The dev-stack Prometheus configuration, pointed at this stack's metrics ports.
    let local = std::fs::read_to_string(repo().join("ops/prometheus/prometheus-local.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = std::fs::canonicalize(repo().join("ops/prometheus/rules"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = local
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("rules/*.yaml", &format!("{}/*.yaml", rules.display()));
    for (i, dev) in [9090, 9091, 9092].iter().enumerate() {
        let from = format!("'127.0.0.1:{dev}'");
        assert!(config.contains(&from), "{from}");
        config = config.replace(&from, &format!("'127.0.0.1:{}'", ports[i + 3]));
    }
    let prom = Prometheus::start(&dir, &config).await;
    prom.wait_for(r#"up{job=~"vaultmesh-.*"} == 1"#, |s| s.len() == 3)
        .await;
    prom.wait_for("sum(vaultmesh_receipts_total)", |s| sum(s) >= 1.0)
        .await;
    prom.wait_for("vaultmesh_guardian_anchor_epoch", |s| sum(s) == 1.0)
        .await;
    let rules = prom.get("/api/v1/rules", &[]).await;
    assert_eq!(
        rules["groups"].as_array().map(Vec::len),
        Some(7),
        "rules loaded"
    );

    // SIGTERM stops the stack: the script exits and every port is released.
    common::stop_script(&mut up, "ops/up.sh").await;
    for port in &ports {
        let open = tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .is_ok();
        assert!(!open, "port {port} still open after the stack stopped");
    }
}
