//! Replays of whole sealed segments read them in chunks on a second thread
//! (`reader/chunked.rs`, I26): a record cut by a chunk's end (header or
//! payload), a record longer than a chunk, and damage at a chunk's end give
//! exactly what the mapping (pages) gives, errors included.
mod common;

use std::path::Path;

use common::payload;
use directwal::layout::{RECORD_HEADER_LEN, data_start, record_size};
use directwal::{CorruptionKind, RecordFault, SegmentedWal, SegmentedWalConfig, WalError, WalReader};

/// `reader/chunked.rs` `CHUNK`: bytes per read.
const CHUNK: u64 = 2 << 20;
/// A payload longer than a chunk.
const BIG: usize = 3 << 20;

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(12 << 20).build()
}

/// Pushes 4 KiB records onto `lens` from offset `off` until one more record
/// would end 8 bytes before `to`: returns the offset of that record.
fn fill_to(lens: &mut Vec<usize>, mut off: u64, to: u64) -> u64 {
    while to - 8 - off >= 2 * 4096 {
        lens.push(4096 - RECORD_HEADER_LEN);
        off += 4096;
    }
    let gap = (to - 8 - off) as usize;
    lens.push(gap - RECORD_HEADER_LEN);
    to - 8
}

/// The log: a first sealed segment of about 12 MiB, read in chunks from
/// its start: record `cut` starts 8 bytes before the end of the first
/// chunk (its header is cut); the second chunk starts at `cut`, and the
/// `BIG` record `big` starts 8 bytes before its end (a chunk that holds no
/// whole record follows); then records of many lengths (payloads cut at
/// chunk ends), one more of them `BIG`. Returns (payload lengths by LSN -
/// 1, `cut`, `big`, the sealed segment's last LSN).
fn write(dir: &Path) -> (Vec<usize>, u64, u64, u64) {
    let mut lens = Vec::new();
    let at = fill_to(&mut lens, data_start(4096), data_start(4096) + CHUNK);
    let cut = lens.len() as u64 + 1;
    lens.push(100);
    fill_to(&mut lens, at + record_size(100) as u64, at + CHUNK);
    let big = lens.len() as u64 + 1;
    lens.push(BIG);
    while lens.len() < 9_000 {
        let lsn = lens.len() as u64 + 1;
        lens.push(if lsn == big + 300 { BIG } else { (lsn * 7919 % 4000) as usize });
    }
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    for (i, &len) in lens.iter().enumerate() {
        let lsn = i as u64 + 1;
        wal.append(1, lsn as u32, 0, &payload(lsn, len)).unwrap();
    }
    wal.sync().unwrap();
    let first = &wal.list_segments().unwrap()[0];
    assert!(first.sealed && first.last_lsn > big + 300 && first.used_bytes > 4 * CHUNK, "{first:?}");
    (lens, cut, big, first.last_lsn)
}

/// Offset of record `lsn` of the first segment.
fn offset_of(lens: &[usize], lsn: u64) -> u64 {
    data_start(4096) + lens[..lsn as usize - 1].iter().map(|&l| record_size(l) as u64).sum::<u64>()
}

/// Every durable record through the mapping: pages of at most 1,000.
fn paged(reader: &WalReader) -> directwal::Result<Vec<directwal::WalRecord>> {
    let (mut out, mut from) = (Vec::new(), 0);
    loop {
        let page = reader.read_page(from, 1_000, usize::MAX)?;
        out.extend(page.records);
        if !page.has_more {
            return Ok(out);
        }
        from = page.next_lsn;
    }
}

#[test]
fn records_cut_by_chunk_ends_and_longer_than_a_chunk_replay_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (lens, cut, big, _) = write(dir.path());
    assert_eq!(offset_of(&lens, cut), data_start(4096) + CHUNK - 8, "the header of `cut` straddles");
    assert_eq!(offset_of(&lens, big), offset_of(&lens, cut) + CHUNK - 8, "the header of `big` straddles");
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    let all = wal.replay().unwrap();
    assert_eq!(all.len(), lens.len());
    for (i, r) in all.iter().enumerate() {
        let lsn = i as u64 + 1;
        assert_eq!((r.header.lsn, r.header.tenant_id), (lsn, lsn as u32));
        assert_eq!(r.payload, payload(lsn, lens[i]), "payload of LSN {lsn}");
    }
    assert_eq!((all[big as usize - 1].payload.len(), all[big as usize + 299].payload.len()), (BIG, BIG));
    assert_eq!(paged(&wal.reader()).unwrap(), all, "the mapping reads the same records");
    // Lent, and from the middle of the sealed segment (before and after the big record).
    let mut lent = Vec::new();
    wal.visit_durable(0, |r| {
        lent.push((r.header.lsn, r.payload == payload(r.header.lsn, lens[r.header.lsn as usize - 1])));
        true
    })
    .unwrap();
    assert_eq!(lent, (1..=lens.len() as u64).map(|l| (l, true)).collect::<Vec<_>>());
    for from in [cut - 1, cut, cut + 1, big, big + 1, big + 300] {
        assert_eq!(wal.replay_from(from).unwrap(), all[from as usize - 1..], "replay from {from}");
    }
}

/// Sets the length field of record `lsn` (at `off`) of the first segment.
fn set_len(dir: &Path, off: u64, len: u32) {
    let path = &common::segment_files(dir)[0];
    let mut bytes = std::fs::read(path).unwrap();
    bytes[off as usize + 4..off as usize + 8].copy_from_slice(&len.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupt_length_at_a_chunk_end_is_the_error_the_mapping_reports() {
    let base = tempfile::tempdir().unwrap();
    let (lens, cut, big, last) = write(base.path());
    let big_len = (BIG + 16) as u32;
    // (record, length written, the fault): impossible, past the data, into the next record.
    let cases = [
        (cut, u32::MAX, RecordFault::BadField("payload length")),
        (cut, 60 << 20, RecordFault::Truncated),
        (cut, 100 + 8, RecordFault::BadCrc),
        (big, 60 << 20, RecordFault::Truncated),
        (big, big_len, RecordFault::BadCrc),
        (big + 300, big_len, RecordFault::BadCrc),
    ];
    let scratch = tempfile::tempdir().unwrap();
    for (i, (lsn, len, fault)) in cases.into_iter().enumerate() {
        let dir = scratch.path().join(format!("case{i}"));
        common::copy_dir(base.path(), &dir);
        let off = offset_of(&lens, lsn);
        set_len(&dir, off, len);
        let wal = SegmentedWal::open(cfg(&dir)).unwrap();
        let err = wal.replay().unwrap_err();
        let ctx = format!("LSN {lsn} with length {len}: {err}");
        match &err {
            WalError::Corruption { segment, offset, lsn: at, kind: CorruptionKind::Record(f) } => {
                assert!(segment.ends_with(".seg") && (*offset, *at, *f) == (off, lsn, fault), "{ctx}");
            }
            other => panic!("{ctx}: {other:?}"),
        }
        // The mapping's verdict, word for word.
        let mapped = paged(&wal.reader()).unwrap_err();
        assert_eq!(format!("{mapped:?}"), format!("{err:?}"), "{ctx}");
        // Every record before the damage is lent first, none after it.
        let mut seen = 0;
        let visit = wal.visit_durable(0, |r| {
            seen += 1;
            assert_eq!(r.header.lsn, seen);
            true
        });
        assert_eq!(format!("{:?}", visit.unwrap_err()), format!("{err:?}"), "{ctx}");
        assert_eq!(seen, lsn - 1, "{ctx}");
        // A read that stops before the damage does not see it (the
        // read-ahead thread has, further on).
        let mut taken = 0;
        let more = wal.visit_durable(0, |_| {
            taken += 1;
            taken < lsn - 1
        });
        assert!(more.unwrap() && taken == lsn - 1 && lsn <= last, "{ctx}");
    }
}
