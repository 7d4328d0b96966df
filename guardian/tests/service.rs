//! The guardian starts, serves health, readiness, status and metrics, and stops cleanly; it
//! refuses to start without its signing key.

use guardian::GuardianArgs;
use ledger::testing::{scratch_dir, service_config, TestDb};

fn opts_with_key() -> GuardianArgs {
    let dir = scratch_dir("guardian-life");
    let key = dir.join("guardian.key");
    ledger::note::NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    GuardianArgs {
        signing_key_file: key,
        journal_path: dir.join("proofchain.jsonl"),
        ..GuardianArgs::default()
    }
}

#[tokio::test]
async fn guardian_lifecycle() {
    let opts = opts_with_key();
    ledger::testing::assert_service_lifecycle(guardian::SERVICE, move |cfg, sd| {
        guardian::start_with(cfg, opts.clone(), sd)
    })
    .await;
}

#[tokio::test]
async fn a_missing_signing_key_stops_the_start_with_a_clear_error() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let opts = GuardianArgs {
        signing_key_file: scratch_dir("guardian-nokey").join("absent.key"),
        ..GuardianArgs::default()
    };
    let err = guardian::start_with(
        service_config(&db.url(ledger::store::DbRole::Guardian)),
        opts,
        ledger::service::Shutdown::new(),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("absent.key") && err.contains("vaultmesh keygen"),
        "{err}"
    );
}
