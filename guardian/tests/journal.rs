//! A sink that fails is an anchor failure with a reason, retried at the next epoch in order,
//! never a lost epoch; a journal that was truncated is refused, not papered over.
//! (One test per binary: the seed's metrics are process-wide.)

use guardian::GuardianArgs;
use ledger::store::Role;
use ledger::testing::{http, request, scratch_dir, service_config, TestDb};
use std::net::SocketAddr;

async fn post_anchor(addr: SocketAddr, token: &str) -> (u16, serde_json::Value) {
    let bearer = format!("Bearer {token}");
    let (status, text) = request(
        addr,
        "POST",
        "/v1/guardian/anchor",
        &[("authorization", &bearer)],
        b"",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_journal_is_retried_in_order_and_a_truncated_one_refused() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("guardian-journal");
    let key = dir.join("guardian.key");
    ledger::note::NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    let journal_dir = dir.join("worm");
    let journal = journal_dir.join("proofchain.jsonl");
    let opts = GuardianArgs {
        signing_key_file: key,
        journal_path: journal.clone(),
        integrate_interval_ms: 50,
        epoch_interval_secs: 3600,
        ..GuardianArgs::default()
    };
    let g = guardian::start_with(
        service_config(&db.app_url),
        opts,
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let admin = db
        .store
        .create_api_key(Role::Admin, None, "t")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    // Leadership is taken on the first tick; until then the guardian answers 409.
    let (mut s, mut body) = post_anchor(g.api_addr, &admin).await;
    while s == 409 {
        tokio::task::yield_now().await;
        (s, body) = post_anchor(g.api_addr, &admin).await;
    }
    // The journal's directory does not exist: epoch 1 is stored, the sink fails.
    assert_eq!(s, 502, "{body}");
    assert_eq!(body["record"]["epoch"], 1);
    assert_eq!(body["failures"][0]["sink"], "journal");
    let (_, m) = http(g.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metric(&m, "vaultmesh_guardian_anchor_status"), Some(3.0));
    assert_eq!(
        metric(
            &m,
            "vaultmesh_guardian_anchor_failures_total{reason=\"sink_journal\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "vaultmesh_guardian_anchors_total"), Some(0.0));
    let events = db
        .store
        .list_receipts("guardian", 0, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events[0].receipt.kind, "anchor_failure");

    // Once the directory exists, the next epoch journals epoch 1 and then epoch 2.
    std::fs::create_dir_all(&journal_dir).unwrap_or_else(|e| panic!("{e}"));
    let (s, body) = post_anchor(g.api_addr, &admin).await;
    assert_eq!(s, 200, "{body}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&journal)
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let epochs: Vec<u64> = lines.iter().filter_map(|l| l["epoch"].as_u64()).collect();
    assert_eq!(epochs, vec![1, 2]);
    let (_, m) = http(g.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metric(&m, "vaultmesh_guardian_anchor_status"), Some(2.0));
    assert_eq!(metric(&m, "vaultmesh_guardian_anchors_total"), Some(1.0));

    // Someone truncates the journal: the next epoch refuses to continue it.
    let text = std::fs::read_to_string(&journal).unwrap_or_else(|e| panic!("{e}"));
    let first_line_end = text.find('\n').map_or(0, |i| i + 1);
    std::fs::write(&journal, &text[..first_line_end]).unwrap_or_else(|e| panic!("{e}"));
    let (s, body) = post_anchor(g.api_addr, &admin).await;
    assert_eq!(s, 502, "{body}");
    let reason = body["failures"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("ends at epoch 1"), "{reason}");
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap_or_default(),
        text[..first_line_end],
        "nothing appended after a gap"
    );
    g.stop().await;
}
