//! Set-up shared by the guardian's test binaries: a guardian on a fresh database with its
//! own key and journal, an admin key, and helpers for its HTTP calls, metrics and data.
#![allow(dead_code)] // each test binary uses its own subset

use guardian::GuardianArgs;
use ledger::note::NoteSigner;
use ledger::service::RunningService;
use ledger::storage::{CheckpointStore, KeyStore};
use ledger::store::{Role, Store, StoredCheckpoint};
use ledger::testing::{call, http, scratch_dir, service_config, TestDb};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running guardian and what the tests need around it.
pub struct TestGuardian {
    /// Its database.
    pub db: TestDb,
    /// The service.
    pub g: RunningService,
    /// An admin API key.
    pub admin: String,
    /// Its scratch directory (key, journal).
    pub dir: PathBuf,
    /// Its checkpoint key.
    pub signer: NoteSigner,
    /// Where its journal is.
    pub journal: PathBuf,
    /// Its options.
    pub opts: GuardianArgs,
}

impl TestGuardian {
    /// Stops the guardian and starts a fresh one: same database, key, journal and options.
    pub async fn restarted(self) -> TestGuardian {
        self.restarted_after(async |_| {}).await
    }

    /// Stops the guardian, runs `between` while none runs (so none leads), then starts a
    /// fresh one as [`TestGuardian::restarted`] does.
    pub async fn restarted_after(self, between: impl AsyncFnOnce(&TestDb)) -> TestGuardian {
        let TestGuardian {
            db,
            g,
            admin,
            dir,
            signer,
            journal,
            opts,
        } = self;
        g.stop().await;
        between(&db).await;
        let g = guardian::start_with(
            service_config(&db.url(ledger::store::DbRole::Guardian)),
            opts.clone(),
            ledger::service::Shutdown::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        TestGuardian {
            db,
            g,
            admin,
            dir,
            signer,
            journal,
            opts,
        }
    }
}

/// Starts a guardian (50 ms integration, hourly epochs, journal in its scratch dir) after
/// `tweak` adjusted its options.
pub async fn start(tweak: impl FnOnce(&Path, &mut GuardianArgs)) -> TestGuardian {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("guardian");
    let key = dir.join("guardian.key");
    let signer = NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opts = GuardianArgs {
        signing_key_file: key,
        journal_path: dir.join("proofchain.jsonl"),
        integrate_interval_ms: 50,
        epoch_interval_secs: 3600,
        ..GuardianArgs::default()
    };
    tweak(&dir, &mut opts);
    let journal = opts.journal_path.clone();
    let g = guardian::start_with(
        service_config(&db.url(ledger::store::DbRole::Guardian)),
        opts.clone(),
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let admin = api_key(&db.store, Role::Admin).await;
    TestGuardian {
        db,
        g,
        admin,
        dir,
        signer,
        journal,
        opts,
    }
}

/// A new API key's token.
pub async fn api_key(store: &Store, role: Role) -> String {
    store
        .create_api_key(role, None, "test")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token
}

/// `POST path` with an optional bearer token; the status and the JSON body.
pub async fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    call(addr, "POST", path, token, &[], "").await
}

/// `POST path` as admin, retried while the guardian has not yet taken the lead (409).
pub async fn post_as_leader(t: &TestGuardian, path: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, body) = post(t.g.api_addr, path, Some(&t.admin)).await;
        if s != 409 {
            return (s, body);
        }
        assert!(Instant::now() < deadline, "the guardian never led: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The text of `/metrics`.
pub async fn metrics(addr: SocketAddr) -> String {
    let (status, text) = http(addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    text
}

/// The value of one series in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `/metrics` shows `series` at `value`.
pub async fn wait_metric(addr: SocketAddr, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(addr).await;
        if metric(&m, series) == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value}: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends `n` small receipts to `scroll` in one transaction.
pub async fn append(store: &Store, scroll: &str, n: u64) {
    ledger::testing::append_receipts(store, scroll, "drill_completed", n).await;
}

/// Waits until `scroll` has a checkpoint at `size`.
pub async fn checkpoint_at(store: &Store, scroll: &str, size: u64) -> StoredCheckpoint {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(cp)) = store.latest_checkpoint(scroll).await {
            if cp.tree_size == size {
                return cp;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {scroll} at {size}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
