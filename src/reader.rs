//! Readers (SPEC §6): paginated, lock-free readers over the WAL.
//!
//! The writer and its readers share a [`Shared`] view: sealed segments (each
//! mapped once, with a sparse LSN → offset index built on first read) and the
//! active segment's durable watermark, which the writer publishes after every
//! completed fdatasync (R2). Readers never take the writer's lock: they clone
//! `Arc`s out of a short read lock and read on their own. A sealed segment
//! deleted by `truncate_before` stays readable through the mapping a reader
//! holds (R4). The active segment is read with ranged reads, never mapped: the
//! writer rewrites its tail block with O_DIRECT, and the kernel cannot
//! invalidate pages that are mapped.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::crypto::{KeyRing, SegmentCipher};
use crate::error::{Result, WalError};
use crate::format::{self, Seal, SegmentHeader};
use crate::io::{FileImage, OsStorage, SharedBuf, Storage};
use crate::record::{RecordHeader, RecordRef, WalRecord};

mod owned;

/// One sparse index entry every this many records.
pub(crate) const INDEX_EVERY: u64 = 64;
/// How far ahead of a scan of a sealed segment its pages are requested.
const READ_AHEAD: u64 = 8 << 20;
/// Bytes of the active segment read at a time.
const ACTIVE_WINDOW: usize = 1 << 20;

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

    /// Whether a mapping of the file is held outside this segment (I17).
    pub fn mapped_elsewhere(&self) -> bool {
        self.image.get().is_some_and(|img| Arc::strong_count(img) > 1)
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
enum Window {
    /// The frozen part of a writer's buffer (memory the writer filled).
    Shared { base: u64, bytes: Arc<SharedBuf>, len: usize },
    /// A copy: of writer's buffers (`from_disk` false) or read from the file.
    Owned { base: u64, bytes: Vec<u8>, from_disk: bool },
}

impl Window {
    /// Whether the bytes were read from the file, so their CRCs must be
    /// checked. The writer's buffers hold its own encoding, never read back
    /// from the device: checking them again would only cost time.
    fn read_from_disk(&self) -> bool {
        matches!(self, Window::Owned { from_disk: true, .. })
    }

    fn base(&self) -> u64 {
        match self {
            Window::Shared { base, .. } | Window::Owned { base, .. } => *base,
        }
    }

    fn bytes(&self) -> &[u8] {
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
    pub fn mirror(&self, offset: u64, buf: &Arc<SharedBuf>, len: usize) {
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
    fn tail_window(&self, offset: u64, need_end: u64, end: u64) -> Option<Window> {
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
    fn seek(&self, lsn: u64) -> (u64, u64) {
        seek(&lock(&self.index), lsn, self.header.first_lsn, format::data_start(self.header.block_size as usize))
    }

    /// Publishes a completed sync (R2): readers may now read up to here.
    pub fn publish(&self, durable_end: u64, durable_last_lsn: u64) {
        self.durable_end.store(durable_end, Ordering::Release);
        self.durable_last_lsn.store(durable_last_lsn, Ordering::Release);
    }

    /// Notes where a record starts, for the sparse index.
    pub fn note(&self, lsn: u64, offset: u64) {
        if (lsn - self.header.first_lsn).is_multiple_of(INDEX_EVERY) {
            lock(&self.index).push((lsn, offset));
        }
    }

    /// (durable last LSN, durable end): the LSN is read first, so the end is
    /// at least as new as it.
    fn watermark(&self) -> (u64, u64) {
        let lsn = self.durable_last_lsn.load(Ordering::Acquire);
        (lsn, self.durable_end.load(Ordering::Acquire))
    }

    pub fn index_snapshot(&self) -> Vec<(u64, u64)> {
        lock(&self.index).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What readers see of the WAL.
#[derive(Clone, Default)]
pub(crate) struct View {
    /// Sealed segments by first LSN. Shared, so a snapshot costs O(1), not
    /// O(segments) (R3); changed copy-on-write with `Arc::make_mut`.
    pub sealed: Arc<Vec<Arc<SealedSeg>>>,
    pub active: Option<Arc<ActiveView>>,
    pub ring: Option<Arc<KeyRing>>,
    /// Whether the writer uses O_DIRECT (reads of the active segment follow).
    pub direct: bool,
}

/// State shared by the writer and all readers.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub view: RwLock<View>,
    /// Live readers: the writer mirrors its writes for them only.
    pub readers: Arc<AtomicUsize>,
    /// A directory reader: a writer in another process may truncate the
    /// segments it lists, and recycle their files under its mappings (I17).
    pub foreign_writer: bool,
    /// The WAL's counters (docs/OBSERVABILITY.md).
    pub stats: Arc<crate::stats::Stats>,
}

impl Shared {
    pub fn snapshot(&self) -> View {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn update<R>(&self, f: impl FnOnce(&mut View) -> R) -> R {
        f(&mut self.view.write().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A page of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Records in LSN order.
    pub records: Vec<WalRecord>,
    /// The LSN to ask for next.
    pub next_lsn: u64,
    /// True exactly when durable records from `next_lsn` exist now.
    pub has_more: bool,
}

/// A page of records in buffers that the next page reuses
/// ([`WalCursor::next_page_into`], [`WalReader::read_page_into`]): the
/// headers in one `Vec`, the payloads back to back in another, so a
/// follower paging through the log allocates nothing per record.
///
/// ```
/// use directwal::{PageBuf, RecordType, WalHandle, SegmentedWalConfig};
/// # let tmp = tempfile::tempdir()?;
/// let wal = WalHandle::open(SegmentedWalConfig::new(tmp.path().into()))?;
/// for i in 0..25u8 {
///     wal.append(RecordType::Put as u16, 1, 0, &[i; 8])?;
/// }
/// wal.sync()?;
///
/// // A follower: start after what it has, page forward, reuse one buffer.
/// let mut cursor = wal.reader().cursor(1);
/// let mut page = PageBuf::new();
/// let mut shipped = Vec::new();
/// loop {
///     cursor.next_page_into(&mut page, 10, 4 << 20)?; // durable records only
///     shipped.extend(page.iter().map(|rec| rec.header.lsn));
///     if !page.has_more() {
///         break; // caught up: a real follower sleeps and asks again
///     }
/// }
/// assert_eq!(shipped, (1..=25).collect::<Vec<u64>>());
/// assert_eq!(cursor.position(), 26);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageBuf {
    records: Vec<(RecordHeader, std::ops::Range<usize>)>,
    data: Vec<u8>,
    next_lsn: u64,
    has_more: bool,
}

impl PageBuf {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records in the page.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the page holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Record `i`, lent from the page.
    pub fn get(&self, i: usize) -> Option<RecordRef<'_>> {
        self.records.get(i).map(|(header, r)| RecordRef { header: *header, payload: &self.data[r.clone()] })
    }

    /// The records in LSN order, lent from the page.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        self.records.iter().map(|(header, r)| RecordRef { header: *header, payload: &self.data[r.clone()] })
    }

    /// All payloads, back to back in LSN order.
    pub fn payloads(&self) -> &[u8] {
        &self.data
    }

    /// The LSN to ask for next.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// True exactly when durable records from `next_lsn` existed when the
    /// page was read.
    pub fn has_more(&self) -> bool {
        self.has_more
    }
}

/// A reader of the WAL: `Send + Sync`, cheap to clone, never blocks the writer.
///
/// It returns durable records only (those a completed sync covers), in LSN
/// order. Get one from [`SegmentedWal::reader`](crate::SegmentedWal::reader)
/// or [`WalHandle::reader`](crate::WalHandle::reader), or, for a directory
/// no writer of this process holds, [`WalReader::open_dir`].
///
/// ```
/// use directwal::{RecordType, SegmentedWal, SegmentedWalConfig};
/// # let tmp = tempfile::tempdir()?;
/// let mut wal = SegmentedWal::open(SegmentedWalConfig::new(tmp.path().into()))?;
/// let reader = wal.reader(); // Send + Sync: hand it to another thread
/// for i in 0..10u8 {
///     wal.append(RecordType::Put as u16, 1, 0, &[i])?;
/// }
/// assert_eq!(reader.durable_lsn(), 0); // nothing synced yet
/// wal.sync()?;
///
/// let page = reader.read_page(1, 4, 1 << 20)?; // at most 4 records or 1 MiB
/// assert_eq!(page.records.len(), 4);
/// assert_eq!((page.next_lsn, page.has_more), (5, true));
///
/// // Lend each record without copying its payload; `false` stops.
/// let mut sum = 0u32;
/// reader.visit(0, |rec| {
///     sum += rec.payload[0] as u32;
///     true
/// })?;
/// assert_eq!(sum, 45);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WalReader {
    shared: Arc<Shared>,
}

impl Clone for WalReader {
    fn clone(&self) -> Self {
        WalReader::new(self.shared.clone())
    }
}

impl Drop for WalReader {
    fn drop(&mut self) {
        self.shared.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for WalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReader").field("dir", &self.shared.dir).finish()
    }
}

/// Where one segment's records are read from.
enum Source<'a> {
    Sealed(&'a SealedSeg),
    Active(&'a ActiveView),
}

impl WalReader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.readers.fetch_add(1, Ordering::Relaxed);
        WalReader { shared }
    }

    /// A read-only reader over a WAL directory that no writer in this process
    /// holds. Sealed segments are read up to their seal; an unsealed newest
    /// segment up to its last fully valid record (R2). Nothing is written.
    pub fn open_dir(dir: &Path, ring: Option<KeyRing>) -> Result<Self> {
        match Self::open_dir_prefix(dir, ring)? {
            (_, Some(fault)) => Err(fault),
            (reader, None) => Ok(reader),
        }
    }

    /// Like [`open_dir`](Self::open_dir), for tools that show what a damaged
    /// directory still holds: a reader of the segments before the first
    /// damaged one, and the error `open_dir` would have returned (`None` on
    /// a clean directory). A damaged entry that is no segment (a symlink or
    /// FIFO under a WAL name) has no place in the log and is still an error.
    pub fn open_dir_prefix(dir: &Path, ring: Option<KeyRing>) -> Result<(Self, Option<WalError>)> {
        let storage: Arc<dyn Storage> = Arc::new(OsStorage);
        // The rules `open` and `check` apply, from the same place (I21-I23).
        let mut cat = crate::catalog::load(&*storage, dir)?;
        let (mut end, mut stop) = (cat.segments.len(), None);
        if let Some(fault) = cat.take_first_fault() {
            let Some(i) = fault.segment else { return Err(fault.error) };
            (end, stop) = (i, Some(fault.error));
        }
        let mut sealed = Vec::new();
        // A segment truncated by a live writer after the listing is skipped.
        for seg in cat.segments[..end].iter().filter(|s| !s.vanished) {
            let header = seg.header.clone().expect("a segment without faults has a header");
            let seal = match &seg.seal {
                Some(seal) => *seal,
                None => match crate::catalog::scan_newest(&*storage, seg) {
                    Ok((_, out)) => {
                        Seal { last_lsn: out.last_lsn, records: out.records, data_end: out.data_end, sealed_ms: 0 }
                    }
                    Err(e) => {
                        // Damage to durable data in the newest segment: its
                        // records before the damage are valid (the scan
                        // checked each in order), so they stay readable.
                        let prefix = match &e {
                            WalError::Corruption { offset, lsn, .. } if *lsn > seg.first_lsn => Some(Seal {
                                last_lsn: lsn - 1,
                                records: lsn - seg.first_lsn,
                                data_end: *offset,
                                sealed_ms: 0,
                            }),
                            _ => None,
                        };
                        stop = Some(e);
                        match prefix {
                            Some(seal) => seal,
                            None => break,
                        }
                    }
                },
            };
            if seal.records > 0 {
                sealed.push(Arc::new(SealedSeg::new(seg.name.clone(), seg.path.clone(), header, seal, None)));
            }
        }
        let view = View { sealed: Arc::new(sealed), active: None, ring: ring.map(Arc::new), direct: false };
        let readers = Arc::new(AtomicUsize::new(0));
        let reader = WalReader::new(Arc::new(Shared {
            dir: dir.to_owned(),
            storage,
            view: RwLock::new(view),
            readers,
            foreign_writer: true,
            stats: Arc::default(),
        }));
        Ok((reader, stop))
    }

    /// LSN of the last durable record (0 if none).
    pub fn durable_lsn(&self) -> u64 {
        durable_lsn(&self.shared.snapshot())
    }

    /// LSN of the oldest retained record.
    pub fn oldest_lsn(&self) -> u64 {
        let v = self.shared.snapshot();
        v.sealed.first().map(|s| s.header.first_lsn).or(v.active.as_ref().map(|a| a.header.first_lsn)).unwrap_or(1)
    }

    /// Up to `max_records` durable records from `from_lsn` (0: the oldest),
    /// stopping once their payloads reach `max_bytes` (a page holds at least
    /// one record when one is available). `LsnTruncated` when `from_lsn` was
    /// truncated away (R5).
    pub fn read_page(&self, from_lsn: u64, max_records: usize, max_bytes: usize) -> Result<Page> {
        self.read_page_in(&self.shared.snapshot(), from_lsn, max_records, max_bytes)
    }

    fn read_page_in(&self, view: &View, from_lsn: u64, max_records: usize, max_bytes: usize) -> Result<Page> {
        let mut records = Vec::with_capacity(max_records.min(1 << 16));
        let (next_lsn, has_more) =
            self.fill_page(view, from_lsn, max_records, max_bytes, |rec| records.push(rec.to_record()))?;
        Ok(Page { records, next_lsn, has_more })
    }

    /// Like [`read_page`](Self::read_page), into `page`, whose buffers are
    /// reused: once they have grown to a page's size, paging allocates
    /// nothing per record (only decryption does).
    pub fn read_page_into(
        &self,
        page: &mut PageBuf,
        from_lsn: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<()> {
        self.read_page_into_in(&self.shared.snapshot(), page, from_lsn, max_records, max_bytes)
    }

    fn read_page_into_in(
        &self,
        view: &View,
        page: &mut PageBuf,
        from_lsn: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<()> {
        // Emptied first: after an error the page holds no stale records.
        page.records.clear();
        page.data.clear();
        (page.next_lsn, page.has_more) = (from_lsn, false);
        let (records, data) = (&mut page.records, &mut page.data);
        (page.next_lsn, page.has_more) = self.fill_page(view, from_lsn, max_records, max_bytes, |rec| {
            let start = data.len();
            data.extend_from_slice(rec.payload);
            records.push((rec.header, start..data.len()));
        })?;
        Ok(())
    }

    /// Passes up to `max_records` durable records from `from_lsn` to `push`,
    /// until their payloads reach `max_bytes` (at least one record when one
    /// is available); returns the LSN to ask for next and whether durable
    /// records remain from there.
    fn fill_page(
        &self,
        view: &View,
        from_lsn: u64,
        max_records: usize,
        max_bytes: usize,
        mut push: impl FnMut(RecordRef<'_>),
    ) -> Result<(u64, bool)> {
        let (mut next_lsn, mut bytes) = (from_lsn, 0usize);
        let taken = std::cell::Cell::new(0usize);
        let has_more = self.scan(view, from_lsn, &|| taken.get() < max_records, |rec| {
            let n = taken.get();
            if n >= max_records || (n > 0 && bytes + rec.payload.len() > max_bytes) {
                return false;
            }
            bytes += rec.payload.len();
            next_lsn = rec.header.lsn + 1;
            push(rec);
            taken.set(n + 1);
            true
        })?;
        if taken.get() == 0 {
            next_lsn = from_lsn.max(oldest(view));
        }
        Ok((next_lsn, has_more))
    }

    /// A cursor that pages forward from `from_lsn`.
    pub fn cursor(&self, from_lsn: u64) -> WalCursor {
        // 0 (or a truncated LSN) starts at the oldest record: lag counts from there.
        let follower = self.shared.stats.follow(from_lsn.max(self.oldest_lsn()));
        WalCursor { reader: self.clone(), next_lsn: from_lsn, pinned: None, follower }
    }

    /// Lends each durable record from `from_lsn` (0: the oldest) to `f`,
    /// in LSN order, until `f` returns false or the durable end is reached;
    /// returns whether durable records remain after the last one `f` took.
    /// Payloads are borrowed from the mapping: nothing is allocated per
    /// record (decryption aside). The fastest way to replay.
    pub fn visit(&self, from_lsn: u64, f: impl FnMut(RecordRef<'_>) -> bool) -> Result<bool> {
        let view = self.shared.snapshot();
        self.scan(&view, from_lsn, &|| true, f)
    }

    /// Streams records from `from_lsn` to `f` until it returns false.
    /// `room` is asked before each record is decoded: a page that is full
    /// stops without reading the record after it, so damage there cannot
    /// fail a page that does not include it.
    fn scan(
        &self,
        view: &View,
        from_lsn: u64,
        room: &dyn Fn() -> bool,
        mut f: impl FnMut(RecordRef<'_>) -> bool,
    ) -> Result<bool> {
        self.scan_decoded(view, from_lsn, room, |header, payload| f(RecordRef { header, payload: &payload }))
    }

    /// [`scan`](Self::scan), handing `f` each payload as decoded: lent from
    /// the segment, or the decrypted buffer itself, so an owned replay can
    /// keep it without copying it again.
    fn scan_decoded(
        &self,
        view: &View,
        from_lsn: u64,
        room: &dyn Fn() -> bool,
        mut f: impl FnMut(RecordHeader, Cow<'_, [u8]>) -> bool,
    ) -> Result<bool> {
        let oldest = oldest(view);
        if from_lsn != 0 && from_lsn < oldest {
            return Err(WalError::LsnTruncated { requested: from_lsn, oldest });
        }
        let from = from_lsn.max(oldest);
        let durable = durable_lsn(view);
        let first_of = |s: &Source<'_>| match s {
            Source::Sealed(s) => s.header.first_lsn,
            Source::Active(a) => a.header.first_lsn,
        };
        // Binary search by first LSN (R3): the last sealed segment starting at
        // or before `from` (when the active segment holds `from`, the scan of
        // that sealed segment returns at once).
        let start = view.sealed.partition_point(|s| s.header.first_lsn <= from).saturating_sub(1);
        let sources =
            view.sealed[start..].iter().map(|s| Source::Sealed(s)).chain(view.active.as_deref().map(Source::Active));
        let mut lsn = from;
        for src in sources {
            if lsn > durable {
                break;
            }
            // Never skip LSNs: a gap (segments truncated under a cursor that
            // pinned an older one) ends the page, or is LsnTruncated at once.
            if first_of(&src) > lsn {
                if lsn == from {
                    return Err(WalError::LsnTruncated { requested: lsn, oldest: first_of(&src) });
                }
                return Ok(true);
            }
            let go_on = match src {
                Source::Sealed(s) => self.scan_sealed(view, s, &mut lsn, room, &mut f)?,
                Source::Active(a) => self.scan_active(view, a, &mut lsn, room, &mut f)?,
            };
            if !go_on {
                return Ok(lsn <= durable);
            }
        }
        Ok(false)
    }

    /// `e`, or `LsnTruncated` when a directory reader's segment is no longer
    /// the file it listed: the writer (another process) truncated it, maybe
    /// recycling the file under the mapping. Its records are gone, not damaged.
    fn gone_or(&self, s: &SealedSeg, lsn: u64, e: WalError) -> WalError {
        if !self.shared.foreign_writer {
            return e;
        }
        let storage = &*self.shared.storage;
        if crate::segment::still_holds(storage, &s.path, &s.header) {
            return e;
        }
        let oldest = crate::catalog::list(storage, &self.shared.dir)
            .ok()
            .and_then(|l| l.segments.first().map(|f| f.first_lsn))
            .unwrap_or(s.seal.last_lsn.saturating_add(1)); // I20: the seal is unchecked here
        WalError::LsnTruncated { requested: lsn, oldest }
    }

    /// The segment's mapping, made on first use and kept while it is referenced.
    fn map(&self, s: &SealedSeg) -> Result<Arc<FileImage>> {
        if let Some(img) = s.image.get() {
            return Ok(img.clone());
        }
        let img = self.shared.storage.read_image(&s.path).map_err(|e| WalError::io("read", &s.path, e))?;
        Ok(s.image.get_or_init(|| Arc::new(img)).clone())
    }

    fn cipher(&self, view: &View, name: &str, header: &SegmentHeader, lsn: u64) -> Result<Option<SegmentCipher>> {
        crate::catalog::cipher_for(view.ring.as_deref(), name, header, lsn)
    }

    fn scan_sealed(
        &self,
        view: &View,
        s: &SealedSeg,
        lsn: &mut u64,
        room: &dyn Fn() -> bool,
        f: &mut impl FnMut(RecordHeader, Cow<'_, [u8]>) -> bool,
    ) -> Result<bool> {
        if *lsn > s.seal.last_lsn {
            return Ok(true);
        }
        let img = self.map(s).map_err(|e| self.gone_or(s, *lsn, e))?;
        let seed = s.header.crc_seed();
        let (first, start) = (s.header.first_lsn, format::data_start(s.header.block_size as usize));
        // Seek through the index; past its frontier, read on from the
        // frontier and extend the index on the way.
        let (extend_from, (mut at_lsn, mut off)) = {
            let ix = lock(&s.index);
            if *lsn < ix.frontier.0 {
                (None, seek(&ix.entries, *lsn, first, start))
            } else {
                (Some(ix.frontier), ix.frontier)
            }
        };
        let mut new_entries = Vec::new();
        let cipher = self.cipher(view, &s.name, &s.header, *lsn)?;
        let mut go_on = true;
        // I10: never past the seal's data end.
        while at_lsn <= s.seal.last_lsn {
            // Read ahead: keep up to READ_AHEAD bytes past the record being
            // decoded requested from the disk, so it works while records are
            // checked. Shared per segment, so small pages do not ask again.
            let asked = s.asked_to.load(Ordering::Relaxed);
            if off + READ_AHEAD / 2 >= asked && asked < s.seal.data_end {
                let from = asked.max(off);
                img.will_need(from as usize, READ_AHEAD as usize);
                s.asked_to.fetch_max(from + READ_AHEAD, Ordering::Relaxed);
            }
            if extend_from.is_some() && (at_lsn - first).is_multiple_of(INDEX_EVERY) {
                new_entries.push((at_lsn, off));
            }
            if at_lsn >= *lsn && !room() {
                *lsn = at_lsn;
                go_on = false;
                break;
            }
            let take = at_lsn >= *lsn;
            let rec = decode(&s.name, &img, 0, off, s.seal.data_end, seed, at_lsn, cipher.as_ref(), take, true)
                .map_err(|e| self.gone_or(s, at_lsn, e))?;
            if let Some((header, payload)) = rec.0 {
                if !f(header, payload) {
                    *lsn = at_lsn;
                    go_on = false;
                    break;
                }
                *lsn = at_lsn + 1;
            }
            off += rec.1;
            at_lsn += 1;
        }
        if let Some(from) = extend_from {
            // The record we stopped at was not consumed: the frontier is at it,
            // so its entry (if any) is pushed again by the next extension.
            if new_entries.last() == Some(&(at_lsn, off)) {
                new_entries.pop();
            }
            let mut ix = lock(&s.index);
            // Another reader may have extended it meanwhile; only a contiguous extension applies.
            if ix.frontier == from {
                ix.entries.extend(new_entries);
                ix.frontier = (at_lsn, off);
            }
        }
        Ok(go_on)
    }

    fn scan_active(
        &self,
        view: &View,
        a: &ActiveView,
        lsn: &mut u64,
        room: &dyn Fn() -> bool,
        f: &mut impl FnMut(RecordHeader, Cow<'_, [u8]>) -> bool,
    ) -> Result<bool> {
        let (last, end) = a.watermark();
        if *lsn > last {
            return Ok(true);
        }
        let (mut at_lsn, mut off) = a.seek(*lsn);
        let cipher = self.cipher(view, &a.name, &a.header, *lsn)?;
        let seed = a.header.crc_seed();
        let mut window = Window::Owned { base: off, bytes: Vec::new(), from_disk: true };
        // I10: never past the published durable end (R2).
        while at_lsn <= last {
            if at_lsn >= *lsn && !room() {
                *lsn = at_lsn;
                return Ok(false);
            }
            // Make the window hold the whole record at `off` (or all that is durable).
            loop {
                let (base, bytes) = (window.base(), window.bytes());
                let w_end = base + bytes.len() as u64;
                let need_end = record_end(bytes, base, off).unwrap_or(off + format::RECORD_HEADER_LEN as u64);
                if off >= base && (need_end <= w_end || w_end >= end) {
                    break;
                }
                window = match a.tail_window(off, need_end, end) {
                    Some(w) => w,
                    None => {
                        let len = (ACTIVE_WINDOW as u64).max(need_end - off).min(end.saturating_sub(off));
                        let bytes = self
                            .shared
                            .storage
                            .read_range(&a.path, off, len as usize, view.direct)
                            .map_err(|e| WalError::io("read", &a.path, e))?;
                        Window::Owned { base: off, bytes, from_disk: true }
                    }
                };
            }
            // Decode every record the window holds whole (the first one it
            // does, by the loop above).
            let (base, bytes, verify) = (window.base(), window.bytes(), window.read_from_disk());
            let w_end = base + bytes.len() as u64;
            loop {
                let take = at_lsn >= *lsn;
                let rec = decode(&a.name, bytes, base, off, end, seed, at_lsn, cipher.as_ref(), take, verify)?;
                off += rec.1;
                if let Some((header, payload)) = rec.0 {
                    if !f(header, payload) {
                        *lsn = at_lsn;
                        return Ok(false);
                    }
                    *lsn = at_lsn + 1;
                }
                at_lsn += 1;
                if at_lsn > last || (w_end < end && record_end(bytes, base, off).is_none_or(|e| e > w_end)) {
                    break;
                }
                if at_lsn >= *lsn && !room() {
                    *lsn = at_lsn;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// Where the record at segment offset `off` ends, when the window `bytes`
/// (at segment offset `base`) holds its header; its length is not checked
/// beyond the largest a record may have.
#[inline]
fn record_end(bytes: &[u8], base: u64, off: u64) -> Option<u64> {
    let rel = usize::try_from(off.checked_sub(base)?).ok()?;
    let h = bytes.get(rel..rel.checked_add(format::RECORD_HEADER_LEN)?)?;
    Some(off + format::record_size((format::read_header(h).len as usize).min(format::MAX_STORED_LEN)) as u64)
}

/// The sparse index entry at or before `lsn` (or the segment start).
fn seek(index: &[(u64, u64)], lsn: u64, first_lsn: u64, data_start: u64) -> (u64, u64) {
    match index.partition_point(|&(l, _)| l <= lsn) {
        0 => (first_lsn, data_start),
        i => index[i - 1],
    }
}

/// A record's header and its payload, lent from the image or decrypted.
type Decoded<'a> = (RecordHeader, Cow<'a, [u8]>);

/// Checks the record at `off` of `img` (expected LSN `lsn`) and, when `take`,
/// decodes it (decrypting with `cipher`). Returns the record and its size.
/// `img[0]` is at segment offset `base`; `off` and `end` are segment offsets.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn decode<'a>(
    name: &str,
    img: &'a [u8],
    base: u64,
    off: u64,
    end: u64,
    seed: u32,
    lsn: u64,
    cipher: Option<&SegmentCipher>,
    take: bool,
    verify_crc: bool,
) -> Result<(Option<Decoded<'a>>, u64)> {
    let (h, payload) = format::check_record_in(img, base, off, end, seed, Some(lsn), verify_crc).map_err(|fault| {
        WalError::Corruption { segment: name.to_owned(), offset: off, lsn, reason: fault.describe() }
    })?;
    let size = format::record_size(h.len as usize) as u64;
    if !take {
        return Ok((None, size));
    }
    // E5/I11: in an encrypted segment every record is encrypted and authentic;
    // in a plain one none may claim to be.
    let auth_failed = || WalError::AuthenticationFailed { segment: name.to_owned(), offset: off, lsn };
    let encrypted = h.fields.flags & format::FLAG_ENCRYPTED != 0;
    if encrypted != cipher.is_some() {
        return Err(auth_failed());
    }
    let payload = match cipher {
        Some(c) => Cow::Owned(c.open(&h.fields, &img[payload]).ok_or_else(auth_failed)?),
        None => Cow::Borrowed(&img[payload]),
    };
    let header = RecordHeader {
        lsn,
        record_type: h.fields.record_type,
        tenant_id: h.fields.tenant_id,
        vshard_id: h.fields.vshard_id,
        flags: h.fields.flags,
        payload_len: h.len,
    };
    Ok((Some((header, payload)), size))
}

fn oldest(view: &View) -> u64 {
    view.sealed.first().map(|s| s.header.first_lsn).or(view.active.as_ref().map(|a| a.header.first_lsn)).unwrap_or(1)
}

pub(crate) fn durable_lsn(view: &View) -> u64 {
    match &view.active {
        Some(a) => {
            let (last, _) = a.watermark();
            last
        }
        None => view.sealed.last().map_or(0, |s| s.seal.last_lsn),
    }
}

/// Pages forward through the WAL, resuming where the last page ended. The
/// sealed segment it is in the middle of stays readable even if
/// `truncate_before` deletes it (D8, R4): the cursor holds its mapping.
#[derive(Clone)]
pub struct WalCursor {
    reader: WalReader,
    next_lsn: u64,
    pinned: Option<Arc<SealedSeg>>,
    /// Where this follower is, for the stats' follower lag.
    follower: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for WalCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalCursor").field("next_lsn", &self.next_lsn).finish()
    }
}

impl WalCursor {
    /// The next page; an empty page with `has_more == false` when the reader
    /// has caught up with the durable end (call again later to follow).
    pub fn next_page(&mut self, max_records: usize, max_bytes: usize) -> Result<Page> {
        self.advance(|reader, view, from| {
            let page = reader.read_page_in(view, from, max_records, max_bytes)?;
            let next = page.next_lsn;
            Ok((page, next))
        })
    }

    /// Like [`next_page`](Self::next_page), into `page`, whose buffers are
    /// reused: paging allocates nothing per record.
    pub fn next_page_into(&mut self, page: &mut PageBuf, max_records: usize, max_bytes: usize) -> Result<()> {
        self.advance(|reader, view, from| {
            reader.read_page_into_in(view, page, from, max_records, max_bytes)?;
            Ok(((), page.next_lsn))
        })
    }

    /// Reads a page with `read(reader, view, from_lsn)`, which returns it
    /// and the LSN after it, and moves the cursor there.
    fn advance<T>(&mut self, read: impl FnOnce(&WalReader, &View, u64) -> Result<(T, u64)>) -> Result<T> {
        let mut view = self.reader.shared.snapshot();
        if let Some(p) = &self.pinned
            && p.header.first_lsn < oldest(&view)
            && !view.sealed.first().is_some_and(|s| Arc::ptr_eq(s, p))
        {
            // Truncated under us: keep reading the segment we are in.
            Arc::make_mut(&mut view.sealed).insert(0, p.clone());
        }
        let (page, next_lsn) = read(&self.reader, &view, self.next_lsn).inspect_err(crate::stats::follower_failed)?;
        self.next_lsn = next_lsn;
        self.follower.store(next_lsn, Ordering::Relaxed);
        let at = view.sealed.partition_point(|s| s.header.first_lsn <= self.next_lsn);
        self.pinned = at.checked_sub(1).map(|i| &view.sealed[i]).filter(|s| self.next_lsn <= s.seal.last_lsn).cloned();
        if let Some(p) = &self.pinned {
            self.reader.map(p)?;
        }
        Ok(page)
    }

    /// The LSN the next page starts at.
    pub fn position(&self) -> u64 {
        self.next_lsn
    }
}
