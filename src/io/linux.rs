//! Linux: O_DIRECT, fdatasync, fallocate, transparent huge pages.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

pub(super) fn open_direct(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    // O_NOFOLLOW: every file opened this way is one the WAL names itself
    // (or a probe of one); a symlink in its place is refused (ELOOP).
    opts.custom_flags(libc::O_DIRECT | libc::O_NOFOLLOW).open(path)
}

pub(super) fn open_uncached(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    open_direct(opts, path)
}

/// A file system without O_DIRECT answers the open (or the first write) with
/// EINVAL.
pub(super) fn is_direct_io_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

pub(super) fn sync_data(file: &File) -> io::Result<()> {
    file.sync_data()
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(super) fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: fallocate on a valid descriptor owned by `file`; no memory is passed.
    match unsafe { libc::fallocate(file.as_raw_fd(), 0, off, len) } {
        0 => Ok(()),
        _ => {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Err(io::Error::new(io::ErrorKind::Unsupported, e)),
                _ => Err(e),
            }
        }
    }
}

pub(super) fn evict_cached(file: &File) -> io::Result<()> {
    // SAFETY: posix_fadvise on a valid descriptor owned by `file`; no memory is passed.
    match unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) } {
        0 => Ok(()),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

/// MADV_HUGEPAGE on `[offset, offset + len)` of `map`; a hint, so a kernel
/// without transparent huge pages (an error here) changes nothing.
pub(super) fn advise_huge_pages(map: &memmap2::MmapMut, offset: usize, len: usize) {
    let _ = map.advise_range(memmap2::Advice::HugePage, offset, len);
}

/// MADV_POPULATE_READ on `[offset, offset + len)` of `map`: reads the pages
/// in and maps them, as touching each would, but an unreadable page (or
/// one past the file's end) is an error here instead of SIGBUS. Kernels
/// before 5.14 refuse the advice (`EINVAL`).
pub(super) fn populate_read(map: &memmap2::Mmap, offset: usize, len: usize) -> io::Result<()> {
    map.advise_range(memmap2::Advice::PopulateRead, offset, len)
}
