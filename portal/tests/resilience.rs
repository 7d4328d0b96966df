//! The portal under failure: Redis killed mid-test, and a portal process SIGKILLed under
//! load (every acknowledged receipt must survive, with no gap).

use ledger::storage::KeyStore;
use ledger::store::Role;
use ledger::testing::{request, service_config, RedisServer, TestDb};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

async fn post(addr: SocketAddr, token: &str, body: &str) -> std::io::Result<(u16, Value)> {
    let bearer = format!("Bearer {token}");
    let (s, text) = request(
        addr,
        "POST",
        "/v1/scrolls/drills/receipts",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await?;
    Ok((s, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_test_changes_nothing_for_clients() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let writer = db
        .store
        .create_api_key(Role::Writer, None, "w")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    let reader = db
        .store
        .create_api_key(Role::Reader, None, "r")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    let redis = RedisServer::start(0).await;
    let mut cfg = service_config(&db.url(ledger::store::DbRole::Portal));
    cfg.redis_url = Some(redis.url());
    let p = portal::start_with(
        cfg,
        portal::PortalArgs::default(),
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let read = |seq: u64| {
        let reader = reader.clone();
        async move {
            let bearer = format!("Bearer {reader}");
            request(
                p.api_addr,
                "GET",
                &format!("/v1/scrolls/drills/receipts/{seq}"),
                &[("authorization", &bearer)],
                b"",
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let mut bodies = Vec::new();
    for i in 0..40u64 {
        if i == 20 {
            let (_, ready) = ledger::testing::http(p.api_addr, "GET", "/v1/ready")
                .await
                .unwrap_or_default();
            assert!(ready.contains("\"redis\":\"up\""), "{ready}");
            redis.kill_ref().await;
        }
        let (s, r) = post(
            p.api_addr,
            &writer,
            &format!(r#"{{"type":"t","payload":{{"i":{i}}}}}"#),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s,
            201,
            "submission {i} with Redis {}: {r}",
            if i < 20 { "up" } else { "down" }
        );
        bodies.push(r);
        for seq in [i, i / 2] {
            let (s, body) = read(seq).await;
            assert_eq!(s, 200, "read {seq}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            assert_eq!(v, bodies[seq as usize]);
        }
    }
    let (s, ready) = ledger::testing::http(p.api_addr, "GET", "/v1/ready")
        .await
        .unwrap_or_default();
    assert_eq!(s, 200, "Redis down is degraded, not unready");
    assert!(ready.contains("\"redis\":\"degraded\""), "{ready}");
    p.stop().await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_receipt() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let writer = db
        .store
        .create_api_key(Role::Writer, None, "w")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    let port = ledger::testing::closed_port().await;
    let metrics = ledger::testing::closed_port().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vaultmesh-portal"))
        .args([
            "--api-addr",
            &format!("127.0.0.1:{port}"),
            "--metrics-addr",
            &format!("127.0.0.1:{metrics}"),
        ])
        .args([
            "--database-url",
            &db.url(ledger::store::DbRole::Portal),
            "--redis-url",
            "",
            "--log",
            "warn",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    ledger::testing::wait_until_listening(addr, "portal", Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let acked: Arc<Mutex<HashMap<u64, String>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (acked, writer) = (acked.clone(), writer.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                match post(
                    addr,
                    &writer,
                    &format!(r#"{{"type":"load","payload":{{"c":{c},"i":{i}}}}}"#),
                )
                .await
                {
                    Ok((201, r)) => {
                        let seq = r["seq"].as_u64().unwrap_or(u64::MAX);
                        let hash = r["leaf_hash"].as_str().unwrap_or_default().to_string();
                        assert!(
                            acked.lock().await.insert(seq, hash).is_none(),
                            "seq {seq} acknowledged twice"
                        );
                    }
                    _ => return,
                }
            }
        }));
    }
    while acked.lock().await.len() < 300 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "load did not get going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().await.unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait().await;
    for c in clients {
        let _ = c.await;
    }
    let acked = acked.lock().await.clone();
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    let rows = owner
        .query("SELECT seq, leaf_hash FROM receipts ORDER BY seq", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, i64>(0), i as i64, "gap at {i}");
    }
    let stored: HashMap<u64, String> = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0) as u64,
                hex::encode(r.get::<_, Vec<u8>>(1)),
            )
        })
        .collect();
    for (seq, hash) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(hash),
            "acknowledged receipt {seq} lost or changed"
        );
    }
    assert!(stored.len() >= acked.len());
}
