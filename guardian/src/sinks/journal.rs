//! The journal sink: each epoch's record (its stored JCS text) as line `epoch` of an
//! append-only file, fsync'd before the epoch counts as journaled (and the directory fsync'd
//! when the file is created). Writers hold an exclusive lock on the file, so two processes
//! never interleave. An epoch already in the file must be there byte for byte, and a new
//! epoch is appended only after the last line, which must be the record it links to; a file
//! that does not end where the database expects (truncated, replaced, edited, or with a stray
//! line) is refused with the reason, never papered over.

use super::SinkError;
use ledger::hash::{to_hex, Sha3Hasher};
use ledger::proofchain::AnchorRecord;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest journal line read back when looking for the last epoch.
const TAIL_BYTES: u64 = 256 * 1024;
/// How long a writer or reader waits for another process's lock on the journal.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How often a waiting writer or reader retries the lock.
const LOCK_RETRY: Duration = Duration::from_millis(10);

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

    /// Appends `record` as line `record.epoch` unless that line is already exactly it;
    /// fsyncs.
    pub async fn append(&self, record: &AnchorRecord) -> Result<Value, SinkError> {
        let text = record.stored_text()?;
        let path = self.path.clone();
        let epoch = record.epoch;
        let prev = record.prev_anchor_hash.clone();
        tokio::task::spawn_blocking(move || append_line(&path, epoch, &prev, &text))
            .await
            .map_err(|e| SinkError::Io(std::io::Error::other(e.to_string())))?
    }
}

/// Which lock a caller needs on the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Readers: many at once, never while a writer holds the file.
    Shared,
    /// The writer: alone.
    Exclusive,
}

/// Takes `kind` of lock on `file`, retrying until [`LOCK_WAIT`] has passed. The lock is
/// released when the file is closed.
pub fn lock(file: &File, kind: LockKind, path: &Path) -> Result<(), SinkError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let attempt = match kind {
            LockKind::Shared => file.try_lock_shared(),
            LockKind::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SinkError::Io(std::io::Error::other(format!(
                    "journal {} is locked by another process (waited {} s)",
                    path.display(),
                    LOCK_WAIT.as_secs()
                ))))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

/// Opens the journal for appending, creating it (and making its directory entry durable)
/// if it does not exist.
fn open_for_append(path: &Path) -> Result<File, SinkError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true);
    match options.open(path) {
        Ok(f) => return Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir)?.sync_all()?;
            Ok(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(options.open(path)?),
        Err(e) => Err(e.into()),
    }
}

fn append_line(path: &Path, epoch: u64, prev: &str, text: &str) -> Result<Value, SinkError> {
    let mut file = open_for_append(path)?;
    lock(&file, LockKind::Exclusive, path)?;
    let shown = path.display().to_string();
    let line_hash = to_hex(&Sha3Hasher::plain(text.as_bytes()));
    let present =
        || json!({"path": shown, "epoch": epoch, "line_sha3": line_hash, "already_present": true});
    match last_line(&mut file)? {
        None if epoch != 1 => {
            return Err(SinkError::Inconsistent(format!(
                "journal {shown} is empty; epoch {epoch} cannot start it"
            )));
        }
        None => {}
        Some(last) => {
            let l = line_epoch(&last)?;
            if l == epoch {
                return if last == text.as_bytes() {
                    Ok(present())
                } else {
                    Err(differs(epoch))
                };
            }
            if l > epoch {
                return if line_at(&mut file, epoch)?.as_deref() == Some(text.as_bytes()) {
                    Ok(present())
                } else {
                    Err(differs(epoch))
                };
            }
            if l + 1 != epoch {
                return Err(SinkError::Inconsistent(format!(
                    "journal {shown} ends at epoch {l}; epoch {epoch} cannot follow it"
                )));
            }
            let record = parse_record(&last)?;
            if record.anchor_hash != prev {
                return Err(SinkError::Inconsistent(format!(
                    "journal {shown}: the line of epoch {l} (anchor_hash {}) is not the record \
                     epoch {epoch} links to ({prev})",
                    record.anchor_hash
                )));
            }
        }
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

fn differs(epoch: u64) -> SinkError {
    SinkError::Inconsistent(format!(
        "the journal's line for epoch {epoch} differs from the stored record"
    ))
}

/// The epoch a journal line names (it need not be a valid record).
fn line_epoch(line: &[u8]) -> Result<u64, SinkError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        SinkError::Inconsistent(format!("the journal's last line is not a record: {e}"))
    })?;
    value["epoch"]
        .as_u64()
        .ok_or_else(|| SinkError::Inconsistent("the journal's last line has no epoch".into()))
}

/// A journal line as a record: it must parse, its hashes must recompute, and it must be
/// exactly the record's stored text.
fn parse_record(line: &[u8]) -> Result<AnchorRecord, SinkError> {
    let bad = |why: String| SinkError::Inconsistent(format!("the journal's last line {why}"));
    let record: AnchorRecord =
        serde_json::from_slice(line).map_err(|e| bad(format!("is not a record: {e}")))?;
    record
        .verify()
        .map_err(|e| bad(format!("is not a valid record: {e}")))?;
    if record.stored_text()?.as_bytes() != line {
        return Err(bad("is not a record's stored text".into()));
    }
    Ok(record)
}

/// The file's last complete line (without its newline), if the file is not empty.
fn last_line(file: &mut File) -> Result<Option<Vec<u8>>, SinkError> {
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
    if start > 0 && line.len() == body.len() {
        return Err(SinkError::Inconsistent(format!(
            "the journal's last line is longer than {TAIL_BYTES} bytes"
        )));
    }
    Ok(Some(line.to_vec()))
}

/// Line number `n` (1-based) of the file, without its newline, if the file has that many.
fn line_at(file: &mut File, n: u64) -> Result<Option<Vec<u8>>, SinkError> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*file);
    let mut line = Vec::new();
    for _ in 0..n {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        Ok(Some(line))
    } else {
        Ok(None)
    }
}
