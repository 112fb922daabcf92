//! `directwal::segmented::{replay_all_segments, replay_from_limit_dir}`:
//! a WAL directory read without its writer returns durable, valid records
//! only, with the `has_more` rule of `SegmentedWal::replay_from_limit`.

mod common;

use std::os::unix::fs::OpenOptionsExt;

use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::segmented::{SegmentedWal, SegmentedWalConfig, replay_all_segments, replay_from_limit_dir};
use directwal::{RecordType, WalError};

fn config(dir: &std::path::Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(4096).build()
}

fn lsns(records: &[directwal::WalRecord]) -> Vec<u64> {
    records.iter().map(|r| r.header.lsn).collect()
}

#[test]
fn directory_replay_matches_the_writer_and_skips_what_is_not_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(config(tmp.path())).unwrap();
    for i in 0..200u32 {
        wal.append(RecordType::Put as u16, i, 0, &[i as u8; 100]).unwrap();
    }
    wal.sync().unwrap();
    wal.append(RecordType::Put as u16, 0, 0, b"in the buffer, not durable").unwrap();
    assert!(wal.list_segments().unwrap().len() > 2);

    let all = replay_all_segments(tmp.path()).unwrap();
    assert_eq!(all, wal.replay().unwrap());
    assert_eq!(lsns(&all), (1..=200).collect::<Vec<_>>());

    // has_more: true exactly when records follow the last one returned.
    assert!(!replay_from_limit_dir(tmp.path(), 0, 200).unwrap().1);
    assert!(replay_from_limit_dir(tmp.path(), 0, 199).unwrap().1);
    let (page, more) = replay_from_limit_dir(tmp.path(), 150, 10).unwrap();
    assert_eq!((lsns(&page), more), ((150..160).collect(), true));
    assert_eq!(replay_from_limit_dir(tmp.path(), 150, 10).unwrap(), wal.replay_from_limit(150, 10).unwrap());
    let (page, more) = replay_from_limit_dir(tmp.path(), 999, 10).unwrap();
    assert!(page.is_empty() && !more);
}

#[test]
fn directory_replay_cuts_a_torn_tail_and_refuses_without_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(config(tmp.path())).unwrap();
    for i in 0..3u32 {
        wal.append(RecordType::Put as u16, i, 0, b"durable").unwrap();
    }
    wal.sync().unwrap();
    let last = wal.list_segments().unwrap().pop().unwrap();
    wal.simulate_crash();
    // Garbage after the last record, as a torn write leaves it.
    let f = std::fs::OpenOptions::new().write(true).custom_flags(0).open(&last.path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xA5; 64], last.used_bytes).unwrap();
    assert_eq!(lsns(&replay_all_segments(tmp.path()).unwrap()), vec![1, 2, 3]);

    let enc = tmp.path().join("enc");
    let mut wal = SegmentedWal::open(config(&enc)).unwrap();
    wal.set_encryption_ring(KeyRing::new(WalEncryptionKey::from_bytes(&[7; 32]))).unwrap();
    wal.append(RecordType::Put as u16, 1, 0, b"secret").unwrap();
    wal.sync().unwrap();
    assert!(matches!(replay_all_segments(&enc), Err(WalError::KeyRequired { .. })));
}
