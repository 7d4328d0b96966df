//! HTTP GET load on a running service: N keep-alive connections requesting one path
//! template for a fixed time; reports requests/s and latency quantiles. `{seq}` in the path
//! is replaced by a random number below `--seq-below` on every request.

use super::connection::Conn;
use super::quantile;
use ledger::rng::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `bench reads`.
#[derive(clap::Args)]
pub struct Args {
    /// Service address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Path to request, e.g. `/v1/scrolls/bench-proofs/proof/inclusion?seq={seq}`.
    #[arg(long, default_value = "/v1/health")]
    path: String,
    /// Upper bound (exclusive) of the random `{seq}`.
    #[arg(long, default_value_t = 1)]
    seq_below: u64,
    /// Bearer token to send, if any.
    #[arg(long)]
    token: Option<String>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// A label for the JSON line.
    #[arg(long, default_value = "reads")]
    label: String,
}

/// Runs the load and prints one JSON line.
pub async fn run(a: &Args) -> anyhow::Result<()> {
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    let auth = a
        .token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (addr, path, errs) = (a.addr.clone(), a.path.clone(), errors.clone());
        let host = format!("Host: {}\r\n{auth}", a.addr);
        let below = a.seq_below.max(1);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1));
            let mut mine = Vec::new();
            while Instant::now() < end {
                let p = path.replace("{seq}", &rng.below(below).to_string());
                let head = format!("GET {p} HTTP/1.1\r\n{host}");
                let t = Instant::now();
                match conn.request(&head, b"").await {
                    Ok(200) => mine.push(t.elapsed().as_secs_f64() * 1000.0),
                    Ok(_) => {
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errs.fetch_add(1, Ordering::Relaxed);
                        conn = Conn::open(&addr).await?;
                    }
                }
            }
            Ok::<_, std::io::Error>(mine)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bench": a.label, "path": a.path, "clients": a.clients, "seconds": elapsed,
            "requests_per_s": (lat.len() as f64 / elapsed).round(),
            "errors": errors.load(Ordering::Relaxed),
            "p50_ms": quantile(lat.clone(), 0.50), "p95_ms": quantile(lat.clone(), 0.95),
            "p99_ms": quantile(lat, 0.99),
        })
    );
    Ok(())
}
