//! Roots and proofs read from stored tiles of a large tree.

use super::{median, quantile};
use ledger::hash::{Hash, Sha3Hasher};
use ledger::rng::Rng;
use ledger::storage::{ScrollRef, TileStore};
use ledger::store::{PoolOptions, Store};
use std::time::Instant;

/// Options of `bench proofs`.
#[derive(clap::Args)]
pub struct Args {
    /// Postgres URL (schema owner).
    #[arg(long, env = "VAULTMESH_DATABASE_URL", default_value = ledger::config::DEFAULT_OWNER_DATABASE_URL)]
    database_url: String,
    /// Tree size to build.
    #[arg(long, default_value_t = 1_000_000)]
    leaves: u64,
    /// Queries per kind.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
}

/// Runs the benchmark.
pub async fn run(a: &Args) -> anyhow::Result<()> {
    let store = Store::connect(&a.database_url, &PoolOptions::default())?;
    let name = format!("bench-proofs-{}", chrono::Utc::now().timestamp_micros());
    let scroll = store.create_scroll(&name).await?;
    let build = Instant::now();
    let mut size = 0u64;
    while size < a.leaves {
        let chunk: Vec<Hash> = (size..(size + 65_536).min(a.leaves))
            .map(|i| Sha3Hasher::leaf(&i.to_be_bytes()))
            .collect();
        size = store.append_tree(scroll.id, size, chunk).await?;
    }
    let build_rate = a.leaves as f64 / build.elapsed().as_secs_f64();
    let at = ScrollRef {
        name: &name,
        id: scroll.id,
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut root_us, mut incl_us, mut cons_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.samples {
        let n = a.leaves - rng.below(a.leaves / 2);
        let t = Instant::now();
        store.tree_root(at, n).await?;
        root_us.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        store.inclusion_proof(at, rng.below(n), n).await?;
        incl_us.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        store.consistency_proof(at, 1 + rng.below(n - 1), n).await?;
        cons_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let pg_round_trip = {
        let mut v = Vec::new();
        for _ in 0..a.samples {
            let t = Instant::now();
            store.ping().await?;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        median(v)
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": "proofs", "leaves": a.leaves, "samples": a.samples,
            "tree_build_leaves_per_s": build_rate.round(),
            "select1_round_trip_us_p50": pg_round_trip.round(),
            "root_us_p50": median(root_us.clone()).round(), "root_us_p99": quantile(root_us, 0.99).round(),
            "inclusion_us_p50": median(incl_us.clone()).round(), "inclusion_us_p99": quantile(incl_us, 0.99).round(),
            "consistency_us_p50": median(cons_us.clone()).round(), "consistency_us_p99": quantile(cons_us, 0.99).round(),
        })
    );
    Ok(())
}
