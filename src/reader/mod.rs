//! Readers: paginated, lock-free readers over the WAL.
//!
//! A reader reads the view the writer publishes (`crate::view`): durable
//! records only, in LSN order, without ever taking the writer's lock.
//! [`page`] holds the pages and the cursor, [`scan`] the decoding of
//! sealed and active segments.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::crypto::KeyRing;
use crate::error::{Result, WalError};
use crate::io::{OsStorage, Storage};
use crate::record::RecordRef;
use crate::recovery::ScanOutcome;
use crate::view::{SealedSeg, Shared, View};

mod ahead;
mod owned;
mod page;
mod scan;

pub use page::{Page, PageBuf, WalCursor};

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

/// Reads of a directory [`WalReader::open_dir`] makes before an error stands.
const DIR_ATTEMPTS: usize = 4;

impl WalReader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.readers.fetch_add(1, Ordering::Relaxed);
        WalReader { shared }
    }

    /// A read-only reader over a WAL directory that no writer in this process
    /// holds. Sealed segments are read up to their seal; an unsealed newest
    /// segment up to its last fully valid record (I10). Nothing is written.
    ///
    /// Beside a live writer (another process) the directory changes while it
    /// is read: the newest segment listed may be truncated away before it is
    /// read, or sealed and followed by a newer one in between. An error is
    /// therefore returned only when a fresh read of the directory repeats it
    /// (at most `DIR_ATTEMPTS` reads); a directory nobody writes repeats it
    /// at once.
    pub fn open_dir(dir: &Path, ring: Option<KeyRing>) -> Result<Self> {
        crate::catalog::settled(
            DIR_ATTEMPTS,
            |_| true,
            || match Self::open_dir_prefix(dir, ring.clone())? {
                (_, Some(fault)) => Err(fault),
                (reader, None) => Ok(reader),
            },
        )
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
                    Ok((_, out)) => out.seal(0),
                    Err(e) => {
                        // Damage to durable data in the newest segment: its
                        // records before the damage are valid (the scan
                        // checked each in order), so they stay readable.
                        let prefix = ScanOutcome::before_damage(&e, seg.first_lsn).filter(|o| o.records > 0);
                        stop = Some(e);
                        match prefix {
                            Some(out) => out.seal(0),
                            None => break,
                        }
                    }
                },
            };
            if seal.records > 0 {
                sealed.push(Arc::new(SealedSeg::new(seg.name.clone(), seg.path.clone(), header, seal, None)));
            }
        }
        let shared = Shared::new(dir.to_owned(), storage, true, Arc::default());
        shared.set_sealed(sealed);
        shared.set_ring(ring.map(Arc::new));
        Ok((WalReader::new(Arc::new(shared)), stop))
    }

    /// The name of the segment that holds `lsn` now, for errors about a
    /// record read earlier; empty when no retained segment does.
    #[cfg(feature = "openraft")]
    pub(crate) fn segment_of(&self, lsn: u64) -> String {
        let view = self.shared.snapshot();
        let first = match view.active() {
            Some(a) if a.header.first_lsn <= lsn => Some(a.header.first_lsn),
            _ => view.sealed().iter().rev().find(|s| s.header.first_lsn <= lsn).map(|s| s.header.first_lsn),
        };
        first.map(crate::segment::segment_file_name).unwrap_or_default()
    }

    /// LSN of the last durable record (0 if none).
    pub fn durable_lsn(&self) -> u64 {
        durable_lsn(&self.shared.snapshot())
    }

    /// LSN of the oldest retained record.
    pub fn oldest_lsn(&self) -> u64 {
        oldest(&self.shared.snapshot())
    }

    /// Up to `max_records` durable records from `from_lsn` (0: the oldest),
    /// stopping once their payloads reach `max_bytes` (a page holds at least
    /// one record when one is available). `LsnTruncated` when `from_lsn` was
    /// truncated away.
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

    /// [`visit`](Self::visit) for a caller that builds an owned record from
    /// every one, to the end: the sealed segments are read ahead on a
    /// second thread while this one is busy (`ahead`).
    pub(crate) fn visit_owned(&self, from_lsn: u64, mut f: impl FnMut(RecordRef<'_>) -> bool) -> Result<bool> {
        let view = self.shared.snapshot();
        self.scan_decoded(&view, from_lsn, true, &|| true, |header, payload| f(RecordRef { header, payload: &payload }))
    }
}

fn oldest(view: &View) -> u64 {
    view.sealed().first().map(|s| s.header.first_lsn).or(view.active().map(|a| a.header.first_lsn)).unwrap_or(1)
}

pub(crate) fn durable_lsn(view: &View) -> u64 {
    match view.active() {
        Some(a) => {
            let (last, _) = a.watermark();
            last
        }
        None => view.sealed().last().map_or(0, |s| s.seal.last_lsn),
    }
}
