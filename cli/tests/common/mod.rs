//! Shared by the end-to-end tests that run the services as processes.

#![allow(dead_code)]

use ledger::testing::{closed_port, redis_url, wait_until_listening, TestDb};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A workspace binary beside this package's own (built by `cargo test --workspace`).
pub fn bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_vaultmesh")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (ops/test.sh)",
        path.display()
    );
    path
}

/// A service process and where it listens.
pub struct Service {
    /// Kills the process when dropped.
    pub child: Child,
    /// Its API address.
    pub api: SocketAddr,
    /// Its metrics port (127.0.0.1).
    pub metrics: u16,
}

/// Starts `vaultmesh-{name}` on free loopback ports against `db`, logging to `dir/{name}.log`,
/// and waits until its API listens.
pub async fn spawn(name: &str, db: &TestDb, dir: &Path, extra: &[String]) -> Service {
    let api = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    spawn_at(name, db, dir, "vaultmesh-e2e", api, extra).await
}

/// Starts `vaultmesh-{name}` of mesh `mesh` with its API on `api` (metrics on a free port)
/// against `db`, logging to `dir/{name}.log`, and waits until its API listens.
pub async fn spawn_at(
    name: &str,
    db: &TestDb,
    dir: &Path,
    mesh: &str,
    api: SocketAddr,
    extra: &[String],
) -> Service {
    spawn_with_redis(name, db, dir, mesh, api, &redis_url(), extra).await
}

/// [`spawn_at`] with its own Redis URL.
pub async fn spawn_with_redis(
    name: &str,
    db: &TestDb,
    dir: &Path,
    mesh: &str,
    api: SocketAddr,
    redis: &str,
    extra: &[String],
) -> Service {
    let metrics = closed_port().await;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))
        .unwrap_or_else(|e| panic!("log file: {e}"));
    let role = ledger::store::DbRole::of_service(name)
        .unwrap_or_else(|| panic!("{name} is not a service with a database role"));
    let child = Command::new(bin(&format!("vaultmesh-{name}")))
        .args(["--api-addr", &api.to_string()])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--database-url", &db.url(role)])
        .args(["--redis-url", redis])
        .args(["--mesh-id", mesh])
        .args(["--log", "warn"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    wait_until_listening(api, name, Duration::from_secs(30)).await;
    Service {
        child,
        api,
        metrics,
    }
}

/// Starts a guardian signing with `key`, journaling to `journal`, integrating every 100 ms.
pub async fn spawn_guardian(db: &TestDb, dir: &Path, key: &Path, journal: &Path) -> Service {
    spawn_guardian_with(db, dir, key, journal, &[]).await
}

/// [`spawn_guardian`] with more options.
pub async fn spawn_guardian_with(
    db: &TestDb,
    dir: &Path,
    key: &Path,
    journal: &Path,
    extra: &[String],
) -> Service {
    let mut args = vec![
        "--signing-key-file".into(),
        arg(key),
        "--journal-path".into(),
        arg(journal),
        "--integrate-interval-ms".into(),
        "100".into(),
    ];
    args.extend_from_slice(extra);
    spawn("guardian", db, dir, &args).await
}

/// A guardian signing key in `dir` (and its vkey file beside it).
pub fn signing_key(dir: &Path) -> PathBuf {
    let key = dir.join("guardian.key");
    let signer = ledger::note::NoteSigner::generate_to_file("vaultmesh-e2e/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("guardian.vkey"), signer.verifier().to_vkey())
        .unwrap_or_else(|e| panic!("{e}"));
    key
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Prometheus's HTTP API.
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
    _process: Child,
}

impl Prometheus {
    /// Runs `prometheus` with `config` (written to `dir/prometheus.yml`, data in `dir/tsdb`)
    /// on a free port and waits until it is ready.
    pub async fn start(dir: &Path, config: &str) -> Self {
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap_or_else(|e| panic!("{e}"));
        let port = closed_port().await;
        let log =
            std::fs::File::create(dir.join("prometheus.log")).unwrap_or_else(|e| panic!("{e}"));
        let process = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("prometheus (ops/test.sh installs it): {e}"));
        let prom = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _process: process,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = prom.http.get(format!("{}/-/ready", prom.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return prom;
            }
            assert!(Instant::now() < deadline, "prometheus never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET path?query` on the API; the `data` of a successful answer.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let v: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(v["status"], "success", "GET {path} {query:?}: {v}");
        v["data"].clone()
    }

    /// The instant vector (or scalar, as one unlabelled sample) of `expr`.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.get("/api/v1/query", &[("query", expr)]).await;
        match data["resultType"].as_str() {
            Some("vector") => data["result"].as_array().cloned().unwrap_or_default(),
            Some("scalar") => vec![json!({"metric": {}, "value": data["result"]})],
            other => panic!("{expr}: unexpected result type {other:?}"),
        }
    }

    /// Polls `expr` until `ok` holds for its samples (Prometheus scrapes every second).
    pub async fn wait_for(&self, expr: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.query(expr).await;
            if ok(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{expr}: never held; last {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The first active (pending or firing) alert named `name`, waited for.
    pub async fn wait_alert(&self, name: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let alerts = self.alerts().await;
            if let Some(a) = alerts.iter().find(|a| a["labels"]["alertname"] == name) {
                assert!(a["state"] == "pending" || a["state"] == "firing", "{a}");
                return a.clone();
            }
            assert!(Instant::now() < deadline, "{name} never raised: {alerts:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Active alerts.
    pub async fn alerts(&self) -> Vec<Value> {
        self.get("/api/v1/alerts", &[]).await["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A sample's value (NaN when absent).
pub fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The sum of the samples' values.
pub fn sum(samples: &[Value]) -> f64 {
    samples.iter().map(value).sum()
}

/// SIGTERM to a foreground stack script (`what`): it must exit 0 within 30 s.
pub async fn stop_script(up: &mut Child, what: &str) {
    let pid = up.id().unwrap_or_else(|| panic!("{what} already exited"));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} did not stop"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{what} exit: {status}");
}

/// The text of a service's `/metrics`.
pub async fn scrape(service: &Service) -> String {
    let url = format!("http://127.0.0.1:{}/metrics", service.metrics);
    let resp = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    resp.text().await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The value of the sample of `name` whose label set is exactly `labels` (as written in the
/// exposition format, e.g. `node_id="portal-a"`), if exported.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// The repository's alert rules with `edits` applied (each `(from, to)` must match exactly
/// once: a test may shorten `for:` durations, range windows and time thresholds, never what
/// an expression means), written to `dir/rules/vaultmesh-alerts.yaml`; returns the directory.
pub fn shortened_rules(dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut text =
        std::fs::read_to_string(repo().join("ops/prometheus/rules/vaultmesh-alerts.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
    for (from, to) in edits {
        assert_eq!(
            text.matches(from).count(),
            1,
            "rule edit {from:?} must match once"
        );
        text = text.replace(from, to);
    }
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(rules.join("vaultmesh-alerts.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    rules
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes Postgres refuse any receipt of type `e2e_poison`, standing in for a database that
/// fails writes (disk full, lost connection) without touching other writes.
pub async fn refuse_poison_writes(db: &TestDb) {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    c.batch_execute(
        "CREATE FUNCTION e2e_refuse() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN RAISE EXCEPTION 'e2e: write refused'; END $$; \
         CREATE TRIGGER e2e_refuse BEFORE INSERT ON receipts FOR EACH ROW \
           WHEN (NEW.type = 'e2e_poison') EXECUTE FUNCTION e2e_refuse();",
    )
    .await
    .unwrap_or_else(|e| panic!("poison trigger: {e}"));
}

/// Rewrites receipt `seq` of `drills` in place as the schema owner can (triggers off),
/// replacing `from` with `to` in its stored bytes: history a verification pass must catch.
pub async fn tamper_drills(db: &TestDb, seq: u64, from: &str, to: &str) {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    c.batch_execute(&format!(
        "ALTER TABLE receipts DISABLE TRIGGER USER; \
         UPDATE receipts SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), '{from}', '{to}'), 'UTF8') \
           WHERE scroll_id = (SELECT id FROM scrolls WHERE name = 'drills') AND seq = {seq}; \
         ALTER TABLE receipts ENABLE TRIGGER USER;"
    ))
    .await
    .unwrap_or_else(|e| panic!("tamper: {e}"));
}

/// Shows the witness at `guardian` a fork by the remote mesh whose key is `remote`: two
/// checkpoints of `mesh-r/drills` at size 3 with two roots, both validly signed; the first is
/// cosigned (200), the second refused (422) and raised as a `fork`.
pub async fn show_fork(guardian: SocketAddr, remote: &ledger::note::NoteSigner) {
    for (root, status) in [([1u8; 32], 200), ([2u8; 32], 422)] {
        let note = ledger::checkpoint::Checkpoint {
            origin: "mesh-r/drills".into(),
            size: 3,
            root,
        }
        .sign(remote)
        .unwrap_or_default();
        let old = if status == 200 { 0 } else { 3 };
        let body = ledger::add_checkpoint::AddCheckpoint::encode(old, &[], &note);
        let (s, _) = ledger::testing::request(
            guardian,
            "POST",
            "/v1/witness/add-checkpoint",
            &[],
            body.as_bytes(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, status);
    }
}

/// The size of `scroll`'s latest checkpoint as the portal at `portal` serves it (`None`
/// before the first one).
pub async fn checkpoint_size(portal: SocketAddr, scroll: &str) -> Option<u64> {
    let (s, c) = ledger::testing::call(
        portal,
        "GET",
        &format!("/v1/scrolls/{scroll}/checkpoint"),
        None,
        &[("accept", "application/json")],
        "",
    )
    .await;
    if s == 200 {
        c["tree_size"].as_u64()
    } else {
        None
    }
}
