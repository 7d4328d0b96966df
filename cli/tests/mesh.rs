//! Mesh health and psi against real processes, a real Postgres, a real Redis and a real
//! Prometheus: nodes register, fall silent when SIGKILLed (their last-seen still exported so
//! `NodeDown` fires), depart and return; Redis stopped makes every node's redis route
//! unhealthy and `RouteUnhealthy` fire; a divergence walks psi through all four phases.

mod common;

use common::{
    checkpoint_size, eventually, sample, scrape, shortened_rules, signing_key, spawn_guardian_with,
    spawn_with_redis, tamper_drills, Prometheus, Service,
};
use ledger::storage::{KeyStore, ReceiptLog};
use ledger::store::Role;
use ledger::testing::{call, closed_port, redis_url, scratch_dir, RedisServer, TestDb};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;

/// Heartbeats and probes every 200 ms.
fn fast(instance: &str) -> Vec<String> {
    [
        "--heartbeat-ms",
        "200",
        "--route-probe-ms",
        "200",
        "--node-instance",
        instance,
    ]
    .map(String::from)
    .to_vec()
}

/// The guardian's own options for these tests: departure after 2 s, psi every 100 ms, a 2 s
/// quiet period.
fn guardian_fast() -> Vec<String> {
    let mut v = fast("g1");
    v.extend(
        [
            "--node-departure-secs",
            "2",
            "--psi-interval-ms",
            "100",
            "--psi-quiet-secs",
            "2",
        ]
        .map(String::from),
    );
    v
}

async fn service(name: &str, db: &TestDb, dir: &Path, redis: &str, extra: Vec<String>) -> Service {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    let api = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    spawn_with_redis(name, db, dir, "vaultmesh-e2e", api, redis, &extra).await
}

/// A Prometheus scraping `targets` (job, service) every second with the rules `rules`.
async fn prometheus(dir: &Path, rules: &Path, targets: &[(&str, &Service)]) -> Prometheus {
    let mut scrape = String::new();
    for (job, s) in targets {
        scrape.push_str(&format!(
            "  - job_name: '{job}'\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            s.metrics
        ));
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - '{}/*.yaml'\nscrape_configs:\n{scrape}",
        rules.display()
    );
    Prometheus::start(dir, &config).await
}

async fn sigkill(s: &Service) {
    let pid = s.child.id().unwrap_or_else(|| panic!("already exited"));
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ok.success());
}

async fn receipts(db: &TestDb, scroll: &str) -> Vec<(String, Value)> {
    db.store
        .list_receipts(scroll, 0, 10_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| (r.receipt.kind, Value::Object(r.receipt.payload)))
        .collect()
}

async fn token(db: &TestDb, role: Role) -> String {
    db.store
        .create_api_key(role, None, "mesh-test")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_fall_silent_depart_and_return() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("mesh-nodes");
    let key = signing_key(&dir);
    let redis = redis_url();
    let reader = token(&db, Role::Reader).await;
    let portal = service("portal", &db, &dir.join("a"), &redis, fast("a")).await;
    let replica = service("portal", &db, &dir.join("b"), &redis, fast("b")).await;
    let guardian = spawn_guardian_with(
        &db,
        &dir,
        &key,
        &dir.join("proofchain.jsonl"),
        &guardian_fast(),
    )
    .await;
    let oracle = service("oracle", &db, &dir.join("o"), &redis, fast("o1")).await;
    let nodes = ["portal-a", "portal-b", "guardian-g1", "oracle-o1"];
    let rules = shortened_rules(
        &dir,
        &[
            (
                "expr: time() - vaultmesh_mesh_node_last_seen_timestamp > 600\n        for: 5m",
                "expr: time() - vaultmesh_mesh_node_last_seen_timestamp > 2\n        for: 0s",
            ),
            (
                "expr: vaultmesh_mesh_node_healthy == 0\n        for: 5m",
                "expr: vaultmesh_mesh_node_healthy == 0\n        for: 0s",
            ),
        ],
    );
    let prom = prometheus(&dir, &rules, &[("vaultmesh-guardian", &guardian)]).await;

    // Every node registers and the leading guardian exports it as healthy.
    for node in nodes {
        eventually(&format!("{node} healthy"), 30, || async {
            let text = scrape(&guardian).await;
            (sample(
                &text,
                "vaultmesh_mesh_node_healthy",
                &format!("node_id=\"{node}\""),
            ) == Some(1.0))
            .then_some(())
        })
        .await;
    }
    // The guardian's heartbeat reports its role once its first tick took the lead.
    let listed = eventually("the node list with the guardian leading", 10, || async {
        let (s, v) = call(portal.api, "GET", "/v1/mesh/nodes", Some(&reader), &[], "").await;
        assert_eq!(s, 200, "{v}");
        let listed = v["nodes"].as_array().cloned().unwrap_or_default();
        listed
            .iter()
            .any(|n| n["node_id"] == "guardian-g1" && n["role"] == "leader")
            .then_some(listed)
    })
    .await;
    let v = Value::Array(listed.clone());
    assert_eq!(listed.len(), 4, "{v}");
    for n in &listed {
        assert_eq!(n["status"], "healthy", "{n}");
        assert_eq!(n["mesh_id"], "vaultmesh-e2e", "{n}");
    }
    let role_of = |id: &str| {
        listed
            .iter()
            .find(|n| n["node_id"] == id)
            .map(|n| n["role"].clone())
            .unwrap_or_default()
    };
    assert_eq!(role_of("guardian-g1"), "leader");
    assert_eq!(role_of("portal-b"), "api");
    let (s, _) = call(portal.api, "GET", "/v1/mesh/nodes", None, &[], "").await;
    assert_eq!(s, 401, "the node list needs a key");
    // Four joins, one per node, receipted in `mesh`.
    let joined = eventually("four joins", 10, || async {
        let r = receipts(&db, "mesh").await;
        let joins: Vec<String> = r
            .iter()
            .filter(|(k, _)| k == "node_joined")
            .map(|(_, p)| p["node_id"].as_str().unwrap_or_default().to_string())
            .collect();
        (joins.len() == 4).then_some(joins)
    })
    .await;
    for node in nodes {
        assert!(
            joined.iter().any(|j| j == node),
            "{node} not joined: {joined:?}"
        );
    }

    // SIGKILL the replica: unhealthy within three heartbeats, then departed; its last-seen
    // stays exported so the NodeDown expression holds in Prometheus.
    sigkill(&replica).await;
    eventually("portal-b unhealthy", 10, || async {
        let text = scrape(&guardian).await;
        (sample(&text, "vaultmesh_mesh_node_healthy", "node_id=\"portal-b\"") == Some(0.0))
            .then_some(())
    })
    .await;
    let departed = eventually("portal-b departed", 15, || async {
        receipts(&db, "mesh")
            .await
            .into_iter()
            .find(|(k, p)| k == "node_departed" && p["node_id"] == "portal-b")
    })
    .await;
    assert_eq!(departed.1["reason"], "silent", "{departed:?}");
    let text = scrape(&guardian).await;
    assert!(
        sample(
            &text,
            "vaultmesh_mesh_node_last_seen_timestamp",
            "node_id=\"portal-b\""
        )
        .is_some(),
        "a silent node's last-seen must stay exported"
    );
    let down = prom
        .wait_for(
            "time() - vaultmesh_mesh_node_last_seen_timestamp{node_id=\"portal-b\"} > 2",
            |got| !got.is_empty(),
        )
        .await;
    assert_eq!(down[0]["metric"]["node_id"], "portal-b");
    let alert = eventually("NodeDown firing", 30, || async {
        prom.alerts()
            .await
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "NodeDown" && a["state"] == "firing")
    })
    .await;
    assert_eq!(alert["labels"]["node"], "portal-b", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(alert["annotations"]["summary"], "Mesh node down", "{alert}");
    let (_, v) = call(portal.api, "GET", "/v1/mesh/nodes", Some(&reader), &[], "").await;
    let b = v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node_id"] == "portal-b").cloned())
        .unwrap_or_default();
    assert_eq!(b["status"], "departed", "{v}");
    // A node down is a critical condition: psi is in NIGREDO.
    let (_, psi) = eventually("nigredo", 10, || async {
        let (s, v) = call(guardian.api, "GET", "/v1/psi", Some(&reader), &[], "").await;
        (s == 200 && v["phase"] == "nigredo").then_some((s, v))
    })
    .await;
    assert!(
        psi["open_conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["kind"] == "node_down")),
        "{psi}"
    );

    // Restarted with the same instance, it is the same node, healthy again, joined again.
    let _replica = service("portal", &db, &dir.join("b"), &redis, fast("b")).await;
    eventually("portal-b healthy again", 20, || async {
        let text = scrape(&guardian).await;
        (sample(&text, "vaultmesh_mesh_node_healthy", "node_id=\"portal-b\"") == Some(1.0))
            .then_some(())
    })
    .await;
    eventually("portal-b rejoined", 10, || async {
        let joins = receipts(&db, "mesh")
            .await
            .into_iter()
            .filter(|(k, p)| k == "node_joined" && p["node_id"] == "portal-b")
            .count();
        (joins == 2).then_some(())
    })
    .await;
    // The condition cleared: probation (a clean pass, 1 s quiet), then steady state.
    eventually("rubedo", 20, || async {
        let (_, v) = call(guardian.api, "GET", "/v1/psi", Some(&reader), &[], "").await;
        (v["phase"] == "rubedo").then_some(())
    })
    .await;
    let phases: Vec<String> = receipts(&db, "psi")
        .await
        .into_iter()
        .filter(|(k, _)| k == "phase_changed")
        .map(|(_, p)| p["to"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(phases, ["rubedo", "nigredo", "citrinitas", "rubedo"]);
    // A node stopped on purpose leaves: departed with reason `left`, not a psi condition, but
    // its series stay exported (a stop is visible) until an admin removes it, which is a
    // receipt too.
    let pid = oracle.child.id().unwrap_or_default();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ok.success());
    let left = eventually("oracle-o1 left", 15, || async {
        receipts(&db, "mesh")
            .await
            .into_iter()
            .find(|(k, p)| k == "node_departed" && p["node_id"] == "oracle-o1")
    })
    .await;
    assert_eq!(left.1["reason"], "left", "{left:?}");
    let text = scrape(&guardian).await;
    assert_eq!(
        sample(
            &text,
            "vaultmesh_mesh_node_healthy",
            "node_id=\"oracle-o1\""
        ),
        Some(0.0)
    );
    let admin = token(&db, Role::Admin).await;
    let remove = |id: &'static str, key: String| {
        let api = guardian.api;
        async move {
            call(
                api,
                "DELETE",
                &format!("/v1/mesh/nodes/{id}"),
                Some(&key),
                &[],
                "",
            )
            .await
        }
    };
    let (s, v) = remove("oracle-o1", reader.clone()).await;
    assert_eq!(s, 403, "admins only: {v}");
    let (s, v) = remove("portal-a", admin.clone()).await;
    assert_eq!(s, 409, "a healthy node is not removed: {v}");
    let (s, v) = remove("nobody-x", admin.clone()).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = remove("oracle-o1", admin.clone()).await;
    assert_eq!(s, 200, "{v}");
    eventually("oracle-o1 retired", 10, || async {
        let text = scrape(&guardian).await;
        sample(
            &text,
            "vaultmesh_mesh_node_last_seen_timestamp",
            "node_id=\"oracle-o1\"",
        )
        .is_none()
        .then_some(())
    })
    .await;
    let removed = receipts(&db, "mesh")
        .await
        .into_iter()
        .find(|(k, _)| k == "node_removed")
        .unwrap_or_else(|| panic!("no node_removed receipt"));
    assert_eq!(removed.1["node_id"], "oracle-o1");
    let (_, v) = call(portal.api, "GET", "/v1/mesh/nodes", Some(&reader), &[], "").await;
    let o = v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node_id"] == "oracle-o1").cloned())
        .unwrap_or_default();
    assert_eq!(o["status"], "removed", "{v}");
    let (_, v) = call(guardian.api, "GET", "/v1/psi", Some(&reader), &[], "").await;
    assert_eq!(v["phase"], "rubedo", "{v}");
    drop(portal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_makes_every_redis_route_unhealthy_and_the_alert_fire() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("mesh-routes");
    let key = signing_key(&dir);
    let redis = RedisServer::start(0).await;
    let url = redis.url();
    let reader = token(&db, Role::Reader).await;
    let portal = service("portal", &db, &dir.join("p"), &url, fast("p1")).await;
    let mut g = guardian_fast();
    g.extend([
        "--signing-key-file".to_string(),
        key.to_string_lossy().into_owned(),
        "--journal-path".to_string(),
        dir.join("proofchain.jsonl").to_string_lossy().into_owned(),
    ]);
    let guardian = service("guardian", &db, &dir.join("g"), &url, g).await;
    let oracle = service("oracle", &db, &dir.join("o"), &url, fast("o1")).await;
    let routes = [
        ("portal-p1->redis", &portal),
        ("guardian-g1->redis", &guardian),
        ("oracle-o1->redis", &oracle),
    ];
    let rules = shortened_rules(
        &dir,
        &[(
            "expr: vaultmesh_mesh_route_healthy == 0\n        for: 5m",
            "expr: vaultmesh_mesh_route_healthy == 0\n        for: 0s",
        )],
    );
    let prom = prometheus(
        &dir,
        &rules,
        &[
            ("vaultmesh-portal", &portal),
            ("vaultmesh-guardian", &guardian),
            ("vaultmesh-oracle", &oracle),
        ],
    )
    .await;
    for (route, s) in routes {
        eventually(&format!("{route} healthy"), 20, || async {
            let text = scrape(s).await;
            (sample(
                &text,
                "vaultmesh_mesh_route_healthy",
                &format!("route_id=\"{route}\""),
            ) == Some(1.0))
            .then_some(())
        })
        .await;
    }

    redis.kill_ref().await;
    let stopped = std::time::Instant::now();
    for (route, s) in routes {
        eventually(&format!("{route} unhealthy"), 10, || async {
            let text = scrape(s).await;
            (sample(
                &text,
                "vaultmesh_mesh_route_healthy",
                &format!("route_id=\"{route}\""),
            ) == Some(0.0))
            .then_some(())
        })
        .await;
    }
    // One probe interval (200 ms) plus one probe's timeout (200 ms), and the three scrapes of
    // this loop on a busy 2-core machine.
    let took = stopped.elapsed();
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    let firing = eventually("RouteUnhealthy for all three", 30, || async {
        let alerts: Vec<Value> = prom
            .alerts()
            .await
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "RouteUnhealthy" && a["state"] == "firing")
            .collect();
        (alerts.len() >= 3).then_some(alerts)
    })
    .await;
    for (route, _) in routes {
        let a = firing
            .iter()
            .find(|a| a["labels"]["route_id"] == route)
            .unwrap_or_else(|| panic!("{route} not alerted: {firing:?}"));
        assert_eq!(a["labels"]["severity"], "warning");
        assert_eq!(
            a["annotations"]["description"],
            format!("Route {route} is unhealthy")
        );
    }
    // Postgres stays healthy; the stored routes say the same.
    let (s, v) = call(portal.api, "GET", "/v1/mesh/routes", Some(&reader), &[], "").await;
    assert_eq!(s, 200, "{v}");
    let listed = v["routes"].as_array().cloned().unwrap_or_default();
    for (route, _) in routes {
        let r = listed
            .iter()
            .find(|r| r["route_id"] == route)
            .cloned()
            .unwrap_or_default();
        assert_eq!(r["healthy"], false, "{v}");
    }
    assert!(listed
        .iter()
        .filter(|r| r["target"] == "postgres")
        .all(|r| r["healthy"] == true));

    // Back on the same port: healthy again, and every change receipted once per route.
    let _redis = RedisServer::start(redis.port).await;
    for (route, s) in routes {
        eventually(&format!("{route} healthy again"), 20, || async {
            let text = scrape(s).await;
            (sample(
                &text,
                "vaultmesh_mesh_route_healthy",
                &format!("route_id=\"{route}\""),
            ) == Some(1.0))
            .then_some(())
        })
        .await;
    }
    let changes = eventually("route receipts", 10, || async {
        let r = receipts(&db, "mesh").await;
        let c: Vec<(String, bool)> = r
            .iter()
            .filter(|(k, p)| k == "route_state_changed" && p["target"] == "redis")
            .map(|(_, p)| {
                (
                    p["route_id"].as_str().unwrap_or_default().to_string(),
                    p["healthy"] == true,
                )
            })
            .collect();
        (c.len() == 6).then_some(c)
    })
    .await;
    for (route, _) in routes {
        let states: Vec<bool> = changes
            .iter()
            .filter(|c| c.0 == route)
            .map(|c| c.1)
            .collect();
        // First seen healthy: stored, not a change; then down and up again.
        assert_eq!(states, [false, true], "{route}: {changes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_divergence_walks_psi_through_every_phase() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("mesh-psi");
    let key = signing_key(&dir);
    let admin = token(&db, Role::Admin).await;
    let writer = token(&db, Role::Writer).await;
    let redis = redis_url();
    let portal = service("portal", &db, &dir.join("p"), &redis, fast("p1")).await;
    let guardian = spawn_guardian_with(
        &db,
        &dir,
        &key,
        &dir.join("proofchain.jsonl"),
        &guardian_fast(),
    )
    .await;
    let phase = || async {
        let (s, v) = call(guardian.api, "GET", "/v1/psi", Some(&admin), &[], "").await;
        assert_eq!(s, 200, "{v}");
        v
    };
    let metric_phase =
        || async { sample(&scrape(&guardian).await, "vaultmesh_psi_current_phase", "") };
    let wait_phase = |want: &'static str, value: f64| async move {
        eventually(&format!("phase {want}"), 20, || async {
            let v = phase().await;
            (v["phase"] == want && metric_phase().await == Some(value)).then_some(v)
        })
        .await
    };
    wait_phase("rubedo", 3.0).await;
    for i in 0..3 {
        let (s, v) = call(
            portal.api,
            "POST",
            "/v1/scrolls/drills/receipts",
            Some(&writer),
            &[],
            &format!(r#"{{"type":"drill","payload":{{"ok":true,"i":{i}}}}}"#),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    eventually("integrated", 20, || async {
        (checkpoint_size(portal.api, "drills").await == Some(3)).then_some(())
    })
    .await;

    // Tamper with a stored receipt (as the schema owner can); a pass finds it → NIGREDO.
    tamper_drills(&db, 1, "\"ok\":true", "\"ok\":false").await;
    let (s, v) = call(
        guardian.api,
        "POST",
        "/v1/guardian/verify",
        Some(&admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["intact"], false, "{v}");
    let v = wait_phase("nigredo", 0.0).await;
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("divergence")),
        "{v}"
    );

    // A transmutation alone is not enough while the divergence is unacknowledged.
    let (s, t1) = call(
        guardian.api,
        "POST",
        "/v1/psi/transmutations",
        Some(&admin),
        &[],
        r#"{"description":"restore drills seq 1 from the backup"}"#,
    )
    .await;
    assert_eq!(s, 201, "{t1}");
    let (s, v) = call(
        guardian.api,
        "POST",
        "/v1/psi/transmutations",
        Some(&admin),
        &[],
        r#"{"description":"a second one"}"#,
    )
    .await;
    assert_eq!(s, 409, "one transmutation at a time: {v}");
    let (s, v) = call(
        guardian.api,
        "POST",
        "/v1/psi/transmutations",
        Some(&writer),
        &[],
        r#"{"description":"x"}"#,
    )
    .await;
    assert_eq!(s, 403, "admins only: {v}");
    for bad in [
        r#"{"description":""}"#,
        r#"{"description":"a","x":1}"#,
        "[]",
        "{",
        r#"{"description":"\u0007"}"#,
    ] {
        let (s, v) = call(
            guardian.api,
            "POST",
            "/v1/psi/transmutations",
            Some(&admin),
            &[],
            bad,
        )
        .await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(phase().await["phase"], "nigredo");

    // Acknowledged + transmutation in progress → ALBEDO.
    let (_, f) = call(
        guardian.api,
        "GET",
        "/v1/guardian/divergence",
        Some(&admin),
        &[],
        "",
    )
    .await;
    let ids: Vec<Value> = f["findings"]
        .as_array()
        .map(|a| a.iter().map(|x| x["id"].clone()).collect())
        .unwrap_or_default();
    assert!(!ids.is_empty(), "{f}");
    let body = serde_json::json!({"findings": ids}).to_string();
    let (s, v) = call(
        guardian.api,
        "POST",
        "/v1/guardian/divergence/ack",
        Some(&admin),
        &[],
        &body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait_phase("albedo", 1.0).await;

    // Abandoned while the divergence is still open → back to NIGREDO.
    let id1 = t1["id"].as_i64().unwrap_or_default();
    let (s, v) = call(
        guardian.api,
        "POST",
        &format!("/v1/psi/transmutations/{id1}/abandon"),
        Some(&admin),
        &[],
        r#"{"note":"wrong backup"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "abandoned");
    let (s, v) = call(
        guardian.api,
        "POST",
        &format!("/v1/psi/transmutations/{id1}/complete"),
        Some(&admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 409, "closed once: {v}");
    let (s, v) = call(
        guardian.api,
        "POST",
        "/v1/psi/transmutations/999/complete",
        Some(&admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = call(
        guardian.api,
        "POST",
        "/v1/psi/transmutations/abc/complete",
        Some(&admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    wait_phase("nigredo", 0.0).await;

    // A second transmutation: ALBEDO; the repair, then completion → CITRINITAS (probation:
    // a clean verification pass, the quiet period) → RUBEDO.
    let (s, t2) = call(
        guardian.api,
        "POST",
        "/v1/psi/transmutations",
        Some(&admin),
        &[],
        r#"{"description":"restore from the second backup"}"#,
    )
    .await;
    assert_eq!(s, 201, "{t2}");
    wait_phase("albedo", 1.0).await;
    let id2 = t2["id"].as_i64().unwrap_or_default();
    let text = scrape(&guardian).await;
    assert_eq!(
        sample(
            &text,
            "vaultmesh_psi_transmutation_status",
            &format!("status=\"in_progress\",transmutation_id=\"{id2}\"")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "vaultmesh_psi_transmutation_status",
            &format!("status=\"abandoned\",transmutation_id=\"{id1}\"")
        ),
        Some(1.0)
    );
    assert!(sample(
        &text,
        "vaultmesh_psi_transmutation_started_timestamp",
        &format!("transmutation_id=\"{id2}\"")
    )
    .is_some());
    // Completed without repairing anything: probation's pass still finds the divergence, and
    // the mesh is back in NIGREDO.
    let (s, v) = call(
        guardian.api,
        "POST",
        &format!("/v1/psi/transmutations/{id2}/complete"),
        Some(&admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "a bare POST completes: {v}");
    wait_phase("nigredo", 0.0).await;
    // A third transmutation, the repair, completion → CITRINITAS → RUBEDO.
    let (s, t3) = call(
        guardian.api,
        "POST",
        "/v1/psi/transmutations",
        Some(&admin),
        &[],
        r#"{"description":"restore from the third backup"}"#,
    )
    .await;
    assert_eq!(s, 201, "{t3}");
    wait_phase("albedo", 1.0).await;
    let id3 = t3["id"].as_i64().unwrap_or_default();
    tamper_drills(&db, 1, "\"ok\":false", "\"ok\":true").await;
    let (s, v) = call(
        guardian.api,
        "POST",
        &format!("/v1/psi/transmutations/{id3}/complete"),
        Some(&admin),
        &[],
        r#"{"note":"restored and verified"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // Probation: the divergence waits for a pass to confirm the repair (still listed,
    // acknowledged), then the quiet period.
    let v = wait_phase("citrinitas", 2.0).await;
    assert!(
        v["open_conditions"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["acknowledged"] == true)),
        "{v}"
    );
    let v = wait_phase("rubedo", 3.0).await;
    assert_eq!(v["open_conditions"], serde_json::json!([]), "{v}");
    let text = scrape(&guardian).await;
    assert_eq!(
        sample(
            &text,
            "vaultmesh_psi_phase_duration_seconds",
            "phase=\"nigredo\""
        ),
        Some(0.0)
    );
    assert!(sample(
        &text,
        "vaultmesh_psi_phase_duration_seconds",
        "phase=\"rubedo\""
    )
    .is_some());

    // Every transition and transmutation step receipted, in order.
    let steps: Vec<String> = receipts(&db, "psi")
        .await
        .into_iter()
        .map(|(k, p)| match k.as_str() {
            "phase_changed" => format!("->{}", p["to"].as_str().unwrap_or_default()),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(
        steps,
        [
            "->rubedo",
            "->nigredo",
            "transmutation_opened",
            "->albedo",
            "transmutation_abandoned",
            "->nigredo",
            "transmutation_opened",
            "->albedo",
            "transmutation_completed",
            "->citrinitas",
            "->nigredo",
            "transmutation_opened",
            "->albedo",
            "transmutation_completed",
            "->citrinitas",
            "->rubedo",
        ]
    );
    // The psi scroll is the guardian's: a client key cannot write into it.
    let (s, v) = call(
        portal.api,
        "POST",
        "/v1/scrolls/psi/receipts",
        Some(&writer),
        &[],
        r#"{"type":"phase_changed","payload":{"to":"rubedo"}}"#,
    )
    .await;
    assert_eq!(s, 403, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_role_cannot_fake_another_services_node_or_the_psi_phase() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let portal = db
        .role_client(ledger::store::DbRole::Portal)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let insert = "INSERT INTO mesh_nodes (node_id, service, instance, role, version, mesh_id, \
                  api_addr, metrics_addr, started_at, ready, heartbeat_ms) VALUES \
                  ($1, $2, $3, 'x', '1', 'm', 'a', 'm', now(), true, 1000)";
    // Its own node: allowed.
    portal
        .execute(insert, &[&"portal-x", &"portal", &"x"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A guardian's or an oracle's heartbeat: refused.
    for (id, svc, inst) in [("guardian-x", "guardian", "x"), ("oracle-x", "oracle", "x")] {
        let e = portal.execute(insert, &[&id, &svc, &inst]).await;
        assert!(e.is_err(), "{svc} row written by the portal role");
    }
    // Announcing itself joined, or rewriting its own service: refused.
    for sql in [
        "UPDATE mesh_nodes SET announced = 'joined' WHERE node_id = 'portal-x'",
        "UPDATE mesh_nodes SET service = 'guardian' WHERE node_id = 'portal-x'",
        "DELETE FROM mesh_nodes WHERE node_id = 'portal-x'",
    ] {
        assert!(portal.execute(sql, &[]).await.is_err(), "{sql}");
    }
    // Psi is the guardian's alone.
    for sql in [
        "INSERT INTO psi_state (phase, since, reason) VALUES ('rubedo', now(), 'forged')",
        "INSERT INTO psi_transmutations (description, opened_by) VALUES ('forged', 'x')",
        "INSERT INTO psi_conditions (key, kind, detail) VALUES ('k', 'emergency', 'x')",
    ] {
        assert!(portal.execute(sql, &[]).await.is_err(), "{sql}");
    }
    // Even the guardian cannot move a closed transmutation or reopen a resolved condition.
    let guardian = db
        .role_client(ledger::store::DbRole::Guardian)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // (Its session takes a lease term first, as the leading guardian's do.)
    guardian
        .batch_execute(
            "UPDATE guardian_lease SET term = term + 1, holder = 'test', taken_at = now(); \
             SELECT set_config('vaultmesh.lease_term', term::text, false) FROM guardian_lease; \
             INSERT INTO psi_transmutations (description, opened_by) VALUES ('t', 'k'); \
             UPDATE psi_transmutations SET status = 'completed', closed_by = 'k', closed_at = now(); \
             INSERT INTO psi_conditions (key, kind, detail, resolved_at) VALUES ('c', 'emergency', 'x', now());",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for sql in [
        "UPDATE psi_transmutations SET status = 'abandoned', closed_by = 'k', closed_at = now()",
        "UPDATE psi_conditions SET resolved_at = NULL",
        "DELETE FROM psi_transmutations",
        "INSERT INTO psi_transmutations (description, opened_by) VALUES ('a', 'k'), ('b', 'k')",
    ] {
        assert!(guardian.execute(sql, &[]).await.is_err(), "{sql}");
    }
}
