//! Trust boundaries at the portal, attacked with ordinary credentials against a running
//! portal (real Postgres and Redis): writers cannot write the guardian's scroll or reserved
//! types, idempotency keys are private to one API key, a malformed type never joins a group
//! commit, and `/v1/status` names the database role in use.

use ledger::storage::KeyStore;
use ledger::store::{DbRole, Role};
use ledger::testing::{call, service_config, TestDb};
use portal::PortalArgs;

async fn key(db: &TestDb, role: Role, scrolls: Option<Vec<String>>) -> String {
    db.store
        .create_api_key(role, scrolls, "trust")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token
}

async fn start(db: &TestDb) -> ledger::service::RunningService {
    portal::start_with(
        service_config(&db.url(DbRole::Portal)),
        PortalArgs {
            auth_cache_secs: 0,
            ..PortalArgs::default()
        },
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("portal: {e}"))
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    c.query_one(sql, &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_cannot_write_service_scrolls_or_reserved_types() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let writer = key(&db, Role::Writer, None).await;
    let admin = key(&db, Role::Admin, None).await;
    let p = start(&db).await;
    let attempts = [
        (
            "guardian",
            r#"{"type":"divergence_acknowledged","payload":{"findings":["x"]}}"#,
        ),
        ("guardian", r#"{"type":"drill_completed","payload":{}}"#),
        (
            "compliance",
            r#"{"type":"oracle_answer","payload":{"answer":"forged"}}"#,
        ),
        (
            "drills",
            r#"{"type":"anchor_success","payload":{"epoch":1}}"#,
        ),
        ("governance", r#"{"type":"emergency_lifted","payload":{}}"#),
        (
            "federation",
            r#"{"type":"federation_discrepancy","payload":{}}"#,
        ),
        ("federation", r#"{"type":"witness_note","payload":{}}"#),
        ("psi", r#"{"type":"phase_changed","payload":{}}"#),
        ("psi", r#"{"type":"policy_reviewed","payload":{}}"#),
        ("mesh", r#"{"type":"node_joined","payload":{}}"#),
        ("mesh", r#"{"type":"route_checked","payload":{}}"#),
        (
            "observability",
            r#"{"type":"route_state_changed","payload":{}}"#,
        ),
    ];
    for token in [&writer, &admin] {
        for (scroll, body) in attempts {
            let path = format!("/v1/scrolls/{scroll}/receipts");
            let (s, b) = call(p.api_addr, "POST", &path, Some(token), &[], body).await;
            assert_eq!(s, 403, "{scroll} {body}: {b}");
            assert_eq!(b["error"]["code"], "forbidden", "{b}");
            let batch = format!(r#"{{"receipts":[{{"type":"ok","payload":{{}}}},{body}]}}"#);
            let (s, b) = call(
                p.api_addr,
                "POST",
                &format!("{path}/batch"),
                Some(token),
                &[],
                &batch,
            )
            .await;
            assert_eq!(s, 403, "batch {scroll} {body}: {b}");
        }
    }
    assert_eq!(count(&db, "SELECT count(*) FROM receipts").await, 0);
    let (s, b) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/governance/receipts",
        Some(&writer),
        &[],
        r#"{"type":"policy_reviewed","payload":{}}"#,
    )
    .await;
    assert_eq!(s, 403, "governance is the services' own: {b}");
    let (s, b) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/observability/receipts",
        Some(&writer),
        &[],
        r#"{"type":"policy_reviewed","payload":{}}"#,
    )
    .await;
    assert_eq!(
        s, 201,
        "clients may write other types in the other system scrolls: {b}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_private_to_one_api_key() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let a = key(&db, Role::Writer, None).await;
    let b = key(&db, Role::Writer, None).await;
    let p = start(&db).await;
    let body = r#"{"type":"drill_completed","payload":{"drill":"fire"}}"#;
    let post = |token: String| {
        let addr = p.api_addr;
        async move {
            call(
                addr,
                "POST",
                "/v1/scrolls/drills/receipts",
                Some(&token),
                &[("idempotency-key", "shared-key-1")],
                body,
            )
            .await
        }
    };
    let (s1, r1) = post(a.clone()).await;
    let (s2, r2) = post(b.clone()).await;
    assert_eq!((s1, s2), (201, 201), "{r1} {r2}");
    assert_ne!(
        r1["seq"], r2["seq"],
        "writer B must get a receipt of its own"
    );
    assert_ne!(r1["submitter"], r2["submitter"]);
    // Each key still replays its own, from the cache and from Postgres.
    for _ in 0..2 {
        let (s, r) = post(a.clone()).await;
        assert_eq!((s, &r["seq"]), (200, &r1["seq"]), "{r}");
        let (s, r) = post(b.clone()).await;
        assert_eq!((s, &r["seq"]), (200, &r2["seq"]), "{r}");
    }
    // The same for keyed batches.
    let batch = r#"{"receipts":[{"type":"t","payload":{}}]}"#;
    let mut seqs = Vec::new();
    for token in [&a, &b] {
        let (s, r) = call(
            p.api_addr,
            "POST",
            "/v1/scrolls/drills/receipts/batch",
            Some(token),
            &[("idempotency-key", "shared-batch")],
            batch,
        )
        .await;
        assert_eq!(s, 201, "{r}");
        seqs.push(r["receipts"][0]["seq"].clone());
    }
    assert_ne!(seqs[0], seqs[1]);
    assert_eq!(count(&db, "SELECT count(*) FROM receipts").await, 4);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_character_type_is_refused_before_it_joins_a_group() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let w = key(&db, Role::Writer, None).await;
    let p = start(&db).await;
    let mut good = Vec::new();
    for i in 0..50 {
        let (addr, w) = (p.api_addr, w.clone());
        good.push(tokio::spawn(async move {
            let body = format!(r#"{{"type":"drill_completed","payload":{{"i":{i}}}}}"#);
            call(
                addr,
                "POST",
                "/v1/scrolls/drills/receipts",
                Some(&w),
                &[],
                &body,
            )
            .await
        }));
    }
    for bad in [
        r#"{"type":"x\u0000","payload":{}}"#,
        r#"{"type":"\u0000","payload":{}}"#,
        r#"{"type":"a\u0085b","payload":{}}"#,
    ] {
        let (s, b) = call(
            p.api_addr,
            "POST",
            "/v1/scrolls/drills/receipts",
            Some(&w),
            &[],
            bad,
        )
        .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("invalid_type")),
            "{b}"
        );
        let batch = format!(r#"{{"receipts":[{{"type":"ok","payload":{{}}}},{bad}]}}"#);
        let (s, b) = call(
            p.api_addr,
            "POST",
            "/v1/scrolls/drills/receipts/batch",
            Some(&w),
            &[],
            &batch,
        )
        .await;
        assert_eq!(s, 400, "{b}");
    }
    for g in good {
        let (s, b) = g.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, 201, "{b}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM receipts").await, 50);
    let (_, metrics) = ledger::testing::http(p.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("vaultmesh_receipt_write_errors_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(
        counted.is_empty(),
        "a refused item must not count as a write error: {counted:?}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_database_role() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let p = start(&db).await;
    let (s, b) = call(p.api_addr, "GET", "/v1/status", None, &[], "").await;
    assert_eq!(s, 200);
    assert_eq!(b["db_role"], "vaultmesh_portal", "{b}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_errors_never_show_secrets_or_sql() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let role = format!("vm_status_{}", std::process::id());
    let secret = "Sup3r-S3cret-pw";
    owner
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; \
             CREATE ROLE {role} LOGIN PASSWORD '{secret}' IN ROLE vaultmesh_portal"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = db.url(DbRole::Portal);
    let host_db = url.split_once('@').map_or("", |(_, r)| r).to_string();
    let (hostport, dbname) = host_db.split_once('/').unwrap_or((&host_db, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    for dsn in [
        format!("postgres://{role}:{secret}@{hostport}/{dbname}"),
        format!("postgres://{role}@{hostport}/{dbname}?password={secret}"),
        format!("host={host} port={port} user={role} password='{secret}' dbname={dbname}"),
    ] {
        let p = portal::start_with(
            service_config(&dsn),
            PortalArgs::default(),
            ledger::service::Shutdown::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("portal with {dsn}: {e}"));
        let (s, b) = call(p.api_addr, "GET", "/v1/status", None, &[], "").await;
        assert_eq!(s, 200, "{b}");
        let text = b.to_string();
        assert!(!text.contains(secret), "status shows the password: {text}");
        assert_eq!(b["db_role"], role.as_str(), "{text}");
        p.stop().await;
    }
    // A query the database refuses: the client learns nothing about the SQL or the schema.
    owner
        .batch_execute(&format!("REVOKE vaultmesh_portal FROM {role}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p = portal::start_with(
        service_config(&format!("postgres://{role}:{secret}@{hostport}/{dbname}")),
        PortalArgs::default(),
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (s, b) = call(p.api_addr, "GET", "/v1/scrolls", None, &[], "").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("database_unavailable")),
        "{b}"
    );
    let text = b.to_string().to_ascii_lowercase();
    for leak in [
        "permission",
        "select",
        "scrolls",
        "sqlstate",
        "42501",
        &role,
    ] {
        assert!(
            !text.contains(leak),
            "the error body shows {leak:?}: {text}"
        );
    }
    p.stop().await;
    let _ = owner
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}
