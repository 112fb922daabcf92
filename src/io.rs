//! The storage seam. Every byte directwal reads or writes, every directory
//! operation and every sync goes through [`Storage`] and [`StorageFile`], so a
//! test can substitute a simulated device (volatile cache, torn writes, EIO,
//! ENOSPC) without touching the WAL code. [`OsStorage`] is the real one.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

mod lock;
// The storage seam's only platform-specific code (DESIGN "Platforms"): one
// module per supported OS, with the same functions.
#[cfg(target_os = "linux")]
#[path = "io/linux.rs"]
mod platform;
#[cfg(target_os = "macos")]
#[path = "io/macos.rs"]
mod platform;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("directwal supports Linux and macOS (see README \"Platforms\")");

pub use lock::LOCK_FILE;
// The memory buffers live in `crate::buf`; their public paths stay here.
pub use crate::buf::{AlignedBuf, HUGE_PAGE, SharedBuf, WriteBuf};

/// How to open a segment file for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenMode {
    /// Create the file, truncating any existing one.
    pub create: bool,
    /// Bypass the page cache (O_DIRECT). Buffers, offsets and lengths passed
    /// to the file must then be multiples of the block size.
    pub direct: bool,
}

/// A file system, as far as directwal needs one.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// `mkdir -p`.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Every entry of `dir` whose name is UTF-8, with what kind of file it
    /// is (not following symlinks, never opening anything: a FIFO named like
    /// a segment must not block the listing). The catalog decides what an
    /// entry that is not a regular file means (DESIGN I21).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Opens a file for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>>;
    /// A read-only image of the whole file (the real implementation maps it).
    fn read_image(&self, path: &Path) -> io::Result<FileImage>;
    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    /// `direct`: bypass the page cache, to read a file another descriptor
    /// writes with O_DIRECT (buffered reads could cache stale pages).
    fn read_range(&self, path: &Path, offset: u64, len: usize, direct: bool) -> io::Result<Vec<u8>>;
    /// Size of a file in bytes.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Atomic rename (replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Unlinks a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// fsync of the directory, making creates, renames and unlinks durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive advisory lock on the directory for one writer; the
    /// lock lasts as long as the returned guard. I25: the real one locks the
    /// directory itself, so deleting a file inside it cannot lift the lock.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>>;
    /// The number of names (hard links) of the regular file at `path`, not
    /// following a symlink; None when it is not a regular file. A store
    /// without hard links (the simulator) has one name per file.
    fn link_count(&self, path: &Path) -> io::Result<Option<u64>> {
        self.file_len(path).map(|_| Some(1))
    }
    /// The (device, inode) the path `dir` names now, following symlinks as
    /// `lock_dir` does; None where directories have no identity (the
    /// simulator, whose directories cannot be renamed).
    fn dir_identity(&self, _dir: &Path) -> io::Result<Option<(u64, u64)>> {
        Ok(None)
    }
}

/// What kind of file a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A symbolic link (not followed).
    Symlink,
    /// A directory.
    Dir,
    /// A FIFO, socket or device.
    Other,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// File name.
    pub name: String,
    /// Its kind, as `lstat` sees it.
    pub kind: FileKind,
}

/// An open file.
pub trait StorageFile: Send + Sync {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write of this file durable (fdatasync; on
    /// macOS `F_FULLFSYNC`).
    fn sync_data(&self) -> io::Result<()>;
    /// Reserves `len` bytes at `offset` (fallocate, extending the size); they
    /// read as zeros. `Unsupported` where the file system cannot.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// What the descriptor itself says of the open file (fstat), whatever
    /// its name names by now; None where the store cannot tell (callers
    /// then have only what they checked by path before opening).
    fn stat(&self) -> io::Result<Option<FileStat>> {
        Ok(None)
    }
}

/// An open file as its descriptor describes it ([`StorageFile::stat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// A regular file (not a FIFO, device or socket).
    pub regular: bool,
    /// Its number of names (hard links).
    pub links: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// Read-only bytes of a whole file.
pub struct FileImage(ImageInner);

enum ImageInner {
    Mapped(memmap2::Mmap),
    Owned(Arc<[u8]>),
}

impl FileImage {
    /// An image backed by memory (used by simulated storage and for empty files).
    pub fn from_bytes(bytes: Arc<[u8]>) -> Self {
        FileImage(ImageInner::Owned(bytes))
    }

    /// Whether the image maps the file (rather than holding a copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, ImageInner::Mapped(_))
    }

    /// Reads `len` bytes at `offset` into the page cache and maps them, or
    /// fails, never raising SIGBUS for a page that cannot be read (Linux
    /// 5.14 on; `Unsupported` where the OS has no such call). An image held
    /// in memory has nothing to read in.
    pub fn populate(&self, offset: usize, len: usize) -> io::Result<()> {
        match &self.0 {
            ImageInner::Mapped(m) => platform::populate_read(m, offset, len),
            ImageInner::Owned(_) => Ok(()),
        }
    }

    /// Asks the kernel to start reading `len` bytes at `offset` into the
    /// page cache now (MADV_WILLNEED), so a sequential scan finds them there
    /// instead of waiting on a page fault. A hint: errors are ignored.
    pub fn will_need(&self, offset: usize, len: usize) {
        if let ImageInner::Mapped(m) = &self.0 {
            let end = offset.saturating_add(len).min(m.len());
            if offset < end {
                let _ = m.advise_range(memmap2::Advice::WillNeed, offset, end - offset);
            }
        }
    }
}

impl Deref for FileImage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            ImageInner::Mapped(m) => m,
            ImageInner::Owned(b) => b,
        }
    }
}

impl fmt::Debug for FileImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileImage({} bytes)", self.len())
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

struct OsFile(File);

impl StorageFile for OsFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        sync_data(&self.0)
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        allocate(&self.0, offset, len)
    }
    fn stat(&self) -> io::Result<Option<FileStat>> {
        use std::os::unix::fs::MetadataExt;
        let m = self.0.metadata()?;
        Ok(Some(FileStat { regular: m.file_type().is_file(), links: m.nlink(), len: m.len() }))
    }
}

impl Storage for OsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            // `file_type` is the lstat of the entry: nothing is followed or opened.
            let t = entry.file_type()?;
            let kind = if t.is_file() {
                FileKind::File
            } else if t.is_symlink() {
                FileKind::Symlink
            } else if t.is_dir() {
                FileKind::Dir
            } else {
                FileKind::Other
            };
            out.push(DirEntry { name, kind });
        }
        Ok(out)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut o = OpenOptions::new();
        // I17, I21: a symlink swapped in under a WAL name (a spare between
        // its check and its reuse) is refused (ELOOP), never written through.
        o.read(true).write(true).custom_flags(libc::O_NOFOLLOW);
        if mode.create {
            o.create(true).truncate(true);
        }
        let file = if mode.direct { open_direct(&mut o, path)? } else { o.open(path)? };
        Ok(Box::new(OsFile(file)))
    }

    fn read_image(&self, path: &Path) -> io::Result<FileImage> {
        let file = open_regular(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(FileImage::from_bytes(Arc::from(&[][..])));
        }
        // SAFETY: directwal never shrinks or rewrites a segment file below its
        // durable end while it is mapped (segments are only appended to, the
        // rewritten tail block carries identical bytes for its durable prefix,
        // deletion unlinks without truncating, and a file is recycled only
        // once no mapping of it is alive in this process: DESIGN I17).
        // Readers only look at bytes below the durable end. A file truncated
        // by a foreign process could still fault, and a directory reader in
        // another process can see a recycled file change under it (it then
        // fails CRCs); that is outside what any mmap-based reader can prevent.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        // Replay and recovery read front to back: ask for aggressive readahead.
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(FileImage(ImageInner::Mapped(map)))
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize, direct: bool) -> io::Result<Vec<u8>> {
        const ALIGN: u64 = 4096;
        if direct {
            match open_direct(OpenOptions::new().read(true), path) {
                Ok(f) => {
                    // O_DIRECT wants aligned offsets, lengths and buffers.
                    let start = offset / ALIGN * ALIGN;
                    let end = (offset + len as u64).next_multiple_of(ALIGN);
                    let mut buf = AlignedBuf::new((end - start) as usize, ALIGN as usize);
                    let mut got = 0usize;
                    while got < buf.len() {
                        let n = f.read_at(&mut buf[got..], start + got as u64)?;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    let from = (offset - start) as usize;
                    let to = (from + len).min(got);
                    return Ok(buf[from.min(to)..to].to_vec());
                }
                Err(e) if is_direct_io_refusal(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let f = open_regular(path)?;
        let mut buf = vec![0u8; len];
        let mut got = 0usize;
        while got < len {
            let n = f.read_at(&mut buf[got..], offset + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn dir_identity(&self, dir: &Path) -> io::Result<Option<(u64, u64)>> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(dir)?;
        Ok(Some((m.dev(), m.ino())))
    }

    fn link_count(&self, path: &Path) -> io::Result<Option<u64>> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path)?;
        Ok(m.file_type().is_file().then(|| m.nlink()))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        platform::sync_dir(dir)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        Ok(Box::new(lock::lock_dir(dir)?))
    }
}

/// Opens a regular file for reading. A FIFO, or a symlink, swapped in
/// after the catalog listed the directory neither blocks the open
/// (O_NONBLOCK) nor is followed (O_NOFOLLOW); anything but a regular file
/// is refused (DESIGN I21).
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a regular file", path.display())));
    }
    Ok(file)
}

/// Opens `path` with `opts` and O_DIRECT. Where O_DIRECT does not exist
/// (macOS) or the file system refuses it, the error satisfies
/// [`is_direct_io_refusal`].
pub fn open_direct(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    platform::open_direct(opts, path)
}

/// Opens `path` with `opts`, bypassing the page cache as far as the platform
/// can: O_DIRECT on Linux, `F_NOCACHE` on macOS (which caches unaligned
/// pieces anyway). For device probes that must not measure the cache.
pub fn open_uncached(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    platform::open_uncached(opts, path)
}

/// True when an open or write error means "this file system refuses O_DIRECT".
pub fn is_direct_io_refusal(e: &io::Error) -> bool {
    platform::is_direct_io_refusal(e)
}

/// Makes every completed write of `file` durable on the device: fdatasync on
/// Linux, `fcntl(F_FULLFSYNC)` on macOS (whose fsync leaves the data in the
/// drive's cache).
pub fn sync_data(file: &File) -> io::Result<()> {
    platform::sync_data(file)
}

/// Reserves `len` bytes at `offset`, extending the file; they read as zeros
/// (fallocate). `ErrorKind::Unsupported` where the file system or the
/// platform cannot (macOS): callers then let the file grow with its data.
pub fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    platform::allocate(file, offset, len)
}

/// Asks the kernel to drop `file`'s clean cached pages, so the next read
/// comes from the device. `Unsupported` where there is no such call (macOS).
pub fn evict_cached(file: &File) -> io::Result<()> {
    platform::evict_cached(file)
}

/// Asks for transparent huge pages on `len` bytes of `map` from `offset`.
/// Advice only: without THP (or on macOS) the pages stay small.
pub(crate) fn advise_huge_pages(map: &memmap2::MmapMut, offset: usize, len: usize) {
    platform::advise_huge_pages(map, offset, len);
}
