//! `WalReader::open_dir_prefix`: what a damaged directory still holds, for
//! tools (`directwal dump`) that show the records before the damage.

mod common;

use directwal::{RecordType, SegmentedWal, WalError, WalReader, layout};

const PAYLOAD: usize = 100;

/// A byte inside the payload of record `lsn` of the first segment.
fn offset_in_payload(lsn: u64) -> usize {
    layout::data_start(4096) as usize
        + (lsn as usize - 1) * layout::record_size(PAYLOAD)
        + layout::RECORD_HEADER_LEN
        + 7
}

/// Three sync epochs of 10 records in one unsealed newest segment, left as a
/// crash leaves it; then a payload byte of LSN `bad` flipped. Later epochs
/// prove the damaged record was durable, so the damage is `Corruption`.
fn damaged_newest_segment(bad: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(common::config(dir.path()).build()).unwrap();
    for epoch in 0..3u8 {
        for i in 0..10u8 {
            wal.append(RecordType::Put as u16, 1, 0, &[epoch * 10 + i; PAYLOAD]).unwrap();
        }
        wal.sync().unwrap();
    }
    wal.simulate_crash();
    let seg = dir.path().join(directwal::segment_file_name(1));
    let mut img = std::fs::read(&seg).unwrap();
    let at = offset_in_payload(bad);
    img[at] ^= 0x40;
    std::fs::write(&seg, img).unwrap();
    dir
}

#[test]
fn the_records_before_damage_in_the_newest_segment_stay_readable() {
    let dir = damaged_newest_segment(5);
    let err = WalReader::open_dir(dir.path(), None).unwrap_err();
    assert!(matches!(err, WalError::Corruption { lsn: 5, .. }), "{err}");
    let (reader, stop) = WalReader::open_dir_prefix(dir.path(), None).unwrap();
    assert!(matches!(stop, Some(WalError::Corruption { lsn: 5, .. })), "{stop:?}");
    let mut seen = Vec::new();
    reader
        .visit(1, |r| {
            seen.push((r.header.lsn, r.payload[0]));
            true
        })
        .unwrap();
    assert_eq!(seen, (1..=4).map(|l| (l, l as u8 - 1)).collect::<Vec<_>>());
}

#[test]
fn a_clean_directory_has_no_stop_and_the_same_records_as_open_dir() {
    let dir = damaged_newest_segment(5);
    // Undo the damage: flip the same bit back.
    let seg = dir.path().join(directwal::segment_file_name(1));
    let mut img = std::fs::read(&seg).unwrap();
    let at = offset_in_payload(5);
    img[at] ^= 0x40;
    std::fs::write(&seg, img).unwrap();
    let (reader, stop) = WalReader::open_dir_prefix(dir.path(), None).unwrap();
    assert!(stop.is_none(), "{stop:?}");
    assert_eq!(reader.durable_lsn(), 30);
    assert_eq!(WalReader::open_dir(dir.path(), None).unwrap().durable_lsn(), 30);
}
