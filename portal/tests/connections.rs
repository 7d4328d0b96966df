//! `vaultmesh_active_connections` follows the open TCP connections to the API port: idle
//! keep-alive connections count, closed ones stop counting. (Its own test binary: the gauge
//! is process-wide, so no other portal may run beside this one.)

use ledger::testing::{http, service_config, TestDb};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn active_connections(metrics: std::net::SocketAddr) -> f64 {
    let (status, text) = http(metrics, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix("vaultmesh_active_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no vaultmesh_active_connections in /metrics"))
}

/// Sends one keep-alive request and reads the whole response, so the server has surely
/// accepted the connection.
async fn keep_alive_request(conn: &mut TcpStream) {
    conn.write_all(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&buf).contains("\"status\"") {
        let n = conn
            .read(&mut chunk)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn active_connections_counts_open_tcp_connections() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let p = portal::start(
        service_config(&db.url(ledger::store::DbRole::Portal)),
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(active_connections(p.metrics_addr).await, 0.0);
    let mut conns = Vec::new();
    for _ in 0..5 {
        let mut c = TcpStream::connect(p.api_addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        keep_alive_request(&mut c).await;
        conns.push(c);
    }
    assert_eq!(
        active_connections(p.metrics_addr).await,
        5.0,
        "idle keep-alive connections count"
    );
    conns.truncate(2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = active_connections(p.metrics_addr).await;
        if n == 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections still counted: {n}"
        );
        tokio::task::yield_now().await;
    }
    drop(conns);
    p.stop().await;
}
