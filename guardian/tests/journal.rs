//! A sink that fails is an anchor failure with a reason, retried at the next epoch in order,
//! never a lost epoch; a journal that was truncated is refused, not papered over.
//! (One test per binary: the seed's metrics are process-wide.)

mod common;

use common::{metric, metrics, post_as_leader};

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
    t.g.stop().await;
}
