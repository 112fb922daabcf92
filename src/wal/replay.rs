//! Reading the log through the writer: replay (through a reader, I18) and
//! the list of segments.

use super::SegmentedWal;
use crate::error::{Result, WalError};
use crate::reader::WalReader;
use crate::record::{RecordRef, WalRecord};
use crate::segment::{self, SegmentMeta};

impl SegmentedWal {
    /// A reader that pages through this WAL without blocking it.
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
    /// through the reader (I18): sealed segments mapped, the active one read
    /// in windows; nothing else is held in memory. Returns whether more
    /// durable records follow.
    pub fn for_each_durable(&self, from_lsn: u64, max_records: usize, mut f: impl FnMut(WalRecord)) -> Result<bool> {
        let mut taken = 0usize;
        let each = |rec: RecordRef<'_>| {
            if taken == max_records {
                return false;
            }
            taken += 1;
            f(rec.to_record());
            true
        };
        self.settle_writes();
        match max_records {
            usize::MAX => self.reader().visit_owned(from_lsn, each),
            _ => self.reader().visit(from_lsn, each),
        }
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
    pub(super) fn settle_writes(&self) {
        if let Some(active) = &self.active {
            let _ = active.settle();
        }
    }

    /// Every segment, oldest first (the active one last, `sealed == false`).
    pub fn list_segments(&self) -> Result<Vec<SegmentMeta>> {
        self.settle_writes();
        let mut out = Vec::new();
        for s in self.shared.snapshot().sealed() {
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
}
