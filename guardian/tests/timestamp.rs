//! The RFC 3161 sink against a real timestamp authority: `openssl ts -reply` behind a small
//! HTTP wrapper in this test. Good tokens (ECDSA and RSA TSAs) are verified before they are
//! stored, and verify again with `openssl ts -verify`; a wrong imprint, an HTTP error, a
//! refusal and a token signed by another key are anchor failures with a reason, and every
//! failed epoch is stamped, in order, once the TSA answers properly again.

mod common;

use base64::Engine;
use common::{metrics, post_as_leader, TestGuardian};
use ledger::storage::AnchorStore;
use ledger::testing::scratch_dir;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use warp::Filter;

/// The guardian's metrics are process-wide: the two tests of this binary take turns so one's
/// anchors never show in the other's status gauge.
static METRICS_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A TSA key and self-signed timestamping certificate in `dir`, and its reply configs.
fn make_tsa(dir: &Path, rsa: bool) {
    if rsa {
        openssl(dir, &["genrsa", "-out", "tsa.key", "2048"]);
    } else {
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "tsa.key",
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "tsa.key",
            "-out",
            "tsa.crt",
            "-days",
            "2",
            "-subj",
            "/CN=VaultMesh Test TSA",
            "-addext",
            "extendedKeyUsage=critical,timeStamping",
        ],
    );
    std::fs::write(dir.join("tsaserial"), "01\n").unwrap_or_else(|e| panic!("{e}"));
    for (name, digests) in [("tsa.cnf", "sha256"), ("refuse.cnf", "sha512")] {
        let cnf = format!(
            "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {}\nserial = $dir/tsaserial\n\
             crypto_device = builtin\nsigner_cert = $dir/tsa.crt\n\
             signer_key = $dir/tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n\
             digests = {digests}\naccuracy = secs:1\nordering = no\ntsa_name = no\n\
             ess_cert_id_chain = no\ness_cert_id_alg = sha256\n",
            dir.display()
        );
        std::fs::write(dir.join(name), cnf).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Good,
    WrongImprint,
    HttpError,
    Refuse,
    OtherKey,
}

/// The HTTP wrapper: answers each query according to the current mode.
async fn serve_tsa(main: PathBuf, other: PathBuf, mode: Arc<Mutex<Mode>>) -> SocketAddr {
    let route = warp::post()
        .and(warp::body::bytes())
        .then(move |query: bytes::Bytes| {
            let (main, other, mode) = (main.clone(), other.clone(), mode.clone());
            async move {
                let mode = *mode
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let reply = tokio::task::spawn_blocking(move || {
                    let (dir, cnf, queryfile) = match mode {
                        Mode::Good => (main, "tsa.cnf", "q.tsq"),
                        Mode::WrongImprint => (main, "tsa.cnf", "other.tsq"),
                        Mode::Refuse => (main, "refuse.cnf", "q.tsq"),
                        Mode::OtherKey => (other, "tsa.cnf", "q.tsq"),
                        Mode::HttpError => return None,
                    };
                    std::fs::write(dir.join("q.tsq"), &query).ok()?;
                    Some(openssl(
                        &dir,
                        &[
                            "ts",
                            "-reply",
                            "-queryfile",
                            queryfile,
                            "-config",
                            cnf,
                            "-out",
                            "/dev/stdout",
                        ],
                    ))
                })
                .await
                .ok()
                .flatten();
                match reply {
                    Some(body) => warp::http::Response::builder()
                        .header("content-type", "application/timestamp-reply")
                        .body(body),
                    None => warp::http::Response::builder()
                        .status(500)
                        .body(b"TSA down".to_vec()),
                }
                .unwrap_or_default()
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(warp::serve(route).incoming(listener).run());
    addr
}

struct Harness {
    t: TestGuardian,
    mode: Arc<Mutex<Mode>>,
    main: PathBuf,
}

async fn harness(rsa: bool) -> Harness {
    let dir = scratch_dir("guardian-tsa");
    let (main, other) = (dir.join("main"), dir.join("other"));
    for d in [&main, &other] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
    }
    make_tsa(&main, rsa);
    make_tsa(&other, rsa);
    std::fs::write(main.join("data"), b"some other data").unwrap_or_else(|e| panic!("{e}"));
    openssl(
        &main,
        &[
            "ts",
            "-query",
            "-data",
            "data",
            "-sha256",
            "-cert",
            "-out",
            "other.tsq",
        ],
    );
    let mode = Arc::new(Mutex::new(Mode::Good));
    let tsa = serve_tsa(main.clone(), other.clone(), mode.clone()).await;
    let cert = main.join("tsa.crt");
    let t = common::start(|_, opts| {
        opts.tsa_url = Some(format!("http://vaultmesh:{TSA_SECRET}@{tsa}/"));
        opts.tsa_cert_file = Some(cert);
    })
    .await;
    Harness { t, mode, main }
}

/// The password in the TSA URL's userinfo: it must never be stored or published.
const TSA_SECRET: &str = "tsa-s3cret";

async fn anchor(h: &Harness) -> (u16, Value) {
    post_as_leader(&h.t, "/v1/guardian/anchor").await
}

/// The stored token of `epoch` verifies with `openssl ts -verify` over the anchor hash.
async fn openssl_verifies(h: &Harness, epoch: u64) {
    let a =
        h.t.db
            .store
            .anchor(epoch)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no epoch {epoch}"));
    let stamp = a
        .record
        .sinks
        .iter()
        .find(|s| s["sink"] == "rfc3161" && s["ok"] == true)
        .unwrap_or_else(|| panic!("epoch {epoch} not stamped: {:?}", a.record.sinks));
    let token = base64::engine::general_purpose::STANDARD
        .decode(stamp["result"]["token"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let file = h.main.join(format!("token-{epoch}.der"));
    std::fs::write(&file, token).unwrap_or_else(|e| panic!("{e}"));
    let anchor_hash =
        ledger::hash::from_hex(&a.record.anchor_hash).unwrap_or_else(|e| panic!("{e:?}"));
    let data = h.main.join(format!("anchor-{epoch}.bin"));
    std::fs::write(&data, anchor_hash).unwrap_or_else(|e| panic!("{e}"));
    let out = openssl(
        &h.main,
        &[
            "ts",
            "-verify",
            "-data",
            data.to_str().unwrap_or(""),
            "-in",
            file.to_str().unwrap_or(""),
            "-token_in",
            "-CAfile",
            "tsa.crt",
        ],
    );
    assert!(String::from_utf8_lossy(&out).contains("Verification: OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_before_storing_and_failed_epochs_are_stamped_later() {
    let _turn = METRICS_TURN.lock().await;
    let h = harness(false).await;
    let (s, body) = anchor(&h).await;
    assert_eq!(s, 200, "{body}");
    openssl_verifies(&h, 1).await;

    for (mode, reason) in [
        (Mode::WrongImprint, "message imprint is not the epoch's"),
        (Mode::HttpError, "answered HTTP 500"),
        (Mode::Refuse, "TSA refused"),
        (Mode::OtherKey, "another certificate"),
    ] {
        *h.mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = mode;
        let (s, body) = anchor(&h).await;
        assert_eq!(s, 502, "{mode:?}: {body}");
        assert!(!body.to_string().contains(TSA_SECRET), "{body}");
        let failure = &body["failures"][0];
        assert_eq!(failure["sink"], "rfc3161", "{body}");
        assert!(
            failure["reason"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "{mode:?}: {body}"
        );
    }
    // Epochs 2..=5 were stored, journaled, but not stamped.
    let pending =
        h.t.db
            .store
            .epochs_pending_for_sink("rfc3161")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pending, vec![2, 3, 4, 5]);
    let m = metrics(h.t.g.metrics_addr).await;
    assert!(
        m.contains("vaultmesh_guardian_anchor_failures_total{reason=\"sink_rfc3161\"} 4"),
        "{m}"
    );
    assert!(m.contains("vaultmesh_guardian_anchor_status 3"), "{m}");

    // The TSA recovers: the next epoch stamps 2..=6 in order.
    *h.mode
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Mode::Good;
    let (s, body) = anchor(&h).await;
    assert_eq!(s, 200, "{body}");
    assert!(h
        .t
        .db
        .store
        .epochs_pending_for_sink("rfc3161")
        .await
        .unwrap_or_default()
        .is_empty());
    for epoch in 2..=6 {
        openssl_verifies(&h, epoch).await;
    }
    let published = serde_json::to_string(
        &h.t.db
            .store
            .anchors(1, 100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|a| a.record.sinks.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    assert!(published.contains("vaultmesh:***@"), "{published}");
    assert!(
        !published.contains(TSA_SECRET),
        "sink results carry the TSA password: {published}"
    );
    h.t.g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_tsa_works_too() {
    let _turn = METRICS_TURN.lock().await;
    let h = harness(true).await;
    let (s, body) = anchor(&h).await;
    assert_eq!(s, 200, "{body}");
    openssl_verifies(&h, 1).await;
    h.t.g.stop().await;
}
