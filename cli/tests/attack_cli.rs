//! Attacks on the `directwal` CLI as a tired operator would run it. Written
//! as reproducers before the fixes, kept as their regression tests.

mod common;

use common::*;
use directwal::SegmentedWal;

/// A WAL of 30 records over several segments, then the newest (empty,
/// unsealed) segment's header smashed: a newest segment that is no segment,
/// which strict open refuses and tolerant open sets aside (I24).
fn smashed_newest() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = write_wal(30, None);
    {
        let mut wal = SegmentedWal::open(config(dir.path())).unwrap();
        wal.append(1, 0, 0, &payload(31)).unwrap();
        wal.sync().unwrap();
        wal.simulate_crash();
    }
    let newest = segments(dir.path()).pop().unwrap();
    let mut b = std::fs::read(&newest).unwrap();
    b[..64].fill(0xA5);
    std::fs::write(&newest, b).unwrap();
    (dir, newest)
}

/// Finding 3: `repair --yes` on a newest segment with a damaged header.
/// The tolerant open it runs renames the segment aside and starts a new
/// segment (the directory changed, LSN 31 is gone from the log), but repair
/// then says "the tolerant open dropped nothing ...; nothing was cut" and
/// exits 2 ("could not run"). Expected: exit 0 (or 1) and a report naming
/// the set-aside file and the dropped LSNs.
#[test]
fn repair_reports_a_set_aside_honestly() {
    let (dir, newest) = smashed_newest();
    let d = dir.path().to_str().unwrap();
    let o = run(&["repair", d, "--yes"]);
    let (out, err) = (stdout(&o), stderr(&o));
    let moved = !newest.exists();
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".aside-"))
        .collect();
    assert!(
        o.status.code() != Some(2) && !err.contains("nothing was cut") && (out + &err).contains(".aside-"),
        "exit {:?}; stdout {:?}; stderr {:?}; newest renamed: {moved}; aside files {aside:?}",
        o.status.code(),
        stdout(&o),
        err
    );
}

/// Finding 3b: the dry run (no --yes) of the same directory says it
/// "would cut ... at offset 0" and that "the bytes stay in the file", while
/// --yes actually renames the file aside: the dry run misdescribes the action.
#[test]
fn repair_dry_run_describes_the_set_aside() {
    let (dir, _newest) = smashed_newest();
    let d = dir.path().to_str().unwrap();
    let o = run(&["repair", d]);
    let out = stdout(&o);
    assert!(out.contains("aside"), "exit {:?}; stdout {out:?}", o.status.code());
}

/// CRC32C (Castagnoli), for forging a header as an old build or a hand edit could.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Finding 6: `repair --yes` on a WAL whose LSNs are near the top of the
/// LSN space (I20 allows them up to u64::MAX - 1) and whose newest segment
/// has mid-log damage: the tolerant open cuts the log, then repair's own
/// report code (`last_lsn_after`, `lsn + (p - offset) / RECORD_HEADER_LEN`)
/// overflows and the tool panics (exit 101) AFTER changing the WAL, so the
/// operator never sees what was dropped. Expected: exit 0 and the report.
#[test]
fn repair_near_the_largest_lsn_reports_instead_of_panicking() {
    use directwal::layout::{data_start, record_size};
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let first = u64::MAX - 1 - 40;
    drop(SegmentedWal::open(config(dir.path())).unwrap());
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[48..56].copy_from_slice(&first.to_le_bytes());
    let crc = crc32c(&bytes[..124]);
    bytes[124..128].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.path().join(directwal::segment_file_name(first)), &bytes).unwrap();
    std::fs::remove_file(&seg).unwrap();
    let mut wal = SegmentedWal::open(config(dir.path())).unwrap();
    for i in 1..=30u64 {
        wal.append(1, 0, 0, &payload(i)).unwrap();
        if i % 10 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.simulate_crash();
    let newest = segments(dir.path()).pop().unwrap();
    let offset = data_start(4096) + 14 * record_size(PAYLOAD_LEN) as u64;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&newest).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset + 40).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], offset + 40).unwrap();
    let o = run(&["repair", dir.path().to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(0), "stdout {:?}; stderr {:?}", stdout(&o), stderr(&o));
}
