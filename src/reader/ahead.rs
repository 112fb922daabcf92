//! Reading ahead of a long owned replay on a second thread: while the scan
//! builds the records of one part of the sealed segments (an allocation and
//! a copy each), a helper thread reads the pages of the next part into the
//! page cache and maps them, so the scan finds them there and mapped: it
//! waits for neither the device nor the page-fault path. The helper only
//! reads mappings that exist, never calls the storage, and decides nothing:
//! the scan checks every byte as it would alone and reports every error
//! (I27). So that the helper can read on past the end of a segment, the
//! scan maps the next one as it starts each (where the storage maps files),
//! keeping a failure for when it gets there.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crate::catalog::MAX_SEGMENT_FILE_LEN;
use crate::error::{Result, WalError};
use crate::format;
use crate::io::{FileImage, Storage};
use crate::view::SealedSeg;

/// Bytes of sealed segments a scan must have ahead of it for a helper.
const MIN_BYTES: u64 = 32 << 20;
/// How far the helper runs ahead of the scan.
const LEAD: u64 = 32 << 20;
/// Bytes the helper reads in between looks at the scan's position.
const STEP: u64 = 1 << 20;
/// Bytes a scan moves between reports of its position.
const REPORT_EVERY: u64 = 1 << 20;
/// How long a waiting helper sleeps unless the scan wakes it first.
const NAP: Duration = Duration::from_millis(10);
/// Bits of a position that hold the offset within a segment (the segment's
/// index in the view above them).
const OFFSET_BITS: u32 = 40;
const _: () = assert!(MAX_SEGMENT_FILE_LEN < 1 << OFFSET_BITS);

/// Where a scan of sealed segments stands, shared with its helper.
pub(super) struct Ahead {
    /// The scan's position: segment index << `OFFSET_BITS` | offset.
    at: AtomicU64,
    /// Set when the scan is over: the helper stops.
    stop: AtomicBool,
    /// The last position reported, kept by the scan's thread.
    reported: AtomicU64,
    /// The helper, woken when the scan reports a position or stops.
    helper: OnceLock<Thread>,
    /// A mapping made ahead that failed: (segment index, error), for the
    /// scan to return when it reaches that segment (the scan's thread only).
    early: Mutex<Option<(usize, WalError)>>,
}

impl Ahead {
    /// The scan starts at `off` of the `start`-th sealed segment.
    fn new(start: usize, off: u64) -> Self {
        let at = (start as u64) << OFFSET_BITS | off;
        Ahead {
            at: AtomicU64::new(at),
            stop: AtomicBool::new(false),
            reported: AtomicU64::new(at),
            helper: OnceLock::new(),
            early: Mutex::new(None),
        }
    }

    /// The mapping of the `seg`-th sealed segment `s` for the scan: one
    /// made since (by this scan ahead, or by another reader), else the error
    /// met when it was tried ahead ([`map_next`](Self::map_next)), else
    /// made now.
    pub fn image(&self, seg: usize, s: &SealedSeg, storage: &dyn Storage) -> Result<Arc<FileImage>> {
        let early = self.early.lock().unwrap_or_else(|p| p.into_inner()).take_if(|(i, _)| *i == seg);
        match (s.mapped(), early) {
            (Some(img), _) => Ok(img),
            (None, Some((_, e))) => Err(e),
            (None, None) => s.image(storage),
        }
    }

    /// Maps the sealed segment after the `seg`-th, so the helper can read on
    /// into it; only called when the storage maps files (an mmap: nothing
    /// is read). I27: a failure is kept, never retried, and returned by
    /// [`image`](Self::image) when the scan gets there, as the scan alone
    /// would have met it then.
    pub fn map_next(&self, sealed: &[Arc<SealedSeg>], seg: usize, storage: &dyn Storage) {
        let Some(next) = sealed.get(seg + 1) else { return };
        if next.mapped().is_none()
            && let Err(e) = next.image(storage)
        {
            *self.early.lock().unwrap_or_else(|p| p.into_inner()) = Some((seg + 1, e));
        }
    }

    /// The scan is at `off` of the `seg`-th sealed segment.
    #[inline]
    pub fn at(&self, seg: usize, off: u64) {
        let pos = (seg as u64) << OFFSET_BITS | off;
        let reported = self.reported.load(Ordering::Relaxed);
        if pos >= reported.saturating_add(REPORT_EVERY) || (pos >> OFFSET_BITS) != (reported >> OFFSET_BITS) {
            self.reported.store(pos, Ordering::Relaxed);
            self.at.store(pos, Ordering::Relaxed);
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(helper) = self.helper.get() {
            helper.unpark();
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A segment's bytes as the helper counts them: its seal's data end,
/// bounded by the longest file a segment may be (a directory reader's
/// seals are not checked, I20).
fn seg_bytes(s: &SealedSeg) -> u64 {
    s.seal.data_end.min(MAX_SEGMENT_FILE_LEN)
}

/// Set once the OS refused `MADV_POPULATE_READ` (Linux before 5.14): no
/// helper is started after that.
static NO_POPULATE: AtomicBool = AtomicBool::new(false);

/// Whether a scan from the `start`-th sealed segment has enough to read for
/// a helper to pay: at least `MIN_BYTES` of sealed data, positions that fit
/// `OFFSET_BITS`, a second core, and an OS that reads pages in without
/// touching them (Linux 5.14 on).
pub(super) fn worth_it(sealed: &[Arc<SealedSeg>], start: usize) -> bool {
    let bytes: u64 = sealed.iter().skip(start).map(|s| seg_bytes(s)).sum();
    bytes >= MIN_BYTES
        && sealed.len() < 1 << (64 - OFFSET_BITS)
        && cfg!(target_os = "linux")
        && !NO_POPULATE.load(Ordering::Relaxed)
        && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
}

/// Runs `scan`, which starts at offset `first` of the `start`-th sealed
/// segment, with a helper thread reading the sealed segments ahead of it
/// (`scan` gets `None` when no thread could be started: it then reads
/// alone). The helper is stopped and joined before this returns, also when
/// `scan` panics.
pub(super) fn with_helper<R>(
    sealed: &[Arc<SealedSeg>],
    (start, first): (usize, u64),
    scan: impl FnOnce(Option<&Ahead>) -> R,
) -> R {
    let ahead = Ahead::new(start, first);
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("directwal-read-ahead".into())
            .spawn_scoped(s, || fault_in(sealed, (start, first), &ahead));
        if let Ok(h) = &helper {
            let _ = ahead.helper.set(h.thread().clone());
        }
        // I27: stopped (then joined by the scope) however the scan ends.
        let _stop = Stop(&ahead);
        scan(helper.is_ok().then_some(&ahead))
    })
}

/// Stops the helper when dropped: when the scan returns or unwinds, before
/// the scope joins the helper.
struct Stop<'a>(&'a Ahead);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
        self.0.wake();
    }
}

/// The helper: reads and maps the pages of the sealed segments from offset
/// `first` of the `start`-th on (the data of the others from their start),
/// never more than `LEAD` bytes ahead of the scan's last reported position
/// and never behind it. It reads a segment only once it is mapped (the scan
/// maps each one segment ahead), and stops at the first page it cannot read
/// (the scan reports what is wrong there, if it gets there), or where the
/// OS cannot read pages in without touching them.
fn fault_in(sealed: &[Arc<SealedSeg>], (start, first): (usize, u64), ahead: &Ahead) {
    // Where each segment starts in one sequence of all their bytes.
    let mut base = vec![0u64; sealed.len() + 1];
    for (i, s) in sealed.iter().enumerate() {
        base[i + 1] = base[i] + seg_bytes(s);
    }
    let linear = |pos: u64| {
        let i = ((pos >> OFFSET_BITS) as usize).min(sealed.len());
        base[i] + (pos & ((1 << OFFSET_BITS) - 1)).min(MAX_SEGMENT_FILE_LEN)
    };
    for (i, s) in sealed.iter().enumerate().skip(start) {
        // I27: only a mapping that exists; the helper never calls the storage.
        let img = loop {
            if ahead.stopped() {
                return;
            }
            match s.mapped() {
                Some(img) => break img,
                None => std::thread::park_timeout(NAP),
            }
        };
        if !img.is_mapped() {
            return; // held in memory: nothing to read in
        }
        // I27: from where the scan starts (or an index entry before it),
        // below the seal's data end.
        let end = seg_bytes(s).min(img.len() as u64);
        let mut off = if i == start { first } else { format::data_start(s.header.block_size as usize) };
        while off < end {
            if ahead.stopped() {
                return;
            }
            let Some((from, to)) = next_stretch(base[i], off, end, linear(ahead.at.load(Ordering::Relaxed))) else {
                std::thread::park_timeout(NAP);
                continue;
            };
            s.read_ahead(&img, from, super::scan::READ_AHEAD);
            // I27: an unreadable page is an error here, never SIGBUS.
            if let Err(e) = img.populate(from as usize, (to - from) as usize) {
                if e.kind() == std::io::ErrorKind::Unsupported || e.raw_os_error() == Some(libc::EINVAL) {
                    NO_POPULATE.store(true, Ordering::Relaxed);
                }
                return;
            }
            off = to;
        }
    }
}

/// The stretch `[from, to)` of a segment the helper reads next, when it
/// has reached `off` of that segment, which starts at `base` in the sequence
/// of all the segments' bytes and ends at `end`, and the scan is at
/// `scan_at` of that sequence: never behind the scan (what it has read is
/// mapped already), never past `end`, and `None` while the helper is `LEAD`
/// ahead.
fn next_stretch(base: u64, off: u64, end: u64, scan_at: u64) -> Option<(u64, u64)> {
    if base.saturating_add(off) > scan_at.saturating_add(LEAD) {
        return None;
    }
    let from = off.max(scan_at.saturating_sub(base)).min(end);
    Some((from, from.saturating_add(STEP).min(end)))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::format::Seal;
    use crate::io::OsStorage;

    /// A sealed segment over a sparse file of `len` bytes (zeros).
    fn segment(dir: &std::path::Path, len: u64) -> Arc<SealedSeg> {
        let path = dir.join("wal-00000000000000000001.seg");
        std::fs::File::create(&path).unwrap().set_len(len).unwrap();
        let seal = Seal { last_lsn: 1, records: 1, data_end: len, sealed_ms: 0 };
        Arc::new(SealedSeg::for_test(path, 1, seal))
    }

    /// Runs `scan` under `with_helper` on another thread: whether it
    /// returned within ten seconds, and whether it panicked.
    fn returns(seg: Arc<SealedSeg>, scan: fn(Option<&Ahead>)) -> Option<bool> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| with_helper(&[seg], (0, 4096), scan));
            let _ = tx.send(r.is_err());
        });
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }

    #[test]
    fn the_helper_stops_when_the_scan_ends_or_panics() {
        let dir = tempfile::tempdir().unwrap();
        let seg = segment(dir.path(), 3 * LEAD);
        seg.image(&OsStorage).unwrap(); // as the scan maps it
        // A scan that never moves: the helper waits at its lead, and stops
        // when the scan is over.
        let still: fn(Option<&Ahead>) = |a| {
            assert!(a.is_some(), "a helper was started");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(returns(seg.clone(), still), Some(false));
        let panics: fn(Option<&Ahead>) = |_| panic!("the scan's own panic");
        assert_eq!(returns(seg, panics), Some(true), "the panic reaches the caller, the helper is joined");
    }

    #[test]
    fn the_helper_stays_between_the_scan_and_its_lead() {
        let (base, end) = (100 << 20, 64 << 20);
        // Behind the scan: it jumps to the scan, a step at a time.
        assert_eq!(next_stretch(base, 0, end, base + 5_000), Some((5_000, 5_000 + STEP)));
        // Ahead, within the lead: on from where it is.
        assert_eq!(next_stretch(base, 8 << 20, end, base), Some((8 << 20, (8 << 20) + STEP)));
        assert_eq!(next_stretch(base, LEAD, end, base), Some((LEAD, LEAD + STEP)));
        // Past the lead: it waits.
        assert_eq!(next_stretch(base, LEAD + 1, end, base), None);
        assert_eq!(next_stretch(base, 0, end, 0), None);
        // Never past the segment's end, even when the scan is beyond it.
        assert_eq!(next_stretch(base, end - 10, end, base + end - 20), Some((end - 10, end)));
        assert_eq!(next_stretch(base, 0, end, base + end + 5), Some((end, end)));
        // Unchecked seals (a directory reader's) cannot overflow it.
        assert_eq!(next_stretch(u64::MAX, 0, u64::MAX, u64::MAX), Some((0, STEP)));
    }

    #[test]
    fn a_position_is_reported_once_a_step_and_when_a_segment_starts() {
        let a = Ahead::new(0, 0);
        a.at(0, 10);
        assert_eq!(a.at.load(Ordering::Relaxed), 0, "under a step: not reported");
        a.at(0, REPORT_EVERY);
        assert_eq!(a.at.load(Ordering::Relaxed), REPORT_EVERY);
        a.at(0, REPORT_EVERY + 10);
        assert_eq!(a.at.load(Ordering::Relaxed), REPORT_EVERY);
        a.at(1, 4096);
        assert_eq!(a.at.load(Ordering::Relaxed), 1 << OFFSET_BITS | 4096);
    }
}
