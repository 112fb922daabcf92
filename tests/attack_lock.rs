//! Attacks on the directory lock (I25): the directory renamed under a live
//! writer. Public API only. Written as a reproducer before the fix
//! (`DirectoryMoved`), kept as its regression test.

mod common;
use std::path::Path;

use directwal::{SegmentedWal, SegmentedWalConfig};

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(8 * 1024).chunk(4096).build()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Finding 5: an operator moves the WAL directory away (`mv wal wal.old`)
/// while writer A runs, and a new writer B opens a fresh WAL at the old
/// path (the lock is on the old directory's inode, so B gets in: fine).
/// But A addresses its files by path: its next roll creates its new segment
/// in B's directory, beside B's segments. Expected: A's files stay in the
/// directory it locked (or A fails/poisons); B's directory holds only B's
/// segments and B reopens.
#[test]
fn a_renamed_directory_keeps_its_writer() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("wal");
    let old = t.path().join("wal.old");
    let mut a = SegmentedWal::open(cfg(&dir)).unwrap();
    a.append(1, 0, 0, b"A-1").unwrap();
    a.sync().unwrap();
    std::fs::rename(&dir, &old).unwrap();
    let mut b = SegmentedWal::open(cfg(&dir)).unwrap();
    b.append(1, 0, 0, b"B-1").unwrap();
    b.sync().unwrap();
    let b_before = names(&dir);
    let rolled = a.roll_segment();
    let a_after = a.append(1, 0, 0, b"A-2").and_then(|_| a.sync());
    drop(a);
    drop(b);
    let b_after = names(&dir);
    let reopen = SegmentedWal::open(cfg(&dir)).and_then(|w| w.replay()).map(|v| v.len());
    assert!(
        b_after == b_before && reopen.as_ref().is_ok_and(|&n| n == 1),
        "A roll {rolled:?}, append+sync {a_after:?}; B's dir before {b_before:?} after {b_after:?}; \
         A's dir {:?}; B reopen {reopen:?}",
        names(&old)
    );
}
