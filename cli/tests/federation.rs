//! Federation end to end: three meshes (three databases, guardians and portals) witness one
//! another all-to-all. Every new checkpoint collects the other two meshes' cosignatures; the
//! portal serves them appended to the note, listed in JSON and through `?witnessed=K`; a
//! bundle carries them, and `vaultmesh verify bundle|log` and the independent Python
//! verifier enforce a K-of-N witness policy (and refuse a policy the cosignatures do not
//! meet).

mod verify_support;

use ledger::cosignature::WitnessSigner;
use ledger::note::NoteSigner;
use ledger::service::{RunningService, Shutdown};
use ledger::store::Role;
use ledger::testing::{closed_port, request, scratch_dir, service_config, TestDb};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use verify_support::{path_str, python_verify_with, text, vaultmesh};

/// One mesh: its database, keys and running services.
struct Mesh {
    id: String,
    db: TestDb,
    dir: PathBuf,
    vkey: PathBuf,
    witness_vkey: PathBuf,
    guardian_addr: SocketAddr,
    portal: Option<RunningService>,
    guardian: Option<RunningService>,
    writer: String,
    reader: String,
}

impl Mesh {
    /// Creates the database and keys; the services start in [`start`].
    async fn prepare(id: &str) -> Mesh {
        let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
        let dir = scratch_dir(&format!("federation-{id}"));
        let signer =
            NoteSigner::generate_to_file(&format!("{id}/guardian"), &dir.join("guardian.key"))
                .unwrap_or_else(|e| panic!("{e}"));
        let vkey = dir.join("guardian.vkey");
        std::fs::write(&vkey, signer.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
        let w = WitnessSigner::generate_to_file(&format!("{id}/witness"), &dir.join("witness.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let witness_vkey = dir.join("witness.vkey");
        std::fs::write(&witness_vkey, w.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
        let key = |role| {
            let store = db.store.clone();
            async move {
                store
                    .create_api_key(role, None, "t")
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .token
            }
        };
        let (writer, reader) = (key(Role::Writer).await, key(Role::Reader).await);
        Mesh {
            id: id.to_string(),
            db,
            dir,
            vkey,
            witness_vkey,
            guardian_addr: SocketAddr::from(([127, 0, 0, 1], closed_port().await)),
            portal: None,
            guardian: None,
            writer,
            reader,
        }
    }

    fn read(path: &PathBuf) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{e}"))
            .trim()
            .to_string()
    }

    /// Starts the guardian (witnessing `others`, asking them to cosign) and the portal.
    async fn start(&mut self, others: &[(String, String, String, SocketAddr, String)]) {
        let mut config = service_config(&self.db.url(ledger::store::DbRole::Guardian));
        config.mesh_id = self.id.clone();
        config.api_addr = self.guardian_addr;
        let opts = guardian::GuardianArgs {
            signing_key_file: self.dir.join("guardian.key"),
            journal_path: self.dir.join("proofchain.jsonl"),
            integrate_interval_ms: 100,
            epoch_interval_secs: 3600,
            witness_key_file: Some(self.dir.join("witness.key")),
            remote_meshes: others
                .iter()
                .map(|(id, vkey, _, _, portal)| {
                    format!("{id},{vkey},{portal}")
                        .parse()
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect(),
            witnesses: others
                .iter()
                .map(|(id, _, wvkey, addr, _)| {
                    format!("{id},{wvkey},http://{addr}")
                        .parse()
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect(),
            ..guardian::GuardianArgs::default()
        };
        self.guardian = Some(
            guardian::start_with(config, opts, Shutdown::new())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let mut config = service_config(&self.db.url(ledger::store::DbRole::Portal));
        config.mesh_id = self.id.clone();
        self.portal = Some(
            portal::start_with(
                config,
                portal::PortalArgs {
                    guardian_vkey_file: Some(self.vkey.clone()),
                    ..portal::PortalArgs::default()
                },
                Shutdown::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        );
    }

    fn portal_addr(&self) -> SocketAddr {
        self.portal
            .as_ref()
            .map(|p| p.api_addr)
            .unwrap_or_else(|| unreachable!())
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        request(self.portal_addr(), "GET", path, headers, b"")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn submit(&self, n: u32) {
        let bearer = format!("Bearer {}", self.writer);
        for i in 0..n {
            let body = format!(r#"{{"type":"t","payload":{{"i":{i}}}}}"#);
            let (s, r) = request(
                self.portal_addr(),
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

    /// Waits until `scroll`'s checkpoint at `size` holds `k` cosignatures (as stored);
    /// returns how long that took after the checkpoint itself was stored.
    async fn wait_witnessed(&self, scroll: &str, size: u64, k: usize) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(30);
        let store = &self.db.store;
        loop {
            let cp = store
                .checkpoint_at(scroll, size)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if let Some(cp) = cp {
                let n = store
                    .cosignatures(scroll, size)
                    .await
                    .unwrap_or_default()
                    .len();
                if n >= k {
                    let now = chrono::Utc::now();
                    return (now - cp.created_at).to_std().unwrap_or_default();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: {scroll} at {size} never held {k} cosignatures",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(p) = self.portal.take() {
            p.stop().await;
        }
        if let Some(g) = self.guardian.take() {
            g.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_meshes_cosign_each_others_checkpoints_and_verifiers_enforce_the_policy() {
    let mut meshes = Vec::new();
    for id in ["mesh-a", "mesh-b", "mesh-c"] {
        meshes.push(Mesh::prepare(id).await);
    }
    // Each portal's URL is only known once it runs; the witness side needs it for the
    // discrepancy checks only, so the guardian's address stands in here.
    let peers: Vec<(String, String, String, SocketAddr, String)> = meshes
        .iter()
        .map(|m| {
            (
                m.id.clone(),
                Mesh::read(&m.vkey),
                Mesh::read(&m.witness_vkey),
                m.guardian_addr,
                format!("http://{}", m.guardian_addr),
            )
        })
        .collect();
    for (i, m) in meshes.iter_mut().enumerate() {
        let others: Vec<_> = peers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| p.clone())
            .collect();
        m.start(&others).await;
    }
    let (a, b, c) = (&meshes[0], &meshes[1], &meshes[2]);
    a.submit(5).await;
    let waited = a.wait_witnessed("drills", 5, 2).await;
    eprintln!(
        "checkpoint 5 of mesh-a held 2 cosignatures {} ms after it was signed",
        waited.as_millis()
    );
    assert!(waited < Duration::from_secs(5), "cosigning took {waited:?}");
    // Every mesh's checkpoints are witnessed by the two others, empty scrolls included.
    for m in [b, c] {
        m.wait_witnessed("drills", 0, 2).await;
    }

    // JSON lists the cosignatures (once the portal's short checkpoint cache has moved on),
    // text appends them to the note; ?witnessed=K.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = a
            .get(
                "/v1/scrolls/drills/checkpoint",
                &[("accept", "application/json")],
            )
            .await;
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        if v["tree_size"] == 5 && v["cosignatures"].as_array().map_or(0, Vec::len) == 2 {
            let witnesses: Vec<&str> = v["cosignatures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["witness"].as_str())
                .collect();
            assert!(
                witnesses.contains(&Mesh::read(&b.witness_vkey).as_str()),
                "{v}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the portal never served checkpoint 5 with 2 cosignatures: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, note) = a.get("/v1/scrolls/drills/checkpoint", &[]).await;
    assert_eq!(s, 200);
    for w in ["mesh-b/witness", "mesh-c/witness"] {
        assert!(note.contains(&format!("\u{2014} {w} ")), "{note}");
    }
    let (s, _) = a
        .get("/v1/scrolls/drills/checkpoint?witnessed=2", &[])
        .await;
    assert_eq!(s, 200);
    let (s, body) = a
        .get("/v1/scrolls/drills/checkpoint?witnessed=3", &[])
        .await;
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("not_witnessed"), "{body}");
    let (s, body) = a
        .get("/v1/scrolls/drills/checkpoint?witnessed=01", &[])
        .await;
    assert_eq!(s, 400, "{body}");

    // The bundle carries the cosignatures; verifiers enforce K of N.
    let bearer = format!("Bearer {}", a.reader);
    let (s, bundle) = a
        .get(
            "/v1/scrolls/drills/receipts/3/bundle",
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(s, 200, "{bundle}");
    let file = a.dir.join("bundle.json");
    std::fs::write(&file, &bundle).unwrap_or_else(|e| panic!("{e}"));
    let stranger = a.dir.join("stranger.vkey");
    let w = WitnessSigner::generate_to_file("mesh-z/witness", &a.dir.join("stranger.key"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&stranger, w.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
    let (wb, wc, wz) = (
        path_str(&b.witness_vkey),
        path_str(&c.witness_vkey),
        path_str(&stranger),
    );
    let base = [
        "verify",
        "bundle",
        path_str(&file),
        "--vkey",
        path_str(&a.vkey),
    ];
    for (extra, ok) in [
        (vec!["--witness", wb, "--witness", wc], true),
        (
            vec![
                "--witness",
                wb,
                "--witness",
                wc,
                "--witness",
                wz,
                "--witness-threshold",
                "2",
            ],
            true,
        ),
        (
            vec!["--witness", wb, "--witness", wc, "--witness", wz],
            false,
        ),
        (vec!["--witness", wz], false),
    ] {
        let out = vaultmesh(&[&base[..], &extra[..]].concat());
        assert_eq!(out.status.success(), ok, "{extra:?}: {}", text(&out));
        let (py_ok, said) = python_verify_with(&file, &a.vkey, &extra);
        assert_eq!(py_ok, ok, "Python, {extra:?}: {said}");
    }
    // A guardian key given as a witness key is refused (keys of the two types do not mix).
    let out = vaultmesh(&[&base[..], &["--witness", path_str(&a.vkey)]].concat());
    assert!(!out.status.success());

    // verify log follows the witnessed checkpoints under the policy.
    let state = a.dir.join("verify-state.json");
    let url = format!("http://{}", a.portal_addr());
    let out = vaultmesh(&[
        "verify",
        "log",
        &url,
        "--vkey",
        path_str(&a.vkey),
        "--state",
        path_str(&state),
        "--witness",
        wb,
        "--witness",
        wc,
        "--samples",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("OK drills: checkpoint 5 cosigned by mesh-b/witness, mesh-c/witness"),
        "{}",
        text(&out)
    );
    let out = vaultmesh(&[
        "verify",
        "log",
        &url,
        "--vkey",
        path_str(&a.vkey),
        "--state",
        path_str(&a.dir.join("s2.json")),
        "--witness",
        wb,
        "--witness",
        wz,
        "--witness-threshold",
        "2",
        "--samples",
        "0",
    ]);
    assert!(!out.status.success(), "{}", text(&out));

    for m in meshes {
        m.stop().await;
    }
}
