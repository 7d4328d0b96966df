//! Submit → included in a signed checkpoint (with `--witnessed K`, one holding K witness
//! cosignatures): single receipts sent to one scroll at a fixed
//! rate through a running portal (with a guardian integrating), while Postgres is polled for
//! the scroll's latest checkpoint size every few milliseconds; each receipt's latency runs
//! from sending its request to the first poll that sees a checkpoint covering its position.

use super::connection::Conn;
use super::quantile;
use ledger::storage::CheckpointStore;
use ledger::store::{PoolOptions, Store};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `bench inclusion`.
#[derive(clap::Args)]
pub struct Args {
    /// Portal address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Writer API key.
    #[arg(long, env = "VAULTMESH_WRITER_KEY")]
    token: String,
    /// Postgres URL, to watch checkpoints.
    #[arg(long, env = "VAULTMESH_DATABASE_URL", default_value = ledger::config::DEFAULT_OWNER_DATABASE_URL)]
    database_url: String,
    /// Scroll to write.
    #[arg(long, default_value = "drills")]
    scroll: String,
    /// Receipts per second.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Keep-alive connections sharing the rate.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Milliseconds between checkpoint polls.
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Count a receipt only once a checkpoint covering it holds this many witness
    /// cosignatures (0: once it is signed).
    #[arg(long, default_value_t = 0)]
    witnessed: u32,
}

/// Runs the measurement and prints one JSON line.
pub async fn run(a: &Args) -> anyhow::Result<()> {
    let store = Store::connect(
        &a.database_url,
        &PoolOptions {
            max_size: 2,
            ..PoolOptions::default()
        },
    )?;
    let seen: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (store, scroll, seen, stop) =
            (store.clone(), a.scroll.clone(), seen.clone(), stop.clone());
        let witnessed = a.witnessed;
        let every = Duration::from_millis(a.poll_ms.max(1));
        tokio::spawn(async move {
            let mut last = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let latest = if witnessed == 0 {
                    store.latest_checkpoint(&scroll).await
                } else {
                    store.latest_witnessed_checkpoint(&scroll, witnessed).await
                };
                if let Ok(Some(cp)) = latest {
                    if last != Some(cp.tree_size) {
                        last = Some(cp.tree_size);
                        seen.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((Instant::now(), cp.tree_size));
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    };
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    let interval = Duration::from_secs_f64(a.clients as f64 / a.rate.max(1.0));
    let head = format!(
        "POST /v1/scrolls/{}/receipts HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n",
        a.scroll, a.addr, a.token
    );
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (addr, head) = (a.addr.clone(), head.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut sent = Vec::new();
            let mut next = Instant::now() + interval.mul_f64(c as f64 / 64.0);
            let mut i = 0u64;
            while Instant::now() < end {
                tokio::time::sleep_until(next.into()).await;
                next += interval;
                let body =
                    format!(r#"{{"type":"latency_probe","payload":{{"client":{c},"i":{i}}}}}"#);
                i += 1;
                let t = Instant::now();
                if conn.request(&head, body.as_bytes()).await? == 201 {
                    let seq = serde_json::from_slice::<serde_json::Value>(conn.body())
                        .ok()
                        .and_then(|v| v["seq"].as_u64());
                    if let Some(seq) = seq {
                        sent.push((seq, t));
                    }
                }
            }
            Ok::<_, std::io::Error>(sent)
        }));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.extend(t.await??);
    }
    let max_seq = sent.iter().map(|(s, _)| *s).max().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let covered = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last()
            .map(|(_, s)| *s);
        if covered.is_some_and(|s| s > max_seq) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = poller.await;
    let seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut lat = Vec::with_capacity(sent.len());
    let mut missing = 0u64;
    for (seq, t) in &sent {
        let idx = seen.partition_point(|(_, size)| *size <= *seq);
        match seen.get(idx) {
            Some((at, _)) => lat.push(at.saturating_duration_since(*t).as_secs_f64() * 1000.0),
            None => missing += 1,
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "inclusion", "rate": a.rate, "seconds": a.seconds,
            "receipts": sent.len(), "receipts_per_s": (sent.len() as f64 / a.seconds as f64).round(),
            "never_included": missing, "poll_ms": a.poll_ms, "witnessed": a.witnessed,
            "p50_ms": quantile(lat.clone(), 0.5), "p99_ms": quantile(lat.clone(), 0.99), "max_ms": quantile(lat, 1.0),
        })
    );
    Ok(())
}
