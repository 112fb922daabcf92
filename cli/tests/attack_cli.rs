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
    reseal_header(&mut bytes);
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

/// Issue 15, finding 7 (DESIGN I11): `verify --key-file` on an encrypted WAL
/// whose newest header was rewritten as a plain segment flagged
/// `encryption_off` (CRC fixed, no MAC) reports it, exit 1; the same WAL
/// turned off by the key holder (`disable_encryption` with the ring set)
/// verifies clean, exit 0.
#[test]
fn verify_reports_a_forged_encryption_off_flag() {
    let keys = tempfile::tempdir().unwrap();
    let (key, ring) = key_file(keys.path(), 0x42);
    let forged = write_wal(40, Some(ring.clone()));
    let legit = write_wal(40, Some(ring.clone()));
    for dir in [forged.path(), legit.path()] {
        let mut wal = SegmentedWal::open(config(dir)).unwrap();
        wal.set_encryption_ring(ring.clone()).unwrap();
        if dir == legit.path() {
            wal.disable_encryption().unwrap();
        } else {
            wal.roll_segment().unwrap();
        }
        wal.sync().unwrap();
    }
    let newest = segments(forged.path()).pop().unwrap();
    let mut b = std::fs::read(&newest).unwrap();
    b[8..10].copy_from_slice(&3u16.to_le_bytes());
    b[56] = 0;
    b[57] |= 1 << 1;
    b[60..64].fill(0);
    reseal_header(&mut b);
    std::fs::write(&newest, b).unwrap();

    let key = key.to_str().unwrap();
    let o = run(&["verify", forged.path().to_str().unwrap(), "--key-file", key]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("encryption_off"), "{}", stdout(&o));
    let o = run(&["verify", legit.path().to_str().unwrap(), "--key-file", key]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}
