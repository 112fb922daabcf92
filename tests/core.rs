//! The public API and its behaviour across reopen.
mod common;

use common::{payload, segment_files};
use directwal::{RecordType, SegmentedWal, SegmentedWalConfig, WalError};

fn cfg(dir: &std::path::Path, target: u64) -> SegmentedWalConfig {
    common::config(dir).segment(target).build()
}

fn assert_records(wal: &SegmentedWal, first: u64, count: u64, len: usize) {
    let recs = wal.replay().unwrap();
    assert_eq!(recs.len() as u64, count);
    for (i, r) in recs.iter().enumerate() {
        let lsn = first + i as u64;
        assert_eq!(r.header.lsn, lsn);
        assert_eq!(r.payload, payload(lsn, len), "payload of LSN {lsn}");
        assert_eq!(r.header.tenant_id, lsn as u32);
        assert_eq!(r.header.vshard_id, (lsn % 7) as u16);
        assert_eq!(r.header.record_type, RecordType::Put as u16);
        assert!(!r.is_encrypted());
    }
}

fn append_n(wal: &mut SegmentedWal, n: u64, len: usize) {
    for _ in 0..n {
        let lsn = wal.next_lsn();
        assert_eq!(wal.append(RecordType::Put as u16, lsn as u32, (lsn % 7) as u16, &payload(lsn, len)).unwrap(), lsn);
    }
}

#[test]
fn lsns_start_at_one_and_survive_reopen_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 16 * 1024)).unwrap();
    assert_eq!(wal.next_lsn(), 1);
    append_n(&mut wal, 500, 200);
    wal.sync().unwrap();
    assert!(wal.list_segments().unwrap().len() > 3, "tiny segments must roll");
    assert_records(&wal, 1, 500, 200);
    drop(wal);

    let mut wal = SegmentedWal::open(cfg(dir.path(), 16 * 1024)).unwrap();
    assert_eq!(wal.next_lsn(), 501);
    // I6: the reopened WAL writes into a fresh segment named by next_lsn.
    assert_eq!(wal.active_segment_first_lsn(), 501);
    append_n(&mut wal, 100, 200);
    wal.sync().unwrap();
    assert_records(&wal, 1, 600, 200);
}

#[test]
fn tiny_segment_target_of_100_bytes_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 100)).unwrap();
    append_n(&mut wal, 20, 150);
    wal.sync().unwrap();
    let segs = wal.list_segments().unwrap();
    assert_eq!(segs.len(), 20, "one record per segment");
    assert!(segs.windows(2).all(|w| w[0].last_lsn + 1 == w[1].first_lsn));
    assert_records(&wal, 1, 20, 150);
}

#[test]
fn replay_from_limit_pages_with_exact_has_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 8 * 1024)).unwrap();
    append_n(&mut wal, 100, 100);
    wal.sync().unwrap();
    let mut from = 1;
    let mut seen = Vec::new();
    loop {
        let (page, more) = wal.replay_from_limit(from, 7).unwrap();
        assert!(page.len() <= 7);
        seen.extend(page.iter().map(|r| r.header.lsn));
        if !more {
            break;
        }
        from = page.last().unwrap().header.lsn + 1;
    }
    assert_eq!(seen, (1..=100).collect::<Vec<_>>());
    // has_more is exact at the boundary: exactly the remaining count.
    assert!(!wal.replay_from_limit(91, 10).unwrap().1);
    assert!(wal.replay_from_limit(90, 10).unwrap().1);
    assert_eq!(wal.replay_from_limit(101, 10).unwrap(), (vec![], false));
    assert_eq!(wal.replay_from(50).unwrap().len(), 51);
}

#[test]
fn replay_returns_only_synced_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 1 << 20)).unwrap();
    append_n(&mut wal, 10, 50);
    wal.sync().unwrap();
    append_n(&mut wal, 5, 50);
    assert_eq!(wal.replay().unwrap().len(), 10);
    assert!(!wal.replay_from_limit(1, 10).unwrap().1);
    wal.sync().unwrap();
    assert_eq!(wal.replay().unwrap().len(), 15);
}

#[test]
fn truncate_before_deletes_only_sealed_segments_below_the_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 4 * 1024)).unwrap();
    append_n(&mut wal, 200, 100);
    wal.sync().unwrap();
    let segs = wal.list_segments().unwrap();
    let cut = segs[3].first_lsn + 1; // inside segment 3: it must stay
    let before = wal.total_size_bytes().unwrap();
    let r = wal.truncate_before(cut).unwrap();
    assert_eq!(r.segments_deleted, 3);
    assert_eq!(before - wal.total_size_bytes().unwrap(), r.bytes_reclaimed);
    let left = wal.list_segments().unwrap();
    assert_eq!(left[0].first_lsn, segs[3].first_lsn);
    assert_eq!(wal.replay().unwrap()[0].header.lsn, segs[3].first_lsn);
    match wal.replay_from(1) {
        Err(WalError::LsnTruncated { oldest, requested: 1 }) => assert_eq!(oldest, segs[3].first_lsn),
        other => panic!("expected LsnTruncated, got {other:?}"),
    }
    // The active segment is never deleted, even when everything is below.
    let active = wal.active_segment_first_lsn();
    wal.truncate_before(u64::MAX).unwrap();
    let left = wal.list_segments().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].first_lsn, active);
    drop(wal);
    // A missing prefix is not an error (I9).
    let wal = SegmentedWal::open(cfg(dir.path(), 4 * 1024)).unwrap();
    assert_eq!(wal.next_lsn(), 201);
}

#[test]
fn roll_segment_seals_and_list_segments_describes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 1 << 20)).unwrap();
    append_n(&mut wal, 3, 10);
    wal.roll_segment().unwrap();
    wal.roll_segment().unwrap(); // no-op: the new active segment is empty
    append_n(&mut wal, 2, 10);
    wal.sync().unwrap();
    let segs = wal.list_segments().unwrap();
    assert_eq!(segs.len(), 2);
    assert!(segs[0].sealed && !segs[1].sealed);
    assert_eq!((segs[0].first_lsn, segs[0].last_lsn, segs[0].record_count), (1, 3, 3));
    assert_eq!((segs[1].first_lsn, segs[1].last_lsn, segs[1].record_count), (4, 5, 2));
    assert_eq!(segs[1].path.file_name().unwrap(), "wal-00000000000000000004.seg");
    assert_eq!(wal.active_segment_first_lsn(), 4);
}

#[test]
fn oversized_payload_is_refused_and_burns_no_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 1 << 20)).unwrap();
    append_n(&mut wal, 1, 10);
    let big = vec![0u8; directwal::MAX_PAYLOAD_SIZE + 1];
    assert!(matches!(wal.append(1, 0, 0, &big), Err(WalError::PayloadTooLarge { .. })));
    assert_eq!(wal.append(1, 0, 0, b"next").unwrap(), 2);
}

#[test]
fn large_records_span_buffers_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 1 << 20);
    c.writer_config.write_buffer_size = 64 * 1024;
    let mut wal = SegmentedWal::open(c.clone()).unwrap();
    for len in [0usize, 1, 4095, 4096, 100_000, 3 << 20, 7] {
        let lsn = wal.next_lsn();
        wal.append(1, lsn as u32, (lsn % 7) as u16, &payload(lsn, len)).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let wal = SegmentedWal::open(c).unwrap();
    let recs = wal.replay().unwrap();
    let lens: Vec<usize> = recs.iter().map(|r| r.payload.len()).collect();
    assert_eq!(lens, [0, 1, 4095, 4096, 100_000, 3 << 20, 7]);
    for r in recs {
        assert_eq!(r.payload, payload(r.header.lsn, r.payload.len()));
    }
}

#[test]
fn many_reopens_do_not_pile_up_empty_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 1 << 20)).unwrap();
    append_n(&mut wal, 5, 10);
    wal.sync().unwrap();
    drop(wal);
    for _ in 0..10 {
        let wal = SegmentedWal::open(cfg(dir.path(), 1 << 20)).unwrap();
        assert_eq!(wal.next_lsn(), 6);
        wal.simulate_crash();
    }
    assert_eq!(segment_files(dir.path()).len(), 2, "one sealed + one empty active");
    let wal = SegmentedWal::open(cfg(dir.path(), 1 << 20)).unwrap();
    assert_records(&wal, 1, 5, 10);
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _wal = SegmentedWal::open(cfg(dir.path(), 1 << 20)).unwrap();
    assert!(matches!(SegmentedWal::open(cfg(dir.path(), 1 << 20)), Err(WalError::Locked { .. })));
}

#[test]
fn segmented_wal_is_send_and_works_behind_a_mutex() {
    fn assert_send<T: Send>() {}
    assert_send::<SegmentedWal>();
    let dir = tempfile::tempdir().unwrap();
    let wal = std::sync::Arc::new(std::sync::Mutex::new(SegmentedWal::open(cfg(dir.path(), 1 << 20)).unwrap()));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    let mut w = wal.lock().unwrap();
                    w.append(1, t, 0, &i.to_le_bytes()).unwrap();
                    w.sync().unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    let recs = wal.lock().unwrap().replay().unwrap();
    assert_eq!(recs.len(), 200);
    assert!(recs.iter().enumerate().all(|(i, r)| r.header.lsn == i as u64 + 1));
}

#[test]
fn bytes_on_disk_per_synced_small_record_are_close_to_payload_plus_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 64 << 20)).unwrap();
    for i in 0..200u64 {
        wal.append(1, 0, 0, &payload(i, 128)).unwrap();
        wal.sync().unwrap();
    }
    let used: u64 = wal.list_segments().unwrap().iter().map(|s| s.used_bytes).sum();
    let data = used - directwal::layout::data_start(4096);
    // No padding per sync: every synced record costs exactly its own size.
    assert_eq!(data, 200 * directwal::layout::record_size(128) as u64);
}

#[test]
fn a_write_buffer_smaller_than_two_blocks_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), 8 * 1024);
    c.writer_config.write_buffer_size = 1;
    let mut wal = SegmentedWal::open(c).unwrap();
    append_n(&mut wal, 100, 300);
    wal.sync().unwrap();
    assert_records(&wal, 1, 100, 300);
}

#[test]
fn stats_count_every_record_made_durable_including_by_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 8 * 1024)).unwrap();
    append_n(&mut wal, 300, 100); // rolls several times, each roll syncs
    wal.sync().unwrap();
    let s = wal.stats();
    assert!(wal.list_segments().unwrap().len() > 3);
    assert_eq!((s.appends, s.synced_records), (300, 300));
    assert!(s.syncs > 1 && s.records_per_sync > 1.0, "{s:?}");
}

#[test]
fn segments_of_format_version_1_still_open_and_replay() {
    // Version 2 added the header's flags byte; a WAL written by version 1
    // (flags byte zero, version field 1) must open, replay and continue.
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path(), 16 * 1024)).unwrap();
    append_n(&mut wal, 200, 100);
    drop(wal);
    for seg in segment_files(dir.path()) {
        let mut bytes = std::fs::read(&seg).unwrap();
        // Every new header is version 4 (FORMAT.md, Versioning; DESIGN I26).
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 4);
        assert_eq!(bytes[57], 0, "a fresh segment is not recycled");
        bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..124]);
        bytes[124..128].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&seg, &bytes).unwrap();
    }
    let mut wal = SegmentedWal::open(cfg(dir.path(), 16 * 1024)).unwrap();
    assert_records(&wal, 1, 200, 100);
    append_n(&mut wal, 10, 100);
    drop(wal);
    let wal = SegmentedWal::open(cfg(dir.path(), 16 * 1024)).unwrap();
    assert_records(&wal, 1, 210, 100);
}
