//! docs/FORMAT.md's "Worked example" hexdump, rebuilt byte for byte by the
//! writer, so the document and the code cannot drift apart.
//!
//! The writer runs the example (two records, each synced, then a roll that
//! seals the segment) on the simulated device. Four fields are random or
//! clock-dependent by design: `wal_id`, `salt`, `created_ms`, `sealed_ms`.
//! The test puts the document's values into them and recomputes the CRCs
//! that cover them by FORMAT.md's rules; every other byte is the writer's
//! own. The rebuilt image must equal the hexdump parsed from FORMAT.md at
//! test time, and the document's image (CRCs included) must open and replay
//! in directwal as the example says.

mod common;

use std::path::Path;
use std::sync::Arc;

use directwal::layout::{RECORD_HEADER_LEN, SEAL_LEN, SEGMENT_HEADER_LEN, data_start, record_size};
use directwal::sim::SimStorage;
use directwal::{SegmentedWal, segment_file_name};

const BLOCK: usize = 4096;
/// Header fields set by randomness or the clock, as byte ranges.
const WAL_ID: std::ops::Range<usize> = 16..32;
const SALT: std::ops::Range<usize> = 32..48;
const CREATED_MS: std::ops::Range<usize> = 64..72;
/// `sealed_ms`, in the seal block (block 1).
const SEALED_MS: std::ops::Range<usize> = BLOCK + 32..BLOCK + 40;

/// The hexdump of FORMAT.md's "Worked example": every listed byte by
/// offset, and the ranges a `…` line elides (FORMAT: reserved, zero).
struct Dump {
    bytes: Vec<(usize, u8)>,
    elided: Vec<std::ops::Range<usize>>,
}

fn parse_worked_example() -> Dump {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md")).expect("docs/FORMAT.md");
    let start = doc.find("\n## Worked example").expect("FORMAT.md has a \"Worked example\" section");
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let (mut bytes, mut elided) = (Vec::new(), Vec::new());
    let mut in_code = false;
    let mut gap_from: Option<usize> = None;
    for line in section.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        if line.starts_with('…') {
            let last = bytes.last().map(|&(o, _)| o + 1).expect("an elision follows a dump line");
            gap_from = Some(last);
            continue;
        }
        // xxd layout: "oooooooo: " then 8 groups of 4 hex digits (39 columns), then a comment.
        let (off, rest) = line.split_once(": ").unwrap_or_else(|| panic!("not a hexdump line: {line:?}"));
        let off = usize::from_str_radix(off, 16).unwrap_or_else(|_| panic!("bad offset in {line:?}"));
        if let Some(from) = gap_from.take() {
            elided.push(from..off);
        }
        let hex: String = rest.chars().take(39).filter(|c| !c.is_whitespace()).collect();
        assert_eq!(hex.len(), 32, "16 bytes per line: {line:?}");
        for i in 0..16 {
            let b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or_else(|_| panic!("bad hex in {line:?}"));
            bytes.push((off + i, b));
        }
    }
    assert!(!in_code, "unterminated code block in the worked example");
    assert!(bytes.len() >= 3 * 64, "the worked example lost its hexdump");
    Dump { bytes, elided }
}

/// The example, run by the writer; returns the segment file's bytes.
fn write_example() -> Vec<u8> {
    let sim = SimStorage::new();
    let dir = Path::new("/golden");
    let mut wal = SegmentedWal::open_with_storage(common::config(dir).build(), Arc::new(sim.clone())).unwrap();
    assert_eq!(wal.append(1, 7, 3, b"hello").unwrap(), 1);
    wal.sync().unwrap();
    assert_eq!(wal.append(2, 7, 3, b"bye").unwrap(), 2);
    wal.sync().unwrap();
    wal.roll_segment().unwrap();
    drop(wal);
    sim.read(&dir.join(segment_file_name(1))).expect("the example's segment file")
}

/// Recomputes every CRC of a sealed segment image by FORMAT.md: the header
/// CRC, the segment seed, each record's CRC along the chain, the seal CRC.
fn recompute_crcs(img: &mut [u8]) {
    let header_crc = crc32c::crc32c(&img[..SEGMENT_HEADER_LEN - 4]);
    img[SEGMENT_HEADER_LEN - 4..SEGMENT_HEADER_LEN].copy_from_slice(&header_crc.to_le_bytes());
    // seed = CRC32C(wal_id LE ‖ salt LE): the header stores both LE, back to back.
    let seed = crc32c::crc32c(&img[WAL_ID.start..SALT.end]);
    let data_end = u64::from_le_bytes(img[BLOCK + 24..BLOCK + 32].try_into().unwrap()) as usize;
    let mut off = data_start(BLOCK) as usize;
    while off < data_end {
        let len = u32::from_le_bytes(img[off + 4..off + 8].try_into().unwrap()) as usize;
        let crc = crc32c::crc32c_append(seed, &img[off + 4..off + RECORD_HEADER_LEN + len]);
        img[off..off + 4].copy_from_slice(&crc.to_le_bytes());
        off += record_size(len);
    }
    assert_eq!(off, data_end, "records end at the seal's data_end");
    let seal_crc = crc32c::crc32c_append(seed, &img[BLOCK..BLOCK + SEAL_LEN - 4]);
    img[BLOCK + SEAL_LEN - 4..BLOCK + SEAL_LEN].copy_from_slice(&seal_crc.to_le_bytes());
}

fn doc_image(dump: &Dump, len: usize) -> Vec<u8> {
    let mut img = vec![0u8; len];
    for &(o, b) in &dump.bytes {
        img[o] = b;
    }
    img
}

#[test]
fn the_writer_rebuilds_the_worked_example_byte_for_byte() {
    let dump = parse_worked_example();
    let mut img = write_example();
    assert!(img.len() >= 3 * BLOCK, "segment shorter than header, seal and one data block");

    // The CRC rules used below are the writer's: recomputing its own image changes nothing.
    let mut same = img.clone();
    recompute_crcs(&mut same);
    assert!(same == img, "recomputing the CRCs by FORMAT.md changed the writer's own image");

    let doc = doc_image(&dump, 3 * BLOCK);
    for range in [WAL_ID, SALT, CREATED_MS, SEALED_MS] {
        img[range.clone()].copy_from_slice(&doc[range]);
    }
    recompute_crcs(&mut img);

    let mismatches: Vec<String> = dump
        .bytes
        .iter()
        .filter(|&&(o, b)| img[o] != b)
        .map(|&(o, b)| format!("0x{o:04x}: FORMAT.md {b:02x}, writer {:02x}", img[o]))
        .collect();
    assert!(mismatches.is_empty(), "FORMAT.md's worked example differs from the writer:\n{}", mismatches.join("\n"));
    for r in &dump.elided {
        assert!(img[r.clone()].iter().all(|&b| b == 0), "bytes elided as zero at {r:x?} are not zero");
    }
    // What the dump does not list: the rest of the header and seal blocks is
    // zero (FORMAT "Segment file"), and so is the data block after the records.
    let listed_end = |from: usize, to: usize| {
        dump.bytes.iter().filter(|&&(o, _)| (from..to).contains(&o)).map(|&(o, _)| o + 1).max()
    };
    for block in 0..3 {
        let (from, to) = (block * BLOCK, (block + 1) * BLOCK);
        let end = listed_end(from, to).unwrap_or_else(|| panic!("block {block} is not in the dump"));
        assert!(img[end..to].iter().all(|&b| b == 0), "block {block} has bytes after 0x{end:x} the dump does not show");
    }
}

/// The document's bytes, CRCs included, are a segment directwal opens and
/// replays as the example describes.
#[test]
fn the_worked_example_s_bytes_open_and_replay() {
    let dump = parse_worked_example();
    let img = doc_image(&dump, 3 * BLOCK);
    let sim = SimStorage::new();
    let dir = Path::new("/doc");
    {
        use directwal::io::{OpenMode, Storage};
        let f = sim.open(&dir.join(segment_file_name(1)), OpenMode { create: true, direct: false }).unwrap();
        f.write_all_at(&img, 0).unwrap();
    }
    let wal = SegmentedWal::open_with_storage(common::config(dir).build(), Arc::new(sim)).unwrap();
    assert_eq!(wal.recovery_report().torn_tail, None, "the example's segment is sealed, nothing to cut");
    assert_eq!(wal.wal_id().to_le_bytes()[..], img[WAL_ID]);
    let recs = wal.replay().unwrap();
    let got: Vec<_> = recs
        .iter()
        .map(|r| (r.header.lsn, r.header.record_type, r.header.tenant_id, r.header.vshard_id, r.payload.as_slice()))
        .collect();
    assert_eq!(got, [(1, 1, 7, 3, &b"hello"[..]), (2, 2, 7, 3, &b"bye"[..])]);
    assert_eq!(wal.next_lsn(), 3);
}
