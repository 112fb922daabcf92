//! Attacks on fail closed (I11) through the `encryption_off` header flag,
//! and the explicit downgrade that must keep working. The flag lifts the
//! requirement an encrypted segment sets only with a MAC made with that
//! segment's key (docs/FORMAT.md, "When encryption is required"): a header
//! rewritten by someone without the key (CRC fixed) proves nothing. Public
//! API only; the header layout and the MAC are computed here from
//! FORMAT.md's definitions, independently of the crate.
mod common;

use std::path::Path;

use common::segment_files;
use directwal::check::{CheckOptions, check_dir};
use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::{SegmentedWal, SegmentedWalConfig, WalError};
use hmac::{KeyInit, Mac};

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(8 * 1024).chunk(4096).build()
}

fn key(n: u8) -> WalEncryptionKey {
    WalEncryptionKey::from_bytes(&[n; 32])
}

fn ring() -> KeyRing {
    KeyRing::new(key(3))
}

/// An encrypted WAL: 10 records, then a roll (the newest segment is empty).
fn encrypted_then_rolled(dir: &Path) {
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    wal.set_encryption_ring(ring()).unwrap();
    for _ in 0..10 {
        wal.append(1, 0, 0, b"SECRET").unwrap();
    }
    wal.roll_segment().unwrap();
    wal.sync().unwrap();
}

/// FORMAT.md's header MAC: HMAC-SHA256 under HKDF-SHA256(ikm = ring key,
/// no salt, info "directwal v1 header mac") of header bytes 0..124 with the
/// MAC field (72..104) zero and its key id (104..108) in place.
fn format_mac(key_bytes: &[u8; 32], header: &[u8]) -> [u8; 32] {
    let mut mac_key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(None, key_bytes).expand(b"directwal v1 header mac", &mut mac_key).unwrap();
    let mut input = header[..124].to_vec();
    input[72..104].fill(0);
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&mac_key).unwrap();
    m.update(&input);
    m.finalize().into_bytes().into()
}

/// How a forger rewrites the newest header as a plain segment flagged
/// `encryption_off` (cipher byte 0, flags bit 1, key id 0, CRC fixed).
enum Forge {
    /// Version 3, no MAC (what the previous build wrote).
    Version3,
    /// Version 4 with this MAC field: garbage, or FORMAT.md's MAC under a key.
    Mac { key_id: u32, tag: [u8; 32] },
    /// Version 4 with FORMAT.md's MAC under these key bytes.
    SignedWith(WalEncryptionKey, [u8; 32]),
}

fn forge_newest(dir: &Path, how: Forge) {
    let newest = segment_files(dir).pop().unwrap();
    let mut b = std::fs::read(&newest).unwrap();
    b[56] = 0;
    b[57] |= 1 << 1;
    b[60..64].fill(0);
    b[72..108].fill(0);
    match how {
        Forge::Version3 => b[8..10].copy_from_slice(&3u16.to_le_bytes()),
        Forge::Mac { key_id, tag } => {
            b[8..10].copy_from_slice(&4u16.to_le_bytes());
            b[72..104].copy_from_slice(&tag);
            b[104..108].copy_from_slice(&key_id.to_le_bytes());
        }
        Forge::SignedWith(key, bytes) => {
            b[8..10].copy_from_slice(&4u16.to_le_bytes());
            b[104..108].copy_from_slice(&key.key_id().to_le_bytes());
            let tag = format_mac(&bytes, &b);
            b[72..104].copy_from_slice(&tag);
        }
    }
    let crc = crc32c::crc32c(&b[..124]);
    b[124..128].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&newest, b).unwrap();
}

/// The problems `verify` reports (with `ring`: records too).
fn problems(dir: &Path, ring: Option<KeyRing>) -> directwal::Result<Vec<String>> {
    let verify_records = ring.is_some();
    let check = check_dir(dir, &CheckOptions { ring, verify_records }, &mut |_| {})?;
    Ok(check.problems().map(|p| p.to_string()).collect())
}

fn refused<T: std::fmt::Debug>(r: directwal::Result<T>, what: &str) {
    match r {
        Err(WalError::EncryptionRequired { key_id }) => assert_eq!(key_id, key(3).key_id(), "{what}"),
        other => panic!("{what}: expected EncryptionRequired, got {other:?}"),
    }
}

/// Finding 7: an encrypted WAL whose newest header is rewritten as a plain
/// segment flagged `encryption_off`, without a MAC (as version 3 wrote it)
/// or with a made-up one. Before: every record was still there, `verify`
/// said clean, and an open without a ring accepted plain appends. Now both
/// the append is refused and `verify` with the ring reports the header.
#[test]
fn a_forged_encryption_off_flag_does_not_turn_encryption_off() {
    for (how, says) in
        [(Forge::Version3, "version 3"), (Forge::Mac { key_id: key(3).key_id(), tag: [0x5a; 32] }, "MAC fails")]
    {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        encrypted_then_rolled(dir);
        forge_newest(dir, how);
        let found = problems(dir, Some(ring())).unwrap();
        assert!(found.len() == 1 && found[0].contains(says), "{found:?}");
        let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
        refused(wal.append(1, 0, 0, b"PLAINTEXT-AFTER-FORGED-FLAG"), says);
        refused(wal.roll_segment(), says);
        refused(wal.disable_encryption(), says);
    }
}

/// I11: a MAC proves the downgrade only when made with the key the
/// encrypted segments before it require. One made with another key (the
/// forger's own, or an old key the verifier still holds for reading) proves
/// nothing; the required key's MAC, computed from FORMAT.md, does.
#[test]
fn only_a_mac_under_the_required_key_proves_the_flag() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    encrypted_then_rolled(dir);
    forge_newest(dir, Forge::SignedWith(key(9), [9; 32]));
    let both = KeyRing::new(key(3)).with_previous(key(9));
    let found = problems(dir, Some(both.clone())).unwrap();
    assert!(found.len() == 1 && found[0].contains(&format!("made with key {:08x}", key(9).key_id())), "{found:?}");
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    refused(wal.append(1, 0, 0, b"PLAINTEXT"), "another key's MAC");
    drop(wal);

    // The key holder's MAC (the same bytes the crate computes): clean.
    forge_newest(dir, Forge::SignedWith(key(3), [3; 32]));
    assert_eq!(problems(dir, Some(both)).unwrap(), Vec::<String>::new());
    // A ring without the MAC's key cannot check it: UnknownKey, as for records.
    let opts = CheckOptions { ring: Some(KeyRing::new(key(9))), verify_records: false };
    let err = check_dir(dir, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, WalError::UnknownKey { key_id, lsn: 11, .. } if key_id == key(3).key_id()), "{err:?}");
    // Without a ring the MAC goes unchecked (not a problem), and open,
    // which never has a ring, still requires the key.
    let check = check_dir(dir, &CheckOptions::default(), &mut |_| {}).unwrap();
    assert!(check.is_clean(), "{:?}", check.problems().collect::<Vec<_>>());
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    refused(wal.append(1, 0, 0, b"PLAINTEXT"), "unverified MAC");
}

/// The user's side: an explicit downgrade with the ring set keeps working
/// across rolls and reopens as long as the ring is set after each open;
/// without it, the key is required while encrypted segments remain; once
/// they are truncated away, no ring is needed.
#[test]
fn a_legit_disable_keeps_working_with_the_ring_until_the_encrypted_history_is_gone() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    encrypted_then_rolled(dir);
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    wal.set_encryption_ring(ring()).unwrap();
    wal.disable_encryption().unwrap();
    let mut next = 11;
    for round in 0..3 {
        for _ in 0..40 {
            assert_eq!(wal.append(1, 0, 0, b"plain by choice").unwrap(), next, "round {round}");
            next += 1;
        }
        wal.roll_segment().unwrap();
        wal.sync().unwrap();
        drop(wal);
        assert_eq!(problems(dir, Some(ring())).unwrap(), Vec::<String>::new(), "round {round}");
        // Without the ring: the key is required, nothing is written.
        let files = segment_files(dir);
        let mut bare = SegmentedWal::open(cfg(dir)).unwrap();
        refused(bare.append(1, 0, 0, b"x"), "reopen without the ring");
        refused(bare.truncate_before(next), "truncate without the ring");
        drop(bare);
        assert_eq!(segment_files(dir), files, "round {round}: no segment created or deleted");
        wal = SegmentedWal::open(cfg(dir)).unwrap();
        wal.set_encryption_ring(ring()).unwrap();
        wal.disable_encryption().unwrap();
    }
    assert!(segment_files(dir).len() >= 4, "{:?}", segment_files(dir));
    // The encrypted history (LSNs 1..=10) truncated away: plain for good.
    wal.truncate_before(11).unwrap();
    drop(wal);
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    assert_eq!(wal.append(1, 0, 0, b"no ring needed").unwrap(), next);
    wal.roll_segment().unwrap();
    assert_eq!(wal.replay().unwrap().len() as u64, next - 10);
    drop(wal);
    let check = check_dir(dir, &CheckOptions { ring: None, verify_records: true }, &mut |_| {}).unwrap();
    assert!(check.is_clean(), "{:?}", check.problems().collect::<Vec<_>>());
}

/// A WAL the previous build turned off (a version 3 flag, no MAC) is
/// unproven: the key is required again, `verify` says why, and the key
/// holder's `disable_encryption` records the decision with a MAC, after
/// which `verify` with the ring is clean.
#[test]
fn a_version_3_flag_is_unproven_until_the_key_holder_confirms_it() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    encrypted_then_rolled(dir);
    forge_newest(dir, Forge::Version3);
    let found = problems(dir, None).unwrap();
    assert!(found.len() == 1 && found[0].contains("version 3") && found[0].contains("still requires"), "{found:?}");
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    refused(wal.append(1, 0, 0, b"PLAINTEXT"), "version 3 flag");
    wal.set_encryption_ring(ring()).unwrap();
    wal.disable_encryption().unwrap();
    assert_eq!(wal.append(1, 0, 0, b"plain, now proven").unwrap(), 11);
    wal.roll_segment().unwrap();
    drop(wal);
    // The empty version 3 segment was replaced by a proven one.
    // The empty version 3 segment was replaced by a proven one (every new
    // header is version 4, the encrypted one too).
    let newest_v = |dir: &Path| segment_files(dir).iter().map(|p| std::fs::read(p).unwrap()[8]).collect::<Vec<_>>();
    assert_eq!(newest_v(dir), [4, 4, 4]);
    assert_eq!(problems(dir, Some(ring())).unwrap(), Vec::<String>::new());
}

/// After a rotation, the proof is made with the key of the newest encrypted
/// segment on disk, which the ring holds whenever it could be set: turning
/// off right after a rotation (the new key's segment still empty, so
/// replaced) and again after a reopen both prove, and `verify` is clean.
#[test]
fn a_disable_right_after_a_rotation_is_proven_with_the_key_on_disk() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let rotated = || KeyRing::new(key(4)).with_previous(key(3));
    encrypted_then_rolled(dir);
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    wal.set_encryption_ring(rotated()).unwrap();
    wal.disable_encryption().unwrap();
    assert_eq!(wal.append(1, 0, 0, b"plain").unwrap(), 11);
    drop(wal);
    let newest = std::fs::read(segment_files(dir).pop().unwrap()).unwrap();
    assert_eq!(newest[104..108], key(3).key_id().to_le_bytes(), "the MAC is made with the key on disk");
    assert_eq!(problems(dir, Some(rotated())).unwrap(), Vec::<String>::new());
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    refused(wal.append(1, 0, 0, b"x"), "reopen without the ring");
    // A ring without the key on disk is refused as before; the rotated one proves again.
    assert!(matches!(wal.set_encryption_ring(KeyRing::new(key(4))), Err(WalError::UnknownKey { .. })));
    wal.set_encryption_ring(rotated()).unwrap();
    wal.disable_encryption().unwrap();
    assert_eq!(wal.append(1, 0, 0, b"plain").unwrap(), 12);
    drop(wal);
    assert_eq!(problems(dir, Some(rotated())).unwrap(), Vec::<String>::new());
}
