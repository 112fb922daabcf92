//! DESIGN I26 (issue 15 item 5, remainder): the writer keeps a durable block
//! past its data in an unsealed segment, so a newest segment cut at a
//! multiple of 512 that is also a record boundary is reported as shortened,
//! never opened as clean; segments of format versions 1–3 keep I22's limit.
mod common;

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{payload, segment_files};
use directwal::CorruptionKind;
use directwal::check::{CheckOptions, check_dir};
use directwal::io::{DirEntry, FileImage, OpenMode, Storage, StorageFile};
use directwal::layout::{RECORD_HEADER_LEN, data_start, record_size};
use directwal::sim::SimStorage;
use directwal::{RecoveryMode, SegmentedWal, SegmentedWalConfig, WalError, WalReader};

/// A payload whose record takes exactly 512 bytes: every 512-multiple past
/// the data start is a record boundary.
const LEN: usize = 512 - RECORD_HEADER_LEN;

fn cfg(dir: &Path) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(1 << 20).chunk(64 * 1024).build()
}

/// One unsealed segment of `n` synced 512-byte records, left as a crash leaves it.
fn wal_dir(n: u64) -> tempfile::TempDir {
    assert_eq!(record_size(LEN), 512);
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    for lsn in 1..=n {
        wal.append(1, 0, 0, &payload(lsn, LEN)).unwrap();
    }
    wal.sync().unwrap();
    wal.simulate_crash();
    dir
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// The end of record `n` (1-based) in the segment.
fn record_end(n: u64) -> u64 {
    data_start(4096) + n * 512
}

/// Rewrites the header's version field (and its CRC), as an older build wrote it.
fn set_version(path: &Path, version: u16) {
    let mut b = std::fs::read(path).unwrap();
    b[8..10].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&b[..124]);
    b[124..128].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_newest_segment_cut_at_a_block_aligned_record_boundary_is_shortened_not_clean() {
    let dir = wal_dir(10);
    let newest = segment_files(dir.path())[0].clone();
    let name = newest.file_name().unwrap().to_string_lossy().into_owned();
    let cut = record_end(7);
    assert_eq!(cut % 512, 0);
    set_len(&newest, cut);
    // Before (format ≤ 3 rule): open kept LSNs 1..=7, reported nothing, and
    // verify was clean.
    let check = check_dir(dir.path(), &CheckOptions::default(), &mut |_| {}).unwrap();
    let p = check.problems().next().cloned().expect("verify must report the cut");
    assert_eq!((p.segment.as_str(), p.offset, p.lsn), (name.as_str(), cut, 8), "{p}");
    assert!(p.to_string().contains("shortened"), "{p}");
    assert!(matches!(WalReader::open_dir(dir.path(), None), Err(WalError::Corruption { .. })));
    match SegmentedWal::open(cfg(dir.path())) {
        Err(WalError::Corruption { segment, offset, lsn, kind: CorruptionKind::NoReserve { file_len, data_end } }) => {
            assert_eq!((segment, offset, lsn, file_len, data_end), (name.clone(), cut, 8, cut, cut))
        }
        other => panic!("expected Corruption(NoReserve), got {other:?}"),
    }
    // The refusal changed nothing; tolerant keeps what the file holds and says so.
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), cut);
    let mut c = cfg(dir.path());
    c.writer_config.recovery_mode = RecoveryMode::Tolerant;
    let mut wal = SegmentedWal::open(c).unwrap();
    assert_eq!(wal.replay().unwrap().len(), 7);
    assert!(wal.recovery_report().dropped_corruption.as_deref().unwrap().contains("shortened"));
    assert_eq!(wal.append(1, 0, 0, b"after").unwrap(), 8);
}

#[test]
fn a_cut_inside_the_last_record_at_a_multiple_of_512_is_shortened_not_a_torn_write() {
    // Records of 768 bytes: a cut 256 bytes into the second one is a multiple of 512.
    let len = 768 - RECORD_HEADER_LEN;
    assert_eq!(record_size(len), 768);
    let dir = tempfile::tempdir().unwrap();
    let mut wal = SegmentedWal::open(cfg(dir.path())).unwrap();
    for lsn in 1..=4 {
        wal.append(1, 0, 0, &payload(lsn, len)).unwrap();
    }
    wal.sync().unwrap();
    wal.simulate_crash();
    let newest = segment_files(dir.path())[0].clone();
    set_len(&newest, data_start(4096) + 1024);
    // Before: cut as a torn final write, open succeeded with LSN 1.
    match SegmentedWal::open(cfg(dir.path())) {
        Err(WalError::Corruption { offset, lsn, kind: CorruptionKind::NoReserve { .. }, .. }) => {
            assert_eq!((offset, lsn), (data_start(4096) + 768, 2))
        }
        other => panic!("expected Corruption(NoReserve), got {other:?}"),
    }
}

#[test]
fn an_old_format_segment_with_data_to_its_end_still_opens_clean() {
    for version in [1u16, 2, 3] {
        let dir = wal_dir(10);
        let newest = segment_files(dir.path())[0].clone();
        set_version(&newest, version);
        set_len(&newest, record_end(7));
        assert!(check_dir(dir.path(), &CheckOptions::default(), &mut |_| {}).unwrap().is_clean(), "v{version}");
        assert!(WalReader::open_dir(dir.path(), None).is_ok());
        let wal = SegmentedWal::open(cfg(dir.path())).unwrap();
        assert_eq!(wal.replay().unwrap().len(), 7, "v{version}");
        assert!(wal.recovery_report().dropped_corruption.is_none());
    }
}

#[test]
fn every_new_segment_is_written_as_version_4() {
    let dir = wal_dir(1);
    let b = std::fs::read(&segment_files(dir.path())[0]).unwrap();
    assert_eq!(u16::from_le_bytes([b[8], b[9]]), 4);
}

/// No false alarm: appends that cross the prepared space with no sync in
/// between (the writer fdatasyncs the extension itself before the data
/// reaches it), and every crash image of it opens strictly with every
/// acknowledged record. (The simulator rarely shortens a file's length, so
/// the writer's side is checked at every write, by `Checked`, here too.)
#[test]
fn writes_past_the_prepared_space_without_syncs_keep_the_reserve_in_every_crash_image() {
    // Small epochs (zero-filled space) with fallocate; large ones (1 MiB and
    // more: fallocated space, or, where fallocate is unsupported as on
    // macOS, one zero block written at the new end) with and without it.
    for (segment, max_len, per_sync, no_fallocate) in
        [(256 << 10, 3000, 40, false), (4 << 20, 60_000, 40, false), (4 << 20, 60_000, 40, true)]
    {
        crash_images_keep_the_reserve(segment, max_len, per_sync, no_fallocate);
    }
}

fn crash_images_keep_the_reserve(segment: u64, max_len: usize, per_sync: u64, no_fallocate: bool) {
    // Large records go through a larger buffer: fewer operations to crash after.
    let buffer = if max_len > 3000 { 64 << 10 } else { 8 << 10 };
    let cfg = || common::config(Path::new("/wal")).segment(segment).buffer(buffer).chunk(8 * 1024).build();
    let run = |sim: &SimStorage| -> directwal::Result<(u64, u64)> {
        let storage = Arc::new(Checked { inner: sim.clone(), no_fallocate });
        let mut wal = SegmentedWal::open_with_storage(cfg(), storage)?;
        let mut acked = 0;
        for round in 0..3u64 {
            for i in 0..per_sync {
                // 250.. bytes: records end anywhere in a block.
                wal.append(1, 0, 0, &payload(round * 100 + i, 250 + (i as usize * 7919) % max_len))?;
            }
            wal.sync()?;
            acked = wal.durable_lsn();
        }
        let st = wal.stats_snapshot();
        Ok((acked, st.reserve_fdatasyncs))
    };
    let full = SimStorage::new();
    let (acked, reserve_syncs) = run(&full).unwrap();
    assert!(reserve_syncs > 0, "the workload must outrun the ordinary syncs");
    let total = full.ops();
    let mut x = 42u64;
    let mut rand = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x >> 33
    };
    let mut points = 0;
    for k in 0..total {
        let sim = SimStorage::new();
        sim.crash_after(k);
        let acked_before = match run(&sim) {
            Ok(_) => acked,
            Err(_) => 0, // a lower bound is enough: what was acked is checked by the sweep
        };
        // Fewer images per point of the long runs (each is megabytes).
        for _ in 0..if max_len > 3000 { 1 } else { 4 } {
            let img = sim.crash_image(&mut rand);
            let wal = SegmentedWal::open_with_storage(cfg(), Arc::new(img))
                .unwrap_or_else(|e| panic!("{max_len}/{no_fallocate}: crash after op {k}: strict open refused: {e}"));
            assert!(wal.replay().unwrap().len() as u64 >= acked_before);
            points += 1;
        }
    }
    println!(
        "I26 sim run (records up to {max_len} bytes, fallocate off {no_fallocate}): {total} operations, {points} crash images, {reserve_syncs} reserve fdatasyncs"
    );
}

/// Checks I26 at every write: a write inside the file (a data write; the
/// writer extends files only by preparing space) ends at least a block (the
/// default 4096 of these tests' configs, which `catalog::check_reserve`
/// relies on, not only 512 bytes) before the length the file's last
/// completed fdatasync made durable.
/// Optionally answers fallocate with `Unsupported`.
#[derive(Debug)]
struct Checked {
    inner: SimStorage,
    no_fallocate: bool,
}

struct CheckedFile {
    inner: Box<dyn StorageFile>,
    no_fallocate: bool,
    /// The file's current and durable length.
    len: Mutex<(u64, u64)>,
}

impl StorageFile for CheckedFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let mut l = self.len.lock().unwrap();
        if end <= l.0 {
            assert!(end + 4096 <= l.1, "I26: a write ending at {end} with the durable length at {}", l.1);
        }
        self.inner.write_all_at(buf, offset)?;
        l.0 = l.0.max(end);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let current = self.len.lock().unwrap().0;
        self.inner.sync_data()?;
        let mut l = self.len.lock().unwrap();
        l.1 = l.1.max(current);
        Ok(())
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.no_fallocate {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        self.inner.allocate(offset, len)?;
        let mut l = self.len.lock().unwrap();
        l.0 = l.0.max(offset + len);
        Ok(())
    }
    fn stat(&self) -> io::Result<Option<directwal::io::FileStat>> {
        self.inner.stat()
    }
}

impl Storage for Checked {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.list_dir(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let len = if mode.create { 0 } else { self.inner.file_len(path)? };
        let inner = self.inner.open(path, mode)?;
        // A file found on the device is as durable as it is long.
        Ok(Box::new(CheckedFile { inner, no_fallocate: self.no_fallocate, len: Mutex::new((len, len)) }))
    }
    fn read_image(&self, path: &Path) -> io::Result<FileImage> {
        self.inner.read_image(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize, direct: bool) -> io::Result<Vec<u8>> {
        self.inner.read_range(path, offset, len, direct)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_len(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        self.inner.lock_dir(dir)
    }
}

/// I26 at every write, for small and large sync epochs (zero-filled and
/// fallocated space), with and without fallocate, with records crossing
/// the prepared space between syncs, across rolls, truncation into spares
/// and reopens.
#[test]
fn no_data_write_ends_within_a_block_of_the_durable_length() {
    for no_fallocate in [false, true] {
        for (chunk, per_sync, max_len) in [(8 << 10, 3, 3000), (8 << 10, 40, 3000), (64 << 10, 8, 300_000)] {
            let storage = Arc::new(Checked { inner: SimStorage::new(), no_fallocate });
            let cfg =
                common::config(Path::new("/wal")).segment(1 << 20).buffer(16 << 10).chunk(chunk).recycle(2).build();
            let mut reserve_syncs = 0;
            let mut n = 0u64;
            for _open in 0..2 {
                let mut wal = SegmentedWal::open_with_storage(cfg.clone(), storage.clone()).unwrap();
                for _ in 0..12 {
                    for _ in 0..per_sync {
                        n += 1;
                        wal.append(1, 0, 0, &payload(n, 100 + (n as usize * 7919) % max_len)).unwrap();
                    }
                    wal.sync().unwrap();
                    if n.is_multiple_of(5) {
                        wal.roll_segment().unwrap();
                        wal.truncate_before(wal.durable_lsn()).unwrap();
                    }
                }
                reserve_syncs += wal.stats_snapshot().reserve_fdatasyncs;
            }
            println!(
                "fallocate off {no_fallocate}, chunk {chunk}, {per_sync} per sync: {reserve_syncs} reserve fdatasyncs"
            );
        }
    }
}
