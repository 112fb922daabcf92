//! The WAL's configuration, what open reports and the counters; re-exported
//! from `wal` (and so from the crate root and `writer`) unchanged.

use std::path::PathBuf;
use std::time::Duration;

use crate::recovery::TornTail;

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
    /// Refuse to open with [`WalError::Corruption`](crate::WalError::Corruption) (default).
    #[default]
    Strict,
    /// Cut the log at the damage, log and report what was dropped
    /// ([`SegmentedWal::recovery_report`](crate::SegmentedWal::recovery_report)), and continue.
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
    /// Turn the O_DIRECT fallback into [`WalError::DirectIoUnsupported`](crate::WalError::DirectIoUnsupported).
    pub require_direct_io: bool,
    /// How open treats damage to durable data.
    pub recovery_mode: RecoveryMode,
    /// Bytes of segment space zero-filled ahead of the data at a time.
    pub prepare_chunk_size: u64,
    /// Segment files `truncate_before` keeps (as `spare-*` files) for new
    /// segments to reuse instead of deleting them: writes into written space
    /// need no allocation or extent change at fdatasync (DESIGN I17).
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

/// Configuration of a [`SegmentedWal`](crate::SegmentedWal).
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

/// Result of [`SegmentedWal::truncate_before`](crate::SegmentedWal::truncate_before).
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

/// Counters since open.
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
