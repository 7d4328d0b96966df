//! Cross-language checks of SPEC §3: the Rust implementation must produce byte-for-byte what
//! an independent Python implementation (`ops/verify/`, hashlib + rfc8785 + cryptography)
//! computes, and that verifier must accept Rust-made bundles and reject tampered ones.
//! Python comes from `VAULTMESH_PYTHON` (set by `ops/test.sh`), else `python3`.

use ledger::bundle::{ProofBundle, BUNDLE_FORMAT};
use ledger::checkpoint::Checkpoint;
use ledger::hash::{to_hex, Sha3Hasher};
use ledger::merkle::{InclusionProof, MemoryTree};
use ledger::note::NoteSigner;
use ledger::proofchain::{AnchorRecord, AnchoredScroll, GENESIS_PREV};
use ledger::receipt::{leaf_hash, Receipt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sha3::Sha3_256;
use std::path::PathBuf;
use std::process::Command;

fn verify_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/verify")
}

fn python() -> Command {
    let mut c =
        Command::new(std::env::var("VAULTMESH_PYTHON").unwrap_or_else(|_| "python3".into()));
    c.current_dir(verify_dir());
    c
}

fn receipts() -> Vec<Receipt> {
    (0..3u64)
        .map(|i| {
            let payload = json!({"drill": format!("fire-{i}"), "ok": i != 1, "participants": 12 + i, "score": 0.5 + i as f64});
            let Value::Object(payload) = payload else { unreachable!() };
            Receipt {
                scroll: "drills".into(),
                seq: i,
                kind: "drill_completed".into(),
                payload,
                submitted_at: format!("2026-11-23T12:00:0{i}.000000Z"),
                submitter: "key_0a1b2c3d4e5f".into(),
            }
        })
        .collect()
}

fn signer() -> NoteSigner {
    let seed: [u8; 32] = Sha256::digest(b"vaultmesh worked example").into();
    NoteSigner::from_seed("example-mesh/guardian", seed).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn worked_example_matches_the_independent_python_implementation() {
    let out = python()
        .arg("worked_example.py")
        .output()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    assert!(
        out.status.success(),
        "python failed (run ops/test.sh to install rfc8785 and cryptography): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));

    let rs = receipts();
    let leaves: Vec<Vec<u8>> = rs
        .iter()
        .map(|r| r.leaf_bytes().unwrap_or_default())
        .collect();
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(
            py["leaves"][i].as_str(),
            Some(String::from_utf8_lossy(leaf).as_ref()),
            "leaf {i}"
        );
    }
    let hashes: Vec<_> = leaves.iter().map(|l| leaf_hash(l)).collect();
    for (i, h) in hashes.iter().enumerate() {
        assert_eq!(py["leaf_hashes"][i].as_str(), Some(to_hex(h).as_str()));
    }
    assert_eq!(
        py["node_01"].as_str(),
        Some(to_hex(&Sha3Hasher::node(&hashes[0], &hashes[1])).as_str())
    );
    let tree = MemoryTree::<Sha3_256>::new(hashes.clone());
    let root = tree.root(3).unwrap_or_default();
    assert_eq!(py["root"].as_str(), Some(to_hex(&root).as_str()));
    assert_eq!(
        py["empty_root"].as_str(),
        Some(to_hex(&Sha3Hasher::empty_root()).as_str())
    );
    let path: Vec<String> = tree
        .inclusion(1, 3)
        .unwrap_or_default()
        .iter()
        .map(to_hex)
        .collect();
    assert_eq!(py["inclusion_1_of_3"], json!(path));

    let s = signer();
    assert_eq!(py["vkey"].as_str(), Some(s.verifier().to_vkey().as_str()));
    let cp = Checkpoint {
        origin: "example-mesh/drills".into(),
        size: 3,
        root,
    };
    assert_eq!(
        py["checkpoint"].as_str(),
        Some(cp.sign(&s).unwrap_or_default().as_str())
    );

    let entry = AnchoredScroll {
        scroll: "drills".into(),
        tree_size: 3,
        root: to_hex(&root),
    };
    let rec = AnchorRecord::build(
        1,
        "example-mesh",
        "2026-11-23T12:10:00.000000Z",
        vec![entry],
        GENESIS_PREV,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        py["anchor_record"]["epoch_root"].as_str(),
        Some(rec.epoch_root.as_str())
    );
    assert_eq!(
        py["anchor_record"]["anchor_hash"].as_str(),
        Some(rec.anchor_hash.as_str())
    );
    assert_eq!(
        py["anchor_head"].as_str(),
        Some(rec.sign_head(&s).unwrap_or_default().as_str())
    );
}

fn bundle(seq: u64) -> (ProofBundle, String) {
    let rs = receipts();
    let s = signer();
    let hashes: Vec<_> = rs
        .iter()
        .map(|r| leaf_hash(&r.leaf_bytes().unwrap_or_default()))
        .collect();
    let tree = MemoryTree::<Sha3_256>::new(hashes);
    let root = tree.root(3).unwrap_or_default();
    let note = Checkpoint {
        origin: "example-mesh/drills".into(),
        size: 3,
        root,
    }
    .sign(&s)
    .unwrap_or_default();
    let entries = vec![
        AnchoredScroll {
            scroll: "drills".into(),
            tree_size: 3,
            root: to_hex(&root),
        },
        AnchoredScroll {
            scroll: "compliance".into(),
            tree_size: 0,
            root: to_hex(&Sha3Hasher::empty_root()),
        },
    ];
    let mut anchor = AnchorRecord::build(
        1,
        "example-mesh",
        "2026-11-23T12:10:00.123456Z",
        entries,
        GENESIS_PREV,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    anchor.sinks.push(json!({"sink": "journal", "line": 1}));
    anchor.signature = Some(anchor.sign_head(&s).unwrap_or_else(|e| panic!("{e}")));
    let r = &rs[seq as usize];
    let leaf = String::from_utf8(r.leaf_bytes().unwrap_or_default()).unwrap_or_default();
    let b = ProofBundle {
        format: BUNDLE_FORMAT.into(),
        leaf_hash: to_hex(&leaf_hash(leaf.as_bytes())),
        leaf,
        receipt: r.to_value(),
        inclusion: InclusionProof {
            leaf_index: seq,
            tree_size: 3,
            path: tree.inclusion(seq, 3).unwrap_or_default(),
        },
        checkpoint: note,
        vkey: s.verifier().to_vkey(),
        anchor: Some(anchor),
    };
    assert!(
        b.verify(&s.verifier()).is_ok(),
        "the Rust verifier accepts it"
    );
    (b, s.verifier().to_vkey())
}

fn python_verifies(b: &ProofBundle, vkey: &str) -> bool {
    let dir = std::env::temp_dir().join(format!("vm-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join(format!("bundle-{}.json", rand_suffix()));
    std::fs::write(&file, serde_json::to_vec_pretty(b).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let out = python()
        .arg("vaultmesh_verify.py")
        .arg(&file)
        .arg(vkey)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    let _ = std::fs::remove_file(&file);
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!(
            "verifier crashed ({other:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn python_verifier_accepts_rust_bundles_and_rejects_tampering() {
    for seq in 0..3 {
        let (b, vkey) = bundle(seq);
        assert!(python_verifies(&b, &vkey), "bundle for seq {seq}");
    }
    let (b, vkey) = bundle(1);
    let mut t = b.clone();
    t.leaf = t.leaf.replace("\"ok\":false", "\"ok\":true");
    assert!(!python_verifies(&t, &vkey), "edited leaf");
    let mut t = b.clone();
    t.inclusion.path[0][5] ^= 0x40;
    assert!(!python_verifies(&t, &vkey), "edited path");
    let mut t = b.clone();
    t.checkpoint = t.checkpoint.replacen("\n3\n", "\n4\n", 1);
    assert!(!python_verifies(&t, &vkey), "edited checkpoint");
    let mut t = b.clone();
    if let Some(a) = t.anchor.as_mut() {
        a.anchored_at = "2026-11-24T00:00:00.000000Z".into();
    }
    assert!(!python_verifies(&t, &vkey), "edited anchor");
    let mut t = b.clone();
    if let Some(a) = t.anchor.as_mut() {
        a.anchored_at = "2026-11-24T00:00:00.000000Z".into();
        a.signature = None;
        a.anchor_hash = to_hex(&Sha3Hasher::plain(&a.hashed_bytes().unwrap_or_default()));
        assert!(a.verify().is_ok(), "self-consistent");
    }
    assert!(
        !python_verifies(&t, &vkey),
        "re-dated anchor, hash recomputed, no head"
    );
    let mut t = b.clone();
    if let Some(a) = t.anchor.as_mut() {
        a.signature = None;
    }
    assert!(!python_verifies(&t, &vkey), "unsigned anchor");
    let mut t = b.clone();
    let stranger =
        NoteSigner::from_seed("example-mesh/guardian", [2u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    if let Some(a) = t.anchor.as_mut() {
        a.signature = Some(a.sign_head(&stranger).unwrap_or_default());
    }
    assert!(
        !python_verifies(&t, &vkey),
        "anchor head signed by another key"
    );
    let other =
        NoteSigner::from_seed("example-mesh/guardian", [1u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !python_verifies(&b, &other.verifier().to_vkey()),
        "wrong key"
    );
}

#[test]
fn python_cosignature_tests_pass_on_the_independent_implementation() {
    let out = python()
        .args(["-m", "unittest", "test_cosignature"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_accepts_rust_cosignatures_and_only_under_the_right_keys() {
    use ledger::cosignature::{with_cosignatures, WitnessSigner};
    let w =
        WitnessSigner::from_seed("witness.example/w1", [5; 32]).unwrap_or_else(|e| panic!("{e}"));
    let body = "example.com/log\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let line = w.cosign(body, 1_700_000_000).unwrap_or_default();
    let log = NoteSigner::from_seed("example.com/log", [6; 32]).unwrap_or_else(|e| panic!("{e}"));
    let note = with_cosignatures(&log.sign(body).unwrap_or_default(), &[line]);
    let script = "import sys, vaultmesh_verify as v\n\
         print(v.verify_cosignatures(sys.argv[1], [sys.argv[2]], max_future=None))\n";
    let run = |vkey: &str| {
        python()
            .args(["-c", script, &note, vkey])
            .output()
            .unwrap_or_else(|e| panic!("cannot run python: {e}"))
    };
    let ok = run(&w.verifier().to_vkey());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("witness.example/w1"));
    let other =
        WitnessSigner::from_seed("witness.example/w1", [9; 32]).unwrap_or_else(|e| panic!("{e}"));
    let none = run(&other.verifier().to_vkey());
    assert!(
        !String::from_utf8_lossy(&none.stdout).contains("witness.example/w1"),
        "another key's cosignature was accepted"
    );
}
