//! The routes only the guardian relies on, probed like every node's Postgres and Redis:
//! each anchor sink (`sink:<name>`), each witness it asks (`witness:<mesh>`, its guardian's
//! `/v1/health`) and each remote mesh it witnesses (`remote:<mesh>`, its portal's
//! `/v1/health`).

use crate::options::GuardianArgs;
use crate::sinks::Sink;
use ledger::mesh::route::Probe;
use std::path::PathBuf;
use std::time::Duration;

/// The guardian's own probes for `sinks` and the federation peers in `opts`.
pub fn probes(
    opts: &GuardianArgs,
    sinks: &[Sink],
    timeout: Duration,
) -> Result<Vec<Probe>, reqwest::Error> {
    let http = reqwest::Client::builder().timeout(timeout).build()?;
    let mut out = Vec::new();
    for sink in sinks {
        match sink {
            Sink::Journal(j) => {
                let path = j.path().to_path_buf();
                out.push(Probe::new("sink:journal", move || {
                    journal_writable(path.clone())
                }));
            }
            Sink::Tsa(_) => {
                if let Some(url) = &opts.tsa_url {
                    out.push(http_probe("sink:rfc3161", &http, url.clone(), false));
                }
            }
        }
    }
    for w in &opts.witnesses {
        let url = format!("{}/v1/health", w.url.trim_end_matches('/'));
        out.push(http_probe(&format!("witness:{}", w.mesh), &http, url, true));
    }
    for r in &opts.remote_meshes {
        let url = format!("{}/v1/health", r.portal.trim_end_matches('/'));
        out.push(http_probe(&format!("remote:{}", r.mesh), &http, url, true));
    }
    Ok(out)
}

/// Healthy when a GET of `url` answers 2xx (`strict`) or anything below 500 (a TSA, which
/// only takes POSTs).
fn http_probe(target: &str, http: &reqwest::Client, url: String, strict: bool) -> Probe {
    let http = http.clone();
    Probe::new(target, move || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) if !strict && !r.status().is_server_error() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) if e.is_timeout() => Err("timeout".into()),
                Err(e) => Err(format!("unreachable: {e}")),
            }
        }
    })
}

/// Healthy when the journal can be appended to: the file opens for appending, or (before
/// the first epoch) its directory exists and is writable.
async fn journal_writable(path: PathBuf) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        if path.exists() {
            return std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", path.display()));
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() && !m.permissions().readonly() => Ok(()),
            Ok(_) => Err(format!("{}: not a writable directory", dir.display())),
            Err(e) => Err(format!("{}: {e}", dir.display())),
        }
    })
    .await
    .map_err(|e| format!("probe task: {e}"))?
}
