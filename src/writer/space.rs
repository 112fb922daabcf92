//! Space preparation for the active segment (DESIGN "Preparing space",
//! I8): zeros written ahead of the data for small sync epochs, fallocated
//! chunks for large ones, so an fdatasync does not journal size changes;
//! and the durable reserve past the data that lets recovery tell a cut
//! file from a crash image (I26).

use super::{ActiveSegment, LARGE_EPOCH_BYTES};
use crate::error::{Result, WalError};
use crate::io::AlignedBuf;
use crate::stats::Written;

impl ActiveSegment {
    /// Zero-fills from `prepared_end` up to at least `upto` (block aligned).
    pub(super) fn zero_fill(&mut self, upto: u64) -> Result<()> {
        let upto = upto.next_multiple_of(self.block as u64);
        if upto <= self.prepared_end {
            return Ok(());
        }
        // One huge page of zeros (io::HUGE_PAGE): each zero write is one
        // request. From a 1 MiB small-paged buffer a 16 MiB chunk stalled the
        // append that needed it 17–21 ms, from this one 9 ms (alternated runs,
        // 4 KB appends with a sync every 8).
        let zeros = AlignedBuf::new(self.prepare_chunk.min(crate::io::HUGE_PAGE as u64) as usize, self.block);
        let mut off = self.prepared_end;
        while off < upto {
            let n = ((upto - off) as usize).min(zeros.len());
            self.tail.zeros(&self.name, off);
            self.write(&zeros[..n], off)?;
            self.stats.wrote(Written::Prepare, n as u64);
            off += n as u64;
        }
        self.prepared_end = upto;
        self.extended_to = self.extended_to.max(upto);
        Ok(())
    }

    /// Reserves the file up to `end` (block aligned) without writing it
    /// (fallocate). Where the file system cannot, one block of zeros is
    /// written at `end` − block instead: the file then reaches `end` (a
    /// hole before it reads as zeros and the data fills it, as when the
    /// file grows with the data), so the reserve of I26 still holds.
    pub(super) fn reserve_to(&mut self, end: u64) -> Result<()> {
        match self.file.allocate(self.prepared_end, end - self.prepared_end) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                let block = self.block as u64;
                let zeros = AlignedBuf::new(self.block, self.block);
                self.tail.zeros(&self.name, end - block);
                self.write(&zeros, end - block)?;
                self.stats.wrote(Written::Prepare, block);
            }
            Err(e) => return Err(WalError::io("fallocate", &self.path, e)),
        }
        self.prepared_end = end;
        self.extended_to = self.extended_to.max(end);
        Ok(())
    }

    /// Makes sure the file has room for `extra` more bytes of data without
    /// its size or extents changing at the next fdatasync. Called
    /// before a record is accepted, so a failure (ENOSPC) consumes no LSN
    /// and leaves the segment usable (I8). The zeros become durable with the
    /// next sync's fdatasync, which then journals the size change once per
    /// extension instead of once per sync.
    ///
    /// I26: the space kept ahead is the data's block-rounded end plus one
    /// block (the reserve) plus a quarter chunk, so the extension is
    /// prepared while the data still has a quarter chunk to go: an ordinary
    /// sync in between makes it durable before any data write needs it
    /// ([`durable_reserve`](Self::durable_reserve) syncs only otherwise).
    /// Each extension still covers about three quarters of a chunk.
    pub fn ensure_space(&mut self, extra: u64) -> Result<()> {
        let block = self.block as u64;
        let need = self.data_end + extra;
        let hard = need.next_multiple_of(block) + block;
        // Nothing is prepared past a full segment's data and reserve (it
        // rolls there), unless this record needs it.
        let limit = self.prepare_limit.max(hard);
        let lead = (self.prepare_chunk / 4) / block * block;
        let ahead = (hard + lead).min(limit);
        if ahead <= self.prepared_end {
            return Ok(());
        }
        // At most one chunk past the data, as without the reserve: the file
        // never outgrows catalog::MAX_SEGMENT_FILE_LEN (I23).
        let end = (hard - block + self.prepare_chunk.next_multiple_of(block).max(block + lead)).min(limit);
        let epoch_bytes = need - self.durable_end;
        if epoch_bytes.max(self.last_epoch_bytes) >= LARGE_EPOCH_BYTES {
            // Large writes: zero-filling ahead would write every byte twice.
            // Reserve the space instead (fallocate), which also keeps the data
            // writes from meeting ENOSPC.
            self.settle()?;
            return self.reserve_to(end.max(self.prepared_end));
        }
        // Zero-filling must not overwrite buffered data that is not on disk
        // yet; the buffer keeps at most the blocks from buf_file_off on.
        let from = self.prepared_end.max(self.buf_file_off + self.buf_len.next_multiple_of(self.block) as u64);
        self.prepared_end = from;
        self.zero_fill(end)
    }

    /// I26: called before every data write that ends at `end` (block
    /// aligned): the file's durable length must reach a block past it and
    /// a block past the block-rounded end of every record accepted so far
    /// (`accepted_end`: a record longer than the write buffer is written in
    /// several writes, the first of them ending far before the record). So
    /// every crash image that holds any byte of a record keeps a block past
    /// the block holding that record's end (`catalog::check_reserve`).
    /// The space is prepared already (`ensure_space`); when no ordinary sync
    /// has made it durable yet, this fdatasyncs first (counted in the stats
    /// as a reserve fdatasync). A failure must poison, as for any fdatasync (I3).
    pub(super) fn durable_reserve(&mut self, end: u64) -> Result<()> {
        let block = self.block as u64;
        let want = end.max(self.accepted_end.next_multiple_of(block)) + block;
        if want <= self.durable_len {
            return Ok(());
        }
        if self.extended_to < want {
            debug_assert!(
                false,
                "I26: {} written to {end} with space prepared only to {}",
                self.name, self.extended_to
            );
            // Never past a write in flight: everything below `end` is data.
            self.prepared_end = self.prepared_end.max(end);
            self.zero_fill(want)?;
        }
        let extended = self.extended_to;
        self.settle()?;
        self.file.sync_data().map_err(|e| WalError::io("fdatasync", &self.path, e))?;
        self.stats.reserve_fdatasync();
        self.durable_len = extended;
        // I26: the write about to be issued ends a block before the durable length.
        assert!(
            want <= self.durable_len,
            "I26: {} would write to {end} (records to {}) with {} durable",
            self.name,
            self.accepted_end,
            self.durable_len
        );
        Ok(())
    }
}
