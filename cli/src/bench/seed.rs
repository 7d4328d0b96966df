//! Fills a scroll with receipts, integrates them and signs a checkpoint over all of them,
//! so that read and proof benchmarks have a large, provable scroll to query.

use super::sample_draft;
use ledger::checkpoint::Checkpoint;
use ledger::note::NoteSigner;
use ledger::storage::{CheckpointStore, ReceiptLog, ScrollRef, TileStore};
use ledger::store::{NewReceipt, PoolOptions, Store, StoreError};
use std::path::PathBuf;
use std::time::Instant;

/// Options of `bench seed`.
#[derive(clap::Args)]
pub struct Args {
    /// Postgres URL (schema owner).
    #[arg(long, env = "VAULTMESH_DATABASE_URL", default_value = ledger::config::DEFAULT_OWNER_DATABASE_URL)]
    database_url: String,
    /// Scroll to fill (created if absent).
    #[arg(long, default_value = "bench-proofs")]
    scroll: String,
    /// Receipts the scroll should hold at the end.
    #[arg(long, default_value_t = 1_000_000)]
    receipts: u64,
    /// Guardian signing key file (signed-note skey) for the checkpoint.
    #[arg(long, value_name = "FILE")]
    signing_key: PathBuf,
    /// Mesh id: the first part of the checkpoint origin.
    #[arg(long, env = "VAULTMESH_MESH_ID", default_value = "vaultmesh-dev")]
    mesh_id: String,
}

/// Runs the fill and prints one JSON line.
pub async fn run(a: &Args) -> anyhow::Result<()> {
    let signer = NoteSigner::load(&a.signing_key)?;
    let store = Store::connect(
        &a.database_url,
        &PoolOptions {
            max_size: 4,
            ..PoolOptions::default()
        },
    )?;
    let scroll = match store.scroll(&a.scroll).await {
        Ok(s) => s,
        Err(StoreError::UnknownScroll(_)) => store.create_scroll(&a.scroll).await?,
        Err(e) => return Err(e.into()),
    };
    let started = Instant::now();
    let mut size = scroll.size;
    let mut writers = Vec::new();
    let todo = a.receipts.saturating_sub(size);
    for w in 0..3u64 {
        let (store, name) = (store.clone(), a.scroll.clone());
        let first = size + w * todo / 3;
        let share = size + (w + 1) * todo / 3 - first;
        writers.push(tokio::spawn(async move {
            let mut done = 0;
            while done < share {
                let n = (share - done).min(5_000);
                let items = (0..n)
                    .map(|k| NewReceipt {
                        draft: sample_draft(first + done + k, 300),
                        submitter: "bench".into(),
                        idempotency_key: None,
                        request_hash: None,
                    })
                    .collect();
                let admitted = super::append::bench_gate_admit(&name, items)?;
                store.append_receipts(admitted, true).await?;
                done += n;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let appended = started.elapsed().as_secs_f64();
    loop {
        let (from, to) = store.integrate(scroll.id, 50_000).await?;
        if to == from {
            break;
        }
        size = to;
    }
    let at = ScrollRef {
        name: &a.scroll,
        id: scroll.id,
    };
    let root = store.tree_root(at, size).await?;
    let origin = Checkpoint::origin_for(&a.mesh_id, &a.scroll);
    let note = Checkpoint { origin, size, root }.sign(&signer)?;
    store
        .insert_checkpoint(scroll.id, size, &root, &note)
        .await?;
    println!(
        "{}",
        serde_json::json!({
            "bench": "seed", "scroll": a.scroll, "tree_size": size,
            "append_seconds": appended, "total_seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
