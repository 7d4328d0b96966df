//! The journal's disk fills up: the epoch is stored, the sink fails with the OS's reason, the
//! journal is left ending with a whole line (a partly written line is cut off), and once
//! space is freed the next epoch journals every missed epoch in order. Needs a small tmpfs
//! (root with mount rights, as in CI); elsewhere it says so and does nothing.

mod common;

use common::post_as_leader;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A 64 KiB tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount() -> Option<Self> {
        let dir = ledger::testing::scratch_dir("small-disk");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with a filler file until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    let block = [0u8; 1024];
    while f.write_all(&block).and_then(|()| f.sync_data()).is_ok() {}
    path
}

fn journal_epochs(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "journal ends mid-line"
    );
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("journal line: {e}"))["epoch"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_journal_cleanly_and_it_catches_up_after() {
    let Some(disk) = SmallDisk::mount() else {
        eprintln!("cannot mount a tmpfs here (needs root): disk-full test not run");
        return;
    };
    let journal = disk.0.join("proofchain.jsonl");
    let j = journal.clone();
    let t = common::start(move |_, opts| opts.journal_path = j).await;
    let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(journal_epochs(&journal), vec![1]);

    let filler = fill(&disk.0);
    let mut failed = None;
    for epoch in 2..=20u64 {
        let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
        assert_eq!(body["record"]["epoch"], epoch, "{body}");
        let epochs = journal_epochs(&journal);
        if s == 502 {
            let reason = body["failures"][0]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("No space left"), "{reason}");
            assert_eq!(epochs, (1..epoch).collect::<Vec<_>>(), "whole lines only");
            failed = Some(epoch);
            break;
        }
        assert_eq!(s, 200, "{body}");
    }
    let failed = failed.unwrap_or_else(|| panic!("the journal never filled the disk"));

    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("{e}"));
    let (s, body) = post_as_leader(&t, "/v1/guardian/anchor").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        journal_epochs(&journal),
        (1..=failed + 1).collect::<Vec<_>>()
    );
    t.g.stop().await;
}
