//! Witness throughput: `add-checkpoint` requests per second one running witness sustains
//! (signature check, consistency proof check, persist under the per-origin lock, cosign),
//! against the same run's baseline of what each request cannot avoid — one Ed25519
//! verification of the checkpoint note plus one Postgres round trip — done by as many tasks.
//! Each client is one remote log (its own origin) that grows by a few leaves per request and
//! sends the consistency proof from the size the witness cosigned last.

use super::connection::Conn;
use super::{median, quantile};
use ledger::add_checkpoint::AddCheckpoint;
use ledger::checkpoint::Checkpoint;
use ledger::hash::Hash;
use ledger::merkle::MemoryTree;
use ledger::note::NoteSigner;
use ledger::store::{PoolOptions, Store};
use sha3::{Digest, Sha3_256};
use std::time::{Duration, Instant};

/// Options of `bench witness`.
#[derive(clap::Args)]
pub struct Args {
    /// The witness's guardian address (host:port).
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: String,
    /// The remote mesh's checkpoint signing key (the witness must know its vkey).
    #[arg(long)]
    signing_key: std::path::PathBuf,
    /// The remote mesh id the witness is configured with.
    #[arg(long, default_value = "bench-remote")]
    mesh: String,
    /// Postgres URL for the baseline's round trips.
    #[arg(long, env = "VAULTMESH_DATABASE_URL", default_value = ledger::config::DEFAULT_OWNER_DATABASE_URL)]
    database_url: String,
    /// Concurrent clients (each its own log).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Leaves each log grows by per request.
    #[arg(long, default_value_t = 4)]
    step: u64,
}

/// The leaves every client log is made of (one tree; each client has its own origin).
fn tree(leaves: u64) -> MemoryTree<Sha3_256> {
    MemoryTree::new(
        (0..leaves)
            .map(|i| -> Hash { Sha3_256::digest(i.to_be_bytes()).into() })
            .collect(),
    )
}

/// Runs both measurements and prints one JSON line.
pub async fn run(a: &Args) -> anyhow::Result<()> {
    let signer = NoteSigner::load(&a.signing_key)?;
    // Enough leaves for the longest run at ~3,000 requests/s per client.
    let leaves = a.step * 4_000 * a.seconds + 1;
    let tree = std::sync::Arc::new(tree(leaves));
    let signer = std::sync::Arc::new(signer);
    let run_id = std::process::id();
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (tree, signer, addr) = (tree.clone(), signer.clone(), a.addr.clone());
        let origin = format!("{}/bench-{run_id}-{c}", a.mesh);
        let step = a.step;
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let head = format!(
                "POST /v1/witness/add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n"
            );
            let (mut old, mut lat, mut refused) = (0u64, Vec::new(), 0u64);
            while Instant::now() < end && old + step < tree.size() {
                let size = old + step;
                let root = tree.root(size).unwrap_or_default();
                let note = Checkpoint { origin: origin.clone(), size, root }
                    .sign(&signer)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let proof = if old == 0 { Vec::new() } else { tree.consistency(old, size).unwrap_or_default() };
                let body = AddCheckpoint::encode(old, &proof, &note);
                let t = Instant::now();
                let status = conn.request(&head, body.as_bytes()).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                if status == 200 {
                    old = size;
                } else {
                    refused += 1;
                }
            }
            Ok::<_, std::io::Error>((lat, refused))
        }));
    }
    let (mut lat, mut refused) = (Vec::new(), 0);
    for t in tasks {
        let (l, r) = t.await??;
        lat.extend(l);
        refused += r;
    }
    let witness_rps = lat.len() as f64 / a.seconds as f64;

    // Baseline: one note verification and one Postgres round trip per operation.
    let store = Store::connect(
        &a.database_url,
        &PoolOptions {
            max_size: a.clients,
            ..PoolOptions::default()
        },
    )?;
    let verifier = signer.verifier();
    let note = Checkpoint {
        origin: format!("{}/baseline", a.mesh),
        size: 1,
        root: tree.root(1).unwrap_or_default(),
    }
    .sign(&signer)?;
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for _ in 0..a.clients {
        let (store, verifier, note) = (store.clone(), verifier.clone(), note.clone());
        tasks.push(tokio::spawn(async move {
            let client = store
                .pool()
                .get()
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut n = 0u64;
            while Instant::now() < end {
                verifier
                    .verify(&note)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                n += 1;
            }
            Ok::<_, std::io::Error>(n)
        }));
    }
    let mut ops = 0u64;
    for t in tasks {
        ops += t.await??;
    }
    let baseline = ops as f64 / a.seconds as f64;
    println!(
        "{}",
        serde_json::json!({
            "bench": "witness", "clients": a.clients, "seconds": a.seconds, "step": a.step,
            "requests_per_s": witness_rps.round(), "refused": refused,
            "p50_ms": quantile(lat.clone(), 0.5), "p99_ms": quantile(lat.clone(), 0.99),
            "baseline_ops_per_s": baseline.round(),
            "ratio": if baseline > 0.0 { (witness_rps / baseline * 1000.0).round() / 1000.0 } else { 0.0 },
            "median_ms": median(lat),
        })
    );
    Ok(())
}
