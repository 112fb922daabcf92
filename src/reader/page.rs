//! Pages of records and the cursor that pages forward.

use std::sync::Arc;

use super::{WalReader, oldest};
use crate::error::Result;
use crate::record::{RecordHeader, RecordRef, WalRecord};
use crate::view::{SealedSeg, View};

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
    pub(super) records: Vec<(RecordHeader, std::ops::Range<usize>)>,
    pub(super) data: Vec<u8>,
    pub(super) next_lsn: u64,
    pub(super) has_more: bool,
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

/// Pages forward through the WAL, resuming where the last page ended. The
/// sealed segment it is in the middle of stays readable even if
/// `truncate_before` deletes it (I17): the cursor holds its mapping.
#[derive(Clone)]
pub struct WalCursor {
    pub(super) reader: WalReader,
    pub(super) next_lsn: u64,
    pub(super) pinned: Option<Arc<SealedSeg>>,
    /// Where this follower is, for the stats' follower lag.
    pub(super) follower: Arc<std::sync::atomic::AtomicU64>,
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
            && !view.sealed().first().is_some_and(|s| Arc::ptr_eq(s, p))
        {
            // Truncated under us: keep reading the segment we are in.
            view.pin_oldest(p.clone());
        }
        let (page, next_lsn) = read(&self.reader, &view, self.next_lsn).inspect_err(crate::stats::follower_failed)?;
        self.next_lsn = next_lsn;
        self.follower.store(next_lsn, std::sync::atomic::Ordering::Relaxed);
        let at = view.sealed().partition_point(|s| s.header.first_lsn <= self.next_lsn);
        self.pinned =
            at.checked_sub(1).map(|i| &view.sealed()[i]).filter(|s| self.next_lsn <= s.seal.last_lsn).cloned();
        if let Some(p) = &self.pinned {
            p.image(&*self.reader.shared.storage)?;
        }
        Ok(page)
    }

    /// The LSN the next page starts at.
    pub fn position(&self) -> u64 {
        self.next_lsn
    }
}
