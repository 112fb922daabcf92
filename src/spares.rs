//! The pool of spare files kept for new segments (DESIGN I17), and which
//! of them may still hold plain records (I19).
//!
//! A file is *plain-free* when no plain record was ever written to it: it
//! was created fresh (zero-filled) for an encrypted segment, or it is a
//! plain-free spare recycled into an encrypted segment. Recycling keeps the
//! old bytes past the new data, so a file that ever held a plain record must
//! not become an encrypted segment's file: while the WAL encrypts, such a
//! file is deleted instead of kept ([`admits`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::catalog::{LENGTH_UNIT, MAX_SEGMENT_FILE_LEN};
use crate::format::SegmentHeader;
use crate::io::{Storage, StorageFile};
use crate::segment;
use tracing::warn;

/// I19, the one rule: whether a file may be a spare, or the file of a new
/// segment, given whether it is plain-free and whether the WAL encrypts (a
/// ring is set or encryption is required, for a spare; the new segment is
/// encrypted, for a segment).
pub(crate) fn admits(plain_free: bool, encrypting: bool) -> bool {
    plain_free || !encrypting
}

/// I17, the one rule for trusting a file as a spare (open's pool, and a
/// truncated segment kept as one): a regular file with one name (a hard
/// link's other name would see our writes), a length the writer could have
/// given it (a multiple of `LENGTH_UNIT`, at most `MAX_SEGMENT_FILE_LEN`,
/// I22, I23). Returns why not, or None when trusted. A file failing it is
/// never written to, recycled or deleted: it may not be ours.
pub(crate) fn distrust(storage: &dyn Storage, path: &Path) -> Option<String> {
    let links = match storage.link_count(path) {
        Ok(Some(n)) => n,
        Ok(None) => return Some("not a regular file".into()),
        Err(e) => return Some(format!("cannot stat it: {e}")),
    };
    let len = match storage.file_len(path) {
        Ok(len) => len,
        Err(e) => return Some(format!("cannot stat it: {e}")),
    };
    judge(links, len)
}

/// The rule of [`distrust`] on what a stat found.
fn judge(links: u64, len: u64) -> Option<String> {
    if links != 1 {
        Some(format!("it has {links} names (hard links)"))
    } else if !len.is_multiple_of(LENGTH_UNIT) || len > MAX_SEGMENT_FILE_LEN {
        Some(format!("its length {len} is no length the writer gives a file"))
    } else {
        None
    }
}

/// A spare checked and opened for a new segment ([`open_spare`]).
pub(crate) struct OpenSpare {
    pub path: PathBuf,
    pub file: Box<dyn StorageFile>,
    /// Whether O_DIRECT is in effect.
    pub direct: bool,
    /// The file's length, as its descriptor gives it.
    pub len: u64,
}

/// I17: opens the spare at `path` for a new segment, checked by path
/// ([`distrust`]) and then again on the opened descriptor (fstat): a file
/// swapped in under the name between the two (a hard link to someone else's
/// file) is refused too. None when refused (with a warning): the file is
/// left untouched, never written or deleted, and the segment starts in a
/// fresh file.
fn open_spare(storage: &dyn Storage, path: &Path, direct: bool) -> Option<OpenSpare> {
    let refuse = |why: String| {
        warn!(spare = %path.display(), why, "not a spare the WAL could have made: never reused, left in place");
        None
    };
    if let Some(why) = distrust(storage, path) {
        return refuse(why);
    }
    let (file, direct) = match crate::writer::open_file(storage, path, false, direct) {
        Ok(f) => f,
        Err(e) => return refuse(format!("cannot open it: {e}")),
    };
    let len = match file.stat() {
        Ok(Some(st)) if !st.regular => return refuse("not a regular file".into()),
        Ok(Some(st)) => match judge(st.links, st.len) {
            Some(why) => return refuse(why),
            None => st.len,
        },
        // The store cannot fstat: what the path said stands.
        Ok(None) => match storage.file_len(path) {
            Ok(len) => len,
            Err(e) => return refuse(format!("cannot stat it: {e}")),
        },
        Err(e) => return refuse(format!("cannot stat it: {e}")),
    };
    Some(OpenSpare { path: path.to_owned(), file, direct, len })
}

struct Spare {
    path: PathBuf,
    plain_free: bool,
}

/// Spare files, oldest first, and what is known of their past.
#[derive(Default)]
pub(crate) struct SparePool {
    files: Vec<Spare>,
    /// Salts of the encrypted segments this process started in plain-free
    /// spares. A recycled segment found at open has an unknown past (an
    /// older build may have recycled a plain file into it), so it counts as
    /// plain-free only when its salt is here.
    plain_free_recycled: HashSet<u128>,
}

impl SparePool {
    /// Spares found at open: their past is unknown, so none is plain-free.
    pub fn found(paths: Vec<PathBuf>) -> Self {
        SparePool {
            files: paths.into_iter().map(|path| Spare { path, plain_free: false }).collect(),
            plain_free_recycled: HashSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.files.iter().any(|s| s.path == path)
    }

    /// Whether the file of the segment with `header` is plain-free.
    pub fn plain_free(&self, header: &SegmentHeader) -> bool {
        segment::key_id(header).is_some() && (!header.recycled || self.plain_free_recycled.contains(&header.salt))
    }

    /// Adds the file of the truncated segment with `header` as a spare.
    pub fn push(&mut self, path: PathBuf, header: &SegmentHeader) {
        let plain_free = self.plain_free(header);
        self.plain_free_recycled.remove(&header.salt);
        self.files.push(Spare { path, plain_free });
    }

    /// The newest spare a new segment may start in (I19: an encrypted one
    /// only in a plain-free file), and whether it is plain-free.
    fn take(&mut self, encrypted: bool) -> Option<(PathBuf, bool)> {
        let i = self.files.iter().rposition(|s| admits(s.plain_free, encrypted))?;
        let s = self.files.remove(i);
        Some((s.path, s.plain_free))
    }

    /// I17, I19: the newest spare a new segment may start in ([`take`](Self::take)),
    /// checked again and opened ([`open_spare`]), and whether it is
    /// plain-free. Opened before the segment's header is built, so the
    /// header (and the MAC of its `encryption_off` flag, I11) says
    /// `recycled` only of a file in use; a refused spare leaves the pool
    /// and stays in place, and the segment starts in a fresh file.
    pub fn take_open(&mut self, storage: &dyn Storage, encrypted: bool, direct: bool) -> Option<(OpenSpare, bool)> {
        let (path, plain_free) = self.take(encrypted)?;
        open_spare(storage, &path, direct).map(|s| (s, plain_free))
    }

    /// Notes the segment just started with `header`, in a spare that was
    /// plain-free (`Some(true)`), not (`Some(false)`), or in a fresh file.
    pub fn started(&mut self, header: &SegmentHeader, spare_plain_free: Option<bool>) {
        if spare_plain_free == Some(true) && segment::key_id(header).is_some() {
            self.plain_free_recycled.insert(header.salt);
        }
    }

    /// Takes out the spares the pool may no longer keep (I19): all that may
    /// hold plain records, when `encrypting`. The caller deletes them.
    pub fn evict(&mut self, encrypting: bool) -> Vec<PathBuf> {
        let (keep, evict) = std::mem::take(&mut self.files).into_iter().partition(|s| admits(s.plain_free, encrypting));
        self.files = keep;
        evict.into_iter().map(|s: Spare| s.path).collect()
    }
}
