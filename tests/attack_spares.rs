//! Attacks on spare files (I17, I19, I21-I23): a file named like a spare
//! was taken into the log without any check of its length or links, and a
//! refused open had already deleted files. Public API only. Written as
//! reproducers before the fixes (`spares::distrust`, tidy after the
//! directory is accepted), kept as their regression tests.

mod common;
use std::path::Path;

use directwal::{RecoveryMode, SegmentedWal, SegmentedWalConfig};

fn cfg(dir: &Path, mode: RecoveryMode) -> SegmentedWalConfig {
    common::config(dir).buffered().segment(8 * 1024).chunk(4096).mode(mode).build()
}

/// A plain WAL of 3 records (closed), then `spare` placed by `place`, then
/// one open that appends 10 synced records and closes; returns what a
/// strict reopen says and how many records it replays.
fn with_spare(place: impl FnOnce(&Path)) -> (tempfile::TempDir, Result<usize, directwal::WalError>) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    {
        let mut wal = SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap();
        for _ in 0..3 {
            wal.append(1, 0, 0, b"old").unwrap();
        }
        wal.sync().unwrap();
    }
    place(dir);
    {
        let mut wal = SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap();
        for _ in 0..10 {
            wal.append(1, 0, 0, b"acknowledged").unwrap();
        }
        wal.sync().unwrap();
    }
    let r = SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).and_then(|w| w.replay()).map(|v| v.len());
    (t, r)
}

const SPARE: &str = "spare-00000000000000000001";

/// Finding 4: a spare whose length is not a multiple of 512 (a bad copy,
/// a restored backup) is recycled into the active segment as is; the next
/// open finds an unsealed newest segment of that length and refuses it as
/// "shortened" (I22): 10 acknowledged records written after a successful
/// open and sync become unreadable without `Tolerant`. Expected: the spare
/// is checked (deleted/refused/resized) before reuse; reopen replays 13.
#[test]
fn odd_length_spare_is_not_recycled_into_an_unopenable_segment() {
    let (_t, r) = with_spare(|dir| std::fs::write(dir.join(SPARE), vec![0u8; 100_000]).unwrap());
    assert_eq!(r.as_ref().ok(), Some(&13), "strict reopen after writing into a recycled odd-length spare: {r:?}");
}

/// Finding 4b: a sparse spare longer than any segment (I23) is recycled;
/// the segment written in it is then "longer than any segment" at the next
/// open: strict refuses, and tolerant SETS IT ASIDE with its 10
/// acknowledged records.
#[test]
fn oversized_spare_is_not_recycled() {
    let (t, r) = with_spare(|dir| {
        let f = std::fs::File::create(dir.join(SPARE)).unwrap();
        f.set_len(3 << 30).unwrap();
    });
    let tolerant = SegmentedWal::open(cfg(t.path(), RecoveryMode::Tolerant))
        .and_then(|w| Ok((w.replay()?.len(), w.recovery_report().set_aside.clone())));
    assert_eq!(r.as_ref().ok(), Some(&13), "strict reopen: {r:?}; tolerant: {tolerant:?}");
}

/// Finding 4c: a spare that is a hard link to someone else's file (names
/// are checked, link counts are not) is recycled: the WAL writes its
/// segment into that inode and the other file's bytes are overwritten.
#[test]
fn hard_linked_spare_is_not_written_through() {
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious.db");
    let original = vec![0x42u8; 64 * 1024];
    std::fs::write(&precious, &original).unwrap();
    let p = precious.clone();
    let (_t, _r) = with_spare(move |dir| std::fs::hard_link(&p, dir.join(SPARE)).unwrap());
    let now = std::fs::read(&precious).unwrap();
    let changed = now.iter().zip(&original).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 0, "{changed} bytes of a file outside the WAL were overwritten");
}

/// Finding 8: an open that REFUSES the directory (here: a symlink named
/// like a segment, I21) has already deleted files in it: `tidy` runs before
/// the catalog's faults are settled, so the spares beyond
/// `recycle_segments` and the `.tmp` files are gone although open changed
/// nothing else and returned an error. Expected: a refused open leaves the
/// directory as it found it (evidence for the operator).
#[test]
fn a_refused_open_deletes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    drop(SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap());
    std::fs::write(dir.join(SPARE), vec![0u8; 8192]).unwrap();
    let tmp = format!("{}.tmp", directwal::segment_file_name(77));
    std::fs::write(dir.join(&tmp), vec![0u8; 8192]).unwrap();
    std::os::unix::fs::symlink("/nonexistent", dir.join(directwal::segment_file_name(500))).unwrap();
    let mut c = cfg(dir, RecoveryMode::Strict);
    c.writer_config.recycle_segments = 0;
    let r = SegmentedWal::open(c).map(|_| ());
    assert!(r.is_err(), "open must refuse the symlink");
    assert!(
        dir.join(SPARE).exists() && dir.join(&tmp).exists(),
        "open refused ({r:?}) but deleted: spare {} tmp {}",
        !dir.join(SPARE).exists(),
        !dir.join(&tmp).exists()
    );
}

/// A symlink swapped in under a WAL name after it was checked (a spare
/// between the pool's check and its reuse) is never written through: the
/// storage refuses to follow it, with and without O_DIRECT.
#[test]
fn the_storage_never_writes_through_a_symlink() {
    use directwal::io::{OpenMode, OsStorage, Storage};
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"not the WAL's").unwrap();
    let link = dir.path().join(directwal::segment_file_name(1).replace("wal-", "spare-").replace(".seg", ""));
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    for direct in [false, true] {
        let r = OsStorage.open(&link, OpenMode { create: false, direct });
        assert!(r.is_err(), "direct={direct}: opened a symlink for writing");
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"not the WAL's");
}

/// Swaps the spare's name for a link to `victim` right before the writer
/// opens it: after `spares::distrust` checked the name, before the open.
#[derive(Debug)]
struct SwapAtOpen {
    victim: std::path::PathBuf,
    symlink: bool,
    swapped: std::sync::atomic::AtomicBool,
}

impl directwal::io::Storage for SwapAtOpen {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        OsStorage.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<directwal::io::DirEntry>> {
        OsStorage.list_dir(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn directwal::io::StorageFile>> {
        let spare = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("spare-"));
        if spare && !mode.create && !self.swapped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::fs::remove_file(path)?;
            if self.symlink {
                std::os::unix::fs::symlink(&self.victim, path)?;
            } else {
                std::fs::hard_link(&self.victim, path)?;
            }
        }
        OsStorage.open(path, mode)
    }
    fn read_image(&self, path: &Path) -> std::io::Result<directwal::io::FileImage> {
        OsStorage.read_image(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize, direct: bool) -> std::io::Result<Vec<u8>> {
        OsStorage.read_range(path, offset, len, direct)
    }
    fn file_len(&self, path: &Path) -> std::io::Result<u64> {
        OsStorage.file_len(path)
    }
    fn link_count(&self, path: &Path) -> std::io::Result<Option<u64>> {
        OsStorage.link_count(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        OsStorage.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        OsStorage.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        OsStorage.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<Box<dyn Send + Sync>> {
        OsStorage.lock_dir(dir)
    }
}

use directwal::io::{OpenMode, OsStorage};

/// Issue 15 item 5 (c): a spare swapped for a hard link to someone else's
/// file (or a symlink) between its check by name and its open is refused on
/// the opened descriptor (fstat): never written, never deleted; the segment
/// starts in a fresh file and the WAL goes on.
#[test]
fn a_spare_swapped_between_its_check_and_its_open_is_left_untouched() {
    for symlink in [false, true] {
        let outside = tempfile::tempdir().unwrap();
        let precious = outside.path().join("precious.db");
        let original = vec![0x42u8; 64 * 1024];
        std::fs::write(&precious, &original).unwrap();
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        drop(SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap());
        // A spare the WAL could have made: one name, a multiple of 512 long.
        std::fs::write(dir.join(SPARE), vec![0u8; 8192]).unwrap();
        let storage =
            SwapAtOpen { victim: precious.clone(), symlink, swapped: std::sync::atomic::AtomicBool::new(false) };
        let storage = std::sync::Arc::new(storage);
        let mut wal = SegmentedWal::open_with_storage(cfg(dir, RecoveryMode::Strict), storage.clone())
            .unwrap_or_else(|e| panic!("symlink={symlink}: open failed: {e}"));
        assert!(storage.swapped.load(std::sync::atomic::Ordering::SeqCst), "the spare was never opened");
        for _ in 0..10 {
            wal.append(1, 0, 0, b"acknowledged").unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        // Before: the header and records went into precious.db (hard link),
        // or the refused symlink was deleted and open failed.
        let now = std::fs::read(&precious).unwrap();
        let changed = now.iter().zip(&original).filter(|(a, b)| a != b).count();
        assert_eq!((changed, now.len()), (0, original.len()), "symlink={symlink}: written through");
        let meta = std::fs::symlink_metadata(dir.join(SPARE)).expect("the swapped-in name is left in place");
        assert_eq!(meta.file_type().is_symlink(), symlink);
        if !symlink {
            std::fs::remove_file(dir.join(SPARE)).unwrap();
            let wal = SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap();
            assert_eq!(wal.replay().unwrap().len(), 10);
        }
    }
}

/// A spare refused on its opened descriptor leaves the segment to a fresh
/// file, whose header must then not claim to be recycled (flag bit 0 of
/// byte 57): the header was built, and its `encryption_off` MAC made, on the
/// assumption that the spare would be used. Before: the fresh file carried
/// `recycled`, so its scan treated a bad record after the data as stale
/// bytes of an older segment (I17) instead of a torn write, and `inspect`
/// said recycled.
#[test]
fn a_segment_whose_spare_was_refused_at_open_is_not_flagged_recycled() {
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious.db");
    std::fs::write(&precious, vec![0x42u8; 8192]).unwrap();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    drop(SegmentedWal::open(cfg(dir, RecoveryMode::Strict)).unwrap());
    std::fs::write(dir.join(SPARE), vec![0u8; 8192]).unwrap();
    let storage = SwapAtOpen { victim: precious, symlink: false, swapped: std::sync::atomic::AtomicBool::new(false) };
    let storage = std::sync::Arc::new(storage);
    let mut wal = SegmentedWal::open_with_storage(cfg(dir, RecoveryMode::Strict), storage.clone()).unwrap();
    assert!(storage.swapped.load(std::sync::atomic::Ordering::SeqCst), "the spare was never opened");
    wal.append(1, 0, 0, b"acknowledged").unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.stats().segments_recycled, 0);
    drop(wal);
    let newest = common::segment_files(dir).pop().unwrap();
    let flags = std::fs::read(&newest).unwrap()[57];
    assert_eq!(flags & 1, 0, "{}: a fresh file flagged recycled", newest.display());
}
