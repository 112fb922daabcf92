//! Segment recycling (DESIGN I17): truncated segment files are kept as
//! spares and reused by new segments; their stale bytes never come back, a
//! file a reader still maps is never reused, and a full disk can still roll.
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use common::{faulty, payload};
use directwal::{SegmentedWal, SegmentedWalConfig, WalError};

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).segment(64 * 1024).chunk(64 * 1024).buffer(16 * 1024).build()
}

fn fill(wal: &mut SegmentedWal, n: u64) {
    for _ in 0..n {
        let lsn = wal.next_lsn();
        wal.append(1, 0, 0, &payload(lsn, 300)).unwrap();
    }
    wal.sync().unwrap();
}

/// Truncates every segment but the newest `keep`.
fn truncate_all_but(wal: &SegmentedWal, keep: usize) {
    let segs = wal.list_segments().unwrap();
    wal.truncate_before(segs[segs.len() - keep].first_lsn).unwrap();
}

fn spares(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("spare-"))
        .collect();
    v.sort();
    v
}

fn check_replay(wal: &SegmentedWal, first: u64, last: u64) {
    let recs = wal.replay().unwrap();
    assert_eq!(recs.first().map(|r| r.header.lsn), Some(first));
    assert_eq!(recs.len() as u64, last + 1 - first);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.header.lsn, first + i as u64);
        assert_eq!(r.payload, payload(r.header.lsn, 300), "LSN {}", r.header.lsn);
    }
}

#[test]
fn truncated_files_are_reused_and_their_old_records_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 1000);
    let segs = wal.list_segments().unwrap();
    assert!(segs.len() >= 5, "{} segments", segs.len());
    let inodes: Vec<u64> = segs[..3].iter().map(|s| std::fs::metadata(&s.path).unwrap().ino()).collect();

    // Three segments go; the default pool keeps two of their files.
    let res = wal.truncate_before(segs[3].first_lsn).unwrap();
    assert_eq!(res.segments_deleted, 3);
    assert!(segs[..3].iter().all(|s| !s.path.exists()));
    let kept = spares(dir.path());
    assert_eq!(kept.len(), 2, "{kept:?}");
    let kept_inodes: Vec<u64> = kept.iter().map(|p| std::fs::metadata(p).unwrap().ino()).collect();
    assert!(kept_inodes.iter().all(|i| inodes.contains(i)));
    assert!(wal.list_segments().unwrap().iter().all(|s| !s.path.starts_with("spare-")));

    // The next two segments start in those files, already full size.
    let before = wal.stats().segments_recycled;
    wal.roll_segment().unwrap();
    // 16 records of 512 bytes: the data ends on a block boundary, right
    // where the old segment's bytes begin (no zero padding in between).
    let first_new = wal.next_lsn();
    for _ in 0..16 {
        let lsn = wal.next_lsn();
        wal.append(1, 0, 0, &payload(lsn, 480)).unwrap();
    }
    wal.sync().unwrap();
    let active = wal.list_segments().unwrap().pop().unwrap();
    assert_eq!(active.used_bytes % 4096, 0);
    assert!(kept_inodes.contains(&std::fs::metadata(&active.path).unwrap().ino()));
    assert!(active.file_size >= 64 * 1024, "{}", active.file_size);
    assert_eq!(wal.stats().segments_recycled, before + 1);
    assert_eq!(spares(dir.path()).len(), 1);

    // A crash now leaves the old segment's records right after ours: they
    // are not ours (another salt) and not a torn write.
    let last = wal.next_lsn() - 1;
    wal.simulate_crash();
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.recovery_report().torn_tail, None);
    assert_eq!(wal.recovery_report().spare_files, 1);
    let recs = wal.replay().unwrap();
    assert_eq!(recs.first().unwrap().header.lsn, segs[3].first_lsn);
    assert_eq!(recs.last().unwrap().header.lsn, last);
    for (i, r) in recs.iter().enumerate() {
        let lsn = segs[3].first_lsn + i as u64;
        let len = if lsn >= first_new { 480 } else { 300 };
        assert_eq!((r.header.lsn, &r.payload), (lsn, &payload(lsn, len)));
    }
    assert_eq!(wal.next_lsn(), last + 1);
}

#[test]
fn a_torn_write_in_a_recycled_file_is_still_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 600);
    let segs = wal.list_segments().unwrap();
    wal.truncate_before(segs[2].first_lsn).unwrap();
    wal.roll_segment().unwrap();
    fill(&mut wal, 20);
    let acked = wal.next_lsn() - 1;
    for _ in 0..5 {
        let lsn = wal.next_lsn();
        wal.append(1, 0, 0, &payload(lsn, 300)).unwrap();
    }
    wal.sync().unwrap();
    let active = wal.list_segments().unwrap().pop().unwrap();
    assert!(wal.stats().segments_recycled > 0);
    wal.simulate_crash();
    // The last sync's first record lost its second half: a torn final write.
    let recs_per = 5u64;
    let rec = directwal::layout::record_size(300) as u64;
    let first_of_last = active.used_bytes - recs_per * rec;
    let f = std::fs::OpenOptions::new().write(true).open(&active.path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xa5; 200], first_of_last + 100).unwrap();
    drop(f);
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    let torn = wal.recovery_report().torn_tail.clone().expect("torn tail reported");
    assert_eq!((torn.offset, torn.lsn), (first_of_last, acked + 1));
    assert_eq!(torn.dropped_records, recs_per - 1);
    assert_eq!(torn.bytes_cut, recs_per * rec);
    check_replay(&wal, segs[2].first_lsn, acked);
}

#[test]
fn a_file_a_reader_still_maps_is_deleted_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 1000);
    let segs = wal.list_segments().unwrap();
    let reader = wal.reader();
    let mut cursor = reader.cursor(1);
    assert_eq!(cursor.next_page(5, usize::MAX).unwrap().records.len(), 5);
    // The cursor is inside segment 0; segments 1 and 2 nobody holds.
    wal.truncate_before(segs[3].first_lsn).unwrap();
    let kept: Vec<u64> = spares(dir.path()).iter().map(|p| std::fs::metadata(p).unwrap().ino()).collect();
    assert_eq!(kept.len(), 2);
    // Many new segments: both spares get reused and overwritten.
    fill(&mut wal, 1000);
    assert_eq!(spares(dir.path()).len(), 0);
    assert!(wal.stats().segments_recycled >= 2);
    // The cursor reads segment 0 to its end, byte-identical.
    let mut lsn = 6;
    while lsn <= segs[0].last_lsn {
        let page = cursor.next_page(50, usize::MAX).unwrap();
        for r in &page.records {
            assert_eq!((r.header.lsn, &r.payload), (lsn, &payload(lsn, 300)));
            lsn += 1;
        }
    }
    assert!(matches!(cursor.next_page(5, usize::MAX), Err(WalError::LsnTruncated { .. })));
}

#[test]
fn the_pool_keeps_at_most_recycle_segments_files_and_zero_deletes_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.writer_config.recycle_segments = 5;
    let mut wal = SegmentedWal::open(c.clone()).unwrap();
    fill(&mut wal, 1500);
    truncate_all_but(&wal, 2);
    assert_eq!(spares(dir.path()).len(), 5);
    drop(wal);
    // A reopen with a smaller pool deletes the extra spares; its fresh
    // segment starts in the one it keeps.
    c.writer_config.recycle_segments = 1;
    let mut wal = SegmentedWal::open(c.clone()).unwrap();
    assert_eq!(wal.recovery_report().spare_files, 1);
    assert_eq!((wal.stats().segments_recycled, spares(dir.path()).len()), (1, 0));
    fill(&mut wal, 500);
    truncate_all_but(&wal, 1);
    assert_eq!(spares(dir.path()).len(), 1);
    drop(wal);
    // No pool: spares left from before are deleted, truncation deletes.
    c.writer_config.recycle_segments = 0;
    let mut wal = SegmentedWal::open(c).unwrap();
    assert_eq!(spares(dir.path()).len(), 0);
    fill(&mut wal, 500);
    truncate_all_but(&wal, 1);
    assert_eq!(spares(dir.path()).len(), 0);
    assert_eq!(wal.stats().segments_recycled, 0);
}

#[test]
fn with_the_disk_full_a_spare_still_lets_the_log_roll() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = faulty();
    let mut wal = SegmentedWal::open_with_storage(cfg(dir.path()), storage.clone()).unwrap();
    fill(&mut wal, 600);
    let segs = wal.list_segments().unwrap();
    faults.enospc.store(true, Ordering::SeqCst);
    // Without a spare, a new segment needs space that is not there.
    assert!(matches!(wal.roll_segment(), Err(WalError::NoSpace { .. })));
    // A checkpoint frees segments; their files carry the log on.
    wal.truncate_before(segs[2].first_lsn).unwrap();
    for _ in 0..20 {
        let lsn = wal.next_lsn();
        wal.append(1, 0, 0, &payload(lsn, 300)).unwrap();
    }
    wal.sync().unwrap();
    assert_eq!(wal.stats().segments_recycled, 1);
    let last = wal.next_lsn() - 1;
    drop(wal);
    faults.enospc.store(false, Ordering::SeqCst);
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    check_replay(&wal, segs[2].first_lsn, last);
}

#[test]
fn spares_on_tmpfs_work_with_buffered_io() {
    let dir = common::tmpfs_dir();
    // Newer kernels give tmpfs O_DIRECT; either way the pool works.
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.direct_io_active(), common::accepts_o_direct(dir.path()));
    fill(&mut wal, 800);
    let segs = wal.list_segments().unwrap();
    wal.truncate_before(segs[3].first_lsn).unwrap();
    fill(&mut wal, 800);
    assert_eq!(wal.stats().segments_recycled, 2);
    let last = wal.next_lsn() - 1;
    wal.simulate_crash();
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    check_replay(&wal, segs[3].first_lsn, last);
}

#[test]
fn a_directory_reader_sees_a_recycled_segment_as_truncated_not_damaged() {
    // The reader stands for another process (`directwal dump`, a backup
    // tool) reading while the writer truncates and reuses segment files.
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 1000);
    let segs = wal.list_segments().unwrap();
    drop(wal);
    let reader = directwal::WalReader::open_dir(dir.path(), None).unwrap();
    let mut cursor = reader.cursor(1);
    assert_eq!(cursor.next_page(5, usize::MAX).unwrap().records.len(), 5);
    // The writer truncates segments 0 and 1 (their files become spares)
    // and writes on until both spares are reused and overwritten.
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    wal.truncate_before(segs[2].first_lsn).unwrap();
    fill(&mut wal, 1000);
    assert!(wal.stats().segments_recycled >= 2, "{:?}", wal.stats());
    // Segment 0's mapping now shows another segment's bytes; segment 1's
    // name is gone. Both are "truncated", never "corrupt".
    match cursor.next_page(1000, usize::MAX) {
        Err(WalError::LsnTruncated { requested, oldest }) => {
            assert!(requested <= segs[0].last_lsn, "{requested}");
            assert_eq!(oldest, segs[2].first_lsn);
        }
        other => panic!("expected LsnTruncated, got {:?}", other.map(|p| p.records.len())),
    }
    match reader.read_page(segs[1].first_lsn, 10, usize::MAX) {
        Err(WalError::LsnTruncated { oldest, .. }) => assert_eq!(oldest, segs[2].first_lsn),
        other => panic!("expected LsnTruncated, got {:?}", other.map(|p| p.records.len())),
    }
    // Segments the writer kept still read fine.
    let page = reader.read_page(segs[2].first_lsn, 10, usize::MAX).unwrap();
    assert_eq!(page.records[0].payload, payload(segs[2].first_lsn, 300));
}

#[test]
fn verify_beside_a_writer_that_truncates_reports_truncation_not_damage() {
    use directwal::check::{CheckOptions, check_dir};
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 1500);
    let segs = wal.list_segments().unwrap();
    drop(wal);
    // Once the check has done segment 0, a writer truncates segments 0–2
    // (two files become spares) and writes until both are reused.
    let mut calls = 0;
    let opts = CheckOptions { verify_records: true, ..Default::default() };
    let check = check_dir(dir.path(), &opts, &mut |_| {
        calls += 1;
        if calls == 1 {
            let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
            wal.truncate_before(segs[3].first_lsn).unwrap();
            fill(&mut wal, 1000);
            assert!(wal.stats().segments_recycled >= 2);
        }
    })
    .unwrap();
    assert!(check.is_clean(), "{:?}", check.problems().collect::<Vec<_>>());
    let health: Vec<&str> = check.segments.iter().map(|s| s.health()).collect();
    assert_eq!(&health[1..3], ["truncated", "truncated"], "{health:?}");
    assert!(health[3..].iter().all(|&h| h == "ok" || h == "torn-tail"), "{health:?}");
}

/// I17 (issue 15 finding 3, truncate's path): a segment file that has a
/// second name (a backup tool's hard link) is never kept as a spare, so no
/// new segment is ever written into the backup's inode; its name is deleted
/// as any truncated segment's, which leaves the other name's bytes alone.
#[test]
fn a_hard_linked_segment_is_not_kept_as_a_spare() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.writer_config.recycle_segments = 4;
    let mut wal = SegmentedWal::open(c).unwrap();
    fill(&mut wal, 1000);
    let oldest = wal.list_segments().unwrap()[0].path.clone();
    let linked = backup.path().join("backup.seg");
    std::fs::hard_link(&oldest, &linked).unwrap();
    let before = std::fs::read(&linked).unwrap();
    truncate_all_but(&wal, 1);
    let kept = spares(dir.path());
    assert!(!kept.is_empty(), "the other truncated segments are kept as spares");
    assert!(kept.iter().all(|p| std::fs::metadata(p).unwrap().ino() != std::fs::metadata(&linked).unwrap().ino()));
    assert_eq!(std::fs::metadata(&linked).unwrap().nlink(), 1, "the WAL's name is gone");
    fill(&mut wal, 600);
    assert!(std::fs::read(&linked).unwrap() == before, "the backup's bytes were overwritten");
}
