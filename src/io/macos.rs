//! macOS (DESIGN "Platforms"): no O_DIRECT, `F_FULLFSYNC` for every sync,
//! no fallocate, no transparent huge pages.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// macOS has no O_DIRECT: the writer falls back to buffered I/O
/// (`direct_io_active() == false`; `require_direct_io` refuses to open).
/// `F_NOCACHE` is not used for segments: followers read the active segment
/// through the cache right after it is written, and it would save only
/// cache memory, not a flush (`F_FULLFSYNC` does that).
pub(super) fn open_direct(_opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    Err(io::Error::new(io::ErrorKind::Unsupported, format!("O_DIRECT does not exist on macOS ({})", path.display())))
}

pub(super) fn open_uncached(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let file = opts.open(path)?;
    // SAFETY: fcntl on a valid descriptor owned by `file`; F_NOCACHE takes an
    // int argument, no memory.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_NOCACHE, 1) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

pub(super) fn is_direct_io_refusal(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(libc::EINVAL)
}

/// `fcntl(F_FULLFSYNC)`: macOS's fsync hands the data to the drive but does
/// not flush the drive's volatile cache; F_FULLFSYNC does. A file system
/// that has no such command (it answers ENOTSUP or EINVAL: SMB, macFUSE)
/// gets fsync, the most it offers, with a warning once; any other failure
/// is the sync's failure (the writer is poisoned, I3).
fn full_fsync(fd: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: fcntl on a descriptor the caller keeps open; F_FULLFSYNC
        // takes no argument and no memory.
        if unsafe { libc::fcntl(fd, libc::F_FULLFSYNC) } != -1 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOTSUP) | Some(libc::EINVAL) => return plain_fsync(fd),
            _ => return Err(e),
        }
    }
}

fn plain_fsync(fd: RawFd) -> io::Result<()> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "this file system does not support F_FULLFSYNC; syncing with fsync, which may leave data in the drive's cache"
        );
    }
    loop {
        // SAFETY: fsync on a descriptor the caller keeps open; no memory.
        if unsafe { libc::fsync(fd) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub(super) fn sync_data(file: &File) -> io::Result<()> {
    full_fsync(file.as_raw_fd())
}

/// The directory's descriptor gets F_FULLFSYNC too, so creates, renames and
/// unlinks (I1) reach stable storage, not only APFS's transaction.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    full_fsync(d.as_raw_fd())
}

/// No fallocate. `F_PREALLOCATE` reserves blocks past the end without
/// changing the file's size; with an `ftruncate` after it, it could stand
/// in, but no macOS machine runs the tests here. `Unsupported` makes the
/// writer zero-fill, or let large sync epochs grow the file with their data
/// (the sync epoch prepares its own space, I8), as on a Linux file system
/// without fallocate.
pub(super) fn allocate(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "fallocate does not exist on macOS"))
}

/// There is no call to drop one file's pages from the cache.
pub(super) fn evict_cached(_file: &File) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no per-file cache eviction on macOS"))
}

/// No transparent huge pages: nothing to ask for.
pub(super) fn advise_huge_pages(_map: &memmap2::MmapMut, _offset: usize, _len: usize) {}

/// No MADV_POPULATE_READ: the caller does without.
pub(super) fn populate_read(_map: &memmap2::Mmap, _offset: usize, _len: usize) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no MADV_POPULATE_READ on macOS"))
}
