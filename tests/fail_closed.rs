//! Fail closed across rolls and reopens (DESIGN I11), and no plaintext
//! recycled into an encrypted WAL's files (I19).
mod common;

use std::path::Path;
use std::time::Duration;

use common::{payload, segment_files};
use directwal::check::{CheckOptions, check_dir};
use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::{SegmentedWal, SegmentedWalConfig, SyncPolicy, WalError, WalHandle};

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(8 * 1024).chunk(4096).build()
}

fn ring() -> KeyRing {
    KeyRing::new(WalEncryptionKey::from_bytes(&[1; 32]))
}

fn key_id() -> u32 {
    ring().current().key_id()
}

/// A payload carrying a marker that must never be on disk in plain where it says so.
fn marked(marker: &str, lsn: u64) -> Vec<u8> {
    let mut p = format!("{marker}-{lsn:08}-").into_bytes();
    p.extend_from_slice(&payload(lsn, 150));
    p
}

/// Names of the files of `dir` whose raw bytes contain `marker`.
fn files_holding(dir: &Path, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap();
        let bytes = std::fs::read(f.path()).unwrap();
        if bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            out.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn encrypted_wal(dir: &Path, n: u64) {
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    wal.set_encryption_ring(ring()).unwrap();
    for lsn in 1..=n {
        assert_eq!(wal.append(1, 0, 0, &marked("SECRET", lsn)).unwrap(), lsn);
    }
    wal.sync().unwrap();
}

fn refused<T: std::fmt::Debug>(r: directwal::Result<T>, what: &str) {
    match r {
        Err(WalError::EncryptionRequired { key_id: k }) => assert_eq!(k, key_id(), "{what}"),
        other => panic!("{what}: expected EncryptionRequired, got {other:?}"),
    }
}

/// Rewrites a segment header through `edit` and fixes its CRC, as an old
/// build or a hand edit could leave it.
fn edit_header(path: &Path, edit: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes[..128]);
    let crc = crc32c::crc32c(&bytes[..124]);
    bytes[124..128].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, &bytes).unwrap();
}

/// An encrypted WAL, then `disable_encryption` with `plain` plain records;
/// with `explained == false` the flag that records the explicit call is
/// cleared from the plain segment (and its version set back to 2), which
/// is what a roll without a ring left on disk before the fix.
fn disabled_wal(dir: &Path, plain: u64, explained: bool) {
    encrypted_wal(dir, 10);
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    wal.set_encryption_ring(ring()).unwrap();
    wal.disable_encryption().unwrap();
    for i in 0..plain {
        wal.append(1, 0, 0, &marked("PLAIN-BY-CHOICE", 11 + i)).unwrap();
    }
    drop(wal);
    let newest = segment_files(dir).pop().unwrap();
    let bytes = std::fs::read(&newest).unwrap();
    if explained {
        assert_eq!((bytes[56], bytes[57], bytes[8]), (0, 2, 4), "plain, flag encryption_off, version 4");
        assert_ne!(bytes[72..104], [0; 32], "with its MAC");
        assert_eq!(bytes[104..108], key_id().to_le_bytes(), "made with the key of the encrypted segments");
    } else {
        edit_header(&newest, |h| {
            h[57] = 0;
            h[8] = 2;
        });
    }
}

#[test]
fn a_roll_without_the_ring_creates_no_segment_and_a_reopen_still_refuses_plain_appends() {
    let dir = tempfile::tempdir().unwrap();
    encrypted_wal(dir.path(), 10);
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    let before = segment_files(dir.path());
    refused(wal.roll_segment(), "roll");
    refused(wal.truncate_before(u64::MAX), "truncate");
    refused(wal.append(1, 0, 0, &marked("PLAINTEXT", 11)), "append");
    assert_eq!(segment_files(dir.path()), before, "no segment created or deleted");
    wal.sync().unwrap();
    drop(wal);
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    refused(wal.append(1, 0, 0, &marked("PLAINTEXT", 11)), "append after reopen");
    refused(wal.roll_segment(), "roll after reopen");
    drop(wal);
    assert_eq!(files_holding(dir.path(), "PLAINTEXT"), Vec::<String>::new());
    assert_eq!(files_holding(dir.path(), "SECRET"), Vec::<String>::new());
    // With the ring it goes on, encrypted.
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    wal.set_encryption_ring(ring()).unwrap();
    assert_eq!(wal.append(1, 0, 0, &marked("SECRET", 11)).unwrap(), 11);
    wal.roll_segment().unwrap();
    assert_eq!(wal.replay().unwrap().len(), 11);
    drop(wal);
    assert_eq!(files_holding(dir.path(), "SECRET"), Vec::<String>::new());
}

/// Checks `dir` (with the ring when `with_ring`) and returns its problems.
fn problems(dir: &Path, with_ring: bool) -> Vec<String> {
    let opts = CheckOptions { ring: with_ring.then(ring), verify_records: false };
    check_dir(dir, &opts, &mut |_| {}).unwrap().problems().map(|p| p.to_string()).collect()
}

#[test]
fn a_plain_segment_after_encrypted_ones_requires_the_key_unless_encryption_was_turned_off() {
    for plain in [3, 0] {
        // The same directory without the flag: a downgrade nobody asked for.
        let dir = tempfile::tempdir().unwrap();
        disabled_wal(dir.path(), plain, false);
        let problems_before = problems(dir.path(), false);
        assert_eq!(problems_before.len(), 1, "{problems_before:?}");
        assert!(
            problems_before[0]
                .contains("no proven `encryption_off` flag (a forged header, or an older build's disable"),
            "{problems_before:?}"
        );
        let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
        refused(wal.append(1, 0, 0, &marked("PLAINTEXT", 11 + plain)), "append");
        refused(wal.roll_segment(), "roll");
        drop(wal);
        let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
        refused(wal.append(1, 0, 0, &marked("PLAINTEXT", 11 + plain)), "append after reopen");
        // The way out is explicit, and takes the key: the ring, then
        // (to stay plain) disable_encryption.
        refused(wal.disable_encryption(), "disable without the ring");
        wal.set_encryption_ring(ring()).unwrap();
        wal.disable_encryption().unwrap();
        assert_eq!(wal.append(1, 0, 0, b"now plain by choice").unwrap(), 11 + plain);
        drop(wal);
        // An empty downgraded segment was replaced by the flagged one; one
        // with records is confirmed by the proven flag after it.
        assert_eq!(problems(dir.path(), true), Vec::<String>::new());
        assert_eq!(files_holding(dir.path(), "PLAINTEXT"), Vec::<String>::new());

        // Explicitly turned off: verify is clean, with the ring or without
        // (where the MAC cannot be checked), but an open without the ring
        // cannot check it either and still requires the key (I11).
        let dir = tempfile::tempdir().unwrap();
        disabled_wal(dir.path(), plain, true);
        assert_eq!((problems(dir.path(), false), problems(dir.path(), true)), (vec![], vec![]));
        let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
        refused(wal.append(1, 0, 0, &marked("PLAINTEXT", 11 + plain)), "append without the ring");
        wal.set_encryption_ring(ring()).unwrap();
        wal.disable_encryption().unwrap();
        assert_eq!(wal.append(1, 0, 0, b"plain is fine here").unwrap(), 11 + plain);
        wal.roll_segment().unwrap();
        drop(wal);
        // The proof carries on to the next plain segments.
        let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
        wal.set_encryption_ring(ring()).unwrap();
        wal.disable_encryption().unwrap();
        wal.append(1, 0, 0, b"still fine").unwrap();
        drop(wal);
        assert_eq!(problems(dir.path(), true), Vec::<String>::new());
        assert_eq!(files_holding(dir.path(), "PLAINTEXT"), Vec::<String>::new());
    }
}

/// After an upgrade, the key holder's `set_encryption_ring` +
/// `disable_encryption` (a proven flag) confirms the plain segment an older
/// build wrote after encrypted ones without a flag: `check` no longer
/// reports it, with the ring (`verify`) or without (`inspect`, which cannot
/// check the MAC either way). Fail closed stays: every open still requires
/// the ring, and behind a forged flag the segment stays reported.
#[test]
fn the_key_holders_disable_confirms_an_older_builds_unflagged_plain_segment() {
    let older_build = |dir: &Path| {
        disabled_wal(dir, 3, false);
        assert_eq!((problems(dir, true).len(), problems(dir, false).len()), (1, 1));
        let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
        wal.set_encryption_ring(ring()).unwrap();
        wal.disable_encryption().unwrap();
        wal.append(1, 0, 0, b"plain, by the key holder's choice").unwrap();
        wal.sync().unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    older_build(dir.path());
    assert_eq!((problems(dir.path(), true), problems(dir.path(), false)), (vec![], vec![]));
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    refused(wal.append(1, 0, 0, &marked("PLAINTEXT", 15)), "append after reopen");
    drop(wal);

    // The same history with the proven flag's MAC altered: both reported.
    let dir = tempfile::tempdir().unwrap();
    older_build(dir.path());
    edit_header(&segment_files(dir.path()).pop().unwrap(), |h| h[72] ^= 1);
    let found = problems(dir.path(), true);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("no proven `encryption_off` flag") && found[1].contains("MAC fails"), "{found:?}");
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    refused(wal.append(1, 0, 0, &marked("PLAINTEXT", 15)), "append behind a forged flag");
    drop(wal);
    assert_eq!(files_holding(dir.path(), "PLAINTEXT"), Vec::<String>::new());
}

#[test]
fn a_group_commit_handle_on_a_downgraded_wal_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    disabled_wal(dir.path(), 3, false);
    let files = segment_files(dir.path());
    let wal = WalHandle::open(cfg(dir.path())).unwrap();
    refused(wal.append(1, 0, 0, &marked("PLAINTEXT", 11)), "append");
    refused(wal.append_durable(1, 0, 0, &marked("PLAINTEXT", 11)), "append_durable");
    let batched = wal.with_policy(SyncPolicy::Batched { max_delay: Duration::from_millis(1), max_bytes: 1 });
    refused(batched.commit(1, 0, 0, &marked("PLAINTEXT", 11)), "batched commit");
    refused(wal.append_then(1, 0, 0, &marked("PLAINTEXT", 11), |_| {}), "append_then");
    refused(wal.truncate_before(u64::MAX), "truncate");
    wal.sync().unwrap();
    std::thread::sleep(Duration::from_millis(30)); // the batched flusher runs meanwhile
    assert_eq!(wal.next_lsn(), 14);
    drop((wal, batched));
    assert_eq!(segment_files(dir.path()), files);
    assert_eq!(files_holding(dir.path(), "PLAINTEXT"), Vec::<String>::new());
}

#[test]
fn plaintext_of_a_plain_wal_never_survives_into_its_encrypted_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    for lsn in 1..=150 {
        wal.append(1, 0, 0, &marked("PLAINTEXT", lsn)).unwrap();
    }
    wal.sync().unwrap();
    // Plain spares in the pool before the ring is set.
    assert!(wal.truncate_before(100).unwrap().segments_deleted >= 2);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("spare-"))
    );
    wal.set_encryption_ring(ring()).unwrap();
    let first_encrypted = wal.active_segment_first_lsn();
    // Every plain segment truncated while the WAL encrypts.
    wal.truncate_before(first_encrypted).unwrap();
    assert_eq!(wal.list_segments().unwrap()[0].first_lsn, first_encrypted);
    assert_eq!(files_holding(dir.path(), "PLAINTEXT"), Vec::<String>::new(), "after the plain segments were truncated");
    // Keep writing, and checkpointing: encrypted segments recycle each other.
    for lsn in first_encrypted..first_encrypted + 400 {
        wal.append(1, 0, 0, &marked("SECRET", lsn)).unwrap();
        if lsn % 40 == 0 {
            wal.sync().unwrap();
            wal.truncate_before(lsn - 30).unwrap();
            assert_eq!(files_holding(dir.path(), "PLAINTEXT"), Vec::<String>::new(), "at LSN {lsn}");
        }
    }
    wal.sync().unwrap();
    assert!(wal.stats().segments_recycled > 0, "encrypted files are still recycled");
    drop(wal);
    assert_eq!(files_holding(dir.path(), "PLAINTEXT"), Vec::<String>::new());
    assert_eq!(files_holding(dir.path(), "SECRET"), Vec::<String>::new());
}

#[test]
fn spares_found_at_open_of_an_encrypted_wal_are_not_recycled() {
    // Spares that held plain records, as a build without this rule left them.
    let plain = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(plain.path())).unwrap();
    for lsn in 1..=100 {
        wal.append(1, 0, 0, &marked("PLAINTEXT", lsn)).unwrap();
    }
    wal.sync().unwrap();
    wal.truncate_before(50).unwrap();
    drop(wal);
    let dir = tempfile::tempdir().unwrap();
    encrypted_wal(dir.path(), 10);
    for (i, e) in std::fs::read_dir(plain.path()).unwrap().enumerate() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("spare-") || name.starts_with("wal-00000000000000000001") {
            std::fs::copy(plain.path().join(&name), dir.path().join(format!("spare-{:020}", 900 + i))).unwrap();
        }
    }
    assert!(!files_holding(dir.path(), "PLAINTEXT").is_empty());
    // Opened without the ring (encryption required): deleted at open.
    let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    assert_eq!(wal.recovery_report().spare_files, 0);
    drop(wal);
    assert_eq!(files_holding(dir.path(), "PLAINTEXT"), Vec::<String>::new());

    // Opened while plain, then a ring set: deleted when the ring is set.
    for (i, e) in std::fs::read_dir(plain.path()).unwrap().enumerate() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("spare-") {
            std::fs::copy(plain.path().join(&name), plain.path().join(format!("spare-{:020}", 900 + i))).unwrap();
        }
    }
    let mut wal = SegmentedWal::open(cfg(plain.path())).unwrap();
    wal.truncate_before(wal.active_segment_first_lsn()).unwrap();
    wal.set_encryption_ring(ring()).unwrap();
    for lsn in 0..200 {
        wal.append(1, 0, 0, &marked("SECRET", lsn)).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(files_holding(plain.path(), "PLAINTEXT"), Vec::<String>::new());
    assert_eq!(files_holding(plain.path(), "SECRET"), Vec::<String>::new());
}

/// I11, I24: a set-aside segment's unknown cipher requires a ring across
/// reopens until a decision is written at its LSN: a ring (an encrypted
/// segment, whose key is then required by its header) or an explicit
/// `disable_encryption` (a flagged plain segment, after which plain appends
/// go on across reopens).
#[test]
fn a_decision_after_a_set_aside_supersedes_it_across_reopens() {
    for set_ring in [true, false] {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        drop(SegmentedWal::open(cfg(dir)).unwrap());
        std::fs::write(&segment_files(dir)[0], vec![0xA5u8; 4096]).unwrap();
        let mut tolerant = cfg(dir);
        tolerant.writer_config.recovery_mode = directwal::RecoveryMode::Tolerant;
        let mut wal = SegmentedWal::open(tolerant).unwrap();
        assert!(matches!(wal.append(1, 0, 0, b"x"), Err(WalError::EncryptionRequired { key_id: 0 })));
        drop(wal);
        let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
        assert!(matches!(wal.append(1, 0, 0, b"x"), Err(WalError::EncryptionRequired { key_id: 0 })));
        if set_ring {
            wal.set_encryption_ring(ring()).unwrap()
        } else {
            wal.disable_encryption().unwrap()
        }
        assert_eq!(wal.append(1, 0, 0, b"after").unwrap(), 1);
        wal.sync().unwrap();
        drop(wal);
        let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
        let r = wal.append(1, 0, 0, b"again");
        if set_ring {
            assert!(matches!(r, Err(WalError::EncryptionRequired { key_id: k }) if k == key_id()), "{r:?}");
        } else {
            assert_eq!(r.unwrap(), 2);
        }
    }
}

/// I11, I24: an encrypted segment set aside for damage at its first record
/// (its header names its key) keeps the WAL asking for a ring across
/// reopens, as an unreadable one does: no plain record follows it unasked.
#[test]
fn an_encrypted_segment_set_aside_for_damaged_data_still_requires_a_ring() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    wal.set_encryption_ring(ring()).unwrap();
    for i in 0..3 {
        wal.append(1, 0, 0, &marked("SECRET", i)).unwrap();
        wal.sync().unwrap();
    }
    wal.simulate_crash();
    let files = segment_files(dir);
    let newest = files.last().unwrap();
    let mut image = std::fs::read(newest).unwrap();
    image[directwal::layout::data_start(4096) as usize] ^= 0x10;
    std::fs::write(newest, &image).unwrap();
    let mut tolerant = cfg(dir);
    tolerant.writer_config.recovery_mode = directwal::RecoveryMode::Tolerant;
    let mut wal = SegmentedWal::open(tolerant).unwrap();
    let aside = wal.recovery_report().set_aside.clone().expect("set aside");
    assert_eq!(std::fs::read(&aside.moved_to).unwrap(), image);
    assert!(matches!(wal.append(1, 0, 0, b"x"), Err(WalError::EncryptionRequired { .. })));
    drop(wal);
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    assert!(matches!(wal.append(1, 0, 0, b"x"), Err(WalError::EncryptionRequired { .. })), "{files:?}");
    wal.set_encryption_ring(ring()).unwrap();
    assert_eq!(wal.append(1, 0, 0, b"after").unwrap(), 1);
}
