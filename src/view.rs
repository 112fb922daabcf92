//! The segment view the writer publishes to its readers: sealed segments
//! (each mapped once, with a sparse LSN → offset index built on first read)
//! and the active segment's durable watermark, published after every
//! completed fdatasync (I10). Readers never take the writer's lock: they
//! clone `Arc`s out of a short read lock and read on their own. A sealed
//! segment deleted by `truncate_before` stays readable through the mapping a
//! reader holds (I17). The active segment is read with ranged reads, never
//! mapped: the writer rewrites its tail block with O_DIRECT, and the kernel
//! cannot invalidate pages that are mapped.
//!
//! The writer changes the view only through the methods of [`Shared`] and
//! [`ActiveView`] here; nothing outside this module touches its fields.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::crypto::KeyRing;
use crate::error::{Result, WalError};
use crate::format::{self, Seal, SegmentHeader};
use crate::io::{FileImage, SharedBuf, Storage};

/// One sparse index entry every this many records.
pub(crate) const INDEX_EVERY: u64 = 64;
/// A sealed segment: immutable, mapped on first read.
pub(crate) struct SealedSeg {
    pub name: String,
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub seal: Seal,
    image: OnceLock<Arc<FileImage>>,
    index: Mutex<SparseIndex>,
    /// Offset up to which read-ahead has been requested (MADV_WILLNEED).
    asked_to: AtomicU64,
}

/// Every `INDEX_EVERY`-th record's (LSN, offset) below `frontier`; grown by
/// reads that pass the frontier, so a segment is indexed in the same pass
/// that first reads it.
struct SparseIndex {
    entries: Vec<(u64, u64)>,
    /// (LSN, offset) of the first record not yet indexed.
    frontier: (u64, u64),
}

impl SealedSeg {
    pub fn new(name: String, path: PathBuf, header: SegmentHeader, seal: Seal, index: Option<Vec<(u64, u64)>>) -> Self {
        let start = (header.first_lsn, format::data_start(header.block_size as usize));
        let index = match index {
            Some(entries) => SparseIndex { entries, frontier: (seal.last_lsn + 1, seal.data_end) },
            None => SparseIndex { entries: Vec::new(), frontier: start },
        };
        SealedSeg {
            name,
            path,
            header,
            seal,
            image: OnceLock::new(),
            index: Mutex::new(index),
            asked_to: AtomicU64::new(0),
        }
    }

    /// A plain sealed segment of version 4 at `path` (unit tests).
    #[cfg(test)]
    pub fn for_test(path: PathBuf, first_lsn: u64, seal: Seal) -> Self {
        let header = SegmentHeader {
            version: format::FORMAT_VERSION,
            block_size: 4096,
            wal_id: 1,
            salt: 2,
            first_lsn,
            cipher: format::Cipher::None,
            created_ms: 0,
            recycled: false,
            encryption_off: false,
            mac: None,
        };
        SealedSeg::new("s".into(), path, header, seal, None)
    }

    /// Whether a mapping of the file is held outside this segment (I17).
    pub fn mapped_elsewhere(&self) -> bool {
        self.image.get().is_some_and(|img| Arc::strong_count(img) > 1)
    }

    /// The segment's mapping, if a read made it already.
    pub fn mapped(&self) -> Option<Arc<FileImage>> {
        self.image.get().cloned()
    }

    /// The segment's mapping, made on first use and kept while the segment
    /// is referenced.
    pub fn image(&self, storage: &dyn Storage) -> Result<Arc<FileImage>> {
        if let Some(img) = self.image.get() {
            return Ok(img.clone());
        }
        let img = storage.read_image(&self.path).map_err(|e| WalError::io("read", &self.path, e))?;
        Ok(self.image.get_or_init(|| Arc::new(img)).clone())
    }

    /// Where a scan for `lsn` starts: the index entry at or before it, or,
    /// past the index's frontier, the frontier itself, returned first too:
    /// the scan then extends the index on the way ([`extend_index`](Self::extend_index)).
    pub fn index_start(&self, lsn: u64) -> (Option<(u64, u64)>, (u64, u64)) {
        let ix = lock(&self.index);
        if lsn < ix.frontier.0 {
            let start = format::data_start(self.header.block_size as usize);
            (None, seek(&ix.entries, lsn, self.header.first_lsn, start))
        } else {
            (Some(ix.frontier), ix.frontier)
        }
    }

    /// Appends `entries` (read from the frontier `from` up to the record at
    /// `frontier`) to the index, unless another reader extended it meanwhile:
    /// only a contiguous extension applies.
    pub fn extend_index(&self, from: (u64, u64), entries: Vec<(u64, u64)>, frontier: (u64, u64)) {
        let mut ix = lock(&self.index);
        if ix.frontier == from {
            ix.entries.extend(entries);
            ix.frontier = frontier;
        }
    }

    /// Keeps up to `ahead` bytes past offset `off` requested from the disk
    /// (MADV_WILLNEED), so they are read while records are checked. Shared
    /// per segment, so small pages do not ask again.
    pub fn read_ahead(&self, img: &FileImage, off: u64, ahead: u64) {
        let asked = self.asked_to.load(Ordering::Relaxed);
        if off + ahead / 2 >= asked && asked < self.seal.data_end {
            let from = asked.max(off);
            img.will_need(from as usize, ahead as usize);
            self.asked_to.fetch_max(from + ahead, Ordering::Relaxed);
        }
    }
}

/// The active segment as readers see it.
pub(crate) struct ActiveView {
    pub name: String,
    pub path: PathBuf,
    pub header: SegmentHeader,
    /// Published after every completed fdatasync: end first, then LSN.
    durable_end: AtomicU64,
    durable_last_lsn: AtomicU64,
    /// Sparse index of this segment, appended by the writer.
    index: Mutex<Vec<(u64, u64)>>,
    /// The writer's most recent buffers, shared while readers exist (I18),
    /// so followers near the end read memory instead of the device.
    tail: Mutex<Tail>,
    /// Live `WalReader`s of this WAL (shared with `Shared::readers`).
    readers: Arc<AtomicUsize>,
}

/// The file bytes `[start, start + len)`: the frozen part of one of the
/// writer's buffers (I18), which holds the file from `start` on.
struct Chunk {
    start: u64,
    bytes: Arc<SharedBuf>,
    len: usize,
}

/// The writer's recent buffers, oldest first; each holds the file bytes up
/// to where the next one starts.
#[derive(Default)]
struct Tail {
    chunks: std::collections::VecDeque<Chunk>,
    bytes: usize,
}

impl Tail {
    fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }

    /// Where chunk `i`'s valid bytes end.
    fn valid_end(&self, i: usize) -> u64 {
        let c = &self.chunks[i];
        let end = c.start + c.len as u64;
        self.chunks.get(i + 1).map_or(end, |n| n.start.min(end))
    }
}

/// Bytes of the active segment a reader decodes from: one of the writer's
/// buffers, shared without copying, or bytes copied or read from the file.
pub(crate) enum Window {
    /// The frozen part of a writer's buffer (memory the writer filled).
    Shared { base: u64, bytes: Arc<SharedBuf>, len: usize },
    /// A copy: of writer's buffers (`from_disk` false) or read from the file.
    Owned { base: u64, bytes: Vec<u8>, from_disk: bool },
}

impl Window {
    /// Whether the bytes were read from the file, so their CRCs must be
    /// checked. The writer's buffers hold its own encoding, never read back
    /// from the device: checking them again would only cost time.
    pub fn read_from_disk(&self) -> bool {
        matches!(self, Window::Owned { from_disk: true, .. })
    }

    pub fn base(&self) -> u64 {
        match self {
            Window::Shared { base, .. } | Window::Owned { base, .. } => *base,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Window::Shared { bytes, len, .. } => bytes.frozen(*len),
            Window::Owned { bytes, .. } => bytes,
        }
    }
}

/// The most recent bytes of the file kept shared with followers: whole
/// buffers of the writer, so up to one buffer more.
const TAIL_CACHE_BYTES: usize = 8 << 20;

impl ActiveView {
    pub fn new(name: String, path: PathBuf, header: SegmentHeader, readers: Arc<AtomicUsize>) -> Self {
        let start = format::data_start(header.block_size as usize);
        let last = header.first_lsn - 1;
        ActiveView {
            name,
            path,
            header,
            durable_end: AtomicU64::new(start),
            durable_last_lsn: AtomicU64::new(last),
            index: Mutex::new(Vec::new()),
            tail: Mutex::new(Tail::default()),
            readers,
        }
    }

    /// Shares with readers the first `len` bytes (frozen) of the writer's
    /// buffer `buf`, which holds the file from `offset` on (called after
    /// every write). Without readers nothing is kept: held buffers could not
    /// be reused by the writer.
    pub fn share_buffer(&self, offset: u64, buf: &Arc<SharedBuf>, len: usize) {
        let mut t = lock(&self.tail);
        if self.readers.load(Ordering::Relaxed) == 0 {
            t.clear();
            return;
        }
        if let Some(c) = t.chunks.back_mut()
            && c.start == offset
            && Arc::ptr_eq(&c.bytes, buf)
        {
            // The same buffer, more of it written: its frozen part only grows.
            let grown = len.saturating_sub(c.len);
            c.len += grown;
            t.bytes += grown;
            return;
        }
        // A buffer supersedes every byte at or after its start.
        while t.chunks.back().is_some_and(|c| c.start >= offset) {
            let c = t.chunks.pop_back().expect("a chunk");
            t.bytes -= c.len;
        }
        // A gap would make the tail non-contiguous: start over.
        if t.chunks.back().is_some_and(|c| c.start + (c.len as u64) < offset) {
            t.clear();
        }
        t.bytes += len;
        t.chunks.push_back(Chunk { start: offset, bytes: buf.clone(), len });
        // The oldest buffer leaves once the others hold TAIL_CACHE_BYTES.
        while t.chunks.len() > 1 && t.bytes - t.chunks[0].len >= TAIL_CACHE_BYTES {
            let c = t.chunks.pop_front().expect("a chunk");
            t.bytes -= c.len;
        }
    }

    /// A window of the writer's buffers from `offset` that holds `[offset,
    /// need_end)`: the buffer itself when one holds it (no copy), else a
    /// copy of just those bytes (at most `end`), which straddle two buffers;
    /// the record after them is in the later buffer, shared again. (Copying
    /// a larger window here cost every follower a 1 MiB copy per sync
    /// epoch.) `None` when the tail does not hold the bytes.
    pub fn tail_window(&self, offset: u64, need_end: u64, end: u64) -> Option<Window> {
        let pieces: Vec<(u64, Arc<SharedBuf>, u64)> = {
            let t = lock(&self.tail);
            let i = t.chunks.partition_point(|c| c.start <= offset).checked_sub(1)?;
            let valid = t.valid_end(i).min(end);
            if offset >= valid {
                return None;
            }
            if need_end <= valid {
                let c = &t.chunks[i];
                return Some(Window::Shared { base: c.start, bytes: c.bytes.clone(), len: (valid - c.start) as usize });
            }
            // The record straddles writes: take the pieces, copy outside the lock.
            let want = need_end.min(end);
            let mut pieces = Vec::new();
            let mut j = i;
            let mut pos = offset;
            while pos < want && j < t.chunks.len() && t.chunks[j].start <= pos {
                let to = t.valid_end(j).min(want);
                if to > pos {
                    pieces.push((t.chunks[j].start, t.chunks[j].bytes.clone(), to));
                    pos = to;
                }
                j += 1;
            }
            if pos < want {
                return None;
            }
            pieces
        };
        let mut out = Vec::new();
        let mut pos = offset;
        for (start, bytes, to) in pieces {
            out.extend_from_slice(&bytes.frozen((to - start) as usize)[(pos - start) as usize..]);
            pos = to;
        }
        Some(Window::Owned { base: offset, bytes: out, from_disk: false })
    }

    /// The index entry at or before `lsn`.
    pub fn seek(&self, lsn: u64) -> (u64, u64) {
        seek(&lock(&self.index), lsn, self.header.first_lsn, format::data_start(self.header.block_size as usize))
    }

    /// Publishes a completed sync (I10): readers may now read up to here.
    pub fn publish_durable(&self, durable_end: u64, durable_last_lsn: u64) {
        // The durable end never falls: a reader that saw it may already have
        // read up to it. Only the writer stores, so Relaxed loads see its own.
        debug_assert!(
            durable_end >= self.durable_end.load(Ordering::Relaxed)
                && durable_last_lsn >= self.durable_last_lsn.load(Ordering::Relaxed),
            "durable end published backwards"
        );
        self.durable_end.store(durable_end, Ordering::Release);
        self.durable_last_lsn.store(durable_last_lsn, Ordering::Release);
    }

    /// Notes where a record starts, for the sparse index.
    pub fn note_record(&self, lsn: u64, offset: u64) {
        if (lsn - self.header.first_lsn).is_multiple_of(INDEX_EVERY) {
            lock(&self.index).push((lsn, offset));
        }
    }

    /// (durable last LSN, durable end): the LSN is read first, so the end is
    /// at least as new as it.
    pub fn watermark(&self) -> (u64, u64) {
        let lsn = self.durable_last_lsn.load(Ordering::Acquire);
        (lsn, self.durable_end.load(Ordering::Acquire))
    }

    /// The sparse index, handed to the sealed segment this one becomes.
    pub fn index_snapshot(&self) -> Vec<(u64, u64)> {
        lock(&self.index).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What readers see of the WAL: a snapshot, cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct View {
    /// Sealed segments by first LSN. Shared, so a snapshot costs O(1), not
    /// O(segments); changed copy-on-write with `Arc::make_mut`.
    sealed: Arc<Vec<Arc<SealedSeg>>>,
    active: Option<Arc<ActiveView>>,
    ring: Option<Arc<KeyRing>>,
    /// Whether the writer uses O_DIRECT (reads of the active segment follow).
    direct: bool,
}

impl View {
    /// Sealed segments, oldest first.
    pub fn sealed(&self) -> &[Arc<SealedSeg>] {
        &self.sealed
    }

    /// The active segment, if the writer has one.
    pub fn active(&self) -> Option<&Arc<ActiveView>> {
        self.active.as_ref()
    }

    /// The key ring readers decrypt with.
    pub fn ring(&self) -> Option<&KeyRing> {
        self.ring.as_deref()
    }

    /// Whether the active segment is written (so read) with O_DIRECT.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Puts `seg` back in front of this snapshot's sealed segments: a cursor
    /// keeps reading the segment it is in after `truncate_before` dropped it
    /// from the writer's view (I17: its mapping stays valid).
    pub fn pin_oldest(&mut self, seg: Arc<SealedSeg>) {
        Arc::make_mut(&mut self.sealed).insert(0, seg);
    }
}

/// State shared by the writer and all readers.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    view: RwLock<View>,
    /// Live readers: the writer mirrors its writes for them only.
    pub readers: Arc<AtomicUsize>,
    /// A directory reader: a writer in another process may truncate the
    /// segments it lists, and recycle their files under its mappings (I17).
    pub foreign_writer: bool,
    /// The WAL's counters (docs/OBSERVABILITY.md).
    pub stats: Arc<crate::stats::Stats>,
}

impl Shared {
    /// An empty view of the WAL in `dir`.
    pub fn new(dir: PathBuf, storage: Arc<dyn Storage>, foreign_writer: bool, stats: Arc<crate::stats::Stats>) -> Self {
        Shared { dir, storage, view: RwLock::new(View::default()), readers: Arc::default(), foreign_writer, stats }
    }

    /// What readers see now.
    pub fn snapshot(&self) -> View {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update<R>(&self, f: impl FnOnce(&mut View) -> R) -> R {
        f(&mut self.view.write().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the sealed segments (at open).
    pub fn set_sealed(&self, sealed: Vec<Arc<SealedSeg>>) {
        self.update(|v| v.sealed = Arc::new(sealed));
    }

    /// Makes `active` the segment readers follow; `direct` says whether it
    /// is written with O_DIRECT.
    pub fn set_active(&self, active: Arc<ActiveView>, direct: bool) {
        self.update(|v| {
            v.active = Some(active);
            v.direct = direct;
        });
    }

    /// The active segment is gone from the view (an empty one replaced).
    pub fn clear_active(&self) {
        self.update(|v| v.active = None);
    }

    /// The active segment was sealed as `sealed`: readers find it among the
    /// sealed segments, in one step, and there is no active segment.
    pub fn seal_active(&self, sealed: SealedSeg) {
        self.update(|v| {
            Arc::make_mut(&mut v.sealed).push(Arc::new(sealed));
            v.active = None;
        });
    }

    /// Sets (or removes) the key ring readers decrypt with.
    pub fn set_ring(&self, ring: Option<Arc<KeyRing>>) {
        self.update(|v| v.ring = ring);
    }

    /// Drops `seg` from the sealed segments (`truncate_before`); readers
    /// holding it keep it (I17).
    pub fn remove_sealed(&self, seg: &Arc<SealedSeg>) {
        self.update(|v| Arc::make_mut(&mut v.sealed).retain(|s| !Arc::ptr_eq(s, seg)));
    }

    /// Puts the oldest sealed segment back after its removal failed: the
    /// file is still in the log, so is it in the view.
    pub fn restore_oldest(&self, seg: Arc<SealedSeg>) {
        self.update(|v| Arc::make_mut(&mut v.sealed).insert(0, seg));
    }
}

/// The sparse index entry at or before `lsn` (or the segment start).
fn seek(index: &[(u64, u64)], lsn: u64, first_lsn: u64, data_start: u64) -> (u64, u64) {
    match index.partition_point(|&(l, _)| l <= lsn) {
        0 => (first_lsn, data_start),
        i => index[i - 1],
    }
}
