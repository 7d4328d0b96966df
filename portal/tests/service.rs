//! The portal starts, serves health, readiness, status and metrics, and stops cleanly.

#[tokio::test]
async fn portal_lifecycle() {
    ledger::testing::assert_service_lifecycle(portal::SERVICE, portal::start).await;
}
