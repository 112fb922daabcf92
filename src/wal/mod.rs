//! `SegmentedWal`: a directory of segments, one of them active.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tracing::{error, info, warn};

use crate::crypto::{KeyRing, SegmentCipher};
use crate::error::{Result, WalError};
use crate::format::{self, Cipher, MAX_PAYLOAD_SIZE, RecordFields, SegmentHeader};
use crate::io::{OsStorage, Storage};
use crate::recovery;
use crate::segment;
use crate::spares::SparePool;
use crate::view::{SealedSeg, Shared};
use crate::writer::{self, ActiveSegment, NewSegment};

mod config;
mod encryption;
mod replay;
mod truncate;

pub use config::{
    DEFAULT_ALIGNMENT, DEFAULT_PREPARE_CHUNK, DEFAULT_RECYCLE_SEGMENTS, DEFAULT_SEGMENT_TARGET_SIZE,
    DEFAULT_WRITE_BUFFER_SIZE, RecoveryMode, RecoveryReport, SegmentedWalConfig, SetAside, TruncateResult, WalStats,
    WalWriterConfig,
};

/// Refuses writer settings no segment can be written with.
fn check_config(cfg: &WalWriterConfig) -> Result<()> {
    if !format::valid_block_size(cfg.alignment as u64) {
        return Err(WalError::InvalidConfig(format!(
            "alignment {} is not a power of two between 512 and 65536",
            cfg.alignment
        )));
    }
    if cfg.write_buffer_size == 0 {
        return Err(WalError::InvalidConfig("write_buffer_size is zero".into()));
    }
    Ok(())
}

/// Creates `dir` if missing and locks it for this writer (I25).
/// The held lock of a WAL directory, and the directory's (device, inode).
type DirLock = (Box<dyn Send + Sync>, Option<(u64, u64)>);

fn lock_dir(storage: &dyn Storage, dir: &Path) -> Result<DirLock> {
    storage.create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
    let dir_id = storage.dir_identity(dir).map_err(|e| WalError::io("stat", dir, e))?;
    let guard = storage.lock_dir(dir).map_err(|e| {
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            WalError::Locked { path: dir.to_path_buf() }
        } else {
            WalError::io("lock", dir, e)
        }
    })?;
    // I25: the path named the same directory before and after locking.
    if storage.dir_identity(dir).map_err(|e| WalError::io("stat", dir, e))? != dir_id {
        return Err(WalError::DirectoryMoved { path: dir.to_path_buf() });
    }
    Ok((guard, dir_id))
}

/// A copy of the failure `e` that poisons the writer, kept as the first
/// failure while `e` itself goes to the caller (`WalError` is not `Clone`:
/// `io::Error` is not). Only I/O failures poison (I3), and a directory
/// that is no longer the one locked (I25).
fn kept_copy(e: &WalError, dir: &Path) -> WalError {
    let copy = |source: &std::io::Error| match source.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(source.kind(), source.to_string()),
    };
    match e {
        WalError::Io { op, path, source } => WalError::Io { op, path: path.clone(), source: copy(source) },
        WalError::NoSpace { op, path, source } => WalError::NoSpace { op, path: path.clone(), source: copy(source) },
        WalError::DirectoryMoved { path } => WalError::DirectoryMoved { path: path.clone() },
        other => {
            debug_assert!(false, "only I/O failures poison the writer, not {other:?}");
            WalError::Io { op: "write", path: dir.to_path_buf(), source: std::io::Error::other(other.to_string()) }
        }
    }
}

/// A flush between its write and its fdatasync (group commit).
pub(crate) struct Flush {
    pub file: Arc<dyn crate::io::StorageFile>,
    pub target: writer::FlushTarget,
    pub path: PathBuf,
}

/// A segmented write-ahead log. See the crate documentation for an example.
///
/// `SegmentedWal` is `Send`; share it between threads as `Mutex<SegmentedWal>`.
pub struct SegmentedWal {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    target: u64,
    cfg: WalWriterConfig,
    wal_id: u128,
    /// What readers see: sealed segments, the active watermark, the ring.
    shared: Arc<Shared>,
    /// None only after a roll whose new segment could not be created yet.
    active: Option<ActiveSegment>,
    next_lsn: u64,
    buf: writer::Buffers,
    scratch: Vec<u8>,
    /// Epoch size the last sealed segment saw, for preparing the next.
    epoch_hint: u64,
    /// I3: the first failed write or fdatasync; every later append and sync fails with it.
    poisoned: Option<Arc<WalError>>,
    /// Keys for encrypting new segments and decrypting old ones.
    /// Shared with the readers' view: one copy of the key material.
    ring: Option<Arc<KeyRing>>,
    /// I11: the key new records must be encrypted with, from the segments on
    /// disk (`crypto::encryption_state`) or the ring; appends are refused
    /// without a ring.
    required_key: Option<u32>,
    /// I11: encryption was turned off explicitly after encrypted segments:
    /// new plain segments carry the header flag `encryption_off`, with a MAC.
    encryption_off: Option<crate::crypto::TurnedOff>,
    /// I11, I24: a set-aside segment's cipher is unknown: a ring (any key)
    /// is required until one is set or encryption is turned off explicitly.
    cipher_unknown: bool,
    direct_io: bool,
    stats: Arc<crate::stats::Stats>,
    report: RecoveryReport,
    /// Spare files for new segments (I17, I19); filled by `truncate_before`.
    spares: std::sync::Mutex<SparePool>,
    _lock: Box<dyn Send + Sync>,
    /// I25: (device, inode) of the directory locked; None where the storage
    /// has no such identity.
    dir_id: Option<(u64, u64)>,
}

impl SegmentedWal {
    /// Opens (or creates) the WAL in `config.wal_dir`, recovering after a crash.
    pub fn open(config: SegmentedWalConfig) -> Result<Self> {
        Self::open_with_storage(config, Arc::new(OsStorage))
    }

    /// Opens the WAL on a custom `Storage` (used by the crash simulator and
    /// fault-injection tests; hidden with the `io` module, which is not an API).
    #[doc(hidden)]
    pub fn open_with_storage(config: SegmentedWalConfig, storage: Arc<dyn Storage>) -> Result<Self> {
        let t0 = Instant::now();
        let _span = tracing::info_span!("directwal_open", dir = %config.wal_dir.display()).entered();
        let stats = crate::stats::Stats::for_wal(&config.wal_dir);
        let storage = crate::stats::Metered::wrap(storage, &stats);
        let cfg = config.writer_config.clone();
        check_config(&cfg)?;
        let dir = config.wal_dir.clone();
        let (lock_guard, dir_id) = lock_dir(&*storage, &dir)?;
        let rec = recovery::recover(&*storage, &dir, &cfg, &stats)?;
        stats.spares_at_open(rec.spares.len());
        let mut report = rec.report;

        let shared_storage = Arc::clone(&storage);
        let mut wal = SegmentedWal {
            // The header and seal blocks of a new segment are staged in the
            // buffer too, so it holds at least two blocks.
            buf: writer::Buffers::new(cfg.write_buffer_size.max(2 * cfg.alignment), cfg.alignment),
            dir,
            storage,
            target: config.segment_target_size.clamp(1, format::MAX_SEGMENT_TARGET_SIZE),
            wal_id: rec.wal_id,
            shared: Arc::new(Shared::new(config.wal_dir.clone(), shared_storage, false, stats.clone())),
            active: None,
            next_lsn: rec.next_lsn,
            scratch: Vec::new(),
            epoch_hint: 0,
            poisoned: None,
            ring: None,
            required_key: rec.required_key,
            encryption_off: None, // I11: open proves no downgrade (it has no ring)
            cipher_unknown: rec.cipher_unknown,
            direct_io: cfg.use_direct_io,
            stats,
            report: RecoveryReport::default(),
            spares: std::sync::Mutex::new(SparePool::found(rec.spares)),
            cfg,
            _lock: lock_guard,
            dir_id,
        };
        wal.shared.set_sealed(rec.sealed);
        // I19: spares of unknown past are not kept while encryption is required.
        report.spare_files -= wal.evict_spares()?;
        // I6: never append into a segment of an earlier process: start a
        // fresh one (replacing an empty newest segment of the same name).
        // I11: an encrypted WAL gets its next segment once a ring is set;
        // I20: an exhausted one never.
        if wal.write_refusal().is_none() {
            wal.start_segment()?;
        }
        if rec.replace_newest {
            info!(segment = %segment::segment_file_name(wal.next_lsn), "replaced empty newest segment");
        }
        report.open_time = t0.elapsed();
        wal.report = report;
        wal.log_opened();
        Ok(wal)
    }

    fn log_opened(&self) {
        let report = &self.report;
        info!(
            dir = %self.dir.display(),
            segments = report.segments,
            recovered_records = report.recovered_records,
            torn_bytes_cut = report.torn_tail.as_ref().map_or(0, |t| t.bytes_cut),
            next_lsn = self.next_lsn,
            direct_io = self.direct_io,
            open_ms = report.open_time.as_secs_f64() * 1e3,
            "WAL opened"
        );
    }

    /// Creates the active segment at `next_lsn`, encrypted with the ring's
    /// active key when a ring is set.
    fn start_segment(&mut self) -> Result<()> {
        debug_assert!(self.active.is_none());
        // I11, I20: the one gate every path that creates a segment passes.
        if let Some(e) = self.write_refusal() {
            return Err(e);
        }
        if let Err(e) = self.check_dir_identity() {
            return Err(self.poison(e));
        }
        let salt = recovery::random_u128();
        let cipher = self.ring.as_ref().map(|r| SegmentCipher::new(r.current(), self.wal_id, salt));
        // I19: an encrypted segment starts only in a plain-free file; I17:
        // the spare is checked and opened before the header says `recycled`.
        let pool = self.spares.get_mut().unwrap_or_else(|p| p.into_inner());
        let taken = pool.take_open(&*self.storage, cipher.is_some(), self.cfg.use_direct_io);
        let (spare, spare_plain_free) = taken.map_or((None, None), |(s, plain_free)| (Some(s), Some(plain_free)));
        let recycled = spare.is_some();
        let mut header = SegmentHeader {
            version: 0,
            block_size: u32::try_from(self.cfg.alignment).expect("alignment is at most 65536 (check_config)"),
            wal_id: self.wal_id,
            salt,
            first_lsn: self.next_lsn,
            cipher: cipher.as_ref().map_or(Cipher::None, |c| c.descriptor()),
            created_ms: writer::now_ms(),
            recycled,
            // I11: a plain segment after an explicit disable_encryption says so.
            encryption_off: cipher.is_none() && self.encryption_off.is_some(),
            mac: None,
        };
        header.version = header.version_needed();
        self.authenticate(&mut header)?;
        let started_header = header.clone();
        let prepare_chunk = self.cfg.prepare_chunk_size.min(self.target).max(self.cfg.alignment as u64);
        let seg = ActiveSegment::create(
            NewSegment {
                storage: &*self.storage,
                dir: &self.dir,
                header,
                cipher,
                readers: self.shared.readers.clone(),
                direct: self.cfg.use_direct_io,
                prepare_bytes: prepare_chunk,
                prepare_chunk,
                target: self.target,
                epoch_hint: self.epoch_hint,
                spare,
                stats: self.stats.clone(),
            },
            &mut self.buf,
        )?;
        self.spares.get_mut().unwrap_or_else(|p| p.into_inner()).started(&started_header, spare_plain_free);
        if self.cfg.use_direct_io && !seg.direct() {
            if self.cfg.require_direct_io {
                let path = seg.path.clone();
                drop(seg);
                let _ = self.storage.remove_file(&path);
                return Err(WalError::DirectIoUnsupported { path });
            }
            if self.direct_io {
                warn!(dir = %self.dir.display(), "file system refuses O_DIRECT; using buffered I/O + fdatasync");
            }
        }
        self.direct_io = seg.direct();
        let view = seg.view.clone();
        self.shared.set_active(view, seg.direct());
        self.stats.segment_started(recycled, self.direct_io);
        self.active = Some(seg);
        Ok(())
    }

    /// I25: before a file is created or deleted at `self.dir`, the path
    /// must still name the directory this writer locked (a directory renamed
    /// away takes its lock with it; another WAL may live at the path now).
    pub(super) fn check_dir_identity(&self) -> Result<()> {
        let Some(locked) = self.dir_id else { return Ok(()) };
        match self.storage.dir_identity(&self.dir) {
            Ok(Some(now)) if now == locked => Ok(()),
            Ok(_) => Err(WalError::DirectoryMoved { path: self.dir.clone() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(WalError::DirectoryMoved { path: self.dir.clone() })
            }
            Err(e) => Err(WalError::io("stat", &self.dir, e)),
        }
    }

    fn check_poison(&self) -> Result<()> {
        match &self.poisoned {
            Some(first) => Err(WalError::Poisoned { first_failure: Arc::clone(first) }),
            None => Ok(()),
        }
    }

    /// I3: after a failed write or fdatasync nothing more is accepted.
    fn poison(&mut self, e: WalError) -> WalError {
        if self.poisoned.is_none() {
            error!(error = %e, "WAL poisoned: every later append and sync fails until reopen");
            self.stats.poisoned();
            self.poisoned = Some(Arc::new(kept_copy(&e, &self.dir)));
        }
        e
    }

    /// Appends a record; returns its LSN. The record is durable once
    /// [`sync`](Self::sync) returns Ok. On error no LSN is consumed.
    ///
    /// `record_type`, `tenant_id` and `vshard_id` are stored as given;
    /// [`RecordType`](crate::RecordType) names a few well-known types.
    ///
    /// ```
    /// use directwal::{RecordType, SegmentedWal, SegmentedWalConfig};
    /// # let tmp = tempfile::tempdir()?;
    /// let mut wal = SegmentedWal::open(SegmentedWalConfig::new(tmp.path().into()))?;
    /// let first = wal.append(RecordType::Put as u16, 7, 0, b"k=v")?;
    /// let second = wal.append(0x4001, 7, 3, b"an application-defined record")?;
    /// assert_eq!((first, second), (1, 2));
    /// assert_eq!(wal.durable_lsn(), 0); // appended, not yet durable
    /// wal.sync()?;
    /// assert_eq!(wal.durable_lsn(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(&mut self, record_type: u16, tenant_id: u32, vshard_id: u16, payload: &[u8]) -> Result<u64> {
        self.check_poison()?;
        if payload.len() > MAX_PAYLOAD_SIZE {
            return Err(WalError::PayloadTooLarge { size: payload.len(), max: MAX_PAYLOAD_SIZE });
        }
        // I11: fail closed; I20: never wrap. Nothing is written.
        if let Some(e) = self.write_refusal() {
            return Err(e);
        }
        if let Some(active) = &self.active
            && active.records > 0
            && active.data_bytes() + active.record_size(payload.len()) as u64 > self.target
        {
            self.roll_segment()?;
        }
        if self.active.is_none() {
            self.start_segment()?;
        }
        let active = self.active.as_mut().expect("active segment");
        let size = active.record_size(payload.len()) as u64;
        // I8: space is reserved before the LSN is taken; a failure (ENOSPC)
        // leaves the WAL as it was, unless it reports a failed background
        // data write (I16), which poisons like any failed data write (I3).
        if let Err(e) = active.ensure_space(size) {
            return Err(if active.write_failed() { self.poison(e) } else { e });
        }
        let lsn = self.next_lsn;
        let fields =
            RecordFields { lsn, epoch_start: active.epoch_start(), tenant_id, record_type, vshard_id, flags: 0 };
        if let Err(e) = active.append(&mut self.buf, &mut self.scratch, fields, payload) {
            return Err(self.poison(e));
        }
        self.next_lsn += 1;
        self.stats.appended(payload.len());
        Ok(lsn)
    }

    /// Makes every record appended so far durable (write + fdatasync).
    pub fn sync(&mut self) -> Result<()> {
        let started = Instant::now();
        let _span = tracing::debug_span!("directwal_sync", next_lsn = self.next_lsn).entered();
        let Some(flush) = self.begin_flush()? else { return Ok(()) };
        let synced = flush.file.sync_data();
        self.finish_flush(flush, synced, started)
    }

    /// First half of a sync, under the writer's lock: writes what was
    /// appended (I4). `None` when everything appended is already durable.
    pub(crate) fn begin_flush(&mut self) -> Result<Option<Flush>> {
        self.check_poison()?;
        let Some(active) = self.active.as_mut() else { return Ok(None) };
        match active.begin_flush(&mut self.buf) {
            Ok(Some(target)) => Ok(Some(Flush { file: active.file(), target, path: active.path.clone() })),
            Ok(None) => Ok(None),
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Second half, under the lock again after `flush.file`'s fdatasync
    /// (issued without the lock) returned `synced`. A failure poisons (I3).
    pub(crate) fn finish_flush(&mut self, flush: Flush, synced: std::io::Result<()>, started: Instant) -> Result<()> {
        // Rolls wait for flushes in flight, so the flushed segment is still
        // active; if not, nothing can be claimed durable.
        let Some(active) = self.active.as_mut().filter(|a| a.path == flush.path) else {
            let e = match synced {
                Err(e) => WalError::io("fdatasync", &flush.path, e),
                Ok(()) => WalError::io(
                    "fdatasync",
                    &flush.path,
                    std::io::Error::other("the segment was replaced during its flush"),
                ),
            };
            return Err(self.poison(e));
        };
        match active.finish_flush(flush.target, synced) {
            Ok(n) => {
                self.count_sync(n, started);
                Ok(())
            }
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Stats of a sync that made `n` records durable (none: not counted).
    fn count_sync(&mut self, n: u64, started: Instant) {
        if n > 0 {
            self.stats.synced(n, started.elapsed());
        }
    }

    /// Whether appending `len` payload bytes would write to a file or roll
    /// the segment: such an append must not run while a flush's fdatasync is
    /// in flight (I12: no write overtakes an unsynced epoch).
    pub(crate) fn append_writes(&self, len: usize) -> bool {
        match &self.active {
            None => true,
            Some(a) => {
                (a.records > 0 && a.data_bytes() + a.record_size(len) as u64 > self.target)
                    || a.append_writes(self.buf.len(), len)
            }
        }
    }

    /// Fails when the writer is poisoned.
    pub(crate) fn ensure_healthy(&self) -> Result<()> {
        self.check_poison()
    }

    /// Seals the active segment and starts the next one. A no-op when the
    /// active segment holds no record. Refused, before anything is sealed,
    /// with `EncryptionRequired` while the WAL needs a ring it lacks (I11)
    /// and with `LsnExhausted` once every LSN is taken (I20).
    pub fn roll_segment(&mut self) -> Result<()> {
        self.check_poison()?;
        let _span = tracing::info_span!("directwal_roll", next_lsn = self.next_lsn).entered();
        // I11, I20: refused before anything is sealed (no segment could follow).
        if let Some(e) = self.write_refusal() {
            return Err(e);
        }
        if let Some(active) = self.active.as_mut() {
            if active.records == 0 {
                return Ok(());
            }
            let (started, durable_before) = (Instant::now(), active.durable_records);
            self.epoch_hint = active.epoch_hint();
            let seal = match active.seal(&mut self.buf) {
                Ok(seal) => seal,
                Err(e) => return Err(self.poison(e)),
            };
            // The seal's sync counts like any other.
            self.count_sync(seal.records - durable_before, started);
            self.stats.rolled();
            let active = self.active.take().expect("active segment");
            info!(segment = %active.name, last_lsn = seal.last_lsn, records = seal.records, "sealed segment");
            let index = active.view.index_snapshot();
            let sealed = SealedSeg::new(active.name, active.path, active.header, seal, Some(index));
            self.shared.seal_active(sealed);
        }
        // A failure here (ENOSPC) leaves no active segment; the next append retries.
        self.start_segment()
    }

    /// The LSN the next append will get.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// First LSN of the active segment.
    pub fn active_segment_first_lsn(&self) -> u64 {
        self.active.as_ref().map_or(self.next_lsn, |a| a.header.first_lsn)
    }

    /// The WAL directory.
    pub fn wal_dir(&self) -> &Path {
        &self.dir
    }

    /// Whether writes bypass the page cache (false after falling back to buffered I/O).
    pub fn direct_io_active(&self) -> bool {
        self.direct_io
    }

    /// What the last open recovered.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        self.stats_snapshot().wal_stats()
    }

    /// Every operator-facing figure (docs/OBSERVABILITY.md), read without
    /// blocking the writer.
    pub fn stats_snapshot(&self) -> crate::StatsSnapshot {
        self.shared.stats_snapshot()
    }

    /// Whether a failed write or fdatasync poisoned the writer (I3).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// A handle reading these stats from any thread (a metrics scraper).
    pub fn stats_handle(&self) -> crate::StatsHandle {
        crate::StatsHandle(self.shared.clone())
    }

    /// What readers and the lock-free stats share (for `WalHandle`).
    pub(crate) fn shared_state(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Random id of this WAL, shared by all of its segments.
    pub fn wal_id(&self) -> u128 {
        self.wal_id
    }

    /// LSN of the last durable record (0 when there is none).
    pub fn durable_lsn(&self) -> u64 {
        match &self.active {
            Some(a) => a.durable_last_lsn,
            None => self.next_lsn - 1,
        }
    }

    /// Drops the WAL without the final sync that `Drop` performs, as a process
    /// crash would. Records not yet synced may be lost. For tests.
    #[doc(hidden)]
    pub fn simulate_crash(mut self) {
        self.poisoned = Some(Arc::new(WalError::Closed));
    }
}

impl Drop for SegmentedWal {
    /// Best effort: a WAL dropped without a failure syncs what was appended.
    fn drop(&mut self) {
        if self.poisoned.is_none()
            && let Err(e) = self.sync()
        {
            warn!(error = %e, "final sync on drop failed");
        }
    }
}

impl std::fmt::Debug for SegmentedWal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentedWal")
            .field("dir", &self.dir)
            .field("next_lsn", &self.next_lsn)
            .field("active_segment_first_lsn", &self.active_segment_first_lsn())
            .field("direct_io", &self.direct_io)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// I12 is asserted where the writer issues a data write: a write while
    /// a flush's fdatasync is in flight panics instead of reaching the disk.
    #[test]
    #[should_panic(expected = "I12")]
    fn a_data_write_during_an_fdatasync_in_flight_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let config = SegmentedWalConfig::for_testing(tmp.path().into());
        let mut wal = SegmentedWal::open(config).unwrap();
        wal.append(1, 0, 0, b"first").unwrap();
        let flush = wal.begin_flush().unwrap().expect("something to flush");
        let big = vec![7; wal.buf.len()];
        assert!(wal.append_writes(big.len()));
        // The group-commit handle would wait here (I12); the writer asserts it.
        let _ = wal.append(1, 0, 0, &big);
        drop(flush);
    }
}
