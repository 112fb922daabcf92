//! Shared helpers: a fault-injecting storage over the real file system.
#![allow(dead_code)]

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use directwal::io::{FileImage, OpenMode, OsStorage, Storage, StorageFile};

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

/// Deterministic payload for record `i` of length `len`.
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
