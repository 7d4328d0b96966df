//! `vaultmesh verify` against a real portal and guardian: a bundle verifies offline and a
//! tampered one does not; `verify log` verifies checkpoints, the ProofChain and sampled
//! receipts, remembers them, checks consistency on the next run, and fails (exit 1, state
//! untouched) on a forked history or a rewritten anchor.

use ledger::store::Role;
use ledger::testing::{call, request, scratch_dir, service_config, TestDb};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn vaultmesh(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vaultmesh"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run vaultmesh: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn submit(addr: std::net::SocketAddr, token: &str, n: u32) {
    let bearer = format!("Bearer {token}");
    for i in 0..n {
        let body = format!(r#"{{"type":"t","payload":{{"i":{i}}}}}"#);
        let (s, r) = request(
            addr,
            "POST",
            "/v1/scrolls/drills/receipts",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, 201, "{r}");
    }
}

/// Waits until the portal serves a checkpoint of `drills` at `size`.
async fn wait_checkpoint(portal: std::net::SocketAddr, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, body) = request(
            portal,
            "GET",
            "/v1/scrolls/drills/checkpoint",
            &[("accept", "application/json")],
            b"",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let served = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["tree_size"].as_u64());
        if s == 200 && served == Some(size) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "portal never served a checkpoint at {size}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn anchor(addr: std::net::SocketAddr, admin: &str) {
    let (s, r) = call(addr, "POST", "/v1/guardian/anchor", Some(admin), &[], "").await;
    assert_eq!(s, 200, "{r}");
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_and_live_logs_verify_and_tampering_fails() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("cli-verify");
    let key = dir.join("guardian.key");
    let signer = ledger::note::NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
        .unwrap_or_else(|e| panic!("{e}"));
    let vkey = dir.join("guardian.vkey");
    std::fs::write(&vkey, signer.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
    let g = guardian::start_with(
        service_config(&db.app_url),
        guardian::GuardianArgs {
            signing_key_file: key,
            journal_path: dir.join("proofchain.jsonl"),
            integrate_interval_ms: 50,
            epoch_interval_secs: 3600,
            ..guardian::GuardianArgs::default()
        },
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let p = portal::start_with(
        service_config(&db.app_url),
        portal::PortalArgs {
            guardian_vkey_file: Some(vkey.clone()),
            ..portal::PortalArgs::default()
        },
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let token = |role| {
        let store = db.store.clone();
        async move {
            store
                .create_api_key(role, None, "t")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .token
        }
    };
    let (admin, writer, reader) = (
        token(Role::Admin).await,
        token(Role::Writer).await,
        token(Role::Reader).await,
    );
    submit(p.api_addr, &writer, 12).await;
    wait_checkpoint(p.api_addr, 12).await;
    anchor(g.api_addr, &admin).await;

    // A bundle verifies offline; a tampered copy does not.
    let bearer = format!("Bearer {reader}");
    let (s, bundle) = request(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/receipts/4/bundle",
        &[("authorization", &bearer)],
        b"",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s, 200, "{bundle}");
    let file = dir.join("bundle.json");
    std::fs::write(&file, &bundle).unwrap_or_else(|e| panic!("{e}"));
    let out = vaultmesh(&[
        "verify",
        "bundle",
        path_str(&file),
        "--vkey",
        path_str(&vkey),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("\"seq\":4"), "{}", text(&out));
    std::fs::write(&file, bundle.replace("\\\"i\\\":4", "\\\"i\\\":5"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = vaultmesh(&[
        "verify",
        "bundle",
        path_str(&file),
        "--vkey",
        path_str(&vkey),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FAIL"), "{}", text(&out));

    // The live log: first run verifies and remembers.
    let url = format!("http://{}", p.api_addr);
    let state = dir.join("state.json");
    let log = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "log",
            url.as_str(),
            "--vkey",
            path_str(&vkey),
            "--state",
            path_str(&state),
        ];
        args.extend_from_slice(extra);
        vaultmesh(&args)
    };
    let out = log(&["--token", &reader, "--samples", "4"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("OK drills: checkpoint 12 (first seen)")
            && t.contains("included in checkpoint 12")
            && t.contains("OK ProofChain: 1 epoch"),
        "{t}"
    );
    let saved = std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("{e}"));

    // The log grows: the next run checks consistency with what it saw.
    submit(p.api_addr, &writer, 5).await;
    wait_checkpoint(p.api_addr, 17).await;
    anchor(g.api_addr, &admin).await;
    let out = log(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("OK drills: checkpoint 17 consistent with 12 seen before"),
        "{}",
        text(&out)
    );

    // A state file remembering another history (a fork) fails, and is left as it was.
    let forked = saved.replace("\"tree_size\": 12", "\"tree_size\": 11");
    assert_ne!(forked, saved);
    std::fs::write(&state, &forked).unwrap_or_else(|e| panic!("{e}"));
    let out = log(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAIL drills: size 11 is not consistent with size 17"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap_or_default(), forked);

    // A rewritten anchor fails the ProofChain check.
    std::fs::remove_file(&state).unwrap_or_else(|e| panic!("{e}"));
    let owner = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute(
            "ALTER TABLE anchors DISABLE TRIGGER USER; \
             UPDATE anchors SET record = replace(record, '\"mesh\":\"vaultmesh-test\"', '\"mesh\":\"vaultmesh-evil\"') WHERE epoch = 1; \
             ALTER TABLE anchors ENABLE TRIGGER USER;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = log(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAIL ProofChain: epoch 1"),
        "{}",
        text(&out)
    );
    assert!(!state.exists(), "no state saved after a failure");
    p.stop().await;
    g.stop().await;
}
