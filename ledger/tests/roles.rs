//! Least privilege in Postgres (migration V3), attacked as each service's own role on a real
//! server: no service role can rewrite or shrink anything already written, forge another
//! role's receipts, or touch API keys; the guardian's role may only extend tiles and grow
//! trees; and even the schema owner cannot un-revoke a key or move a scroll's head back.

use ledger::storage::{KeyStore, ReceiptLog, TileStore};
use ledger::store::DbRole;
use ledger::testing::{append_receipts, TestDb};

async fn db() -> TestDb {
    TestDb::new()
        .await
        .unwrap_or_else(|e| panic!("test database: {e}"))
}

/// A database with 20 integrated receipts in `drills`, a checkpoint, an anchor, a sink
/// result, a head and two API keys (one revoked).
async fn seeded() -> TestDb {
    let db = db().await;
    append_receipts(&db.store, "drills", "drill_completed", 20).await;
    let guardian = db
        .leading_guardian_store()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = db
        .store
        .scroll("drills")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    guardian
        .integrate(id, 1000)
        .await
        .unwrap_or_else(|e| panic!("the guardian role integrates: {e}"));
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute(&format!(
            "INSERT INTO checkpoints (scroll_id, tree_size, root, note) \
               VALUES ({id}, 20, decode(repeat('ab', 32), 'hex'), 'note'); \
             INSERT INTO anchors (epoch, record, anchor_hash, prev_anchor_hash, epoch_root, anchored_at) \
               VALUES (1, '{{}}', decode(repeat('01', 32), 'hex'), decode(repeat('00', 32), 'hex'), \
                       decode(repeat('02', 32), 'hex'), now()); \
             INSERT INTO anchor_sinks (epoch, sink, ok, result) VALUES (1, 'journal', true, '{{}}'); \
             INSERT INTO anchor_heads (epoch, note) VALUES (1, 'head');"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for role in [ledger::store::Role::Writer, ledger::store::Role::Reader] {
        db.store
            .create_api_key(role, None, "roles")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    owner
        .batch_execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = (SELECT min(id) FROM api_keys)",
        )
        .await
        .unwrap_or_else(|e| panic!("the owner revokes: {e}"));
    db
}

/// Makes a guardian-role session carry the current lease term, as the leader's do, so that
/// what is refused below is refused for what it does, not for a missing term.
async fn with_current_term(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "SELECT set_config('vaultmesh.lease_term', term::text, false) FROM guardian_lease",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn refused_as(role: &str, stmt: &str, result: Result<(), tokio_postgres::Error>) {
    match result {
        Ok(()) => panic!("{role} ran: {stmt}"),
        Err(e) => {
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            assert_eq!(code, "42501", "{role}: {stmt}: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_service_role_can_rewrite_history_or_keys() {
    let db = seeded().await;
    let attacks = [
        "UPDATE receipts SET leaf = leaf WHERE seq = 0",
        "UPDATE receipts SET leaf_hash = decode(repeat('00', 32), 'hex') WHERE seq = 3",
        "DELETE FROM receipts WHERE seq = 19",
        "UPDATE checkpoints SET root = root",
        "DELETE FROM checkpoints",
        "UPDATE anchors SET record = record",
        "DELETE FROM anchors",
        "UPDATE anchor_sinks SET ok = false",
        "DELETE FROM anchor_sinks",
        "UPDATE anchor_heads SET note = 'forged'",
        "DELETE FROM anchor_heads",
        "TRUNCATE tree_tiles",
        "DELETE FROM tree_tiles",
        "DELETE FROM trees",
        "UPDATE trees SET size = 0",
        "UPDATE tree_tiles SET hashes = decode(repeat('ee', 32), 'hex') WHERE level = 0 AND idx = 0",
        "UPDATE scrolls SET next_seq = 0 WHERE name = 'drills'",
        "UPDATE scrolls SET name = 'renamed' WHERE name = 'drills'",
        "INSERT INTO api_keys (id, key_hash, role) VALUES ('key_evil', decode(repeat('11', 32), 'hex'), 'admin')",
        "UPDATE api_keys SET revoked_at = NULL",
        "UPDATE api_keys SET role = 'admin'",
        "DELETE FROM api_keys",
        "INSERT INTO receipts (scroll_id, seq, leaf, leaf_hash, type, submitted_at, submitter, db_role) \
           SELECT scroll_id, 99, leaf, leaf_hash, type, submitted_at, submitter, 'vaultmesh_guardian' \
           FROM receipts WHERE seq = 0",
    ];
    for role in DbRole::ALL {
        let client = db.role_client(role).await.unwrap_or_else(|e| panic!("{e}"));
        if role == DbRole::Guardian {
            with_current_term(&client).await;
        }
        for stmt in attacks {
            refused_as(role.name(), stmt, client.batch_execute(stmt).await);
        }
        if role != DbRole::Guardian {
            for stmt in [
                "INSERT INTO checkpoints (scroll_id, tree_size, root, note) \
                   SELECT scroll_id, 21, root, note FROM checkpoints",
                "INSERT INTO anchors (epoch, record, anchor_hash, prev_anchor_hash, epoch_root, anchored_at) \
                   VALUES (2, '{}', decode(repeat('03', 32), 'hex'), decode(repeat('01', 32), 'hex'), \
                           decode(repeat('04', 32), 'hex'), now())",
                "INSERT INTO anchor_heads (epoch, note) VALUES (1, 'forged')",
                "INSERT INTO tree_tiles (scroll_id, level, idx, hashes) \
                   SELECT scroll_id, 0, 5, hashes FROM tree_tiles LIMIT 1",
                "UPDATE trees SET size = size + 1",
                "UPDATE tree_tiles SET hashes = hashes || decode(repeat('ee', 32), 'hex') \
                   WHERE level = 0 AND idx = 1",
            ] {
                refused_as(role.name(), stmt, client.batch_execute(stmt).await);
            }
        }
    }
    // Nothing changed.
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let row = owner
        .query_one(
            "SELECT (SELECT count(*) FROM receipts), (SELECT size FROM trees t JOIN scrolls s \
               ON s.id = t.scroll_id WHERE s.name = 'drills'), (SELECT count(*) FROM api_keys \
               WHERE revoked_at IS NULL)",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (20, 20, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guardian_role_may_only_extend_tiles_and_grow_trees() {
    let db = seeded().await;
    let g = db
        .role_client(DbRole::Guardian)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    with_current_term(&g).await;
    // Tile 0 of level 0 is full (16 leaves), tile 1 holds 4: rewriting either, or cutting
    // tile 1 back, is refused; appending one entry to tile 1 is an extension.
    for stmt in [
        "UPDATE tree_tiles SET hashes = decode(repeat('ee', 512), 'hex') WHERE level = 0 AND idx = 0",
        "UPDATE tree_tiles SET hashes = substring(hashes FROM 1 FOR 96) WHERE level = 0 AND idx = 1",
        "UPDATE tree_tiles SET hashes = decode(repeat('ee', 32), 'hex') || substring(hashes FROM 33) \
           WHERE level = 0 AND idx = 1",
        "UPDATE trees SET size = size - 1",
        "INSERT INTO tree_tiles (scroll_id, level, idx, hashes) \
           SELECT scroll_id, level, idx, decode(repeat('ee', 32), 'hex') FROM tree_tiles \
           WHERE level = 0 AND idx = 1 \
           ON CONFLICT (scroll_id, level, idx) DO UPDATE SET hashes = EXCLUDED.hashes",
    ] {
        refused_as("vaultmesh_guardian", stmt, g.batch_execute(stmt).await);
    }
    g.batch_execute(
        "UPDATE tree_tiles SET hashes = hashes || decode(repeat('ee', 32), 'hex') \
           WHERE level = 0 AND idx = 1; UPDATE trees SET size = size + 1",
    )
    .await
    .unwrap_or_else(|e| panic!("an extension is allowed: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_record_the_role_that_wrote_them() {
    let db = db().await;
    for role in DbRole::ALL {
        let c = db.role_client(role).await.unwrap_or_else(|e| panic!("{e}"));
        c.batch_execute(
            "UPDATE scrolls SET next_seq = next_seq + 1 WHERE name = 'drills'; \
             INSERT INTO receipts (scroll_id, seq, leaf, leaf_hash, type, submitted_at, submitter) \
               SELECT id, next_seq - 1, '\\x7b7d', decode(repeat('00', 32), 'hex'), 't', now(), \
                      'guardian' FROM scrolls WHERE name = 'drills'",
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", role.name()));
    }
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let roles: Vec<String> = owner
        .query("SELECT db_role FROM receipts ORDER BY seq", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<String> = DbRole::ALL.iter().map(|r| r.name().to_string()).collect();
    assert_eq!(roles, want, "a claimed submitter is not the writing role");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn even_the_owner_cannot_unrevoke_a_key_or_move_a_head_back() {
    let db = seeded().await;
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    for stmt in [
        "UPDATE api_keys SET revoked_at = NULL WHERE revoked_at IS NOT NULL",
        "UPDATE api_keys SET role = 'admin'",
        "DELETE FROM api_keys",
        "UPDATE scrolls SET next_seq = 0 WHERE name = 'drills'",
        "UPDATE trees SET size = 0",
        "UPDATE tree_tiles SET hashes = decode(repeat('ee', 512), 'hex') WHERE level = 0 AND idx = 0",
    ] {
        refused_as("vaultmesh (owner)", stmt, owner.batch_execute(stmt).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_role_can_do_its_own_job() {
    let db = db().await;
    for role in DbRole::ALL {
        let store = db.role_store(role).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.current_role().await.unwrap_or_else(|e| panic!("{e}")),
            role.name()
        );
        let admitted = ledger::testing::admit(
            "drills",
            vec![ledger::store::NewReceipt {
                draft: ledger::receipt::ReceiptDraft::new("t", serde_json::json!({}))
                    .unwrap_or_else(|e| panic!("{e}")),
                submitter: String::new(),
                idempotency_key: Some(format!("k-{}", role.name())),
                request_hash: None,
            }],
        );
        store
            .append_receipts(admitted, true)
            .await
            .unwrap_or_else(|e| panic!("{} appends: {e}", role.name()));
        assert!(store.api_key_by_token("nope").await.is_ok());
    }
    let portal = db
        .role_store(DbRole::Portal)
        .unwrap_or_else(|e| panic!("{e}"));
    portal
        .create_scroll("audits")
        .await
        .unwrap_or_else(|e| panic!("the portal creates scrolls: {e}"));
    let oracle = db
        .role_store(DbRole::Oracle)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(oracle.create_scroll("audits2").await.is_err());
}
