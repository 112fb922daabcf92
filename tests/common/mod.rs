//! Shared helpers: the one config builder and the one payload generator of
//! the tests, a fault-injecting storage over the real file system, a PRNG.
#![allow(dead_code)]

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use directwal::SegmentedWalConfig;
use directwal::io::{FileImage, OpenMode, OsStorage, Storage, StorageFile};

/// The one config builder of the tests: `config(dir)` is
/// `SegmentedWalConfig::new(dir)` (O_DIRECT on, defaults), and each method
/// sets one knob, so a test says only what it changes.
#[derive(Debug, Clone)]
pub struct Config(SegmentedWalConfig);

/// Starts a test config for a WAL in `dir` (a path on the simulated device
/// works too).
pub fn config(dir: &Path) -> Config {
    Config(SegmentedWalConfig::new(dir.into()))
}

impl Config {
    /// Buffered I/O + fdatasync instead of O_DIRECT (what
    /// `SegmentedWalConfig::for_testing` sets).
    pub fn buffered(mut self) -> Self {
        self.0.writer_config.use_direct_io = false;
        self
    }
    /// `segment_target_size`.
    pub fn segment(mut self, bytes: u64) -> Self {
        self.0.segment_target_size = bytes;
        self
    }
    /// `writer_config.prepare_chunk_size`.
    pub fn chunk(mut self, bytes: u64) -> Self {
        self.0.writer_config.prepare_chunk_size = bytes;
        self
    }
    /// `writer_config.write_buffer_size`.
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.0.writer_config.write_buffer_size = bytes;
        self
    }
    /// `writer_config.recovery_mode`.
    pub fn mode(mut self, mode: directwal::RecoveryMode) -> Self {
        self.0.writer_config.recovery_mode = mode;
        self
    }
    /// `writer_config.recycle_segments`.
    pub fn recycle(mut self, files: usize) -> Self {
        self.0.writer_config.recycle_segments = files;
        self
    }
    /// The config.
    pub fn build(self) -> SegmentedWalConfig {
        self.0
    }
}

/// Knobs shared by the storage and every file it opened.
#[derive(Debug, Default)]
pub struct Faults {
    /// Opening with O_DIRECT answers EINVAL, as a file system without it would.
    pub refuse_direct: AtomicBool,
    /// Every write that would extend a file answers ENOSPC (overwrites of
    /// written blocks need no space, as on ext4).
    pub enospc: AtomicBool,
    /// Writes left before every write answers EIO (negative: never).
    pub eio_write_after: AtomicI64,
    /// Every fdatasync answers EIO.
    pub eio_sync: AtomicBool,
    /// Bytes written so far (successful writes).
    pub written: std::sync::atomic::AtomicU64,
    /// The next mapping (`read_image`) of the file with this name answers
    /// EIO, once.
    pub eio_image_once: std::sync::Mutex<Option<String>>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        let f = Faults::default();
        f.eio_write_after.store(-1, Ordering::SeqCst);
        Arc::new(f)
    }
}

#[derive(Debug)]
pub struct FaultyStorage {
    pub faults: Arc<Faults>,
}

pub fn faulty() -> (Arc<FaultyStorage>, Arc<Faults>) {
    let faults = Faults::new();
    (Arc::new(FaultyStorage { faults: faults.clone() }), faults)
}

struct FaultyFile {
    inner: Box<dyn StorageFile>,
    /// Same inode, for its size (the path changes at rename).
    stat: std::fs::File,
    faults: Arc<Faults>,
}

impl StorageFile for FaultyFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.faults.enospc.load(Ordering::SeqCst) && offset + buf.len() as u64 > self.stat.metadata()?.len() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let left = self.faults.eio_write_after.load(Ordering::SeqCst);
        if left == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if left > 0 {
            self.faults.eio_write_after.store(left - 1, Ordering::SeqCst);
        }
        self.inner.write_all_at(buf, offset)?;
        self.faults.written.fetch_add(buf.len() as u64, Ordering::SeqCst);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.faults.eio_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data()
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.faults.enospc.load(Ordering::SeqCst) && offset + len > self.stat.metadata()?.len() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.inner.allocate(offset, len)
    }
    fn stat(&self) -> io::Result<Option<directwal::io::FileStat>> {
        self.inner.stat()
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsStorage.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<directwal::io::DirEntry>> {
        OsStorage.list_dir(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        if mode.direct && self.faults.refuse_direct.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(Box::new(FaultyFile {
            inner: OsStorage.open(path, mode)?,
            stat: std::fs::File::open(path)?,
            faults: self.faults.clone(),
        }))
    }
    fn read_image(&self, path: &Path) -> io::Result<FileImage> {
        let mut once = self.faults.eio_image_once.lock().unwrap();
        if once.as_deref().is_some_and(|name| path.ends_with(name)) {
            *once = None;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        drop(once);
        OsStorage.read_image(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize, direct: bool) -> io::Result<Vec<u8>> {
        OsStorage.read_range(path, offset, len, direct)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        OsStorage.file_len(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsStorage.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsStorage.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsStorage.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        OsStorage.lock_dir(dir)
    }
}

/// The one payload generator of the tests: deterministic bytes for record
/// `i` of length `len`, different for every `i` (xorshift, so incompressible).
pub fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Small deterministic PRNG for tests (xorshift64*).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A fresh directory on the tmpfs at `/dev/shm`. Panics when there is none:
/// the tests that ask for it check behaviour on tmpfs and must not pass
/// without running.
pub fn tmpfs_dir() -> tempfile::TempDir {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    let tmpfs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.nth(1) == Some("/dev/shm") && f.next() == Some("tmpfs")
    });
    assert!(tmpfs, "this test needs a tmpfs mounted at /dev/shm");
    tempfile::tempdir_in("/dev/shm").expect("a directory in /dev/shm")
}

/// Whether the file system of `dir` lets a file be opened with O_DIRECT.
pub fn accepts_o_direct(dir: &Path) -> bool {
    let path = dir.join("o_direct_probe");
    let r = directwal::io::open_direct(std::fs::OpenOptions::new().write(true).create(true), &path);
    let _ = std::fs::remove_file(&path); // the probe may not exist
    match r {
        Ok(_) => true,
        Err(e) if directwal::io::is_direct_io_refusal(&e) => false,
        Err(e) => panic!("probing O_DIRECT in {}: {e}", dir.display()),
    }
}

/// Copies every file of `from` into a fresh directory (a crash image to mutate).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Segment files of a directory, sorted.
pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}
