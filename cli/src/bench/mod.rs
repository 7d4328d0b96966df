//! `vaultmesh bench`: ledger benchmarks. Each prints one JSON line per figure, with the
//! median over `--runs` repetitions, for `ops/bench/ledger.sh` to tabulate.

mod append;
mod connection;
mod hashing;
mod inclusion;
mod ingest;
mod oracle;
mod proofs;
mod reads;
mod seed;
mod witness;

use clap::Subcommand;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Leaf hashing + tile/root building vs raw SHA3-256 over the same leaf bytes (one core).
    Hashing(hashing::Args),
    /// Receipt appends through the store (gap-free, batched) in rows/s.
    Append(append::Args),
    /// Roots and proofs from stored tiles on a large tree, in microseconds.
    Proofs(proofs::Args),
    /// HTTP ingest through a running portal: receipts/s and latency quantiles.
    Ingest(ingest::Args),
    /// Submit → included in a signed checkpoint, at a fixed rate (portal + guardian running).
    Inclusion(inclusion::Args),
    /// Oracle query latency over a generated corpus (a running oracle).
    Oracle(oracle::Args),
    /// Fill a scroll with receipts, integrate them and sign a checkpoint over them.
    Seed(seed::Args),
    /// HTTP GET load on a running service (health, proofs, reads): requests/s and latency.
    Reads(reads::Args),
    /// add-checkpoint requests/s a running witness sustains, against verify + one round trip.
    Witness(witness::Args),
}

/// Runs one benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Hashing(a) => hashing::run(&a),
        BenchCommand::Append(a) => append::run(&a).await,
        BenchCommand::Proofs(a) => proofs::run(&a).await,
        BenchCommand::Ingest(a) => ingest::run(&a).await,
        BenchCommand::Seed(a) => seed::run(&a).await,
        BenchCommand::Oracle(a) => oracle::run(&a).await,
        BenchCommand::Inclusion(a) => inclusion::run(&a).await,
        BenchCommand::Reads(a) => reads::run(&a).await,
        BenchCommand::Witness(a) => witness::run(&a).await,
    }
}

/// Median of a non-empty list (0 for an empty one).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The value at quantile `q` (0..=1) of a non-empty list, nearest-rank.
pub fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// A receipt-shaped leaf of about `bytes` bytes, distinct for each `i`.
pub fn sample_draft(i: u64, bytes: usize) -> ledger::receipt::ReceiptDraft {
    let filler = "x".repeat(bytes.saturating_sub(170));
    let payload = serde_json::json!({ "drill": format!("dr-{i}"), "ok": true, "note": filler });
    ledger::receipt::ReceiptDraft::new("drill_completed", payload)
        .unwrap_or_else(|_| unreachable!("the sample payload is valid"))
}
