//! directwal — a durable segmented write-ahead log.
//!
//! Records are packed into page-aligned buffers and written with O_DIRECT;
//! a sync rewrites the partly filled tail block instead of padding, segment
//! space is prepared ahead so fdatasync stays cheap, and recovery cuts a torn
//! final write but refuses damaged durable data. The on-disk format is
//! described in `docs/FORMAT.md`, the invariants in `docs/DESIGN.md`.
//!
//! ```
//! use directwal::{RecordType, SegmentedWal, SegmentedWalConfig};
//!
//! # fn main() -> Result<(), directwal::WalError> {
//! let dir = tempfile::tempdir().unwrap();
//! let mut wal = SegmentedWal::open(SegmentedWalConfig::new(dir.path()))?;
//! let lsn = wal.append(RecordType::Put as u16, 7, 0, b"hello")?;
//! wal.sync()?; // durable from here on
//! drop(wal);
//!
//! let wal = SegmentedWal::open(SegmentedWalConfig::new(dir.path()))?;
//! let records = wal.replay()?;
//! assert_eq!(records[0].header.lsn, lsn);
//! assert_eq!(records[0].payload, b"hello");
//! assert_eq!(wal.next_lsn(), lsn + 1);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod check;
mod commit;
pub mod crypto;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod histogram;
pub mod io;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "openraft")]
// openraft's traits fix the error type, `StorageError`, at ~200 bytes.
#[allow(clippy::result_large_err)]
pub mod raft;
mod reader;
mod record;
mod recovery;
mod segment;
pub mod sim;
mod stats;
mod wal;
mod writer;

pub use commit::{Durable, SyncPolicy, WalHandle};
pub use error::{Result, WalError};
pub use format::{MAX_PAYLOAD_SIZE, MAX_SEGMENT_TARGET_SIZE};
pub use reader::{Page, PageBuf, WalCursor, WalReader};
pub use record::{RecordHeader, RecordRef, RecordType, WalRecord};
pub use recovery::TornTail;
pub use segment::{SegmentMeta, parse_segment_name, segment_file_name};
pub use stats::{BytesWritten, HistogramSnapshot, StatsHandle, StatsSnapshot};
pub use wal::{
    DEFAULT_ALIGNMENT, DEFAULT_PREPARE_CHUNK, DEFAULT_RECYCLE_SEGMENTS, DEFAULT_SEGMENT_TARGET_SIZE,
    DEFAULT_WRITE_BUFFER_SIZE, RecoveryMode, RecoveryReport, SegmentedWal, SegmentedWalConfig, TruncateResult,
    WalStats, WalWriterConfig,
};

/// Byte layout constants, re-exported for tools and tests that inspect
/// segment files directly (see docs/FORMAT.md).
pub mod layout {
    pub use crate::format::{
        FORMAT_VERSION, RECORD_ALIGN, RECORD_HEADER_LEN, SEAL_LEN, SEGMENT_HEADER_LEN, data_start, record_size,
    };
}
