//! Divergence acknowledgements: an operator acknowledges explicit finding ids (unknown or
//! already acknowledged ones are refused, nothing is acknowledged implicitly), and only the
//! guardian's own acknowledgements count — signed by its key, written by its database role.
//! Acknowledgements forged by the schema owner or another service's role, then a restart,
//! then journal tampering: the gauge still goes to 1. (One test per binary: the seed's
//! metrics are process-wide.)

mod common;
mod forge;

use common::{append, metric, metrics, post, post_as_leader, wait_metric, TestGuardian};
use forge::{insert, Row};
use guardian::divergence::Finding;
use guardian::findings::finding_id;
use ledger::note::NoteSigner;
use ledger::store::DbRole;
use ledger::testing::call;
use serde_json::{json, Value};

const GAUGE: &str = "vaultmesh_guardian_proofchain_divergence";
const ACK: &str = "/v1/guardian/divergence/ack";

async fn findings(t: &TestGuardian) -> Vec<Value> {
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

async fn open_ids(t: &TestGuardian) -> Vec<String> {
    findings(t)
        .await
        .iter()
        .filter(|f| f["acknowledged"] == false)
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect()
}

async fn ack(t: &TestGuardian, body: &str) -> (u16, Value) {
    call(t.g.api_addr, "POST", ACK, Some(&t.admin), &[], body).await
}

async fn gauge(t: &TestGuardian) -> Option<f64> {
    metric(&metrics(t.g.metrics_addr).await, GAUGE)
}

/// A `divergence_acknowledged` receipt in the guardian's scroll, inserted by SQL through
/// `client`, claiming submitter `guardian`.
async fn forge_ack(
    t: &TestGuardian,
    client: &deadpool_postgres::tokio_postgres::Client,
    payload: Value,
    db_role: Option<&str>,
) {
    let seq = forge::next_seq(&t.db, "guardian").await;
    let row = Row::honest(
        "guardian",
        seq,
        guardian::DIVERGENCE_ACK,
        payload,
        "guardian",
    );
    insert(client, &row, db_role).await;
}

/// An acknowledgement note over `ids` signed by `signer`.
fn note(signer: &NoteSigner, ids: &[&str]) -> String {
    let mut text = String::from("vaultmesh-test/divergence-ack\n");
    for id in ids {
        text.push_str(id);
        text.push('\n');
    }
    signer.sign(&text).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_guardians_own_acknowledgements_of_named_findings_count() {
    // Ten receipts anchored and journaled in epoch 1, then a receipt body rewritten.
    let t = common::start(|_, _| {}).await;
    append(&t.db.store, "drills", 10).await;
    common::checkpoint_at(&t.db.store, "drills", 10).await;
    let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
    assert_eq!(s, 200, "{body}");
    let owner = t.db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute(
            "ALTER TABLE receipts DISABLE TRIGGER USER; \
             UPDATE receipts SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), '\"i\":3', '\"i\":333'), 'UTF8') \
               WHERE scroll_id = (SELECT id FROM scrolls WHERE name = 'drills') AND seq = 3; \
             ALTER TABLE receipts ENABLE TRIGGER USER;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (s, v) = post(t.g.api_addr, "/v1/guardian/verify", Some(&t.admin)).await;
    assert_eq!((s, &v["intact"]), (200, &Value::Bool(false)), "{v}");
    wait_metric(t.g.metrics_addr, GAUGE, 1.0).await;
    let open = open_ids(&t).await;
    assert!(
        open.len() >= 2,
        "a rewritten body is several findings: {open:?}"
    );

    // Nothing is acknowledged implicitly or by a wrong id.
    for (body, status, code) in [
        ("", 400, "malformed_json"),
        ("{}", 400, "invalid_body"),
        ("{\"findings\": []}", 400, "invalid_body"),
        ("{\"findings\": [\"nope\"]}", 404, "unknown_finding"),
    ] {
        let (s, v) = ack(&t, body).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {v}"
        );
    }
    let (s, v) = ack(&t, &json!({"findings": [open[0], "nope"]}).to_string()).await;
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope")),
        "{v}"
    );
    let (s, v) = call(
        t.g.api_addr,
        "POST",
        ACK,
        None,
        &[],
        &json!({"findings": [open[0]]}).to_string(),
    )
    .await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(
        open_ids(&t).await,
        open,
        "nothing acknowledged by refused requests"
    );

    // A valid acknowledgement of one id leaves the others open.
    let (s, v) = ack(&t, &json!({"findings": [open[0]]}).to_string()).await;
    assert_eq!((s, &v["acknowledged"]), (200, &json!([open[0]])), "{v}");
    assert_eq!(
        gauge(&t).await,
        Some(1.0),
        "the other findings are still open"
    );
    assert_eq!(open_ids(&t).await, open[1..].to_vec());
    let (s, v) = ack(&t, &json!({"findings": [open[0]]}).to_string()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("already_acknowledged")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&open[0])),
        "{v}"
    );

    // The acknowledgement receipt carries the ids signed by the guardian's key.
    let acks =
        t.db.store
            .receipts_of_type("guardian", guardian::DIVERGENCE_ACK)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(acks.len(), 1);
    let signed = acks[0].receipt.payload["note"].as_str().unwrap_or_default();
    let text = t
        .signer
        .verifier()
        .verify(signed)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        text,
        format!("vaultmesh-test/divergence-ack\n{}\n", open[0])
    );
    assert!(acks[0].receipt.payload["acknowledged_by"]
        .as_str()
        .is_some_and(|k| k.starts_with("key_")));

    let rest: Vec<&str> = open[1..].iter().map(String::as_str).collect();
    let (s, v) = ack(&t, &json!({"findings": rest}).to_string()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(gauge(&t).await, Some(0.0), "everything acknowledged");

    // Forged acknowledgements of the journal finding that is about to come (its id is
    // predictable: the finding and the epoch it will first be seen in).
    let coming = finding_id(
        &Finding {
            scroll: None,
            size: Some(1),
            detail: "journal line for epoch 1 differs from the stored record".into(),
        },
        1,
    );
    let impostor =
        NoteSigner::generate("vaultmesh-test/guardian").unwrap_or_else(|e| panic!("{e}"));
    // The schema owner, claiming the guardian's role, signing with a key of the same name.
    forge_ack(
        &t,
        &owner,
        json!({"findings": [coming], "count": 1, "note": note(&impostor, &[&coming])}),
        Some(DbRole::Guardian.name()),
    )
    .await;
    // The schema owner, claiming the guardian's role, with no note at all.
    forge_ack(
        &t,
        &owner,
        json!({"findings": [coming], "count": 1}),
        Some(DbRole::Guardian.name()),
    )
    .await;
    // The portal's role, even with a note the guardian's key did sign.
    let portal =
        t.db.role_client(DbRole::Portal)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    forge_ack(
        &t,
        &portal,
        json!({"findings": [coming], "count": 1, "note": note(&t.signer, &[&coming])}),
        None,
    )
    .await;

    // A restart reads the acknowledgements back: the real ones hold, the forged ones do not.
    let t = t.restarted().await;
    let (s, v) = post_as_leader(&t, "/v1/guardian/verify").await;
    assert_eq!(s, 200, "{v}");
    let after = findings(&t).await;
    for id in &open {
        assert!(
            after
                .iter()
                .any(|f| f["id"] == id.as_str() && f["acknowledged"] == true),
            "{id} is still acknowledged after the restart: {after:#?}"
        );
    }
    assert_eq!(gauge(&t).await, Some(0.0));

    // Journal tampering: a new finding, the one the forgeries named, and the gauge goes to 1.
    let text = std::fs::read_to_string(&t.journal).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&t.journal, text.replacen("\"epoch\":1", "\"epoch\":1 ", 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let (s, v) = post(t.g.api_addr, "/v1/guardian/verify", Some(&t.admin)).await;
    assert_eq!(s, 200, "{v}");
    wait_metric(t.g.metrics_addr, GAUGE, 1.0).await;
    // The finding the forgeries named is open (another pass may add its own view of the same
    // tampering, under its own id; none of the acknowledged ones reopens).
    let open_now = open_ids(&t).await;
    assert!(
        open_now.contains(&coming),
        "{coming} is not open: {:#?}",
        findings(&t).await
    );
    for id in &open {
        assert!(!open_now.contains(id), "{id} reopened: {open_now:?}");
    }
    t.g.stop().await;
}
