//! Leaf hashing and tile building vs raw SHA3-256 on the same bytes.

use super::{median, sample_draft};
use ledger::hash::{Hash, Sha3Hasher};
use ledger::merkle::stored_tiles::plan_append;
use ledger::merkle::MemoryTree;
use ledger::receipt::Receipt;
use sha3::{Digest, Sha3_256};
use std::collections::HashMap;
use std::time::Instant;

/// Options of `bench hashing`.
#[derive(clap::Args)]
pub struct Args {
    /// Number of leaves.
    #[arg(long, default_value_t = 1_000_000)]
    leaves: u64,
    /// Approximate leaf size in bytes.
    #[arg(long, default_value_t = 300)]
    leaf_bytes: usize,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Runs the benchmark.
pub fn run(a: &Args) -> anyhow::Result<()> {
    let at = chrono::Utc::now();
    let leaves: Vec<Vec<u8>> = (0..a.leaves)
        .map(|i| {
            Receipt::new("drills", i, sample_draft(i, a.leaf_bytes), at, "key_bench").leaf_bytes()
        })
        .collect::<Result<_, _>>()?;
    let mean_len = leaves.iter().map(Vec::len).sum::<usize>() as f64 / leaves.len().max(1) as f64;
    let n = leaves.len() as f64;
    let (mut raw, mut tiles, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.runs {
        let t = Instant::now();
        let mut sink = 0u8;
        for l in &leaves {
            sink ^= Sha3_256::digest(l)[0];
        }
        raw.push(n / t.elapsed().as_secs_f64());
        std::hint::black_box(sink);

        let t = Instant::now();
        let hashes: Vec<Hash> = leaves.iter().map(|l| Sha3Hasher::leaf(l)).collect();
        let plan = plan_append(0, hashes, &HashMap::new())?;
        std::hint::black_box(plan.len());
        tiles.push(n / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let hashes: Vec<Hash> = leaves.iter().map(|l| Sha3Hasher::leaf(l)).collect();
        let tree = MemoryTree::<Sha3_256>::new(hashes);
        std::hint::black_box(tree.root(tree.size()));
        memory.push(n / t.elapsed().as_secs_f64());
    }
    let (raw, tiles, memory) = (median(raw), median(tiles), median(memory));
    println!(
        "{}",
        serde_json::json!({
            "bench": "hashing", "leaves": a.leaves, "mean_leaf_bytes": mean_len.round(), "runs": a.runs,
            "raw_sha3_leaves_per_s": raw.round(),
            "leaf_hash_and_tiles_leaves_per_s": tiles.round(),
            "leaf_hash_and_memory_tree_leaves_per_s": memory.round(),
            "ratio_tiles_vs_raw": (tiles / raw * 1000.0).round() / 1000.0,
            "ratio_memory_vs_raw": (memory / raw * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}
