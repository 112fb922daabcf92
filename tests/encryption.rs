//! Per-record AES-256-GCM through a key ring (FORMAT.md "Encryption", DESIGN I11).
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{payload, segment_files};
use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::layout::{RECORD_HEADER_LEN, data_start, record_size};
use directwal::{SegmentedWal, SegmentedWalConfig, WalError};

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(8 * 1024).chunk(4096).build()
}

fn key(b: u8) -> WalEncryptionKey {
    WalEncryptionKey::from_bytes(&[b; 32])
}

/// A recognisable plaintext: never to be found on disk.
fn secret(lsn: u64) -> Vec<u8> {
    let mut p = format!("TOP-SECRET-{lsn:08}-").into_bytes();
    p.extend_from_slice(&payload(lsn, 150));
    p
}

fn encrypted_wal(dir: &Path, n: u64) -> SegmentedWal {
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    wal.set_encryption_ring(KeyRing::new(key(1))).unwrap();
    for lsn in 1..=n {
        assert_eq!(wal.append(1, 7, 3, &secret(lsn)).unwrap(), lsn);
    }
    wal.sync().unwrap();
    wal
}

fn no_plaintext_on_disk(dir: &Path) {
    for f in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(11).any(|w| w == b"TOP-SECRET-"), "plaintext on disk");
    }
}

/// Offsets of the records of a segment file, and its CRC seed.
fn records(bytes: &[u8]) -> (Vec<(usize, usize)>, u32) {
    let seed = crc32c::crc32c(&bytes[16..48]);
    let mut out = Vec::new();
    let mut off = data_start(4096) as usize;
    while off + RECORD_HEADER_LEN <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap()) as usize;
        let lsn = u64::from_le_bytes(bytes[off + 8..off + 16].try_into().unwrap());
        if lsn == 0 {
            break;
        }
        out.push((off, record_size(len)));
        off += record_size(len);
    }
    (out, seed)
}

/// Recomputes a record's CRC with `seed`, as an attacker who knows the format can.
fn fix_crc(bytes: &mut [u8], off: usize, seed: u32) {
    let len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c_append(
        crc32c::crc32c_append(seed, &bytes[off + 4..off + RECORD_HEADER_LEN]),
        &bytes[off + RECORD_HEADER_LEN..off + RECORD_HEADER_LEN + len],
    );
    bytes[off..off + 4].copy_from_slice(&crc.to_le_bytes());
}

fn open_with(dir: &Path, ring: Option<KeyRing>) -> directwal::Result<Vec<directwal::WalRecord>> {
    let mut wal = SegmentedWal::open(cfg(dir))?;
    if let Some(r) = ring {
        wal.set_encryption_ring(r)?;
    }
    wal.replay()
}

#[test]
fn round_trip_across_rolled_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let wal = encrypted_wal(dir.path(), 200);
    let segs = wal.list_segments().unwrap();
    assert!(segs.len() > 3);
    assert!(segs.iter().skip(1).all(|s| s.key_id == Some(key(1).key_id())), "{segs:?}");
    drop(wal);
    let recs = open_with(dir.path(), Some(KeyRing::new(key(1)))).unwrap();
    assert_eq!(recs.len(), 200);
    for r in &recs {
        assert_eq!(r.payload, secret(r.header.lsn));
        assert!(r.is_encrypted());
        assert_eq!((r.header.tenant_id, r.header.vshard_id), (7, 3));
    }
    no_plaintext_on_disk(dir.path());
}

#[test]
fn replay_without_the_key_or_with_the_wrong_key_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(encrypted_wal(dir.path(), 20));
    match open_with(dir.path(), None) {
        Err(WalError::KeyRequired { lsn, .. }) => assert_eq!(lsn, 1),
        other => panic!("expected KeyRequired, got {other:?}"),
    }
    // A wrong key has another id; setting a ring without the WAL's key is refused.
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    match wal.set_encryption_ring(KeyRing::new(key(2))) {
        Err(WalError::UnknownKey { key_id, .. }) => assert_eq!(key_id, key(1).key_id()),
        other => panic!("expected UnknownKey, got {other:?}"),
    }
}

#[test]
fn appends_to_an_encrypted_wal_are_refused_until_its_ring_is_set_and_leave_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    drop(encrypted_wal(dir.path(), 10));
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    match wal.append(1, 0, 0, &secret(11)) {
        Err(WalError::EncryptionRequired { key_id }) => assert_eq!(key_id, key(1).key_id()),
        other => panic!("expected EncryptionRequired, got {other:?}"),
    }
    assert_eq!(wal.next_lsn(), 11);
    wal.sync().unwrap();
    drop(wal);
    no_plaintext_on_disk(dir.path());
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    wal.set_encryption_ring(KeyRing::new(key(1))).unwrap();
    assert_eq!(wal.append(1, 0, 0, &secret(11)).unwrap(), 11);
    wal.sync().unwrap();
    assert_eq!(wal.replay().unwrap().len(), 11);
    drop(wal);
    no_plaintext_on_disk(dir.path());
}

#[test]
fn setting_a_ring_seals_the_plain_segment_and_disabling_is_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    wal.append(1, 0, 0, b"plain before").unwrap();
    wal.set_encryption_ring(KeyRing::new(key(1))).unwrap();
    wal.append(1, 0, 0, &secret(2)).unwrap();
    wal.disable_encryption().unwrap();
    wal.append(1, 0, 0, b"plain after").unwrap();
    wal.sync().unwrap();
    let segs = wal.list_segments().unwrap();
    let ids: Vec<Option<u32>> = segs.iter().map(|s| s.key_id).collect();
    assert_eq!(ids, [None, Some(key(1).key_id()), None]);
    // Reading the middle segment needs the ring again.
    assert!(matches!(wal.replay(), Err(WalError::KeyRequired { lsn: 2, .. })));
    wal.set_encryption_ring(KeyRing::new(key(1))).unwrap();
    let recs = wal.replay().unwrap();
    assert_eq!(recs[0].payload, b"plain before");
    assert_eq!(recs[1].payload, secret(2));
    assert_eq!(recs[2].payload, b"plain after");
    assert_eq!(recs.iter().map(|r| r.is_encrypted()).collect::<Vec<_>>(), [false, true, false]);
}

#[test]
fn rotation_keeps_old_segments_readable_until_their_key_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = encrypted_wal(dir.path(), 5);
    wal.set_encryption_ring(KeyRing::new(key(2)).with_previous(key(1))).unwrap();
    for lsn in 6..=10 {
        wal.append(1, 7, 3, &secret(lsn)).unwrap();
    }
    wal.sync().unwrap();
    let ids: Vec<Option<u32>> = wal.list_segments().unwrap().iter().map(|s| s.key_id).collect();
    assert!(ids.contains(&Some(key(1).key_id())) && ids.last() == Some(&Some(key(2).key_id())), "{ids:?}");
    assert_eq!(wal.replay().unwrap().len(), 10);
    drop(wal);
    let both = KeyRing::new(key(2)).with_previous(key(1));
    assert_eq!(open_with(dir.path(), Some(both)).unwrap().len(), 10);
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    wal.set_encryption_ring(KeyRing::new(key(2))).unwrap();
    match wal.replay() {
        Err(WalError::UnknownKey { key_id, lsn, .. }) => assert_eq!((key_id, lsn), (key(1).key_id(), 1)),
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    // The part under the new key still reads.
    let newer = wal.list_segments().unwrap().iter().find(|s| s.key_id == Some(key(2).key_id())).unwrap().first_lsn;
    assert_eq!(wal.replay_from(newer).unwrap().last().unwrap().payload, secret(10));
}

fn image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let seg = segment_files(dir).into_iter().find(|p| std::fs::metadata(p).unwrap().len() > 0).unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    (seg, bytes)
}

#[test]
fn swapped_or_spliced_records_fail_authentication_even_with_valid_crcs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    drop(encrypted_wal(a.path(), 6));
    drop(encrypted_wal(b.path(), 6));
    // The first segment (LSN 1) was created plain and replaced when the ring
    // was set, so it is encrypted too.
    let (seg, bytes) = image(a.path());
    let (recs, seed) = records(&bytes);
    assert!(recs.len() >= 4);
    let ring = || Some(KeyRing::new(key(1)));
    let restore = || std::fs::write(&seg, &bytes).unwrap();

    // 1. Swap the payloads of two records of equal length, CRCs recomputed.
    let (o1, s1) = recs[1];
    let (o2, _) = recs[2];
    let mut m = bytes.clone();
    let (p1, p2) = (o1 + RECORD_HEADER_LEN, o2 + RECORD_HEADER_LEN);
    let plen = s1 - RECORD_HEADER_LEN - 5;
    let tmp = m[p1..p1 + plen].to_vec();
    m.copy_within(p2..p2 + plen, p1);
    m[p2..p2 + plen].copy_from_slice(&tmp);
    fix_crc(&mut m, o1, seed);
    fix_crc(&mut m, o2, seed);
    std::fs::write(&seg, &m).unwrap();
    assert!(matches!(open_with(a.path(), ring()), Err(WalError::AuthenticationFailed { lsn: 2, .. })));
    restore();

    // 2. Splice in a record of the same LSN from another WAL (same key!), CRC fixed.
    let (_, other) = image(b.path());
    let (orecs, _) = records(&other);
    let mut m = bytes.clone();
    let (o, s) = recs[3];
    m[o..o + s].copy_from_slice(&other[orecs[3].0..orecs[3].0 + s]);
    fix_crc(&mut m, o, seed);
    std::fs::write(&seg, &m).unwrap();
    assert!(matches!(open_with(a.path(), ring()), Err(WalError::AuthenticationFailed { lsn: 4, .. })));
    restore();

    // 3. A plain record injected into an encrypted segment (flag cleared), CRC fixed.
    let mut m = bytes.clone();
    let (o, _) = recs[0];
    m[o + 28] &= !1;
    fix_crc(&mut m, o, seed);
    std::fs::write(&seg, &m).unwrap();
    assert!(matches!(open_with(a.path(), ring()), Err(WalError::AuthenticationFailed { lsn: 1, .. })));
    restore();
    assert_eq!(open_with(a.path(), ring()).unwrap().len(), 6);
}

#[test]
fn every_flipped_byte_of_an_encrypted_segment_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = encrypted_wal(dir.path(), 6);
    wal.roll_segment().unwrap(); // seal it: every byte of it is durable
    drop(wal);
    let (seg, bytes) = image(dir.path());
    let (recs, _) = records(&bytes);
    let end = recs.last().map(|(o, s)| o + s).unwrap();
    let mut caught = 0;
    // Every byte of the header, seal and records (block slack aside).
    for pos in (0..128).chain(4096..4096 + 64).chain(data_start(4096) as usize..end) {
        let mut m = bytes.clone();
        m[pos] ^= 0x20;
        std::fs::write(&seg, &m).unwrap();
        match open_with(dir.path(), Some(KeyRing::new(key(1)))) {
            Err(WalError::Corruption { .. } | WalError::AuthenticationFailed { .. }) => caught += 1,
            Err(WalError::UnsupportedVersion { .. } | WalError::UnknownKey { .. }) if pos < 128 => caught += 1,
            Err(e) => panic!("byte {pos}: unexpected error {e}"),
            Ok(recs) => {
                // Only record padding is outside every check; data must be intact.
                assert!(recs.iter().all(|r| r.payload == secret(r.header.lsn)), "byte {pos}: changed data returned");
                let in_padding = recs_padding(&bytes, pos);
                assert!(in_padding, "byte {pos}: flip not caught");
            }
        }
    }
    std::fs::write(&seg, &bytes).unwrap();
    assert!(caught > 1000, "{caught}");
}

fn recs_padding(bytes: &[u8], pos: usize) -> bool {
    records(bytes).0.iter().any(|&(o, s)| {
        let len = u32::from_le_bytes(bytes[o + 4..o + 8].try_into().unwrap()) as usize;
        (o + RECORD_HEADER_LEN + len..o + s).contains(&pos)
    })
}

#[test]
fn the_same_plaintext_at_the_same_lsn_under_the_same_key_never_repeats_ciphertext() {
    let ciphertext = |dir: &Path| {
        let (_, bytes) = image(dir);
        let (recs, _) = records(&bytes);
        let (o, s) = recs[0];
        bytes[o + RECORD_HEADER_LEN..o + s].to_vec()
    };
    // Two WALs.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    drop(encrypted_wal(a.path(), 1));
    drop(encrypted_wal(b.path(), 1));
    assert_ne!(ciphertext(a.path()), ciphertext(b.path()));
    // An LSN reused after a torn tail: LSN 2 written, never synced, lost, written again.
    let dir = tempfile::tempdir().unwrap();
    let mut wal = encrypted_wal(dir.path(), 1);
    wal.append(1, 7, 3, &secret(2)).unwrap();
    let first_try: Vec<u8> = {
        // The unsynced record is only in the buffer; make it reach the file, then "lose" the sync.
        wal.sync().unwrap();
        let (_, bytes) = image(dir.path());
        let (recs, _) = records(&bytes);
        let (o, s) = recs[1];
        bytes[o + RECORD_HEADER_LEN..o + s].to_vec()
    };
    wal.simulate_crash();
    // Tear LSN 2 away, as a power loss could have.
    let seg = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    let (recs, _) = records(&bytes);
    let (o, s) = recs[1];
    bytes[o..o + s].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    wal.set_encryption_ring(KeyRing::new(key(1))).unwrap();
    assert_eq!(wal.append(1, 7, 3, &secret(2)).unwrap(), 2);
    wal.sync().unwrap();
    let seg2 = wal.list_segments().unwrap().last().unwrap().path.clone();
    let bytes2 = std::fs::read(seg2).unwrap();
    let (recs2, _) = records(&bytes2);
    let (o2, s2) = recs2[0];
    assert_ne!(bytes2[o2 + RECORD_HEADER_LEN..o2 + s2].to_vec(), first_try);
    assert_eq!(wal.replay().unwrap()[1].payload, secret(2));
}

#[test]
fn key_files_must_be_private_and_keys_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.key");
    std::fs::write(&raw, [9u8; 32]).unwrap();
    std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(WalEncryptionKey::from_file(&raw).unwrap().key_id(), key(9).key_id());
    let hex = dir.path().join("hex.key");
    std::fs::write(&hex, format!("{}\n", "09".repeat(32))).unwrap();
    std::fs::set_permissions(&hex, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(WalEncryptionKey::from_file(&hex).unwrap().key_id(), key(9).key_id());
    std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(WalEncryptionKey::from_file(&raw), Err(WalError::KeyFile { .. })));
    let shown = format!("{:?} {:?}", key(9), KeyRing::new(key(9)));
    assert!(!shown.contains("9, 9") && !shown.contains("0909"), "{shown}");
}

#[test]
fn hex_key_files_decode_either_case_and_refuse_other_digits() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let lower = write("lower.key", &"ab".repeat(32));
    let upper = write("upper.key", &format!("{}\n", "AB".repeat(32)));
    let want = key(0xab).key_id();
    assert_eq!(WalEncryptionKey::from_file(&lower).unwrap().key_id(), want);
    assert_eq!(WalEncryptionKey::from_file(&upper).unwrap().key_id(), want);
    for bad in ["0g", "+1", " 1", "\u{e9}"] {
        let text = format!("{}{}", bad, "0".repeat(64 - bad.len()));
        let p = write("bad.key", &text);
        match WalEncryptionKey::from_file(&p) {
            Err(WalError::KeyFile { reason, .. }) => assert!(reason.contains("not hex"), "{bad:?}: {reason}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}
