//! The oracle starts, serves health, readiness, status and metrics, and stops cleanly.

#[tokio::test]
async fn oracle_lifecycle() {
    ledger::testing::assert_service_lifecycle(oracle::SERVICE, oracle::start).await;
}
