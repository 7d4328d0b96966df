//! A group commit that Postgres refuses for one request's data is split: with an
//! owner-installed CHECK constraint refusing one receipt type, a single receipt and a batch
//! carrying it are sent together with 50 good submissions (keyed and keyless), five times
//! over, through a group-commit window wide enough to put them in one transaction. Only the
//! two offending requests fail (400 `rejected_by_database`, no SQL text), every good one gets
//! 201, nothing counts as a write error, and the scroll stays gap-free.

use ledger::storage::KeyStore;
use ledger::store::{DbRole, Role};
use ledger::testing::{call, service_config, TestDb};
use serde_json::json;
use std::collections::HashMap;

const ROUNDS: usize = 5;
const GOOD: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_refused_request_fails_and_its_group_is_written_without_it() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let writer = db
        .store
        .create_api_key(Role::Writer, None, "w")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    db.store
        .create_scroll("poisoned")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute(
            "ALTER TABLE receipts ADD CONSTRAINT test_refuses_poison CHECK (type <> 'poison_pill')",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = service_config(&db.url(DbRole::Portal));
    cfg.redis_url = None;
    let opts = portal::PortalArgs {
        group_commit_wait_us: 20_000,
        ..portal::PortalArgs::default()
    };
    let p = portal::start_with(cfg, opts, ledger::service::Shutdown::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = p.api_addr;
    let path = "/v1/scrolls/poisoned/receipts";
    let (s, warm) = call(
        addr,
        "POST",
        path,
        Some(&writer),
        &[],
        r#"{"type":"good","payload":{}}"#,
    )
    .await;
    assert_eq!(s, 201, "{warm}");
    let mut acked: HashMap<u64, String> = HashMap::new();
    acked.insert(
        0,
        warm["leaf_hash"].as_str().unwrap_or_default().to_string(),
    );

    for round in 0..ROUNDS {
        let mut good = Vec::new();
        for i in 0..GOOD {
            let writer = writer.clone();
            good.push(tokio::spawn(async move {
                let key = format!("r{round}-{i}");
                let keyed: Vec<(&str, &str)> = if i % 2 == 0 {
                    vec![("idempotency-key", key.as_str())]
                } else {
                    Vec::new()
                };
                let body = json!({"type": "good", "payload": {"round": round, "i": i}}).to_string();
                call(addr, "POST", path, Some(&writer), &keyed, &body).await
            }));
        }
        let single = {
            let writer = writer.clone();
            tokio::spawn(async move {
                call(
                    addr,
                    "POST",
                    path,
                    Some(&writer),
                    &[],
                    r#"{"type":"poison_pill","payload":{"x":1}}"#,
                )
                .await
            })
        };
        let batch = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let body = json!({"receipts": [
                    {"type": "good", "payload": {"in_batch": true}},
                    {"type": "poison_pill", "payload": {}},
                ]})
                .to_string();
                call(
                    addr,
                    "POST",
                    &format!("{path}/batch"),
                    Some(&writer),
                    &[],
                    &body,
                )
                .await
            })
        };
        for (what, task) in [("single", single), ("batch", batch)] {
            let (s, body) = task.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s, 400, "round {round}, poisoned {what}: {body}");
            assert_eq!(body["error"]["code"], "rejected_by_database", "{body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("23514"), "{message}");
            for secret in [
                "test_refuses_poison",
                "CHECK",
                "INSERT",
                "COPY",
                "poison_pill",
            ] {
                assert!(!message.contains(secret), "{message} shows {secret}");
            }
        }
        for task in good {
            let (s, body) = task.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s, 201, "round {round}: a good submission failed: {body}");
            let seq = body["seq"].as_u64().unwrap_or(u64::MAX);
            let hash = body["leaf_hash"].as_str().unwrap_or_default().to_string();
            assert!(
                acked.insert(seq, hash).is_none(),
                "seq {seq} acknowledged twice"
            );
        }
    }

    let (s, metrics) = ledger::testing::http(p.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s, 200);
    let errors: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("vaultmesh_receipt_write_errors_total")
                && l.contains("scroll=\"poisoned\"")
                && !l.ends_with(" 0")
        })
        .collect();
    assert!(
        errors.is_empty(),
        "refused data is not a write error: {errors:?}"
    );

    let rows = owner
        .query(
            "SELECT r.seq, r.leaf_hash, r.type FROM receipts r JOIN scrolls s ON s.id = r.scroll_id \
             WHERE s.name = 'poisoned' ORDER BY r.seq",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 1 + ROUNDS * GOOD, "exactly the good receipts");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, i64>(0), i as i64, "gap at {i}");
        assert_eq!(row.get::<_, String>(2), "good");
        let seq = i as u64;
        assert_eq!(
            acked.get(&seq).map(String::as_str),
            Some(hex::encode(row.get::<_, Vec<u8>>(1)).as_str()),
            "receipt {seq} differs from what was acknowledged"
        );
    }
    p.stop().await;
}
