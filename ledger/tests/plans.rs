//! The listing queries hold to their indexes on realistic volumes: each scroll's latest
//! checkpoint is one backward probe of the checkpoints' primary key (`GET /v1/scrolls` and
//! every anchor epoch cost O(scrolls), not O(checkpoints)), and the oracle's evidence lookups
//! are bounded backward scans of `receipts_scroll_type_time` (migration V4), never a scan of
//! the receipts. Each query's answer is checked against a brute-force one.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use ledger::storage::CheckpointStore;
use ledger::store::{DbRole, StoredCheckpoint};
use ledger::testing::TestDb;

const EXTRA_SCROLLS: usize = 30;
const CHECKPOINTS_PER_SCROLL: i64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_checkpoints_probe_one_index_entry_per_scroll() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    for i in 0..EXTRA_SCROLLS {
        db.store
            .create_scroll(&format!("extra-{i:02}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute(&format!(
            "INSERT INTO checkpoints (scroll_id, tree_size, root, note) \
             SELECT s.id, g, sha256(convert_to(s.name || g, 'UTF8')), 'note ' || s.name || ' ' || g \
             FROM scrolls s, generate_series(1, {CHECKPOINTS_PER_SCROLL}) g \
             WHERE s.name <> 'treasury'; \
             ANALYZE checkpoints; ANALYZE scrolls;"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let portal = db
        .role_store(DbRole::Portal)
        .unwrap_or_else(|e| panic!("{e}"));
    let latest = portal
        .latest_checkpoints()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let brute: Vec<(String, i64, Vec<u8>, String)> = owner
        .query(
            "SELECT DISTINCT ON (s.name) s.name, c.tree_size, c.root, c.note FROM checkpoints c \
             JOIN scrolls s ON s.id = c.scroll_id ORDER BY s.name, c.tree_size DESC",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let got: Vec<(String, i64, Vec<u8>, String)> = latest
        .iter()
        .map(|c: &StoredCheckpoint| {
            (
                c.scroll.clone(),
                i64::try_from(c.tree_size).unwrap_or(-1),
                c.root.to_vec(),
                c.note.clone(),
            )
        })
        .collect();
    assert_eq!(got, brute, "same answer as scanning every checkpoint");
    let scrolls: i64 = owner
        .query_one("SELECT count(*) FROM scrolls", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(
        got.len() as i64,
        scrolls - 1,
        "all but treasury, which has no checkpoint"
    );
    assert!(got
        .iter()
        .all(|(_, size, _, _)| *size == CHECKPOINTS_PER_SCROLL));

    let plan = portal
        .explain_latest_checkpoints()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        plan.contains("Index Scan Backward using checkpoints_pkey on checkpoints"),
        "{plan}"
    );
    assert!(plan.contains("Limit"), "{plan}");
    assert!(!plan.contains("Seq Scan on checkpoints"), "{plan}");
    eprintln!("latest_checkpoints:\n{plan}");

    let some = portal
        .latest_checkpoints_of(&["drills".into(), "extra-07".into(), "treasury".into()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = some.iter().map(|c| c.scroll.as_str()).collect();
    assert_eq!(names, ["drills", "extra-07"]);
}

const RECEIPTS_PER_PAIR: i64 = 20_000;

/// `since` and `until` of an evidence lookup.
type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_lookups_are_bounded_index_scans() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    // Three scrolls × three types, one receipt a minute, interleaved by type; rows are not
    // real receipts (evidence lookups return positions and hashes, not leaves).
    owner
        .batch_execute(&format!(
            "INSERT INTO receipts (scroll_id, seq, leaf, leaf_hash, type, submitted_at, submitter) \
             SELECT s.id, g, '\\x7b7d'::bytea, sha256(convert_to(s.name || g, 'UTF8')), \
               (ARRAY['drill_completed', 'key_rotated', 'backup_verified'])[1 + g % 3], \
               timestamptz '2026-01-01' + g * interval '1 minute', 'key_test' \
             FROM scrolls s, generate_series(0, {} - 1) g \
             WHERE s.name IN ('drills', 'identity', 'automation'); \
             ANALYZE receipts; ANALYZE scrolls;",
            RECEIPTS_PER_PAIR * 3
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let oracle = db
        .role_store(DbRole::Oracle)
        .unwrap_or_else(|e| panic!("{e}"));
    let types = vec!["key_rotated".to_string(), "never_written".to_string()];
    let t0: DateTime<Utc> = "2026-01-01T00:00:00Z"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let cases: [(Vec<String>, Window); 4] = [
        (vec![], (None, None)),
        (vec!["identity".into()], (None, None)),
        (vec![], (None, Some(t0 + TimeDelta::days(3)))),
        (
            vec!["drills".into(), "automation".into()],
            (
                Some(t0 + TimeDelta::days(10)),
                Some(t0 + TimeDelta::days(11)),
            ),
        ),
    ];
    for (scrolls, (since, until)) in cases {
        let rows = oracle
            .evidence(&types, &scrolls, since, until, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let brute: Vec<(String, i64)> = owner
            .query(
                "SELECT s.name, r.seq FROM receipts r JOIN scrolls s ON s.id = r.scroll_id \
                 WHERE r.type = ANY($1) AND (cardinality($2::text[]) = 0 OR s.name = ANY($2)) \
                   AND ($3::timestamptz IS NULL OR r.submitted_at >= $3) \
                   AND ($4::timestamptz IS NULL OR r.submitted_at <= $4) \
                 ORDER BY r.submitted_at DESC, s.name, r.seq DESC LIMIT 10",
                &[&types, &scrolls, &since, &until],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let got: Vec<(String, i64)> = rows
            .iter()
            .map(|r| (r.scroll.clone(), i64::try_from(r.seq).unwrap_or(-1)))
            .collect();
        assert_eq!(
            got, brute,
            "scrolls {scrolls:?}, since {since:?}, until {until:?}"
        );
        assert_eq!(got.len(), 10);
        assert!(rows.iter().all(|r| r.kind == "key_rotated"));

        let present = oracle
            .evidence_types_present(&types, &scrolls, since, until)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(present.into_iter().collect::<Vec<_>>(), ["key_rotated"]);

        let (rows_plan, present_plan) = oracle
            .explain_evidence(&types, &scrolls, since, until, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for plan in [&rows_plan, &present_plan] {
            assert!(
                plan.contains("using receipts_scroll_type_time on receipts"),
                "{plan}"
            );
            assert!(!plan.contains("Seq Scan on receipts"), "{plan}");
            assert!(!plan.contains("Bitmap Heap Scan on receipts"), "{plan}");
        }
        assert!(
            rows_plan.contains("Index Scan Backward using receipts_scroll_type_time"),
            "{rows_plan}"
        );
        eprintln!("evidence, scrolls {scrolls:?}:\n{rows_plan}\ntypes present:\n{present_plan}");
    }
    let none = oracle
        .evidence_types_present(&types, &["treasury".into()], None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(none.is_empty());
}
