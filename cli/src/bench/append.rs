//! Store appends in rows/s: concurrent writers, batched, gap-free.

use super::{median, sample_draft};
use ledger::storage::ReceiptLog;
use ledger::store::{NewReceipt, PoolOptions, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Options of `bench append`.
#[derive(clap::Args)]
pub struct Args {
    /// Postgres URL (schema owner).
    #[arg(long, env = "VAULTMESH_DATABASE_URL", default_value = ledger::config::DEFAULT_OWNER_DATABASE_URL)]
    database_url: String,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Receipts per append transaction.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Receipts per run.
    #[arg(long, default_value_t = 200_000)]
    total: u64,
    /// Scrolls written round-robin (created fresh per run).
    #[arg(long, default_value_t = 1)]
    scrolls: usize,
    /// Approximate leaf size in bytes.
    #[arg(long, default_value_t = 300)]
    leaf_bytes: usize,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Runs the benchmark.
pub async fn run(a: &Args) -> anyhow::Result<()> {
    let store = Store::connect(
        &a.database_url,
        &PoolOptions {
            max_size: a.writers + 1,
            ..PoolOptions::default()
        },
    )?;
    let stamp = chrono::Utc::now().timestamp_micros();
    let mut rates = Vec::new();
    for run in 0..a.runs {
        let mut names = Vec::new();
        for s in 0..a.scrolls {
            let name = format!("bench-{stamp}-{run}-{s}");
            store.create_scroll(&name).await?;
            names.push(name);
        }
        let names = Arc::new(names);
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..a.writers {
            let (store, names, next) = (store.clone(), names.clone(), next.clone());
            let (batch, total, bytes) = (a.batch as u64, a.total, a.leaf_bytes);
            tasks.push(tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= total {
                        return Ok::<_, ledger::store::StoreError>(());
                    }
                    let items = (first..(first + batch).min(total))
                        .map(|i| NewReceipt {
                            draft: sample_draft(i, bytes),
                            submitter: "key_bench".into(),
                            idempotency_key: None,
                            request_hash: None,
                        })
                        .collect();
                    let scroll = &names[(w + (first / batch) as usize) % names.len()];
                    let admitted = bench_gate_admit(scroll, items)?;
                    store.append_receipts(admitted, true).await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        rates.push(a.total as f64 / start.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "append", "writers": a.writers, "batch": a.batch, "scrolls": a.scrolls,
            "total": a.total, "runs": a.runs, "rows_per_s_median": median(rates.clone()).round(),
            "rows_per_s_runs": rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

/// A benchmark batch through the append gate, as an admin client `key_bench` (so the gate's
/// cost is part of what is measured).
pub fn bench_gate_admit(
    scroll: &str,
    items: Vec<NewReceipt>,
) -> Result<ledger::gate::Admitted, ledger::store::StoreError> {
    let writer = ledger::gate::Writer::Client {
        key_id: "key_bench".into(),
        role: ledger::store::Role::Admin,
        scrolls: None,
    };
    ledger::gate::AppendGate::new()
        .admit(&writer, scroll, items)
        .map_err(|e| ledger::store::StoreError::Integrity(format!("gate refused: {e}")))
}
