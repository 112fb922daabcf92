//! The one-writer lock (DESIGN I25).
//!
//! The lock is taken on the WAL directory itself, through a descriptor of
//! the directory: the inode every segment is created in. A lock on a file
//! inside the directory could be lifted by deleting (or replacing) that
//! file: a second process would then lock a new file of the same name,
//! open the WAL, seal the first writer's active segment and write beside
//! it. A directory holding segments cannot be deleted, and one renamed away
//! takes its lock and its files with it, so whoever locks the directory at
//! a path writes only beside segments no other writer holds.
//!
//! `LOCK` is still created and locked as well, after the directory: a
//! writer of an earlier directwal release locks only that file, so the two
//! exclude each other while `LOCK` exists.
//!
//! Both are `flock` locks (std's `File::try_lock`), owned by open file
//! descriptions: the kernel releases them when the process exits, however
//! it dies, so a restart after a crash never finds the directory locked
//! (test `tests/process.rs`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Name of the lock file inside a WAL directory.
pub const LOCK_FILE: &str = "LOCK";

/// The held lock: released when dropped (the descriptors close).
#[derive(Debug)]
pub(super) struct DirLock {
    _dir: File,
    _file: File,
}

/// Takes the writer's lock on `dir`. A lock held by another writer (in any
/// process, or another open of this one) answers `EWOULDBLOCK`.
pub(super) fn lock_dir(dir: &Path) -> io::Result<DirLock> {
    // I25: lock the directory's inode, which no `rm` of a file can replace.
    let d = File::open(dir)?;
    if !d.metadata()?.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", dir.display())));
    }
    try_lock(&d)?;
    // O_NOFOLLOW: a `LOCK` symlinked elsewhere is refused (ELOOP), never
    // opened for writing.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(LOCK_FILE))?;
    try_lock(&file)?;
    Ok(DirLock { _dir: d, _file: file })
}

/// An exclusive `flock`, waiting at most `LOCK_PATIENCE`; "held elsewhere"
/// is `EWOULDBLOCK`. The short wait is for a lock whose holder is already
/// gone: a writer just dropped by this process may still have its
/// descriptors copied into a child that another thread forked and that has
/// not yet reached `exec` (O_CLOEXEC closes them only there), and the kernel
/// keeps a `flock` until the last copy closes. A live writer still answers
/// `EWOULDBLOCK` after the wait.
fn try_lock(f: &File) -> io::Result<()> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(TryLockError::WouldBlock) => return Err(io::Error::from_raw_os_error(libc::EWOULDBLOCK)),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// How long `lock_dir` waits for a lock held by a descriptor about to close.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);
