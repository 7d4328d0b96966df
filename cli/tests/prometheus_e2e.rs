//! End-to-end monitoring with a real Prometheus: the three services run as processes, a
//! Prometheus (on a free port) scrapes them with the project's alert rules loaded, traffic
//! drives receipts, anchors and oracle queries, then every dashboard panel query and every
//! receipts/guardian/oracle alert selector is evaluated through Prometheus's HTTP API, and a
//! forced divergence must make `ProofChainDivergence` pending or firing; a constitutional
//! violation and an emergency must make `ConstitutionalViolation` and `EmergencyActive` fire.

mod common;

use common::{
    arg, refuse_poison_writes, repo, scrape, show_fork, signing_key, spawn, spawn_guardian_with,
    sum, tamper_drills, value, Prometheus, Service,
};
use ledger::storage::KeyStore;
use ledger::store::Role;
use ledger::testing::{call, closed_port, scratch_dir, TestDb};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn has_labels(sample: &Value, labels: &[&str]) -> bool {
    labels
        .iter()
        .all(|l| sample["metric"][*l].as_str().is_some_and(|v| !v.is_empty()))
}

/// Label names in `{{ name }}` / `{{ $labels.name }}` templates.
fn template_labels(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        let name = inner.strip_prefix("$labels.").unwrap_or(inner);
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(name.to_string());
        }
        rest = &rest[start + len + 2..];
    }
    out
}

/// The metric selectors (`name` or `name{…}`) in a PromQL expression.
fn selectors(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("vaultmesh_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let mut sel = tail[..end].to_string();
        if tail[end..].starts_with('{') {
            if let Some(close) = tail[end..].find('}') {
                sel.push_str(&tail[end..end + close + 1]);
            }
        }
        rest = &tail[sel.len()..];
        out.insert(sel);
    }
    out
}

/// Labels each of our metrics carries (the monitoring design's label sets).
fn metric_labels(name: &str) -> &'static [&'static str] {
    match name {
        "vaultmesh_receipts_total" => &["scroll", "type"],
        "vaultmesh_receipt_write_errors_total" => &["scroll", "error_type"],
        "vaultmesh_guardian_anchor_failures_total" => &["reason"],
        "vaultmesh_guardian_proofchain_root_info" => &["scroll", "root_hash"],
        "vaultmesh_oracle_llm_errors_total" => &["reason"],
        "vaultmesh_mesh_node_healthy" => &["node_id"],
        "vaultmesh_mesh_route_healthy" => &["route_id"],
        "vaultmesh_psi_phase_duration_seconds" => &["phase"],
        n if n.ends_with("_bucket") => &["le"],
        _ => &[],
    }
}

fn assert_job(sample: &Value, what: &str) {
    let job = sample["metric"]["job"].as_str().unwrap_or_default();
    assert!(
        job.starts_with("vaultmesh-"),
        "{what}: series without a vaultmesh job: {sample}"
    );
}

/// The pod-discovery block of each service job in the production configuration.
const POD_DISCOVERY: &str = "kubernetes_sd_configs:\n      - role: pod\n        namespaces:\n          names:\n            - vaultmesh\n";

/// ops/prometheus/prometheus.yml made runnable here: 1 s intervals, the repo's rules, no
/// Alertmanager, and a file of pods for discovery (written to `dir/pods.json`).
async fn production_config(dir: &Path, services: &[(&str, &Service)]) -> String {
    let pod = |name: &str, address: String, scrape: &str, port: u16| {
        json!({"targets": [address], "labels": {
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": name,
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
            "__meta_kubernetes_pod_annotation_prometheus_io_port": port.to_string(),
        }})
    };
    let mut pods: Vec<Value> = services
        .iter()
        .map(|(name, s)| pod(name, s.api.to_string(), "true", s.metrics))
        .collect();
    // Another app in the namespace, and a portal pod that opts out of scraping.
    pods.push(pod(
        "ledger-ui",
        format!("127.0.0.1:{}", closed_port().await),
        "true",
        1,
    ));
    pods.push(pod(
        "portal",
        format!("127.0.0.2:{}", closed_port().await),
        "false",
        2,
    ));
    let pods_file = dir.join("pods.json");
    std::fs::write(&pods_file, Value::Array(pods).to_string()).unwrap_or_else(|e| panic!("{e}"));
    let rules = std::fs::canonicalize(repo().join("ops/prometheus/rules"))
        .unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(repo().join("ops/prometheus/prometheus.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.matches(POD_DISCOVERY).count(), 3);
    text.replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace(
            "/etc/prometheus/rules/*.yaml",
            &format!("{}/*.yaml", rules.display()),
        )
        .replace(
            "alertmanager:9093",
            &format!("127.0.0.1:{}", closed_port().await),
        )
        .replace(
            POD_DISCOVERY,
            &format!(
                "file_sd_configs:\n      - files: ['{}']\n",
                pods_file.display()
            ),
        )
}

struct Tokens {
    admin: String,
    writer: String,
    reader: String,
}

/// One request of a round of traffic and the status it must get.
struct Expect<'a> {
    to: SocketAddr,
    method: &'static str,
    path: &'static str,
    token: Option<&'a str>,
    idempotency_key: Option<String>,
    body: String,
    status: u16,
}

/// One round of traffic: receipts (single and batch, two scrolls), reads (cache lookups), an
/// idempotency conflict, a refused write, a bad token, a proof and oracle questions.
async fn drive(portal: SocketAddr, oracle: SocketAddr, t: &Tokens, round: u32) {
    let post = |path, token, body: String, status| Expect {
        to: portal,
        method: "POST",
        path,
        token,
        idempotency_key: None,
        body,
        status,
    };
    let receipt =
        |kind: &str, payload: Value| json!({"type": kind, "payload": payload}).to_string();
    let writer = Some(t.writer.as_str());
    let mut round_trip: Vec<Expect> = (0..5)
        .map(|i| {
            let payload = json!({"drill": "fire", "ok": true, "round": round, "i": i});
            post(
                "/v1/scrolls/drills/receipts",
                writer,
                receipt("drill_completed", payload),
                201,
            )
        })
        .collect();
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"type": "policy_reviewed", "payload": {"round": round, "i": i}}))
        .collect();
    round_trip.push(post(
        "/v1/scrolls/compliance/receipts/batch",
        writer,
        json!({"receipts": batch}).to_string(),
        201,
    ));
    for _ in 0..2 {
        round_trip.push(Expect {
            method: "GET",
            ..post(
                "/v1/scrolls/drills/receipts/0",
                Some(&t.reader),
                String::new(),
                200,
            )
        });
    }
    // An idempotency conflict is the client's error: answered 409, not a write failure.
    for (n, status) in [(1, 201), (2, 409)] {
        round_trip.push(Expect {
            idempotency_key: Some(format!("e2e-{round}")),
            ..post(
                "/v1/scrolls/drills/receipts",
                writer,
                receipt("x", json!({ "n": n })),
                status,
            )
        });
    }
    // A write the database refuses (see `refuse_poison_writes`): a receipt write error.
    round_trip.push(post(
        "/v1/scrolls/drills/receipts",
        writer,
        receipt("e2e_poison", json!({})),
        503,
    ));
    round_trip.push(Expect {
        method: "GET",
        ..post(
            "/v1/scrolls/drills/receipts/0",
            Some("vm_not_a_key"),
            String::new(),
            401,
        )
    });
    for q in [
        "How long must AI system logs be kept, and are our AI logs exported?",
        "What must an incident notification contain and when is it due?",
    ] {
        round_trip.push(Expect {
            to: oracle,
            ..post(
                "/v1/oracle/query",
                Some(&t.reader),
                json!({ "question": q }).to_string(),
                200,
            )
        });
    }
    for e in round_trip {
        let key: Vec<(&str, &str)> = e
            .idempotency_key
            .iter()
            .map(|k| ("idempotency-key", k.as_str()))
            .collect();
        let (s, v) = call(e.to, e.method, e.path, e.token, &key, &e.body).await;
        assert_eq!(s, e.status, "{} {}: {v}", e.method, e.path);
    }
    // A proof once the guardian has signed a checkpoint covering the round (tile lookups).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let path = format!("/v1/scrolls/drills/proof/inclusion?seq={}", round * 5 - 1);
        let (s, v) = call(portal, "GET", &path, None, &[], "").await;
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covers round {round}: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_work_against_a_real_prometheus() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("prometheus-e2e");
    let key = signing_key(&dir);
    let vkey = dir.join("guardian.vkey");
    refuse_poison_writes(&db).await;
    let store = &db.store;
    let token = |role| async move {
        store
            .create_api_key(role, None, "e2e")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .token
    };
    let t = Tokens {
        admin: token(Role::Admin).await,
        writer: token(Role::Writer).await,
        reader: token(Role::Reader).await,
    };
    // The journal's directory is missing at first, so the first anchor fails in its sink.
    let journal_dir = dir.join("journal");
    let portal = spawn(
        "portal",
        &db,
        &dir,
        &["--guardian-vkey-file".into(), arg(&vkey)],
    )
    .await;
    // A witness nobody runs: every cosigning cycle fails to reach it.
    let witness = ledger::cosignature::WitnessSigner::from_seed("mesh-w/witness", [4; 32])
        .unwrap_or_else(|e| panic!("{e}"));
    let witness = format!(
        "mesh-w,{},http://127.0.0.1:{}",
        witness.verifier().to_vkey(),
        closed_port().await
    );
    // It also witnesses a remote mesh whose key the test holds, to show it a fork.
    let remote = ledger::note::NoteSigner::from_seed("mesh-r/guardian", [5; 32])
        .unwrap_or_else(|e| panic!("{e}"));
    let witness_key = dir.join("witness.key");
    ledger::cosignature::WitnessSigner::generate_to_file("e2e/witness", &witness_key)
        .unwrap_or_else(|e| panic!("{e}"));
    let guardian = spawn_guardian_with(
        &db,
        &dir,
        &key,
        &journal_dir.join("proofchain.jsonl"),
        &[
            "--witness".into(),
            witness,
            "--witness-key-file".into(),
            arg(&witness_key),
            "--remote-mesh".into(),
            format!(
                "mesh-r,{},http://127.0.0.1:{}",
                remote.verifier().to_vkey(),
                closed_port().await
            ),
        ],
    )
    .await;
    // An LLM endpoint nobody listens on: every question falls back and counts a transport error.
    let llm = format!("http://127.0.0.1:{}/v1", closed_port().await);
    let oracle = spawn(
        "oracle",
        &db,
        &dir,
        &[
            "--corpus-dir".into(),
            arg(&repo().join("ops/corpus")),
            "--llm-url".into(),
            llm,
            "--llm-timeout-ms".into(),
            "500".into(),
        ],
    )
    .await;

    // Every counter an alert takes `rate()` or `increase()` of is exported at zero from the
    // start, for each label value known in advance, so the first failure is an increase.
    let zero_series = [
        (&portal, "vaultmesh_receipt_write_errors_total{error_type=\"database_unavailable\",scroll=\"drills\"}"),
        (&portal, "vaultmesh_receipt_write_errors_total{error_type=\"database_error\",scroll=\"drills\"}"),
        (&portal, "vaultmesh_receipt_write_errors_total{error_type=\"database_error\",scroll=\"treasury\"}"),
        (&guardian, "vaultmesh_guardian_anchor_failures_total{reason=\"store\"}"),
        (&oracle, "vaultmesh_oracle_llm_errors_total{reason=\"timeout\"}"),
        (&oracle, "vaultmesh_oracle_llm_errors_total{reason=\"transport\"}"),
        (&oracle, "vaultmesh_oracle_llm_errors_total{reason=\"invalid_answer\"}"),
    ];
    for (service, series) in zero_series {
        let text = scrape(service).await;
        assert!(
            text.lines().any(|l| l == format!("{series} 0")),
            "{series} 0 not in:\n{text}"
        );
    }
    // The journal sink's series exists too (it may already count the first, failed anchor).
    let text = scrape(&guardian).await;
    assert!(
        text.contains("vaultmesh_guardian_anchor_failures_total{reason=\"sink_journal\"}"),
        "{text}"
    );

    // Prometheus runs the production configuration (ops/prometheus/prometheus.yml), scraping
    // every second, with pod discovery swapped for a file of pod-shaped targets: the three
    // services' pods (their API address, the labels and annotations of ops/k8s/) plus pods
    // its relabelling must drop.
    let config = production_config(
        &dir,
        &[
            ("portal", &portal),
            ("guardian", &guardian),
            ("oracle", &oracle),
        ],
    )
    .await;
    let prom = Prometheus::start(&dir, &config).await;
    prom.wait_for(r#"up{job=~"vaultmesh-.*"} == 1"#, |s| s.len() == 3)
        .await;
    // Relabelling kept exactly the three service pods, at their annotated metrics ports.
    let targets = prom.get("/api/v1/targets", &[("state", "active")]).await["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut scraped: Vec<(String, String)> = targets
        .iter()
        .filter(|t| {
            t["labels"]["job"]
                .as_str()
                .is_some_and(|j| j.starts_with("vaultmesh-"))
        })
        .map(|t| {
            (
                t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                t["scrapeUrl"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    scraped.sort();
    let expected: Vec<(String, String)> = [
        ("guardian", &guardian),
        ("oracle", &oracle),
        ("portal", &portal),
    ]
    .iter()
    .map(|(n, s)| {
        (
            format!("vaultmesh-{n}"),
            format!("http://127.0.0.1:{}/metrics", s.metrics),
        )
    })
    .collect();
    assert_eq!(scraped, expected);

    // A constitution for `offsec` (which the traffic leaves alone): its rule's violation
    // counter is exported from zero, for the dashboards and, later, the alert.
    let doc = json!({"constitution": {"version": 1, "scrolls": {"offsec": {"types": ["scan_*"]}}}});
    let (s, v) = call(
        portal.api,
        "POST",
        "/v1/governance/constitution",
        Some(&t.admin),
        &[],
        &doc.to_string(),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    // A transmutation in progress, for the Mesh dashboard's transmutation panels.
    let (s, v) = call(
        guardian.api,
        "POST",
        "/v1/psi/transmutations",
        Some(&t.admin),
        &[],
        r#"{"description":"e2e: rehearse the restore runbook"}"#,
    )
    .await;
    assert_eq!(s, 201, "{v}");

    // Two checkpoints of one size with two roots, both validly signed by mesh-r: the second
    // is refused (422), raised as a fork, and `FederationDiscrepancy` fires naming both labels.
    show_fork(guardian.api, &remote).await;
    // Round 1 creates every series; round 2, after Prometheus has seen round 1, makes the
    // rates and quantiles over them non-trivial.
    for round in 1..=2u32 {
        drive(portal.api, oracle.api, &t, round).await;
        let anchor = || {
            call(
                guardian.api,
                "POST",
                "/v1/guardian/anchor",
                Some(&t.admin),
                &[],
                "",
            )
        };
        if round == 1 {
            let (s, v) = anchor().await;
            assert_eq!(s, 502, "the journal sink fails without its directory: {v}");
            std::fs::create_dir_all(&journal_dir).unwrap_or_else(|e| panic!("{e}"));
        }
        let (s, v) = anchor().await;
        assert_eq!(s, 200, "{v}");
        let r = f64::from(round);
        prom.wait_for("vaultmesh_guardian_anchors_total", |s| sum(s) >= r)
            .await;
        prom.wait_for("sum(vaultmesh_receipts_total)", |s| sum(s) >= 10.0 * r)
            .await;
        prom.wait_for("vaultmesh_oracle_query_duration_seconds_count", |s| {
            sum(s) >= 2.0 * r
        })
        .await;
    }
    prom.wait_for("sum(vaultmesh_cache_lookups_total)", |s| sum(s) >= 4.0)
        .await;

    // Every dashboard panel query returns data with the labels its legend names.
    let dashboards = std::fs::read_dir(repo().join("ops/grafana/dashboards"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect::<Vec<_>>();
    assert_eq!(dashboards.len(), 5, "{dashboards:?}");
    let mut evaluated = 0;
    for file in &dashboards {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
        let d: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for panel in d["panels"].as_array().cloned().unwrap_or_default() {
            let title = format!("{} / {}", d["title"], panel["title"]);
            if panel["datasource"] == "Loki" {
                assert_eq!(panel["type"], "logs", "{title}");
                continue;
            }
            for target in panel["targets"].as_array().cloned().unwrap_or_default() {
                let expr = target["expr"].as_str().unwrap_or_default();
                let got = prom.query(expr).await;
                evaluated += 1;
                assert!(!got.is_empty(), "{title}: {expr} returned no data");
                let legend = template_labels(target["legendFormat"].as_str().unwrap_or_default());
                let legend: Vec<&str> = legend.iter().map(String::as_str).collect();
                for sample in &got {
                    assert!(
                        has_labels(sample, &legend),
                        "{title}: {expr}: {sample} lacks {legend:?}"
                    );
                }
                if expr.starts_with("vaultmesh_") && !expr.contains(['(', ' ']) {
                    for sample in &got {
                        assert_job(sample, &title);
                        assert!(has_labels(sample, metric_labels(expr)), "{title}: {sample}");
                    }
                }
                if expr.starts_with("histogram_quantile") {
                    assert!(
                        got.iter().any(|s| value(s).is_finite()),
                        "{title}: {expr}: no finite quantile in {got:?}"
                    );
                }
            }
        }
    }
    assert!(evaluated >= 40, "only {evaluated} panel queries");
    let up = prom.query(r#"sum(up{job=~"vaultmesh-.*"})"#).await;
    assert_eq!(sum(&up), 3.0, "System Status shows all three services");
    let age = prom
        .query("time() - vaultmesh_guardian_last_anchor_timestamp")
        .await;
    assert!(
        (0.0..600.0).contains(&value(&age[0])),
        "Last Anchor Age: {age:?}"
    );
    let roots = prom.query("vaultmesh_guardian_proofchain_root_info").await;
    assert!(
        roots.iter().any(|s| s["metric"]["scroll"] == "drills"),
        "ProofChain Roots by Scroll has drills: {roots:?}"
    );
    let failures = prom.query("vaultmesh_guardian_anchor_failures_total").await;
    assert!(
        failures
            .iter()
            .any(|s| s["metric"]["reason"] == "sink_journal" && value(s) >= 1.0),
        "{failures:?}"
    );
    let errors = prom.query("vaultmesh_receipt_write_errors_total").await;
    let counted: Vec<&Value> = errors.iter().filter(|s| value(s) > 0.0).collect();
    assert!(
        !counted.is_empty()
            && counted
                .iter()
                .all(|s| s["metric"]["error_type"] == "database_error"),
        "only the refused writes count: {counted:?}"
    );
    let llm = prom.query("vaultmesh_oracle_llm_errors_total").await;
    assert!(
        llm.iter()
            .any(|s| s["metric"]["reason"] == "transport" && value(s) >= 4.0),
        "{llm:?}"
    );

    // Every alert rule loaded and healthy; the receipts/guardian/oracle rules' selectors
    // return data carrying every label their labels and annotations template.
    let groups = prom.get("/api/v1/rules", &[]).await["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(groups.len(), 7, "{groups:?}");
    let mut checked = 0;
    for group in &groups {
        let name = group["name"].as_str().unwrap_or_default();
        let rules = group["rules"].as_array().cloned().unwrap_or_default();
        for rule in &rules {
            assert_eq!(rule["health"], "ok", "{name}: {rule}");
            if ![
                "vaultmesh.receipts",
                "vaultmesh.guardian",
                "vaultmesh.oracle",
            ]
            .contains(&name)
            {
                continue;
            }
            let query = rule["query"].as_str().unwrap_or_default();
            let templated: Vec<String> = ["labels", "annotations"]
                .iter()
                .flat_map(|k| rule[*k].as_object().cloned().unwrap_or_default())
                .flat_map(|(_, v)| template_labels(v.as_str().unwrap_or_default()))
                .collect();
            let templated: Vec<&str> = templated.iter().map(String::as_str).collect();
            let sels = selectors(query);
            assert!(!sels.is_empty(), "{}: no selector in {query}", rule["name"]);
            for sel in sels {
                let got = prom.query(&sel).await;
                assert!(!got.is_empty(), "{}: {sel} returned no data", rule["name"]);
                let metric = sel.split('{').next().unwrap_or_default();
                for sample in &got {
                    assert_job(sample, &sel);
                    assert!(
                        has_labels(sample, &templated),
                        "{}: {sample} lacks {templated:?}",
                        rule["name"]
                    );
                    assert!(has_labels(sample, metric_labels(metric)), "{sel}: {sample}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 9, "only {checked} alert selectors checked");
    // Refused writes in both rounds: the write-failure alert is on its way, naming the scroll.
    let alert = prom.wait_alert("ReceiptWriteFailure").await;
    assert_eq!(alert["labels"]["scroll"], "drills", "{alert}");
    assert_eq!(alert["labels"]["error_type"], "database_error", "{alert}");
    let alerts = prom.alerts().await;
    assert!(
        !alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "ProofChainDivergence"),
        "no divergence yet: {alerts:?}"
    );

    // The unreachable witness: `FederationWitnessFailure` fires, naming the remote mesh.
    let alert = prom.wait_alert("FederationWitnessFailure").await;
    assert_eq!(alert["labels"]["remote_mesh"], "mesh-w", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"], "Federation witness failure",
        "{alert}"
    );

    let alert = prom.wait_alert("FederationDiscrepancy").await;
    assert_eq!(alert["labels"]["remote_mesh"], "mesh-r", "{alert}");
    assert_eq!(alert["labels"]["discrepancy_type"], "fork", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(
        alert["annotations"]["description"], "Discrepancy with mesh-r: fork",
        "{alert}"
    );

    // Tamper with a stored receipt; one verification pass finds it and the alert follows.
    tamper_drills(&db, 1, "\"ok\":true", "\"ok\":false").await;
    let (s, v) = call(
        guardian.api,
        "POST",
        "/v1/guardian/verify",
        Some(&t.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["intact"], false, "{v}");
    let alert = prom.wait_alert("ProofChainDivergence").await;
    assert!(
        alert["state"] == "pending" || alert["state"] == "firing",
        "{alert}"
    );
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(alert["labels"]["job"], "vaultmesh-guardian", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"], "ProofChain divergence detected",
        "{alert}"
    );

    // Governance: the constitution refuses a receipt and `ConstitutionalViolation` fires on the
    // portal, naming the scroll and rule; an emergency makes `EmergencyActive` fire on all
    // three services, and lifting it resolves them.
    prom.wait_for(
        r#"vaultmesh_governance_violations_total{job="vaultmesh-portal",rule="offsec.types"} == 0"#,
        |s| s.len() == 1,
    )
    .await;
    let bad = json!({"type": "lunch_ordered", "payload": {}}).to_string();
    let (s, v) = call(
        portal.api,
        "POST",
        "/v1/scrolls/offsec/receipts",
        Some(&t.writer),
        &[],
        &bad,
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let alert = firing(&prom, "ConstitutionalViolation", 1).await.remove(0);
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(alert["labels"]["scroll"], "offsec", "{alert}");
    assert_eq!(alert["labels"]["rule"], "offsec.types", "{alert}");
    assert_eq!(alert["labels"]["job"], "vaultmesh-portal", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"], "Constitutional violation detected",
        "{alert}"
    );
    let raise = json!({"reason": "e2e drill"}).to_string();
    let (s, v) = call(
        portal.api,
        "POST",
        "/v1/governance/emergency",
        Some(&t.admin),
        &[],
        &raise,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let alerts = firing(&prom, "EmergencyActive", 3).await;
    let mut jobs: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a["labels"]["job"].as_str())
        .collect();
    jobs.sort_unstable();
    assert_eq!(
        jobs,
        ["vaultmesh-guardian", "vaultmesh-oracle", "vaultmesh-portal"]
    );
    for a in &alerts {
        assert_eq!(a["labels"]["severity"], "warning", "{a}");
        assert_eq!(
            a["annotations"]["summary"], "Governance emergency active",
            "{a}"
        );
        assert_eq!(
            a["annotations"]["description"], "Emergency powers in effect",
            "{a}"
        );
    }
    let (s, v) = call(
        portal.api,
        "DELETE",
        "/v1/governance/emergency",
        Some(&t.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while prom
        .alerts()
        .await
        .iter()
        .any(|a| a["labels"]["alertname"] == "EmergencyActive")
    {
        assert!(Instant::now() < deadline, "EmergencyActive never resolved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `n` alerts named `name` are firing (not just pending) and returns them.
/// A service's metrics exposition, scraped directly.
async fn firing(prom: &Prometheus, name: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alerts: Vec<Value> = prom
            .alerts()
            .await
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
            .collect();
        if alerts.len() >= n {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {} of {n} firing",
            alerts.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
