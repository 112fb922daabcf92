//! `directwal repair`: a dry run by default, the tolerant open's cut with
//! --yes, the dropped LSN range reported, the evidence kept, and a WAL that
//! opens in strict mode afterwards.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use common::*;
use directwal::layout::{data_start, record_size};
use directwal::{SegmentedWal, SegmentedWalConfig, WalError};

/// One unsealed segment of 30 records in three syncs, LSN 15's payload
/// flipped: durable data damaged before a later sync (strict open refuses).
fn damaged_mid_log() -> (tempfile::TempDir, std::path::PathBuf, u64) {
    damaged_at(15)
}

/// As `damaged_mid_log`, the payload of LSN `lsn` (in the first sync) flipped.
fn damaged_at(lsn: u64) -> (tempfile::TempDir, std::path::PathBuf, u64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut wal = SegmentedWal::open(SegmentedWalConfig::new(dir.path().into())).unwrap();
    for i in 1..=30u64 {
        wal.append(1, 0, 0, &payload(i)).unwrap();
        if i % 10 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.simulate_crash();
    let seg = segments(dir.path()).pop().unwrap();
    let offset = data_start(4096) + (lsn - 1) * record_size(PAYLOAD_LEN) as u64;
    let f = OpenOptions::new().read(true).write(true).open(&seg).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset + 40).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], offset + 40).unwrap();
    (dir, seg, offset)
}

#[test]
fn repair_cuts_mid_log_damage_after_yes_and_reports_the_dropped_range() {
    let (dir, seg, offset) = damaged_mid_log();
    let d = dir.path().to_str().unwrap();
    assert!(matches!(
        SegmentedWal::open(SegmentedWalConfig::new(dir.path().into())),
        Err(WalError::Corruption { lsn: 15, .. })
    ));
    let before = std::fs::read(&seg).unwrap();

    // Without --yes: says what it would do, changes nothing, exit 1.
    let o = run(&["repair", d]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let name = seg.file_name().unwrap().to_str().unwrap();
    assert!(stdout(&o).contains(&format!("would cut {name} at offset {offset}")), "{}", stdout(&o));
    assert!(stdout(&o).contains("run again with --yes"), "{}", stdout(&o));
    assert_eq!(std::fs::read(&seg).unwrap(), before);
    assert_eq!(segments(dir.path()).len(), 1);

    let o = run(&["repair", d, "--yes"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert!(text.contains(&format!("cut {name} at offset {offset}: dropped LSNs 15..=30")), "{text}");
    assert!(text.contains("the log now ends at LSN 14"), "{text}");
    assert!(text.contains("verify after the cut: clean"), "{text}");

    // The evidence stays: every data byte of the segment is as it was.
    let after = std::fs::read(&seg).unwrap();
    let start = data_start(4096) as usize;
    assert_eq!(after[start..], before[start..], "repair rewrote data bytes");

    // Strict mode opens it now, and the log ends before the damage.
    let wal = SegmentedWal::open(SegmentedWalConfig::new(dir.path().into())).unwrap();
    assert_eq!(wal.next_lsn(), 15);
    assert_eq!(wal.replay().unwrap().len(), 14);
    drop(wal);
    let o = run(&["verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run(&["repair", d, "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["damage"], false);
}

#[test]
fn repair_json_reports_the_cut() {
    let (dir, _, offset) = damaged_mid_log();
    let o = run(&["repair", dir.path().to_str().unwrap(), "--confirm", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["repaired"], true);
    assert_eq!(v["cut"]["offset"], offset);
    assert_eq!((v["dropped_first_lsn"].as_u64(), v["dropped_last_lsn"].as_u64()), (Some(15), Some(30)));
    assert_eq!(v["next_lsn"], 15);
    assert_eq!(v["clean_after"], true);
}

#[test]
fn repair_refuses_damage_in_a_sealed_segment_and_changes_nothing() {
    let dir = write_wal(400, None);
    let d = dir.path().to_str().unwrap();
    let first = &segments(dir.path())[0];
    let f = OpenOptions::new().read(true).write(true).open(first).unwrap();
    let at = data_start(4096) + 50;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 1], at).unwrap();
    let listing = || segments(dir.path()).iter().map(|p| std::fs::read(p).unwrap()).collect::<Vec<_>>();
    let before = listing();
    let o = run(&["repair", d, "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("not repaired") && stdout(&o).contains("PROBLEM "), "{}", stdout(&o));
    assert_eq!(listing(), before, "repair changed a file it refused to repair");
}

#[test]
fn repair_of_a_wal_a_writer_holds_is_refused() {
    let (dir, _, _) = damaged_mid_log();
    // Strict open refuses, so take the lock as another writer would.
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.path().join(directwal::io::LOCK_FILE))
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let o = run(&["repair", dir.path().to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
}

/// Damage to durable data at the segment's first record (I24): the
/// tolerant open keeps no record of it and sets the file aside, byte for
/// byte, instead of replacing it; repair says so, dry run and --yes alike,
/// and asks for no key ring (its header says plain).
#[test]
fn repair_sets_aside_a_segment_damaged_at_its_first_record() {
    let (dir, seg, _) = damaged_at(1);
    let (d, name) = (dir.path().to_str().unwrap(), seg.file_name().unwrap().to_str().unwrap());
    let before = std::fs::read(&seg).unwrap();
    let o = run(&["repair", d]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(&format!("would set {name} aside")), "{}", stdout(&o));
    assert_eq!(std::fs::read(&seg).unwrap(), before);
    let o = run(&["repair", d, "--yes"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert!(text.contains(&format!("set aside {name} as {name}.aside-1; LSNs 1..=30")), "{text}");
    assert!(text.contains("new records start at LSN 1") && text.contains("asks for no key ring"), "{text}");
    assert!(!text.contains("requires a key ring") && text.contains("verify after the repair: clean"), "{text}");
    assert_eq!(std::fs::read(dir.path().join(format!("{name}.aside-1"))).unwrap(), before, "the evidence");
    let mut wal = SegmentedWal::open(SegmentedWalConfig::new(dir.path().into())).unwrap();
    assert_eq!((wal.next_lsn(), wal.append(1, 0, 0, b"plain").unwrap()), (1, 1));
}
