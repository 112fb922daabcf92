//! The module path of nodedb-wal 0.0.6's `segmented` module, so code written
//! against it (`nodedb_wal::segmented::{SegmentedWal, SegmentedWalConfig}`)
//! compiles with the crate name changed; and its two directory functions.
//!
//! Both functions read the directory through [`WalReader::open_dir`], without
//! the writer and without its lock: sealed segments up to their seal, the
//! newest unsealed one up to its last valid record, so a torn final write is
//! never returned and damage to a record before it is an error naming the
//! segment, offset and LSN. Encrypted segments need a key: use
//! [`WalReader::open_dir`] with the ring (these functions pass none, and
//! fail with [`WalError::KeyRequired`](crate::WalError::KeyRequired)). Beside
//! a writer in the same process, prefer the writer's own
//! [`SegmentedWal::replay_from_limit`].

use std::path::Path;

use crate::error::Result;
use crate::reader::WalReader;
use crate::record::WalRecord;

pub use crate::segment::SegmentMeta;
pub use crate::wal::{DEFAULT_SEGMENT_TARGET_SIZE, SegmentedWal, SegmentedWalConfig, TruncateResult};

/// Every valid record in the WAL directory `wal_dir`, in LSN order.
///
/// ```
/// use directwal::RecordType;
/// use directwal::segmented::{SegmentedWal, SegmentedWalConfig, replay_all_segments};
/// # fn main() -> directwal::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// # let dir = tmp.path().join("wal");
/// let mut wal = SegmentedWal::open(SegmentedWalConfig::new(dir.clone().into()))?;
/// wal.append(RecordType::Put as u16, 1, 0, b"a")?;
/// wal.sync()?;
/// let records = replay_all_segments(&dir)?;
/// assert_eq!(records.len(), 1);
/// # Ok(())
/// # }
/// ```
pub fn replay_all_segments(wal_dir: &Path) -> Result<Vec<WalRecord>> {
    Ok(replay_from_limit_dir(wal_dir, 0, usize::MAX)?.0)
}

/// At most `max_records` valid records of the WAL directory `wal_dir` from
/// `from_lsn` on (0: from the oldest); the flag is true exactly when more
/// records follow the last one returned (as in
/// [`SegmentedWal::replay_from_limit`]). A `from_lsn` below the oldest
/// retained record is [`WalError::LsnTruncated`](crate::WalError::LsnTruncated).
/// A directory with no segment yields no records.
pub fn replay_from_limit_dir(wal_dir: &Path, from_lsn: u64, max_records: usize) -> Result<(Vec<WalRecord>, bool)> {
    // The owned replay of `SegmentedWal::replay_from_limit`, on the
    // directory's own reader.
    WalReader::open_dir(wal_dir, None)?.collect(from_lsn, max_records)
}
