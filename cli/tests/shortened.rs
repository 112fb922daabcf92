//! A newest segment shortened to where its records end (DESIGN I26): what
//! `verify` and `inspect` say about the records it still holds.
mod common;

use std::fs::OpenOptions;
use std::path::PathBuf;

use common::*;
use directwal::layout::{RECORD_HEADER_LEN, data_start};
use directwal::SegmentedWal;

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
