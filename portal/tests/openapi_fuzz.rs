//! schemathesis (PyPI) fuzzes a live portal from its own OpenAPI document — real Postgres and
//! Redis, a guardian signing checkpoints and anchoring an epoch — once with each of no key, a
//! reader, a writer and an admin key. Any failure of the checks in
//! `ops/fuzz/schemathesis.toml` (a 5xx, a status, media type, header or body the document does
//! not declare, data the document forbids that is accepted or data it allows that is refused,
//! an undeclared method without 405 and Allow, a keyed operation served without its key)
//! fails the test, and so does running fewer cases than required. Afterwards the guardian
//! re-verifies every scroll the fuzzer wrote to and the portal has served no 5xx.
//!
//! Python comes from `VAULTMESH_PYTHON` (set by `ops/test.sh`, which installs schemathesis);
//! without it the test looks for a `python3` or `target/pyenv` that has schemathesis and is
//! skipped, loudly, when there is none. `VAULTMESH_FUZZ_EXAMPLES`, `VAULTMESH_FUZZ_SEED`,
//! `VAULTMESH_FUZZ_WORKERS` and `VAULTMESH_FUZZ_MIN_CASES` tune the run (`ops/fuzz.sh`).

use ledger::note::NoteSigner;
use ledger::service::{RunningService, Shutdown};
use ledger::storage::KeyStore;
use ledger::store::{DbRole, Role};
use ledger::testing::{call, request, scratch_dir, service_config, TestDb};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn has_schemathesis(python: &str) -> bool {
    std::process::Command::new(python)
        .args(["-c", "import schemathesis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Python to run schemathesis with, or `None` when there is none outside `ops/test.sh`.
fn python() -> Option<String> {
    if let Ok(p) = std::env::var("VAULTMESH_PYTHON") {
        assert!(
            has_schemathesis(&p),
            "VAULTMESH_PYTHON={p} has no schemathesis: ops/lib/stack.sh (vm_ensure_python) installs it"
        );
        return Some(p);
    }
    let venv = repo().join("target/pyenv/bin/python");
    [venv.to_string_lossy().into_owned(), "python3".to_string()]
        .into_iter()
        .find(|p| has_schemathesis(p))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// How much to fuzz.
#[derive(Clone)]
struct Budget {
    examples: String,
    seed: String,
    workers: String,
    min_cases: u64,
}

impl Budget {
    fn from_env() -> Self {
        Self {
            examples: env_or("VAULTMESH_FUZZ_EXAMPLES", "50"),
            seed: env_or("VAULTMESH_FUZZ_SEED", "20261123"),
            workers: env_or("VAULTMESH_FUZZ_WORKERS", "1"),
            min_cases: env_or("VAULTMESH_FUZZ_MIN_CASES", "1000")
                .parse()
                .unwrap_or_else(|e| panic!("VAULTMESH_FUZZ_MIN_CASES: {e}")),
        }
    }
}

/// A guardian and a portal on one fresh database, with a key of each role.
struct Stack {
    _db: TestDb,
    dir: PathBuf,
    g: RunningService,
    p: RunningService,
    admin: String,
    writer: String,
    reader: String,
}

async fn start() -> Stack {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("openapi-fuzz");
    let key = dir.join("guardian.key");
    let signer = NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    let vkey = dir.join("guardian.vkey");
    std::fs::write(&vkey, signer.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
    let g = guardian::start_with(
        service_config(&db.url(DbRole::Guardian)),
        guardian::GuardianArgs {
            signing_key_file: key,
            journal_path: dir.join("proofchain.jsonl"),
            integrate_interval_ms: 100,
            epoch_interval_secs: 3600,
            ..guardian::GuardianArgs::default()
        },
        Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("guardian: {e}"));
    let p = portal::start_with(
        service_config(&db.url(DbRole::Portal)),
        portal::PortalArgs {
            guardian_vkey_file: Some(vkey),
            ..portal::PortalArgs::default()
        },
        Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("portal: {e}"));
    let mut tokens = Vec::new();
    for role in [Role::Admin, Role::Writer, Role::Reader] {
        let k = db
            .store
            .create_api_key(role, None, "openapi-fuzz")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokens.push(k.token);
    }
    let [admin, writer, reader]: [String; 3] =
        tokens.try_into().unwrap_or_else(|_| panic!("three keys"));
    Stack {
        _db: db,
        dir,
        g,
        p,
        admin,
        writer,
        reader,
    }
}

/// Receipts in `drills` (the document's example scroll), a signed checkpoint covering them and
/// an anchored epoch, so that the examples reach real data: seq 0, epoch 1, proofs, bundles.
async fn seed(s: &Stack) {
    for i in 0..5 {
        let (status, r) = call(
            s.p.api_addr,
            "POST",
            "/v1/scrolls/drills/receipts",
            Some(&s.writer),
            &[],
            &format!(r#"{{"type":"fuzz_seed","payload":{{"i":{i}}}}}"#),
        )
        .await;
        assert_eq!(status, 201, "{r}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = request(
            s.p.api_addr,
            "GET",
            "/v1/scrolls/drills/checkpoint",
            &[("accept", "application/json")],
            b"",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let size = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["tree_size"].as_u64());
        if status == 200 && size == Some(5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of drills at 5: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, r) = call(
        s.g.api_addr,
        "POST",
        "/v1/guardian/anchor",
        Some(&s.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200, "{r}");
}

/// What one schemathesis run reported.
struct Outcome {
    identity: &'static str,
    generated: u64,
    problems: Vec<String>,
    log: PathBuf,
    secs: f64,
}

/// One schemathesis run: who it is and the headers it sends with every request.
struct Identity {
    name: &'static str,
    headers: Vec<String>,
}

/// The document passes the OpenAPI 3.1 meta-schema (the one schemathesis ships).
async fn assert_valid_openapi(python: &str, s: &Stack) {
    let (status, doc) = ledger::testing::http(s.p.api_addr, "GET", "/v1/openapi.json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{doc}");
    let file = s.dir.join("openapi.json");
    std::fs::write(&file, doc).unwrap_or_else(|e| panic!("{e}"));
    let script = "import json, sys, schemathesis\n\
                  schemathesis.openapi.from_dict(json.load(open(sys.argv[1]))).validate()";
    let out = tokio::process::Command::new(python)
        .args(["-c", script])
        .arg(&file)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(
        out.status.success(),
        "/v1/openapi.json is not valid OpenAPI 3.1:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn fuzz(python: String, who: Identity, url: String, dir: PathBuf, budget: Budget) -> Outcome {
    let identity = who.name;
    let work = dir.join(identity);
    std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("{e}"));
    let report = work.join("report.json");
    let log = dir.join(format!("{identity}.log"));
    let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let config = repo().join("ops/fuzz/schemathesis.toml");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.args(["-m", "schemathesis.cli", "--config-file"])
        .arg(&config)
        .args(["run", &format!("{url}/v1/openapi.json"), "--no-color"])
        .args(["--seed", &budget.seed])
        .args(["--max-examples", &budget.examples])
        // Adopting a constitution or raising an emergency changes what every later request
        // may do (a random constitution refuses valid receipts with 422, a freeze answers
        // 503): portal/tests/governance.rs covers those three operations instead.
        .args(["--exclude-operation-id", "adoptConstitution"])
        .args(["--exclude-operation-id", "raiseEmergency"])
        .args(["--exclude-operation-id", "liftEmergency"])
        .args(["--workers", &budget.workers])
        .args(["--report", "json", "--report-json-path"])
        .arg(&report);
    for h in &who.headers {
        cmd.args(["--header", h]);
    }
    let started = Instant::now();
    let status = cmd
        .current_dir(&work)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .status()
        .await
        .unwrap_or_else(|e| panic!("{python} -m schemathesis.cli: {e}"));
    let secs = started.elapsed().as_secs_f64();
    let mut problems = Vec::new();
    if !status.success() {
        problems.push(format!("schemathesis exited with {status}"));
    }
    let doc: Value = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if doc.is_null() {
        problems.push(format!("no report at {}", report.display()));
    }
    for f in doc["failures"].as_array().cloned().unwrap_or_default() {
        problems.push(format!(
            "failure: {} ×{} in {}",
            f["title"], f["count"], f["operations"]
        ));
    }
    for e in doc["errors"].as_array().cloned().unwrap_or_default() {
        problems.push(format!("error: {} ×{}", e["title"], e["count"]));
    }
    if doc["test_cases"]["errored"].as_u64().unwrap_or(0) > 0 {
        problems.push(format!("errored cases: {}", doc["test_cases"]["errored"]));
    }
    if doc["operations"]["tested"] != doc["operations"]["selected"] {
        problems.push(format!("operations: {}", doc["operations"]));
    }
    Outcome {
        identity,
        generated: doc["test_cases"]["generated"].as_u64().unwrap_or(0),
        problems,
        log,
        secs,
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Every `vaultmesh_http_requests_total` series of the portal with a 5xx status.
async fn server_errors(p: &RunningService) -> Vec<String> {
    let (_, metrics) = ledger::testing::http(p.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    metrics
        .lines()
        .filter(|l| l.starts_with("vaultmesh_http_requests_total{") && l.contains("status=\"5"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_with_any_key() {
    let Some(python) = python() else {
        eprintln!(
            "\n{bar}\nSKIPPED schemathesis_finds_no_failure_with_any_key: no Python with \
             schemathesis (VAULTMESH_PYTHON unset, none in target/pyenv or python3).\n\
             Run ops/test.sh, which installs it, to fuzz the portal from its OpenAPI document.\n{bar}\n",
            bar = "!".repeat(78)
        );
        return;
    };
    let budget = Budget::from_env();
    let s = start().await;
    seed(&s).await;
    let url = format!("http://{}", s.p.api_addr);
    assert_valid_openapi(&python, &s).await;
    let bearer = |k: &str| vec![format!("Authorization: Bearer {k}")];
    let identities = [
        Identity {
            name: "no_key",
            headers: vec!["Accept: application/json".into()],
        },
        Identity {
            name: "reader",
            headers: bearer(&s.reader),
        },
        Identity {
            name: "writer",
            headers: bearer(&s.writer),
        },
        Identity {
            name: "admin",
            headers: bearer(&s.admin),
        },
    ];
    let started = Instant::now();
    let runs: Vec<_> = identities
        .into_iter()
        .map(|who| {
            tokio::spawn(fuzz(
                python.clone(),
                who,
                url.clone(),
                s.dir.clone(),
                budget.clone(),
            ))
        })
        .collect();
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let total: u64 = outcomes.iter().map(|o| o.generated).sum();
    eprintln!(
        "schemathesis: {total} cases in {:.1} s (seed {}, {} examples per operation): {}",
        started.elapsed().as_secs_f64(),
        budget.seed,
        budget.examples,
        outcomes
            .iter()
            .map(|o| format!("{} {} in {:.1} s", o.identity, o.generated, o.secs))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut failed = Vec::new();
    for o in &outcomes {
        if !o.problems.is_empty() {
            failed.push(format!(
                "== {} ({}):\n{}\n-- last lines of the log:\n{}",
                o.identity,
                o.log.display(),
                o.problems.join("\n"),
                tail(&o.log, 120)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis failed:\n{}",
        failed.join("\n\n")
    );
    assert!(
        total >= budget.min_cases,
        "only {total} cases generated, {} required",
        budget.min_cases
    );
    let errors = server_errors(&s.p).await;
    assert!(errors.is_empty(), "the portal answered 5xx: {errors:#?}");
    let (status, v) = call(
        s.g.api_addr,
        "POST",
        "/v1/guardian/verify",
        Some(&s.admin),
        &[],
        "",
    )
    .await;
    assert_eq!((status, &v["intact"]), (200, &Value::Bool(true)), "{v}");
    s.p.stop().await;
    s.g.stop().await;
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// Reads a number the served document states at `pointer`.
fn stated(doc: &Value, pointer: &str) -> u64 {
    doc.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("the document states no number at {pointer}"))
}

/// Each limit the served document states is the one the portal enforces: the last value
/// inside it is accepted and the first outside it refused with 400 (this needs no Python, so
/// it also runs where schemathesis is missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stated_limits_are_enforced_at_their_boundaries() {
    let s = start().await;
    seed(&s).await;
    let (status, doc) = call(s.p.api_addr, "GET", "/v1/openapi.json", None, &[], "").await;
    assert_eq!(status, 200);
    let schemas = "/components/schemas";
    let get = |path: String, token: String| {
        let addr = s.p.api_addr;
        async move { call(addr, "GET", &path, Some(&token), &[], "").await }
    };
    let post = |path: &'static str, token: String, extra: Vec<(String, String)>, body: String| {
        let addr = s.p.api_addr;
        async move {
            let extra: Vec<(&str, &str)> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            call(addr, "POST", path, Some(&token), &extra, &body).await
        }
    };
    let param = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .map(|p| p["schema"].clone())
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
    };
    let limit = &param("/v1/scrolls/{scroll}/receipts", "limit");
    assert_eq!(limit["minimum"], 1);
    let max = stated(limit, "/maximum");
    for (value, want) in [(1, 200), (max, 200), (0, 400), (max + 1, 400)] {
        let (got, v) = get(
            format!("/v1/scrolls/drills/receipts?limit={value}"),
            s.reader.clone(),
        )
        .await;
        assert_eq!(got, want, "limit={value}: {v}");
    }
    for (text, want) in [
        ("0", 200),
        ("5", 200),
        ("+1", 400),
        ("01", 400),
        ("-1", 400),
    ] {
        let (got, v) = get(
            format!("/v1/scrolls/drills/receipts?from={text}"),
            s.reader.clone(),
        )
        .await;
        assert_eq!(got, want, "from={text}: {v}");
        let path = format!("/v1/scrolls/drills/receipts/{text}");
        let (got, v) = get(path, s.reader.clone()).await;
        let want = if want == 200 && text == "5" {
            404
        } else {
            want
        };
        assert_eq!(got, want, "seq {text}: {v}");
    }
    let epoch = stated(&param("/v1/anchors/{epoch}", "epoch"), "/minimum");
    for (value, want) in [(epoch, 200), (epoch - 1, 400)] {
        let (got, v) = get(format!("/v1/anchors/{value}"), s.reader.clone()).await;
        assert_eq!(got, want, "epoch {value}: {v}");
    }
    assert_eq!(
        doc.pointer(&format!("{schemas}/Hash/pattern")),
        Some(&Value::from("^[0-9a-f]{64}$"))
    );
    let (_, first) = get("/v1/scrolls/drills/receipts/0".into(), s.reader.clone()).await;
    let hash = first["leaf_hash"].as_str().unwrap_or_default().to_string();
    let (got, v) = get(format!("/v1/receipts/{hash}"), s.reader.clone()).await;
    assert_eq!(got, 200, "{v}");
    let (got, v) = get(
        format!("/v1/receipts/{}", hash.to_uppercase()),
        s.reader.clone(),
    )
    .await;
    assert_eq!(
        (got, &v["error"]["code"]),
        (400, &Value::from("invalid_hash")),
        "{v}"
    );

    let receipts = "/v1/scrolls/drills/receipts";
    let type_max = stated(&doc, &format!("{schemas}/ReceiptType/maxLength")) as usize;
    for (kind, want) in [
        ("é".repeat(type_max), 201),
        ("é".repeat(type_max + 1), 400),
        ("a\u{85}b".to_string(), 400),
        ("a\u{7f}".to_string(), 400),
        ("a\u{a0}b".to_string(), 201),
    ] {
        let body = serde_json::json!({"type": kind, "payload": {}}).to_string();
        let (got, v) = post(receipts, s.writer.clone(), vec![], body).await;
        assert_eq!(got, want, "type {kind:?}: {v}");
    }
    let safe = stated(&doc, &format!("{schemas}/JsonValue/anyOf/3/maximum"));
    for (n, want) in [(safe, 201), (safe + 1, 400)] {
        let body = format!(r#"{{"type":"t","payload":{{"n":{n}}}}}"#);
        let (got, v) = post(receipts, s.writer.clone(), vec![], body).await;
        assert_eq!(got, want, "payload number {n}: {v}");
    }
    let key_max = stated(&doc, &format!("{schemas}/IdempotencyKey/maxLength")) as usize;
    for (key, want) in [
        ("k".repeat(key_max), 201),
        ("k".repeat(key_max + 1), 400),
        ("a b".into(), 201),
    ] {
        let extra = vec![("idempotency-key".to_string(), key.clone())];
        let (got, v) = post(
            receipts,
            s.writer.clone(),
            extra,
            r#"{"type":"t","payload":{}}"#.into(),
        )
        .await;
        assert_eq!(
            got,
            want,
            "Idempotency-Key of {} characters: {v}",
            key.len()
        );
    }
    let batch_max = stated(
        &doc,
        &format!("{schemas}/Batch/properties/receipts/maxItems"),
    ) as usize;
    for (n, want) in [(batch_max, 201), (batch_max + 1, 400), (0, 400)] {
        let items = vec![r#"{"type":"t","payload":{}}"#; n].join(",");
        let body = format!(r#"{{"receipts":[{items}]}}"#);
        let (got, v) = post(
            "/v1/scrolls/drills/receipts/batch",
            s.writer.clone(),
            vec![],
            body,
        )
        .await;
        assert_eq!(
            got,
            want,
            "batch of {n}: {}",
            v.to_string().chars().take(300).collect::<String>()
        );
    }
    for (name, want) in [
        (format!("a{}", "b".repeat(62)), 201),
        (format!("a{}", "b".repeat(63)), 400),
        ("0abc".to_string(), 400),
        ("Abc".to_string(), 400),
    ] {
        let body = serde_json::json!({ "name": name }).to_string();
        let (got, v) = post("/v1/scrolls", s.admin.clone(), vec![], body).await;
        assert_eq!(got, want, "scroll name {name:?}: {v}");
    }
    s.p.stop().await;
    s.g.stop().await;
    let _ = std::fs::remove_dir_all(&s.dir);
}
