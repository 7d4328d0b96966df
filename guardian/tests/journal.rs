//! A sink that fails is an anchor failure with a reason, retried at the next epoch in order,
//! never a lost epoch; a journal that was truncated, ends in a stray line or had its last
//! line edited is refused with the reason and raised as divergence, never papered over.
//! (One test per binary: the seed's metrics are process-wide.)

mod common;

use common::{metric, metrics, post_as_leader, wait_metric, TestGuardian};
use ledger::storage::ReceiptLog;
use ledger::testing::call;

const PATH: &str = "/v1/guardian/anchor";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_journal_is_retried_in_order_and_a_truncated_one_refused() {
    // The journal's directory does not exist yet.
    let t =
        common::start(|dir, opts| opts.journal_path = dir.join("worm").join("proofchain.jsonl"))
            .await;
    let journal = t.journal.clone();
    let journal_dir = journal
        .parent()
        .unwrap_or_else(|| unreachable!())
        .to_path_buf();

    // Epoch 1 is stored; the sink fails.
    let (s, body) = post_as_leader(&t, PATH).await;
    assert_eq!(s, 502, "{body}");
    assert_eq!(body["record"]["epoch"], 1);
    assert_eq!(body["failures"][0]["sink"], "journal");
    let m = metrics(t.g.metrics_addr).await;
    assert_eq!(metric(&m, "vaultmesh_guardian_anchor_status"), Some(3.0));
    assert_eq!(
        metric(
            &m,
            "vaultmesh_guardian_anchor_failures_total{reason=\"sink_journal\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "vaultmesh_guardian_anchors_total"), Some(0.0));
    let events =
        t.db.store
            .list_receipts("guardian", 0, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events[0].receipt.kind, "anchor_failure");

    // Once the directory exists, the next epoch journals epoch 1 and then epoch 2.
    std::fs::create_dir_all(&journal_dir).unwrap_or_else(|e| panic!("{e}"));
    let (s, body) = post_as_leader(&t, PATH).await;
    assert_eq!(s, 200, "{body}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&journal)
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let epochs: Vec<u64> = lines.iter().filter_map(|l| l["epoch"].as_u64()).collect();
    assert_eq!(epochs, vec![1, 2]);
    let m = metrics(t.g.metrics_addr).await;
    assert_eq!(metric(&m, "vaultmesh_guardian_anchor_status"), Some(2.0));
    assert_eq!(metric(&m, "vaultmesh_guardian_anchors_total"), Some(1.0));

    // Someone truncates the journal: the next epoch refuses to continue it.
    let text = std::fs::read_to_string(&journal).unwrap_or_else(|e| panic!("{e}"));
    let first_line_end = text.find('\n').map_or(0, |i| i + 1);
    std::fs::write(&journal, &text[..first_line_end]).unwrap_or_else(|e| panic!("{e}"));
    let (s, body) = post_as_leader(&t, PATH).await;
    assert_eq!(s, 502, "{body}");
    let reason = body["failures"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("ends at epoch 1"), "{reason}");
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap_or_default(),
        text[..first_line_end],
        "nothing appended after a gap"
    );

    // The journal put back: the missed epochs follow in order.
    std::fs::write(&journal, &text).unwrap_or_else(|e| panic!("{e}"));
    let (s, body) = post_as_leader(&t, PATH).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(journal_epochs(&journal), vec![1, 2, 3, 4]);
    wait_metric(t.g.metrics_addr, GAUGE, 1.0).await;
    acknowledge_all(&t).await;

    // A stray line at the end: not "already present", a failure with its reason.
    let good = std::fs::read_to_string(&journal).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&journal, format!("{good}{{\"epoch\":99}}\n")).unwrap_or_else(|e| panic!("{e}"));
    let failures_before = sink_failures(&t).await;
    let (s, body) = post_as_leader(&t, PATH).await;
    assert_eq!(s, 502, "{body}");
    assert_eq!(body["record"]["epoch"], 5, "{body}");
    let reason = body["failures"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("line for epoch 5 differs"), "{reason}");
    assert_eq!(sink_failures(&t).await, failures_before + 1.0);
    let failure = last_event(&t).await;
    assert_eq!(failure.kind, "anchor_failure");
    assert_eq!(
        failure.payload["failures"][0]["reason"].as_str(),
        Some(reason),
        "{failure:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap_or_default(),
        format!("{good}{{\"epoch\":99}}\n"),
        "nothing written after the stray line"
    );
    wait_metric(t.g.metrics_addr, GAUGE, 1.0).await;
    assert!(open_details(&t)
        .await
        .iter()
        .any(|d| d.contains("journal sink")));
    acknowledge_all(&t).await;

    // The stray line gone, the last line edited by one byte: the next epoch will not link
    // to it, and that is a failure and a finding again.
    std::fs::write(&journal, good.replacen("\"epoch\":4", "\"epoch\":4 ", 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let (s, body) = post_as_leader(&t, PATH).await;
    assert_eq!(s, 502, "{body}");
    let reason = body["failures"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("last line"), "{reason}");
    assert_eq!(sink_failures(&t).await, failures_before + 2.0);
    wait_metric(t.g.metrics_addr, GAUGE, 1.0).await;
    let open = open_details(&t).await;
    assert!(open.iter().any(|d| d.contains("journal sink")), "{open:?}");
    assert!(
        open.iter()
            .any(|d| d.contains("journal line for epoch 4 differs")),
        "{open:?}"
    );
    assert_eq!(journal_epochs(&journal), vec![1, 2, 3, 4]);
    t.g.stop().await;
}

const GAUGE: &str = "vaultmesh_guardian_proofchain_divergence";

fn journal_epochs(journal: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(journal)
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}"))["epoch"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect()
}

async fn sink_failures(t: &TestGuardian) -> f64 {
    let m = metrics(t.g.metrics_addr).await;
    metric(
        &m,
        "vaultmesh_guardian_anchor_failures_total{reason=\"sink_journal\"}",
    )
    .unwrap_or(0.0)
}

async fn last_event(t: &TestGuardian) -> ledger::receipt::Receipt {
    let events =
        t.db.store
            .list_receipts("guardian", 0, 1000)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    events
        .into_iter()
        .rfind(|e| e.receipt.kind.starts_with("anchor_") && e.receipt.kind != "anchor_divergence")
        .map(|e| e.receipt)
        .unwrap_or_else(|| panic!("no anchor event"))
}

async fn divergence(t: &TestGuardian) -> Vec<serde_json::Value> {
    let (s, v) = call(
        t.g.api_addr,
        "GET",
        "/v1/guardian/divergence",
        Some(&t.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["findings"].as_array().cloned().unwrap_or_default()
}

async fn open_details(t: &TestGuardian) -> Vec<String> {
    divergence(t)
        .await
        .iter()
        .filter(|f| f["acknowledged"] == false)
        .filter_map(|f| f["detail"].as_str().map(str::to_string))
        .collect()
}

async fn acknowledge_all(t: &TestGuardian) {
    let ids: Vec<String> = divergence(t)
        .await
        .iter()
        .filter(|f| f["acknowledged"] == false)
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect();
    let body = serde_json::json!({ "findings": ids }).to_string();
    let (s, v) = call(
        t.g.api_addr,
        "POST",
        "/v1/guardian/divergence/ack",
        Some(&t.admin),
        &[],
        &body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait_metric(t.g.metrics_addr, GAUGE, 0.0).await;
}
