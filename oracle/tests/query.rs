//! The oracle against a real Postgres: the sample corpus loads, questions get cited answers
//! with ledger evidence and verifiable inclusion proofs, every answer is receipted in
//! `compliance`, and bad input is a 4xx JSON error that writes nothing.
//! (One test per binary: the oracle's metrics are process-wide.)

use ledger::checkpoint::Checkpoint;
use ledger::hash::{from_hex, to_hex, Sha3Hasher};
use ledger::merkle::verify_inclusion;
use ledger::note::NoteSigner;
use ledger::storage::{CheckpointStore, KeyStore, ReceiptLog, TileStore};
use ledger::store::{Role, Store};
use ledger::testing::{append_receipts, call, http, service_config, TestDb};
use serde_json::json;
use sha3::Sha3_256;

/// What the guardian would do: integrate a scroll and sign a checkpoint over it.
async fn sign(store: &Store, scroll: &str) {
    let signer = NoteSigner::generate("vaultmesh-test/guardian").unwrap_or_else(|e| panic!("{e}"));
    let info = store.scroll(scroll).await.unwrap_or_else(|e| panic!("{e}"));
    let (_, size) = store
        .integrate(info.id, 10_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let root = store
        .tree_root(info.scroll_ref(), size)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let note = Checkpoint {
        origin: Checkpoint::origin_for("vaultmesh-test", scroll),
        size,
        root,
    }
    .sign(&signer)
    .unwrap_or_else(|e| panic!("{e}"));
    store
        .insert_checkpoint(info.id, size, &root, &note)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn compliance_size(store: &Store) -> u64 {
    store
        .scroll("compliance")
        .await
        .map(|s| s.size)
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_cite_the_corpus_prove_evidence_and_are_receipted() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let key = |role| {
        let store = db.store.clone();
        async move {
            store
                .create_api_key(role, None, "t")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .token
        }
    };
    let (reader, writer, admin) = (
        key(Role::Reader).await,
        key(Role::Writer).await,
        key(Role::Admin).await,
    );
    append_receipts(&db.store, "observability", "ai_event_logging_enabled", 3).await;
    append_receipts(&db.store, "observability", "ai_log_export", 2).await;
    sign(&db.store, "observability").await;
    append_receipts(&db.store, "observability", "ai_log_export", 1).await; // not yet checkpointed

    let opts = oracle::OracleArgs {
        corpus_dir: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/corpus")),
        ..oracle::OracleArgs::default()
    };
    let o = oracle::start_with(
        service_config(&db.url(ledger::store::DbRole::Oracle)),
        opts,
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // The sample corpus: four frameworks, counted in the seed metric.
    let (s, corpus) = call(o.api_addr, "GET", "/v1/oracle/corpus", None, &[], "").await;
    assert_eq!(s, 200, "{corpus}");
    let mut frameworks: Vec<&str> = corpus["documents"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["framework"].as_str()).collect())
        .unwrap_or_default();
    frameworks.sort_unstable();
    assert_eq!(frameworks, vec!["eu_ai_act", "gdpr", "iso27001", "nis2"]);
    let (_, m) = http(o.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        m.contains("vaultmesh_oracle_corpus_documents_total 4"),
        "{m}"
    );

    // A question with corpus support and ledger evidence.
    let q = json!({"question": "How long must AI system logs be kept, and are our AI logs exported?", "frameworks": ["eu_ai_act"], "scrolls": ["observability"]}).to_string();
    let (s, a) = call(
        o.api_addr,
        "POST",
        "/v1/oracle/query",
        Some(&reader),
        &[],
        &q,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert!(
        a["citations"].as_array().is_some_and(|c| !c.is_empty()),
        "{a}"
    );
    for c in a["citations"].as_array().into_iter().flatten() {
        assert_eq!(c["document_id"], "eu-ai-act-record-keeping");
        assert_eq!(c["framework"], "eu_ai_act");
        assert!(!c["excerpt"].as_str().unwrap_or_default().is_empty());
    }
    assert_eq!(
        a["compliance_flags"],
        json!({"gdpr_relevant": false, "ai_act_relevant": true, "nis2_relevant": false})
    );
    assert_eq!(a["insufficient_context"], false, "{a}");
    assert!(a["confidence"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(
        a["gaps"].as_array().is_some_and(|g| g.iter().any(|x| x
            .as_str()
            .unwrap_or_default()
            .contains("ai_oversight_review"))),
        "oversight is a gap: {a}"
    );
    assert_eq!(a["answered_by"], "extractive");
    let evidence = a["evidence"].as_array().cloned().unwrap_or_default();
    assert!(evidence.iter().any(|e| e["type"] == "ai_log_export"), "{a}");
    let mut proven = 0;
    for e in &evidence {
        assert_eq!(e["scroll"], "observability");
        let stored = db
            .store
            .receipt("observability", e["seq"].as_u64().unwrap_or(u64::MAX))
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no receipt {e}"));
        assert_eq!(
            e["leaf_hash"].as_str(),
            Some(to_hex(&stored.leaf_hash).as_str())
        );
        if e["proof"].is_null() {
            assert_eq!(
                e["seq"], 5,
                "only the receipt after the checkpoint lacks a proof"
            );
            continue;
        }
        let path: Vec<[u8; 32]> = e["proof"]["path"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| from_hex(h.as_str().unwrap_or_default()).unwrap_or_else(|_| panic!("hex")))
            .collect();
        let root = from_hex(e["proof"]["root"].as_str().unwrap_or_default())
            .unwrap_or_else(|_| panic!("hex"));
        verify_inclusion::<Sha3_256>(
            &stored.leaf_hash,
            stored.receipt.seq,
            e["proof"]["tree_size"].as_u64().unwrap_or(0),
            &path,
            &root,
        )
        .unwrap_or_else(|err| panic!("{err}"));
        proven += 1;
    }
    assert!(proven >= 2, "{a}");

    // The answer is receipted in `compliance` and the receipt commits to the answer.
    assert_eq!(a["receipt"]["scroll"], "compliance");
    let seq = a["receipt"]["seq"].as_u64().unwrap_or(u64::MAX);
    let r = db
        .store
        .receipt("compliance", seq)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no answer receipt"));
    assert_eq!(r.receipt.kind, "oracle_answer");
    assert_eq!(r.receipt.submitter, "oracle");
    assert_eq!(
        a["receipt"]["leaf_hash"].as_str(),
        Some(to_hex(&r.leaf_hash).as_str())
    );
    let answer_only = json!({
        "question": a["question"], "answer_text": a["answer_text"], "citations": a["citations"],
        "compliance_flags": a["compliance_flags"], "gaps": a["gaps"],
        "insufficient_context": a["insufficient_context"], "confidence": a["confidence"],
    });
    let digest = to_hex(&Sha3Hasher::plain(
        &ledger::jcs::to_vec(&answer_only).unwrap_or_default(),
    ));
    assert_eq!(
        r.receipt.payload["answer_sha3"].as_str(),
        Some(digest.as_str())
    );
    assert_eq!(
        r.receipt.payload["evidence"].as_array().map(Vec::len),
        Some(evidence.len())
    );

    // Nothing in the corpus: an honest "insufficient context", still receipted.
    let (s, none) = call(
        o.api_addr,
        "POST",
        "/v1/oracle/query",
        Some(&reader),
        &[],
        r#"{"question":"zebra xylophone quasar"}"#,
    )
    .await;
    assert_eq!(s, 200, "{none}");
    assert_eq!(
        (
            none["insufficient_context"].clone(),
            none["confidence"].as_f64()
        ),
        (json!(true), Some(0.0))
    );
    assert!(none["citations"].as_array().is_some_and(Vec::is_empty));

    // Bad input: a JSON 4xx, and no answer receipt.
    let before = compliance_size(&db.store).await;
    let long = json!({"question": "x".repeat(2001)}).to_string();
    let huge = json!({"question": "x".repeat(70_000)}).to_string();
    let cases: Vec<(Option<&str>, &str, u16)> = vec![
        (Some(&reader), r#"{"question":""}"#, 400),
        (Some(&reader), r#"{"question":"   "}"#, 400),
        (Some(&reader), &long, 400),
        (Some(&reader), &huge, 413),
        (
            Some(&reader),
            r#"{"question":"logs","frameworks":["sox"]}"#,
            400,
        ),
        (
            Some(&reader),
            r#"{"question":"logs","frameworks":"gdpr"}"#,
            400,
        ),
        (
            Some(&reader),
            r#"{"question":"logs","since":"yesterday"}"#,
            400,
        ),
        (
            Some(&reader),
            r#"{"question":"logs","since":"2026-02-01T00:00:00Z","until":"2026-01-01T00:00:00Z"}"#,
            400,
        ),
        (
            Some(&reader),
            r#"{"question":"logs","scrolls":["nope"]}"#,
            400,
        ),
        (
            Some(&reader),
            r#"{"question":"logs","scrolls":["Bad Name"]}"#,
            400,
        ),
        (Some(&reader), r#"{"question":"logs","extra":1}"#, 400),
        (Some(&reader), r#"{"question":42}"#, 400),
        (Some(&reader), r#"{"question":"logs""#, 400),
        (Some(&reader), r#"[]"#, 400),
        (None, r#"{"question":"logs"}"#, 401),
        (Some("vm_nope"), r#"{"question":"logs"}"#, 401),
        (Some(&writer), r#"{"question":"logs"}"#, 403),
    ];
    for (token, body, want) in cases {
        let (s, e) = call(o.api_addr, "POST", "/v1/oracle/query", token, &[], body).await;
        assert_eq!(s, want, "{body:.80}: {e}");
        assert!(
            e["error"]["code"].is_string() && e["error"]["message"].is_string(),
            "{e}"
        );
    }
    assert_eq!(
        compliance_size(&db.store).await,
        before,
        "bad queries write nothing"
    );

    // Corpus upload: admins only, validated, counted.
    let doc = json!({"id": "nis2-extra", "framework": "nis2", "text": "# Supply chain\nSuppliers are assessed.\nEvidence: supplier_assessed\n"}).to_string();
    assert_eq!(
        call(
            o.api_addr,
            "POST",
            "/v1/oracle/corpus",
            Some(&writer),
            &[],
            &doc
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            o.api_addr,
            "POST",
            "/v1/oracle/corpus",
            Some(&admin),
            &[],
            &doc.replace("nis2\"", "sox\"")
        )
        .await
        .0,
        400
    );
    let big = json!({"id": "big", "framework": "gdpr", "text": "x".repeat(1_200_000)}).to_string();
    assert_eq!(
        call(
            o.api_addr,
            "POST",
            "/v1/oracle/corpus",
            Some(&admin),
            &[],
            &big
        )
        .await
        .0,
        413
    );
    let (s, created) = call(
        o.api_addr,
        "POST",
        "/v1/oracle/corpus",
        Some(&admin),
        &[],
        &doc,
    )
    .await;
    assert_eq!(
        (s, created["sections"].as_u64()),
        (201, Some(1)),
        "{created}"
    );
    let (_, m) = http(o.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        m.contains("vaultmesh_oracle_corpus_documents_total 5"),
        "{m}"
    );
    assert!(
        m.contains("vaultmesh_oracle_query_duration_seconds_count 3"),
        "two answers and the unknown-scroll query that reached the ledger: {m}"
    );
    let (s, q) = call(
        o.api_addr,
        "POST",
        "/v1/oracle/query",
        Some(&admin),
        &[],
        r#"{"question":"supplier assessment","frameworks":["nis2"]}"#,
    )
    .await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["citations"][0]["document_id"], "nis2-extra", "{q}");
    assert!(
        q["gaps"].as_array().is_some_and(|g| !g.is_empty()),
        "no supplier_assessed receipts: {q}"
    );
    o.stop().await;
}
