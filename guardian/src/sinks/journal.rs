//! The journal sink: each epoch's record (its stored JCS text) as one line of an append-only
//! file, fsync'd before the epoch counts as journaled. Epochs are written in order; a record
//! already in the file is not written twice, and a file that does not end where the database
//! expects (truncated, replaced, edited) is refused, never papered over.

use super::SinkError;
use ledger::hash::{to_hex, Sha3Hasher};
use ledger::proofchain::AnchorRecord;
use serde_json::{json, Value};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Longest journal line read back when looking for the last epoch.
const TAIL_BYTES: u64 = 256 * 1024;

/// A journal file.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// A journal at `path` (created on first write; its directory must exist).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` unless it is already the last line; fsyncs.
    pub async fn append(&self, record: &AnchorRecord) -> Result<Value, SinkError> {
        let text = record.stored_text()?;
        let path = self.path.clone();
        let epoch = record.epoch;
        tokio::task::spawn_blocking(move || append_line(&path, epoch, &text))
            .await
            .map_err(|e| SinkError::Io(std::io::Error::other(e.to_string())))?
    }
}

fn append_line(path: &Path, epoch: u64, text: &str) -> Result<Value, SinkError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let last = last_epoch(&mut file)?;
    let line_hash = to_hex(&Sha3Hasher::plain(text.as_bytes()));
    let shown = path.display().to_string();
    match last {
        Some(l) if l >= epoch => {
            return Ok(
                json!({"path": shown, "epoch": epoch, "line_sha3": line_hash, "already_present": true}),
            );
        }
        Some(l) if l + 1 != epoch => {
            return Err(SinkError::Inconsistent(format!(
                "journal {shown} ends at epoch {l}; epoch {epoch} cannot follow it"
            )));
        }
        None if epoch != 1 => {
            return Err(SinkError::Inconsistent(format!(
                "journal {shown} is empty; epoch {epoch} cannot start it"
            )));
        }
        _ => {}
    }
    let offset = file.seek(SeekFrom::End(0))?;
    let mut line = text.as_bytes().to_vec();
    line.push(b'\n');
    if let Err(e) = file.write_all(&line).and_then(|()| file.sync_data()) {
        // A partial line (disk full mid-write) would make every later append refuse the
        // file; cut it back to where this epoch started so the retry finds a whole journal.
        let _ = file.set_len(offset).and_then(|()| file.sync_data());
        return Err(e.into());
    }
    Ok(json!({"path": shown, "epoch": epoch, "offset": offset, "line_sha3": line_hash}))
}

/// The epoch of the file's last complete line, if any.
fn last_epoch(file: &mut std::fs::File) -> Result<Option<u64>, SinkError> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    if tail.last() != Some(&b'\n') {
        return Err(SinkError::Inconsistent(
            "journal does not end with a complete line".into(),
        ));
    }
    let body = &tail[..tail.len() - 1];
    let line = body.rsplit(|b| *b == b'\n').next().unwrap_or(body);
    let record: Value = serde_json::from_slice(line).map_err(|e| {
        SinkError::Inconsistent(format!("journal's last line is not a record: {e}"))
    })?;
    record["epoch"]
        .as_u64()
        .map(Some)
        .ok_or_else(|| SinkError::Inconsistent("journal's last line has no epoch".into()))
}
