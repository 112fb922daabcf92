//! `SegmentedWal`: a directory of segments, one of them active.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::catalog::{self, Remedy};
use crate::crypto::{KeyRing, SegmentCipher};
use crate::error::{Result, WalError};
use crate::format::{self, Cipher, MAX_PAYLOAD_SIZE, RecordFields, Seal, SegmentHeader};
use crate::io::{OsStorage, Storage};
use crate::reader::{SealedSeg, Shared, View, WalReader};
use crate::record::{RecordRef, WalRecord};
use crate::recovery::{self, TornTail};
use crate::segment::{self, SegmentMeta};
use crate::spares::{self, SparePool};
use crate::writer::{self, ActiveSegment, NewSegment};

mod encryption;

/// Default `segment_target_size`: 64 MiB.
pub const DEFAULT_SEGMENT_TARGET_SIZE: u64 = 64 << 20;
/// Default size of the aligned write buffer: 4 MiB.
pub const DEFAULT_WRITE_BUFFER_SIZE: usize = 4194304;
/// Default I/O alignment (block size): 4 KiB.
pub const DEFAULT_ALIGNMENT: usize = 4096;
/// Default amount of segment space zero-filled ahead of the data: 16 MiB.
pub const DEFAULT_PREPARE_CHUNK: u64 = 16 << 20;
/// Default number of truncated segment files kept for reuse: 2.
pub const DEFAULT_RECYCLE_SEGMENTS: usize = 2;

/// What open does with damage to durable data in the newest segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open with [`WalError::Corruption`] (default).
    #[default]
    Strict,
    /// Cut the log at the damage, log and report what was dropped
    /// ([`SegmentedWal::recovery_report`]), and continue.
    Tolerant,
}

/// Writer settings. `Default` gives O_DIRECT with a 4 MiB buffer.
#[derive(Debug, Clone)]
pub struct WalWriterConfig {
    /// Size of the aligned write buffer (rounded up to a multiple of
    /// `alignment`, and to at least two blocks). Records
    /// accumulate here between syncs; a full buffer is written without sync.
    pub write_buffer_size: usize,
    /// I/O alignment and block size: a power of two from 512 to 65536.
    pub alignment: usize,
    /// Use O_DIRECT. Falls back to buffered I/O + fdatasync with a warning
    /// where the file system refuses it, unless `require_direct_io` is set.
    pub use_direct_io: bool,
    /// Turn the O_DIRECT fallback into [`WalError::DirectIoUnsupported`].
    pub require_direct_io: bool,
    /// How open treats damage to durable data.
    pub recovery_mode: RecoveryMode,
    /// Bytes of segment space zero-filled ahead of the data at a time.
    pub prepare_chunk_size: u64,
    /// Segment files `truncate_before` keeps (as `spare-*` files) for new
    /// segments to reuse instead of deleting them: writes into written space
    /// need no allocation or extent change at fdatasync (F5, DESIGN I17).
    /// A file is kept only when no reader of this process still maps it.
    /// 0 deletes every truncated segment. Spares are not part of the log and
    /// not counted by `list_segments`/`total_size_bytes`.
    pub recycle_segments: usize,
}

impl Default for WalWriterConfig {
    fn default() -> Self {
        WalWriterConfig {
            write_buffer_size: DEFAULT_WRITE_BUFFER_SIZE,
            alignment: DEFAULT_ALIGNMENT,
            use_direct_io: true,
            require_direct_io: false,
            recovery_mode: RecoveryMode::Strict,
            prepare_chunk_size: DEFAULT_PREPARE_CHUNK,
            recycle_segments: DEFAULT_RECYCLE_SEGMENTS,
        }
    }
}

/// Configuration of a [`SegmentedWal`].
#[derive(Debug, Clone)]
pub struct SegmentedWalConfig {
    /// Directory holding the segments (created if missing).
    pub wal_dir: PathBuf,
    /// Soft size limit of a segment: a record that would cross it starts a
    /// new segment (a segment always takes at least one record).
    pub segment_target_size: u64,
    /// Writer settings.
    pub writer_config: WalWriterConfig,
}

impl SegmentedWalConfig {
    /// Defaults for `wal_dir`: 64 MiB segments, O_DIRECT.
    pub fn new(wal_dir: PathBuf) -> Self {
        SegmentedWalConfig {
            wal_dir,
            segment_target_size: DEFAULT_SEGMENT_TARGET_SIZE,
            writer_config: WalWriterConfig::default(),
        }
    }

    /// Like [`SegmentedWalConfig::new`] without O_DIRECT (fast on tmpfs in tests).
    pub fn for_testing(wal_dir: PathBuf) -> Self {
        let mut c = Self::new(wal_dir);
        c.writer_config.use_direct_io = false;
        c
    }
}

/// Result of [`SegmentedWal::truncate_before`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TruncateResult {
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Their total size in bytes.
    pub bytes_reclaimed: u64,
}

/// What open found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments found.
    pub segments: usize,
    /// Records in the newest segment that recovery kept.
    pub recovered_records: u64,
    /// A torn final write that was cut off.
    pub torn_tail: Option<TornTail>,
    /// Damage to durable data dropped in tolerant mode (as the error strict mode returns).
    pub dropped_corruption: Option<String>,
    /// Leftover temporary files deleted.
    pub temp_files_removed: usize,
    /// Spare files found and kept for reuse.
    pub spare_files: usize,
    /// Time open took.
    pub open_time: Duration,
    /// A damaged newest segment tolerant recovery renamed out of the log (I24).
    pub set_aside: Option<SetAside>,
}

/// A newest segment that tolerant recovery set aside (DESIGN I24): renamed,
/// never deleted; the log goes on at its first LSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The segment's file name.
    pub segment: String,
    /// Where the file is now.
    pub moved_to: PathBuf,
    /// Why it is not part of the log (the error strict mode returns).
    pub reason: String,
}

/// A flush between its write and its fdatasync (group commit).
pub(crate) struct Flush {
    pub file: Arc<dyn crate::io::StorageFile>,
    pub target: writer::FlushTarget,
    pub path: PathBuf,
}

/// Counters (SPEC §12).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalStats {
    /// Records appended since open.
    pub appends: u64,
    /// Payload bytes appended since open.
    pub appended_bytes: u64,
    /// Syncs that wrote and fdatasynced data.
    pub syncs: u64,
    /// Records made durable by those syncs.
    pub synced_records: u64,
    /// `synced_records / syncs`.
    pub records_per_sync: f64,
    /// Sum of sync latencies (write + fdatasync), microseconds.
    pub sync_time_us_total: u64,
    /// Slowest sync, microseconds.
    pub sync_time_us_max: u64,
    /// Segments started since open.
    pub segments_created: u64,
    /// Of those, segments started in a recycled file.
    pub segments_recycled: u64,
    /// Whether the active segment is written with O_DIRECT.
    pub direct_io: bool,
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
    /// Epoch size the last sealed segment saw, for preparing the next (F5).
    epoch_hint: u64,
    poisoned: Option<String>,
    /// Keys for encrypting new segments and decrypting old ones.
    /// Shared with the readers' view: one copy of the key material (E7).
    ring: Option<Arc<KeyRing>>,
    /// E6: the key new records must be encrypted with, from the segments on
    /// disk (`crypto::encryption_state`) or the ring; appends are refused
    /// without a ring.
    required_key: Option<u32>,
    /// I11: encryption was turned off explicitly after encrypted segments:
    /// new plain segments carry the header flag `encryption_off`.
    encryption_off: bool,
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

/// I2, I17, I21: deletes the WAL's own leftover temporary files
/// (never anything else) and spares beyond `keep`; returns the spares kept.
/// Runs only once the catalog's faults are settled: a refused open deletes nothing.
fn tidy(
    storage: &dyn Storage,
    dir: &Path,
    (temps, spares): (Vec<PathBuf>, Vec<PathBuf>),
    keep: usize,
    report: &mut RecoveryReport,
) -> Result<Vec<PathBuf>> {
    for t in &temps {
        // I2: a .tmp file never held an acknowledged record.
        storage.remove_file(t).map_err(|e| WalError::io("remove", t, e))?;
        report.temp_files_removed += 1;
    }
    // I17: spares hold nothing of the log; keep as many as configured,
    // of those we can trust (others are left alone: they may not be ours).
    let mut spares: Vec<PathBuf> = spares
        .into_iter()
        .filter(|p| match spares::distrust(storage, p) {
            None => true,
            Some(why) => {
                warn!(spare = %p.display(), why, "not a spare the WAL could have made: never reused, left in place");
                false
            }
        })
        .collect();
    let extra = spares.split_off(spares.len().min(keep));
    for t in &extra {
        storage.remove_file(t).map_err(|e| WalError::io("remove", t, e))?;
    }
    report.spare_files = spares.len();
    if !temps.is_empty() || !extra.is_empty() {
        storage.sync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))?;
    }
    Ok(spares)
}

fn random_u128() -> u128 {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source failed");
    u128::from_le_bytes(b)
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
        if !(512..=65536).contains(&cfg.alignment) || !cfg.alignment.is_power_of_two() {
            return Err(WalError::InvalidConfig(format!(
                "alignment {} is not a power of two between 512 and 65536",
                cfg.alignment
            )));
        }
        if cfg.write_buffer_size == 0 {
            return Err(WalError::InvalidConfig("write_buffer_size is zero".into()));
        }
        let dir = config.wal_dir.clone();
        storage.create_dir_all(&dir).map_err(|e| WalError::io("create directory", &dir, e))?;
        let dir_id = storage.dir_identity(&dir).map_err(|e| WalError::io("stat", &dir, e))?;
        let lock_guard = storage.lock_dir(&dir).map_err(|e| {
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                WalError::Locked { path: dir.clone() }
            } else {
                WalError::io("lock", &dir, e)
            }
        })?;

        // I25: the path named the same directory before and after locking.
        if storage.dir_identity(&dir).map_err(|e| WalError::io("stat", &dir, e))? != dir_id {
            return Err(WalError::DirectoryMoved { path: dir });
        }
        let cat = catalog::load(&*storage, &dir)?;
        let mut report = RecoveryReport { segments: cat.segments.len(), ..Default::default() };
        let found = (cat.temps.clone(), cat.spares.clone());

        let shared_storage = Arc::clone(&storage);
        let mut wal = SegmentedWal {
            // The header and seal blocks of a new segment are staged in the
            // buffer too, so it holds at least two blocks.
            buf: writer::Buffers::new(cfg.write_buffer_size.max(2 * cfg.alignment), cfg.alignment),
            dir,
            storage,
            target: config.segment_target_size.clamp(1, format::MAX_SEGMENT_TARGET_SIZE),
            wal_id: 0,
            shared: Arc::new(Shared {
                dir: config.wal_dir.clone(),
                storage: shared_storage,
                view: std::sync::RwLock::new(View::default()),
                readers: Arc::default(),
                foreign_writer: false,
                stats: stats.clone(),
            }),
            active: None,
            next_lsn: 1,
            scratch: Vec::new(),
            epoch_hint: 0,
            poisoned: None,
            ring: None,
            required_key: None,
            encryption_off: false,
            cipher_unknown: false,
            direct_io: cfg.use_direct_io,
            stats,
            report: RecoveryReport::default(),
            spares: std::sync::Mutex::new(SparePool::default()),
            cfg,
            _lock: lock_guard,
            dir_id,
        };
        let replace_newest = wal.recover(cat, &mut report)?;
        // Only now that the directory was accepted (its faults settled).
        let spares = tidy(&*wal.storage, &wal.dir, found, wal.cfg.recycle_segments, &mut report)?;
        wal.stats.spares_at_open(spares.len());
        *wal.spares.get_mut().unwrap_or_else(|p| p.into_inner()) = SparePool::found(spares);
        // I19: spares of unknown past are not kept while encryption is required.
        report.spare_files -= wal.evict_spares()?;
        // D7/I6: never append into a segment of an earlier process: start a
        // fresh one (replacing an empty newest segment of the same name).
        // I11 (E6): an encrypted WAL gets its next segment once a ring is set;
        // I20: an exhausted one never.
        if wal.write_refusal().is_none() {
            wal.start_segment()?;
        }
        if replace_newest {
            info!(segment = %segment::segment_file_name(wal.next_lsn), "replaced empty newest segment");
        }
        report.open_time = t0.elapsed();
        info!(
            dir = %wal.dir.display(),
            segments = report.segments,
            recovered_records = report.recovered_records,
            torn_bytes_cut = report.torn_tail.as_ref().map_or(0, |t| t.bytes_cut),
            next_lsn = wal.next_lsn,
            direct_io = wal.direct_io,
            open_ms = report.open_time.as_secs_f64() * 1e3,
            "WAL opened"
        );
        wal.report = report;
        Ok(wal)
    }

    /// Recovers the log the catalog describes and seals its newest segment
    /// (I5-I7). Returns true when the newest segment holds no record and
    /// will be replaced.
    fn recover(&mut self, mut cat: catalog::Catalog, report: &mut RecoveryReport) -> Result<bool> {
        let aside_lsn = self.settle_faults(&mut cat, report)?;
        self.wal_id = cat.wal_id.unwrap_or_else(random_u128);
        // I11: the key new records need (one rule over all headers).
        self.note_encryption_state(&cat);
        // I24: where the log goes on after a segment set aside.
        self.next_lsn = aside_lsn.unwrap_or(1);
        let count = cat.segments.len();
        let mut sealed = Vec::with_capacity(count);
        for (i, seg) in cat.segments.iter().enumerate() {
            if seg.vanished {
                let e = std::io::Error::new(std::io::ErrorKind::NotFound, "segment vanished while the WAL was opened");
                return Err(WalError::io("read", &seg.path, e));
            }
            let header = seg.header.clone().expect("a segment without faults has a header");
            let seal = match seg.seal {
                Some(seal) if i + 1 == count => {
                    // I6: the seal may have been written by a process whose
                    // fdatasync failed or never ran; make it durable before a
                    // newer segment builds on it.
                    let (file, _) = writer::open_file(&*self.storage, &seg.path, false, self.cfg.use_direct_io)?;
                    file.sync_data().map_err(|e| WalError::io("fdatasync", &seg.path, e))?;
                    seal
                }
                Some(seal) => seal,
                None => {
                    if let Some(e) = &seg.torn_seal {
                        warn!(segment = %seg.name, error = %e, "unreadable seal on the newest segment; rescanning it");
                    }
                    let seal = self.recover_newest(seg, report)?;
                    if seal.records == 0 {
                        self.next_lsn = self.next_lsn.max(seg.first_lsn);
                        self.sealed_set(sealed);
                        return Ok(true);
                    }
                    self.write_recovered_seal(seg, &header, &seal)?;
                    seal
                }
            };
            self.next_lsn = self.next_lsn.max(seal.last_lsn + 1);
            sealed.push(Arc::new(SealedSeg::new(seg.name.clone(), seg.path.clone(), header, seal, None)));
        }
        self.sealed_set(sealed);
        Ok(false)
    }

    /// Refuses the catalog's first fault, unless tolerant mode may open past
    /// it (I24): a newest segment that is no segment at all is set aside, a
    /// shortened one (I22) is kept with what it holds. Returns the first LSN
    /// of a segment set aside.
    fn settle_faults(&mut self, cat: &mut catalog::Catalog, report: &mut RecoveryReport) -> Result<Option<u64>> {
        let tolerant = self.cfg.recovery_mode == RecoveryMode::Tolerant;
        let mut aside_lsn = None;
        while let Some(fault) = cat.take_first_fault() {
            match fault.remedy {
                Remedy::SetAside if tolerant => {
                    let seg = cat.segments.pop().expect("the newest segment");
                    debug_assert_eq!(fault.segment, Some(cat.segments.len()));
                    let moved_to = self.set_aside(&seg, &cat.aside)?;
                    error!(segment = %seg.name, moved_to = %moved_to.display(), error = %fault.error,
                        "tolerant recovery: set the newest segment aside");
                    // I11: the set-aside file now counts for the encryption rule.
                    cat.aside.push(moved_to.clone());
                    // I24: the log goes on after the previous segment's seal,
                    // else at the set-aside name's LSN.
                    aside_lsn = Some(match cat.segments.last().and_then(|s| s.seal) {
                        Some(seal) => seal.last_lsn + 1,
                        None => seg.first_lsn,
                    });
                    report.set_aside = Some(SetAside { segment: seg.name, moved_to, reason: fault.error.to_string() });
                }
                Remedy::KeepShortened if tolerant => {
                    error!(error = %fault.error, "tolerant recovery: keeping what a shortened segment holds");
                    report.dropped_corruption = Some(fault.error.to_string());
                }
                _ => {
                    error!(error = %fault.error, "refusing to open the WAL");
                    return Err(fault.error);
                }
            }
        }
        Ok(aside_lsn)
    }

    /// I24: renames a damaged newest segment to a free `.aside-{k}` name,
    /// durably, never deleting it.
    fn set_aside(&self, seg: &catalog::Seg, taken: &[PathBuf]) -> Result<PathBuf> {
        let to = (1u32..)
            .map(|k| self.dir.join(segment::aside_file_name(&seg.name, k)))
            .find(|p| !taken.contains(p))
            .expect("a free name");
        self.storage.rename(&seg.path, &to).map_err(|e| WalError::io("rename", &seg.path, e))?;
        self.storage.sync_dir(&self.dir).map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
        Ok(to)
    }

    fn sealed_set(&mut self, sealed: Vec<Arc<SealedSeg>>) {
        self.shared.update(|v| v.sealed = Arc::new(sealed));
    }

    /// Scans the unsealed newest segment and decides where it ends (cutting a
    /// torn tail); returns the seal to write. A segment with no record is left
    /// for replacement and gets no seal.
    fn recover_newest(&mut self, seg: &catalog::Seg, report: &mut RecoveryReport) -> Result<Seal> {
        let outcome = match catalog::scan_newest(&*self.storage, seg) {
            // No mapping of the file may be alive while it is written with
            // O_DIRECT (the seal): the image goes at once.
            Ok((_img, o)) => o,
            Err(e @ WalError::Corruption { .. }) if self.cfg.recovery_mode == RecoveryMode::Tolerant => {
                error!(error = %e, "tolerant recovery: cutting the log at damaged durable data");
                report.dropped_corruption = Some(e.to_string());
                let WalError::Corruption { offset, lsn, .. } = e else { unreachable!() };
                let (records, last_lsn) = (lsn - seg.first_lsn, lsn - 1);
                recovery::ScanOutcome { records, last_lsn, data_end: offset, torn: None }
            }
            Err(e) => {
                error!(error = %e, "corruption found during recovery");
                return Err(e);
            }
        };
        if let Some(t) = &outcome.torn {
            warn!(
                segment = %seg.name,
                offset = t.offset,
                lsn = t.lsn,
                reason = %t.reason,
                dropped_records = t.dropped_records,
                bytes_cut = t.bytes_cut,
                "cut torn final write"
            );
        }
        report.recovered_records = outcome.records;
        report.torn_tail = outcome.torn.clone();
        let seal = Seal {
            last_lsn: outcome.last_lsn,
            records: outcome.records,
            data_end: outcome.data_end,
            sealed_ms: writer::now_ms(),
        };
        Ok(seal)
    }

    /// I6: makes what recovery kept durable, then seals the segment there.
    fn write_recovered_seal(&self, seg: &catalog::Seg, header: &SegmentHeader, seal: &Seal) -> Result<()> {
        let (block, seed) = (header.block_size as usize, header.crc_seed());
        let (file, _) = writer::open_file(&*self.storage, &seg.path, false, self.cfg.use_direct_io)?;
        // I6: what recovery keeps may only be in a cache (a crashed
        // process's buffered writes): make it durable before sealing.
        file.sync_data().map_err(|e| WalError::io("fdatasync", &seg.path, e))?;
        self.stats.wrote(crate::stats::Written::Seal, block as u64);
        writer::write_seal(&*file, &seg.path, block, seed, seal)
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
        let salt = random_u128();
        let cipher = self.ring.as_ref().map(|r| SegmentCipher::new(r.current(), self.wal_id, salt));
        // I19: an encrypted segment starts only in a plain-free file.
        let taken = self.spares.get_mut().unwrap_or_else(|p| p.into_inner()).take(cipher.is_some());
        let (spare, spare_plain_free) = (taken.as_ref().map(|t| t.0.clone()), taken.map(|t| t.1));
        let recycled = spare.is_some();
        let mut header = SegmentHeader {
            version: 0,
            block_size: self.cfg.alignment as u32,
            wal_id: self.wal_id,
            salt,
            first_lsn: self.next_lsn,
            cipher: cipher.as_ref().map_or(Cipher::None, |c| c.descriptor()),
            created_ms: writer::now_ms(),
            recycled,
            // I11: a plain segment after an explicit disable_encryption says so.
            encryption_off: cipher.is_none() && self.encryption_off,
        };
        header.version = header.version_needed();
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
        self.shared.update(|v| {
            v.active = Some(view);
            v.direct = seg.direct();
        });
        self.stats.segment_started(recycled, self.direct_io);
        self.active = Some(seg);
        Ok(())
    }

    /// I25: before a file is created or deleted at `self.dir`, the path
    /// must still name the directory this writer locked (a directory renamed
    /// away takes its lock with it; another WAL may live at the path now).
    fn check_dir_identity(&self) -> Result<()> {
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
            Some(first) => Err(WalError::Poisoned { first_failure: first.clone() }),
            None => Ok(()),
        }
    }

    /// I3: after a failed write or fdatasync nothing more is accepted.
    fn poison(&mut self, e: WalError) -> WalError {
        if self.poisoned.is_none() {
            error!(error = %e, "WAL poisoned: every later append and sync fails until reopen");
            self.stats.poisoned();
            self.poisoned = Some(e.to_string());
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
        // I11 (E6): fail closed; I20: never wrap. Nothing is written.
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
        match active.write_out(&mut self.buf) {
            Ok(target) if target.end > active.durable_end => {
                Ok(Some(Flush { file: active.file(), target, path: active.path.clone() }))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Second half, under the lock again after `flush.file`'s fdatasync
    /// (issued without the lock) returned `synced`. A failure poisons (I3).
    pub(crate) fn finish_flush(&mut self, flush: Flush, synced: std::io::Result<()>, started: Instant) -> Result<()> {
        if let Err(e) = synced {
            return Err(self.poison(WalError::io("fdatasync", &flush.path, e)));
        }
        // Rolls wait for flushes in flight, so the flushed segment is still
        // active; if not, nothing can be claimed durable.
        let Some(active) = self.active.as_mut().filter(|a| a.path == flush.path) else {
            let e =
                WalError::Poisoned { first_failure: format!("{} was replaced during its flush", flush.path.display()) };
            return Err(self.poison(e));
        };
        let n = active.mark_durable(flush.target);
        self.count_sync(n, started);
        Ok(())
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
            self.shared.update(|v| {
                Arc::make_mut(&mut v.sealed).push(Arc::new(sealed));
                v.active = None;
            });
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

    /// Whether writes bypass the page cache (false after the D2 fallback).
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

    /// Deletes sealed segments whose records all lie below `lsn`, oldest first,
    /// fsyncing the directory after each deletion (D8). The active segment is
    /// never deleted, nor, while there is no active segment, the newest sealed
    /// one (I20). Up to `recycle_segments` of the files are kept as spares
    /// for new segments rather than deleted (I17; I19 says which may be);
    /// they count as deleted. Refused with `EncryptionRequired` while the WAL
    /// needs a ring it lacks (I11).
    ///
    /// With the default 64 MiB segments a small log has one segment, the
    /// active one, and nothing is truncated; this example uses 4 KiB ones.
    ///
    /// ```
    /// use directwal::{RecordType, SegmentedWal, SegmentedWalConfig};
    /// # let tmp = tempfile::tempdir()?;
    /// let mut config = SegmentedWalConfig::new(tmp.path().into());
    /// config.segment_target_size = 4096;
    /// let mut wal = SegmentedWal::open(config)?;
    /// for i in 0..100u32 {
    ///     wal.append(RecordType::Put as u16, 1, 0, &[i as u8; 200])?;
    /// }
    /// wal.sync()?;
    /// let checkpoint_lsn = 80; // everything below it is saved elsewhere
    /// let dropped = wal.truncate_before(checkpoint_lsn)?;
    /// assert!(dropped.segments_deleted > 0);
    /// let oldest = wal.replay()?[0].header.lsn;
    /// assert!(oldest > 1 && oldest <= checkpoint_lsn);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn truncate_before(&self, lsn: u64) -> Result<TruncateResult> {
        // I11: without its key the WAL changes none of its files; deleting
        // the segments that carry the requirement would lift it.
        if let Some(e) = self.missing_ring() {
            return Err(e);
        }
        // I25: nothing is deleted or renamed at a path another WAL may own now.
        self.check_dir_identity()?;
        self.settle_writes();
        let _span = tracing::info_span!("directwal_truncate", before_lsn = lsn).entered();
        let mut result = TruncateResult::default();
        loop {
            let view = self.shared.snapshot();
            let Some(oldest) = view.sealed.first().cloned() else { break };
            // I20: with no active segment the newest sealed one carries
            // next_lsn: deleting it would restart the LSNs at 1 on reopen.
            if oldest.seal.last_lsn >= lsn || (self.active.is_none() && view.sealed.len() == 1) {
                break;
            }
            drop(view);
            let size = self.storage.file_len(&oldest.path).unwrap_or(0);
            // R4/D8: out of the readers' view first; readers holding it keep it.
            self.shared.update(|v| Arc::make_mut(&mut v.sealed).retain(|s| !Arc::ptr_eq(s, &oldest)));
            let spare = self.spare_for(&oldest);
            let gone = match &spare {
                Some(to) => self.storage.rename(&oldest.path, to).map_err(|e| WalError::io("rename", &oldest.path, e)),
                None => self.storage.remove_file(&oldest.path).map_err(|e| WalError::io("remove", &oldest.path, e)),
            };
            if let Err(e) = gone {
                // The file is still in the log: so is it in the view.
                self.shared.update(|v| Arc::make_mut(&mut v.sealed).insert(0, oldest.clone()));
                return Err(e);
            }
            let (name, last_lsn, header) = (oldest.name.clone(), oldest.seal.last_lsn, oldest.header.clone());
            // I17: our last reference, and the mapping, go before the file
            // can be handed to a new segment.
            drop(oldest);
            // I9: each deletion is durable before the next, so a crash leaves a suffix.
            self.storage.sync_dir(&self.dir).map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
            result.segments_deleted += 1;
            result.bytes_reclaimed += size;
            self.stats.truncated(size, spare.is_some());
            match spare {
                Some(to) => {
                    info!(segment = %name, last_lsn, spare = %to.display(), "truncated segment, file kept for reuse");
                    self.spares.lock().unwrap_or_else(|p| p.into_inner()).push(to, &header);
                }
                None => info!(segment = %name, last_lsn, "truncated segment"),
            }
        }
        Ok(result)
    }

    /// I17: the spare name `seg`'s file may take, or None to delete it: the
    /// pool has room and nothing but `seg` itself (no reader's view, cursor or
    /// mapping) still refers to it, so no mapping can see the file change.
    fn spare_for(&self, seg: &Arc<SealedSeg>) -> Option<PathBuf> {
        let pool = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() >= self.cfg.recycle_segments || Arc::strong_count(seg) != 1 || seg.mapped_elsewhere() {
            return None;
        }
        // I19: while the WAL encrypts, a file that may hold plain records is deleted.
        if !spares::admits(pool.plain_free(&seg.header), self.encrypting()) {
            return None;
        }
        // I17: a segment file with another name (e.g. a backup's hard link)
        // is never rewritten; a name already taken on disk is never replaced.
        if spares::distrust(&*self.storage, &seg.path).is_some() {
            return None;
        }
        let to = self.dir.join(segment::spare_file_name(seg.header.first_lsn));
        (!pool.contains(&to) && self.storage.file_len(&to).is_err()).then_some(to)
    }

    /// A reader that pages through this WAL without blocking it (SPEC §6).
    pub fn reader(&self) -> WalReader {
        WalReader::new(self.shared.clone())
    }

    /// Every durable record, in LSN order.
    pub fn replay(&self) -> Result<Vec<WalRecord>> {
        Ok(self.replay_from_limit(0, usize::MAX)?.0)
    }

    /// Durable records from `from_lsn` on (0: from the oldest retained).
    pub fn replay_from(&self, from_lsn: u64) -> Result<Vec<WalRecord>> {
        Ok(self.replay_from_limit(from_lsn, usize::MAX)?.0)
    }

    /// At most `max_records` durable records from `from_lsn`; the flag is
    /// true exactly when more durable records follow.
    pub fn replay_from_limit(&self, from_lsn: u64, max_records: usize) -> Result<(Vec<WalRecord>, bool)> {
        self.settle_writes();
        self.reader().collect(from_lsn, max_records)
    }

    /// Streams durable records from `from_lsn` to `f`, at most `max_records`,
    /// through the reader (R6): sealed segments mapped, the active one read
    /// in windows; nothing else is held in memory. Returns whether more
    /// durable records follow.
    pub fn for_each_durable(&self, from_lsn: u64, max_records: usize, mut f: impl FnMut(WalRecord)) -> Result<bool> {
        let mut taken = 0usize;
        self.visit_durable(from_lsn, |rec| {
            if taken == max_records {
                return false;
            }
            taken += 1;
            f(rec.to_record());
            true
        })
    }

    /// Lends each durable record from `from_lsn` to `f` until it returns
    /// false, without copying payloads (see [`WalReader::visit`]). Returns
    /// whether more durable records follow the last one taken.
    pub fn visit_durable(&self, from_lsn: u64, f: impl FnMut(RecordRef<'_>) -> bool) -> Result<bool> {
        self.settle_writes();
        self.reader().visit(from_lsn, f)
    }

    /// I16: storage operations issued from here come after the background
    /// write in flight, as they would after a synchronous one. A failure it
    /// reports stays recorded and poisons the next append or sync.
    fn settle_writes(&self) {
        if let Some(active) = &self.active {
            let _ = active.settle();
        }
    }

    /// Every segment, oldest first (the active one last, `sealed == false`).
    pub fn list_segments(&self) -> Result<Vec<SegmentMeta>> {
        self.settle_writes();
        let mut out = Vec::new();
        for s in self.shared.snapshot().sealed.iter() {
            out.push(SegmentMeta {
                path: s.path.clone(),
                first_lsn: s.header.first_lsn,
                last_lsn: s.seal.last_lsn,
                record_count: s.seal.records,
                file_size: self.storage.file_len(&s.path).map_err(|e| WalError::io("stat", &s.path, e))?,
                used_bytes: s.seal.data_end,
                sealed: true,
                key_id: segment::key_id(&s.header),
            });
        }
        if let Some(a) = &self.active {
            out.push(SegmentMeta {
                path: a.path.clone(),
                first_lsn: a.header.first_lsn,
                last_lsn: a.durable_last_lsn,
                record_count: a.durable_records,
                file_size: self.storage.file_len(&a.path).map_err(|e| WalError::io("stat", &a.path, e))?,
                used_bytes: a.used_bytes(),
                sealed: false,
                key_id: segment::key_id(&a.header),
            });
        }
        Ok(out)
    }

    /// Total size of all segment files on disk.
    pub fn total_size_bytes(&self) -> Result<u64> {
        Ok(self.list_segments()?.iter().map(|s| s.file_size).sum())
    }

    /// Drops the WAL without the final sync that `Drop` performs, as a process
    /// crash would. Records not yet synced may be lost. For tests.
    #[doc(hidden)]
    pub fn simulate_crash(mut self) {
        self.poisoned = Some("simulated crash".into());
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
