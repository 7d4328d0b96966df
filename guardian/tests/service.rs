//! The guardian starts, serves health, readiness, status and metrics, and stops cleanly.

#[tokio::test]
async fn guardian_lifecycle() {
    ledger::testing::assert_service_lifecycle(guardian::SERVICE, guardian::start).await;
}
