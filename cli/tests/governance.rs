//! Governance against the real services (portal, guardian, oracle in-process on real Postgres
//! and Redis, real HTTP on port 0): every rule kind on every write path, a constitution
//! reaching a second portal within a second (by notification and by poll), the emergency
//! freeze across the mesh and across a restart, forged governance rows ignored, a flood of
//! violations kept to a bounded number of receipts, and the read audit accounting for every
//! read.

use ledger::gate::{Service, Writer};
use ledger::note::NoteSigner;
use ledger::receipt::ReceiptDraft;
use ledger::service::{RunningService, Shutdown};
use ledger::storage::{KeyStore, ReceiptLog};
use ledger::store::{DbRole, NewReceipt, Role};
use ledger::testing::{admit_as, call, http, scratch_dir, service_config, TestDb};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Governance changes must reach every service within this time (the issue's bound).
const PROPAGATION: Duration = Duration::from_secs(1);

struct Keys {
    admin: String,
    admin_id: String,
    writer: String,
    reader: String,
    reader_id: String,
    lead: String,
    lead_id: String,
}

async fn keys(db: &TestDb) -> Keys {
    let make = |role: Role| async move {
        db.store
            .create_api_key(role, None, "governance")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let admin = make(Role::Admin).await;
    let lead = make(Role::Writer).await;
    let reader = make(Role::Reader).await;
    Keys {
        admin: admin.token,
        admin_id: admin.key.id,
        writer: make(Role::Writer).await.token,
        reader: reader.token,
        reader_id: reader.key.id,
        lead: lead.token,
        lead_id: lead.key.id,
    }
}

fn config(db: &TestDb, role: DbRole) -> ledger::config::CommonConfig {
    service_config(&db.url(role))
}

async fn portal(db: &TestDb, opts: portal::PortalArgs) -> RunningService {
    portal::start_with(
        config(db, DbRole::Portal),
        portal::PortalArgs {
            auth_cache_secs: 0,
            ..opts
        },
        Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("portal: {e}"))
}

fn signer(dir: &std::path::Path) -> (PathBuf, NoteSigner) {
    let key = dir.join("guardian.key");
    let s = NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    (key, s)
}

async fn guardian(db: &TestDb, dir: &std::path::Path, key: PathBuf) -> RunningService {
    guardian::start_with(
        config(db, DbRole::Guardian),
        guardian::GuardianArgs {
            signing_key_file: key,
            journal_path: dir.join("proofchain.jsonl"),
            integrate_interval_ms: 100,
            epoch_interval_secs: 3600,
            ..guardian::GuardianArgs::default()
        },
        Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("guardian: {e}"))
}

async fn oracle(db: &TestDb) -> RunningService {
    oracle::start_with(
        config(db, DbRole::Oracle),
        oracle::OracleArgs {
            corpus_dir: Some(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/corpus"),
            ),
            ..oracle::OracleArgs::default()
        },
        Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("oracle: {e}"))
}

async fn post(addr: SocketAddr, path: &str, token: &str, body: &Value) -> (u16, Value) {
    call(addr, "POST", path, Some(token), &[], &body.to_string()).await
}

async fn submit(addr: SocketAddr, token: &str, scroll: &str, body: Value) -> (u16, Value) {
    post(
        addr,
        &format!("/v1/scrolls/{scroll}/receipts"),
        token,
        &body,
    )
    .await
}

async fn metrics(addr: SocketAddr) -> String {
    http(addr, "GET", "/metrics")
        .await
        .map(|(_, body)| body)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The value of the sample whose line starts with `series` (name and labels as exported).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits (up to `limit`) for `check` to hold, polling an observable; returns the time taken.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn count(db: &TestDb, scroll: &str, kind: &str) -> i64 {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    c.query_one(
        "SELECT count(*) FROM receipts r JOIN scrolls s ON s.id = r.scroll_id \
         WHERE s.name = $1 AND ($2 = '' OR r.type = $2)",
        &[&scroll, &kind],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Payloads of `kind` receipts in `scroll`, in order.
async fn payloads(db: &TestDb, scroll: &str, kind: &str) -> Vec<Value> {
    db.store
        .receipts_of_type(scroll, kind)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| Value::Object(r.receipt.payload))
        .collect()
}

fn constitution(version: u64, lead_id: &str, allow_oracle: bool) -> Value {
    let compliance = if allow_oracle {
        json!(["control_*", "oracle_answer"])
    } else {
        json!(["control_*"])
    };
    let guardian = if allow_oracle {
        json!(["anchor_*", "divergence_acknowledged"])
    } else {
        json!(["anchor_failure"])
    };
    json!({
        "version": version,
        "description": "test constitution",
        "scrolls": {
            "drills": {
                "types": ["drill_*", "note"],
                "max_payload_bytes": 256,
                "payload": {"drill_*": {"type": "object", "required": ["drill_id"],
                                        "properties": {"drill_id": {"type": "string"}}}},
                "writers": {"drill_signed*": {"key_ids": [lead_id]}}
            },
            "compliance": {"types": compliance},
            "guardian": {"types": guardian}
        }
    })
}

async fn adopt(addr: SocketAddr, admin: &str, doc: &Value) -> Value {
    let (s, b) = post(
        addr,
        "/v1/governance/constitution",
        admin,
        &json!({ "constitution": doc }),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b
}

fn assert_violation(got: (u16, Value), rule: &str, field: &str) {
    let (s, b) = got;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["code"], "constitutional_violation", "{b}");
    assert_eq!(b["error"]["rule"], rule, "{b}");
    assert_eq!(b["error"]["field"], field, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_rule_kind_is_enforced_on_every_write_path() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("governance-rules");
    let k = keys(&db).await;
    let (key, _) = signer(&dir);
    let g = guardian(&db, &dir, key).await;
    let p = portal(&db, portal::PortalArgs::default()).await;
    let o = oracle(&db).await;
    let a = p.api_addr;

    // Before any adoption: 404, and anything the gate allows is written.
    let (s, b) = call(a, "GET", "/v1/governance/constitution", None, &[], "").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("no_constitution"))
    );
    assert_eq!(
        submit(
            a,
            &k.writer,
            "drills",
            json!({"type": "anything", "payload": {}})
        )
        .await
        .0,
        201
    );

    // Only admins adopt; a bad document is refused naming the rule at fault.
    let doc = constitution(1, &k.lead_id, false);
    for token in [&k.writer, &k.reader] {
        let (s, _) = post(
            a,
            "/v1/governance/constitution",
            token,
            &json!({"constitution": doc}),
        )
        .await;
        assert_eq!(s, 403);
    }
    let (s, _) = call(
        a,
        "POST",
        "/v1/governance/constitution",
        None,
        &[],
        &json!({"constitution": doc}).to_string(),
    )
    .await;
    assert_eq!(s, 401);
    let mut bad = doc.clone();
    bad["scrolls"]["drills"]["payload"]["drill_*"]["type"] = json!("nonsense");
    let (s, b) = post(
        a,
        "/v1/governance/constitution",
        &k.admin,
        &json!({"constitution": bad}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_constitution")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("scrolls.drills.payload"),
        "{b}"
    );
    let mut bad = doc.clone();
    bad["scrolls"]["drills"]["writers"]["x"] = json!({"roles": ["boss"]});
    let (s, b) = post(
        a,
        "/v1/governance/constitution",
        &k.admin,
        &json!({"constitution": bad}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("roles[0]"),
        "{b}"
    );

    let adopted = adopt(a, &k.admin, &doc).await;
    let (s, b) = post(
        a,
        "/v1/governance/constitution",
        &k.admin,
        &json!({"constitution": doc}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("stale_version")),
        "{b}"
    );
    let (s, b) = call(a, "GET", "/v1/governance/constitution", None, &[], "").await;
    assert_eq!(s, 200);
    assert_eq!(b["constitution"], doc);
    assert_eq!(b["adopted_by"], k.admin_id.as_str());
    assert_eq!(b["receipt"], adopted["receipt"]);
    // The whole document is in the receipt, which anyone can prove.
    let seq = adopted["receipt"]["seq"].as_u64().unwrap_or(u64::MAX);
    let (s, r) = call(
        a,
        "GET",
        &format!("/v1/scrolls/governance/receipts/{seq}"),
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (r["type"].as_str(), &r["payload"]["constitution"]),
        (Some("constitution_adopted"), &doc)
    );

    // Single submissions: each rule kind allows and refuses.
    let w = &k.writer;
    assert_eq!(
        submit(
            a,
            w,
            "drills",
            json!({"type": "drill_started", "payload": {"drill_id": "d1"}})
        )
        .await
        .0,
        201
    );
    assert_eq!(
        submit(
            a,
            w,
            "drills",
            json!({"type": "note", "payload": {"text": "short"}})
        )
        .await
        .0,
        201
    );
    assert_violation(
        submit(a, w, "drills", json!({"type": "other", "payload": {}})).await,
        "drills.types",
        "body.type",
    );
    assert_violation(
        submit(
            a,
            w,
            "drills",
            json!({"type": "note", "payload": {"text": "x".repeat(300)}}),
        )
        .await,
        "drills.max_payload_bytes",
        "body.payload",
    );
    assert_violation(
        submit(
            a,
            w,
            "drills",
            json!({"type": "drill_started", "payload": {}}),
        )
        .await,
        "drills.payload[drill_*]",
        "body.payload.drill_id",
    );
    assert_violation(
        submit(
            a,
            w,
            "drills",
            json!({"type": "drill_started", "payload": {"drill_id": 5}}),
        )
        .await,
        "drills.payload[drill_*]",
        "body.payload.drill_id",
    );
    let signed = json!({"type": "drill_signed", "payload": {"drill_id": "d2"}});
    assert_violation(
        submit(a, w, "drills", signed.clone()).await,
        "drills.writers[drill_signed*]",
        "body.type",
    );
    assert_violation(
        submit(a, &k.admin, "drills", signed.clone()).await,
        "drills.writers[drill_signed*]",
        "body.type",
    );
    assert_eq!(submit(a, &k.lead, "drills", signed).await.0, 201);
    // Scrolls the document does not name (and no `*` rules) are not restricted.
    assert_eq!(
        submit(a, w, "treasury", json!({"type": "other", "payload": {}}))
            .await
            .0,
        201
    );

    // Batches are all or nothing.
    let before = count(&db, "drills", "").await;
    let batch = json!({"receipts": [
        {"type": "note", "payload": {}},
        {"type": "drill_done", "payload": {"drill_id": "d3"}},
        {"type": "drill_done", "payload": {"drill_id": []}}
    ]});
    assert_violation(
        post(a, "/v1/scrolls/drills/receipts/batch", w, &batch).await,
        "drills.payload[drill_*]",
        "receipts[2].payload.drill_id",
    );
    assert_eq!(
        count(&db, "drills", "").await,
        before,
        "nothing of a refused batch is written"
    );
    let ok = json!({"receipts": [{"type": "note", "payload": {}}, {"type": "drill_done", "payload": {"drill_id": "d3"}}]});
    assert_eq!(
        post(a, "/v1/scrolls/drills/receipts/batch", w, &ok).await.0,
        201
    );
    assert_eq!(count(&db, "drills", "").await, before + 2);

    // The oracle's own receipts: an answer the constitution refuses is not served.
    let q =
        json!({"question": "How long must AI system logs be kept?", "frameworks": ["eu_ai_act"]});
    let (s, b) = post(o.api_addr, "/v1/oracle/query", &k.reader, &q).await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(
        (b["error"]["code"].as_str(), b["error"]["rule"].as_str()),
        (Some("constitutional_violation"), Some("compliance.types"))
    );
    assert_eq!(count(&db, "compliance", "oracle_answer").await, 0);

    // The guardian's own receipts: the epoch is anchored, its `anchor_success` event refused
    // and counted on the guardian.
    let (s, b) = post(g.api_addr, "/v1/guardian/anchor", &k.admin, &json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(count(&db, "guardian", "anchor_success").await, 0);
    let m = metrics(g.metrics_addr).await;
    assert_eq!(
        sample(
            &m,
            r#"vaultmesh_governance_violations_total{rule="guardian.types",scroll="guardian"}"#
        ),
        Some(1.0),
        "{m}"
    );

    // Version 2 lets the oracle and the guardian write again.
    adopt(a, &k.admin, &constitution(2, &k.lead_id, true)).await;
    within(PROPAGATION, "oracle sees version 2", || async {
        post(o.api_addr, "/v1/oracle/query", &k.reader, &q).await.0 == 200
    })
    .await;
    let (s, _) = post(g.api_addr, "/v1/guardian/anchor", &k.admin, &json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(count(&db, "guardian", "anchor_success").await, 1);

    // Counters: exact per scroll and rule, every rule present from zero.
    let m = metrics(p.metrics_addr).await;
    for (rule, n) in [
        ("drills.types", 1.0),
        ("drills.max_payload_bytes", 1.0),
        ("drills.payload[drill_*]", 3.0),
        ("drills.writers[drill_signed*]", 2.0),
        ("compliance.types", 0.0),
    ] {
        let scroll = rule.split('.').next().unwrap_or_default();
        let series =
            format!(r#"vaultmesh_governance_violations_total{{rule="{rule}",scroll="{scroll}"}}"#);
        assert_eq!(sample(&m, &series), Some(n), "{series}\n{m}");
    }

    // At shutdown each service receipts its window: one receipt per scroll and rule.
    p.stop().await;
    o.stop().await;
    g.stop().await;
    let v = payloads(&db, "governance", "constitutional_violation").await;
    let mut seen: Vec<(String, u64)> = v
        .iter()
        .map(|p| {
            (
                format!(
                    "{}/{}",
                    p["scroll"].as_str().unwrap_or_default(),
                    p["rule"].as_str().unwrap_or_default()
                ),
                p["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("compliance/compliance.types".to_string(), 1),
            ("drills/drills.max_payload_bytes".to_string(), 1),
            ("drills/drills.payload[drill_*]".to_string(), 3),
            ("drills/drills.types".to_string(), 1),
            ("drills/drills.writers[drill_signed*]".to_string(), 2),
            ("guardian/guardian.types".to_string(), 1),
        ]
    );
    let sample_of = v
        .iter()
        .find(|p| p["rule"] == "drills.writers[drill_signed*]")
        .cloned()
        .unwrap_or_default();
    assert_eq!(sample_of["sample"]["field"], "body.type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_portal_enforces_a_new_constitution_within_a_second() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let a = portal(&db, portal::PortalArgs::default()).await;
    let b = portal(&db, portal::PortalArgs::default()).await;
    let bad = json!({"type": "other", "payload": {}});
    assert_eq!(
        submit(b.api_addr, &k.writer, "drills", bad.clone()).await.0,
        201
    );

    // By notification: adopted through A, refused by B within a second.
    adopt(a.api_addr, &k.admin, &constitution(1, &k.lead_id, true)).await;
    let took = within(PROPAGATION, "B enforces version 1", || async {
        submit(b.api_addr, &k.writer, "drills", bad.clone()).await.0 == 422
    })
    .await;
    eprintln!("constitution reached the second portal in {took:?} (notification)");

    // By poll alone: a version written without a notification (as if it were lost) still
    // reaches both portals within a second.
    let mut doc = constitution(2, &k.lead_id, true);
    doc["scrolls"]["drills"]["types"] = json!(["drill_*", "note", "other"]);
    let payload = json!({"version": 2, "adopted_by": k.admin_id, "sha3": "", "constitution": doc});
    let item = NewReceipt {
        draft: ReceiptDraft::new("constitution_adopted", payload).unwrap_or_else(|e| panic!("{e}")),
        submitter: String::new(),
        idempotency_key: None,
        request_hash: None,
    };
    let portal_role = db
        .role_store(DbRole::Portal)
        .unwrap_or_else(|e| panic!("{e}"));
    portal_role
        .append_receipts(
            admit_as(&Writer::Service(Service::Portal), "governance", vec![item]),
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for p in [&a, &b] {
        let took = within(PROPAGATION, "version 2 by poll", || async {
            submit(p.api_addr, &k.writer, "drills", bad.clone()).await.0 == 201
        })
        .await;
        eprintln!("constitution reached a portal in {took:?} (poll)");
    }

    // A newer adoption row that does not parse (only a forgery could be one: the API
    // validates) is passed over, also by a portal started afterwards: version 2 still rules.
    let broken = NewReceipt {
        draft: ReceiptDraft::new(
            "constitution_adopted",
            json!({"version": 3, "constitution": {"version": "three"}}),
        )
        .unwrap_or_else(|e| panic!("{e}")),
        submitter: String::new(),
        idempotency_key: None,
        request_hash: None,
    };
    portal_role
        .append_receipts(
            admit_as(
                &Writer::Service(Service::Portal),
                "governance",
                vec![broken],
            ),
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let c = portal(&db, portal::PortalArgs::default()).await;
    let (s, v) = call(
        c.api_addr,
        "GET",
        "/v1/governance/constitution",
        None,
        &[],
        "",
    )
    .await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(2)), "{v}");
    assert_violation(
        submit(
            c.api_addr,
            &k.writer,
            "drills",
            json!({"type": "zzz", "payload": {}}),
        )
        .await,
        "drills.types",
        "body.type",
    );
    for p in [a, b, c] {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emergency_freezes_every_service_and_survives_a_restart() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("governance-emergency");
    let k = keys(&db).await;
    let (key, signer) = signer(&dir);
    let vkey = dir.join("guardian.vkey");
    std::fs::write(&vkey, signer.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
    let opts = || portal::PortalArgs {
        guardian_vkey_file: Some(vkey.clone()),
        ..portal::PortalArgs::default()
    };
    let g = guardian(&db, &dir, key).await;
    let a = portal(&db, opts()).await;
    let mut b = portal(&db, opts()).await;
    let o = oracle(&db).await;
    for i in 0..3 {
        let (s, _) = submit(
            a.api_addr,
            &k.writer,
            "drills",
            json!({"type": "note", "payload": {"i": i}}),
        )
        .await;
        assert_eq!(s, 201);
    }
    within(
        Duration::from_secs(10),
        "checkpoint of drills at 3",
        || async {
            let (s, c) = call(
                a.api_addr,
                "GET",
                "/v1/scrolls/drills/checkpoint",
                None,
                &[("accept", "application/json")],
                "",
            )
            .await;
            s == 200 && c["tree_size"] == 3
        },
    )
    .await;

    // Only admins raise; a reason is required.
    let raise = json!({"reason": "suspected key leak"});
    assert_eq!(
        post(a.api_addr, "/v1/governance/emergency", &k.writer, &raise)
            .await
            .0,
        403
    );
    let (s, e) = post(
        g.api_addr,
        "/v1/governance/emergency",
        &k.admin,
        &json!({"reason": " "}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_reason"))
    );

    // Raised through the guardian: every portal refuses writes within a second.
    let (s, e) = post(g.api_addr, "/v1/governance/emergency", &k.admin, &raise).await;
    assert_eq!(s, 201, "{e}");
    for p in [&a, &b] {
        let took = within(PROPAGATION, "portal frozen", || async {
            submit(
                p.api_addr,
                &k.writer,
                "drills",
                json!({"type": "note", "payload": {}}),
            )
            .await
            .0 == 503
        })
        .await;
        eprintln!("freeze reached a portal in {took:?}");
    }
    let (s, e) = post(a.api_addr, "/v1/governance/emergency", &k.admin, &raise).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("emergency_active"))
    );
    let (s, e) = submit(
        b.api_addr,
        &k.admin,
        "treasury",
        json!({"type": "note", "payload": {}}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("emergency_active")),
        "{e}"
    );
    let (s, e) = post(
        b.api_addr,
        "/v1/scrolls",
        &k.admin,
        &json!({"name": "frozen-out"}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("emergency_active")),
        "{e}"
    );
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/scrolls/drills/receipts/batch",
            a.api_addr
        ))
        .bearer_auth(&k.writer)
        .json(&json!({"receipts": [{"type": "note", "payload": {}}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("30")
    );
    let q =
        json!({"question": "How long must AI system logs be kept?", "frameworks": ["eu_ai_act"]});
    let (s, e) = post(o.api_addr, "/v1/oracle/query", &k.reader, &q).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("emergency_active")),
        "{e}"
    );
    assert_eq!(count(&db, "drills", "").await, 3);

    // Reads, proofs and checkpoints go on; the gauge is 1 on all three services.
    let (s, _) = call(
        b.api_addr,
        "GET",
        "/v1/scrolls/drills/receipts/1",
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        b.api_addr,
        "GET",
        "/v1/scrolls/drills/proof/inclusion?seq=1",
        None,
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200);
    let (s, st) = call(b.api_addr, "GET", "/v1/governance/emergency", None, &[], "").await;
    assert_eq!(
        (s, &st["reason"], &st["raised_by"]),
        (200, &json!("suspected key leak"), &json!(k.admin_id))
    );
    for m in [
        g.metrics_addr,
        a.metrics_addr,
        b.metrics_addr,
        o.metrics_addr,
    ] {
        within(PROPAGATION, "gauge 1", || async {
            sample(&metrics(m).await, "vaultmesh_governance_emergency_active") == Some(1.0)
        })
        .await;
    }
    // Anchoring and integration go on: an epoch, its event in `guardian`, and that scroll's
    // new checkpoint.
    let (s, r) = post(g.api_addr, "/v1/guardian/anchor", &k.admin, &json!({})).await;
    assert_eq!(s, 200, "{r}");
    let events = count(&db, "guardian", "").await;
    assert!(events >= 1);
    within(
        Duration::from_secs(10),
        "guardian scroll checkpointed",
        || async {
            let (s, c) = call(
                a.api_addr,
                "GET",
                "/v1/scrolls/guardian/checkpoint",
                None,
                &[("accept", "application/json")],
                "",
            )
            .await;
            s == 200 && c["tree_size"].as_i64() == Some(events)
        },
    )
    .await;

    // A lift forged straight into the database by the oracle's role is ignored: after a
    // later legitimate change has reached portal B, B is still frozen.
    let forged = NewReceipt {
        draft: ReceiptDraft::new("emergency_lifted", json!({"lifted_by": k.admin_id}))
            .unwrap_or_else(|e| panic!("{e}")),
        submitter: String::new(),
        idempotency_key: None,
        request_hash: None,
    };
    let oracle_role = db
        .role_store(DbRole::Oracle)
        .unwrap_or_else(|e| panic!("{e}"));
    oracle_role
        .append_receipts(
            admit_as(
                &Writer::Service(Service::Guardian),
                "governance",
                vec![forged],
            ),
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    adopt(a.api_addr, &k.admin, &json!({"version": 1, "scrolls": {}})).await;
    within(PROPAGATION, "B sees the adoption", || async {
        call(
            b.api_addr,
            "GET",
            "/v1/governance/constitution",
            None,
            &[],
            "",
        )
        .await
        .0 == 200
    })
    .await;
    assert_eq!(
        submit(
            b.api_addr,
            &k.writer,
            "drills",
            json!({"type": "note", "payload": {}})
        )
        .await
        .0,
        503
    );

    // A portal restarted during the freeze comes up frozen.
    b.stop().await;
    b = portal(&db, opts()).await;
    let (s, e) = submit(
        b.api_addr,
        &k.writer,
        "drills",
        json!({"type": "note", "payload": {}}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("emergency_active")),
        "{e}"
    );

    // Lifted through a portal: writes accepted everywhere within a second, gauges back to 0.
    let (s, l) = call(
        a.api_addr,
        "DELETE",
        "/v1/governance/emergency",
        Some(&k.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{l}");
    for p in [&a, &b] {
        let took = within(PROPAGATION, "portal thawed", || async {
            submit(
                p.api_addr,
                &k.writer,
                "drills",
                json!({"type": "note", "payload": {}}),
            )
            .await
            .0 == 201
        })
        .await;
        eprintln!("lift reached a portal in {took:?}");
    }
    for m in [
        g.metrics_addr,
        a.metrics_addr,
        b.metrics_addr,
        o.metrics_addr,
    ] {
        within(PROPAGATION, "gauge 0", || async {
            sample(&metrics(m).await, "vaultmesh_governance_emergency_active") == Some(0.0)
        })
        .await;
    }
    let (s, e) = call(
        a.api_addr,
        "DELETE",
        "/v1/governance/emergency",
        Some(&k.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("no_emergency"))
    );

    // Both receipts, in order, with the reason and the admin key.
    let raised = db
        .store
        .receipts_of_type("governance", "emergency_raised")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lifted = db
        .store
        .receipts_of_type("governance", "emergency_lifted")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raised.len(), 1);
    let legit: Vec<_> = lifted
        .iter()
        .filter(|r| r.receipt.submitter == "portal")
        .collect();
    assert_eq!(legit.len(), 1);
    assert!(raised[0].receipt.seq < legit[0].receipt.seq);
    assert_eq!(raised[0].receipt.payload["reason"], "suspected key leak");
    assert_eq!(raised[0].receipt.payload["raised_by"], k.admin_id.as_str());
    assert_eq!(raised[0].receipt.submitter, "guardian");
    assert_eq!(legit[0].receipt.payload["lifted_by"], k.admin_id.as_str());
    assert_eq!(
        legit[0].receipt.payload["raised_seq"],
        raised[0].receipt.seq
    );
    for s in [a, b, o, g] {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_violations_make_a_bounded_number_of_receipts() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let mut cfg = config(&db, DbRole::Portal);
    cfg.governance.violation_window = Duration::from_secs(2);
    let p = portal::start_with(
        cfg,
        portal::PortalArgs {
            rate_limit_per_sec: 0,
            ..portal::PortalArgs::default()
        },
        Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    adopt(
        p.api_addr,
        &k.admin,
        &json!({"version": 1, "scrolls": {"drills": {"types": ["ok"]}}}),
    )
    .await;
    const N: usize = 10_000;
    const WORKERS: usize = 16;
    let url = format!("http://{}/v1/scrolls/drills/receipts", p.api_addr);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (url, token) = (url.clone(), k.writer.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut refused = 0usize;
            for i in (w..N).step_by(WORKERS) {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"type": format!("bad_{}", i % 7), "payload": {"i": i}}))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if r.status().as_u16() == 422 {
                    refused += 1;
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let elapsed = started.elapsed();
    eprintln!("{N} violating requests in {elapsed:?}");
    assert_eq!(refused, N);
    assert!(
        elapsed < Duration::from_secs(60),
        "not within a minute: {elapsed:?}"
    );
    let m = metrics(p.metrics_addr).await;
    assert_eq!(
        sample(
            &m,
            r#"vaultmesh_governance_violations_total{rule="drills.types",scroll="drills"}"#
        ),
        Some(N as f64)
    );
    p.stop().await;
    let v = payloads(&db, "governance", "constitutional_violation").await;
    let total: u64 = v.iter().filter_map(|p| p["count"].as_u64()).sum();
    assert_eq!(total, N as u64, "every violation is in a receipt");
    let windows = elapsed.as_secs() / 2 + 2;
    assert!(
        v.len() as u64 <= windows,
        "{} receipts for {windows} windows",
        v.len()
    );
    assert_eq!(count(&db, "drills", "").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_read_of_receipt_contents_is_accounted_for_in_the_access_scroll() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("governance-access");
    let k = keys(&db).await;
    let second_reader = db
        .store
        .create_api_key(Role::Reader, None, "audit")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (key, signer) = signer(&dir);
    let vkey = dir.join("guardian.vkey");
    std::fs::write(&vkey, signer.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
    let g = guardian(&db, &dir, key).await;
    let opts = || portal::PortalArgs {
        guardian_vkey_file: Some(vkey.clone()),
        rate_limit_per_sec: 0,
        access_window_secs: 1,
        ..portal::PortalArgs::default()
    };
    let p = portal(&db, opts()).await;
    let a = p.api_addr;
    // Scrolls of this test's own, so the process-wide counters are this test's alone.
    for scroll in ["audit-a", "audit-b"] {
        db.store
            .create_scroll(scroll)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for scroll in ["audit-a", "audit-b"] {
        let batch = json!({"receipts": (0..50).map(|i| json!({"type": "note", "payload": {"i": i}})).collect::<Vec<_>>()});
        assert_eq!(
            post(
                a,
                &format!("/v1/scrolls/{scroll}/receipts/batch"),
                &k.writer,
                &batch
            )
            .await
            .0,
            201
        );
    }
    within(Duration::from_secs(10), "checkpoints at 50", || async {
        let mut ok = true;
        for scroll in ["audit-a", "audit-b"] {
            let (s, c) = call(
                a,
                "GET",
                &format!("/v1/scrolls/{scroll}/checkpoint"),
                None,
                &[("accept", "application/json")],
                "",
            )
            .await;
            ok &= s == 200 && c["tree_size"] == 50;
        }
        ok
    })
    .await;

    // 1,000 reads by two reader keys across two scrolls: by seq, by hash, lists, bundles.
    let readers = [
        (k.reader.clone(), "r1"),
        (second_reader.token.clone(), "r2"),
    ];
    let mut expected: std::collections::BTreeMap<
        (String, String),
        (u64, u64, std::collections::BTreeSet<u64>),
    > = Default::default();
    let ids = [k.reader_id.clone(), second_reader.key.id.clone()];
    let mut requests = 0;
    for i in 0..1000u64 {
        let (token, _) = &readers[(i % 2) as usize];
        let id = ids[(i % 2) as usize].clone();
        let scroll = if i % 3 == 0 { "audit-b" } else { "audit-a" };
        let seq = (i * 7) % 50;
        let (path, read): (String, Vec<u64>) = match i % 4 {
            0 => (format!("/v1/scrolls/{scroll}/receipts/{seq}"), vec![seq]),
            1 => (
                format!("/v1/scrolls/{scroll}/receipts?from={seq}&limit=3"),
                (seq..(seq + 3).min(50)).collect(),
            ),
            2 => (
                format!("/v1/scrolls/{scroll}/receipts/{seq}/bundle"),
                vec![seq],
            ),
            _ => {
                let (_, r) = call(
                    a,
                    "GET",
                    &format!("/v1/scrolls/{scroll}/receipts/{seq}"),
                    Some(token),
                    &[],
                    "",
                )
                .await;
                requests += 1;
                let e = expected
                    .entry((id.clone(), scroll.to_string()))
                    .or_default();
                e.0 += 1;
                e.1 += 1;
                e.2.insert(seq);
                (
                    format!(
                        "/v1/receipts/{}",
                        r["leaf_hash"].as_str().unwrap_or_default()
                    ),
                    vec![seq],
                )
            }
        };
        let (s, b) = call(a, "GET", &path, Some(token), &[], "").await;
        assert_eq!(s, 200, "{path}: {b}");
        requests += 1;
        let e = expected.entry((id, scroll.to_string())).or_default();
        e.0 += 1;
        e.1 += read.len() as u64;
        e.2.extend(read);
    }
    // Proofs, checkpoints and anchors are public and not audited; a writer's read is denied.
    call(
        a,
        "GET",
        "/v1/scrolls/audit-a/proof/inclusion?seq=3",
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    call(
        a,
        "GET",
        "/v1/scrolls/audit-a/checkpoint",
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    assert_eq!(
        call(
            a,
            "GET",
            "/v1/scrolls/audit-a/receipts/1",
            Some(&k.writer),
            &[],
            ""
        )
        .await
        .0,
        403
    );
    let m = metrics(p.metrics_addr).await;
    assert_eq!(
        sample(
            &m,
            r#"vaultmesh_access_total{action="get",result="denied",scroll="audit-a"}"#
        ),
        Some(1.0),
        "{m}"
    );
    let allowed: f64 = m
        .lines()
        .filter(|l| l.starts_with("vaultmesh_access_total{") && l.contains(r#"result="allowed""#))
        .filter(|l| l.contains(r#"scroll="audit-a""#) || l.contains(r#"scroll="audit-b""#))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    assert_eq!(allowed, f64::from(requests));
    p.stop().await;

    // The access receipts account for every read: requests, receipts and positions.
    let rows = db
        .store
        .receipts_of_type("access", "access_recorded")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got: std::collections::BTreeMap<
        (String, String),
        (u64, u64, std::collections::BTreeSet<u64>),
    > = Default::default();
    for r in &rows {
        let p = &r.receipt.payload;
        assert_eq!(r.receipt.submitter, "portal");
        let e = got
            .entry((
                p["key_id"].as_str().unwrap_or_default().to_string(),
                p["scroll"].as_str().unwrap_or_default().to_string(),
            ))
            .or_default();
        e.0 += p["requests"].as_u64().unwrap_or(0);
        e.1 += p["receipts_read"].as_u64().unwrap_or(0);
        let mut tree = ledger::merkle::CompactTree::<ledger::hash::Sha3Digest>::default();
        for range in p["positions"].as_array().into_iter().flatten() {
            let (lo, hi) = (
                range[0].as_u64().unwrap_or(0),
                range[1].as_u64().unwrap_or(0),
            );
            for seq in lo..=hi {
                e.2.insert(seq);
                let scroll = p["scroll"].as_str().unwrap_or_default();
                let stored = db
                    .store
                    .receipt(scroll, seq)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| panic!("{scroll}/{seq}"));
                tree.push(stored.leaf_hash);
            }
        }
        assert_eq!(
            p["leaf_root"].as_str(),
            Some(ledger::hash::to_hex(&tree.root()).as_str()),
            "{p:?}"
        );
    }
    assert_eq!(got, expected);

    // And they are verifiable like any other receipt: a bundle from a fresh portal.
    let last = rows.last().map(|r| r.receipt.seq).unwrap_or(0);
    let p = portal(&db, opts()).await;
    within(
        Duration::from_secs(10),
        "access scroll checkpointed",
        || async {
            let (s, c) = call(
                p.api_addr,
                "GET",
                "/v1/scrolls/access/checkpoint",
                None,
                &[("accept", "application/json")],
                "",
            )
            .await;
            s == 200 && c["tree_size"].as_u64().is_some_and(|n| n > last)
        },
    )
    .await;
    let (s, b) = call(
        p.api_addr,
        "GET",
        &format!("/v1/scrolls/access/receipts/{last}/bundle"),
        Some(&k.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let bundle: ledger::bundle::ProofBundle =
        serde_json::from_value(b).unwrap_or_else(|e| panic!("{e}"));
    bundle
        .verify(&signer.verifier())
        .unwrap_or_else(|e| panic!("access receipt does not verify: {e}"));
    p.stop().await;
    g.stop().await;
}

/// Two admins changing governance at the same moment through two portals: each change is
/// made exactly once — one adoption of each version, one raise, one lift — and the other
/// request gets 409, because a change re-reads the state and writes its receipt under a
/// mesh-wide lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_changes_through_two_portals_are_made_once() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let a = portal(&db, portal::PortalArgs::default()).await;
    let b = portal(&db, portal::PortalArgs::default()).await;
    let pair = |(x, y): ((u16, Value), (u16, Value))| {
        let mut s = [x.0, y.0];
        s.sort_unstable();
        (s, x.1, y.1)
    };
    const ROUNDS: u64 = 8;
    for version in 1..=ROUNDS {
        let body = json!({ "constitution": constitution(version, &k.lead_id, true) });
        let (s, x, y) = pair(tokio::join!(
            post(a.api_addr, "/v1/governance/constitution", &k.admin, &body),
            post(b.api_addr, "/v1/governance/constitution", &k.admin, &body),
        ));
        assert_eq!(s, [201, 409], "version {version}: {x} {y}");
        let reason = json!({"reason": format!("drill {version}")});
        let (s, x, y) = pair(tokio::join!(
            post(a.api_addr, "/v1/governance/emergency", &k.admin, &reason),
            post(b.api_addr, "/v1/governance/emergency", &k.admin, &reason),
        ));
        assert_eq!(s, [201, 409], "raise {version}: {x} {y}");
        let lift = |addr| {
            call(
                addr,
                "DELETE",
                "/v1/governance/emergency",
                Some(&k.admin),
                &[],
                "",
            )
        };
        let (s, x, y) = pair(tokio::join!(lift(a.api_addr), lift(b.api_addr)));
        assert_eq!(s, [200, 409], "lift {version}: {x} {y}");
    }
    for kind in [
        "constitution_adopted",
        "emergency_raised",
        "emergency_lifted",
    ] {
        assert_eq!(
            count(&db, "governance", kind).await,
            ROUNDS as i64,
            "{kind}"
        );
    }
    a.stop().await;
    b.stop().await;
}
