//! A newest segment shortened to where its records end (DESIGN I26): what
//! `verify`, `inspect` and `repair` say about the records it still holds,
//! and that repair describes only what it did.
mod common;

use std::fs::OpenOptions;
use std::path::PathBuf;

use common::*;
use directwal::layout::{RECORD_HEADER_LEN, data_start};
use directwal::{SegmentedWal, SegmentedWalConfig};

/// One unsealed segment of 8 records of 512 bytes each, synced, cut right
/// after LSN `keep` (a multiple of 512, on a record boundary).
fn shortened_after(keep: u64) -> (tempfile::TempDir, PathBuf, u64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut wal = SegmentedWal::open(config(dir.path())).unwrap();
    for _ in 0..8 {
        wal.append(1, 0, 0, &[7u8; 512 - RECORD_HEADER_LEN]).unwrap();
    }
    wal.sync().unwrap();
    wal.simulate_crash();
    let newest = segments(dir.path()).pop().unwrap();
    let cut = data_start(4096) + keep * 512;
    OpenOptions::new().write(true).open(&newest).unwrap().set_len(cut).unwrap();
    (dir, newest, cut)
}

#[test]
fn verify_and_inspect_count_the_records_before_the_cut() {
    let (dir, newest, cut) = shortened_after(4);
    let d = dir.path().to_str().unwrap();
    let o = run(&["verify", d]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("offset {cut} lsn 5: records end at {cut}")), "{text}");
    assert!(text.contains("verified 1 segments, 4 records"), "{text}");
    let o = run(&["verify", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["records_verified"].as_u64(), v["clean"].as_bool()), (Some(4), Some(false)), "{v}");

    let o = run(&["inspect", d, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let seg = &v["segments"][0];
    assert_eq!(seg["name"], newest.file_name().unwrap().to_str().unwrap());
    let counts = (&seg["records"], &seg["first_lsn"], &seg["last_lsn"], &seg["bytes"], &seg["health"]);
    assert_eq!(counts, (&4.into(), &1.into(), &4.into(), &cut.into(), &"damaged".into()), "{v}");
    assert_eq!(v["records"], 4, "{v}");
    assert_eq!(seg["problems"][0]["lsn"], 5, "{v}");
}

#[test]
fn repair_of_a_shortened_segment_says_it_kept_and_sealed_what_the_file_holds() {
    let (dir, newest, cut) = shortened_after(4);
    let (d, name) = (dir.path().to_str().unwrap(), newest.file_name().unwrap().to_str().unwrap());
    let o = run(&["repair", d]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("would seal {name} at offset {cut}, where its file ends: the log would end at LSN 4"))
            && text.contains("nothing would be dropped")
            && !text.contains("on would be dropped"),
        "{text}"
    );

    let o = run(&["repair", d, "--yes"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert!(
        text.contains(&format!("sealed {name} at offset {cut}, where its file ends: kept LSNs 1..=4"))
            && text.contains("nothing was dropped")
            && text.contains("new records start at LSN 5")
            && text.contains("verify after the cut: clean"),
        "{text}"
    );
    assert!(!text.contains("dropped LSN") && !text.contains("remain in"), "{text}");
    // It did what it says: the file is as long as before, sealed after LSN 4.
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), cut);
    let wal = SegmentedWal::open(SegmentedWalConfig::new(dir.path().into())).unwrap();
    assert_eq!((wal.next_lsn(), wal.replay().unwrap().len()), (5, 4));
}

#[test]
fn repair_json_of_a_shortened_segment_drops_nothing() {
    let (dir, _, cut) = shortened_after(4);
    let o = run(&["repair", dir.path().to_str().unwrap(), "--yes", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((&v["cut"]["offset"], &v["bytes_after_cut"], &v["sealed"]), (&cut.into(), &0.into(), &true.into()));
    assert!(v["dropped_first_lsn"].is_null() && v["dropped_last_lsn"].is_null(), "{v}");
    assert_eq!(v["next_lsn"], 5);
}

/// Shortened to its data start: no record left, so the tolerant open
/// replaces the segment rather than sealing it, and repair says so.
#[test]
fn repair_of_a_segment_shortened_to_no_record_says_it_was_replaced() {
    let (dir, newest, _) = shortened_after(0);
    let (d, name) = (dir.path().to_str().unwrap(), newest.file_name().unwrap().to_str().unwrap());
    let o = run(&["repair", d]);
    assert!(stdout(&o).contains(&format!("would replace {name}, which holds no record")), "{}", stdout(&o));
    let o = run(&["repair", d, "--yes"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert!(text.contains(&format!("{name} held no record")) && text.contains("replaced by a new segment"), "{text}");
    assert!(text.contains("nothing was dropped") && text.contains("new records start at LSN 1"), "{text}");
}

/// The same in an encrypted WAL: repair opens without a ring, so no new
/// segment replaces the empty one; repair says it was left as it was.
#[test]
fn repair_of_an_encrypted_segment_shortened_to_no_record_says_it_was_left() {
    let keys = tempfile::tempdir().unwrap();
    let (key, ring) = key_file(keys.path(), 0x42);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut wal = SegmentedWal::open(config(dir.path())).unwrap();
    wal.set_encryption_ring(ring).unwrap();
    wal.append(1, 0, 0, b"secret").unwrap();
    wal.sync().unwrap();
    wal.simulate_crash();
    let newest = segments(dir.path()).pop().unwrap();
    OpenOptions::new().write(true).open(&newest).unwrap().set_len(data_start(4096)).unwrap();
    let (d, name) = (dir.path().to_str().unwrap(), newest.file_name().unwrap().to_str().unwrap());
    let o = run(&["repair", d, "--yes", "--key-file", key.to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}{}", stderr(&o));
    assert!(
        text.contains(&format!("{name} holds no record before offset")) && text.contains("left as it was"),
        "{text}"
    );
    assert!(!text.contains("replaced") && text.contains("verify after the cut: DAMAGED"), "{text}");
}
