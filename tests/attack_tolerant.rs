//! Attacks on tolerant recovery's set-aside (DESIGN I24) and the fail-closed
//! rule (I11) it interacts with. Public API only. Written as reproducers
//! before the fixes, kept as their regression tests.
mod common;

use std::path::Path;

use common::segment_files;
use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::{RecoveryMode, SegmentedWal, SegmentedWalConfig, WalError, WalReader, segment_file_name};

fn cfg(dir: &Path, mode: RecoveryMode) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(8 * 1024).chunk(4096).mode(mode).build()
}

fn ring() -> KeyRing {
    KeyRing::new(WalEncryptionKey::from_bytes(&[7; 32]))
}

fn files_holding(dir: &Path, marker: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap();
        let bytes = std::fs::read(f.path()).unwrap();
        if bytes.windows(marker.len()).any(|w| w == marker) {
            out.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// Overwrites the first 64 bytes of a file (the segment header) with garbage.
fn smash_header(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    for x in &mut b[..64] {
        *x = 0xA5;
    }
    std::fs::write(path, b).unwrap();
}

/// Finding 1: an encrypted WAL whose only segment (what `truncate_before`
/// of everything leaves) has a damaged header is opened in tolerant mode
/// (or after `directwal repair --yes`) WITHOUT a ring, and then accepts
/// plain appends: the set-aside segment no longer counts for the encryption
/// rule, so fail closed (I11) is lost. Expected: `EncryptionRequired`
/// (or refuse to set aside the only evidence that a key is required).
#[test]

fn tolerant_setaside_of_sole_encrypted_segment_keeps_encryption_required() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    {
        let mut wal = SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap();
        wal.set_encryption_ring(ring()).unwrap();
        for _ in 0..5 {
            wal.append(1, 0, 0, b"SECRET-OLD").unwrap();
        }
        wal.sync().unwrap();
        wal.truncate_before(wal.next_lsn()).unwrap();
    }
    let segs = segment_files(dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    smash_header(&segs[0]);
    // Strict refuses (fine).
    assert!(SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).is_err());
    // Tolerant, no ring: this is where fail-closed must hold.
    let mut wal = SegmentedWal::open(cfg(dir, RecoveryMode::Tolerant)).unwrap();
    let r = wal.append(1, 0, 0, b"PLAINTEXT-MARKER-AFTER-REPAIR");
    let synced = r.is_ok() && wal.sync().is_ok();
    drop(wal);
    let leaked = files_holding(dir, b"PLAINTEXT-MARKER-AFTER-REPAIR");
    assert!(
        matches!(r, Err(WalError::EncryptionRequired { .. })) && leaked.is_empty(),
        "append without a ring after tolerant open: {r:?}, synced {synced}, plaintext in {leaked:?}"
    );
}

/// Same, then a STRICT open without a ring (the application's normal
/// path after an operator ran `repair`): still must refuse plain appends.
#[test]

fn strict_open_after_setaside_still_requires_key() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    {
        let mut wal = SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap();
        wal.set_encryption_ring(ring()).unwrap();
        wal.append(1, 0, 0, b"SECRET-OLD").unwrap();
        wal.sync().unwrap();
        wal.truncate_before(wal.next_lsn()).unwrap();
    }
    smash_header(&segment_files(dir)[0]);
    drop(SegmentedWal::open(cfg(dir, RecoveryMode::Tolerant)).unwrap());
    let mut wal = SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap();
    let r = wal.append(1, 0, 0, b"PLAIN-2");
    assert!(matches!(r, Err(WalError::EncryptionRequired { .. })), "got {r:?}");
}

/// Writes `n` records in a plain WAL, rolls (so segment 1 is sealed) and
/// closes it; then the empty newest segment (LSN n+1) is replaced by a
/// garbage file under a far-ahead name `wal-{far}.seg` (the newest segment
/// with a damaged header, as a restored or misnamed copy would be).
fn plain_wal_with_far_garbage(dir: &Path, n: u64, far: u64) {
    let mut wal = SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap();
    for _ in 0..n {
        wal.append(1, 0, 0, b"rec").unwrap();
    }
    wal.roll_segment().unwrap();
    wal.sync().unwrap();
    drop(wal);
    std::fs::remove_file(dir.join(segment_file_name(n + 1))).unwrap();
    std::fs::write(dir.join(segment_file_name(far)), vec![0x5Au8; 4096]).unwrap();
}

/// Finding 2: a garbage file named like a segment far ahead of the log
/// (`wal-00000000000000100000.seg`, e.g. a stray copy) is "the newest
/// segment"; tolerant open sets it aside and the log goes on at ITS first
/// LSN, 100000, leaving LSNs 6..99999 missing. The WAL tolerant recovery
/// produced is then refused by strict open (MissingSegment) and by
/// `WalReader::open_dir`. Expected: the log goes on after the last sealed
/// LSN (6), or tolerant refuses.
#[test]

fn tolerant_setaside_does_not_jump_lsns() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    plain_wal_with_far_garbage(dir, 5, 100_000);
    let mut wal = SegmentedWal::open(cfg(dir, RecoveryMode::Tolerant)).unwrap();
    assert!(wal.recovery_report().set_aside.is_some());
    // I11: the set-aside file's cipher is unknown, so a ring is required
    // until encryption is turned off explicitly (the fix of the set-aside attack).
    assert!(matches!(wal.append(1, 0, 0, b"x"), Err(WalError::EncryptionRequired { .. })));
    wal.disable_encryption().unwrap();
    let lsn = wal.append(1, 0, 0, b"after").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let strict = SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).map(|_| ());
    let reader = WalReader::open_dir(dir, None).map(|_| ());
    assert!(
        lsn == 6 && strict.is_ok() && reader.is_ok(),
        "next LSN {lsn}; strict reopen {strict:?}; open_dir {reader:?}"
    );
}

/// Finding 2b: the same with a name at the top of the LSN space makes the
/// WAL unwritable for ever (LsnExhausted) after a "repair".
#[test]

fn tolerant_setaside_of_max_name_does_not_exhaust_lsns() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    plain_wal_with_far_garbage(dir, 5, u64::MAX);
    let mut wal = SegmentedWal::open(cfg(dir, RecoveryMode::Tolerant)).unwrap();
    wal.disable_encryption().unwrap(); // I11: see above (the set-aside attack)
    let r = wal.append(1, 0, 0, b"after");
    assert_eq!(r.ok(), Some(6), "append after tolerant open: {:?}", wal.append(1, 0, 0, b"x"));
}
