//! Paginated, lock-free readers (DESIGN "Readers", I10, I18).
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::payload;
use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::{SegmentedWal, SegmentedWalConfig, WalError, WalReader};

fn cfg(dir: &std::path::Path) -> SegmentedWalConfig {
    common::config(dir).segment(16 * 1024).chunk(16 * 1024).buffer(8 * 1024).build()
}

fn fill(wal: &mut SegmentedWal, n: u64) {
    for _ in 0..n {
        let lsn = wal.next_lsn();
        wal.append(1, 0, 0, &payload(lsn, 100)).unwrap();
    }
    wal.sync().unwrap();
}

#[test]
fn reader_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<WalReader>();
}

#[test]
fn pages_cross_segment_boundaries_with_exact_has_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 500);
    let segs = wal.list_segments().unwrap();
    assert!(segs.len() > 4);
    let r = wal.reader();
    // A page that ends exactly at a segment boundary, and one that crosses it.
    let end1 = segs[0].last_lsn;
    let p = r.read_page(1, end1 as usize, usize::MAX).unwrap();
    assert_eq!((p.records.len() as u64, p.next_lsn, p.has_more), (end1, end1 + 1, true));
    let p = r.read_page(end1 - 2, 10, usize::MAX).unwrap();
    let lsns: Vec<u64> = p.records.iter().map(|r| r.header.lsn).collect();
    assert_eq!(lsns, (end1 - 2..end1 + 8).collect::<Vec<_>>());
    // has_more is false exactly at the end.
    assert!(!r.read_page(491, 10, usize::MAX).unwrap().has_more);
    assert!(r.read_page(490, 10, usize::MAX).unwrap().has_more);
    let last = r.read_page(501, 10, usize::MAX).unwrap();
    assert_eq!((last.records.len(), last.next_lsn, last.has_more), (0, 501, false));
    // max_bytes bounds a page, but a page always makes progress.
    let p = r.read_page(1, 1000, 350).unwrap();
    assert_eq!(p.records.len(), 3);
    assert_eq!(r.read_page(1, 1000, 1).unwrap().records.len(), 1);
    // A cursor walks everything in pages, every payload intact.
    let mut c = r.cursor(0);
    let mut seen = Vec::new();
    loop {
        let p = c.next_page(37, usize::MAX).unwrap();
        for rec in &p.records {
            assert_eq!(rec.payload, payload(rec.header.lsn, 100));
        }
        seen.extend(p.records.iter().map(|r| r.header.lsn));
        if !p.has_more {
            break;
        }
    }
    assert_eq!(seen, (1..=500).collect::<Vec<_>>());
}

#[test]
fn a_concurrent_reader_sees_every_durable_record_once_in_order_and_nothing_unsynced() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    let reader = wal.reader();
    // LSNs up to here may be durable: set just before each sync is called.
    let sync_started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let total = 6_000u64;
    let r = {
        let (sync_started, done) = (sync_started.clone(), done.clone());
        std::thread::spawn(move || {
            let mut cursor = reader.cursor(1);
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = cursor.next_page(50, usize::MAX).unwrap();
                let bound = sync_started.load(Ordering::SeqCst);
                for rec in &page.records {
                    assert!(rec.header.lsn <= bound, "LSN {} returned before its sync (bound {bound})", rec.header.lsn);
                    assert_eq!(rec.payload, payload(rec.header.lsn, 100));
                }
                seen.extend(page.records.iter().map(|r| r.header.lsn));
                if finished && !page.has_more {
                    return seen;
                }
            }
        })
    };
    let mut lsn = 0;
    while lsn < total {
        // 120 records (~16 KiB): full-buffer writes put them in the file before the sync.
        for _ in 0..120 {
            lsn = wal.append(1, 0, 0, &payload(wal.next_lsn(), 100)).unwrap();
        }
        std::thread::yield_now();
        sync_started.store(lsn, Ordering::SeqCst);
        wal.sync().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = r.join().unwrap();
    assert_eq!(seen, (1..=lsn).collect::<Vec<_>>());
}

#[test]
fn a_cursor_keeps_reading_a_segment_truncated_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 400);
    let segs = wal.list_segments().unwrap();
    let r = wal.reader();
    let mut c = r.cursor(1);
    let first = c.next_page(10, usize::MAX).unwrap();
    assert_eq!(first.records.len(), 10);
    // Delete the first two segments (and their files) under the cursor.
    let res = wal.truncate_before(segs[2].first_lsn).unwrap();
    assert_eq!(res.segments_deleted, 2);
    assert!(!segs[0].path.exists());
    // The cursor finishes the segment it was in; a fresh read is told to snapshot.
    let rest = c.next_page(1000, usize::MAX).unwrap();
    assert_eq!(rest.records.first().unwrap().header.lsn, 11);
    assert_eq!(rest.next_lsn, segs[0].last_lsn + 1);
    match r.read_page(1, 10, usize::MAX) {
        Err(WalError::LsnTruncated { requested, oldest }) => assert_eq!((requested, oldest), (1, segs[2].first_lsn)),
        other => panic!("expected LsnTruncated, got {other:?}"),
    }
    // Segment 2 was deleted before the cursor entered it.
    assert!(matches!(c.next_page(10, usize::MAX), Err(WalError::LsnTruncated { .. })));
}

#[test]
fn a_directory_reader_returns_only_fully_valid_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 300);
    for _ in 0..5 {
        let lsn = wal.next_lsn();
        wal.append(1, 0, 0, &payload(lsn, 100)).unwrap();
    }
    wal.sync().unwrap();
    let seg = wal.list_segments().unwrap().last().unwrap().clone();
    wal.simulate_crash();
    // Tear the last record.
    let mut bytes = std::fs::read(&seg.path).unwrap();
    let cut = (seg.used_bytes - 50) as usize;
    bytes[cut..seg.used_bytes as usize].fill(0);
    std::fs::write(&seg.path, bytes).unwrap();
    let r = WalReader::open_dir(dir.path(), None).unwrap();
    assert_eq!(r.durable_lsn(), 304);
    let p = r.read_page(0, 10_000, usize::MAX).unwrap();
    assert_eq!(p.records.len(), 304);
    assert!(!p.has_more);
    assert!(p.records.iter().all(|rec| rec.payload == payload(rec.header.lsn, 100)));
}

#[test]
fn replay_agrees_with_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 250);
    let via_reader = wal.reader().read_page(0, usize::MAX, usize::MAX).unwrap().records;
    assert_eq!(wal.replay().unwrap(), via_reader);
    assert_eq!(wal.replay_from_limit(100, 20).unwrap().0, via_reader[99..119].to_vec());
    // The borrowing visitor sees the same records, and stops where told.
    let mut visited = Vec::new();
    let more = wal
        .visit_durable(100, |r| {
            visited.push(r.to_record());
            visited.len() < 20
        })
        .unwrap();
    assert!(more);
    assert_eq!(visited, via_reader[99..119].to_vec());
    // Unsynced records are not lent either.
    wal.append(1, 0, 0, b"not yet durable").unwrap();
    let mut n = 0;
    assert!(
        !wal.visit_durable(0, |_| {
            n += 1;
            true
        })
        .unwrap()
    );
    assert_eq!(n, 250);
}

#[test]
fn readers_coming_and_going_always_see_exactly_the_written_bytes() {
    // The writer mirrors its writes for followers only while readers exist;
    // in between, the mirror must not keep bytes that a tail rewrite changed.
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    for round in 0..30 {
        let follower = (round % 3 != 0).then(|| wal.reader());
        for _ in 0..7 {
            let lsn = wal.next_lsn();
            wal.append(1, 0, 0, &payload(lsn, 100 + (lsn % 50) as usize)).unwrap();
        }
        wal.sync().unwrap();
        for r in follower.into_iter().chain(std::iter::once(wal.reader())) {
            let recs = r.read_page(0, usize::MAX, usize::MAX).unwrap().records;
            assert_eq!(recs.len() as u64, wal.next_lsn() - 1);
            for rec in recs {
                assert_eq!(rec.payload, payload(rec.header.lsn, 100 + (rec.header.lsn % 50) as usize), "round {round}");
            }
        }
    }
}

#[test]
fn a_full_page_does_not_read_the_record_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    fill(&mut wal, 200);
    drop(wal);
    // Damage LSN 10 of the first (sealed) segment.
    let first = &common::segment_files(dir.path())[0];
    let size = directwal::layout::record_size(100) as u64;
    let off = directwal::layout::data_start(4096) + 9 * size + 40;
    let mut bytes = std::fs::read(first).unwrap();
    bytes[off as usize] ^= 1;
    std::fs::write(first, bytes).unwrap();
    let r = WalReader::open_dir(dir.path(), None).unwrap();
    // Pages that end at LSN 9 succeed; the one that includes LSN 10 names it.
    let p = r.read_page(1, 9, usize::MAX).unwrap();
    assert_eq!((p.records.len(), p.next_lsn, p.has_more), (9, 10, true));
    assert_eq!(r.read_page(9, 1, usize::MAX).unwrap().records[0].header.lsn, 9);
    match r.read_page(9, 2, usize::MAX) {
        Err(WalError::Corruption { lsn, offset, .. }) => assert_eq!((lsn, offset), (10, off - 40)),
        other => panic!("expected corruption at LSN 10, got {other:?}"),
    }
}

#[test]
fn followers_read_exact_bytes_while_the_writer_reuses_its_buffers() {
    // Syncs of a few hundred KiB to a few MiB: followers read the writer's
    // buffers (8 MiB of them kept shared), which the writer reuses once
    // they leave the tail. A buffer a follower still reads from must never
    // be written under it.
    let dir = tempfile::tempdir().unwrap();
    let c = common::config(dir.path()).segment(24 << 20).build();
    let mut wal = SegmentedWal::open(c).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let followers: Vec<_> = (0..2)
        .map(|k| {
            let (reader, done) = (wal.reader(), done.clone());
            std::thread::spawn(move || {
                let mut cursor = reader.cursor(1);
                let mut next = 1u64;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let page = cursor.next_page(if k == 0 { 700 } else { 5_000 }, usize::MAX).unwrap();
                    for rec in &page.records {
                        assert_eq!(rec.header.lsn, next);
                        assert_eq!(rec.payload, payload(next, 200 + (next % 97) as usize), "LSN {next}");
                        next += 1;
                    }
                    if finished && !page.has_more {
                        return next - 1;
                    }
                    if page.records.is_empty() {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut epoch = 0u64;
    while wal.next_lsn() < 150_000 {
        epoch += 1;
        for _ in 0..(1_000 + (epoch * 7_919) % 15_000) {
            let lsn = wal.next_lsn();
            wal.append(1, 0, 0, &payload(lsn, 200 + (lsn % 97) as usize)).unwrap();
        }
        wal.sync().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let last = wal.next_lsn() - 1;
    for f in followers {
        assert_eq!(f.join().unwrap(), last);
    }
    assert!(wal.list_segments().unwrap().len() > 1, "the log rolled while followed");
}

#[test]
fn reused_pages_hold_exactly_what_owned_pages_hold() {
    // Plain and encrypted segments, sealed and active, payloads of many
    // sizes; one PageBuf reused for every page, large pages then small.
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    let len = |lsn: u64| (lsn * 37 % 301) as usize;
    let append = |wal: &mut SegmentedWal, n: u64| {
        for _ in 0..n {
            let lsn = wal.next_lsn();
            wal.append(1, 7, 3, &payload(lsn, len(lsn))).unwrap();
        }
        wal.sync().unwrap();
    };
    append(&mut wal, 300);
    wal.set_encryption_ring(KeyRing::new(WalEncryptionKey::from_bytes(&[9u8; 32]))).unwrap();
    append(&mut wal, 300);
    let r = wal.reader();
    let mut buf = directwal::PageBuf::new();
    for (max_records, max_bytes) in [(1000, usize::MAX), (37, usize::MAX), (1000, 700), (5, 1), (1, usize::MAX)] {
        for from in [0, 1, 150, 299, 300, 301, 450, 600, 601] {
            let owned = r.read_page(from, max_records, max_bytes).unwrap();
            r.read_page_into(&mut buf, from, max_records, max_bytes).unwrap();
            assert_eq!(
                (buf.next_lsn(), buf.has_more(), buf.len()),
                (owned.next_lsn, owned.has_more, owned.records.len())
            );
            for (i, rec) in buf.iter().enumerate() {
                assert_eq!((rec.header, rec.payload), (owned.records[i].header, &owned.records[i].payload[..]));
                assert_eq!(rec.payload, payload(rec.header.lsn, len(rec.header.lsn)));
            }
            assert_eq!(buf.payloads().len(), owned.records.iter().map(|r| r.payload.len()).sum::<usize>());
        }
        // A cursor pages through all of it the same way either way.
        let (mut a, mut b) = (r.cursor(0), r.cursor(0));
        loop {
            let owned = a.next_page(max_records, max_bytes).unwrap();
            b.next_page_into(&mut buf, max_records, max_bytes).unwrap();
            let lent: Vec<_> = buf.iter().map(|rec| rec.to_record()).collect();
            assert_eq!(lent, owned.records);
            assert_eq!((b.position(), buf.has_more()), (a.position(), owned.has_more));
            if !owned.has_more {
                break;
            }
        }
        assert_eq!(b.position(), 601);
    }
}
