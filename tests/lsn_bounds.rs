//! LSNs never wrap (DESIGN I20): forged segments near `u64::MAX`.
mod common;

use std::path::{Path, PathBuf};

use common::segment_files;
use directwal::check::{CheckOptions, check_dir};
use directwal::layout::{RECORD_HEADER_LEN, data_start, record_size};
use directwal::{SegmentedWal, SegmentedWalConfig, WalError, WalHandle, WalReader, segment_file_name};

const MAX_LSN: u64 = u64::MAX - 1;

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(8 * 1024).chunk(4096).build()
}

/// A WAL whose only (empty) segment claims to start at `first_lsn`.
fn forged_wal(dir: &Path, first_lsn: u64) -> PathBuf {
    drop(SegmentedWal::open(cfg(dir)).unwrap());
    let seg = segment_files(dir).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[48..56].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..124]);
    bytes[124..128].copy_from_slice(&crc.to_le_bytes());
    let to = dir.join(segment_file_name(first_lsn));
    std::fs::write(&to, &bytes).unwrap();
    std::fs::remove_file(seg).unwrap();
    to
}

fn exhausted<T: std::fmt::Debug>(r: directwal::Result<T>, what: &str) {
    match r {
        Err(WalError::LsnExhausted { last_lsn }) => assert_eq!(last_lsn, MAX_LSN, "{what}"),
        other => panic!("{what}: expected LsnExhausted, got {other:?}"),
    }
}

#[test]
fn appends_stop_at_the_largest_lsn_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    forged_wal(dir.path(), MAX_LSN);
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.append(1, 0, 0, b"last").unwrap(), MAX_LSN);
    exhausted(wal.append(1, 0, 0, b"one too many"), "append");
    assert_eq!(wal.next_lsn(), u64::MAX);
    wal.sync().unwrap();
    exhausted(wal.roll_segment(), "roll");
    assert_eq!(wal.durable_lsn(), MAX_LSN);
    assert_eq!(wal.replay().unwrap().iter().map(|r| r.header.lsn).collect::<Vec<_>>(), [MAX_LSN]);
    assert!(wal.replay_from(u64::MAX).unwrap().is_empty());
    drop(wal);
    // Reopened: no segment can be started, appends are refused, reads work.
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    exhausted(wal.append(1, 0, 0, b"after reopen"), "append after reopen");
    assert_eq!(wal.replay().unwrap().len(), 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    drop(wal);
    let handle = WalHandle::open(cfg(dir.path())).unwrap();
    exhausted(handle.append(1, 0, 0, b"x"), "handle append");
    exhausted(handle.append_durable(1, 0, 0, b"x"), "handle append_durable");
    handle.sync().unwrap();
    assert_eq!(handle.replay_from(MAX_LSN).unwrap().len(), 1);
    drop(handle);
    let reader = WalReader::open_dir(dir.path(), None).unwrap();
    assert_eq!(reader.read_page(0, 10, usize::MAX).unwrap().records.len(), 1);
    assert!(reader.read_page(u64::MAX, 10, usize::MAX).unwrap().records.is_empty());
    assert!(check_dir(dir.path(), &CheckOptions::default(), &mut |_| {}).unwrap().is_clean());
}

#[test]
fn a_segment_starting_where_no_record_fits_is_corruption_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    forged_wal(dir.path(), u64::MAX);
    let name = segment_file_name(u64::MAX);
    match SegmentedWal::open(cfg(dir.path())) {
        Err(WalError::Corruption { segment, kind, .. }) => {
            assert_eq!(segment, name);
            assert!(kind.to_string().contains("no room"), "{kind}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    assert!(
        matches!(WalReader::open_dir(dir.path(), None), Err(WalError::Corruption { segment, .. }) if segment == name)
    );
    let check = check_dir(dir.path(), &CheckOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(check.problems().map(|p| p.segment.clone()).collect::<Vec<_>>(), [name]);
}

#[test]
fn a_forged_record_past_the_largest_lsn_is_cut_not_a_wrap_or_panic() {
    let dir = tempfile::tempdir().unwrap();
    forged_wal(dir.path(), MAX_LSN);
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.append(1, 0, 0, b"last").unwrap(), MAX_LSN);
    wal.sync().unwrap();
    wal.simulate_crash(); // unsealed: the next open scans it
    // A record claiming LSN u64::MAX right after it, with a valid CRC.
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let seed = crc32c::crc32c(&bytes[16..48]);
    let off = data_start(4096) as usize + record_size(4);
    let mut rec = vec![0u8; record_size(4)];
    rec[4..8].copy_from_slice(&4u32.to_le_bytes());
    rec[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    rec[16..20].copy_from_slice(&(off as u32).to_le_bytes());
    rec[24..26].copy_from_slice(&1u16.to_le_bytes());
    rec[RECORD_HEADER_LEN..RECORD_HEADER_LEN + 4].copy_from_slice(b"evil");
    let crc = crc32c::crc32c_append(seed, &rec[4..RECORD_HEADER_LEN + 4]);
    rec[..4].copy_from_slice(&crc.to_le_bytes());
    bytes[off..off + rec.len()].copy_from_slice(&rec);
    std::fs::write(&seg, &bytes).unwrap();
    // Read-only tools first (open would cut the tail).
    let reader = WalReader::open_dir(dir.path(), None).unwrap();
    let lsns: Vec<u64> = reader.read_page(0, 10, usize::MAX).unwrap().records.iter().map(|r| r.header.lsn).collect();
    assert_eq!(lsns, [MAX_LSN]);
    let check = check_dir(dir.path(), &CheckOptions { ring: None, verify_records: true }, &mut |_| {}).unwrap();
    assert_eq!(check.total_records(), 1);
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    let torn = wal.recovery_report().torn_tail.clone().expect("the forged record is cut as a torn tail");
    assert_eq!((torn.offset, torn.lsn), (off as u64, u64::MAX));
    assert_eq!(wal.replay().unwrap().len(), 1);
    exhausted(wal.append(1, 0, 0, b"x"), "append");
}

#[test]
fn truncating_an_exhausted_wal_keeps_the_segment_that_carries_next_lsn() {
    let dir = tempfile::tempdir().unwrap();
    forged_wal(dir.path(), MAX_LSN - 5);
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    for lsn in MAX_LSN - 5..=MAX_LSN {
        assert_eq!(wal.append(1, 0, 0, b"rec").unwrap(), lsn);
        if lsn % 2 == 0 && lsn < MAX_LSN {
            wal.roll_segment().unwrap();
        }
    }
    drop(wal);
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    let segments = wal.list_segments().unwrap().len();
    assert!(segments >= 3, "{segments}");
    // No active segment: the newest sealed one is all that says where LSNs stand.
    assert_eq!(wal.truncate_before(u64::MAX).unwrap().segments_deleted, segments - 1);
    exhausted(wal.append(1, 0, 0, b"x"), "append");
    drop(wal);
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.next_lsn(), u64::MAX, "LSNs did not restart");
    exhausted(wal.append(1, 0, 0, b"x"), "append after reopen");
}
