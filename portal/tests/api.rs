//! The portal's HTTP API against real Postgres and Redis: every SPEC §9 error row, auth,
//! idempotency, two portal instances on one scroll, proofs and bundles, metrics, and the
//! integrity re-check on read.

use ledger::checkpoint::Checkpoint;
use ledger::note::NoteSigner;
use ledger::proofchain::{AnchorRecord, AnchoredScroll, GENESIS_PREV};
use ledger::storage::{AnchorStore, CheckpointStore, KeyStore, TileStore};
use ledger::store::Role;
use ledger::testing::{call, service_config, TestDb};
use portal::PortalArgs;
use serde_json::json;

struct Keys {
    admin: String,
    writer: String,
    drills_writer: String,
    reader: String,
}

async fn keys(db: &TestDb) -> Keys {
    let mk = |role, scrolls: Option<Vec<String>>| {
        let store = db.store.clone();
        async move {
            store
                .create_api_key(role, scrolls, "test")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .token
        }
    };
    Keys {
        admin: mk(Role::Admin, None).await,
        writer: mk(Role::Writer, None).await,
        drills_writer: mk(Role::Writer, Some(vec!["drills".into()])).await,
        reader: mk(Role::Reader, None).await,
    }
}

fn opts() -> PortalArgs {
    PortalArgs {
        auth_cache_secs: 0,
        max_batch: 50,
        ..PortalArgs::default()
    }
}

async fn start(db: &TestDb, o: PortalArgs) -> ledger::service::RunningService {
    portal::start_with(
        service_config(&db.url(ledger::store::DbRole::Portal)),
        o,
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("portal: {e}"))
}

async fn total_receipts(db: &TestDb) -> i64 {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    c.query_one("SELECT count(*) FROM receipts", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_read_and_replay() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let p = start(&db, opts()).await;
    let body = r#"{"type":"drill_completed","payload":{"drill":"fire","ok":true,"n":1.50}}"#;
    let (s, r) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts",
        Some(&k.writer),
        &[("idempotency-key", "abc")],
        body,
    )
    .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["seq"], 0);
    assert_eq!(r["payload"]["n"], json!(1.5));
    let leaf = ledger::jcs::to_vec(&json!({
        "scroll": r["scroll"], "seq": r["seq"], "type": r["type"], "payload": r["payload"],
        "submitted_at": r["submitted_at"], "submitter": r["submitter"]
    }))
    .unwrap_or_default();
    assert_eq!(
        r["leaf_hash"].as_str(),
        Some(ledger::hash::to_hex(&ledger::receipt::leaf_hash(&leaf)).as_str())
    );

    let (s, again) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts",
        Some(&k.writer),
        &[("idempotency-key", "abc")],
        body,
    )
    .await;
    assert_eq!((s, &again), (200, &r), "a replay returns the original");
    let other = r#"{"type":"drill_completed","payload":{"drill":"flood"}}"#;
    let (s, e) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts",
        Some(&k.writer),
        &[("idempotency-key", "abc")],
        other,
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["code"], "idempotency_conflict");
    assert_eq!(total_receipts(&db).await, 1);

    let (s, got) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/receipts/0",
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    assert_eq!((s, &got), (200, &r));
    let (s, got) = call(
        p.api_addr,
        "GET",
        &format!("/v1/receipts/{}", r["leaf_hash"].as_str().unwrap_or("")),
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    assert_eq!((s, &got), (200, &r));
    let (s, list) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/receipts?from=0&limit=10",
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list["receipts"][0], r);
    assert_eq!(list["next"], 1);
    let (s, scrolls) = call(p.api_addr, "GET", "/v1/scrolls", None, &[], "").await;
    assert_eq!(s, 200);
    let drills = scrolls["scrolls"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "drills").cloned());
    assert_eq!(drills.map(|d| d["size"].clone()), Some(json!(1)));

    let (s, b) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts/batch",
        Some(&k.writer),
        &[],
        r#"{"receipts":[{"type":"a","payload":{}},{"type":"b","payload":{"x":[1,2]}}]}"#,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["receipts"][0]["seq"], 1);
    assert_eq!(b["receipts"][1]["seq"], 2);

    let (s, c) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls",
        Some(&k.admin),
        &[],
        r#"{"name":"audits"}"#,
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let (s, _) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls",
        Some(&k.admin),
        &[],
        r#"{"name":"audits"}"#,
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/audits/receipts",
        Some(&k.writer),
        &[],
        body,
    )
    .await;
    assert_eq!(s, 201);

    let (_, metrics) = ledger::testing::http(p.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_default();
    for needle in [
        r#"vaultmesh_http_requests_total{method="POST",path="/v1/scrolls/{scroll}/receipts",status="201"}"#,
        r#"vaultmesh_http_requests_total{method="POST",path="/v1/scrolls/{scroll}/receipts",status="409"}"#,
        r#"vaultmesh_receipts_total{scroll="drills",type="drill_completed"}"#,
        r#"vaultmesh_receipt_write_duration_seconds_bucket{scroll="drills",le="0.001"}"#,
        r#"vaultmesh_http_request_duration_seconds_bucket{method="GET",path="/v1/scrolls/{scroll}/receipts/{seq}",le="10"}"#,
        "vaultmesh_active_connections",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}");
    }
    assert!(
        !metrics.contains("path=\"/v1/scrolls/drills"),
        "raw paths must not be labels"
    );
    p.stop().await;
}

/// name, method, path, bearer token, body, expected status, expected error code
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    String,
    u16,
    &'a str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_status_and_writes_nothing() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let p = start(&db, opts()).await;
    let ok = r#"{"type":"t","payload":{}}"#;
    let big = format!(
        r#"{{"type":"t","payload":{{"s":"{}"}}}}"#,
        "x".repeat(300 * 1024)
    );
    let batch_over = format!(r#"{{"receipts":[{}]}}"#, vec![ok; 51].join(","));
    let bad_batch =
        r#"{"receipts":[{"type":"t","payload":{}},{"type":"t","payload":{"n":1e400}}]}"#;
    let revoked = db
        .store
        .create_api_key(Role::Writer, None, "r")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.store
        .revoke_api_key(&revoked.key.id)
        .await
        .unwrap_or_default();
    let w = Some(k.writer.as_str());
    let cases: Vec<Case> = vec![
        (
            "malformed json",
            "POST",
            "/v1/scrolls/drills/receipts",
            w,
            "{not json".into(),
            400,
            "malformed_json",
        ),
        (
            "type not a string",
            "POST",
            "/v1/scrolls/drills/receipts",
            w,
            r#"{"type":5,"payload":{}}"#.into(),
            400,
            "invalid_type",
        ),
        (
            "payload not an object",
            "POST",
            "/v1/scrolls/drills/receipts",
            w,
            r#"{"type":"t","payload":[1]}"#.into(),
            400,
            "invalid_payload",
        ),
        (
            "unknown field",
            "POST",
            "/v1/scrolls/drills/receipts",
            w,
            r#"{"type":"t","payload":{},"x":1}"#.into(),
            400,
            "unknown_field",
        ),
        (
            "empty type",
            "POST",
            "/v1/scrolls/drills/receipts",
            w,
            r#"{"type":"","payload":{}}"#.into(),
            400,
            "invalid_type",
        ),
        (
            "body over limit",
            "POST",
            "/v1/scrolls/drills/receipts",
            w,
            big,
            413,
            "payload_too_large",
        ),
        (
            "unknown scroll",
            "POST",
            "/v1/scrolls/nope/receipts",
            w,
            ok.into(),
            404,
            "unknown_scroll",
        ),
        (
            "bad scroll name",
            "POST",
            "/v1/scrolls/Bad.Name/receipts",
            w,
            ok.into(),
            400,
            "invalid_scroll_name",
        ),
        (
            "missing key",
            "POST",
            "/v1/scrolls/drills/receipts",
            None,
            ok.into(),
            401,
            "unauthorized",
        ),
        (
            "invalid key",
            "POST",
            "/v1/scrolls/drills/receipts",
            Some("vm_nope"),
            ok.into(),
            401,
            "unauthorized",
        ),
        (
            "revoked key",
            "POST",
            "/v1/scrolls/drills/receipts",
            Some(revoked.token.as_str()),
            ok.into(),
            401,
            "unauthorized",
        ),
        (
            "reader writes",
            "POST",
            "/v1/scrolls/drills/receipts",
            Some(k.reader.as_str()),
            ok.into(),
            403,
            "forbidden",
        ),
        (
            "writer, other scroll",
            "POST",
            "/v1/scrolls/compliance/receipts",
            Some(k.drills_writer.as_str()),
            ok.into(),
            403,
            "forbidden",
        ),
        (
            "writer reads",
            "GET",
            "/v1/scrolls/drills/receipts/0",
            w,
            String::new(),
            403,
            "forbidden",
        ),
        (
            "writer creates scroll",
            "POST",
            "/v1/scrolls",
            w,
            r#"{"name":"x"}"#.into(),
            403,
            "forbidden",
        ),
        (
            "non-double number",
            "POST",
            "/v1/scrolls/drills/receipts",
            w,
            r#"{"type":"t","payload":{"id":12345678901234567890}}"#.into(),
            400,
            "invalid_number",
        ),
        (
            "batch over limit",
            "POST",
            "/v1/scrolls/drills/receipts/batch",
            w,
            batch_over,
            400,
            "batch_size",
        ),
        (
            "batch with one bad item",
            "POST",
            "/v1/scrolls/drills/receipts/batch",
            w,
            bad_batch.into(),
            400,
            "invalid_number",
        ),
        (
            "unknown route",
            "GET",
            "/v1/nothing/here",
            None,
            String::new(),
            404,
            "not_found",
        ),
        (
            "wrong method",
            "DELETE",
            "/v1/scrolls",
            None,
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            "bad seq",
            "GET",
            "/v1/scrolls/drills/receipts/abc",
            Some(k.reader.as_str()),
            String::new(),
            400,
            "invalid_seq",
        ),
        (
            "bad leaf hash",
            "GET",
            "/v1/receipts/xyz",
            Some(k.reader.as_str()),
            String::new(),
            400,
            "invalid_hash",
        ),
        (
            "no checkpoint yet",
            "GET",
            "/v1/scrolls/drills/checkpoint",
            None,
            String::new(),
            404,
            "no_checkpoint",
        ),
        (
            "bad proof query",
            "GET",
            "/v1/scrolls/drills/proof/inclusion?seq=x",
            None,
            String::new(),
            400,
            "invalid_query",
        ),
        (
            "unknown anchor",
            "GET",
            "/v1/anchors/7",
            None,
            String::new(),
            404,
            "unknown_anchor",
        ),
    ];
    for (name, method, path, token, body, status, code) in cases {
        let (s, v) = call(p.api_addr, method, path, token, &[], &body).await;
        assert_eq!(s, status, "{name}: {v}");
        assert_eq!(v["error"]["code"].as_str(), Some(code), "{name}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {v}"
        );
    }
    let (_, v) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts",
        w,
        &[],
        r#"{"type":"t","payload":{"a":{"b":[0,1e999]}}}"#,
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("payload.a.b[1]")),
        "field named: {v}"
    );
    assert_eq!(
        total_receipts(&db).await,
        0,
        "no bad request wrote anything"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_portals_sixteen_clients_one_scroll_stay_gap_free() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let a = start(&db, opts()).await;
    let b = start(&db, opts()).await;
    let addrs = [a.api_addr, b.api_addr];
    let mut tasks = Vec::new();
    for c in 0..16usize {
        let token = k.writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..25usize {
                let body = format!(r#"{{"type":"load","payload":{{"client":{c},"i":{i}}}}}"#);
                let key = format!("c{c}-i{i}");
                let (s, r) = call(
                    addrs[(c + i) % 2],
                    "POST",
                    "/v1/scrolls/drills/receipts",
                    Some(&token),
                    &[("idempotency-key", &key)],
                    &body,
                )
                .await;
                assert_eq!(s, 201, "{r}");
                // Replay the same request on the other instance: same receipt back.
                let (s2, r2) = call(
                    addrs[(c + i + 1) % 2],
                    "POST",
                    "/v1/scrolls/drills/receipts",
                    Some(&token),
                    &[("idempotency-key", &key)],
                    &body,
                )
                .await;
                assert_eq!((s2, &r2), (200, &r), "replay across instances");
                seen.push(r["seq"].as_u64().unwrap_or(u64::MAX));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_else(|e| panic!("{e}")));
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..400).collect::<Vec<u64>>(),
        "gap-free, no duplicates"
    );
    assert_eq!(total_receipts(&db).await, 400);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_batches_replay_whole_across_instances_and_conflict_whole() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let a = start(&db, opts()).await;
    let b = start(&db, opts()).await;
    let batch = |n: u32, tag: &str| {
        let items: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"type":"t","payload":{{"i":{i},"tag":"{tag}"}}}}"#))
            .collect();
        format!(r#"{{"receipts":[{}]}}"#, items.join(","))
    };
    let path = "/v1/scrolls/drills/receipts/batch";
    // A keyless single first, so the batch does not start at 0.
    let (s, _) = call(
        a.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts",
        Some(&k.writer),
        &[],
        r#"{"type":"t","payload":{}}"#,
    )
    .await;
    assert_eq!(s, 201);
    let key = [("idempotency-key", "nightly-export-7")];
    let (s, first) = call(
        a.api_addr,
        "POST",
        path,
        Some(&k.writer),
        &key,
        &batch(5, "x"),
    )
    .await;
    assert_eq!(s, 201, "{first}");
    let seqs: Vec<u64> = first["receipts"]
        .as_array()
        .map(|v| v.iter().filter_map(|r| r["seq"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    // The same batch, differently formatted, on the other instance: the originals, 200.
    let spaced = batch(5, "x").replace(',', ", ");
    let (s, again) = call(b.api_addr, "POST", path, Some(&k.writer), &key, &spaced).await;
    assert_eq!(
        (s, &again),
        (200, &first),
        "replay returns the original batch"
    );
    // Same key, other content or other length: 409, nothing written.
    for other in [batch(5, "y"), batch(6, "x"), batch(4, "x")] {
        let (s, e) = call(b.api_addr, "POST", path, Some(&k.writer), &key, &other).await;
        assert_eq!(s, 409, "{e}");
        assert_eq!(e["error"]["code"], "idempotency_conflict");
    }
    // A single request may use the same key string: keys of batch items never collide.
    let (s, single) = call(
        a.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts",
        Some(&k.writer),
        &key,
        r#"{"type":"t","payload":{}}"#,
    )
    .await;
    assert_eq!((s, single["seq"].as_u64()), (201, Some(6)));
    assert_eq!(total_receipts(&db).await, 7);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_checkpoints_bundles_and_anchors() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let signer = NoteSigner::from_seed("vaultmesh-test/guardian", [5u8; 32])
        .unwrap_or_else(|e| panic!("{e}"));
    let vkey_file = std::env::temp_dir().join(format!("vm-portal-vkey-{}", std::process::id()));
    std::fs::write(&vkey_file, signer.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
    let p = start(
        &db,
        PortalArgs {
            guardian_vkey_file: Some(vkey_file.clone()),
            ..opts()
        },
    )
    .await;
    let items = (0..20)
        .map(|i| format!(r#"{{"type":"t","payload":{{"i":{i}}}}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let (s, _) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts/batch",
        Some(&k.writer),
        &[],
        &format!(r#"{{"receipts":[{items}]}}"#),
    )
    .await;
    assert_eq!(s, 201);
    // What the guardian will do: integrate, sign, anchor.
    let scroll = db
        .store
        .scroll("drills")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.store
        .integrate(scroll.id, 1000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut roots = Vec::new();
    for size in [10u64, 20] {
        let root = db
            .store
            .tree_root(scroll.scroll_ref(), size)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let note = Checkpoint {
            origin: "vaultmesh-test/drills".into(),
            size,
            root,
        }
        .sign(&signer)
        .unwrap_or_default();
        db.store
            .insert_checkpoint(scroll.id, size, &root, &note)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        roots.push(root);
    }
    let mut rec = AnchorRecord::build(
        1,
        "vaultmesh-test",
        "2026-11-23T00:00:00.000000Z",
        vec![AnchoredScroll {
            scroll: "drills".into(),
            tree_size: 20,
            root: ledger::hash::to_hex(&roots[1]),
        }],
        GENESIS_PREV,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    rec.signature = Some(rec.sign_head(&signer).unwrap_or_else(|e| panic!("{e}")));
    db.store
        .insert_anchor(&rec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (s, note) = ledger::testing::http(p.api_addr, "GET", "/v1/scrolls/drills/checkpoint")
        .await
        .unwrap_or_default();
    assert_eq!(s, 200);
    let cp = Checkpoint::verify(&note, &signer.verifier(), Some("vaultmesh-test/drills"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cp.size, 20);
    let (s, j) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/checkpoint",
        None,
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!((s, j["tree_size"].as_u64()), (200, Some(20)));
    let (s, vk) = ledger::testing::http(p.api_addr, "GET", "/v1/keys/guardian")
        .await
        .unwrap_or_default();
    assert_eq!((s, vk.trim()), (200, signer.verifier().to_vkey().as_str()));

    let (s, incl) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/proof/inclusion?seq=7&tree_size=10",
        None,
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{incl}");
    let proof: ledger::merkle::InclusionProof =
        serde_json::from_value(incl).unwrap_or_else(|e| panic!("{e}"));
    let (_, r7) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/receipts/7",
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    let lh = ledger::hash::from_hex(r7["leaf_hash"].as_str().unwrap_or("")).unwrap_or_default();
    assert!(
        ledger::merkle::verify_inclusion::<sha3::Sha3_256>(&lh, 7, 10, &proof.path, &roots[0])
            .is_ok()
    );
    let (s, cons) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/proof/consistency?from=10&to=20",
        None,
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200);
    let c: ledger::merkle::ConsistencyProof =
        serde_json::from_value(cons).unwrap_or_else(|e| panic!("{e}"));
    assert!(ledger::merkle::verify_consistency::<sha3::Sha3_256>(
        10, 20, &c.path, &roots[0], &roots[1]
    )
    .is_ok());
    let (s, e) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/proof/inclusion?seq=1&tree_size=21",
        None,
        &[],
        "",
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("beyond_checkpoint"))
    );

    let (s, b) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/receipts/3/bundle",
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let bundle: ledger::bundle::ProofBundle =
        serde_json::from_value(b).unwrap_or_else(|e| panic!("{e}"));
    let verdict = bundle
        .verify(&signer.verifier())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verdict.anchored_epoch, Some(1));
    let (s, list) = call(p.api_addr, "GET", "/v1/anchors", None, &[], "").await;
    assert_eq!(
        (s, list["anchors"][0]["anchor_hash"].as_str()),
        (200, Some(rec.anchor_hash.as_str()))
    );
    let (s, one) = call(p.api_addr, "GET", "/v1/anchors/1", None, &[], "").await;
    assert_eq!((s, one["epoch"].as_u64()), (200, Some(1)));
    let _ = std::fs::remove_file(vkey_file);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_receipts_are_a_500_not_data() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let mut cfg = service_config(&db.url(ledger::store::DbRole::Portal));
    cfg.redis_url = None;
    let p = portal::start_with(cfg, opts(), ledger::service::Shutdown::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (s, _) = call(
        p.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts",
        Some(&k.writer),
        &[],
        r#"{"type":"t","payload":{"v":1}}"#,
    )
    .await;
    assert_eq!(s, 201);
    let before = portal::metrics::INTEGRITY_FAILURES.get();
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner.batch_execute("ALTER TABLE receipts DISABLE TRIGGER USER; \
        UPDATE receipts SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), '\"v\":1', '\"v\":2'), 'UTF8'); \
        ALTER TABLE receipts ENABLE TRIGGER USER;").await.unwrap_or_else(|e| panic!("{e}"));
    let (s, v) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/receipts/0",
        Some(&k.reader),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 500, "{v}");
    assert_eq!(v["error"]["code"], "integrity_error");
    assert!(
        !v.to_string().contains("\"v\":2"),
        "the tampered body is never served"
    );
    assert!(portal::metrics::INTEGRITY_FAILURES.get() > before);
    p.stop().await;
}

/// Every (method, route, status) the portal has served in this test binary — read back
/// from its own request metrics after a sweep over every route — is in the OpenAPI document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route_and_status_served() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let k = keys(&db).await;
    let p = start(&db, opts()).await;
    let (s, doc) = call(p.api_addr, "GET", "/v1/openapi.json", None, &[], "").await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let ok = r#"{"type":"t","payload":{}}"#;
    let sweep: Vec<(&str, &str, Option<&str>, &str)> = vec![
        ("POST", "/v1/scrolls/drills/receipts", Some(&k.writer), ok),
        ("POST", "/v1/scrolls/drills/receipts", Some(&k.reader), ok),
        ("POST", "/v1/scrolls/drills/receipts", None, ok),
        (
            "POST",
            "/v1/scrolls/drills/receipts/batch",
            Some(&k.writer),
            r#"{"receipts":[]}"#,
        ),
        ("GET", "/v1/scrolls", None, ""),
        ("POST", "/v1/scrolls", Some(&k.admin), r#"{"name":"Bad"}"#),
        ("GET", "/v1/scrolls/drills/receipts", Some(&k.reader), ""),
        ("GET", "/v1/scrolls/nope/receipts/0", Some(&k.reader), ""),
        ("GET", "/v1/receipts/00", Some(&k.reader), ""),
        ("GET", "/v1/scrolls/drills/checkpoint", None, ""),
        ("GET", "/v1/scrolls/drills/proof/inclusion", None, ""),
        (
            "GET",
            "/v1/scrolls/drills/proof/consistency?from=0",
            None,
            "",
        ),
        (
            "GET",
            "/v1/scrolls/drills/receipts/0/bundle",
            Some(&k.reader),
            "",
        ),
        ("GET", "/v1/anchors?limit=0", None, ""),
        ("GET", "/v1/anchors/1", None, ""),
        ("GET", "/v1/keys/guardian", None, ""),
    ];
    for (method, path, token, body) in sweep {
        call(p.api_addr, method, path, token, &[], body).await;
    }
    let declared: std::collections::HashSet<(String, String, u16)> =
        portal::openapi::declared().into_iter().collect();
    let (_, metrics) = ledger::testing::http(p.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_default();
    let mut seen = 0;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("vaultmesh_http_requests_total{"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let key = (
            label("method"),
            label("path"),
            label("status").parse::<u16>().unwrap_or(0),
        );
        assert!(
            declared.contains(&key),
            "served but not in openapi.json: {key:?}"
        );
        let paths = doc["paths"]
            .as_object()
            .map(|m| m.contains_key(&key.1))
            .unwrap_or(false);
        assert!(paths, "{key:?} path missing from the document");
        seen += 1;
    }
    assert!(seen >= 16, "the sweep produced {seen} series");
    p.stop().await;
}
