//! Oracle query latency over a generated corpus: fills the corpus with `--sections` sections
//! (ten documents, ~80 words each, drawn from a fixed vocabulary plus compliance terms), then
//! asks `--queries` random questions over HTTP, one at a time, each answered extractively
//! and receipted; reports p50/p95/p99 of the whole request.

use super::connection::Conn;
use super::quantile;
use ledger::hash::Sha3Hasher;
use ledger::rng::Rng;
use ledger::store::{NewDocument, NewSection, PoolOptions, Store};
use std::time::Instant;

/// Options of `bench oracle`.
#[derive(clap::Args)]
pub struct Args {
    /// Oracle address (host:port).
    #[arg(long, default_value = "127.0.0.1:8082")]
    addr: String,
    /// Reader API key.
    #[arg(long, env = "VAULTMESH_READER_KEY")]
    token: String,
    /// Postgres URL (schema owner), to fill the corpus.
    #[arg(long, env = "VAULTMESH_DATABASE_URL", default_value = ledger::config::DEFAULT_OWNER_DATABASE_URL)]
    database_url: String,
    /// Sections to generate.
    #[arg(long, default_value_t = 10_000)]
    sections: usize,
    /// Questions to ask.
    #[arg(long, default_value_t = 500)]
    queries: usize,
}

const TERMS: [&str; 16] = [
    "logging",
    "retention",
    "incident",
    "notification",
    "records",
    "processing",
    "monitoring",
    "oversight",
    "audit",
    "evidence",
    "breach",
    "supplier",
    "risk",
    "assessment",
    "access",
    "integrity",
];
const FRAMEWORKS: [&str; 4] = ["eu_ai_act", "gdpr", "nis2", "iso27001"];

/// A pronounceable pseudo-word for `n` (a fixed vocabulary of a few thousand).
fn word(n: u64) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "re", "su", "ta", "ne", "vo", "pi", "da", "ge", "ru", "so", "fi", "ba",
        "ze",
    ];
    let n = n % 4096;
    format!(
        "{}{}{}",
        SYL[(n % 16) as usize],
        SYL[((n / 16) % 16) as usize],
        SYL[((n / 256) % 16) as usize]
    )
}

fn words(rng: &mut Rng, count: usize) -> String {
    (0..count)
        .map(|_| {
            if rng.below(8) == 0 {
                TERMS[rng.below(TERMS.len() as u64) as usize].to_string()
            } else {
                word(rng.below(4096))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the benchmark and prints one JSON line.
pub async fn run(a: &Args) -> anyhow::Result<()> {
    let store = Store::connect(
        &a.database_url,
        &PoolOptions {
            max_size: 2,
            ..PoolOptions::default()
        },
    )?;
    let mut rng = Rng(0x5eed_0ac1_e000_0007);
    let per_doc = a.sections.div_ceil(10).max(1);
    let filled = Instant::now();
    for d in 0..10usize {
        let sections: Vec<NewSection> = (0..per_doc)
            .map(|i| NewSection {
                heading: format!("{} {}", words(&mut rng, 3), i),
                body: words(&mut rng, 80),
                evidence_types: if i % 5 == 0 {
                    vec![format!("bench_{}", TERMS[i % TERMS.len()])]
                } else {
                    Vec::new()
                },
            })
            .collect();
        let text: String = sections.iter().map(|s| s.body.as_str()).collect();
        store
            .put_document(&NewDocument {
                id: format!("bench-{d}"),
                title: format!("Generated document {d}"),
                framework: FRAMEWORKS[d % 4].into(),
                sha3: Sha3Hasher::plain(text.as_bytes()),
                sections,
            })
            .await?;
    }
    let fill_s = filled.elapsed().as_secs_f64();
    let head = format!(
        "POST /v1/oracle/query HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n",
        a.addr, a.token
    );
    let mut conn = Conn::open(&a.addr).await?;
    let mut lat = Vec::with_capacity(a.queries);
    let mut cited = 0usize;
    for _ in 0..a.queries {
        let body = serde_json::json!({ "question": words(&mut rng, 8) }).to_string();
        let t = Instant::now();
        let status = conn.request(&head, body.as_bytes()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            status == 200,
            "query answered {status}: {}",
            String::from_utf8_lossy(conn.body())
        );
        if serde_json::from_slice::<serde_json::Value>(conn.body())
            .ok()
            .is_some_and(|v| v["citations"].as_array().is_some_and(|c| !c.is_empty()))
        {
            cited += 1;
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "oracle", "sections": per_doc * 10, "queries": a.queries,
            "corpus_fill_seconds": fill_s, "answers_with_citations": cited,
            "p50_ms": quantile(lat.clone(), 0.5), "p95_ms": quantile(lat.clone(), 0.95), "p99_ms": quantile(lat, 0.99),
        })
    );
    Ok(())
}
