//! Alerting end to end: the services run as processes with a private Redis, a real Prometheus
//! evaluates the project's alert rules (a copy that shortens only `for:` durations, range
//! windows and time thresholds), a real Alertmanager routes with ops/alertmanager's config to
//! a webhook receiver inside this test, and for each of the seed's 18 alerts the behaviour
//! that makes it fire is driven for real (one failure of each kind where a counter is
//! concerned). Every alert must reach the webhook with the rule's labels and annotations.

mod common;

use common::{
    checkpoint_size, eventually, refuse_poison_writes, repo, shortened_rules, show_fork,
    signing_key, spawn_with_redis, tamper_drills, Prometheus, Service,
};
use ledger::storage::KeyStore;
use ledger::store::Role;
use ledger::testing::{call, closed_port, scratch_dir, RedisServer, TestDb};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Every alert of the monitoring seed.
const SEED_ALERTS: [&str; 18] = [
    "ReceiptWriteFailure",
    "ReceiptRateAnomaly",
    "AnchorDelayed",
    "AnchorCriticallyDelayed",
    "AnchorFailure",
    "ProofChainDivergence",
    "OracleHighLatency",
    "OracleLLMErrors",
    "OracleCorpusEmpty",
    "NodeUnhealthy",
    "NodeDown",
    "RouteUnhealthy",
    "PhaseProlongedNigredo",
    "TransmutationStalled",
    "ConstitutionalViolation",
    "EmergencyActive",
    "FederationWitnessFailure",
    "FederationDiscrepancy",
];

/// What a rule says an alert carries: its static labels and annotation templates.
#[derive(Debug, Default, Clone)]
struct Rule {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// The alert rules' labels and annotations, read from the rules file.
fn rules() -> BTreeMap<String, Rule> {
    let text = std::fs::read_to_string(repo().join("ops/prometheus/rules/vaultmesh-alerts.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out: BTreeMap<String, Rule> = BTreeMap::new();
    let (mut name, mut section) = (String::new(), "");
    for line in text.lines() {
        let t = line.trim();
        if let Some(n) = t.strip_prefix("- alert: ") {
            name = n.to_string();
            out.insert(name.clone(), Rule::default());
            section = "";
        } else if t == "labels:" || t == "annotations:" {
            section = if t == "labels:" {
                "labels"
            } else {
                "annotations"
            };
        } else if t.starts_with("expr:")
            || t.starts_with("for:")
            || t.starts_with('#')
            || t.starts_with("- ")
            || t == "rules:"
        {
            section = "";
        } else if let (Some((k, v)), false) = (t.split_once(": "), section.is_empty()) {
            let v = v.trim_matches('"').to_string();
            let rule = out.entry(name.clone()).or_default();
            match section {
                "labels" => rule.labels.insert(k.to_string(), v),
                _ => rule.annotations.insert(k.to_string(), v),
            };
        }
    }
    out
}

/// An HTTP listener inside the test that records every request body (the webhook) or answers
/// slowly with a 500 (a failing LLM).
struct Listener {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Listener {
    async fn start(delay: Duration, status: u16) -> Self {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = socket.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = socket.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let Some((path, body)) = read_request(&mut conn).await else {
                        return;
                    };
                    tokio::time::sleep(delay).await;
                    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if let Ok(mut r) = record.lock() {
                        r.push((path, v));
                    }
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self { addr, seen }
    }

    /// How many POSTs with a JSON body it received (the oracle's route probe is a GET).
    fn questions(&self) -> usize {
        self.seen
            .lock()
            .map(|s| s.iter().filter(|(_, v)| !v.is_null()).count())
            .unwrap_or(0)
    }

    /// The firing alerts received so far, by name.
    fn firing(&self) -> BTreeMap<String, Vec<(String, Value)>> {
        let mut out: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
        for (path, body) in self.seen.lock().map(|s| s.clone()).unwrap_or_default() {
            for a in body["alerts"].as_array().cloned().unwrap_or_default() {
                if a["status"] == "firing" {
                    let name = a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    out.entry(name).or_default().push((path.clone(), a));
                }
            }
        }
        out
    }
}

/// Reads one HTTP/1.1 request: its path and body (by Content-Length).
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((path, buf[head_end..].to_vec()))
}

/// Alertmanager with ops/alertmanager/alertmanager.yml, its receivers pointed at `webhook` and
/// its grouping waits shortened.
async fn alertmanager(dir: &Path, webhook: SocketAddr) -> (Child, SocketAddr) {
    let text = std::fs::read_to_string(repo().join("ops/alertmanager/alertmanager.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.matches("http://127.0.0.1:9095/").count(), 2);
    let config = text
        .replace("http://127.0.0.1:9095/", &format!("http://{webhook}/"))
        .replace("group_wait: 10s", "group_wait: 0s")
        .replace("group_interval: 1m", "group_interval: 1s")
        .replace("group_interval: 30s", "group_interval: 1s");
    let file = dir.join("alertmanager.yml");
    std::fs::write(&file, config).unwrap_or_else(|e| panic!("{e}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", file.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus-alertmanager (ops/test.sh installs it): {e}"));
    eventually("alertmanager ready", 30, || async move {
        reqwest::get(format!("http://{addr}/-/ready"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    (child, addr)
}

/// The test's copy of the rules: only `for:`, range windows and time thresholds shortened.
fn test_rules(dir: &Path) -> std::path::PathBuf {
    let f = |s: &str| s.to_string();
    let edits: Vec<(String, String)> = vec![
        (f("rate(vaultmesh_receipt_write_errors_total[5m]) > 0\n        for: 1m"),
         f("rate(vaultmesh_receipt_write_errors_total[5m]) > 0\n        for: 0s")),
        (f("rate(vaultmesh_receipts_total[5m]) -\n            avg_over_time(rate(vaultmesh_receipts_total[5m])[1h:5m])\n          ) > 2 * stddev_over_time(rate(vaultmesh_receipts_total[5m])[1h:5m])\n        for: 10m"),
         f("rate(vaultmesh_receipts_total[5s]) -\n            avg_over_time(rate(vaultmesh_receipts_total[5s])[1m:1s])\n          ) > 2 * stddev_over_time(rate(vaultmesh_receipts_total[5s])[1m:1s])\n        for: 0s")),
        (f("vaultmesh_guardian_last_anchor_timestamp > 7200\n        for: 5m"),
         f("vaultmesh_guardian_last_anchor_timestamp > 3\n        for: 0s")),
        (f("vaultmesh_guardian_last_anchor_timestamp > 14400\n        for: 5m"),
         f("vaultmesh_guardian_last_anchor_timestamp > 12\n        for: 0s")),
        (f("increase(vaultmesh_guardian_anchor_failures_total[1h]) > 0\n        for: 1m"),
         f("increase(vaultmesh_guardian_anchor_failures_total[1h]) > 0\n        for: 0s")),
        (f("vaultmesh_guardian_proofchain_divergence == 1\n        for: 1m"),
         f("vaultmesh_guardian_proofchain_divergence == 1\n        for: 0s")),
        (f("rate(vaultmesh_oracle_query_duration_seconds_bucket[5m])) > 30\n        for: 5m"),
         f("rate(vaultmesh_oracle_query_duration_seconds_bucket[5m])) > 0.2\n        for: 0s")),
        (f("rate(vaultmesh_oracle_llm_errors_total[5m]) > 0.1\n        for: 5m"),
         f("rate(vaultmesh_oracle_llm_errors_total[5s]) > 0.1\n        for: 0s")),
        (f("vaultmesh_oracle_corpus_documents_total == 0\n        for: 1m"),
         f("vaultmesh_oracle_corpus_documents_total == 0\n        for: 0s")),
        (f("vaultmesh_mesh_node_healthy == 0\n        for: 5m"),
         f("vaultmesh_mesh_node_healthy == 0\n        for: 0s")),
        (f("vaultmesh_mesh_node_last_seen_timestamp > 600\n        for: 5m"),
         f("vaultmesh_mesh_node_last_seen_timestamp > 10\n        for: 0s")),
        (f("vaultmesh_mesh_route_healthy == 0\n        for: 5m"),
         f("vaultmesh_mesh_route_healthy == 0\n        for: 0s")),
        (f("{phase=\"nigredo\"} > 86400\n        for: 1h"),
         f("{phase=\"nigredo\"} > 2\n        for: 0s")),
        (f("vaultmesh_psi_transmutation_started_timestamp > 86400\n        for: 1h"),
         f("vaultmesh_psi_transmutation_started_timestamp > 2\n        for: 0s")),
        (f("increase(vaultmesh_federation_witness_failures_total[1h]) > 0\n        for: 5m"),
         f("increase(vaultmesh_federation_witness_failures_total[1h]) > 0\n        for: 0s")),
    ];
    let edits: Vec<(&str, &str)> = edits
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    shortened_rules(dir, &edits)
}

async fn service(name: &str, db: &TestDb, dir: &Path, redis: &str, extra: &[String]) -> Service {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    let api = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    let mut args: Vec<String> = ["--heartbeat-ms", "200", "--route-probe-ms", "200"]
        .map(String::from)
        .to_vec();
    args.extend_from_slice(extra);
    spawn_with_redis(name, db, dir, "vaultmesh-e2e", api, redis, &args).await
}

fn s(v: &str) -> String {
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_eighteen_seed_alerts_reach_the_alertmanager_webhook() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("alertmanager-e2e");
    let key = signing_key(&dir);
    let token = |role| {
        let store = db.store.clone();
        async move {
            store
                .create_api_key(role, None, "am-e2e")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .token
        }
    };
    let (admin, writer, reader) = (
        token(Role::Admin).await,
        token(Role::Writer).await,
        token(Role::Reader).await,
    );
    // Postgres refuses one receipt type: a write error, counted once.
    refuse_poison_writes(&db).await;
    let redis = RedisServer::start(0).await;
    let url = redis.url();
    let webhook = Listener::start(Duration::ZERO, 200).await;
    let llm = Listener::start(Duration::from_millis(300), 500).await;
    let (_am, am_addr) = alertmanager(&dir, webhook.addr).await;

    let portal = service(
        "portal",
        &db,
        &dir.join("a"),
        &url,
        &[s("--node-instance"), s("a")],
    )
    .await;
    let replica = service(
        "portal",
        &db,
        &dir.join("b"),
        &url,
        &[s("--node-instance"), s("b")],
    )
    .await;
    let witness = ledger::cosignature::WitnessSigner::from_seed("mesh-w/witness", [4; 32])
        .unwrap_or_else(|e| panic!("{e}"));
    let remote = ledger::note::NoteSigner::from_seed("mesh-r/guardian", [5; 32])
        .unwrap_or_else(|e| panic!("{e}"));
    let witness_key = dir.join("witness.key");
    ledger::cosignature::WitnessSigner::generate_to_file("e2e/witness", &witness_key)
        .unwrap_or_else(|e| panic!("{e}"));
    let journal_dir = dir.join("journal");
    let guardian = service(
        "guardian",
        &db,
        &dir.join("g"),
        &url,
        &[
            s("--node-instance"),
            s("g1"),
            s("--signing-key-file"),
            key.to_string_lossy().into_owned(),
            s("--journal-path"),
            journal_dir
                .join("proofchain.jsonl")
                .to_string_lossy()
                .into_owned(),
            s("--integrate-interval-ms"),
            s("100"),
            s("--psi-interval-ms"),
            s("200"),
            // A witness nobody runs: each cosigning cycle fails to reach it.
            s("--witness"),
            format!(
                "mesh-w,{},http://127.0.0.1:{}",
                witness.verifier().to_vkey(),
                closed_port().await
            ),
            s("--witness-key-file"),
            witness_key.to_string_lossy().into_owned(),
            s("--remote-mesh"),
            format!(
                "mesh-r,{},http://127.0.0.1:{}",
                remote.verifier().to_vkey(),
                closed_port().await
            ),
        ],
    )
    .await;
    // The oracle starts with no corpus (OracleCorpusEmpty) and an LLM that answers slowly
    // with errors (OracleHighLatency, OracleLLMErrors once it has a corpus).
    let llm_args = vec![
        s("--node-instance"),
        s("o1"),
        s("--llm-url"),
        format!("http://{}/v1", llm.addr),
        s("--llm-timeout-ms"),
        s("2000"),
    ];
    let oracle = service("oracle", &db, &dir.join("o"), &url, &llm_args).await;

    let rules_dir = test_rules(&dir);
    let mut scrape = String::new();
    for (job, targets) in [
        ("vaultmesh-portal", vec![&portal, &replica]),
        ("vaultmesh-guardian", vec![&guardian]),
        ("vaultmesh-oracle", vec![&oracle]),
    ] {
        let targets: Vec<String> = targets
            .iter()
            .map(|t| format!("'127.0.0.1:{}'", t.metrics))
            .collect();
        scrape.push_str(&format!(
            "  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ));
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am_addr}']\nrule_files:\n  - '{}/*.yaml'\nscrape_configs:\n{scrape}",
        rules_dir.display()
    );
    let prom = Prometheus::start(&dir, &config).await;
    let wait_webhook = |name: &'static str| {
        let (webhook, prom) = (&webhook, &prom);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            loop {
                if let Some(got) = webhook.firing().remove(name) {
                    return got;
                }
                if std::time::Instant::now() > deadline {
                    let alerts = prom.alerts().await;
                    let at_webhook: Vec<String> = webhook.firing().into_keys().collect();
                    panic!("{name} never reached the webhook; Prometheus: {alerts:?}; webhook: {at_webhook:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // One receipt now, so its series exists at a low rate before the burst below.
    let post = |path: &'static str, body: String| {
        let (portal, writer) = (portal.api, writer.clone());
        async move { call(portal, "POST", path, Some(&writer), &[], &body).await }
    };
    let (st, v) = post(
        "/v1/scrolls/drills/receipts",
        json!({"type": "tick", "payload": {"i": 0}}).to_string(),
    )
    .await;
    assert_eq!(st, 201, "{v}");

    // Prometheus holds the zero samples of every counter a single failure must move, so the
    // first failure is an increase.
    prom.wait_for(r#"up{job=~"vaultmesh-.*"} == 1"#, |got| got.len() == 4)
        .await;
    for zero in [
        format!(
            r#"vaultmesh_receipt_write_errors_total{{instance="127.0.0.1:{}",scroll="drills",error_type="database_error"}} == 0"#,
            portal.metrics
        ),
        r#"vaultmesh_guardian_anchor_failures_total{reason="sink_journal"} == 0"#.to_string(),
        r#"vaultmesh_oracle_llm_errors_total{reason="http_status"} == 0"#.to_string(),
    ] {
        prom.wait_for(&zero, |got| got.len() == 1).await;
    }

    // OracleCorpusEmpty: fires from the start.
    wait_webhook("OracleCorpusEmpty").await;

    // ReceiptWriteFailure: exactly one refused write.
    let (st, v) = post(
        "/v1/scrolls/drills/receipts",
        json!({"type": "e2e_poison", "payload": {}}).to_string(),
    )
    .await;
    assert!(st >= 500, "{st} {v}");

    // AnchorFailure: one epoch whose journal sink fails; then one that succeeds, after which
    // nothing anchors (AnchorDelayed after 3 s, AnchorCriticallyDelayed after 12 s).
    let anchor = || {
        call(
            guardian.api,
            "POST",
            "/v1/guardian/anchor",
            Some(&admin),
            &[],
            "",
        )
    };
    let (st, v) = anchor().await;
    assert_eq!(st, 502, "{v}");
    std::fs::create_dir_all(&journal_dir).unwrap_or_else(|e| panic!("{e}"));
    let (st, v) = anchor().await;
    assert_eq!(st, 200, "{v}");

    // FederationDiscrepancy: two checkpoints of one size with two roots, both validly signed
    // by mesh-r (FederationWitnessFailure comes on its own from the unreachable witness).
    show_fork(guardian.api, &remote).await;

    // ProofChainDivergence: a stored receipt tampered with, found by a verification pass;
    // psi goes to NIGREDO (PhaseProlongedNigredo after 2 s); a transmutation is opened and left
    // in progress (TransmutationStalled after 2 s).
    eventually("tick integrated", 30, || async {
        checkpoint_size(portal.api, "drills")
            .await
            .is_some_and(|n| n >= 1)
            .then_some(())
    })
    .await;
    tamper_drills(&db, 0, "\"i\":0", "\"i\":1").await;
    let (st, v) = call(
        guardian.api,
        "POST",
        "/v1/guardian/verify",
        Some(&admin),
        &[],
        "",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["intact"], false, "{v}");
    let (st, v) = call(
        guardian.api,
        "POST",
        "/v1/psi/transmutations",
        Some(&admin),
        &[],
        r#"{"description":"restore drills from backup"}"#,
    )
    .await;
    assert_eq!(st, 201, "{v}");

    // ConstitutionalViolation: one refused receipt.
    let doc = json!({"constitution": {"version": 1, "scrolls": {"offsec": {"types": ["scan_*"]}}}});
    let (st, v) = call(
        portal.api,
        "POST",
        "/v1/governance/constitution",
        Some(&admin),
        &[],
        &doc.to_string(),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    // Scraped at zero from the portal that will refuse, so its first refusal is an increase.
    let zero = format!(
        r#"vaultmesh_governance_violations_total{{instance="127.0.0.1:{}",rule="offsec.types"}} == 0"#,
        portal.metrics
    );
    prom.wait_for(&zero, |got| got.len() == 1).await;
    let (st, v) = post(
        "/v1/scrolls/offsec/receipts",
        json!({"type": "lunch_ordered", "payload": {}}).to_string(),
    )
    .await;
    assert_eq!(st, 422, "{v}");

    // ReceiptRateAnomaly: after at least 12 s of a flat rate, a burst of 500 receipts.
    prom.wait_for(
        r#"count_over_time(vaultmesh_receipts_total{scroll="drills",type="tick"}[1m]) >= 12"#,
        |got| !got.is_empty(),
    )
    .await;
    let batch: Vec<Value> = (1..=500)
        .map(|i| json!({"type": "tick", "payload": {"i": i}}))
        .collect();
    let (st, v) = post(
        "/v1/scrolls/drills/receipts/batch",
        json!({"receipts": batch}).to_string(),
    )
    .await;
    assert_eq!(st, 201, "{v}");

    // The oracle gets a corpus document; questions then hit the failing LLM.
    let text = std::fs::read_to_string(repo().join("ops/corpus/eu-ai-act-record-keeping.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (st, v) = call(
        oracle.api,
        "POST",
        "/v1/oracle/corpus",
        Some(&admin),
        &[],
        &json!({"text": text}).to_string(),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    // Exactly one question: one slow answer, one LLM error.
    let asked = llm.questions();
    let body = json!({"question": "How long must AI system logs be kept?"}).to_string();
    let (st, v) = call(
        oracle.api,
        "POST",
        "/v1/oracle/query",
        Some(&reader),
        &[],
        &body,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(llm.questions(), asked + 1, "the LLM was asked once");

    // NodeUnhealthy, then NodeDown: the replica SIGKILLed (NodeUnhealthy is delivered before
    // NodeDown's 10 s pass, since NodeDown inhibits it).
    let pid = replica.child.id().unwrap_or_default().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .is_ok_and(|s| s.success()));
    wait_webhook("NodeUnhealthy").await;

    // RouteUnhealthy: Redis gone (other routes are unhealthy from the start — the slow LLM,
    // the witness and remote nobody runs — so the test waits for the redis routes by name).
    redis.kill_ref().await;

    // EmergencyActive: raised last, since it freezes client writes.
    let (st, v) = call(
        portal.api,
        "POST",
        "/v1/governance/emergency",
        Some(&admin),
        &[],
        r#"{"reason":"alerting drill"}"#,
    )
    .await;
    assert_eq!(st, 201, "{v}");

    // Every one of the 18 reaches the webhook, with the rule's labels and annotations.
    let rules = rules();
    let mut checked = 0;
    for name in SEED_ALERTS {
        let got = wait_webhook(name).await;
        let rule = rules.get(name).unwrap_or_else(|| panic!("no rule {name}"));
        let (path, alert) = &got[0];
        let severity = rule
            .labels
            .get("severity")
            .map(String::as_str)
            .unwrap_or_default();
        assert_eq!(alert["labels"]["severity"], severity, "{name}: {alert}");
        let want_path = if severity == "critical" {
            "/vaultmesh/pager"
        } else {
            "/vaultmesh/oncall"
        };
        assert_eq!(path, want_path, "{name} routed by severity");
        for (k, template) in &rule.labels {
            let v = alert["labels"][k].as_str().unwrap_or_default();
            assert!(
                !v.is_empty() && !v.contains("{{"),
                "{name}: label {k} ({template}) = {v:?}"
            );
        }
        for (k, template) in &rule.annotations {
            let v = alert["annotations"][k].as_str().unwrap_or_default();
            if template.contains("{{") {
                assert!(!v.is_empty() && !v.contains("{{"), "{name}: {k} = {v:?}");
            } else {
                assert_eq!(v, template, "{name}: {k}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 18);
    let firing = webhook.firing();
    let one = |name: &str| {
        firing
            .get(name)
            .and_then(|v| v.first())
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        one("ReceiptWriteFailure")["labels"]["error_type"],
        "database_error"
    );
    assert_eq!(one("NodeDown")["labels"]["node"], "portal-b");
    assert_eq!(one("NodeUnhealthy")["labels"]["node"], "portal-b");
    assert_eq!(
        one("FederationDiscrepancy")["annotations"]["description"],
        "Discrepancy with mesh-r: fork"
    );
    assert_eq!(
        one("FederationWitnessFailure")["labels"]["remote_mesh"],
        "mesh-w"
    );
    assert_eq!(
        one("ConstitutionalViolation")["labels"]["rule"],
        "offsec.types"
    );
    assert_eq!(
        one("TransmutationStalled")["labels"]["transmutation_id"],
        "1"
    );
    assert_eq!(one("PhaseProlongedNigredo")["labels"]["phase"], "nigredo");
    let redis_routes = eventually("the redis routes at the webhook", 60, || async {
        let routes: Vec<String> = webhook
            .firing()
            .remove("RouteUnhealthy")
            .unwrap_or_default()
            .iter()
            .filter_map(|(_, a)| a["labels"]["route_id"].as_str().map(str::to_string))
            .filter(|r| r.ends_with("->redis"))
            .collect();
        (routes.len() >= 3).then_some(routes)
    })
    .await;
    for node in ["portal-a", "guardian-g1", "oracle-o1"] {
        assert!(
            redis_routes.contains(&format!("{node}->redis")),
            "{redis_routes:?}"
        );
    }
}
