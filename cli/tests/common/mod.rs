//! Helpers of the CLI tests: the binary, and WAL directories to run it on.
#![allow(dead_code)] // each test file uses some of them

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use directwal::crypto::{KeyRing, WalEncryptionKey};
use directwal::{SegmentedWal, SegmentedWalConfig};

/// Records per segment in these tests: segments roll at 16 KiB.
pub const PAYLOAD_LEN: usize = 100;

pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_directwal"))
        .args(args)
        .env_remove("DIRECTWAL_KEY_FILE")
        .output()
        .expect("the binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 output")
}

pub fn payload(i: u64) -> Vec<u8> {
    format!("record {i:06} ").into_bytes().into_iter().cycle().take(PAYLOAD_LEN).collect()
}

pub fn config(dir: &Path) -> SegmentedWalConfig {
    let mut c = SegmentedWalConfig::new(dir.into());
    c.segment_target_size = 16 * 1024;
    c
}

/// A WAL of `n` synced records over several segments, in a directory on
/// the test's disk (O_DIRECT); returns it.
pub fn write_wal(n: u64, ring: Option<KeyRing>) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut wal = SegmentedWal::open(config(dir.path())).unwrap();
    if let Some(ring) = ring {
        wal.set_encryption_ring(ring).unwrap();
    }
    for i in 1..=n {
        wal.append(1 + (i % 3) as u16, i as u32 * 7, (i % 5) as u16, &payload(i)).unwrap();
        if i % 10 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.sync().unwrap();
    dir
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

pub fn key_file(dir: &Path, byte: u8) -> (PathBuf, KeyRing) {
    let path = dir.join(format!("key-{byte}"));
    std::fs::write(&path, [byte; 32]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, KeyRing::new(WalEncryptionKey::from_bytes(&[byte; 32])))
}

/// Recomputes a forged segment header's CRC32C (bytes 124..128 over
/// 0..124, docs/FORMAT.md "Segment header"), as a hand edit or an old build
/// would leave it.
pub fn reseal_header(header: &mut [u8]) {
    let crc = crc32c::crc32c(&header[..124]);
    header[124..128].copy_from_slice(&crc.to_le_bytes());
}
