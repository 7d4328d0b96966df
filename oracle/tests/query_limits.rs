//! What a reader's query may cost: every field is capped (a 400 naming the field, counted in
//! `vaultmesh_oracle_query_rejections_total{field}`, and nothing written), and an accepted
//! query makes the same bounded number of round trips to Postgres however many scrolls it
//! lists (up to the cap) and however much evidence the ledger holds.
//! (One test per binary: the oracle's metrics are process-wide.)

use ledger::checkpoint::Checkpoint;
use ledger::note::NoteSigner;
use ledger::storage::{CheckpointStore, KeyStore, TileStore};
use ledger::store::{Role, Store, DB_REQUESTS};
use ledger::testing::{append_receipts, call, http, service_config, TestDb};
use oracle::query::{MAX_QUESTION_CHARS, MAX_SCROLLS, MAX_STORE_QUERIES};
use serde_json::{json, Value};
use std::net::SocketAddr;

async fn sign(store: &Store, scroll: &str) {
    let signer = NoteSigner::generate("vaultmesh-test/guardian").unwrap_or_else(|e| panic!("{e}"));
    let info = store.scroll(scroll).await.unwrap_or_else(|e| panic!("{e}"));
    let (_, size) = store
        .integrate(info.id, 100_000)
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

fn rejections(metrics: &str, field: &str) -> u64 {
    let prefix = format!("vaultmesh_oracle_query_rejections_total{{field=\"{field}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn metrics(addr: SocketAddr) -> String {
    http(addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_capped_and_cost_a_bounded_number_of_round_trips() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let reader = db
        .store
        .create_api_key(Role::Reader, None, "r")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    for i in 0..MAX_SCROLLS {
        db.store
            .create_scroll(&format!("evidence-{i:02}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    append_receipts(&db.store, "evidence-00", "ai_log_export", 40).await;
    append_receipts(&db.store, "evidence-07", "ai_event_logging_enabled", 5).await;
    sign(&db.store, "evidence-00").await;
    sign(&db.store, "evidence-07").await;
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
    let ask = |body: String| {
        let reader = reader.clone();
        async move {
            call(
                o.api_addr,
                "POST",
                "/v1/oracle/query",
                Some(&reader),
                &[],
                &body,
            )
            .await
        }
    };
    let question = "Are AI system logs kept and exported?";
    let answers = || async {
        db.store
            .scroll("compliance")
            .await
            .map(|s| s.size)
            .unwrap_or(u64::MAX)
    };

    let all_scrolls: Vec<String> = (0..MAX_SCROLLS)
        .map(|i| format!("evidence-{i:02}"))
        .collect();
    let too_many: Vec<String> = (0..=MAX_SCROLLS).map(|i| format!("s{i}")).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "question",
            json!({"question": "x".repeat(MAX_QUESTION_CHARS + 1)}),
            "question: must be 1 to 2000 characters",
        ),
        (
            "question",
            json!({"question": "   "}),
            "question: must be 1 to",
        ),
        (
            "question",
            json!({"question": "logs\u{0}kept?"}),
            "question: control character U+0000",
        ),
        (
            "frameworks",
            json!({"question": question, "frameworks": ["gdpr", "nis2", "iso27001", "eu_ai_act", "gdpr"]}),
            "frameworks: at most 4 entries, got 5",
        ),
        (
            "frameworks",
            json!({"question": question, "frameworks": ["gdpr", "gdpr"]}),
            "frameworks[1]: \"gdpr\" is listed twice",
        ),
        (
            "frameworks",
            json!({"question": question, "frameworks": ["sox"]}),
            "frameworks: unknown framework",
        ),
        (
            "scrolls",
            json!({"question": question, "scrolls": too_many}),
            "scrolls: at most 16 entries, got 17",
        ),
        (
            "scrolls",
            json!({"question": question, "scrolls": ["drills", "drills"]}),
            "scrolls[1]: \"drills\" is listed twice",
        ),
        (
            "scrolls",
            json!({"question": question, "scrolls": ["Not A Scroll"]}),
            "scrolls: invalid scroll name",
        ),
        (
            "scrolls",
            json!({"question": question, "scrolls": ["drills", "no-such-scroll"]}),
            "scrolls: unknown scroll \"no-such-scroll\"",
        ),
        (
            "since",
            json!({"question": question, "since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
            "since: must not be after until",
        ),
        (
            "until",
            json!({"question": question, "until": 7}),
            "until: must be an RFC 3339",
        ),
        (
            "body",
            json!({"question": question, "limit": 5}),
            "limit: unknown field",
        ),
        ("body", json!(["question"]), "body: must be a JSON object"),
    ];
    let before_any = answers().await;
    for (field, body, says) in cases {
        let before = rejections(&metrics(o.metrics_addr).await, field);
        let (s, a) = ask(body.to_string()).await;
        assert_eq!(s, 400, "{field}: {a}");
        assert_eq!(a["error"]["code"], "invalid_query", "{a}");
        let message = a["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message} does not say {says:?}");
        assert_eq!(
            rejections(&metrics(o.metrics_addr).await, field),
            before + 1,
            "{field} rejection not counted"
        );
    }
    let before = rejections(&metrics(o.metrics_addr).await, "body");
    let (s, a) = ask("{\"question\": \"a\", \"question\": \"b\"}".into()).await;
    assert_eq!(
        (s, a["error"]["code"].as_str()),
        (400, Some("malformed_json")),
        "{a}"
    );
    assert_eq!(
        rejections(&metrics(o.metrics_addr).await, "body"),
        before + 1
    );
    assert_eq!(
        answers().await,
        before_any,
        "no refused query was receipted"
    );

    let round_trips = |scrolls: Vec<String>| {
        let ask = &ask;
        async move {
            let body =
                json!({"question": question, "frameworks": ["eu_ai_act"], "scrolls": scrolls});
            let before = DB_REQUESTS.get();
            let (s, a) = ask(body.to_string()).await;
            assert_eq!(s, 200, "{a}");
            (DB_REQUESTS.get() - before, a)
        }
    };
    // Warm every pooled connection's statement cache first (a cold connection prepares its
    // statements once), so what is counted is the queries' own round trips.
    let _ = round_trips(all_scrolls.clone()).await;
    let _ = round_trips(vec!["evidence-00".into()]).await;
    let (one, a) = round_trips(vec!["evidence-00".into()]).await;
    assert_eq!(a["evidence"].as_array().map(Vec::len), Some(10), "{a}");
    assert!(
        a["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["proof"].is_object()),
        "{a}"
    );
    let (sixteen, a) = round_trips(all_scrolls.clone()).await;
    assert_eq!(a["evidence"].as_array().map(Vec::len), Some(10), "{a}");
    append_receipts(&db.store, "evidence-00", "ai_log_export", 2_000).await;
    append_receipts(&db.store, "evidence-03", "ai_log_export", 500).await;
    sign(&db.store, "evidence-00").await;
    sign(&db.store, "evidence-03").await;
    let _ = round_trips(all_scrolls.clone()).await;
    let (more, a) = round_trips(all_scrolls).await;
    assert_eq!(a["evidence"].as_array().map(Vec::len), Some(10), "{a}");
    eprintln!(
        "round trips per query: 1 scroll {one}, 16 scrolls {sixteen}, 2,500 more receipts {more}"
    );
    assert_eq!(
        one, sixteen,
        "listing 16 scrolls costs what listing one does"
    );
    assert_eq!(
        sixteen, more,
        "more evidence in the ledger costs nothing more"
    );
    // A store call takes at most three round trips (an inclusion proof reads the tree's
    // size and then its tiles, each statement prepared once per connection), the answer's
    // receipt is one transaction of a handful, and authentication is one lookup.
    let ceiling = 3 * MAX_STORE_QUERIES as u64 + 8;
    assert!(one <= ceiling, "{one} round trips (ceiling {ceiling})");
    o.stop().await;
}
