//! The storage seam. Every byte directwal reads or writes, every directory
//! operation and every sync goes through [`Storage`] and [`StorageFile`], so a
//! test can substitute a simulated device (volatile cache, torn writes, EIO,
//! ENOSPC) without touching the WAL code. [`OsStorage`] is the real one.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
        let mut o = OpenOptions::new();
        o.read(true).write(true);
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

/// Buffers of at least this many bytes start on a multiple of it and ask
/// for transparent huge pages (`MADV_HUGEPAGE`). An O_DIRECT write is built
/// from the buffer's physical pages, and this disk takes at most 254
/// segments per request: from 4 KiB pages a 4 MiB write is four requests,
/// from 2 MiB pages one. Measured here (4 MiB O_DIRECT write + fdatasync,
/// alternated): 368–495 → 879–897 MB/s into a growing file, 502–687 →
/// 1,317–1,402 MB/s into a written one. Where the kernel gives no huge
/// pages the buffer works the same, with small ones.
pub const HUGE_PAGE: usize = 2 << 20;

/// A zero-initialised buffer whose start and length are multiples of
/// `align`, as O_DIRECT requires.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// The alignment asked for (a mapping's window starts `HUGE_PAGE` aligned).
    align: usize,
    /// Where the bytes live.
    mem: Memory,
}

/// The allocation behind an [`AlignedBuf`].
enum Memory {
    /// From the heap with this layout.
    Heap(Layout),
    /// An anonymous mapping whose `HUGE_PAGE`-aligned window
    /// `[ptr, ptr + len)` is the buffer (see [`map_huge`]); unmapped when
    /// dropped.
    Mapped(#[allow(dead_code)] memmap2::MmapMut),
}

// SAFETY: AlignedBuf owns its allocation exclusively (like Vec<u8>); moving it
// to another thread or sharing `&AlignedBuf` (read-only access) is sound.
unsafe impl Send for AlignedBuf {}
// SAFETY: see above; `&AlignedBuf` only hands out `&[u8]`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zero bytes aligned to `align` (a power of two; `len`
    /// is rounded up to a multiple of it).
    pub fn new(len: usize, align: usize) -> Self {
        let len = len.max(align).next_multiple_of(align);
        if len >= HUGE_PAGE
            && align <= HUGE_PAGE
            && let Some((map, ptr)) = map_huge(len)
        {
            return AlignedBuf { ptr, len, align, mem: Memory::Mapped(map) };
        }
        let layout = Layout::from_size_align(len, align).expect("valid buffer layout");
        // SAFETY: the layout has non-zero size (len >= align >= 1).
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len, align, mem: Memory::Heap(layout) }
    }

    /// Capacity in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The alignment it was allocated with.
    pub fn align(&self) -> usize {
        self.align
    }

    /// Never true: a buffer holds at least one block.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A fresh anonymous mapping (memmap2) with a window of `len` bytes (a
/// multiple of the page size) starting on a `HUGE_PAGE` boundary, with huge
/// pages asked for before any page is touched; returns the mapping and the
/// window's start. The heap would hand out memory already faulted in as
/// small pages (a freed buffer's), for which the advice comes too late: in
/// one run, of the two buffers the writer alternates, one wrote 4 MiB in
/// 1.0 ms and the other in 5.5 ms. None when the mapping fails.
///
/// Why the window: the kernel places a mapping on any page boundary, and
/// memmap2 can neither ask for an aligned address nor unmap part of a
/// mapping, so `HUGE_PAGE` more bytes are mapped and the aligned window
/// inside them is used. The unused head and tail are address space only:
/// never touched, so never backed by memory.
fn map_huge(len: usize) -> Option<(memmap2::MmapMut, NonNull<u8>)> {
    let mut map = memmap2::MmapOptions::new().len(len.checked_add(HUGE_PAGE)?).map_anon().ok()?;
    let base = map.as_mut_ptr();
    let head = (base as usize).next_multiple_of(HUGE_PAGE) - base as usize;
    // Advice only: without THP (or on macOS) the pages are small, which
    // works the same.
    platform::advise_huge_pages(&map, head, len);
    // SAFETY: head < HUGE_PAGE, so [base + head, base + head + len) lies
    // inside the mapping of len + HUGE_PAGE bytes just made.
    let start = unsafe { base.add(head) };
    NonNull::new(start).map(|p| (map, p))
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to len initialised bytes owned by self (zeroed
        // at allocation: alloc_zeroed, or a fresh anonymous mapping), alive
        // for the borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // A mapping unmaps itself when `mem` is dropped.
        if let Memory::Heap(layout) = self.mem {
            // SAFETY: ptr was returned by alloc_zeroed with exactly this
            // layout and is freed only here.
            unsafe { dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

/// A write buffer that readers may read while the writer fills it (DESIGN
/// I18). Its first `frozen` bytes never change again while anyone but the
/// writer holds it: readers read only those ([`SharedBuf::frozen`]), the
/// writer writes only above them ([`WriteBuf::tail_mut`]).
pub struct SharedBuf {
    buf: AlignedBuf,
    /// Bytes from the start that are frozen. Rises while the buffer is
    /// shared; back to 0 only when the writer holds it alone again.
    frozen: AtomicUsize,
}

impl SharedBuf {
    /// Capacity in bytes.
    pub fn len(&self) -> usize {
        self.buf.len
    }

    /// Never true: a buffer holds at least one block.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Its first `len` bytes, which must be frozen (panics otherwise).
    pub fn frozen(&self, len: usize) -> &[u8] {
        assert!(
            len <= self.frozen.load(Ordering::Acquire),
            "read of {len} bytes of a shared buffer beyond its frozen part"
        );
        // SAFETY: [0, len) is initialised (AlignedBuf zeroes its memory) and
        // frozen: the only writer, this buffer's `WriteBuf`, writes at or
        // above the frozen mark (`tail_mut` asserts it), and the mark does
        // not fall while `self` is borrowed (it is reset only through
        // `Arc::get_mut`, which excludes every other reference). The Acquire
        // load pairs with `freeze`'s Release: the frozen bytes are visible.
        unsafe { std::slice::from_raw_parts(self.buf.ptr.as_ptr(), len) }
    }
}

/// The writer's handle on a [`SharedBuf`]: the only one that writes to it
/// (it is not `Clone`). Others get the buffer from [`freeze`](Self::freeze).
pub struct WriteBuf {
    page: Arc<SharedBuf>,
}

impl WriteBuf {
    /// A zeroed buffer of `len` bytes aligned to `align` (as `AlignedBuf`).
    pub fn new(len: usize, align: usize) -> Self {
        WriteBuf { page: Arc::new(SharedBuf { buf: AlignedBuf::new(len, align), frozen: AtomicUsize::new(0) }) }
    }

    /// Capacity in bytes.
    pub fn len(&self) -> usize {
        self.page.len()
    }

    /// Never true: a buffer holds at least one block.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The alignment it was allocated with.
    pub fn align(&self) -> usize {
        self.page.buf.align()
    }

    /// All its bytes (to write them to a file).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: initialised and alive for the borrow. Only this handle
        // writes to the buffer, through `tail_mut(&mut self)`, which cannot
        // run while this borrow lives; other holders only read.
        unsafe { std::slice::from_raw_parts(self.page.buf.ptr.as_ptr(), self.page.len()) }
    }

    /// Its bytes from `from` on, to fill. I18: `from` must be at or above
    /// the frozen mark (panics otherwise): bytes others may read never change.
    pub fn tail_mut(&mut self, from: usize) -> &mut [u8] {
        // Relaxed: only this handle stores the mark.
        let frozen = self.page.frozen.load(Ordering::Relaxed);
        assert!(from >= frozen && from <= self.len(), "write at {from} into a buffer frozen up to {frozen}");
        // SAFETY: [from, len) is inside the buffer and above the frozen mark,
        // so no other holder reads it (they read only frozen bytes), and
        // `&mut self` excludes this handle's own `bytes()` borrows.
        unsafe { std::slice::from_raw_parts_mut(self.page.buf.ptr.as_ptr().add(from), self.len() - from) }
    }

    /// Freezes its first `upto` bytes (they never change again while the
    /// buffer is shared) and returns the buffer to share.
    pub fn freeze(&mut self, upto: usize) -> Arc<SharedBuf> {
        debug_assert!(upto <= self.len());
        self.page.frozen.fetch_max(upto, Ordering::Release);
        self.page.clone()
    }

    /// When no one else holds the buffer any more, thaws it (every byte
    /// may be written again) and returns true.
    pub fn reclaim(&mut self) -> bool {
        match Arc::get_mut(&mut self.page) {
            Some(p) => {
                *p.frozen.get_mut() = 0;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_and_large_ones_start_on_a_huge_page() {
        for (len, align) in
            [(4096, 4096), (100, 512), (1 << 20, 4096), (HUGE_PAGE, 4096), (5 << 20, 4096), (3 << 20, 65536)]
        {
            let mut b = AlignedBuf::new(len, align);
            assert!(b.len() >= len && b.len().is_multiple_of(align), "{len} {align}: {}", b.len());
            assert_eq!(b.align(), align);
            assert!((b.as_ptr() as usize).is_multiple_of(align));
            if len >= HUGE_PAGE {
                // A mapping of its own, so the huge-page advice comes before
                // any page is touched.
                assert!((b.as_ptr() as usize).is_multiple_of(HUGE_PAGE), "{len}: not on a huge page boundary");
            }
            assert!(b.iter().all(|&x| x == 0));
            b.fill(0xa5);
            let last = b.len() - 1;
            assert_eq!(b[last], 0xa5);
        }
    }

    #[test]
    fn a_shared_buffer_is_written_only_above_its_frozen_part_and_reused_only_when_unshared() {
        let mut w = WriteBuf::new(8192, 4096);
        w.tail_mut(0)[..100].fill(7);
        let shared = w.freeze(100);
        assert_eq!(shared.frozen(100), &[7u8; 100][..]);
        w.tail_mut(100)[..10].fill(8);
        assert_eq!(&w.bytes()[..110], [&[7u8; 100][..], &[8u8; 10][..]].concat());
        // Frozen bytes stay as they were while a reader holds the buffer.
        let below = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.tail_mut(99);
        }));
        assert!(below.is_err(), "a write below the frozen part must be refused");
        let beyond = std::panic::catch_unwind(|| shared.frozen(101).len());
        assert!(beyond.is_err(), "a read beyond the frozen part must be refused");
        assert!(!w.reclaim(), "reclaimed while shared");
        w.tail_mut(100);
        drop(shared);
        assert!(w.reclaim(), "not reclaimed once unshared");
        w.tail_mut(0)[0] = 1;
        assert_eq!(w.bytes()[0], 1);
    }
}
