//! Operator-facing statistics (docs/OBSERVABILITY.md).
//!
//! Every figure is a relaxed atomic written where the event happens (the
//! writer thread, the write helper, the group-commit leader) and read by
//! [`StatsSnapshot`] without the writer's lock, so a scraper never contends
//! with commits. Device figures (write calls, bytes, fdatasyncs and their
//! times) are taken in one place, [`Metered`], a wrapper around the WAL's
//! [`Storage`] through which every write and fdatasync of the writer passes.
//! Nothing here allocates, locks or makes a syscall on the hot path; only
//! registering or reading a follower takes a (scraper-side) mutex.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::io::{FileImage, OpenMode, Storage, StorageFile};

use crate::histogram::Histogram;
pub use crate::histogram::HistogramSnapshot;

/// What bytes written to the device were for (write amplification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Record bytes written for the first time.
    Data,
    /// Bytes written again: the durable prefix of a sync's tail block and
    /// the zero padding after the data (DESIGN I4).
    TailRewrite,
    /// Segment headers and zero-filled space prepared ahead (DESIGN.md, "Preparing space").
    Prepare,
    /// Seal blocks (I7).
    Seal,
}

/// The counters of one open WAL, shared by its writer, group-commit handle
/// and readers.
#[derive(Default)]
pub(crate) struct Stats {
    records: AtomicU64,
    payload_bytes: AtomicU64,
    written: [AtomicU64; 4],
    device_bytes: AtomicU64,
    write_calls: AtomicU64,
    write_ns: AtomicU64,
    buffer_full_writes: AtomicU64,
    reserve_fdatasyncs: AtomicU64,
    read_ahead_helpers: AtomicU64,
    fdatasyncs: AtomicU64,
    fdatasync_ns: AtomicU64,
    dir_fsyncs: AtomicU64,
    syncs: AtomicU64,
    synced_records: AtomicU64,
    sync_us_total: AtomicU64,
    sync_us_max: AtomicU64,
    segments_created: AtomicU64,
    segments_recycled: AtomicU64,
    rolls: AtomicU64,
    segments_truncated: AtomicU64,
    bytes_reclaimed: AtomicU64,
    spares_at_open: AtomicU64,
    spares_kept: AtomicU64,
    poisoned: AtomicBool,
    direct_io: AtomicBool,
    fdatasync_latency: Histogram,
    commit_wait: Histogram,
    batch_records: Histogram,
    /// Positions of the live followers (`WalCursor`s), registered when a
    /// cursor is made; a dropped cursor leaves a dead entry, pruned then.
    followers: Mutex<Vec<Weak<AtomicU64>>>,
    #[cfg(feature = "metrics")]
    published: std::sync::OnceLock<crate::metrics::Handles>,
}

/// For figures several threads move at once (device calls: the write
/// helper, a group-commit leader's fdatasync, the writer).
fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// For figures only the writer moves: they change in `SegmentedWal`
/// methods, which take it exclusively (`&mut self`, or `&self` with no
/// `&mut` borrow alive), so a plain load and store suffice — no locked
/// instruction on the append path.
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Stats {
    /// The counters of the WAL in `dir`, published through the `metrics`
    /// facade too when that feature is on.
    pub fn for_wal(dir: &Path) -> Arc<Stats> {
        let stats = Arc::new(Stats::default());
        #[cfg(feature = "metrics")]
        stats.publish_to_recorder(dir);
        #[cfg(not(feature = "metrics"))]
        let _ = dir;
        stats
    }

    /// Publishes through the `metrics` facade from now on (feature
    /// `metrics`), labelled with the WAL directory.
    #[cfg(feature = "metrics")]
    pub fn publish_to_recorder(&self, dir: &Path) {
        let _ = self.published.set(crate::metrics::Handles::register(dir));
    }

    #[cfg(feature = "metrics")]
    fn m(&self) -> Option<&crate::metrics::Handles> {
        self.published.get()
    }

    /// A record of `payload` bytes was appended.
    pub fn appended(&self, payload: usize) {
        bump(&self.records, 1);
        bump(&self.payload_bytes, payload as u64);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.appended(payload as u64);
        }
    }

    /// The writer handed `n` bytes to the device for `what`.
    pub fn wrote(&self, what: Written, n: u64) {
        bump(&self.written[what as usize], n);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.wrote(what, n);
        }
    }

    /// A full write buffer went to the device before any sync asked for it.
    pub fn buffer_full(&self) {
        bump(&self.buffer_full_writes, 1);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.buffer_full.increment(1);
        }
    }

    /// An fdatasync issued only to make prepared space durable before data
    /// reaches it (DESIGN I26).
    pub fn reserve_fdatasync(&self) {
        bump(&self.reserve_fdatasyncs, 1);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.reserve_fdatasyncs.increment(1);
        }
    }

    /// A helper thread started reading sealed segments ahead of an owned
    /// replay (DESIGN I27).
    pub fn read_ahead_helper(&self) {
        add(&self.read_ahead_helpers, 1); // readers of any thread
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.read_ahead_helpers.increment(1);
        }
    }

    fn device_write(&self, n: usize, took: Duration) {
        add(&self.write_calls, 1);
        add(&self.device_bytes, n as u64);
        add(&self.write_ns, took.as_nanos() as u64);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.write_duration.record(took.as_secs_f64());
        }
    }

    fn device_fdatasync(&self, took: Duration) {
        let ns = took.as_nanos() as u64;
        add(&self.fdatasyncs, 1);
        add(&self.fdatasync_ns, ns);
        self.fdatasync_latency.record(ns);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.fsync_duration.record(took.as_secs_f64());
        }
    }

    fn device_dir_fsync(&self) {
        add(&self.dir_fsyncs, 1);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.dir_fsyncs.increment(1);
        }
    }

    /// A sync (or a seal's) made `records` durable, `took` after it began.
    pub fn synced(&self, records: u64, took: Duration) {
        let us = took.as_micros() as u64;
        bump(&self.syncs, 1);
        bump(&self.synced_records, records);
        bump(&self.sync_us_total, us);
        self.sync_us_max.store(self.sync_us_max.load(Relaxed).max(us), Relaxed);
        self.batch_records.record(records);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.batch_records.record(records as f64);
        }
    }

    /// A committer waited `since.elapsed()` for its record to be durable.
    pub fn commit_waited(&self, since: Instant) {
        let took = since.elapsed();
        self.commit_wait.record(took.as_nanos() as u64);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.commit_wait.record(took.as_secs_f64());
        }
    }

    /// A segment was started (in a recycled file or not), with O_DIRECT or not.
    pub fn segment_started(&self, recycled: bool, direct: bool) {
        bump(&self.segments_created, 1);
        bump(&self.segments_recycled, recycled as u64);
        self.direct_io.store(direct, Relaxed);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.segments_created.increment(1);
            m.segments_recycled.increment(recycled as u64);
        }
    }

    /// The active segment was sealed and the next one begun.
    pub fn rolled(&self) {
        bump(&self.rolls, 1);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.rolls.increment(1);
        }
    }

    /// A sealed segment of `bytes` was truncated away (kept as a spare or not).
    pub fn truncated(&self, bytes: u64, kept_as_spare: bool) {
        // `truncate_before` takes `&self`: it may run beside another one.
        add(&self.segments_truncated, 1);
        add(&self.bytes_reclaimed, bytes);
        add(&self.spares_kept, kept_as_spare as u64);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.segments_truncated.increment(1);
            m.bytes_reclaimed.increment(bytes);
        }
    }

    /// Spare files found at open.
    pub fn spares_at_open(&self, n: usize) {
        self.spares_at_open.store(n as u64, Relaxed);
    }

    /// The writer is poisoned (I3).
    pub fn poisoned(&self) {
        self.poisoned.store(true, Relaxed);
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.poisoned();
        }
    }

    /// Whether the writer is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Relaxed)
    }

    /// Registers a follower at `next_lsn`; it reports its progress by
    /// storing its next LSN in the returned slot.
    pub fn follow(&self, next_lsn: u64) -> Arc<AtomicU64> {
        let slot = Arc::new(AtomicU64::new(next_lsn));
        let mut f = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        f.retain(|w| w.strong_count() > 0);
        f.push(Arc::downgrade(&slot));
        slot
    }

    /// (live followers, the lowest next LSN among them).
    fn slowest_follower(&self) -> (usize, Option<u64>) {
        let mut f = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        f.retain(|w| w.strong_count() > 0);
        let min = f.iter().filter_map(Weak::upgrade).map(|s| s.load(Relaxed)).min();
        (f.len(), min)
    }

    /// Reads every figure; `live` describes what the readers' view holds.
    pub fn snapshot(&self, live: Live) -> StatsSnapshot {
        let ld = |c: &AtomicU64| c.load(Relaxed);
        let (followers, slowest) = self.slowest_follower();
        let recycled = ld(&self.segments_recycled);
        let snap = StatsSnapshot {
            records_appended: ld(&self.records),
            payload_bytes_appended: ld(&self.payload_bytes),
            bytes_written: BytesWritten {
                data: ld(&self.written[Written::Data as usize]),
                tail_rewrite: ld(&self.written[Written::TailRewrite as usize]),
                prepare: ld(&self.written[Written::Prepare as usize]),
                seal: ld(&self.written[Written::Seal as usize]),
                device: ld(&self.device_bytes),
            },
            write_calls: ld(&self.write_calls),
            buffer_full_writes: ld(&self.buffer_full_writes),
            reserve_fdatasyncs: ld(&self.reserve_fdatasyncs),
            read_ahead_helpers: ld(&self.read_ahead_helpers),
            write_time: Duration::from_nanos(ld(&self.write_ns)),
            fdatasyncs: ld(&self.fdatasyncs),
            fdatasync_time: Duration::from_nanos(ld(&self.fdatasync_ns)),
            directory_fsyncs: ld(&self.dir_fsyncs),
            syncs: ld(&self.syncs),
            synced_records: ld(&self.synced_records),
            sync_time_us_total: ld(&self.sync_us_total),
            sync_time_us_max: ld(&self.sync_us_max),
            fdatasync_latency_ns: self.fdatasync_latency.snapshot(),
            commit_wait_ns: self.commit_wait.snapshot(),
            sync_batch_records: self.batch_records.snapshot(),
            segments_sealed: live.sealed as u64,
            segments_live: live.sealed as u64 + live.active as u64,
            spare_files: (ld(&self.spares_at_open) + ld(&self.spares_kept)).saturating_sub(recycled),
            segments_created: ld(&self.segments_created),
            segments_recycled: recycled,
            rolls: ld(&self.rolls),
            segments_truncated: ld(&self.segments_truncated),
            bytes_reclaimed: ld(&self.bytes_reclaimed),
            poisoned: self.poisoned.load(Relaxed),
            direct_io: self.direct_io.load(Relaxed),
            readers: live.readers,
            followers,
            durable_lsn: live.durable_lsn,
            slowest_follower_lag: slowest.map_or(0, |next| (live.durable_lsn + 1).saturating_sub(next)),
        };
        #[cfg(feature = "metrics")]
        if let Some(m) = self.m() {
            m.set_gauges(&snap);
        }
        snap
    }
}

impl crate::view::Shared {
    /// The stats of this WAL, with what the readers' view holds now.
    pub(crate) fn stats_snapshot(&self) -> StatsSnapshot {
        let view = self.snapshot();
        let live = Live {
            sealed: view.sealed().len(),
            active: view.active().is_some(),
            readers: self.readers.load(Relaxed),
            durable_lsn: crate::reader::durable_lsn(&view),
        };
        self.stats.snapshot(live)
    }
}

/// A follower's read failed: `LsnTruncated` means it fell behind the
/// oldest retained segment and lost its place (an operator must know).
pub(crate) fn follower_failed(e: &crate::WalError) {
    if let crate::WalError::LsnTruncated { requested, oldest } = e {
        tracing::warn!(requested, oldest, "follower fell behind truncation: LsnTruncated");
    }
}

/// A cheap, cloneable handle that reads a WAL's stats from any thread
/// without the writer's lock and without counting as a reader (the writer
/// keeps no buffers for it). It outlives the WAL: figures then stay as they
/// were when it closed.
#[derive(Clone)]
pub struct StatsHandle(pub(crate) Arc<crate::view::Shared>);

impl StatsHandle {
    /// Every figure now.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.0.stats_snapshot()
    }

    /// Whether the writer is poisoned (I3).
    pub fn is_poisoned(&self) -> bool {
        self.0.stats.is_poisoned()
    }
}

impl std::fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsHandle").field("dir", &self.0.dir).finish()
    }
}

/// What the readers' view says at a snapshot (read under its RwLock, never
/// the writer's lock).
pub(crate) struct Live {
    pub sealed: usize,
    pub active: bool,
    pub readers: usize,
    pub durable_lsn: u64,
}

/// Bytes handed to the device, by purpose. `device` is measured at the
/// storage layer: once no write is in flight it equals the sum of the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BytesWritten {
    /// Record bytes written for the first time.
    pub data: u64,
    /// Bytes written again: a sync's partly filled tail block (DESIGN I4)
    /// and its zero padding.
    pub tail_rewrite: u64,
    /// Segment header blocks and zero-filled space prepared ahead.
    pub prepare: u64,
    /// Seal blocks.
    pub seal: u64,
    /// Everything the device was asked to write (completed writes).
    pub device: u64,
}

/// Every figure of an open WAL at one moment, read without the writer's
/// lock (each figure is consistent on its own; together they may be a few
/// events apart). Counters count since open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Records appended.
    pub records_appended: u64,
    /// Payload bytes appended.
    pub payload_bytes_appended: u64,
    /// Bytes written to the device, by purpose (write amplification).
    pub bytes_written: BytesWritten,
    /// Write calls to the device (data, headers, zero-fill, seals).
    pub write_calls: u64,
    /// Writes of a full buffer that no sync asked for (`wal_buffers_full`).
    pub buffer_full_writes: u64,
    /// Time spent in device writes (the write helper's included).
    pub write_time: Duration,
    /// fdatasync calls on segment files (syncs, preparation, seals, recovery).
    pub fdatasyncs: u64,
    /// Of those, fdatasyncs issued only to make prepared space durable
    /// before data reached it: no sync did in time (DESIGN I26).
    pub reserve_fdatasyncs: u64,
    /// Time spent in those fdatasyncs.
    pub fdatasync_time: Duration,
    /// Helper threads started to read sealed segments ahead of an owned
    /// replay (DESIGN I27).
    pub read_ahead_helpers: u64,
    /// fsyncs of the WAL directory (creates, renames, deletions).
    pub directory_fsyncs: u64,
    /// Syncs that made records durable (explicit, group commit, seals).
    pub syncs: u64,
    /// Records those syncs made durable.
    pub synced_records: u64,
    /// Sum of sync latencies (write + fdatasync), microseconds.
    pub sync_time_us_total: u64,
    /// Slowest sync, microseconds.
    pub sync_time_us_max: u64,
    /// Latency of each fdatasync, nanoseconds.
    pub fdatasync_latency_ns: HistogramSnapshot,
    /// Time a `WalHandle` committer waited from its append to durability,
    /// nanoseconds.
    pub commit_wait_ns: HistogramSnapshot,
    /// Records made durable per sync (group-commit batch size).
    pub sync_batch_records: HistogramSnapshot,
    /// Segments in the log: sealed ones plus the active one.
    pub segments_live: u64,
    /// Sealed segments in the log.
    pub segments_sealed: u64,
    /// Spare files kept for new segments (I17).
    pub spare_files: u64,
    /// Segments started since open.
    pub segments_created: u64,
    /// Of those, started in a recycled spare file.
    pub segments_recycled: u64,
    /// Rolls: the active segment sealed and the next one started.
    pub rolls: u64,
    /// Sealed segments removed by `truncate_before`.
    pub segments_truncated: u64,
    /// Their bytes.
    pub bytes_reclaimed: u64,
    /// Whether the writer is poisoned (I3): every append and sync fails
    /// until the WAL is reopened.
    pub poisoned: bool,
    /// Whether the active segment is written with O_DIRECT (false: the file
    /// system refused it, or it was not asked for).
    pub direct_io: bool,
    /// Live `WalReader`s (cursors included).
    pub readers: usize,
    /// Live followers: `WalCursor`s.
    pub followers: usize,
    /// LSN of the last durable record.
    pub durable_lsn: u64,
    /// How many durable LSNs the slowest follower has not read yet (0 with
    /// no follower).
    pub slowest_follower_lag: u64,
}

impl StatsSnapshot {
    /// The summary counters of [`crate::WalStats`].
    pub fn wal_stats(&self) -> crate::WalStats {
        crate::WalStats {
            appends: self.records_appended,
            appended_bytes: self.payload_bytes_appended,
            syncs: self.syncs,
            synced_records: self.synced_records,
            records_per_sync: if self.syncs == 0 { 0.0 } else { self.synced_records as f64 / self.syncs as f64 },
            sync_time_us_total: self.sync_time_us_total,
            sync_time_us_max: self.sync_time_us_max,
            segments_created: self.segments_created,
            segments_recycled: self.segments_recycled,
            direct_io: self.direct_io,
        }
    }
}

/// The WAL's storage, counting and timing every write and fdatasync.
#[derive(Debug)]
pub(crate) struct Metered {
    inner: Arc<dyn Storage>,
    stats: Arc<Stats>,
}

impl Metered {
    pub fn wrap(inner: Arc<dyn Storage>, stats: &Arc<Stats>) -> Arc<dyn Storage> {
        Arc::new(Metered { inner, stats: stats.clone() })
    }
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").finish_non_exhaustive()
    }
}

struct MeteredFile {
    inner: Box<dyn StorageFile>,
    stats: Arc<Stats>,
}

impl StorageFile for MeteredFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let t = Instant::now();
        let r = self.inner.write_all_at(buf, offset);
        if r.is_ok() {
            self.stats.device_write(buf.len(), t.elapsed());
        }
        r
    }
    fn sync_data(&self) -> std::io::Result<()> {
        let t = Instant::now();
        let r = self.inner.sync_data();
        if r.is_ok() {
            self.stats.device_fdatasync(t.elapsed());
        }
        r
    }
    fn allocate(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.allocate(offset, len)
    }
    fn stat(&self) -> std::io::Result<Option<crate::io::FileStat>> {
        self.inner.stat()
    }
}

impl Storage for Metered {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn link_count(&self, path: &Path) -> std::io::Result<Option<u64>> {
        self.inner.link_count(path)
    }
    fn dir_identity(&self, dir: &Path) -> std::io::Result<Option<(u64, u64)>> {
        self.inner.dir_identity(dir)
    }
    fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<crate::io::DirEntry>> {
        self.inner.list_dir(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn StorageFile>> {
        let inner = self.inner.open(path, mode)?;
        Ok(Box::new(MeteredFile { inner, stats: self.stats.clone() }))
    }
    fn read_image(&self, path: &Path) -> std::io::Result<FileImage> {
        self.inner.read_image(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize, direct: bool) -> std::io::Result<Vec<u8>> {
        self.inner.read_range(path, offset, len, direct)
    }
    fn file_len(&self, path: &Path) -> std::io::Result<u64> {
        self.inner.file_len(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let r = self.inner.sync_dir(dir);
        if r.is_ok() {
            self.stats.device_dir_fsync();
        }
        r
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<Box<dyn Send + Sync>> {
        self.inner.lock_dir(dir)
    }
}
