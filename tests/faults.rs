//! The O_DIRECT fallback, sticky failures (I3), out of space (I8) — injected through the
//! storage seam.
mod common;

use std::sync::atomic::Ordering;

use common::{faulty, payload};
use directwal::{SegmentedWal, SegmentedWalConfig, WalError};

fn cfg(dir: &std::path::Path) -> SegmentedWalConfig {
    common::config(dir).segment(64 * 1024).chunk(8 * 1024).build()
}

fn append(wal: &mut SegmentedWal) -> directwal::Result<u64> {
    let lsn = wal.next_lsn();
    wal.append(1, 0, 0, &payload(lsn, 300))
}

fn check_prefix(dir: &std::path::Path, at_least: u64) -> u64 {
    let wal = SegmentedWal::open(cfg(dir)).unwrap();
    let recs = wal.replay().unwrap();
    assert!(recs.len() as u64 >= at_least, "{} < {at_least}", recs.len());
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.header.lsn, i as u64 + 1);
        assert_eq!(r.payload, payload(r.header.lsn, 300));
    }
    recs.len() as u64
}

#[test]
fn refused_o_direct_falls_back_to_buffered_io_unless_required() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    faults.refuse_direct.store(true, Ordering::SeqCst);
    let mut wal = SegmentedWal::open_with_storage(cfg(dir.path()), storage.clone()).unwrap();
    assert!(!wal.direct_io_active());
    assert!(!wal.stats().direct_io);
    for _ in 0..50 {
        append(&mut wal).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(check_prefix(dir.path(), 50), 50);

    let mut strict = cfg(dir.path());
    strict.writer_config.require_direct_io = true;
    match SegmentedWal::open_with_storage(strict, storage) {
        Err(WalError::DirectIoUnsupported { .. }) => {}
        other => panic!("expected DirectIoUnsupported, got {other:?}"),
    }
    // The refused attempt leaves the WAL intact.
    assert_eq!(check_prefix(dir.path(), 50), 50);
}

#[test]
fn o_direct_is_the_default_on_a_disk_file_system() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert!(wal.direct_io_active(), "target dir is on ext4 here; O_DIRECT expected");
}

#[test]
fn works_on_tmpfs_with_or_without_o_direct() {
    let dir = common::tmpfs_dir();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    // Some kernels' tmpfs accepts O_DIRECT, older ones refuse it: the WAL
    // uses it exactly when the file system takes it, and falls back otherwise.
    assert_eq!(wal.direct_io_active(), common::accepts_o_direct(dir.path()));
    for _ in 0..20 {
        append(&mut wal).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(check_prefix(dir.path(), 20), 20);
}

/// A WAL on fault-injecting storage holding 10 acknowledged records and one
/// appended but not yet synced.
fn ten_acknowledged_one_pending(dir: &std::path::Path) -> (SegmentedWal, std::sync::Arc<common::Faults>) {
    let (storage, faults) = faulty();
    let mut wal = SegmentedWal::open_with_storage(cfg(dir), storage).unwrap();
    for _ in 0..10 {
        append(&mut wal).unwrap();
    }
    wal.sync().unwrap();
    append(&mut wal).unwrap();
    (wal, faults)
}

#[test]
fn failed_fdatasync_poisons_the_writer_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, faults) = ten_acknowledged_one_pending(dir.path());
    faults.eio_sync.store(true, Ordering::SeqCst);
    let first = wal.sync().unwrap_err();
    assert!(matches!(first, WalError::Io { op: "fdatasync", .. }), "{first:?}");
    faults.eio_sync.store(false, Ordering::SeqCst);
    // Sticky: a later sync must not report the lost write as durable.
    match wal.sync() {
        Err(WalError::Poisoned { first_failure }) => assert!(first_failure.contains("fdatasync")),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    assert!(matches!(append(&mut wal), Err(WalError::Poisoned { .. })));
    assert!(matches!(wal.roll_segment(), Err(WalError::Poisoned { .. })));
    drop(wal);
    check_prefix(dir.path(), 10);
}

#[test]
fn failed_write_poisons_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, faults) = ten_acknowledged_one_pending(dir.path());
    faults.eio_write_after.store(0, Ordering::SeqCst);
    assert!(matches!(wal.sync(), Err(WalError::Io { op: "write", .. })));
    faults.eio_write_after.store(-1, Ordering::SeqCst);
    assert!(matches!(wal.sync(), Err(WalError::Poisoned { .. })));
    drop(wal);
    check_prefix(dir.path(), 10);
}

#[test]
fn out_of_space_burns_no_lsn_and_the_wal_continues_after_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    let mut wal = SegmentedWal::open_with_storage(cfg(dir.path()), storage.clone()).unwrap();
    let mut acked = 0;
    let mut refused = 0;
    // Space runs out 30 times: appends that fit prepared space still
    // succeed; the first one that needs new space (a zero-filled chunk or a
    // new segment) is refused without consuming an LSN.
    for _ in 0..30 {
        faults.enospc.store(true, Ordering::SeqCst);
        loop {
            let expected = wal.next_lsn();
            match append(&mut wal) {
                Ok(lsn) => assert_eq!(lsn, expected),
                Err(WalError::NoSpace { .. }) => {
                    assert_eq!(wal.next_lsn(), expected, "a refused append consumed an LSN");
                    refused += 1;
                    break;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
            wal.sync().unwrap();
        }
        faults.enospc.store(false, Ordering::SeqCst);
        append(&mut wal).unwrap();
        wal.sync().unwrap();
        acked = wal.next_lsn() - 1;
    }
    assert_eq!(refused, 30);
    assert!(wal.list_segments().unwrap().len() > 2);
    drop(wal);
    // Reopen (space is back) and continue.
    assert_eq!(check_prefix(dir.path(), acked), acked);
    let mut wal = SegmentedWal::open_with_storage(cfg(dir.path()), storage).unwrap();
    assert_eq!(append(&mut wal).unwrap(), acked + 1);
}

#[test]
fn out_of_space_while_opening_a_fresh_segment_leaves_the_wal_reopenable() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    let mut wal = SegmentedWal::open_with_storage(cfg(dir.path()), storage.clone()).unwrap();
    for _ in 0..10 {
        append(&mut wal).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    faults.enospc.store(true, Ordering::SeqCst);
    assert!(matches!(SegmentedWal::open_with_storage(cfg(dir.path()), storage.clone()), Err(WalError::NoSpace { .. })));
    faults.enospc.store(false, Ordering::SeqCst);
    assert_eq!(check_prefix(dir.path(), 10), 10);
}

#[test]
fn out_of_space_during_a_large_write_is_refused_before_any_data_is_written() {
    // Large sync epochs reserve space with fallocate (DESIGN "Preparing
    // space"): running out is a typed, non-poisoning error at reservation,
    // never a failed data write.
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    let mut c = cfg(dir.path());
    c.segment_target_size = 64 << 20;
    c.writer_config.prepare_chunk_size = 1 << 20;
    let mut wal = SegmentedWal::open_with_storage(c.clone(), storage.clone()).unwrap();
    let big = |lsn: u64| payload(lsn, 64 * 1024);
    for _ in 0..40 {
        let lsn = wal.next_lsn();
        wal.append(1, 0, 0, &big(lsn)).unwrap();
    }
    wal.sync().unwrap(); // a 2.5 MiB epoch: the next ones reserve space
    let acked = wal.next_lsn() - 1;
    faults.enospc.store(true, Ordering::SeqCst);
    let refused_at = loop {
        let lsn = wal.next_lsn();
        match wal.append(1, 0, 0, &big(lsn)) {
            Ok(got) => assert_eq!(got, lsn),
            Err(WalError::NoSpace { op, .. }) => {
                assert_eq!(op, "fallocate");
                assert_eq!(wal.next_lsn(), lsn, "no LSN consumed");
                break lsn;
            }
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(lsn < acked + 200, "space never ran out");
    };
    faults.enospc.store(false, Ordering::SeqCst);
    assert_eq!(wal.append(1, 0, 0, &big(refused_at)).unwrap(), refused_at);
    wal.sync().unwrap();
    drop(wal);
    let wal = SegmentedWal::open_with_storage(c, storage).unwrap();
    let recs = wal.replay().unwrap();
    assert_eq!(recs.len() as u64, refused_at);
    assert!(recs.iter().all(|r| r.payload == big(r.header.lsn)));
}

#[test]
fn a_bulk_writer_s_next_segment_is_reserved_not_zero_filled() {
    // DESIGN "Preparing space": after large sync epochs the next segment gets fallocated space at
    // creation, as `ensure_space` would give it; zero-filling it would write
    // the prepared chunk twice.
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    let mut c = cfg(dir.path());
    c.segment_target_size = 4 << 20;
    c.writer_config.prepare_chunk_size = 4 << 20;
    let mut wal = SegmentedWal::open_with_storage(c.clone(), storage.clone()).unwrap();
    let big = |lsn: u64| payload(lsn, 64 * 1024);
    let mut rolls = 0;
    while rolls < 3 {
        let segments = wal.list_segments().unwrap().len();
        let before = faults.written.load(Ordering::SeqCst);
        let lsn = wal.next_lsn();
        wal.append(1, 0, 0, &big(lsn)).unwrap();
        if wal.list_segments().unwrap().len() > segments {
            rolls += 1;
            // This append wrote the old segment's unsynced data (under 2.1
            // MiB), its seal block and the next segment's header blocks; a
            // zero-filled chunk would add 4 MiB.
            let written = faults.written.load(Ordering::SeqCst) - before;
            assert!(written < 3 << 20, "roll {rolls} wrote {written} bytes");
        }
        if lsn.is_multiple_of(32) {
            wal.sync().unwrap(); // 2 MiB epochs
        }
    }
    wal.sync().unwrap();
    let last = wal.next_lsn() - 1;
    drop(wal);
    let recs = SegmentedWal::open_with_storage(c, storage).unwrap().replay().unwrap();
    assert_eq!(recs.len() as u64, last);
    assert!(recs.iter().all(|r| r.payload == big(r.header.lsn)));
}

#[test]
fn a_failed_background_write_is_never_acknowledged() {
    // I16: full buffers are written by a helper thread; a failure there
    // surfaces at the next storage operation, possibly inside the space
    // preparation of a later append, which does not poison by itself (I8).
    // It must stay recorded, so no later sync succeeds over the lost bytes.
    for k in 0..16 {
        let dir = tempfile::tempdir().unwrap();
        let (storage, faults) = faulty();
        let mut c = cfg(dir.path());
        c.writer_config.write_buffer_size = 16 * 1024;
        c.writer_config.prepare_chunk_size = 24 * 1024;
        let mut wal = SegmentedWal::open_with_storage(c.clone(), storage.clone()).unwrap();
        for _ in 0..20 {
            let lsn = wal.next_lsn();
            wal.append(1, 0, 0, &payload(lsn, 100)).unwrap();
        }
        wal.sync().unwrap();
        let mut acked = wal.next_lsn() - 1;
        faults.eio_write_after.store(k, Ordering::SeqCst);
        let mut failed = false;
        for step in 0..300u64 {
            let lsn = wal.next_lsn();
            let r = wal
                .append(1, 0, 0, &payload(lsn, 700))
                .and_then(|_| if step % 40 == 39 { wal.sync().map(|()| acked = lsn) } else { Ok(()) });
            if r.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "k={k}: the injected failure never surfaced");
        faults.eio_write_after.store(-1, Ordering::SeqCst);
        // The application retries. A failed zero-fill lost nothing and may
        // be retried; a failed data write must keep every sync failing. Any
        // sync that succeeds acknowledges its records, which must survive.
        for _ in 0..60 {
            let lsn = wal.next_lsn();
            if wal.append(1, 0, 0, &payload(lsn, 700)).is_ok() && wal.sync().is_ok() {
                acked = lsn;
            }
        }
        drop(wal);
        let recs = SegmentedWal::open_with_storage(c, storage)
            .unwrap_or_else(|e| panic!("k={k}: reopen refused: {e}"))
            .replay()
            .unwrap();
        assert!(recs.len() as u64 >= acked, "k={k}: acknowledged LSN {acked} lost ({} records)", recs.len());
        assert!(recs.iter().all(|r| r.payload == payload(r.header.lsn, if r.header.lsn <= 20 { 100 } else { 700 })));
    }
}

#[test]
fn a_failed_sync_write_poisons_and_readers_never_see_its_mirrored_records() {
    // With a reader alive, every write is also copied into the mirror
    // readers decode from, before the sync's fdatasync. A failure of that
    // write must fail the sync and poison, and readers must never be shown
    // the records it carried, though their bytes are in the mirror.
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    let mut c = cfg(dir.path());
    c.segment_target_size = 64 << 20;
    c.writer_config.prepare_chunk_size = 16 << 20;
    let mut wal = SegmentedWal::open_with_storage(c.clone(), storage.clone()).unwrap();
    let reader = wal.reader();
    let epoch = |wal: &mut SegmentedWal| {
        for _ in 0..4_000 {
            append(wal).unwrap(); // 4,000 x 332 B: a 1.3 MB sync epoch
        }
    };
    epoch(&mut wal);
    wal.sync().unwrap();
    let acked = wal.next_lsn() - 1;
    epoch(&mut wal);
    faults.eio_write_after.store(0, Ordering::SeqCst);
    assert!(matches!(wal.sync(), Err(WalError::Io { op: "write", .. })));
    faults.eio_write_after.store(-1, Ordering::SeqCst);
    assert!(matches!(wal.sync(), Err(WalError::Poisoned { .. })));
    let page = reader.read_page(1, usize::MAX, usize::MAX).unwrap();
    assert_eq!(page.records.len() as u64, acked, "a reader saw records of the failed sync");
    assert!(!page.has_more);
    for r in &page.records {
        assert_eq!(r.payload, payload(r.header.lsn, 300));
    }
    drop((wal, reader));
    let recs = SegmentedWal::open_with_storage(c, storage).unwrap().replay().unwrap();
    assert!(recs.len() as u64 >= acked);
    assert!(
        recs.iter().enumerate().all(|(i, r)| r.header.lsn == i as u64 + 1 && r.payload == payload(r.header.lsn, 300))
    );
}
