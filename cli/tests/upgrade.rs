//! After an upgrade from 0.1 (DESIGN I11): a plain segment 0.1's
//! `disable_encryption` wrote after encrypted ones carries no
//! `encryption_off` flag. `inspect` and `verify` report it, in words that
//! say what it may be and what to do, until the key holder's
//! `set_encryption_ring` + `disable_encryption` confirms it.
mod common;

use common::*;
use directwal::{SegmentedWal, WalError};

/// Rewrites a flagged plain segment's header as 0.1 wrote it: version 2,
/// no `encryption_off` flag, no MAC.
fn as_written_by_0_1(path: &std::path::Path) {
    let mut b = std::fs::read(path).unwrap();
    assert_eq!((b[56], b[57] & 2), (0, 2), "a plain segment flagged encryption_off");
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    b[57] &= !2;
    b[72..108].fill(0);
    reseal_header(&mut b);
    std::fs::write(path, b).unwrap();
}

#[test]
fn an_older_builds_plain_segment_is_reported_until_the_key_holder_confirms_it() {
    let keys = tempfile::tempdir().unwrap();
    let (key, ring) = key_file(keys.path(), 0x42);
    let dir = write_wal(40, Some(ring.clone()));
    let mut wal = SegmentedWal::open(config(dir.path())).unwrap();
    wal.set_encryption_ring(ring.clone()).unwrap();
    wal.disable_encryption().unwrap();
    for i in 41..=43 {
        wal.append(1, 0, 0, &payload(i)).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    as_written_by_0_1(&segments(dir.path()).pop().unwrap());

    let (d, key) = (dir.path().to_str().unwrap(), key.to_str().unwrap());
    let said = "no proven `encryption_off` flag (a forged header, or an older build's disable: \
                confirm with set_encryption_ring + disable_encryption)";
    for args in [&["inspect", d][..], &["verify", d, "--key-file", key]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains(said), "{args:?}: {}", stdout(&o));
    }

    // Every open requires the key; the error names both ways on.
    let mut wal = SegmentedWal::open(config(dir.path())).unwrap();
    let refused = wal.append(1, 0, 0, b"plain?").unwrap_err();
    assert!(matches!(refused, WalError::EncryptionRequired { .. }), "{refused:?}");
    let text = refused.to_string();
    assert!(text.contains("set a key ring holding it") && text.contains("then call disable_encryption"), "{text}");
    // The key holder confirms the decision.
    wal.set_encryption_ring(ring).unwrap();
    wal.disable_encryption().unwrap();
    assert_eq!(wal.append(1, 0, 0, &payload(44)).unwrap(), 44);
    wal.sync().unwrap();
    drop(wal);
    for args in [&["inspect", d][..], &["verify", d, "--key-file", key]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}{}", stdout(&o), stderr(&o));
    }
}
