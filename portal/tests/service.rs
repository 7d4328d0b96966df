//! The portal starts, serves health, readiness, status and metrics, and stops cleanly.

#[tokio::test]
async fn portal_lifecycle() {
    ledger::testing::assert_service_lifecycle(portal::SERVICE, portal::start).await;
}

/// Regression: with stderr a closed pipe (e.g. `ops/up.sh | tee` after Ctrl-C), SIGTERM
/// must still stop the process; a log write failure once panicked the signal task.
#[tokio::test]
async fn sigterm_stops_the_binary_even_with_a_closed_stderr() {
    use std::process::Stdio;
    use std::time::Duration;
    let port = ledger::testing::closed_port().await;
    let metrics = ledger::testing::closed_port().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vaultmesh-portal"))
        .args(["--api-addr", &format!("127.0.0.1:{port}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args([
            "--database-url",
            &ledger::testing::unreachable_database_url().await,
        ])
        .args(["--redis-url", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    ledger::testing::wait_until_listening(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        "portal",
        Duration::from_secs(20),
    )
    .await;
    drop(child.stderr.take());
    let pid = child.id().unwrap_or_default().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap_or_else(|_| panic!("portal ignored SIGTERM with a closed stderr"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit status {status:?}");
}
