//! HTTP ingest load: N keep-alive connections submitting receipts (singly or in batches)
//! for a fixed time, optionally at a fixed total rate; reports receipts/s and latency
//! quantiles of the requests.

use super::connection::Conn;
use super::quantile;
use ledger::receipt::PRECREATED_SCROLLS;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Options of `bench ingest`.
#[derive(clap::Args)]
pub struct Args {
    /// Portal address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Writer API key.
    #[arg(long, env = "VAULTMESH_WRITER_KEY")]
    token: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Scrolls written round-robin by client (the first N of the pre-created scrolls clients
    /// may write: all but `guardian`, `governance` and `access`).
    #[arg(long, default_value_t = 1)]
    scrolls: usize,
    /// Receipts per request: 1 uses the single endpoint, more uses the batch endpoint.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Total requests per second across all clients (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

/// Runs the load and prints one JSON line.
pub async fn run(a: &Args) -> anyhow::Result<()> {
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    let writable: Vec<&str> = PRECREATED_SCROLLS
        .into_iter()
        .filter(|s| !ledger::gate::SERVICE_SCROLLS.iter().any(|(n, _)| n == s))
        .collect();
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let scroll = writable[c % a.scrolls.clamp(1, writable.len())];
        let path = if a.batch > 1 {
            format!("/v1/scrolls/{scroll}/receipts/batch")
        } else {
            format!("/v1/scrolls/{scroll}/receipts")
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n",
            a.addr, a.token
        );
        let (addr, batch, lat, errs) = (a.addr.clone(), a.batch, latencies.clone(), errors.clone());
        let interval = (a.rate > 0.0).then(|| Duration::from_secs_f64(a.clients as f64 / a.rate));
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut mine = Vec::new();
            let mut next =
                Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / 64.0));
            let mut i = 0u64;
            while Instant::now() < end {
                if let Some(iv) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let one = |k: u64| {
                    format!(
                        r#"{{"type":"load_test","payload":{{"client":{c},"i":{k},"note":"{}"}}}}"#,
                        "x".repeat(120)
                    )
                };
                let body = if batch > 1 {
                    let items: Vec<String> = (0..batch as u64)
                        .map(|k| one(i * batch as u64 + k))
                        .collect();
                    format!(r#"{{"receipts":[{}]}}"#, items.join(","))
                } else {
                    one(i)
                };
                i += 1;
                let t = Instant::now();
                match conn.request(&head, body.as_bytes()).await {
                    Ok(201) => mine.push(t.elapsed().as_secs_f64() * 1000.0),
                    Ok(_) => {
                        errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => {
                        errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        conn = Conn::open(&addr).await?;
                    }
                }
            }
            lat.lock().await.extend(mine);
            Ok::<_, std::io::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let lat = latencies.lock().await.clone();
    let requests = lat.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "bench": "ingest", "clients": a.clients, "scrolls": a.scrolls, "batch": a.batch,
            "target_rate_rps": a.rate, "seconds": elapsed,
            "requests_per_s": (requests / elapsed).round(),
            "receipts_per_s": (requests * a.batch as f64 / elapsed).round(),
            "errors": errors.load(std::sync::atomic::Ordering::Relaxed),
            "p50_ms": quantile(lat.clone(), 0.50), "p95_ms": quantile(lat.clone(), 0.95),
            "p99_ms": quantile(lat, 0.99),
        })
    );
    Ok(())
}
