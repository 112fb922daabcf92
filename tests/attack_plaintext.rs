//! Plaintext remnants (I19) after long sequences of switches, rotations,
//! truncations and crashes. Public API only. It held when written, and is
//! kept as a regression test.
mod common;

use std::path::Path;

use common::segment_files;
use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::{SegmentedWal, SegmentedWalConfig};

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(4 * 1024).chunk(4096).recycle(8).build()
}

fn holding(dir: &Path, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap();
        let b = std::fs::read(f.path()).unwrap();
        if b.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            out.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn write(wal: &mut SegmentedWal, marker: &str, n: usize) {
    for i in 0..n {
        let p = format!("{marker}-{i:06}-{}", "x".repeat(300));
        wal.append(1, 0, 0, p.as_bytes()).unwrap();
    }
    wal.sync().unwrap();
}

fn key(b: u8) -> WalEncryptionKey {
    WalEncryptionKey::from_bytes(&[b; 32])
}

#[test]
fn no_plaintext_survives_switches_rotations_truncations_and_crashes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let ring_a = || KeyRing::new(key(1));
    let ring_b = || KeyRing::new(key(2)).with_previous(key(1));
    // Plain history, several segments, some already spares.
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    write(&mut wal, "PLAINONE", 60);
    wal.truncate_before(wal.next_lsn() - 10).unwrap();
    write(&mut wal, "PLAINONE", 20);
    wal.set_encryption_ring(ring_a()).unwrap();
    write(&mut wal, "SECRETA", 30);
    wal.simulate_crash();
    // Reopen, rotate to B, truncate the plain history away.
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    wal.set_encryption_ring(ring_b()).unwrap();
    write(&mut wal, "SECRETB", 30);
    wal.truncate_before(wal.next_lsn()).unwrap();
    write(&mut wal, "SECRETB", 40);
    // Explicit downgrade, plain records, then encryption again.
    wal.disable_encryption().unwrap();
    write(&mut wal, "PLAINTWO", 40);
    wal.set_encryption_ring(ring_b()).unwrap();
    write(&mut wal, "SECRETB", 10);
    wal.truncate_before(wal.next_lsn() - 5).unwrap();
    for _ in 0..6 {
        write(&mut wal, "SECRETB", 15);
        wal.roll_segment().unwrap();
    }
    wal.simulate_crash();
    let mut wal = SegmentedWal::open(cfg(dir)).unwrap();
    wal.set_encryption_ring(ring_b()).unwrap();
    for _ in 0..6 {
        write(&mut wal, "SECRETB", 15);
        wal.truncate_before(wal.next_lsn() - 3).unwrap();
    }
    drop(wal);
    assert!(!segment_files(dir).is_empty());
    for m in ["PLAINONE", "PLAINTWO", "SECRETA", "SECRETB"] {
        assert_eq!(holding(dir, m), Vec::<String>::new(), "plaintext {m} on disk");
    }
}
