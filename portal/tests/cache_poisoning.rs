//! Redis as an adversary against a real portal (real Postgres, a private redis-server, a real
//! guardian signing checkpoints): every key the portal wrote is found with SCAN and rewritten
//! with well-formed, self-consistent false content, wrapped in every way one can without the
//! deployment's cache secret; clients still get the Postgres truth, a POST under a planted
//! idempotency entry is written (201), checkpoints verify under the guardian's key, proofs
//! verify, and FLUSHALL changes nothing a client sees. Key names are discovered, not assumed,
//! beyond the prefix ending in front of each family's name.

use ledger::cache::seal::{Opened, SEAL_LEN};
use ledger::cache::CacheSecret;
use ledger::checkpoint::Checkpoint;
use ledger::hash::{from_hex, to_hex, Hash, Sha3Hasher};
use ledger::merkle::{verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof};
use ledger::note::{NoteSigner, NoteVerifier};
use ledger::service::{RunningService, Shutdown};
use ledger::storage::KeyStore;
use ledger::store::{DbRole, Role};
use ledger::testing::{call, http, scratch_dir, service_config, RedisServer, TestDb};
use portal::PortalArgs;
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use sha3::Sha3_256;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ORIGIN: &str = "vaultmesh-test/drills";
const FILL: u64 = 40;

/// The ways to rewrite an entry without the secret.
const VARIANTS: [&str; 5] = [
    "false content, unsealed (the pre-seal layout)",
    "false content sealed under another secret",
    "false content behind the genuine seal of the key",
    "the genuine entry of another key",
    "the genuine entry truncated",
];

/// Everything the test knows to be true, from what the portal answered before any tampering
/// (and from Postgres).
#[derive(Default)]
struct Truth {
    /// Receipt JSON by seq.
    receipts: Vec<Value>,
    /// Leaf hash by seq.
    leaves: Vec<Hash>,
    /// Idempotent submissions by the Redis key they were remembered under (without prefix):
    /// (Idempotency-Key, body, seq).
    idempotent: BTreeMap<String, (String, String, u64)>,
    /// Largest checkpoint size served so far.
    checkpoint_size: u64,
}

impl Truth {
    fn record(&mut self, r: &Value) {
        let seq = r["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {r}"));
        assert_eq!(seq, self.receipts.len() as u64, "receipts arrive in order");
        let lh =
            from_hex(r["leaf_hash"].as_str().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        self.leaves.push(lh);
        self.receipts.push(r.clone());
    }

    fn root(&self, size: u64) -> Hash {
        ledger::merkle::MemoryTree::<Sha3_256>::new(self.leaves[..size as usize].to_vec())
            .root(size)
            .unwrap_or_else(|| panic!("no root at {size}"))
    }
}

struct Stack {
    db: TestDb,
    redis: RedisServer,
    secret_file: PathBuf,
    vkey_file: PathBuf,
    verifier: NoteVerifier,
    writer: String,
    reader: String,
}

async fn start_portal(db: &TestDb, redis_url: &str, secret: &Path, vkey: &Path) -> RunningService {
    let mut cfg = service_config(&db.url(DbRole::Portal));
    cfg.redis_url = Some(redis_url.to_string());
    cfg.cache_secret_file = Some(secret.to_path_buf());
    portal::start_with(
        cfg,
        PortalArgs {
            guardian_vkey_file: Some(vkey.to_path_buf()),
            auth_cache_secs: 0,
            ..PortalArgs::default()
        },
        Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("portal: {e}"))
}

async fn redis_conn(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("{e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn scan(c: &mut MultiplexedConnection, pattern: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await
            .unwrap_or_else(|e| panic!("SCAN: {e}"));
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

async fn raw_get(c: &mut MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<Vec<u8>>>(c)
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e}"))
}

/// Writes `value` at `key` with no expiry, as an attacker would.
async fn raw_set(c: &mut MultiplexedConnection, key: &str, value: &[u8]) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(c)
        .await
        .unwrap_or_else(|e| panic!("SET {key}: {e}"));
}

/// `vaultmesh_cache_lookups_total{kind,result}` as the portal's `/metrics` reports it.
async fn lookups(metrics: SocketAddr, kind: &str, result: &str) -> u64 {
    let (s, text) = http(metrics, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s, 200);
    text.lines()
        .filter(|l| l.starts_with("vaultmesh_cache_lookups_total{"))
        .filter(|l| l.contains(&format!("kind=\"{kind}\"")))
        .filter(|l| l.contains(&format!("result=\"{result}\"")))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .map(|v| v as u64)
        .sum()
}

fn leaf_of(r: &Value) -> Vec<u8> {
    ledger::jcs::to_vec(&json!({
        "scroll": r["scroll"], "seq": r["seq"], "type": r["type"], "payload": r["payload"],
        "submitted_at": r["submitted_at"], "submitter": r["submitter"]
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The request hash the portal keeps for an idempotent submission: H(type ‖ 0 ‖ JCS(payload)).
fn request_hash(body: &str) -> Hash {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
    let mut material = v["type"].as_str().unwrap_or_default().as_bytes().to_vec();
    material.push(0);
    material.extend(ledger::jcs::to_vec(&v["payload"]).unwrap_or_else(|e| panic!("{e}")));
    Sha3Hasher::plain(&material)
}

fn body(tag: &str) -> String {
    format!(r#"{{"type":"drill_completed","payload":{{"drill":"{tag}","ok":true}}}}"#)
}

async fn post(addr: SocketAddr, token: &str, idem: &str, body: &str) -> (u16, Value) {
    call(
        addr,
        "POST",
        "/v1/scrolls/drills/receipts",
        Some(token),
        &[("idempotency-key", idem)],
        body,
    )
    .await
}

/// The key kind: the family name right after the prefix.
fn kind(rest: &str) -> &str {
    rest.split(':').next().unwrap_or(rest)
}

/// A key's prefix, found from a key of a known name.
fn prefix_of(keys: &BTreeSet<String>, known: &str) -> String {
    let with: Vec<&String> = keys.iter().filter(|k| k.ends_with(known)).collect();
    assert_eq!(with.len(), 1, "one {known} in {keys:?}");
    with[0][..with[0].len() - known.len()].to_string()
}

/// Well-formed, self-consistent false content for a key of family `kind` (see
/// `portal/src/read_cache.rs` and `ledger/src/store/tree.rs` for what each family holds).
fn forge(rest: &str, truth: &Truth, template_checkpoint: &Value, round: usize) -> Vec<u8> {
    match kind(rest) {
        "receipt" => {
            let seq: u64 = rest
                .rsplit(':')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut r = truth.receipts[seq as usize].clone();
            r["payload"] = json!({"forged": true, "round": round});
            let leaf = leaf_of(&r);
            let mut entry = ledger::receipt::leaf_hash(&leaf).to_vec();
            entry.extend_from_slice(&leaf);
            entry
        }
        "idem" => {
            let (_, body, seq) = truth
                .idempotent
                .get(rest)
                .unwrap_or_else(|| panic!("unknown idempotency entry {rest}"));
            // Another receipt by the same writer: the most convincing lie.
            let other = (seq + 1 + round as u64) % FILL;
            let mut entry = request_hash(body).to_vec();
            entry.extend_from_slice(&other.to_be_bytes());
            entry
        }
        "checkpoint" => {
            let evil = NoteSigner::from_seed("vaultmesh-test/guardian", [66u8; 32])
                .unwrap_or_else(|e| panic!("{e}"));
            let size = truth.checkpoint_size + 100;
            let root = [0x42u8; 32];
            let note = Checkpoint {
                origin: ORIGIN.into(),
                size,
                root,
            }
            .sign(&evil)
            .unwrap_or_else(|e| panic!("{e}"));
            let mut cp = template_checkpoint.clone();
            cp["tree_size"] = json!(size);
            cp["root"] = match &template_checkpoint["root"] {
                Value::String(_) => json!(to_hex(&root)),
                _ => json!(root.to_vec()),
            };
            cp["note"] = json!(note);
            serde_json::to_vec(&cp).unwrap_or_default()
        }
        "tile" => (0u8..16)
            .flat_map(|i| Sha3Hasher::leaf(&[i, round as u8]))
            .collect(),
        _ => b"forged".to_vec(),
    }
}

/// Starts a portal whose cache secret is `secret`, on a database of its own, with a copy of
/// `writer`'s API key (same id, same token): a scout that shows which Redis key an
/// idempotent submission by that key is remembered under, and what that entry looks like.
async fn scout(
    stack: &Stack,
    writer_id: &str,
    submissions: &[(String, String)],
) -> (String, Vec<(String, Vec<u8>)>) {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let from = stack
        .db
        .owner_client()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let row = from
        .query_one(
            "SELECT key_hash, role, scrolls, label FROM api_keys WHERE id = $1",
            &[&writer_id],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let to = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    to.execute(
        "INSERT INTO api_keys (id, key_hash, role, scrolls, label) VALUES ($1, $2, $3, $4, $5)",
        &[
            &writer_id,
            &row.get::<_, Vec<u8>>(0),
            &row.get::<_, String>(1),
            &row.get::<_, Option<Vec<String>>>(2),
            &row.get::<_, String>(3),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let p = start_portal(
        &db,
        &stack.redis.url(),
        &stack.secret_file,
        &stack.vkey_file,
    )
    .await;
    let mut r = redis_conn(&stack.redis.url()).await;
    let mut seen = scan(&mut r, "*").await;
    let mut found = Vec::new();
    for (idem, b) in submissions {
        let (s, got) = post(p.api_addr, &stack.writer, idem, b).await;
        assert_eq!(s, 201, "scout: {got}");
        let now = scan(&mut r, "*").await;
        let new: Vec<String> = now
            .difference(&seen)
            .filter(|k| k.contains(":idem:"))
            .cloned()
            .collect();
        assert_eq!(
            new.len(),
            1,
            "one idempotency entry per submission: {new:?}"
        );
        let entry = raw_get(&mut r, &new[0]).await.unwrap_or_default();
        found.push((new[0].clone(), entry));
        seen = now;
    }
    p.stop().await;
    (prefix_of(&seen, "receipt:drills:0"), found)
}

/// Waits until the portal serves a checkpoint of at least `size` leaves.
async fn wait_checkpoint(addr: SocketAddr, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, j) = call(
            addr,
            "GET",
            "/v1/scrolls/drills/checkpoint",
            None,
            &[("accept", "application/json")],
            "",
        )
        .await;
        if s == 200 && j["tree_size"].as_u64() >= Some(size) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size}: {s} {j}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a client sees: every receipt, the checkpoint (verified under the guardian's key and
/// against the true tree), and inclusion and consistency proofs for every position at the
/// checkpoint's size (verified against the true roots). Returns the answers, to compare.
async fn client_view(addr: SocketAddr, stack: &Stack, truth: &mut Truth) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    for (seq, want) in truth.receipts.iter().enumerate() {
        let path = format!("/v1/scrolls/drills/receipts/{seq}");
        let (s, got) = call(addr, "GET", &path, Some(&stack.reader), &[], "").await;
        assert_eq!((s, &got), (200, want), "{path} serves the Postgres truth");
        seen.push((path, got));
    }
    let (s, note) = http(addr, "GET", "/v1/scrolls/drills/checkpoint")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s, 200, "{note}");
    let cp = Checkpoint::verify(&note, &stack.verifier, Some(ORIGIN))
        .unwrap_or_else(|e| panic!("the served checkpoint must verify: {e}: {note}"));
    assert!(
        cp.size >= truth.checkpoint_size,
        "checkpoints never go back"
    );
    assert!(cp.size as usize <= truth.leaves.len(), "{} leaves", cp.size);
    assert_eq!(
        cp.root,
        truth.root(cp.size),
        "the signed root is the true root"
    );
    truth.checkpoint_size = cp.size;
    let (s, j) = call(
        addr,
        "GET",
        "/v1/scrolls/drills/checkpoint",
        None,
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(s, 200);
    let jcp = Checkpoint::verify(
        j["note"].as_str().unwrap_or_default(),
        &stack.verifier,
        Some(ORIGIN),
    )
    .unwrap_or_else(|e| panic!("{e}: {j}"));
    assert_eq!(j["tree_size"].as_u64(), Some(jcp.size));
    assert_eq!(j["root"].as_str(), Some(to_hex(&jcp.root).as_str()));
    assert_eq!(jcp.root, truth.root(jcp.size));
    seen.push(("checkpoint".into(), json!(note)));
    let size = cp.size;
    let root = truth.root(size);
    for seq in 0..size {
        let path = format!("/v1/scrolls/drills/proof/inclusion?seq={seq}&tree_size={size}");
        let (s, v) = call(addr, "GET", &path, None, &[], "").await;
        assert_eq!(s, 200, "{path}: {v}");
        let proof: InclusionProof =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
        verify_inclusion::<Sha3_256>(&truth.leaves[seq as usize], seq, size, &proof.path, &root)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        seen.push((path, v));
    }
    for from in 1..size {
        let path = format!("/v1/scrolls/drills/proof/consistency?from={from}&to={size}");
        let (s, v) = call(addr, "GET", &path, None, &[], "").await;
        assert_eq!(s, 200, "{path}: {v}");
        let proof: ConsistencyProof =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
        verify_consistency::<Sha3_256>(from, size, &proof.path, &truth.root(from), &root)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        seen.push((path, v));
    }
    seen
}

/// Every idempotent submission made so far, replayed: 200 and the original receipt.
async fn replay_all(addr: SocketAddr, stack: &Stack, truth: &Truth) {
    for (idem, b, seq) in truth.idempotent.values() {
        let (s, got) = post(addr, &stack.writer, idem, b).await;
        assert_eq!(
            (s, &got),
            (200, &truth.receipts[*seq as usize]),
            "replaying {idem} returns the original"
        );
    }
}

async fn receipt_count(db: &TestDb) -> i64 {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    c.query_one("SELECT count(*) FROM receipts r JOIN scrolls s ON s.id = r.scroll_id WHERE s.name = 'drills'", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

/// A value of each kind, to rewrite an entry with another key's genuine one.
fn another_genuine<'a>(
    genuine: &'a BTreeMap<String, Vec<u8>>,
    key: &str,
    prefix: &str,
) -> &'a Vec<u8> {
    let k = kind(&key[prefix.len()..]);
    genuine
        .iter()
        .filter(|(other, _)| other.as_str() != key)
        .find(|(other, _)| kind(&other[prefix.len()..]) == k)
        .or_else(|| genuine.iter().find(|(other, _)| other.as_str() != key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no other genuine entry"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_redis_changes_nothing_a_client_sees() {
    let dir = scratch_dir("cache-poisoning");
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let redis = RedisServer::start(0).await;
    let secret_file = dir.join("cache.secret");
    let unique = format!("{}-{:?}", std::process::id(), Instant::now());
    std::fs::write(
        &secret_file,
        format!("{}\n", to_hex(&Sha3Hasher::plain(unique.as_bytes()))),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The referee's copy: used only to tell genuine entries apart, never to forge.
    let referee = CacheSecret::from_file(&secret_file).unwrap_or_else(|e| panic!("{e}"));
    let key_file = dir.join("guardian.key");
    let signer = NoteSigner::generate_to_file("vaultmesh-test/guardian", &key_file)
        .unwrap_or_else(|e| panic!("{e}"));
    let vkey_file = dir.join("guardian.vkey");
    std::fs::write(&vkey_file, signer.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
    let mut gcfg = service_config(&db.url(DbRole::Guardian));
    gcfg.redis_url = None;
    let guardian = guardian::start_with(
        gcfg,
        guardian::GuardianArgs {
            signing_key_file: key_file,
            journal_path: dir.join("proofchain.jsonl"),
            integrate_interval_ms: 50,
            epoch_interval_secs: 3600,
            ..guardian::GuardianArgs::default()
        },
        Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("guardian: {e}"));
    let writer = db
        .store
        .create_api_key(Role::Writer, None, "writer")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reader = db
        .store
        .create_api_key(Role::Reader, None, "reader")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    let stack = Stack {
        db,
        redis,
        secret_file,
        vkey_file,
        verifier: signer.verifier(),
        writer: writer.token.clone(),
        reader,
    };
    let mut r = redis_conn(&stack.redis.url()).await;

    // A scout with the same secret and the same API key, on another database, shows where
    // each idempotency key of a later round is remembered and gives a genuine entry of it.
    let planned: Vec<(String, String)> = (0..VARIANTS.len())
        .map(|v| (format!("planted-{v}"), body(&format!("planted-{v}"))))
        .collect();
    let (scout_prefix, scout_entries) = scout(&stack, &writer.key.id, &planned).await;
    let scout_keys = scan(&mut r, "*").await;

    // Traffic that fills every key family: an idempotent POST, receipt reads, checkpoint
    // reads, inclusion and consistency proofs.
    let mut truth = Truth::default();
    let p1 = start_portal(
        &stack.db,
        &stack.redis.url(),
        &stack.secret_file,
        &stack.vkey_file,
    )
    .await;
    let fill_body = body("fill");
    let before = scan(&mut r, "*").await;
    let (s, first) = post(p1.api_addr, &stack.writer, "fill-0", &fill_body).await;
    assert_eq!(s, 201, "{first}");
    truth.record(&first);
    let idem_keys: Vec<String> = scan(&mut r, "*")
        .await
        .difference(&before)
        .filter(|k| k.contains(":idem:"))
        .cloned()
        .collect();
    assert_eq!(idem_keys.len(), 1, "{idem_keys:?}");
    let items = (1..FILL)
        .map(|i| format!(r#"{{"type":"t","payload":{{"i":{i}}}}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let (s, batch) = call(
        p1.api_addr,
        "POST",
        "/v1/scrolls/drills/receipts/batch",
        Some(&stack.writer),
        &[],
        &format!(r#"{{"receipts":[{items}]}}"#),
    )
    .await;
    assert_eq!(s, 201, "{batch}");
    for seq in 1..FILL {
        let (s, got) = call(
            p1.api_addr,
            "GET",
            &format!("/v1/scrolls/drills/receipts/{seq}"),
            Some(&stack.reader),
            &[],
            "",
        )
        .await;
        assert_eq!(s, 200, "{got}");
        assert_eq!(
            got["leaf_hash"].as_str(),
            Some(to_hex(&ledger::receipt::leaf_hash(&leaf_of(&got))).as_str())
        );
        truth.record(&got);
    }
    wait_checkpoint(p1.api_addr, FILL).await;
    let target_prefix = {
        let keys: BTreeSet<String> = scan(&mut r, "*")
            .await
            .difference(&scout_keys)
            .cloned()
            .collect();
        prefix_of(&keys, "receipt:drills:0")
    };
    assert_ne!(target_prefix, scout_prefix);
    let fill_rest = idem_keys[0][target_prefix.len()..].to_string();
    truth
        .idempotent
        .insert(fill_rest, ("fill-0".into(), fill_body.clone(), 0));
    client_view(p1.api_addr, &stack, &mut truth).await;
    // The checkpoint entry lives one second: take it while it is there.
    let checkpoint_key = format!("{target_prefix}checkpoint:drills");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (old_checkpoint_entry, old_checkpoint_at) = loop {
        let _ = http(p1.api_addr, "GET", "/v1/scrolls/drills/checkpoint").await;
        if let Some(e) = raw_get(&mut r, &checkpoint_key).await {
            break (e, Instant::now());
        }
        assert!(Instant::now() < deadline, "the checkpoint is never cached");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let template_checkpoint: Value = serde_json::from_slice(&old_checkpoint_entry[SEAL_LEN..])
        .unwrap_or_else(|e| panic!("a cached checkpoint is a StoredCheckpoint: {e}"));
    // `/v1/status` names the secret's file, never its content.
    let (s, status) = http(p1.api_addr, "GET", "/v1/status")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s, 200);
    let secret_text = std::fs::read_to_string(&stack.secret_file).unwrap_or_default();
    assert!(!status.contains(secret_text.trim()), "{status}");
    let status: Value = serde_json::from_str(&status).unwrap_or_default();
    assert_eq!(
        status["config"]["cache_secret_file"].as_str(),
        stack.secret_file.to_str()
    );
    let p1_rejected = lookups(p1.metrics_addr, "receipt", "rejected").await;
    assert_eq!(
        p1_rejected, 0,
        "the portal's own entries are never rejected"
    );
    p1.stop().await;

    let written = scan(&mut r, &format!("{target_prefix}*")).await;
    let kinds: BTreeSet<String> = written
        .iter()
        .map(|k| kind(&k[target_prefix.len()..]).to_string())
        .collect();
    for family in ["receipt", "idem", "checkpoint", "tile"] {
        assert!(kinds.contains(family), "no {family} entry in {written:?}");
    }

    // Another process with the same secret (a restart, or a replica) uses those entries.
    let shared = start_portal(
        &stack.db,
        &stack.redis.url(),
        &stack.secret_file,
        &stack.vkey_file,
    )
    .await;
    client_view(shared.api_addr, &stack, &mut truth).await;
    assert!(lookups(shared.metrics_addr, "receipt", "hit").await >= FILL);
    assert!(lookups(shared.metrics_addr, "tile", "hit").await > 0);
    for k in &kinds {
        assert_eq!(lookups(shared.metrics_addr, k, "rejected").await, 0, "{k}");
    }
    shared.stop().await;

    let attacker = CacheSecret::random().unwrap_or_else(|e| panic!("{e}"));
    let mut genuine: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut last: Option<RunningService> = None;
    for (round, variant) in VARIANTS.iter().enumerate() {
        // Every key the portal has written, plus one it will look up for a submission it
        // has never seen (planted under the name the scout revealed).
        let now = ledger::cache::seal::now_ms();
        let mut keys = scan(&mut r, &format!("{target_prefix}*")).await;
        for k in &keys {
            if let Some(bytes) = raw_get(&mut r, k).await {
                if matches!(referee.open(k, bytes.clone(), now), Opened::Value(_)) {
                    genuine.insert(k.clone(), bytes);
                }
            }
        }
        let (scout_key, scout_entry) = &scout_entries[round];
        let planted_rest = scout_key[scout_prefix.len()..].to_string();
        let planted = format!("{target_prefix}{planted_rest}");
        let (planted_idem, planted_body) = &planned[round];
        let planted_seq = truth.receipts.len() as u64;
        truth.idempotent.insert(
            planted_rest.clone(),
            (planted_idem.clone(), planted_body.clone(), planted_seq),
        );
        keys.insert(planted.clone());
        for k in &keys {
            let rest = &k[target_prefix.len()..];
            let own = if *k == planted {
                scout_entry
            } else {
                genuine.get(k).unwrap_or(&old_checkpoint_entry)
            };
            let false_content = forge(rest, &truth, &template_checkpoint, round);
            let bytes = match round {
                0 => false_content,
                1 => attacker.seal(k, &false_content, Duration::from_secs(3600)),
                2 => [&own[..SEAL_LEN], &false_content[..]].concat(),
                3 if *k == planted => scout_entry.clone(),
                3 => another_genuine(&genuine, k, &target_prefix).clone(),
                _ => own[..own.len() - 1].to_vec(),
            };
            raw_set(&mut r, k, &bytes).await;
        }
        // A fresh process (empty tile memo, no checkpoint memo) over the poisoned cache.
        let p = start_portal(
            &stack.db,
            &stack.redis.url(),
            &stack.secret_file,
            &stack.vkey_file,
        )
        .await;
        let count = receipt_count(&stack.db).await;
        truth.idempotent.remove(&planted_rest);
        replay_all(p.api_addr, &stack, &truth).await;
        let (s, created) = post(p.api_addr, &stack.writer, planted_idem, planted_body).await;
        assert_eq!(
            s, 201,
            "{variant}: a planted idempotency entry is not a replay: {created}"
        );
        assert_eq!(created["seq"].as_u64(), Some(planted_seq));
        assert_eq!(
            receipt_count(&stack.db).await,
            count + 1,
            "{variant}: it was written"
        );
        truth.record(&created);
        truth.idempotent.insert(
            planted_rest,
            (planted_idem.clone(), planted_body.clone(), planted_seq),
        );
        client_view(p.api_addr, &stack, &mut truth).await;
        for k in &kinds {
            assert!(
                lookups(p.metrics_addr, k, "rejected").await > 0,
                "{variant}: no {k} entry was rejected"
            );
        }
        if let Some(previous) = last.replace(p) {
            previous.stop().await;
        }
    }

    // FLUSHALL: nothing a client sees changes.
    let p = last.unwrap_or_else(|| panic!("no portal"));
    wait_checkpoint(p.api_addr, truth.receipts.len() as u64).await;
    let before = client_view(p.api_addr, &stack, &mut truth).await;
    let mut rejected_before = 0;
    for k in &kinds {
        rejected_before += lookups(p.metrics_addr, k, "rejected").await;
    }
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut r)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(scan(&mut r, "*").await.is_empty());
    let after = client_view(p.api_addr, &stack, &mut truth).await;
    assert_eq!(before, after, "FLUSHALL changed what a client sees");
    replay_all(p.api_addr, &stack, &truth).await;
    let mut rejected_after = 0;
    for k in &kinds {
        rejected_after += lookups(p.metrics_addr, k, "rejected").await;
    }
    assert_eq!(
        rejected_after, rejected_before,
        "an empty cache rejects nothing"
    );
    p.stop().await;

    // An old genuine checkpoint entry replayed long after it expired is not served: the
    // latest checkpoint is.
    raw_set(&mut r, &checkpoint_key, &old_checkpoint_entry).await;
    while old_checkpoint_at.elapsed() < Duration::from_millis(6_500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = start_portal(
        &stack.db,
        &stack.redis.url(),
        &stack.secret_file,
        &stack.vkey_file,
    )
    .await;
    let (s, j) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/checkpoint",
        None,
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["tree_size"].as_u64(), Some(truth.receipts.len() as u64));
    assert_eq!(lookups(p.metrics_addr, "checkpoint", "rejected").await, 1);
    p.stop().await;
    guardian.stop().await;
}
