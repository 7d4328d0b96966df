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
use ledger::storage::{CheckpointStore, KeyStore};
use ledger::store::Role;
use ledger::testing::{closed_port, request, scratch_dir, service_config, TestDb};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use verify_support::{path_str, python_verify_with, text, vaultmesh};

/// A mesh as its peers see it.
#[derive(Clone)]
struct Peer {
    id: String,
    vkey: String,
    witness_vkey: String,
    guardian: SocketAddr,
    portal: String,
}

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

    /// Starts the portal.
    async fn start_portal(&mut self) {
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

    /// This mesh as a peer: (id, guardian vkey, witness vkey, guardian address, portal URL).
    fn peer(&self) -> Peer {
        Peer {
            id: self.id.clone(),
            vkey: Mesh::read(&self.vkey),
            witness_vkey: Mesh::read(&self.witness_vkey),
            guardian: self.guardian_addr,
            portal: format!("http://{}", self.portal_addr()),
        }
    }

    /// Starts the guardian, witnessing `others` (checking their portals every 100 ms, a
    /// rollback once a smaller checkpoint is served 3 s after a cosignature) and asking them
    /// to cosign.
    async fn start_guardian(&mut self, others: &[Peer]) {
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
                .map(|p| {
                    format!("{},{},{}", p.id, p.vkey, p.portal)
                        .parse()
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect(),
            witnesses: others
                .iter()
                .map(|p| {
                    format!("{},{},http://{}", p.id, p.witness_vkey, p.guardian)
                        .parse()
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect(),
            remote_poll_interval_ms: 100,
            rollback_grace_secs: 3,
            ..guardian::GuardianArgs::default()
        };
        self.guardian = Some(
            guardian::start_with(config, opts, Shutdown::new())
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
        self.stop_services().await;
    }

    async fn stop_services(&mut self) {
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
    for m in meshes.iter_mut() {
        m.start_portal().await;
    }
    let peers: Vec<Peer> = meshes.iter().map(Mesh::peer).collect();
    for (i, m) in meshes.iter_mut().enumerate() {
        let others: Vec<Peer> = peers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| p.clone())
            .collect();
        m.start_guardian(&others).await;
    }
    let (a, b, c) = (&meshes[0], &meshes[1], &meshes[2]);
    a.submit(5).await;
    let waited = a.wait_witnessed("drills", 5, 2).await;
    eprintln!(
        "checkpoint 5 of mesh-a held 2 cosignatures {} ms after it was signed",
        waited.as_millis()
    );
    // Integration and cosigning both run every 100 ms: two cycles, with room for a loaded CI.
    assert!(
        waited < Duration::from_millis(1500),
        "cosigning took {waited:?}"
    );
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

    // Two epochs on mesh-a: each signed ProofChain head is cosigned by both witnesses, who
    // follow the hash links of the records mesh-a's portal serves (from genesis, then 1 → 2).
    let admin =
        a.db.store
            .create_api_key(Role::Admin, None, "t")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .token;
    for epoch in 1..=2u64 {
        let (s, v) = ledger::testing::call(
            a.guardian_addr,
            "POST",
            "/v1/guardian/anchor",
            Some(&admin),
            &[],
            "",
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while a
            .db
            .store
            .head_cosignatures(epoch)
            .await
            .unwrap_or_default()
            .len()
            < 2
        {
            assert!(
                Instant::now() < deadline,
                "head {epoch} never held 2 cosignatures"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (s, head) = a.get(&format!("/v1/anchors/{epoch}/head"), &[]).await;
        assert_eq!(s, 200, "{head}");
        let policy = ledger::cosignature::WitnessPolicy::new(
            [&b.witness_vkey, &c.witness_vkey]
                .iter()
                .map(|p| {
                    ledger::cosignature::WitnessVerifier::from_vkey(&Mesh::read(p))
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect(),
            2,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(policy.check(&head).is_ok(), "{head}");
        assert!(
            head.starts_with(&format!("mesh-a/proofchain\n{epoch}\n")),
            "{head}"
        );
    }
    let (s, _) = a.get("/v1/anchors/3/head", &[]).await;
    assert_eq!(s, 404);

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

    // mesh-c's guardian (its witness) goes away: mesh-a's next checkpoint is cosigned by
    // mesh-b alone, failures to reach mesh-c are counted, and ?witnessed=2 stays at 5.
    let mut meshes = meshes;
    if let Some(g) = meshes[2].guardian.take() {
        g.stop().await;
    }
    let a = &meshes[0];
    let failures = |text: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("vaultmesh_federation_witness_failures_total{")
                    && l.contains("remote_mesh=\"mesh-c\"")
                    && l.contains("reason=\"unreachable\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let metrics_of = |m: &Mesh| m.guardian.as_ref().map(|g| g.metrics_addr);
    let scrape = |addr: Option<SocketAddr>| async move {
        match addr {
            Some(addr) => ledger::testing::http(addr, "GET", "/metrics")
                .await
                .map(|(_, t)| t)
                .unwrap_or_default(),
            None => String::new(),
        }
    };
    let before = failures(&scrape(metrics_of(a)).await);
    a.submit(1).await;
    a.wait_witnessed("drills", 6, 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while failures(&scrape(metrics_of(a)).await) <= before {
        assert!(
            Instant::now() < deadline,
            "failures to reach mesh-c were not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n =
        a.db.store
            .cosignatures("drills", 6)
            .await
            .unwrap_or_default()
            .len();
    assert_eq!(n, 1, "only mesh-b could cosign");
    let witnessed = |k: u32| {
        let store = a.db.store.clone();
        async move {
            store
                .latest_witnessed_checkpoint("drills", k)
                .await
                .ok()
                .flatten()
                .map(|c| c.tree_size)
        }
    };
    assert_eq!((witnessed(1).await, witnessed(2).await), (Some(6), Some(5)));
    for m in meshes {
        m.stop().await;
    }
}

/// The discrepancies a mesh's guardian knows (admin API).
async fn discrepancies(m: &Mesh, admin: &str) -> Vec<Value> {
    let (s, v) = ledger::testing::call(
        m.guardian_addr,
        "GET",
        "/v1/federation/discrepancies",
        Some(admin),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["discrepancies"].as_array().cloned().unwrap_or_default()
}

/// Waits until `m` knows an open discrepancy of `kind` with `remote`; returns it.
async fn wait_discrepancy(m: &Mesh, admin: &str, remote: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = discrepancies(m, admin).await.into_iter().find(|d| {
            d["remote_mesh"] == remote
                && d["discrepancy_type"] == kind
                && d["acknowledged_at"].is_null()
        });
        if let Some(d) = found {
            return d;
        }
        if Instant::now() >= deadline {
            let metrics = m.guardian.as_ref().map(|g| g.metrics_addr);
            let text = match metrics {
                Some(addr) => ledger::testing::http(addr, "GET", "/metrics")
                    .await
                    .map(|(_, t)| t)
                    .unwrap_or_default(),
                None => String::new(),
            };
            let federation: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("vaultmesh_federation") && !l.ends_with(" 0"))
                .collect();
            panic!(
                "{} never raised {kind} for {remote}: {:?}\n{federation:#?}",
                m.id,
                discrepancies(m, admin).await
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Acknowledges discrepancy `id` on `m`.
async fn acknowledge(m: &Mesh, admin: &str, id: &Value) {
    let body = format!(r#"{{"discrepancies":[{id}]}}"#);
    let (s, v) = ledger::testing::call(
        m.guardian_addr,
        "POST",
        "/v1/federation/discrepancies/ack",
        Some(admin),
        &[],
        &body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

/// A tree of `size` leaves that is not mesh-b's, signed with mesh-b's key, and a consistency
/// proof of it from `from`, as the portal would serve them.
fn foreign_tree(key: &NoteSigner, from: u64, size: u64) -> (String, String, Vec<String>) {
    use sha3::Digest;
    let leaves = (0..size)
        .map(|i| sha3::Sha3_256::digest(format!("foreign {i}")).into())
        .collect();
    let tree = ledger::merkle::MemoryTree::<sha3::Sha3_256>::new(leaves);
    let root = tree.root(size).unwrap_or_else(|| unreachable!());
    let note = ledger::checkpoint::Checkpoint {
        origin: "mesh-b/drills".into(),
        size,
        root,
    }
    .sign(key)
    .unwrap_or_default();
    let path: Vec<String> = tree
        .consistency(from, size)
        .unwrap_or_default()
        .iter()
        .map(ledger::hash::to_hex)
        .collect();
    let proof = serde_json::json!({"from_size": from, "to_size": size, "path": path}).to_string();
    (note, proof, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discrepancies_are_raised_on_the_remotes_own_evidence_and_nothing_else() {
    let mut meshes = Vec::new();
    for id in ["mesh-a", "mesh-b", "mesh-c"] {
        meshes.push(Mesh::prepare(id).await);
    }
    for m in meshes.iter_mut() {
        m.start_portal().await;
    }
    let mut peers: Vec<Peer> = meshes.iter().map(Mesh::peer).collect();
    // mesh-a sees mesh-b's portal through a proxy the test controls (what mesh-b's portal
    // could show its clients); mesh-c sees it directly.
    let proxy = verify_support::Proxy::start(meshes[1].portal_addr()).await;
    let through_proxy = Peer {
        portal: proxy.url(),
        ..peers[1].clone()
    };
    for (i, m) in meshes.iter_mut().enumerate() {
        let mut others: Vec<Peer> = Vec::new();
        for (j, p) in peers.iter().enumerate() {
            if j == i {
                continue;
            }
            others.push(if i == 0 && j == 1 {
                through_proxy.clone()
            } else {
                p.clone()
            });
        }
        m.start_guardian(&others).await;
    }
    peers.clear();
    let admin = |m: &Mesh| {
        let store = m.db.store.clone();
        async move {
            store
                .create_api_key(Role::Admin, None, "t")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .token
        }
    };
    let (admin_a, admin_c) = (admin(&meshes[0]).await, admin(&meshes[2]).await);
    let b_key =
        NoteSigner::load(&meshes[1].dir.join("guardian.key")).unwrap_or_else(|e| panic!("{e}"));
    {
        let (a, b) = (&meshes[0], &meshes[1]);
        b.submit(3).await;
        b.wait_witnessed("drills", 3, 2).await;
        b.submit(2).await;
        b.wait_witnessed("drills", 5, 2).await;
        let three =
            b.db.store
                .checkpoint_at("drills", 3)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        let three = three.unwrap_or_else(|| panic!("no checkpoint at 3")).note;

        // No false alarms: anyone may POST old, forged or garbage submissions to a witness.
        let post = |body: String| async move {
            request(
                a.guardian_addr,
                "POST",
                "/v1/witness/add-checkpoint",
                &[],
                body.as_bytes(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .0
        };
        assert_eq!(
            post(ledger::add_checkpoint::AddCheckpoint::encode(
                0,
                &[],
                &three
            ))
            .await,
            409
        );
        let forger =
            NoteSigner::from_seed("mesh-b/guardian", [42; 32]).unwrap_or_else(|e| panic!("{e}"));
        let (forged, _, _) = foreign_tree(&forger, 5, 5);
        assert_eq!(
            post(ledger::add_checkpoint::AddCheckpoint::encode(
                5,
                &[],
                &forged
            ))
            .await,
            403
        );
        let (newer, _, _) = foreign_tree(&b_key, 5, 9);
        let garbage = ledger::add_checkpoint::AddCheckpoint::encode(5, &[[7; 32]; 3], &newer);
        assert_eq!(post(garbage).await, 422);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(discrepancies(a, &admin_a).await.is_empty(), "a false alarm");

        // bad_signature: mesh-b's portal shows a checkpoint its key did not sign.
        proxy.set("/v1/scrolls/drills/checkpoint", Some(forged.clone()));
        let d = wait_discrepancy(a, &admin_a, "mesh-b", "bad_signature").await;
        assert_eq!(d["evidence"]["served"], forged.as_str());
        acknowledge(a, &admin_a, &d["id"]).await;

        // fork: a second validly signed root for the cosigned size, served by its portal.
        let (other5, _, _) = foreign_tree(&b_key, 5, 5);
        proxy.set("/v1/scrolls/drills/checkpoint", Some(other5.clone()));
        let d = wait_discrepancy(a, &admin_a, "mesh-b", "fork").await;
        assert_eq!(d["evidence"]["detected_by"], "portal");
        acknowledge(a, &admin_a, &d["id"]).await;

        // split_view: a newer tree, validly signed, whose own sound proof shows another past.
        let (note8, proof8, _) = foreign_tree(&b_key, 5, 8);
        proxy.set("/v1/scrolls/drills/checkpoint", Some(note8.clone()));
        proxy.set(
            "/v1/scrolls/drills/proof/consistency?from=5&to=8",
            Some(proof8),
        );
        let d = wait_discrepancy(a, &admin_a, "mesh-b", "split_view").await;
        assert_eq!(d["tree_size"], 8);
        acknowledge(a, &admin_a, &d["id"]).await;

        // bad_proof: the same newer tree with a corrupted proof.
        let (note9, _, mut path9) = foreign_tree(&b_key, 5, 9);
        path9[1] = "00".repeat(32);
        proxy.set("/v1/scrolls/drills/checkpoint", Some(note9));
        proxy.set(
            "/v1/scrolls/drills/proof/consistency?from=5&to=9",
            Some(serde_json::json!({"from_size": 5, "to_size": 9, "path": path9}).to_string()),
        );
        let d = wait_discrepancy(a, &admin_a, "mesh-b", "bad_proof").await;
        acknowledge(a, &admin_a, &d["id"]).await;

        // rollback: its portal goes back to a checkpoint smaller than the one cosigned.
        // (Raised once size 5 was cosigned more than the 3 s grace ago.)
        proxy.set("/v1/scrolls/drills/checkpoint", Some(three.clone()));
        let d = wait_discrepancy(a, &admin_a, "mesh-b", "rollback").await;
        assert_eq!(d["tree_size"], 5, "{d}");
        acknowledge(a, &admin_a, &d["id"]).await;
        proxy.set("/v1/scrolls/drills/checkpoint", None);
        // mesh-c saw mesh-b's real portal all along: nothing to raise.
        assert!(discrepancies(&meshes[2], &admin_c).await.is_empty());
    }

    // fork: mesh-b's database is restored from an (empty) backup, other receipts are
    // appended and its guardian signs size 5 again; both witnesses raise it, with both notes.
    let mut b = meshes.remove(1);
    b.stop_services().await;
    b.db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    b.writer =
        b.db.store
            .create_api_key(Role::Writer, None, "t")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .token;
    b.start_portal().await;
    let others: Vec<Peer> = meshes.iter().map(Mesh::peer).collect();
    b.start_guardian(&others).await;
    b.submit(5).await;
    let (a, c) = (&meshes[0], &meshes[1]);
    for (m, admin) in [(a, &admin_a), (c, &admin_c)] {
        let d = wait_discrepancy(m, admin, "mesh-b", "fork").await;
        // Usually from mesh-b's own submission; from its portal if the restarted portal
        // happened to get its old port back. Either evidence proves the fork.
        let by = d["evidence"]["detected_by"].as_str().unwrap_or_default();
        assert!(by == "add-checkpoint" || by == "portal", "{d}");
        let file = m.dir.join("fork.json");
        std::fs::write(&file, d.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let out = vaultmesh(&[
            "verify",
            "fork",
            path_str(&file),
            "--vkey",
            path_str(&b.vkey),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("OK fork proven"), "{}", text(&out));
        // The same evidence with one note altered proves nothing.
        let mut bad = d.clone();
        let tampered = bad["evidence"]["cosigned"]
            .as_str()
            .unwrap_or_default()
            .replacen("mesh-b/drills", "mesh-b/drillz", 1);
        bad["evidence"]["cosigned"] = Value::String(tampered);
        std::fs::write(&file, bad.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let out = vaultmesh(&[
            "verify",
            "fork",
            path_str(&file),
            "--vkey",
            path_str(&b.vkey),
        ]);
        assert!(!out.status.success(), "{}", text(&out));
        // The receipt in the federation scroll holds the same evidence.
        let receipts =
            m.db.store
                .receipts_of_type("federation", "federation_discrepancy")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !receipts.is_empty(),
            "{}: no federation_discrepancy receipt",
            m.id
        );
    }
    b.stop().await;
    for m in meshes {
        m.stop().await;
    }
}
