//! `vaultmesh drill failover`: the replicated-Postgres failover drill (docs/operations.md,
//! "Replicated PostgreSQL"). Clients write through the portals without pause while a formation
//! member is killed and brought back, again and again; afterwards every receipt that was
//! acknowledged must be there with its seq and leaf hash, the scroll gap-free, every checkpoint
//! seen consistent with the final one (no size ever signed with two roots), the log verifying
//! as an auditor would check it, and the leading guardian's verification pass clean.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Drills.
#[derive(clap::Subcommand)]
pub enum DrillCommand {
    /// Kill formation members under write load and check that nothing acknowledged is lost.
    Failover(FailoverArgs),
}

/// Options of `drill failover`.
#[derive(clap::Args)]
pub struct FailoverArgs {
    /// A portal's base URL (repeat it: clients write round-robin through them).
    #[arg(long = "portal", required = true)]
    portals: Vec<String>,
    /// A guardian's base URL (repeat it; the leader runs the final verification pass).
    #[arg(long = "guardian", required = true)]
    guardians: Vec<String>,
    /// Writer API key.
    #[arg(long, env = "VAULTMESH_WRITER_KEY")]
    writer_key: String,
    /// Reader API key (to read back every acknowledged receipt).
    #[arg(long, env = "VAULTMESH_READER_KEY")]
    reader_key: String,
    /// Admin API key (for the verification pass).
    #[arg(long, env = "VAULTMESH_ADMIN_KEY")]
    admin_key: String,
    /// The guardian's verifier key (for `verify log`).
    #[arg(long, env = "VAULTMESH_GUARDIAN_VKEY")]
    vkey: String,
    /// The command that controls the formation, split on spaces; it is called with
    /// `kill primary|standby|monitor` (printing the member it killed), `start MEMBER` and
    /// `wait-healthy`, e.g. `bash ops/ha/ctl.sh .vaultmesh/ha 6000`.
    #[arg(long)]
    ctl: String,
    /// Failovers to run; the member killed cycles through primary, standby, primary, monitor.
    #[arg(long, default_value_t = 10)]
    repetitions: u32,
    /// Concurrent writing clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Scroll written to.
    #[arg(long, default_value = "drills")]
    scroll: String,
    /// Acknowledged writes required before each kill (proof that writes flow).
    #[arg(long, default_value_t = 200)]
    warm_writes: usize,
    /// A failover whose writes stay unavailable longer than this many seconds fails the drill.
    #[arg(long, default_value_t = 60)]
    max_window_secs: u64,
    /// Where `verify log` keeps what it verified between repetitions.
    #[arg(long, default_value = "vaultmesh-drill-verify.json")]
    verify_state: PathBuf,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// Runs a drill; `Ok(false)` if it found a loss or an inconsistency.
pub async fn run(cmd: DrillCommand) -> anyhow::Result<bool> {
    match cmd {
        DrillCommand::Failover(args) => failover(args).await,
    }
}

/// One acknowledged write: where the portal said it is.
#[derive(Clone)]
struct Ack {
    seq: u64,
    leaf_hash: String,
    at: Instant,
}

/// What the writers and the checkpoint watcher saw, shared.
#[derive(Default)]
struct Seen {
    acks: Vec<Ack>,
    failures: BTreeMap<String, u64>,
    roots: BTreeMap<u64, String>,
    conflicts: Vec<String>,
}

/// What one repetition did.
#[derive(serde::Serialize)]
struct Repetition {
    target: String,
    member: String,
    window_secs: f64,
    failed_requests: u64,
    recovered_secs: f64,
}

const TARGETS: [&str; 4] = ["primary", "standby", "primary", "monitor"];

async fn failover(a: FailoverArgs) -> anyhow::Result<bool> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    ctl(&a.ctl, &["wait-healthy"]).await?;
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let portal = a.portals[c % a.portals.len()]
            .trim_end_matches('/')
            .to_string();
        tasks.push(tokio::spawn(writer(
            http.clone(),
            portal,
            a.writer_key.clone(),
            a.scroll.clone(),
            c,
            seen.clone(),
            stop.clone(),
        )));
    }
    let watcher = tokio::spawn(watch_checkpoints(
        http.clone(),
        a.portals.clone(),
        a.scroll.clone(),
        seen.clone(),
        stop.clone(),
    ));
    let mut reps = Vec::new();
    let mut ok = true;
    for i in 0..a.repetitions {
        let target = TARGETS[i as usize % TARGETS.len()];
        let before = acks(&seen);
        wait_for(
            || acks(&seen) >= before + a.warm_writes,
            Duration::from_secs(120),
        )
        .await
        .context("writes do not flow before the kill")?;
        let failed_before = failed(&seen);
        let killed_at = Instant::now();
        let member = ctl(&a.ctl, &["kill", target]).await?.trim().to_string();
        // Writes must flow again (on the promoted standby, for a primary) before the member
        // comes back: the services find the new primary on their own.
        let resumed = acks(&seen);
        wait_for(
            || acks(&seen) >= resumed + a.warm_writes,
            Duration::from_secs(a.max_window_secs + 30),
        )
        .await
        .with_context(|| format!("writes never resumed after killing the {target} ({member})"))?;
        ctl(&a.ctl, &["start", &member]).await?;
        ctl(&a.ctl, &["wait-healthy"]).await?;
        let recovered_secs = killed_at.elapsed().as_secs_f64();
        let window_secs = longest_gap(&seen, killed_at);
        let failed_requests = failed(&seen) - failed_before;
        eprintln!(
            "repetition {}: killed the {target} ({member}); writes unavailable {window_secs:.1} s, \
             {failed_requests} requests failed meanwhile; formation healthy again after {recovered_secs:.1} s",
            i + 1
        );
        if window_secs > a.max_window_secs as f64 {
            eprintln!("  FAIL: over the {} s allowed", a.max_window_secs);
            ok = false;
        }
        ok &= verify_log(&a).await?;
        reps.push(Repetition {
            target: target.into(),
            member,
            window_secs,
            failed_requests,
            recovered_secs,
        });
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await?;
    }
    watcher.await?;

    let (acked, failures) = {
        let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        (s.acks.clone(), s.failures.clone())
    };
    let expected = acked.iter().map(|a| a.seq + 1).max().unwrap_or(0);
    let size = wait_checkpoint(&http, &a.portals[0], &a.scroll, expected).await?;
    let stored = read_all(&http, &a.portals[0], &a.reader_key, &a.scroll, size).await?;
    let mut lost = 0u64;
    for ack in &acked {
        if stored.get(&ack.seq) != Some(&ack.leaf_hash) {
            lost += 1;
            eprintln!("  LOST: seq {} ({})", ack.seq, ack.leaf_hash);
        }
    }
    let gaps = (0..size).filter(|s| !stored.contains_key(s)).count() as u64;
    // Each checkpoint watched, consistent with the final one.
    let roots = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .roots
        .clone();
    let mut inconsistent = 0u64;
    for (&from, root) in &roots {
        if from == 0 || from >= size {
            continue;
        }
        if !consistent(&http, &a.portals[0], &a.scroll, from, root, size, &roots).await? {
            inconsistent += 1;
            eprintln!("  INCONSISTENT: checkpoint {from} ({root}) with {size}");
        }
    }
    let conflicts = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .conflicts
        .clone();
    for c in &conflicts {
        eprintln!("  CONFLICT: {c}");
    }
    let log_ok = verify_log(&a).await?;
    let intact = verification_pass(&http, &a).await?;
    let windows: Vec<f64> = reps.iter().map(|r| r.window_secs).collect();
    let summary = json!({
        "repetitions": reps,
        "acknowledged": acked.len(),
        "lost": lost,
        "gaps": gaps,
        "final_size": size,
        "checkpoints_seen": roots.len(),
        "inconsistent_checkpoints": inconsistent,
        "conflicting_checkpoints": conflicts.len(),
        "verify_log": log_ok,
        "verification_pass_intact": intact,
        "failed_requests_by_status": failures,
        "window_secs_median": median(&windows),
        "window_secs_max": windows.iter().cloned().fold(0.0, f64::max),
    });
    println!(
        "{} failovers: {} receipts acknowledged, {lost} lost, {gaps} gaps; {} checkpoints seen, \
         {inconsistent} inconsistent, {} signed twice; verify log {}; verification pass {}; \
         write unavailability median {:.1} s, max {:.1} s",
        reps.len(),
        acked.len(),
        roots.len(),
        conflicts.len(),
        if log_ok { "ok" } else { "FAILED" },
        if intact { "intact" } else { "FOUND SOMETHING" },
        summary["window_secs_median"].as_f64().unwrap_or(0.0),
        summary["window_secs_max"].as_f64().unwrap_or(0.0),
    );
    if let Some(path) = &a.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| path.display().to_string())?;
    }
    Ok(ok
        && lost == 0
        && gaps == 0
        && inconsistent == 0
        && conflicts.is_empty()
        && log_ok
        && intact)
}

/// One client: writes receipt after receipt, retrying each (same Idempotency-Key) until it
/// is acknowledged, and records every acknowledgement and failure.
async fn writer(
    http: reqwest::Client,
    portal: String,
    key: String,
    scroll: String,
    client: usize,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let url = format!("{portal}/v1/scrolls/{scroll}/receipts");
    let run = std::process::id();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let body = json!({"type": "drill_failover", "payload": {"client": client, "n": n}});
        let answer = http
            .post(&url)
            .bearer_auth(&key)
            .header("Idempotency-Key", format!("drill-{run}-{client}-{n}"))
            .json(&body)
            .send()
            .await;
        let outcome = match answer {
            Ok(r) => {
                let status = r.status().as_u16();
                let v = r.json::<Value>().await.unwrap_or(Value::Null);
                match (status, v["seq"].as_u64(), v["leaf_hash"].as_str()) {
                    (200 | 201, Some(seq), Some(h)) => Ok(Ack {
                        seq,
                        leaf_hash: h.to_string(),
                        at: Instant::now(),
                    }),
                    _ => Err(format!(
                        "{status} {}",
                        v["error"]["code"].as_str().unwrap_or("")
                    )),
                }
            }
            Err(e) if e.is_timeout() => Err("timeout".into()),
            Err(_) => Err("connection".into()),
        };
        let acknowledged = {
            let Ok(mut s) = seen.lock() else { return };
            match outcome {
                Ok(ack) => {
                    s.acks.push(ack);
                    true
                }
                Err(kind) => {
                    *s.failures.entry(kind.trim().to_string()).or_default() += 1;
                    false
                }
            }
        };
        if acknowledged {
            n += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls every portal's checkpoint: records each size's root and any second root for a size.
async fn watch_checkpoints(
    http: reqwest::Client,
    portals: Vec<String>,
    scroll: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        for p in &portals {
            if let Some((size, root)) = checkpoint(&http, p, &scroll).await {
                let Ok(mut s) = seen.lock() else { return };
                match s.roots.get(&size) {
                    Some(r) if *r != root => {
                        let c = format!("size {size}: {r} and {root}");
                        s.conflicts.push(c);
                    }
                    Some(_) => {}
                    None => {
                        s.roots.insert(size, root);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn checkpoint(http: &reqwest::Client, portal: &str, scroll: &str) -> Option<(u64, String)> {
    let url = format!(
        "{}/v1/scrolls/{scroll}/checkpoint",
        portal.trim_end_matches('/')
    );
    let v: Value = http
        .get(&url)
        .header("Accept", "application/json")
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some((v["tree_size"].as_u64()?, v["root"].as_str()?.to_string()))
}

/// Waits for a signed checkpoint of at least `size`; returns its size.
async fn wait_checkpoint(
    http: &reqwest::Client,
    portal: &str,
    scroll: &str,
    size: u64,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((s, _)) = checkpoint(http, portal, scroll).await {
            if s >= size {
                return Ok(s);
            }
        }
        if Instant::now() > deadline {
            bail!("no checkpoint of size {size} or more within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every stored receipt below `size`: seq → leaf hash.
async fn read_all(
    http: &reqwest::Client,
    portal: &str,
    key: &str,
    scroll: &str,
    size: u64,
) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    let mut from = 0u64;
    while from < size {
        let url = format!(
            "{}/v1/scrolls/{scroll}/receipts?from={from}&limit=1000",
            portal.trim_end_matches('/')
        );
        let v: Value = http
            .get(&url)
            .bearer_auth(key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let page = v["receipts"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        for r in &page {
            if let (Some(seq), Some(h)) = (r["seq"].as_u64(), r["leaf_hash"].as_str()) {
                out.insert(seq, h.to_string());
            }
        }
        from = match v["next"].as_u64() {
            Some(next) if next > from => next,
            _ => break,
        };
    }
    Ok(out)
}

/// Whether the portal's consistency proof from `from` to `to` links the watched roots.
async fn consistent(
    http: &reqwest::Client,
    portal: &str,
    scroll: &str,
    from: u64,
    from_root: &str,
    to: u64,
    roots: &BTreeMap<u64, String>,
) -> anyhow::Result<bool> {
    let to_root = match roots.get(&to) {
        Some(r) => r.clone(),
        None => match checkpoint(http, portal, scroll).await {
            Some((s, r)) if s == to => r,
            _ => bail!("no root known for size {to}"),
        },
    };
    let url = format!(
        "{}/v1/scrolls/{scroll}/proof/consistency?from={from}&to={to}",
        portal.trim_end_matches('/')
    );
    let proof: ledger::merkle::ConsistencyProof = http
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let (Ok(old), Ok(new)) = (
        ledger::hash::from_hex(from_root),
        ledger::hash::from_hex(&to_root),
    ) else {
        return Ok(false);
    };
    Ok(proof.from_size == from
        && proof.to_size == to
        && ledger::merkle::verify_consistency::<sha3::Sha3_256>(from, to, &proof.path, &old, &new)
            .is_ok())
}

/// Runs `vaultmesh verify log` against the first portal, keeping its state between runs.
async fn verify_log(a: &FailoverArgs) -> anyhow::Result<bool> {
    let exe = std::env::current_exe()?;
    let status = tokio::process::Command::new(exe)
        .args(["verify", "log", &a.portals[0], "--vkey", &a.vkey])
        .arg("--state")
        .arg(&a.verify_state)
        .args(["--token", &a.reader_key])
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    Ok(status.success())
}

/// Asks each guardian for a verification pass; the leader's answer must be intact.
async fn verification_pass(http: &reqwest::Client, a: &FailoverArgs) -> anyhow::Result<bool> {
    for g in &a.guardians {
        let url = format!("{}/v1/guardian/verify", g.trim_end_matches('/'));
        let Ok(r) = http.post(&url).bearer_auth(&a.admin_key).send().await else {
            continue;
        };
        if r.status().as_u16() == 409 {
            continue;
        }
        let v: Value = r.json().await.unwrap_or(Value::Null);
        let intact = v["intact"].as_bool() == Some(true);
        if !intact {
            eprintln!("  verification pass: {v}");
        }
        return Ok(intact);
    }
    bail!("no guardian ran a verification pass")
}

/// Runs the formation control command with `args`; returns what it printed.
async fn ctl(command: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut parts = command.split_whitespace();
    let program = parts.next().context("--ctl is empty")?;
    let out = tokio::process::Command::new(program)
        .args(parts)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("{command} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("{command} {} failed: {}", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn acks(seen: &Mutex<Seen>) -> usize {
    seen.lock().map(|s| s.acks.len()).unwrap_or(0)
}

fn failed(seen: &Mutex<Seen>) -> u64 {
    seen.lock().map(|s| s.failures.values().sum()).unwrap_or(0)
}

/// The longest time without an acknowledgement since `from` (writes unavailable).
fn longest_gap(seen: &Mutex<Seen>, from: Instant) -> f64 {
    let Ok(s) = seen.lock() else { return f64::NAN };
    let mut times: Vec<Instant> = s.acks.iter().map(|a| a.at).filter(|t| *t >= from).collect();
    times.sort();
    let mut last = from;
    let mut gap = Duration::ZERO;
    for t in times {
        gap = gap.max(t - last);
        last = t;
    }
    gap.as_secs_f64()
}

async fn wait_for(mut done: impl FnMut() -> bool, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("not within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}
