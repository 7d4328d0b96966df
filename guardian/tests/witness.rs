//! The witness role against real Postgres: every C2SP tlog-witness refusal has its status and
//! cosigns nothing, and a witness killed with SIGKILL at random moments under concurrent
//! submissions of two conflicting branches never cosigns two roots for one size nor a
//! smaller size after a larger one.

mod common;

use ledger::add_checkpoint::AddCheckpoint;
use ledger::checkpoint::Checkpoint;
use ledger::cosignature::{with_cosignatures, WitnessPolicy, WitnessSigner};
use ledger::hash::Hash;
use ledger::merkle::MemoryTree;
use ledger::note::NoteSigner;
use ledger::testing::{closed_port, request, scratch_dir, wait_until_listening, TestDb};
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const REMOTE: &str = "mesh-b";

/// A remote log: its key and a tree whose leaves are derived from `branch` after `common`
/// shared leaves, so two branches agree up to `common` and differ after.
struct RemoteLog {
    signer: NoteSigner,
    tree: MemoryTree<Sha3_256>,
    origin: String,
}

impl RemoteLog {
    fn new(signer: NoteSigner, scroll: &str, size: u64, common: u64, branch: u8) -> Self {
        let leaves = (0..size)
            .map(|i| {
                let tag = if i < common { 0 } else { branch };
                let h: Hash = Sha3_256::digest([&i.to_be_bytes()[..], &[tag]].concat()).into();
                h
            })
            .collect();
        Self {
            signer,
            tree: MemoryTree::new(leaves),
            origin: format!("{REMOTE}/{scroll}"),
        }
    }

    fn root(&self, size: u64) -> Hash {
        self.tree
            .root(size)
            .unwrap_or_else(|| panic!("no root at {size}"))
    }

    fn note(&self, size: u64) -> String {
        Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.root(size),
        }
        .sign(&self.signer)
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 || old == new {
            return Vec::new();
        }
        self.tree
            .consistency(old, new)
            .unwrap_or_else(|| panic!("no proof {old}..{new}"))
    }

    fn request(&self, old: u64, new: u64) -> String {
        AddCheckpoint::encode(old, &self.proof(old, new), &self.note(new))
    }
}

fn remote_signer(seed: u8) -> NoteSigner {
    NoteSigner::from_seed(&format!("{REMOTE}/guardian"), [seed; 32])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A witness key file in `dir` and its signer.
fn witness_key(dir: &std::path::Path) -> (std::path::PathBuf, WitnessSigner) {
    let path = dir.join("witness.key");
    let w =
        WitnessSigner::generate_to_file("mesh-a/witness", &path).unwrap_or_else(|e| panic!("{e}"));
    (path, w)
}

async fn add(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    request(
        addr,
        "POST",
        "/v1/witness/add-checkpoint",
        &[("content-type", "text/plain")],
        body,
    )
    .await
    .unwrap_or_else(|e| panic!("add-checkpoint: {e}"))
}

#[tokio::test]
async fn every_refusal_has_its_c2sp_status_and_cosigns_nothing() {
    let signer = remote_signer(7);
    let vkey = signer.verifier().to_vkey();
    let mut witness = None;
    // The remote's portal: a port nobody listens on (connections refused at once).
    let portal = format!("http://127.0.0.1:{}", closed_port().await);
    let t = common::start(|dir, opts| {
        let (path, w) = witness_key(dir);
        witness = Some(w);
        opts.witness_key_file = Some(path);
        opts.remote_meshes = vec![format!("{REMOTE},{vkey},{portal}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))];
    })
    .await;
    let witness = witness.unwrap_or_else(|| unreachable!());
    let policy = WitnessPolicy::new(vec![witness.verifier()], 1).unwrap_or_else(|e| panic!("{e}"));
    let addr = t.g.api_addr;
    let log = RemoteLog::new(remote_signer(7), "drills", 20, 20, 0);
    let fork = RemoteLog::new(remote_signer(7), "drills", 20, 6, 1);
    let forger = RemoteLog::new(remote_signer(8), "drills", 20, 20, 0);

    // The first checkpoint from size 0, then one consistent with it: both cosigned.
    let (s, line) = add(addr, log.request(0, 5).as_bytes()).await;
    assert_eq!(s, 200, "{line}");
    let cosigned = with_cosignatures(&log.note(5), std::slice::from_ref(&line));
    assert_eq!(
        policy.check(&cosigned).ok(),
        Some(vec!["mesh-a/witness".to_string()])
    );
    assert!(line.starts_with("\u{2014} mesh-a/witness ") && line.ends_with('\n'));
    let (s, nine) = add(addr, log.request(5, 9).as_bytes()).await;
    assert_eq!(s, 200, "{nine}");
    assert!(policy
        .check(&with_cosignatures(
            &log.note(9),
            std::slice::from_ref(&nine)
        ))
        .is_ok());

    // 409: an old size other than the last cosigned, with that size as text/x.tlog.size.
    let raw = ledger::testing::request(
        addr,
        "POST",
        "/v1/witness/add-checkpoint",
        &[],
        log.request(5, 12).as_bytes(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw, (409, "9\n".to_string()));
    let headers = raw_headers(addr, log.request(0, 3).as_bytes()).await;
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/x.tlog.size"),
        "{headers}"
    );
    // A replay of an old, validly signed checkpoint: 409 (old 0) or 400 (old beyond size).
    assert_eq!(
        add(addr, log.request(0, 5).as_bytes()).await,
        (409, "9\n".into())
    );
    let replay = AddCheckpoint::encode(9, &[], &log.note(5));
    assert_eq!(add(addr, replay.as_bytes()).await.0, 400);

    let mut refusals: Vec<(u16, &str, Vec<u8>)> = vec![
        (404, "unknown origin", {
            let other = RemoteLog {
                origin: "mesh-z/drills".into(),
                ..RemoteLog::new(remote_signer(7), "drills", 20, 20, 0)
            };
            other.request(0, 4).into_bytes()
        }),
        (
            403,
            "signed by another key of the same name",
            forger.request(9, 12).into_bytes(),
        ),
        (403, "no signature by the remote's key", {
            let note = log.note(12);
            let unsigned = note.replace(
                &format!("\u{2014} {REMOTE}/guardian"),
                "\u{2014} someone/else",
            );
            AddCheckpoint::encode(9, &log.proof(9, 12), &unsigned).into_bytes()
        }),
        (403, "a tampered signature", {
            let note = log.note(12);
            let tampered = format!("{}AAAA=\n", &note[..note.len() - 6]);
            AddCheckpoint::encode(9, &log.proof(9, 12), &tampered).into_bytes()
        }),
        (
            422,
            "a garbage proof",
            AddCheckpoint::encode(9, &[[7; 32]; 3], &log.note(12)).into_bytes(),
        ),
        (422, "a proof that is too short", {
            let p = log.proof(9, 12);
            AddCheckpoint::encode(9, &p[..p.len() - 1], &log.note(12)).into_bytes()
        }),
        (
            422,
            "a validly signed fork of a cosigned size",
            fork.request(9, 9).into_bytes(),
        ),
        (
            422,
            "a fork consistent with nothing cosigned",
            AddCheckpoint::encode(9, &fork.proof(9, 12), &fork.note(12)).into_bytes(),
        ),
        (
            422,
            "a size-0 checkpoint whose root is not the empty tree's",
            {
                let zero = Checkpoint {
                    origin: format!("{REMOTE}/other"),
                    size: 0,
                    root: [1; 32],
                };
                AddCheckpoint::encode(0, &[], &zero.sign(&remote_signer(7)).unwrap_or_default())
                    .into_bytes()
            },
        ),
        (422, "a proof from size 0 that is not empty", {
            let fresh = RemoteLog::new(remote_signer(7), "fresh", 8, 8, 0);
            AddCheckpoint::encode(0, &[[1; 32]], &fresh.note(8)).into_bytes()
        }),
        (
            400,
            "old size beyond the checkpoint",
            AddCheckpoint::encode(13, &[], &log.note(12)).into_bytes(),
        ),
        (
            400,
            "64 proof lines",
            AddCheckpoint::encode(9, &[[1; 32]; 64], &log.note(12)).into_bytes(),
        ),
        (
            400,
            "bad base64 in a proof line",
            format!("old 9\n!!!!\n\n{}", log.note(12)).into_bytes(),
        ),
        (
            400,
            "a proof line of 31 bytes",
            format!(
                "old 9\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n\n{}",
                log.note(12)
            )
            .into_bytes(),
        ),
        (
            400,
            "trailing data after the note",
            format!("{}garbage\n", log.request(9, 12)).into_bytes(),
        ),
        (
            400,
            "no blank line",
            format!("old 9\n{}", log.note(12).replace("\n\n", "\n")).into_bytes(),
        ),
        (
            400,
            "no old line",
            format!("\n{}", log.note(12)).into_bytes(),
        ),
        (
            400,
            "old with a leading zero",
            format!("old 09\n\n{}", log.note(12)).into_bytes(),
        ),
        (400, "not UTF-8", b"old 9\n\n\xff\xfe\n".to_vec()),
        (400, "an empty body", Vec::new()),
        (400, "a checkpoint with an extension line", {
            let body = format!("{}\n12\n{}\next\n", log.origin, base64_root(&log.root(12)));
            AddCheckpoint::encode(
                9,
                &log.proof(9, 12),
                &remote_signer(7).sign(&body).unwrap_or_default(),
            )
            .into_bytes()
        }),
    ];
    refusals.push((413, "a body over 16 KiB", vec![b'a'; 17 * 1024]));
    // A ProofChain head: its records are read from the remote's portal (none runs here: 503),
    // and it takes no proof lines (422).
    let head = Checkpoint {
        origin: format!("{REMOTE}/proofchain"),
        size: 2,
        root: [3; 32],
    };
    let head = head.sign(&remote_signer(7)).unwrap_or_default();
    refusals.push((
        503,
        "a head whose records cannot be read",
        AddCheckpoint::encode(0, &[], &head).into_bytes(),
    ));
    refusals.push((
        422,
        "a head with proof lines",
        AddCheckpoint::encode(0, &[[1; 32]], &head).into_bytes(),
    ));
    refusals.push((
        409,
        "a head with another old size (answered before any read)",
        AddCheckpoint::encode(1, &[], &head).into_bytes(),
    ));
    let unreadable = AddCheckpoint::encode(0, &[], &head);
    let (s, text) = add(addr, unreadable.as_bytes()).await;
    assert_eq!(s, 503, "{text}");
    assert!(text.contains("\"remote_unavailable\""), "{text}");
    let head_lines = raw_headers(addr, unreadable.as_bytes())
        .await
        .to_ascii_lowercase();
    assert!(head_lines.contains("retry-after: 5"), "{head_lines}");
    for (status, what, body) in &refusals {
        let (s, text) = add(addr, body).await;
        assert_eq!(s, *status, "{what}: {text}");
        if *status != 409 {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            assert!(
                v["error"]["code"].is_string(),
                "{what}: a JSON error: {text}"
            );
        }
    }
    // After all that, the state is still size 9 of the true branch, and the history holds
    // exactly the two cosignatures given.
    let state =
        t.db.store
            .witness_state(&log.origin)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.map(|s| (s.tree_size, s.root)), Some((9, log.root(9))));
    let history =
        t.db.store
            .witness_history(&log.origin)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(history, vec![(5, log.root(5)), (9, log.root(9))]);
    // The same size with the same root again, many times: the cosignature already given, and
    // no new history row (repeating a public checkpoint cannot grow the witness's tables).
    for _ in 0..3 {
        let (s, again) = add(addr, log.request(9, 9).as_bytes()).await;
        assert_eq!((s, again), (200, nine.clone()));
    }
    let history =
        t.db.store
            .witness_history(&log.origin)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(history.len(), 2);
    let m = common::metrics(t.g.metrics_addr).await;
    for (reason, at_least) in [
        ("unknown_origin", 1.0),
        ("bad_signature", 3.0),
        ("inconsistent", 6.0),
        ("malformed", 12.0),
        ("old_size_mismatch", 3.0),
    ] {
        let prefix = format!("vaultmesh_federation_witness_refused_total{{reason=\"{reason}\",");
        let n: f64 = m
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            n >= at_least,
            "{reason}: {n} refused, expected at least {at_least}"
        );
    }

    // Of all those requests, only the validly signed second root for the cosigned size 9 is
    // evidence against mesh-b: one fork, holding both notes, a receipt, the gauge at 1.
    let found =
        t.db.store
            .discrepancies()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!((d.discrepancy_type.as_str(), d.tree_size), ("fork", 9));
    assert_eq!(d.evidence["cosigned"], log.note(9).as_str());
    assert_eq!(d.evidence["conflicting"], fork.note(9).as_str());
    let series = "vaultmesh_federation_discrepancy_detected{discrepancy_type=\"fork\",remote_mesh=\"mesh-b\"}";
    common::wait_metric(t.g.metrics_addr, series, 1.0).await;
    let receipts =
        t.db.store
            .receipts_of_type("federation", "federation_discrepancy")
            .await;
    assert_eq!(receipts.map(|r| r.len()).ok(), Some(1));
    // Acknowledged by id, by an admin only, once.
    let reader = common::api_key(&t.db.store, ledger::store::Role::Reader).await;
    let ack = format!(r#"{{"discrepancies":[{}]}}"#, d.id);
    let path = "/v1/federation/discrepancies/ack";
    let (s, _) = ledger::testing::call(addr, "POST", path, Some(&reader), &[], &ack).await;
    assert_eq!(s, 403);
    let (s, v) = ledger::testing::call(
        addr,
        "POST",
        path,
        Some(&t.admin),
        &[],
        r#"{"discrepancies":[999]}"#,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = ledger::testing::call(addr, "POST", path, Some(&t.admin), &[], &ack).await;
    assert_eq!(s, 200, "{v}");
    common::wait_metric(t.g.metrics_addr, series, 0.0).await;
    let (s, _) = ledger::testing::call(addr, "POST", path, Some(&t.admin), &[], &ack).await;
    assert_eq!(s, 404, "a second acknowledgement");
    let acks =
        t.db.store
            .receipts_of_type("federation", "federation_discrepancy_acknowledged")
            .await;
    assert_eq!(acks.map(|r| r.len()).ok(), Some(1));

    // Nobody but the schema owner can move the state back or rewrite the history.
    let client =
        t.db.role_client(ledger::store::DbRole::Guardian)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    for sql in [
        "UPDATE witness_state SET tree_size = 5",
        "UPDATE witness_state SET root = '\\x00'::bytea || substring(root from 2)",
        "DELETE FROM witness_history",
        "UPDATE witness_history SET tree_size = 1",
        "DELETE FROM witness_state",
        "DELETE FROM federation_discrepancies",
        "UPDATE federation_discrepancies SET acknowledged_at = NULL, acknowledged_by = NULL",
        "UPDATE federation_discrepancies SET evidence = '{}'",
    ] {
        assert!(client.execute(sql, &[]).await.is_err(), "{sql} succeeded");
    }
    let portal =
        t.db.role_client(ledger::store::DbRole::Portal)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(portal
        .execute("INSERT INTO witness_state (origin, tree_size, root, note, cosignature) VALUES ('x/y', 1, '\\x00', '', '')", &[])
        .await
        .is_err());
}

fn base64_root(root: &Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(root)
}

/// The raw response head of one add-checkpoint request.
async fn raw_headers(addr: SocketAddr, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "POST /v1/witness/add-checkpoint HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(&[head.as_bytes(), body].concat())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out).to_string();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A witness process on `db`, on fresh ports.
async fn spawn_witness(
    db: &TestDb,
    dir: &std::path::Path,
    key: &std::path::Path,
    remote: &str,
) -> (tokio::process::Child, SocketAddr) {
    let api = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    let metrics = closed_port().await;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("witness.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vaultmesh-guardian"))
        .args(["--api-addr", &api.to_string()])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--database-url", &db.url(ledger::store::DbRole::Guardian)])
        .args(["--redis-url", &ledger::testing::redis_url()])
        .args(["--mesh-id", "mesh-a"])
        .args(["--log", "warn"])
        .args([
            "--signing-key-file",
            &dir.join("guardian.key").to_string_lossy(),
        ])
        .args([
            "--journal-path",
            &dir.join("journal.jsonl").to_string_lossy(),
        ])
        .args(["--witness-key-file", &key.to_string_lossy()])
        .args(["--remote-mesh", remote])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the witness: {e}"));
    wait_until_listening(api, "witness", Duration::from_secs(30)).await;
    (child, api)
}

/// What one client learned: every (size, root) it got a 200 for, in the order it got them.
type Cosigned = Vec<(u64, Hash)>;

/// Submits checkpoints of `log` from `start` upwards to `end`, learning the witness's size
/// from 409s, until the witness is gone or `end` is cosigned; returns what was cosigned.
async fn client(addr: SocketAddr, log: &RemoteLog, start: u64, end: u64) -> Cosigned {
    let mut got = Vec::new();
    let mut old = 0;
    let mut next = start;
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if next > end {
            break;
        }
        next = next.max(old);
        let body = AddCheckpoint::encode(old, &log.proof(old, next), &log.note(next));
        let answer = http
            .post(format!("http://{addr}/v1/witness/add-checkpoint"))
            .body(body)
            .send()
            .await;
        let Ok(answer) = answer else { break };
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        match status {
            200 => {
                got.push((next, log.root(next)));
                old = next;
                next += 1 + (next % 3);
            }
            409 => {
                let size = ledger::add_checkpoint::parse_size_body(&text).unwrap_or(0);
                if size > next {
                    next = size;
                }
                old = size;
            }
            422 | 400 => next += 1,
            503 => {}
            other => panic!("unexpected status {other}: {text}"),
        }
    }
    got
}

#[tokio::test]
async fn a_witness_killed_at_random_never_cosigns_two_roots_or_goes_back() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir("witness-kill");
    NoteSigner::generate_to_file("mesh-a/guardian", &dir.join("guardian.key"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (key, _) = witness_key(&dir);
    let remote = format!(
        "{REMOTE},{},http://127.0.0.1:9",
        remote_signer(7).verifier().to_vkey()
    );
    // Two validly signed branches that agree on the first 40 leaves: a forking remote.
    let a = std::sync::Arc::new(RemoteLog::new(remote_signer(7), "drills", 400, 40, 1));
    let b = std::sync::Arc::new(RemoteLog::new(remote_signer(7), "drills", 400, 40, 2));
    let rounds: u64 = std::env::var("VAULTMESH_WITNESS_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut answered: Vec<(u64, Hash)> = Vec::new();
    let mut rng = ledger::rng::Rng(0x5eed);
    let started = Instant::now();
    for round in 0..rounds {
        let (mut child, addr) = spawn_witness(&db, &dir, &key, &remote).await;
        let base = round * 15;
        let clients: Vec<_> = (0..6u64)
            .map(|i| {
                let log = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { client(addr, &log, base + 1 + i, base + 40).await })
            })
            .collect();
        // Kill at a random moment while the clients are submitting.
        tokio::time::sleep(Duration::from_millis(10 + rng.below(150))).await;
        child
            .start_kill()
            .unwrap_or_else(|e| panic!("SIGKILL: {e}"));
        let _ = child.wait().await;
        for c in clients {
            answered.extend(c.await.unwrap_or_default());
        }
    }
    // Every 200 is in the history; the history never holds two roots for one size and
    // never goes back.
    let history = db
        .store
        .witness_history(&a.origin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !history.is_empty(),
        "nothing was cosigned in {rounds} rounds"
    );
    let mut roots: BTreeMap<u64, BTreeSet<Hash>> = BTreeMap::new();
    for (size, root) in history.iter().chain(answered.iter()) {
        roots.entry(*size).or_default().insert(*root);
    }
    for (size, set) in &roots {
        assert_eq!(set.len(), 1, "two roots cosigned for size {size}");
    }
    for w in history.windows(2) {
        assert!(
            w[1].0 >= w[0].0,
            "the witness went back from {} to {}",
            w[0].0,
            w[1].0
        );
    }
    for a in &answered {
        assert!(
            history.contains(a),
            "a cosignature for {a:?} was answered but not persisted"
        );
    }
    let branches: BTreeSet<bool> = history
        .iter()
        .filter(|(s, _)| *s > 40)
        .map(|(s, r)| a.tree.root(*s) == Some(*r))
        .collect();
    assert!(
        branches.len() <= 1,
        "both branches were cosigned beyond their common prefix"
    );
    eprintln!(
        "{rounds} kills: {} cosignatures persisted, {} answered, largest size {}, {:.1} s",
        history.len(),
        answered.len(),
        history.last().map(|h| h.0).unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
}
